//! The size guard: no payload leaves sluice over the dashboard's message limit. The real
//! dashboard closes the connection silently on a websocket message over 1,000,000 bytes,
//! losing that event and the ones written after it.

use serde_json::{json, Value};

/// Default largest payload, leaving room under 1,000,000 bytes for the Socket.IO framing.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1_000_000 - 16 * 1024;
/// The smallest limit the guard honours: a stub must fit.
pub const MIN_MAX_EVENT_BYTES: usize = 4 * 1024;
/// How many rounds of cuts are tried before falling back to a stub.
const MAX_ROUNDS: usize = 32;
/// Strings are never cut shorter than this.
const KEEP: usize = 64;
const MARKER: &str = "…[truncated by sluice]";

/// What the guard did to a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// It fitted as it was.
    Unchanged,
    /// Copies dropped and long strings or arrays cut, with a marker.
    Shrunk,
    /// Replaced by a stub that keeps the event's identity.
    Stub,
}

/// Serializes `payload`, shrinking it until it is at most `max` bytes: first the
/// `tool_parameters` copy of `tool_input` goes, then the longest strings and arrays are cut
/// (marked), and as a last resort a stub with `truncated: true`, the original size and the
/// event's identity is sent instead.
pub fn fit(mut payload: Value, max: usize) -> (String, Fit) {
    let max = max.max(MIN_MAX_EVENT_BYTES);
    let text = payload.to_string();
    if text.len() <= max {
        return (text, Fit::Unchanged);
    }
    let original = text.len();
    if let Some(data) = payload.get_mut("data").and_then(Value::as_object_mut) {
        data.remove("tool_parameters");
        data.insert("truncated".to_string(), json!(true));
        data.insert("original_size".to_string(), json!(original));
    }
    for _ in 0..MAX_ROUNDS {
        let size = payload.to_string().len();
        if size <= max {
            return (payload.to_string(), Fit::Shrunk);
        }
        let Some(data) = payload.get_mut("data") else {
            break;
        };
        if !cut_strings(data, size - max) && !halve_longest_array(data) {
            break;
        }
    }
    let text = payload.to_string();
    if text.len() <= max {
        return (text, Fit::Shrunk);
    }
    (stub(&payload, original).to_string(), Fit::Stub)
}

fn strings_mut<'a>(value: &'a mut Value, out: &mut Vec<&'a mut String>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter_mut().for_each(|item| strings_mut(item, out)),
        Value::Object(map) => map.values_mut().for_each(|item| strings_mut(item, out)),
        _ => {}
    }
}

/// Cuts every string longer than one common length, the longest such length that saves
/// `excess` bytes (never below `KEEP`), and marks them. False when no string can be cut.
fn cut_strings(data: &mut Value, excess: usize) -> bool {
    let mut strings = Vec::new();
    strings_mut(data, &mut strings);
    let saving = |cap: usize, strings: &[&mut String]| -> usize {
        strings
            .iter()
            .map(|s| s.len().saturating_sub(cap + MARKER.len()))
            .sum()
    };
    let longest = strings.iter().map(|s| s.len()).max().unwrap_or(0);
    if longest <= KEEP + MARKER.len() {
        return false;
    }
    // The largest cap that still saves enough: saving falls as the cap grows.
    let (mut low, mut high) = (KEEP, longest);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if saving(mid, &strings) >= excess {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    let mut cut = false;
    for text in strings {
        if text.len() > low + MARKER.len() {
            let mut end = low;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            text.push_str(MARKER);
            cut = true;
        }
    }
    cut
}

/// The number of items of the longest array in `value`.
fn longest_len(value: &Value) -> usize {
    match value {
        Value::Array(items) => items.iter().map(longest_len).fold(items.len(), usize::max),
        Value::Object(map) => map.values().map(longest_len).max().unwrap_or(0),
        _ => 0,
    }
}

fn longest_array(value: &mut Value) -> Option<&mut Vec<Value>> {
    let own = value.as_array().map_or(0, Vec::len);
    let child = match &*value {
        Value::Array(items) => items
            .iter()
            .map(longest_len)
            .enumerate()
            .max_by_key(|c| c.1),
        Value::Object(map) => map
            .values()
            .map(longest_len)
            .enumerate()
            .max_by_key(|c| c.1),
        _ => None,
    };
    if let Some((index, _)) = child.filter(|&(_, len)| len > own) {
        let next = match value {
            Value::Array(items) => items.get_mut(index),
            Value::Object(map) => map.values_mut().nth(index),
            _ => None,
        };
        return next.and_then(longest_array);
    }
    match value {
        Value::Array(items) if own > 1 => Some(items),
        _ => None,
    }
}

/// Halves the array with the most items, with a marker; false when none has two.
fn halve_longest_array(data: &mut Value) -> bool {
    let Some(items) = longest_array(data) else {
        return false;
    };
    let removed = items.len().div_ceil(2);
    items.truncate(items.len() - removed);
    items.push(json!(format!("{MARKER}: {removed} more items")));
    true
}

/// The event's identity and what it was, without its content.
fn stub(payload: &Value, original: usize) -> Value {
    let pick = |from: &Value, keys: &[&str]| {
        let mut out = serde_json::Map::new();
        for key in keys {
            if let Some(value) = from.get(*key).filter(|v| !v.is_object() && !v.is_array()) {
                out.insert((*key).to_string(), value.clone());
            }
        }
        out
    };
    let mut top = pick(
        payload,
        &["event", "source", "type", "subtype", "timestamp"],
    );
    let data = payload.get("data").unwrap_or(&Value::Null);
    let mut data = pick(
        data,
        &[
            "event_id",
            "session_id",
            "hook_event_name",
            "tool_name",
            "tool_use_id",
            "cwd",
            "working_directory",
            "timestamp",
        ],
    );
    data.retain(|_, value| value.to_string().len() < 1024);
    data.insert("truncated".to_string(), json!(true));
    data.insert("original_size".to_string(), json!(original));
    top.insert("data".to_string(), Value::Object(data));
    Value::Object(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(data: Value) -> Value {
        json!({"event": "claude_event", "subtype": "pre_tool", "data": data})
    }

    #[test]
    fn small_events_pass_unchanged() {
        let payload = event(json!({"event_id": "e1", "tool_input": {"a": 1}}));
        let (text, fit_) = fit(payload.clone(), 10_000);
        assert_eq!(fit_, Fit::Unchanged);
        assert_eq!(text, payload.to_string());
    }

    #[test]
    fn the_copy_goes_first() {
        let input = json!({"content": "x".repeat(6_000)});
        let payload =
            event(json!({"event_id": "e1", "tool_input": input, "tool_parameters": input}));
        let (text, fit_) = fit(payload, 10_000);
        assert_eq!(fit_, Fit::Shrunk);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert!(back["data"].get("tool_parameters").is_none());
        assert_eq!(
            back["data"]["tool_input"]["content"]
                .as_str()
                .unwrap()
                .len(),
            6_000
        );
        assert_eq!(back["data"]["truncated"], true);
    }

    #[test]
    fn many_medium_strings_and_long_arrays_are_cut_under_the_limit() {
        let strings: Vec<String> = (0..100)
            .map(|i| format!("{i}{}", "y".repeat(8_100)))
            .collect();
        let input = json!({"edits": strings, "list": (0..20_000).collect::<Vec<_>>()});
        let payload = event(
            json!({"event_id": "e2", "session_id": "s", "tool_input": input, "tool_parameters": input}),
        );
        let original = payload.to_string().len();
        assert!(original > 1_600_000);
        for max in [DEFAULT_MAX_EVENT_BYTES, 100_000, 20_000] {
            let (text, fit_) = fit(payload.clone(), max);
            assert!(text.len() <= max, "{} > {max}", text.len());
            assert_ne!(fit_, Fit::Unchanged);
            let back: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(back["data"]["event_id"], "e2");
            assert_eq!(back["data"]["session_id"], "s");
            assert_eq!(back["data"]["original_size"], original);
        }
    }

    #[test]
    fn a_stub_when_nothing_else_fits() {
        let mut data = serde_json::Map::new();
        for i in 0..5_000 {
            data.insert(format!("key{i}"), json!(i));
        }
        data.insert("event_id".to_string(), json!("e3"));
        let (text, fit_) = fit(event(Value::Object(data)), MIN_MAX_EVENT_BYTES);
        assert_eq!(fit_, Fit::Stub);
        assert!(text.len() <= MIN_MAX_EVENT_BYTES);
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["data"]["event_id"], "e3");
        assert_eq!(back["data"]["truncated"], true);
        assert_eq!(back["subtype"], "pre_tool");
    }

    #[test]
    fn cuts_respect_utf8() {
        let payload = event(json!({"event_id": "e4", "text": "é".repeat(10_000)}));
        let (text, _) = fit(payload, 5_000);
        assert!(text.len() <= 5_000);
        serde_json::from_str::<Value>(&text).unwrap();
    }
}
