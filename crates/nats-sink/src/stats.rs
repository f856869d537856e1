//! The sink's counters.

use serde::Serialize;

/// A snapshot of the sink. No field holds a credential.
///
/// Every event handed to [`publish`](crate::NatsSink::publish) ends in one of `confirmed`,
/// `rejected`, `failed` or `dropped`; until then it is `queued`. `confirmed` counts
/// `PublishAck`s only, never messages merely written (those are `unconfirmed`, within
/// `queued`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SinkStats {
    /// The servers, without credentials.
    pub server: String,
    /// The subject prefix.
    pub prefix: String,
    /// The subjects' host token.
    pub host: String,
    /// Whether the client is connected now.
    pub connected: bool,
    /// `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub circuit_state: String,
    /// Failed batches in a row counted by the breaker.
    pub circuit_failures: u32,
    /// Breaker state changes.
    pub breaker_transitions: u64,
    /// Events handed to `publish`.
    pub submitted: u64,
    /// Events the stream acknowledged, duplicates included.
    pub confirmed: u64,
    /// Of `confirmed`: acknowledged as duplicates (the stream had the `event_id` already).
    pub duplicates: u64,
    /// Events the server refused (their own fault, possibly).
    pub rejected: u64,
    /// Events that failed for an outage (no connection, no stream, no ack in time).
    pub failed: u64,
    /// Events turned away unsent: breaker open or queue full.
    pub dropped: u64,
    /// Of `dropped`: while the breaker was open.
    pub dropped_breaker_open: u64,
    /// Of `dropped`: the queue was full.
    pub dropped_queue_full: u64,
    /// Events accepted and not yet answered.
    pub queued: u64,
    /// Of `queued`: written and waiting for their ack.
    pub unconfirmed: u64,
    /// Connections the client made (reconnects included).
    pub connects: u64,
    /// The client's last connection error in a few words, until it connects again.
    pub last_error: Option<String>,
}
