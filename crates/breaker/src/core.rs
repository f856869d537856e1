//! The breaker's state machine: a plain synchronous type, apart from the `Service`.
//!
//! The state, its generation, and the half-open probe and success counts sit in one
//! `AtomicU64` (see `state`), so admitting a call while closed is one atomic load, and a probe
//! permit (see `probe`) is one compare-and-swap. Transitions are rare: they take a mutex (never
//! held across an `.await`) to serialise their bookkeeping, then publish the new word. Every
//! transition bumps the generation, so outcomes and permits of an earlier state are
//! recognised and ignored.
//!
//! Counters live per thread (see `local` and `metrics`), so recording an outcome needs no
//! atomic read-modify-write at all.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::Outcome;
use crate::config::Config;
use crate::error::BreakerOpen;
use crate::hook::DynHook;
use crate::local::{self, Counters};
use crate::policy::TripPolicy;
use crate::probe::ProbeGuard;
use crate::state::{gen_of, pack, probes_of, state_of, ClosedTicket, State};
use crate::window::SlidingWindow;

/// What `poll_ready` reserved for the next call.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Admitted while closed, in generation `gen`.
    Closed(u32),
    /// Admitted while disabled, in generation `gen`.
    Disabled(u32),
    /// A half-open probe permit, returned when dropped unused.
    Probe(ProbeGuard),
    /// The outcome was recorded; nothing is left.
    Recorded,
}

impl Admission {
    /// The generation the admission was made in.
    fn generation(&self) -> Option<u32> {
        match self {
            Self::Closed(gen) | Self::Disabled(gen) => Some(*gen),
            Self::Probe(guard) => Some(guard.generation()),
            Self::Recorded => None,
        }
    }
}

struct Log {
    entered: u64,
    reopens: u32,
}

/// The state machine shared by every clone of one breaker.
pub(crate) struct Core {
    id: u64,
    pub(crate) word: AtomicU64,
    pub(crate) consecutive_failures: AtomicU32,
    /// When open: the time the first probe may pass. When half-open: the time in-flight
    /// probes are given up on. In nanoseconds since `base`.
    pub(crate) deadline: AtomicU64,
    base: Instant,
    pub(crate) config: Config,
    /// The rate policies' window, or `None` for consecutive failures.
    pub(crate) window: Option<SlidingWindow>,
    /// The slow-call threshold, when slow calls are measured.
    slow_call: Option<Duration>,
    log: Mutex<Log>,
    transitions: AtomicU64,
    hook: Option<DynHook>,
    /// Every thread's counters (see `local`).
    pub(crate) threads: Mutex<Vec<Arc<Counters>>>,
    /// Counts of threads that have exited, and of records made during thread teardown.
    pub(crate) retired_counts: Counters,
    /// Set when no layer, service or handle refers to the breaker any more.
    retired: AtomicBool,
}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("state", &self.state())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl Core {
    fn new(config: Config, hook: Option<DynHook>) -> Self {
        let (window, slow_call) = match config.policy {
            TripPolicy::ConsecutiveFailures { .. } => (None, None),
            TripPolicy::FailureRate { window, .. } => (Some(SlidingWindow::new(window)), None),
            TripPolicy::SlowCallRate {
                window, slow_call, ..
            } => (Some(SlidingWindow::new(window)), Some(slow_call)),
        };
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            word: AtomicU64::new(pack(0, State::Closed)),
            consecutive_failures: AtomicU32::new(0),
            deadline: AtomicU64::new(0),
            base: Instant::now(),
            config,
            window,
            slow_call,
            log: Mutex::new(Log {
                entered: 0,
                reopens: 0,
            }),
            transitions: AtomicU64::new(0),
            hook,
            threads: Mutex::new(Vec::new()),
            retired_counts: Counters::default(),
            retired: AtomicBool::new(false),
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Relaxed)
    }

    /// Nanoseconds since the breaker was built, read through `tokio::time` so a paused clock
    /// drives it.
    pub(crate) fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }

    pub(crate) fn state(&self) -> State {
        state_of(self.word.load(Ordering::Acquire))
    }

    /// A ticket for a call admitted now if the breaker is closed, or else the state word.
    #[inline]
    pub(crate) fn closed_ticket(&self) -> Result<ClosedTicket, u64> {
        let word = self.word.load(Ordering::Acquire);
        if state_of(word) == State::Closed {
            Ok(ClosedTicket(word))
        } else {
            Err(word)
        }
    }

    /// The state word now, with when its open period ends if it is `Open`: read together, so
    /// that the end belongs to that word's period. A service keeps the pair to reject calls
    /// of the same period by comparing the clock with an `Instant`, without converting it.
    pub(crate) fn open_until(&self) -> Option<(u64, Instant)> {
        let word = self.word.load(Ordering::Acquire);
        let until = self.deadline.load(Ordering::Acquire);
        // A transition stores its deadline before its word: an unchanged word after the
        // read means the deadline was this period's (or a later one's, not yet published,
        // which the word then retires).
        (state_of(word) == State::Open && self.word.load(Ordering::Acquire) == word)
            .then(|| (word, self.base + Duration::from_nanos(until)))
    }

    /// Whether the breaker is still in the state `ticket` was issued in. One relaxed load: a
    /// ticket is a reservation, not a synchronisation point.
    #[inline]
    pub(crate) fn honours(&self, ticket: ClosedTicket) -> bool {
        self.word.load(Ordering::Relaxed) == ticket.0
    }

    /// Whether `admission` was made in the current generation.
    pub(crate) fn is_current(&self, admission: &Admission) -> bool {
        admission.generation() == Some(gen_of(self.word.load(Ordering::Acquire)))
    }

    pub(crate) fn measures_duration(&self) -> bool {
        self.slow_call.is_some()
    }

    /// Moves from the state of `expected` (same generation) to `to`; false if another thread
    /// moved first.
    pub(crate) fn transition_from(&self, expected: u64, to: State, now: u64) -> bool {
        self.transition(Some(expected), to, now)
    }

    /// Moves to `to` from whatever state the breaker is in (the handle's manual controls).
    pub(crate) fn force(&self, to: State) {
        let now = self.now();
        self.transition(None, to, now);
    }

    fn transition(&self, expected: Option<u64>, to: State, now: u64) -> bool {
        let from = {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            // Only transitions change the state and generation, and all of them hold the lock,
            // so this check cannot go stale before the store below.
            let current = self.word.load(Ordering::Acquire);
            if let Some(expected) = expected {
                if gen_of(current) != gen_of(expected) || state_of(current) != state_of(expected) {
                    return false;
                }
            }
            let from = state_of(current);
            match to {
                State::Open => {
                    log.reopens = if from == State::HalfOpen {
                        log.reopens.saturating_add(1)
                    } else {
                        0
                    };
                    let period = self.config.open_duration.period(log.reopens);
                    self.deadline
                        .store(now.saturating_add(nanos(period)), Ordering::Release);
                }
                State::HalfOpen => {
                    self.deadline.store(
                        now.saturating_add(nanos(self.config.probe_timeout)),
                        Ordering::Release,
                    );
                }
                State::Closed | State::ForcedOpen | State::Disabled => {
                    self.consecutive_failures.store(0, Ordering::Relaxed);
                    if let Some(window) = &self.window {
                        window.reset();
                    }
                    if to == State::Closed {
                        log.reopens = 0;
                    }
                }
            }
            log.entered = now;
            // Probe and success counts start again at zero with the new generation; permits
            // of the old one are recognised by their generation and ignored.
            self.word
                .store(pack(gen_of(current).wrapping_add(1), to), Ordering::Release);
            self.transitions.fetch_add(1, Ordering::Relaxed);
            from
        };
        tracing::info!(
            target: "sluice_breaker",
            from = from.as_str(),
            to = to.as_str(),
            "circuit breaker state changed"
        );
        if let Some(hook) = &self.hook {
            hook.0.on_state_change(from, to);
        }
        true
    }

    pub(crate) fn time_in_state(&self) -> Duration {
        let entered = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entered;
        Duration::from_nanos(self.now().saturating_sub(entered))
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// Decides whether the next call may pass. A rejection is not counted here: the caller
    /// counts it with [`count_rejected`](Self::count_rejected) when the call is made.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>) -> Result<Admission, BreakerOpen> {
        let word = self.word.load(Ordering::Acquire);
        if state_of(word) == State::Closed {
            return Ok(Admission::Closed(gen_of(word)));
        }
        self.admit_slow()
    }

    #[inline(never)]
    fn admit_slow(self: &Arc<Self>) -> Result<Admission, BreakerOpen> {
        loop {
            let word = self.word.load(Ordering::Acquire);
            match state_of(word) {
                State::Closed => return Ok(Admission::Closed(gen_of(word))),
                State::Disabled => return Ok(Admission::Disabled(gen_of(word))),
                State::ForcedOpen => return Err(BreakerOpen::new()),
                State::Open => {
                    let now = self.now();
                    let until = self.deadline.load(Ordering::Acquire);
                    if now < until {
                        return Err(BreakerOpen::new());
                    }
                    // The open period is over: this call may be the first probe.
                    self.transition_from(word, State::HalfOpen, now);
                }
                State::HalfOpen => {
                    if let Some(decided) = self.admit_probe(word) {
                        return decided;
                    }
                }
            }
        }
    }

    /// How long until a call may pass, as of now: zero while calls pass, the rest of the
    /// open period while open, `None` when not known (forced open, or half-open with every
    /// probe permit taken).
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        loop {
            let word = self.word.load(Ordering::Acquire);
            let until = self.deadline.load(Ordering::Acquire);
            // The deadline belongs to the state read only if no transition came in between.
            if self.word.load(Ordering::Acquire) != word {
                continue;
            }
            return match state_of(word) {
                State::Closed | State::Disabled => Some(Duration::ZERO),
                State::ForcedOpen => None,
                State::Open => Some(Duration::from_nanos(until.saturating_sub(self.now()))),
                State::HalfOpen => {
                    (probes_of(word) < self.config.half_open_max_calls).then_some(Duration::ZERO)
                }
            };
        }
    }

    /// Records a finished call admitted by `admission`, in this thread's `counters`.
    pub(crate) fn record(
        &self,
        counters: &Counters,
        admission: Admission,
        outcome: Outcome,
        elapsed: Option<Duration>,
    ) {
        let slow = match (self.slow_call, elapsed) {
            (Some(threshold), Some(elapsed)) => elapsed >= threshold,
            _ => false,
        };
        Counters::bump(match outcome {
            Outcome::Success => &counters.successes,
            Outcome::Failure => &counters.failures,
            Outcome::Ignore => &counters.ignored,
        });
        if outcome == Outcome::Ignore {
            if let Admission::Probe(guard) = admission {
                self.release_probe(guard.disarm());
            }
            return;
        }
        if slow {
            Counters::bump(&counters.slow);
        }
        match admission {
            Admission::Disabled(_) | Admission::Recorded => {}
            Admission::Closed(gen) => self.on_closed_outcome(gen, outcome, slow),
            Admission::Probe(guard) => self.on_probe_outcome(guard.disarm(), outcome, slow),
        }
    }
}

/// The owners' reference to a breaker: held by its layers, services and handles (not by
/// response futures). When the last owner goes, threads drop their hold on the breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    pub(crate) core: Arc<Core>,
}

impl Breaker {
    pub(crate) fn new(config: Config, hook: Option<DynHook>) -> Self {
        let core = Arc::new(Core::new(config, hook));
        local::register(core.id, &core);
        Self { core }
    }
}

impl Drop for Breaker {
    fn drop(&mut self) {
        self.core.retired.store(true, Ordering::Relaxed);
        local::unregister(self.core.id);
    }
}

/// A duration in nanoseconds, saturated at `u64::MAX` (584 years).
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    //! The state machine alone, driven without a `Service`, on a paused clock.

    use tokio::time::advance;

    use super::*;
    use crate::policy::OpenDuration;

    const OPEN: Duration = Duration::from_secs(30);
    const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

    fn breaker(threshold: u32, half_open_max_calls: u32, half_open_successes: u32) -> Breaker {
        let config = Config {
            policy: TripPolicy::consecutive_failures(threshold),
            open_duration: OpenDuration::Fixed(OPEN),
            half_open_max_calls,
            half_open_successes,
            probe_timeout: PROBE_TIMEOUT,
        };
        Breaker::new(config, None)
    }

    fn finish(core: &Core, admission: Admission, outcome: Outcome) {
        local::with(core.id(), |core, counters| {
            core.record(counters, admission, outcome, None);
        })
        .expect("the breaker is alive");
    }

    fn fail(core: &Arc<Core>) {
        let admission = core.admit().expect("admitted");
        finish(core, admission, Outcome::Failure);
    }

    /// Expects a rejection, and reads how long until a call may pass.
    fn retry_after(core: &Core, result: Result<Admission, BreakerOpen>) -> Option<Duration> {
        result.expect_err("rejected");
        core.retry_after()
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_open_it_and_a_success_resets_the_count() {
        let breaker = breaker(3, 1, 1);
        let core = &breaker.core;
        fail(core);
        fail(core);
        let admission = core.admit().unwrap();
        finish(core, admission, Outcome::Success);
        assert_eq!(core.consecutive_failures(), 0);
        let admission = core.admit().unwrap();
        finish(core, admission, Outcome::Ignore);
        fail(core);
        fail(core);
        assert_eq!(
            (core.state(), core.consecutive_failures()),
            (State::Closed, 2)
        );
        fail(core);
        assert_eq!((core.state(), core.transitions()), (State::Open, 1));

        advance(Duration::from_secs(10)).await;
        assert_eq!(
            retry_after(core, core.admit()),
            Some(Duration::from_secs(20))
        );
        // Deciding a rejection counts nothing: the caller counts it when the call is made.
        assert_eq!(core.metrics().rejected, 0);
        core.count_rejected();
        let metrics = core.metrics();
        assert_eq!(
            (metrics.successes, metrics.failures, metrics.ignored),
            (1, 5, 1)
        );
        assert_eq!(metrics.rejected, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_hands_out_at_most_max_calls_permits_and_takes_dropped_ones_back() {
        let breaker = breaker(1, 2, 1);
        let core = &breaker.core;
        fail(core);
        advance(OPEN).await;
        let first = core.admit().unwrap();
        assert_eq!(core.state(), State::HalfOpen);
        let second = core.admit().unwrap();
        assert!(matches!(second, Admission::Probe(_)));
        assert_eq!(
            retry_after(core, core.admit()),
            None,
            "both permits are taken"
        );
        drop(first);
        let third = core.admit().unwrap();
        assert!(matches!(third, Admission::Probe(_)));
        // An ignored probe gives its permit back too.
        finish(core, third, Outcome::Ignore);
        let fourth = core.admit().unwrap();
        assert_eq!(core.state(), State::HalfOpen);
        drop((second, fourth));
    }

    #[tokio::test(start_paused = true)]
    async fn enough_probe_successes_close_it_and_a_probe_failure_reopens_it() {
        let breaker = breaker(1, 2, 2);
        let core = &breaker.core;
        fail(core);
        advance(OPEN).await;
        let (a, b) = (core.admit().unwrap(), core.admit().unwrap());
        finish(core, a, Outcome::Success);
        assert_eq!(core.state(), State::HalfOpen, "one success of two");
        finish(core, b, Outcome::Success);
        assert_eq!(core.state(), State::Closed);

        fail(core);
        advance(OPEN).await;
        let (a, b) = (core.admit().unwrap(), core.admit().unwrap());
        finish(core, a, Outcome::Failure);
        assert_eq!(core.state(), State::Open);
        assert_eq!(retry_after(core, core.admit()), Some(OPEN));
        // The other probe belongs to the half-open period that is over: it changes nothing.
        finish(core, b, Outcome::Success);
        assert_eq!((core.state(), core.transitions()), (State::Open, 6));
    }

    #[tokio::test(start_paused = true)]
    async fn permits_held_past_the_probe_timeout_are_given_up_on() {
        let breaker = breaker(1, 1, 1);
        let core = &breaker.core;
        fail(core);
        advance(OPEN).await;
        let hung = core.admit().unwrap();
        advance(PROBE_TIMEOUT - Duration::from_millis(1)).await;
        assert_eq!(retry_after(core, core.admit()), None);
        assert_eq!(core.state(), State::HalfOpen);
        advance(Duration::from_millis(1)).await;
        assert_eq!(retry_after(core, core.admit()), Some(OPEN));
        assert_eq!(core.state(), State::Open);
        finish(core, hung, Outcome::Success);
        assert_eq!(core.state(), State::Open, "the late probe is ignored");
    }

    #[test]
    fn outcomes_and_tickets_of_an_earlier_generation_are_stale() {
        let breaker = breaker(1, 1, 1);
        let core = &breaker.core;
        let ticket = core.closed_ticket().expect("closed");
        let early = core.admit().unwrap();
        assert!(core.honours(ticket) && core.is_current(&early));

        core.force(State::ForcedOpen);
        assert!(core.closed_ticket().is_err());
        assert_eq!(retry_after(core, core.admit()), None);
        core.force(State::Closed);
        // Closed again, but in a later generation.
        assert!(!core.honours(ticket) && !core.is_current(&early));
        finish(core, early, Outcome::Failure);
        assert_eq!(core.state(), State::Closed, "a stale failure does not trip");
        assert_eq!(core.metrics().failures, 1, "but it is counted");

        let ticket = core.closed_ticket().unwrap();
        assert_eq!(ticket.generation(), 2);
        assert!(core.honours(ticket));
    }

    #[test]
    fn disabled_admits_everything_and_never_trips() {
        let breaker = breaker(1, 1, 1);
        let core = &breaker.core;
        core.force(State::Disabled);
        for _ in 0..10 {
            let admission = core.admit().unwrap();
            assert!(matches!(admission, Admission::Disabled(1)));
            finish(core, admission, Outcome::Failure);
        }
        assert_eq!(core.state(), State::Disabled);
        assert_eq!(core.metrics().failures, 10);
        core.force(State::Closed);
        assert_eq!(core.consecutive_failures(), 0);
        fail(core);
        assert_eq!((core.state(), core.transitions()), (State::Open, 3));
    }
}
