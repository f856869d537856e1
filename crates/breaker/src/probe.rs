//! Half-open probes: taking and giving back probe permits (`ProbeGuard`), and what a probe's
//! outcome does to the breaker.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::classify::Outcome;
use crate::core::{nanos, Admission, Core};
use crate::error::BreakerOpen;
use crate::policy::TripPolicy;
use crate::state::{gen_of, probes_of, state_of, successes_of, State, PROBE_ONE, SUCCESS_ONE};

/// A half-open probe permit; dropping it unused gives the permit back.
#[derive(Debug)]
pub(crate) struct ProbeGuard {
    core: Arc<Core>,
    gen: u32,
    armed: bool,
}

impl ProbeGuard {
    /// The generation of the half-open period the permit belongs to.
    pub(crate) fn generation(&self) -> u32 {
        self.gen
    }

    /// Takes the permit out of the guard, so that dropping it gives nothing back; returns
    /// the permit's generation.
    pub(crate) fn disarm(mut self) -> u32 {
        self.armed = false;
        self.gen
    }
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.core.release_probe(self.gen);
        }
    }
}

impl Core {
    /// Admission while half-open, with the state word `word`: a probe permit if one is free.
    /// `None` when the breaker moved on (or another thread took the permit first): decide
    /// again.
    pub(crate) fn admit_probe(
        self: &Arc<Self>,
        word: u64,
    ) -> Option<Result<Admission, BreakerOpen>> {
        let now = self.now();
        if probes_of(word) < self.config.half_open_max_calls {
            // Push the give-up time out before taking the permit, so that nobody who sees
            // the permit taken reads an older give-up time.
            self.deadline.fetch_max(
                now.saturating_add(nanos(self.config.probe_timeout)),
                Ordering::AcqRel,
            );
            let taken = self
                .word
                .compare_exchange(word, word + PROBE_ONE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok();
            taken.then(|| {
                Ok(Admission::Probe(ProbeGuard {
                    core: Arc::clone(self),
                    gen: gen_of(word),
                    armed: true,
                }))
            })
        } else if now >= self.deadline.load(Ordering::Acquire) {
            // Every permit is held by a probe that has not answered in time: give up on them
            // as failed, so a hung probe cannot wedge the breaker.
            self.transition_from(word, State::Open, now);
            None
        } else {
            Some(Err(BreakerOpen::new()))
        }
    }

    /// Gives back a permit of generation `gen`, if its half-open period is still on.
    pub(crate) fn release_probe(&self, gen: u32) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (gen_of(word) == gen && state_of(word) == State::HalfOpen && probes_of(word) > 0)
                    .then(|| word - PROBE_ONE)
            });
    }

    /// A probe of generation `gen` finished: a failure (or, under a slow-call policy, a slow
    /// call) reopens the breaker, enough successes close it.
    pub(crate) fn on_probe_outcome(&self, gen: u32, outcome: Outcome, slow: bool) {
        let failed = outcome == Outcome::Failure
            || (slow && matches!(self.config.policy, TripPolicy::SlowCallRate { .. }));
        loop {
            let word = self.word.load(Ordering::Acquire);
            if gen_of(word) != gen || state_of(word) != State::HalfOpen {
                return; // a probe of an earlier half-open period
            }
            if failed {
                let now = self.now();
                if self.transition_from(word, State::Open, now) {
                    return;
                }
                continue;
            }
            let succeeded = outcome == Outcome::Success;
            if succeeded && successes_of(word) + 1 >= self.config.half_open_successes {
                let now = self.now();
                if self.transition_from(word, State::Closed, now) {
                    return;
                }
                continue;
            }
            let next = word - PROBE_ONE + if succeeded { SUCCESS_ONE } else { 0 };
            if self
                .word
                .compare_exchange(word, next, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }
}
