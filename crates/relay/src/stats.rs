//! `sluice-hook stats` for people: the relay's JSON stats as a few readable lines (uptime,
//! breaker, spool, last error, deliveries), with any field it does not know listed last.

use std::fmt::Write;

use serde_json::{Map, Value};

/// Fields shown in the readable lines; any other field is listed under "other".
const SHOWN: [&str; 32] = [
    "relay_pid",
    "delivers",
    "dead_letters",
    "uptime_secs",
    "server_url",
    "circuit_state",
    "circuit_failures",
    "breaker_transitions",
    "spool_depth",
    "spool_bytes",
    "spool_dropped",
    "spool_damaged",
    "last_error",
    "hook_events",
    "hook_bad_inputs",
    "delivered",
    "replayed",
    "send_retries",
    "last_delivery_error",
    "submitted",
    "sent",
    "failed",
    "dropped",
    "dropped_breaker_open",
    "dropped_queue_full",
    "queued",
    "active_connections",
    "max_connections",
    "connects",
    "reconnects",
    "connect_failures",
    // Same as `sent`, `failed` and `queued`: the reference's names.
    "total_events_sent",
];

/// Also known and not worth a line of their own.
const ALIASES: [&str; 3] = ["total_errors", "batch_queue_size", "available_connections"];

/// The readable form of the relay's stats.
pub fn pretty(stats: &Value) -> String {
    let Some(map) = stats.as_object() else {
        return format!("{stats}\n");
    };
    let n = |key: &str| map.get(key).and_then(Value::as_u64).unwrap_or(0);
    let text = |key: &str| match map.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_string(),
        Some(other) => other.to_string(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "relay {} up {} sending to {}",
        text("relay_pid"),
        duration(n("uptime_secs")),
        text("server_url")
    );
    let _ = writeln!(
        out,
        "  breaker      {} ({} failures in a row, {} state changes)",
        text("circuit_state"),
        n("circuit_failures"),
        n("breaker_transitions")
    );
    let mut spool = format!(
        "{} events waiting ({}), {} dropped by the cap",
        n("spool_depth"),
        bytes(n("spool_bytes")),
        n("spool_dropped")
    );
    if let Some(damaged) = map.get("spool_damaged").filter(|v| !is_none(v) && *v != 0) {
        let _ = write!(spool, ", damaged: {}", flat(damaged));
    }
    if n("dead_letters") > 0 {
        let _ = write!(
            spool,
            ", {} dead letters (sluice-hook dead-letters)",
            n("dead_letters")
        );
    }
    if map.get("delivers") == Some(&Value::Bool(false)) {
        spool.push_str(
            "; another relay delivers this spool (this one stores its hooks' events for it)",
        );
    }
    let _ = writeln!(out, "  spool        {spool}");
    let last_error = map
        .get("last_error")
        .filter(|v| !is_none(v))
        .map_or_else(|| "none".to_string(), flat);
    let _ = writeln!(out, "  last error   {last_error}");
    let _ = writeln!(
        out,
        "  hooks        {} events received, {} bad inputs",
        n("hook_events"),
        n("hook_bad_inputs")
    );
    let mut delivered = format!(
        "{} events ({} from a backlog), {} failed rounds retried",
        n("delivered"),
        n("replayed"),
        n("send_retries")
    );
    if let Some(failure) = map.get("last_delivery_error").filter(|v| !is_none(v)) {
        let _ = write!(delivered, "; the last: {}", flat(failure));
    }
    let _ = writeln!(out, "  delivered    {delivered}");
    let _ = writeln!(
        out,
        "  sink         {} submitted = {} sent + {} failed + {} dropped ({} breaker open, {} queue full) + {} queued",
        n("submitted"),
        n("sent"),
        n("failed"),
        n("dropped"),
        n("dropped_breaker_open"),
        n("dropped_queue_full"),
        n("queued")
    );
    let _ = writeln!(
        out,
        "  connections  {} open of {}; {} made, {} to replace lost ones, {} failed",
        n("active_connections"),
        n("max_connections"),
        n("connects"),
        n("reconnects"),
        n("connect_failures")
    );
    let others: Vec<(&String, &Value)> = map
        .iter()
        .filter(|(k, _)| !SHOWN.contains(&k.as_str()) && !ALIASES.contains(&k.as_str()))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out, "  other");
        for (key, value) in others {
            let _ = writeln!(out, "    {key:<22} {}", flat(value));
        }
    }
    out
}

fn is_none(value: &Value) -> bool {
    matches!(value, Value::Null | Value::Bool(false))
        || value.as_str().is_some_and(str::is_empty)
        || value.as_object().is_some_and(Map::is_empty)
}

/// A value on one line: strings bare, objects as `key: value` pairs (e.g. a last error's
/// host and cause).
fn flat(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}: {}", flat(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {:02}s", s / 60, s % 60),
        s => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n < 1 << 10 => format!("{n} B"),
        n if n < 1 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_readable_form_names_what_matters() {
        let stats = json!({
            "relay_pid": 1234, "uptime_secs": 3725, "server_url": "http://localhost:8765",
            "circuit_state": "open", "circuit_failures": 3, "breaker_transitions": 1,
            "spool_depth": 42, "spool_bytes": 4096, "spool_dropped": 0,
            "last_error": {"host": "localhost:8765", "cause": "connection refused"},
            "hook_events": 50, "hook_bad_inputs": 1, "delivered": 8, "replayed": 0,
            "submitted": 10, "sent": 8, "failed": 2, "dropped": 0, "queued": 0,
            "future_field": [1, 2]
        });
        let text = pretty(&stats);
        assert!(
            text.starts_with("relay 1234 up 1h 02m sending to http://localhost:8765\n"),
            "{text}"
        );
        assert!(
            text.contains("breaker      open (3 failures in a row"),
            "{text}"
        );
        assert!(
            text.contains("spool        42 events waiting (4.0 KiB)"),
            "{text}"
        );
        assert!(
            text.contains("last error   host: localhost:8765, cause: connection refused"),
            "{text}"
        );
        assert!(text.contains("future_field"), "{text}");
        // Damage is named only when there was some.
        let spool = |damaged: u64| pretty(&json!({"spool_depth": 1, "spool_damaged": damaged}));
        assert!(!spool(0).contains("damaged"), "{}", spool(0));
        assert!(spool(2).contains(", damaged: 2"), "{}", spool(2));
        let failed = pretty(&json!({"last_delivery_error": "ack timed out", "delivered": 3}));
        assert!(
            failed.contains("delivered    3 events (0 from a backlog), 0 failed rounds retried; the last: ack timed out"),
            "{failed}"
        );
        assert!(!failed.contains("other"), "{failed}");
        let plain = pretty(&json!({"last_error": "EngineIO Error", "uptime_secs": 5}));
        assert!(plain.contains("last error   EngineIO Error"), "{plain}");
        assert!(plain.contains("up 5s"), "{plain}");
    }
}
