//! Hook inputs over [`MAX_INPUT`](crate::normalize::MAX_INPUT) (a Write of a 3 MiB file, a
//! long tool output): read to the end in bounded memory and turned into a marked stub.
//!
//! The bytes already read go first, then the rest of stdin streams through
//! [`serde_json::Deserializer::from_reader`]. Two things keep the memory bounded whatever the
//! size: `CutStrings` cuts every JSON string in the stream to `CUT` bytes before serde
//! sees it (serde_json buffers a string it hands to a visitor whole), and `Prune` keeps only
//! the scalars of the top level and of the objects directly under it, within [`KEEP_BYTES`];
//! everything else takes serde_json's ignore path, which stores nothing.

use std::cell::Cell;
use std::fmt;
use std::io::{self, BufReader, Cursor, Read};
use std::time::Instant;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Number, Value};

use crate::normalize::{self, BadInput};

/// The most bytes of one JSON string (as written, escapes included) a stub keeps.
pub const CUT: usize = 1024;
/// What replaces the rest of a cut string.
const MARKER: &[u8] = "…[truncated]".as_bytes();
/// The most bytes of strings a stub keeps in all.
pub const KEEP_BYTES: usize = 64 * 1024;
/// The most fields kept of one object.
const KEEP_FIELDS: usize = 64;
/// Objects this deep or deeper (the input itself is 0) are left out.
const MAX_DEPTH: u8 = 2;
/// How much of stdin is read at a time.
const CHUNK: usize = 8 * 1024;

/// Reads the whole input, `first` (what was read already) then `rest`, into a stub: the
/// input's scalar fields and the scalar fields of its objects (`tool_input`,
/// `tool_response`), strings cut to [`CUT`] bytes, plus `truncated: true` and the input's
/// `original_size` in bytes. Gives up at `deadline` (checked between reads).
pub fn parse(
    first: Vec<u8>,
    rest: impl Read,
    deadline: Instant,
) -> Result<Map<String, Value>, BadInput> {
    let mut input = CutStrings::new(Cursor::new(first).chain(rest), deadline);
    let budget = Cell::new(KEEP_BYTES);
    let parsed = {
        let mut de = serde_json::Deserializer::from_reader(BufReader::new(&mut input));
        Prune {
            depth: 0,
            budget: &budget,
        }
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value))
    };
    let value = match parsed {
        Ok(value) => value,
        Err(_) if input.timed_out => return Err(BadInput::TimedOut),
        Err(error) => return Err(BadInput::NotJson(error.to_string())),
    };
    // A top-level array or a float out of range keeps nothing: not an object either way.
    let mut map = normalize::hook_object(value.unwrap_or(Value::Null))?;
    map.insert("truncated".to_string(), json!(true));
    map.insert("original_size".to_string(), json!(input.read));
    Ok(map)
}

/// A reader that passes JSON through with every string cut to [`CUT`] bytes and marked. It
/// cuts only where the rest stays valid JSON: never inside an escape, a surrogate pair or a
/// UTF-8 sequence. It also counts the bytes it read and stops at a deadline.
struct CutStrings<R> {
    inner: R,
    buf: Box<[u8]>,
    pos: usize,
    len: usize,
    deadline: Instant,
    /// Bytes read from `inner`.
    read: u64,
    timed_out: bool,
    /// Marker bytes still to hand out.
    marker: &'static [u8],
    in_string: bool,
    /// Bytes of the current string passed on.
    kept: usize,
    cutting: bool,
    /// The last byte was an unescaped backslash.
    escaped: bool,
    /// Hex digits of a `\u` escape still to come, and its value so far.
    hex_left: u8,
    hex: u16,
    /// The last escape was a high surrogate: its low half must follow it.
    high_surrogate: bool,
}

impl<R: Read> CutStrings<R> {
    fn new(inner: R, deadline: Instant) -> Self {
        Self {
            inner,
            buf: vec![0; CHUNK].into_boxed_slice(),
            pos: 0,
            len: 0,
            deadline,
            read: 0,
            timed_out: false,
            marker: &[],
            in_string: false,
            kept: 0,
            cutting: false,
            escaped: false,
            hex_left: 0,
            hex: 0,
            high_surrogate: false,
        }
    }

    /// Whether `byte` may start the cut-off part: a new character outside any escape.
    fn cut_here(&self, byte: u8) -> bool {
        self.kept >= CUT
            && !self.escaped
            && self.hex_left == 0
            && !(self.high_surrogate && byte == b'\\')
            && !(0x80..0xC0).contains(&byte)
    }

    /// Follows `byte` through the JSON text; says whether it is passed on.
    fn pass(&mut self, byte: u8) -> bool {
        if !self.in_string {
            self.in_string = byte == b'"';
            self.kept = 0;
            return true;
        }
        if self.hex_left > 0 {
            self.hex_left -= 1;
            // A bad digit is serde_json's error to report; here it only must not panic.
            let digit = char::from(byte).to_digit(16).unwrap_or(0);
            self.hex = self.hex << 4 | u16::try_from(digit).unwrap_or(0);
            if self.hex_left == 0 {
                self.high_surrogate = (0xD800..0xDC00).contains(&self.hex);
            }
        } else if self.escaped {
            self.escaped = false;
            if byte == b'u' {
                (self.hex_left, self.hex) = (4, 0);
            }
        } else if byte == b'"' {
            self.in_string = false;
            self.cutting = false;
            self.high_surrogate = false;
            return true;
        } else {
            if !self.cutting && self.cut_here(byte) {
                self.cutting = true;
                self.marker = MARKER;
            }
            self.high_surrogate &= byte == b'\\';
            self.escaped = byte == b'\\';
        }
        if self.cutting {
            return false;
        }
        self.kept += 1;
        true
    }
}

impl<R: Read> Read for CutStrings<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < out.len() {
            if let Some((&byte, rest)) = self.marker.split_first() {
                out[n] = byte;
                n += 1;
                self.marker = rest;
                continue;
            }
            if self.pos == self.len {
                if n > 0 {
                    break;
                }
                if Instant::now() >= self.deadline {
                    self.timed_out = true;
                    return Err(io::ErrorKind::TimedOut.into());
                }
                self.len = self.inner.read(&mut self.buf)?;
                self.pos = 0;
                self.read += self.len as u64;
                if self.len == 0 {
                    break;
                }
            }
            let byte = self.buf[self.pos];
            self.pos += 1;
            if self.pass(byte) {
                out[n] = byte;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Deserializes a value into what a stub keeps of it: a scalar as it is (strings arrive cut),
/// an object above [`MAX_DEPTH`] with what it keeps of its first [`KEEP_FIELDS`] fields,
/// anything else nothing. `budget` is what the stub may still keep of strings.
struct Prune<'a> {
    depth: u8,
    budget: &'a Cell<usize>,
}

impl Prune<'_> {
    fn string(&self, text: &str) -> Option<Value> {
        let left = self.budget.get().checked_sub(text.len())?;
        self.budget.set(left);
        Some(Value::String(text.to_string()))
    }
}

impl<'de> DeserializeSeed<'de> for Prune<'_> {
    type Value = Option<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Prune<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Value::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(v).map(Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.string(v))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.depth >= MAX_DEPTH {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(None);
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.len() >= KEEP_FIELDS {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let inner = Prune {
                depth: self.depth + 1,
                budget: self.budget,
            };
            if let Some(value) = map.next_value_seed(inner)? {
                if self.string(&key).is_some() {
                    out.insert(key, value);
                }
            }
        }
        Ok(Some(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    fn cut(json: &str) -> String {
        let mut out = String::new();
        CutStrings::new(json.as_bytes(), later())
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn strings_are_cut_where_the_json_stays_valid() {
        let marker = std::str::from_utf8(MARKER).unwrap();
        let long = "a".repeat(5000);
        let text = cut(&json!({"k": long, "n": 1}).to_string());
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["k"], format!("{}{marker}", "a".repeat(CUT)));
        assert_eq!(value["n"], 1);
        // Escapes, surrogate pairs and multi-byte characters across the cut point.
        for filler in ["\\\"", "\\u00e9", "\\ud83d\\ude00", "é", "😀", "\\\\"] {
            for shift in 0..7 {
                let text = format!("{}{}", "b".repeat(CUT - shift), filler.repeat(400));
                let input = format!("{{\"{text}\":\"{text}\",\"after\":\"x\\\"y\"}}");
                let value: Value = serde_json::from_str(&cut(&input))
                    .unwrap_or_else(|e| panic!("{filler} {shift}: {e}"));
                let (key, kept) = value.as_object().unwrap().iter().next().unwrap();
                assert_eq!(key, kept.as_str().unwrap());
                assert!(key.ends_with(marker) && key.len() < CUT + 40, "{key}");
                assert_eq!(value["after"], "x\"y");
            }
        }
    }

    fn stub(input: &Value) -> Map<String, Value> {
        let text = input.to_string();
        parse(text.into_bytes(), io::empty(), later()).unwrap()
    }

    #[test]
    fn a_stub_keeps_the_scalars_of_two_levels_and_says_what_it_was() {
        let content = "z".repeat(3 << 20);
        let input = json!({
            "hook_event_name": "PostToolUse", "session_id": "s", "tool_name": "Bash",
            "tool_use_id": "toolu_1", "duration_ms": 1234,
            "tool_input": {"command": "make", "deep": {"x": 1}, "list": [1, 2]},
            "tool_response": {"stdout": content, "stderr": "", "exit_code": 2},
        });
        let map = stub(&input);
        assert_eq!(map["original_size"], input.to_string().len());
        assert_eq!(map["truncated"], true);
        assert_eq!(map["duration_ms"], 1234);
        assert_eq!(map["tool_use_id"], "toolu_1");
        assert_eq!(map["tool_input"], json!({"command": "make"}));
        assert_eq!(map["tool_response"]["exit_code"], 2);
        assert!(map["tool_response"]["stdout"].as_str().unwrap().len() < CUT + 20);
    }

    #[test]
    fn what_a_stub_keeps_is_bounded() {
        let fields: Map<String, Value> = (0..1000)
            .map(|i| (format!("f{i}"), json!("v".repeat(2000))))
            .collect();
        let map = stub(&json!({"hook_event_name": "Stop", "tool_input": fields}));
        let kept = Value::Object(map).to_string().len();
        assert!(kept < KEEP_BYTES + 4096, "{kept}");
    }

    #[test]
    fn bad_big_inputs_are_named() {
        let bad = |text: &str| parse(text.as_bytes().to_vec(), io::empty(), later()).unwrap_err();
        assert!(matches!(bad("{\"a\": [1, 2"), BadInput::NotJson(_)));
        assert!(matches!(bad("{} x"), BadInput::NotJson(_)));
        assert!(matches!(bad("  "), BadInput::NotJson(_)));
        assert_eq!(bad("[1]"), BadInput::NotAnObject);
        assert_eq!(bad("{\"a\": 1}"), BadInput::NoEventName);
        let past = Instant::now() - Duration::from_millis(1);
        let error = parse(b"{\"a\": ".to_vec(), io::repeat(b' '), past).unwrap_err();
        assert_eq!(error, BadInput::TimedOut);
    }
}
