use std::sync::Arc;

use crate::shared::{Metrics, Shards, State};

/// Observes and steers one breaker from outside the service stack.
///
/// Cheap to clone; every clone refers to the same breaker.
#[derive(Debug, Clone)]
pub struct BreakerHandle {
    shards: Arc<Shards>,
}

impl BreakerHandle {
    pub(crate) fn new(shards: Arc<Shards>) -> Self {
        Self { shards }
    }

    /// The current state, as last published (an open breaker whose period has ended still
    /// reads `Open` until the next call moves it to `HalfOpen`).
    pub fn state(&self) -> State {
        self.shards.core.state()
    }

    /// A snapshot of the counters. Sums one cache line per shard; cheap enough to poll.
    pub fn metrics(&self) -> Metrics {
        self.shards.metrics()
    }

    /// Rejects every call until [`reset`](Self::reset), whatever the outcomes.
    pub fn force_open(&self) {
        self.shards.core.force(State::ForcedOpen);
    }

    /// Admits every call and keeps counting outcomes, without ever tripping, until
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.shards.core.force(State::Disabled);
    }

    /// Closes the breaker and clears its failure counts and window; ends a forced or disabled
    /// state.
    pub fn reset(&self) {
        self.shards.core.force(State::Closed);
    }
}
