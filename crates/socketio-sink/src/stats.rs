//! The sink's counters.

use serde::Serialize;

/// A snapshot of the sink: the reference system's `get_stats` fields, and ours.
///
/// `submitted == sent + failed + dropped + queued` in every snapshot; `sent` counts events
/// the server acknowledged ([`Delivery::Acknowledged`](crate::Delivery::Acknowledged)) or that were written to a
/// connection whose namespace it accepted ([`Delivery::Written`](crate::Delivery::Written)), never events merely
/// queued or written and not yet acknowledged (those are `unconfirmed`, within `queued`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SinkStats {
    /// Connections allowed.
    pub max_connections: usize,
    /// Connections idle in the pool.
    pub available_connections: usize,
    /// Connections open.
    pub active_connections: usize,
    /// Events delivered (same as `sent`).
    pub total_events_sent: u64,
    /// Events that failed on the way (same as `failed`).
    pub total_errors: u64,
    /// `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub circuit_state: String,
    /// Failures in a row counted by the breaker.
    pub circuit_failures: u32,
    /// Events waiting to be sent.
    pub batch_queue_size: u64,
    /// The server.
    pub server_url: String,
    /// Events handed to `emit`.
    pub submitted: u64,
    /// Events delivered: acknowledged by the server (or written, in
    /// [`Delivery::Written`](crate::Delivery::Written)).
    pub sent: u64,
    /// Events that failed on the way (connect, emit, timeout).
    pub failed: u64,
    /// Events dropped on purpose: breaker open or queue full.
    pub dropped: u64,
    /// Of `dropped`: while the breaker was open.
    pub dropped_breaker_open: u64,
    /// Of `dropped`: the queue was full.
    pub dropped_queue_full: u64,
    /// Events accepted and not yet answered: waiting, being written or waiting for their
    /// ack.
    pub queued: u64,
    /// Of `queued`: written and waiting for the server's ack.
    pub unconfirmed: u64,
    /// Connections made.
    pub connects: u64,
    /// Connections made to replace lost ones.
    pub reconnects: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// Breaker state changes.
    pub breaker_transitions: u64,
    /// The last connect error with its host and cause, until a connect succeeds:
    /// `cannot connect to 127.0.0.1:9 (connection refused)`.
    pub last_error: Option<String>,
}
