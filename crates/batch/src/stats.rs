//! Counters.

use crate::batch::FlushReason;

/// Counts kept under the state lock, so that a snapshot always satisfies
/// `submitted == sent + failed + rejected + dropped + queued`.
///
/// `repr(C)`: the two that every `call` updates come first.
#[derive(Debug, Default, Clone)]
#[repr(C)]
pub(crate) struct Counts {
    pub(crate) submitted: u64,
    /// Accepted, not yet handed to the inner service.
    pub(crate) waiting: u64,
    pub(crate) sent: u64,
    pub(crate) failed: u64,
    pub(crate) rejected: u64,
    pub(crate) dropped: u64,
    /// Handed to the inner service, which has not answered yet.
    pub(crate) in_flight: u64,
    pub(crate) batches: BatchCounts,
}

impl Counts {
    pub(crate) fn count_batch(&mut self, reason: FlushReason) {
        let counter = match reason {
            FlushReason::Size => &mut self.batches.size,
            FlushReason::Bytes => &mut self.batches.bytes,
            FlushReason::Time => &mut self.batches.time,
            FlushReason::Idle => &mut self.batches.idle,
            FlushReason::Flush => &mut self.batches.flush,
            FlushReason::Shutdown => &mut self.batches.shutdown,
        };
        *counter += 1;
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            queue_len: self.waiting,
            in_flight: self.in_flight,
            submitted: self.submitted,
            sent: self.sent,
            failed: self.failed,
            rejected: self.rejected,
            dropped: self.dropped,
            queued: self.waiting + self.in_flight,
            batches: self.batches.clone(),
        }
    }
}

/// Batches handed to the inner service, by the reason they were handed over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchCounts {
    /// Full at `max_items`.
    pub size: u64,
    /// Full at `max_bytes`.
    pub bytes: u64,
    /// Due at `max_wait`.
    pub time: u64,
    /// Handed over at once, their key being idle ([`Dispatch::Eager`](crate::Dispatch::Eager)).
    pub idle: u64,
    /// Asked for by a flush.
    pub flush: u64,
    /// Handed over while shutting down.
    pub shutdown: u64,
}

impl BatchCounts {
    /// All batches handed over.
    pub fn total(&self) -> u64 {
        self.size + self.bytes + self.time + self.idle + self.flush + self.shutdown
    }
}

/// A consistent snapshot of a batcher's counters.
///
/// Taken under the batcher's lock, so `submitted == sent + failed + rejected + dropped +
/// queued` holds in every snapshot. An item counts as sent only once the inner service has answered Ok for its
/// batch.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Items waiting for the inner service.
    pub queue_len: u64,
    /// Items in batches the inner service has not answered yet.
    pub in_flight: u64,
    /// Items offered to `call`, dropped ones included.
    pub submitted: u64,
    /// Items whose batch the inner service answered Ok.
    pub sent: u64,
    /// Items whose batch failed, or that could not be delivered (the worker was gone).
    pub failed: u64,
    /// Items whose batch failed with an error the
    /// [`rejected_if`](crate::Builder::rejected_if) classifier accepts.
    pub rejected: u64,
    /// Items turned away because the queue was full.
    pub dropped: u64,
    /// Items accepted and not yet answered: `queue_len + in_flight`.
    pub queued: u64,
    /// Batches handed over, by reason.
    pub batches: BatchCounts,
}
