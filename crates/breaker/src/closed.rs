//! Outcomes of calls admitted while closed: the hot path's plain success, and the trip
//! policies that decide when a failure opens the breaker.

use std::sync::atomic::Ordering;

use crate::classify::Outcome;
use crate::core::Core;
use crate::local::Counters;
use crate::policy::TripPolicy;
use crate::state::{gen_of, state_of, State};
use crate::window::{SlidingWindow, FAILED, SLOW};

impl Core {
    /// Records a success admitted while closed in generation `gen`: the hot path. Never
    /// changes the state, so it never calls user code.
    #[inline]
    pub(crate) fn record_closed_success(&self, counters: &Counters, gen: u32) {
        Counters::bump(&counters.successes);
        let word = self.word.load(Ordering::Acquire);
        if gen_of(word) != gen || state_of(word) != State::Closed {
            return;
        }
        // Only write when there is something to clear: the common path stays a read, so
        // other cores keep their cached copy.
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if let Some(window) = &self.window {
            let now = if window.needs_clock() { self.now() } else { 0 };
            window.record(0, now);
        }
    }

    /// A call admitted while closed in generation `gen` finished (other than the hot path's
    /// plain success): counts it against the trip policy, and opens the breaker when it is met.
    pub(crate) fn on_closed_outcome(&self, gen: u32, outcome: Outcome, slow: bool) {
        let word = self.word.load(Ordering::Acquire);
        if gen_of(word) != gen || state_of(word) != State::Closed {
            return; // the call began in an earlier state
        }
        let failed = outcome == Outcome::Failure;
        let consecutive = if failed {
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            // Only write when there is something to clear: the common success path stays a
            // read, so clones on other cores keep their cached copy.
            if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
                self.consecutive_failures.store(0, Ordering::Relaxed);
            }
            0
        };
        let trips = match (self.config.policy, &self.window) {
            (TripPolicy::ConsecutiveFailures { threshold }, _) => consecutive >= threshold,
            (
                TripPolicy::FailureRate {
                    threshold,
                    min_calls,
                    ..
                },
                Some(window),
            ) => self.rate_exceeded(window, failed, failed, slow, threshold, min_calls),
            (
                TripPolicy::SlowCallRate {
                    threshold,
                    min_calls,
                    ..
                },
                Some(window),
            ) => self.rate_exceeded(window, slow, failed, slow, threshold, min_calls),
            _ => false,
        };
        if trips {
            let now = self.now();
            self.transition_from(word, State::Open, now);
        }
    }

    /// Records the call in the window; when it was `bad`, checks the rate.
    fn rate_exceeded(
        &self,
        window: &SlidingWindow,
        bad: bool,
        failed: bool,
        slow: bool,
        threshold: f64,
        min_calls: u32,
    ) -> bool {
        let now = if window.needs_clock() { self.now() } else { 0 };
        let bits = if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        window.record(bits, now);
        if !bad {
            return false;
        }
        let tally = window.tally(now);
        let bad_calls = match self.config.policy {
            TripPolicy::SlowCallRate { .. } => tally.slow,
            _ => tally.failed,
        };
        tally.calls >= u64::from(min_calls) && bad_calls as f64 >= threshold * tally.calls as f64
    }
}
