//! [`BreakerHandle`]: watching and steering a breaker from outside the service stack.

use std::sync::Arc;
use std::time::Duration;

use crate::core::Breaker;
use crate::metrics::Metrics;
use crate::state::State;

/// Observes and steers one breaker from outside the service stack.
///
/// Cheap to clone; every clone refers to the same breaker.
#[derive(Debug, Clone)]
pub struct BreakerHandle {
    breaker: Arc<Breaker>,
}

impl BreakerHandle {
    pub(crate) fn new(breaker: Arc<Breaker>) -> Self {
        Self { breaker }
    }

    /// The current state, as last published (an open breaker whose period has ended still
    /// reads `Open` until the next call moves it to `HalfOpen`).
    pub fn state(&self) -> State {
        self.breaker.core.state()
    }

    /// A snapshot of the counters: sums one set of counters per thread that used the
    /// breaker; cheap enough to poll.
    pub fn metrics(&self) -> Metrics {
        self.breaker.core.metrics()
    }

    /// How long until the breaker lets a call through, as of now.
    ///
    /// Zero while it admits calls (closed, disabled, half-open with a probe permit free, or
    /// open with its period over: the next call is a probe); the rest of the open period while
    /// open; `None` when that is not known: forced open through this handle, or half-open with
    /// every probe permit taken. Read it after a [`BreakerOpen`](crate::BreakerOpen) rejection
    /// to know when to retry.
    pub fn retry_after(&self) -> Option<Duration> {
        self.breaker.core.retry_after()
    }

    /// Rejects every call until [`reset`](Self::reset), whatever the outcomes.
    pub fn force_open(&self) {
        self.breaker.core.force(State::ForcedOpen);
    }

    /// Admits every call and keeps counting outcomes, without ever tripping, until
    /// [`reset`](Self::reset).
    pub fn disable(&self) {
        self.breaker.core.force(State::Disabled);
    }

    /// Closes the breaker and clears its failure counts and window; ends a forced or disabled
    /// state.
    pub fn reset(&self) {
        self.breaker.core.force(State::Closed);
    }
}
