//! What the sink's tests share: numbered events and reading their numbers back.

// Each test file compiles this module on its own and may use only part of it.
#![allow(dead_code)]

use serde_json::{json, Value};
use sluice_dashboard::Log;
use sluice_socketio_sink::Emit;

/// Event number `seq`, a `claude_event` on `/`.
pub(crate) fn event(seq: u64) -> Emit {
    Emit::new("claude_event", json!({ "seq": seq, "type": "hook" }))
}

/// The numbers of the events the server received, in arrival order.
pub(crate) fn seqs(log: &Log) -> Vec<u64> {
    log.events()
        .iter()
        .filter_map(|r| r.data.get("seq").and_then(Value::as_u64))
        .collect()
}
