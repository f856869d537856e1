//! The relay's socket protocol: one line per request, one line per answer.
//!
//! - `E <event_id> <json>`: an event payload; answered `A` once it is in the store.
//! - `O <event_id> <json>`: the same, for an event the size guard had to shrink (counted).
//! - `B <kind>`: a hook refused a bad input (counted); answered `A`.
//! - `S`: the relay's stats; answered with one line of JSON.
//! - `Q`: stop: answered `A` at once; the relay lets its round in flight finish (at most
//!   2 s), keeps the rest in its store for the next relay, and exits.
//!
//! A line longer than [`MAX_LINE`] closes the connection.

pub const EVENT: u8 = b'E';
pub const OVERSIZED_EVENT: u8 = b'O';
pub const BAD_INPUT: u8 = b'B';
pub const STATS: u8 = b'S';
pub const QUIT: u8 = b'Q';
pub const ACK: &[u8] = b"A\n";
/// The largest hook input the hook parses whole; a bigger one is sent as a stub.
pub const MAX_INPUT: usize = 1 << 20;
/// The longest request line: the largest hook input plus its header.
pub const MAX_LINE: usize = MAX_INPUT + 1024;

/// The request line for one event.
pub fn event_line(event_id: &str, json: &str, oversized: bool) -> String {
    let kind = if oversized { OVERSIZED_EVENT } else { EVENT };
    format!("{} {event_id} {json}", kind as char)
}

/// An event line's id and payload (after its kind byte and space). A line from an older hook
/// (`E <json>`) has no id, nor one with an empty id (`E  <json>`): `None`, and the relay
/// gives the event one (ids are unique: the store keeps one event per id).
pub fn split_event(rest: &str) -> (Option<&str>, &str) {
    if rest.starts_with('{') {
        return (None, rest);
    }
    match rest.split_once(' ') {
        Some(("", json)) => (None, json),
        Some((id, json)) => (Some(id), json),
        None => (None, rest),
    }
}

/// The payloads of event lines (what could not be read as JSON is left out).
pub fn payloads(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|line| line.get(2..))
        .map(|rest| split_event(rest).1)
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_without_an_id_or_with_an_empty_one_has_none() {
        assert_eq!(split_event("01ab {\"a\":1}"), (Some("01ab"), "{\"a\":1}"));
        assert_eq!(split_event("{\"a\":1}"), (None, "{\"a\":1}"));
        assert_eq!(split_event(" {\"a\":1}"), (None, "{\"a\":1}"));
    }
}
