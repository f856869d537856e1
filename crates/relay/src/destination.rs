//! The delivery contract: an event in, confirmed or failed out. Every sink the relay can
//! deliver to implements [`Destination`], so nothing in the relay's delivery knows one
//! transport from another: ids, dead letters and stats work the same for all of them.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

/// A boxed error, as the sinks' layers use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a [`Destination::send`] resolves to once the event was confirmed or failed.
pub type Pending = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>;

/// One stored event on its way out.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its identity (the dashboard's `data.event_id`, NATS's `Nats-Msg-Id`).
    pub event_id: String,
    /// The `claude_event` payload, as the JSON text the store kept.
    pub payload: String,
}

/// Where the relay delivers its store.
///
/// `send` queues the event at once, in call order (a destination keeps the order of the
/// events it is given), and returns a future that resolves when the event is confirmed or
/// has failed. It never blocks.
pub trait Destination: Send + Sync + 'static {
    /// Queues `event`; the future tells whether the destination confirmed it.
    fn send(&self, event: Outgoing) -> Pending;

    /// The destination's own counters and state, as JSON (merged into the relay's stats).
    fn stats(&self) -> Value;

    /// Sends what is queued, within `grace`, then closes.
    fn shutdown(&self, grace: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Why an event was not confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Not sent: the destination turned it away (its breaker is open) and says when to try
    /// again, if it knows.
    TurnedAway { retry_after: Option<Duration> },
    /// The destination could not be reached, or has nowhere to put the event (no stream):
    /// an outage, never the event's own doing.
    Outage,
    /// Sent and not confirmed: no acknowledgement in time (`no_ack`), the connection dropped
    /// under it, or the destination rejected it. This could be the event's own fault.
    Unconfirmed { no_ack: bool },
    /// The payload is not something any destination could take (not JSON): it is let go,
    /// and counted.
    Unreadable,
}

/// An event that was not confirmed: how, and the error with its causes.
#[derive(Debug)]
pub struct Failure {
    kind: FailureKind,
    error: BoxError,
}

impl Failure {
    pub fn new(kind: FailureKind, error: impl Into<BoxError>) -> Self {
        Self {
            kind,
            error: error.into(),
        }
    }

    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// Whether the failure could be the event's own (then it is isolated, see `blame`).
    pub fn could_be_the_event(&self) -> bool {
        matches!(self.kind, FailureKind::Unconfirmed { .. })
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            FailureKind::TurnedAway { .. } => "turned away",
            FailureKind::Outage => "destination unreachable",
            FailureKind::Unconfirmed { no_ack: true } => "not acknowledged",
            FailureKind::Unconfirmed { no_ack: false } => "not confirmed",
            FailureKind::Unreadable => "unreadable payload",
        })
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}
