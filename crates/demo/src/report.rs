//! The demo's report: what a run observed ([`Recording`]), the lines computed from it, each
//! with its definition, and the identities between them that a reader (and a test) can check.

use std::collections::HashSet;
use std::fmt::Write;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event the dashboard received.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Arrival {
    /// Its identity: `event_id` where the hook sets one, else a 64-bit hash of the payload's
    /// text (a resend of a spooled record is byte for byte the same).
    pub key: String,
    /// The `demo_seq` of the hook input it came from.
    pub seq: Option<u64>,
}

impl Arrival {
    pub(crate) fn of(payload: &Value) -> Self {
        let id = payload
            .get("event_id")
            .or_else(|| payload["data"].get("event_id"))
            .and_then(|id| {
                id.as_str()
                    .map(str::to_string)
                    .or_else(|| Some(id.to_string()))
            })
            .filter(|id| id != "null");
        Self {
            key: id.map_or_else(
                || {
                    let mut hasher = std::hash::DefaultHasher::new();
                    payload.to_string().hash(&mut hasher);
                    format!("text:{:016x}", hasher.finish())
                },
                |id| format!("id:{id}"),
            ),
            seq: payload["data"]["demo_seq"].as_u64(),
        }
    }
}

/// What one demo run observed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Recording {
    /// Hook processes run, one per input.
    pub hooks: u64,
    /// Of those, how many did not exit 0.
    pub hook_failures: u64,
    /// Of the inputs, the `Task` PreToolUse ones: each also makes a `subagent_start`.
    pub tasks: u64,
    /// Every event received, in arrival order (across the dashboard's restart).
    pub arrivals: Vec<Arrival>,
    /// How many of `arrivals` came before the dashboard came back.
    pub arrivals_before_restart: usize,
    /// Hooks run before the dashboard came back (hooks were paused at that instant).
    pub hooks_before_restart: u64,
    /// The relay's spool depth at the restart: events accepted and not yet delivered.
    pub spooled_at_restart: u64,
    /// The deepest spool seen by sampling the relay's stats every 50 ms.
    pub deepest_sampled: u64,
    /// The relay's stats at the end.
    pub stats: Value,
    /// Each hook's wall time, microseconds, sorted.
    pub latencies_us: Vec<u64>,
    /// Seconds from the start: dashboard down, back up, hooks all played, all delivered.
    pub down_at: f64,
    pub up_at: f64,
    pub played_at: f64,
    pub drained_at: f64,
}

/// The figures of the report, computed from a [`Recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Figures {
    pub expected: u64,
    pub received: u64,
    pub distinct: u64,
    pub duplicates: u64,
    pub lost: u64,
    pub from_backlog: u64,
    pub live: u64,
}

impl Recording {
    pub(crate) fn figures(&self) -> Figures {
        let expected = self.hooks + self.tasks;
        let mut seen = HashSet::new();
        let mut from_backlog = 0;
        for (index, arrival) in self.arrivals.iter().enumerate() {
            let first = seen.insert(arrival.key.as_str());
            let held_back = index >= self.arrivals_before_restart
                && arrival
                    .seq
                    .is_some_and(|seq| seq < self.hooks_before_restart);
            if first && held_back {
                from_backlog += 1;
            }
        }
        let distinct = seen.len() as u64;
        Figures {
            expected,
            received: self.arrivals.len() as u64,
            distinct,
            duplicates: self.arrivals.len() as u64 - distinct,
            lost: expected.saturating_sub(distinct),
            from_backlog,
            live: distinct - from_backlog,
        }
    }

    fn stat(&self, key: &str) -> u64 {
        self.stats[key].as_u64().unwrap_or(0)
    }

    /// The identities the report promises; each broken one, in words.
    pub(crate) fn broken(&self) -> Vec<String> {
        let f = self.figures();
        let mut broken = Vec::new();
        let mut check = |holds: bool, what: &str| {
            if !holds {
                broken.push(what.to_string());
            }
        };
        check(f.distinct <= f.expected, "received (distinct) <= expected");
        check(
            f.received == f.distinct + f.duplicates,
            "received = distinct + duplicates",
        );
        check(
            f.lost == f.expected - f.distinct.min(f.expected),
            "lost = expected - distinct",
        );
        check(
            f.distinct == f.from_backlog + f.live,
            "distinct = from the backlog + live",
        );
        check(
            f.from_backlog <= self.spooled_at_restart,
            "from the backlog <= spooled at the restart",
        );
        check(
            self.stat("submitted")
                == self.stat("sent")
                    + self.stat("failed")
                    + self.stat("dropped")
                    + self.stat("queued"),
            "submitted = sent + failed + dropped + queued",
        );
        broken
    }

    /// The report, one defined line each.
    pub(crate) fn render(&self) -> String {
        let f = self.figures();
        let percentile = |q: f64| {
            let all = &self.latencies_us;
            let at = ((all.len().max(1) - 1) as f64 * q).round() as usize;
            all.get(at).map_or(0.0, |us| *us as f64 / 1000.0)
        };
        let mut out = String::from("\n== report ==\n");
        let mut line = |label: &str, value: String, meaning: &str| {
            let _ = writeln!(out, "  {label:<30} {value}");
            let _ = writeln!(out, "  {:<30}   {meaning}", "");
        };
        line(
            "hooks run",
            format!("{} ({} failed)", self.hooks, self.hook_failures),
            "one sluice-hook process per input; failed = did not exit 0",
        );
        line(
            "dashboard events expected",
            format!("{} = {} + {}", f.expected, self.hooks, self.tasks),
            "one per hook, plus one subagent_start for each of the Task PreToolUse hooks",
        );
        line(
            "received",
            format!(
                "{} = {} distinct + {} duplicates",
                f.received, f.distinct, f.duplicates
            ),
            "distinct by event_id (by payload text without one); a resend is a duplicate",
        );
        line("lost", f.lost.to_string(), "expected - distinct");
        line(
            "spooled at the restart",
            format!(
                "{} (deepest sampled: {})",
                self.spooled_at_restart, self.deepest_sampled
            ),
            "the relay's spool depth the instant the dashboard came back (hooks paused)",
        );
        line(
            "delivered from the backlog",
            format!(
                "{} of {} distinct ({} live)",
                f.from_backlog, f.distinct, f.live
            ),
            "events of hooks run before the restart that first arrived after it: <= spooled",
        );
        line(
            "refused by the open breaker",
            format!(
                "{} attempts in {} failed send rounds",
                self.stat("dropped_breaker_open"),
                self.stat("send_retries")
            ),
            "emit attempts, not events: each round re-offers the whole spooled backlog",
        );
        line(
            "failed on the way",
            format!("{} attempts", self.stat("failed")),
            "emits that failed after leaving the relay; kept in the spool and retried",
        );
        line(
            "dropped by a full spool",
            self.stat("spool_dropped").to_string(),
            "events pushed out by the spool's cap (lost for good)",
        );
        line(
            "hook latency p50/p90/p99/max",
            format!(
                "{:.2} / {:.2} / {:.2} / {:.2} ms",
                percentile(0.5),
                percentile(0.9),
                percentile(0.99),
                percentile(1.0)
            ),
            "wall time of each hook process, start to exit",
        );
        line(
            "connects / reconnects",
            format!("{} / {}", self.stat("connects"), self.stat("reconnects")),
            "dashboard connections the relay made / made to replace lost ones",
        );
        line(
            "timeline",
            format!(
                "down {:.2}..{:.2} s, hooks done {:.2} s, all delivered {:.2} s",
                self.down_at, self.up_at, self.played_at, self.drained_at
            ),
            "seconds from the start",
        );
        let broken = self.broken();
        if broken.is_empty() {
            out.push_str("  checked: every identity above holds\n");
        } else {
            for what in broken {
                let _ = writeln!(out, "  BROKEN: {what}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded() -> Recording {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/recorded_run.json"
        );
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_report_of_a_recorded_run_adds_up() {
        let run = recorded();
        let f = run.figures();
        assert_eq!(run.broken(), Vec::<String>::new());
        assert_eq!(f.expected, run.hooks + run.tasks);
        assert_eq!(f.lost, 0);
        assert!(f.from_backlog > 0, "the outage held events back: {f:?}");
        assert!(f.from_backlog <= run.spooled_at_restart);
        let text = run.render();
        assert!(text.contains(&format!("{} distinct", f.distinct)), "{text}");
        assert!(
            text.contains("checked: every identity above holds"),
            "{text}"
        );
    }

    #[test]
    fn duplicates_and_losses_are_counted_by_identity() {
        let arrival = |key: &str, seq| Arrival {
            key: key.to_string(),
            seq: Some(seq),
        };
        let run = Recording {
            hooks: 3,
            tasks: 1,
            arrivals: vec![
                arrival("a", 0),
                arrival("b", 1),
                arrival("b", 1),
                arrival("c", 1),
            ],
            arrivals_before_restart: 1,
            hooks_before_restart: 2,
            spooled_at_restart: 2,
            ..Recording::default()
        };
        let f = run.figures();
        assert_eq!(
            (f.expected, f.received, f.distinct, f.duplicates, f.lost),
            (4, 4, 3, 1, 1)
        );
        assert_eq!((f.from_backlog, f.live), (2, 1));
        assert!(run.broken().is_empty(), "{:?}", run.broken());
        let overcounted = Recording {
            spooled_at_restart: 1,
            ..run
        };
        assert_eq!(
            overcounted.broken(),
            ["from the backlog <= spooled at the restart"]
        );
    }

    #[test]
    fn event_ids_win_over_payload_text() {
        let a = Arrival::of(
            &serde_json::json!({"data": {"event_id": "e1", "demo_seq": 4}, "timestamp": "1"}),
        );
        let b = Arrival::of(
            &serde_json::json!({"data": {"event_id": "e1", "demo_seq": 4}, "timestamp": "2"}),
        );
        assert_eq!(a.key, b.key);
        assert_eq!(a.seq, Some(4));
        let c = Arrival::of(&serde_json::json!({"data": {"demo_seq": 4}, "timestamp": "1"}));
        let d = Arrival::of(&serde_json::json!({"data": {"demo_seq": 4}, "timestamp": "2"}));
        assert_ne!(c.key, d.key);
    }
}
