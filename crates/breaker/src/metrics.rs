//! The breaker's counters: the public `Metrics` snapshot, and how the per-thread counters
//! (see `local`) are registered, folded in when their thread exits, and summed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::core::Core;
use crate::local::{self, Counters};
use crate::state::State;

/// A snapshot of a breaker's counters; every count covers all clones since the breaker was
/// built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// The state when the snapshot was taken.
    pub state: State,
    /// Calls classified as successes.
    pub successes: u64,
    /// Calls classified as failures.
    pub failures: u64,
    /// Calls classified as [`Outcome::Ignore`](crate::Outcome::Ignore).
    pub ignored: u64,
    /// Calls rejected without reaching the inner service (counted when the call is made).
    pub rejected: u64,
    /// Calls at least as slow as the slow-call threshold (only with a slow-call policy).
    pub slow: u64,
    /// Failures in a row while closed.
    pub consecutive_failures: u32,
    /// State changes so far.
    pub transitions: u64,
    /// How long the breaker has been in `state`.
    pub time_in_state: Duration,
}

impl Counters {
    fn absorb(&self, other: &Counters) {
        for (mine, theirs) in self.fields().into_iter().zip(other.fields()) {
            Counters::add_shared(mine, theirs.load(Ordering::Relaxed));
        }
    }
}

impl Core {
    /// Counters for a thread that meets this breaker for the first time.
    pub(crate) fn add_thread(&self) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        // Fold in the counters of threads that have exited, so the list stays as long as
        // the number of live threads.
        threads.retain(|thread| {
            let alive = Arc::strong_count(thread) > 1;
            if !alive {
                self.retired_counts.absorb(thread);
            }
            alive
        });
        threads.push(Arc::clone(&counters));
        counters
    }

    /// Counts a call rejected without reaching the inner service.
    pub(crate) fn count_rejected(&self) {
        // No user code runs here: the table can stay borrowed (see `local`).
        let counted = local::with_no_reentry(self.id(), |_, counters| {
            Counters::bump(&counters.rejected);
        });
        if counted.is_none() {
            Counters::add_shared(&self.retired_counts.rejected, 1);
        }
    }

    pub(crate) fn metrics(&self) -> Metrics {
        let mut totals = [0u64; 5];
        let mut add = |counters: &Counters| {
            for (total, field) in totals.iter_mut().zip(counters.fields()) {
                *total += field.load(Ordering::Relaxed);
            }
        };
        add(&self.retired_counts);
        for thread in self
            .threads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            add(thread);
        }
        let [successes, failures, ignored, rejected, slow] = totals;
        Metrics {
            state: self.state(),
            successes,
            failures,
            ignored,
            rejected,
            slow,
            consecutive_failures: self.consecutive_failures(),
            transitions: self.transitions(),
            time_in_state: self.time_in_state(),
        }
    }
}
