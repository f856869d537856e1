//! The breaker's shared state machine: a plain synchronous type, apart from the `Service`.
//!
//! The state, its generation, and the half-open probe and success counts sit in one
//! `AtomicU64`, so admitting a call while closed is one atomic load, and a probe permit is one
//! compare-and-swap. Transitions are rare: they take a mutex (never held across an `.await`)
//! to serialise their bookkeeping, then publish the new word. Every transition bumps the
//! generation, so outcomes and permits of an earlier state are recognised and ignored.
//!
//! Counters live per thread (see `local`), so recording an outcome needs no atomic
//! read-modify-write at all.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::Outcome;
use crate::config::{Config, TripPolicy};
use crate::error::BreakerOpen;
use crate::hook::DynHook;
use crate::local::{self, Counters};
use crate::window::{SlidingWindow, FAILED, SLOW};

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Calls pass; outcomes are counted against the trip policy.
    Closed,
    /// Calls are rejected until the open period ends.
    Open,
    /// A bounded number of probes pass; their outcomes close or reopen the breaker.
    HalfOpen,
    /// Rejects every call until [`BreakerHandle::reset`](crate::BreakerHandle::reset).
    ForcedOpen,
    /// Admits every call and records metrics, but never trips, until
    /// [`BreakerHandle::reset`](crate::BreakerHandle::reset).
    Disabled,
}

impl State {
    /// The state's name in snake case (`"closed"`, `"half_open"`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
            Self::ForcedOpen => "forced_open",
            Self::Disabled => "disabled",
        }
    }

    const fn code(self) -> u64 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
            Self::ForcedOpen => 3,
            Self::Disabled => 4,
        }
    }

    const fn from_code(code: u64) -> Self {
        match code {
            0 => Self::Closed,
            1 => Self::Open,
            2 => Self::HalfOpen,
            3 => Self::ForcedOpen,
            _ => Self::Disabled,
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// Calls classified as [`Outcome::Ignore`].
    pub ignored: u64,
    /// Calls rejected without reaching the inner service.
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

// Layout of the state word.
const STATE_MASK: u64 = 0xff;
const PROBE_ONE: u64 = 1 << 8;
const PROBE_MASK: u64 = 0xff << 8;
const SUCCESS_ONE: u64 = 1 << 16;
const SUCCESS_MASK: u64 = 0xffff << 16;
const GEN_SHIFT: u32 = 32;

const fn state_of(word: u64) -> State {
    State::from_code(word & STATE_MASK)
}
const fn gen_of(word: u64) -> u32 {
    (word >> GEN_SHIFT) as u32
}
const fn probes_of(word: u64) -> u32 {
    ((word & PROBE_MASK) >> 8) as u32
}
const fn successes_of(word: u64) -> u32 {
    ((word & SUCCESS_MASK) >> 16) as u32
}
const fn pack(gen: u32, state: State) -> u64 {
    (gen as u64) << GEN_SHIFT | state.code()
}

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
            Self::Probe(guard) => Some(guard.gen),
            Self::Recorded => None,
        }
    }
}

/// A closed admission made by `poll_ready`, to be checked at `call`: the state word it was
/// made under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClosedTicket(u64);

impl ClosedTicket {
    pub(crate) const fn generation(self) -> u32 {
        gen_of(self.0)
    }
}

/// A half-open probe permit; dropping it unused gives the permit back.
#[derive(Debug)]
pub(crate) struct ProbeGuard {
    core: Arc<Core>,
    gen: u32,
    armed: bool,
}

impl Drop for ProbeGuard {
    fn drop(&mut self) {
        if self.armed {
            self.core.release_probe(self.gen);
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
    word: AtomicU64,
    consecutive_failures: AtomicU32,
    /// When open: the time the first probe may pass. When half-open: the time in-flight
    /// probes are given up on. In nanoseconds since `base`.
    deadline: AtomicU64,
    base: Instant,
    config: Config,
    /// The rate policies' window, or `None` for consecutive failures.
    window: Option<SlidingWindow>,
    /// The slow-call threshold, when slow calls are measured.
    slow_call: Option<Duration>,
    log: Mutex<Log>,
    transitions: AtomicU64,
    hook: Option<DynHook>,
    /// Every thread's counters (see `local`).
    threads: Mutex<Vec<Arc<Counters>>>,
    /// Counts of threads that have exited, and of records made during thread teardown.
    retired_counts: Counters,
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

    /// Nanoseconds since the breaker was built, read through `tokio::time` so a paused clock
    /// drives it.
    fn now(&self) -> u64 {
        nanos(Instant::now().saturating_duration_since(self.base))
    }

    pub(crate) fn state(&self) -> State {
        state_of(self.word.load(Ordering::Acquire))
    }

    /// A ticket for a call admitted now, if the breaker is closed.
    #[inline]
    pub(crate) fn closed_ticket(&self) -> Option<ClosedTicket> {
        let word = self.word.load(Ordering::Acquire);
        (state_of(word) == State::Closed).then_some(ClosedTicket(word))
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
    fn transition_from(&self, expected: u64, to: State, now: u64) -> bool {
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

    fn release_probe(&self, gen: u32) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (gen_of(word) == gen && state_of(word) == State::HalfOpen && probes_of(word) > 0)
                    .then(|| word - PROBE_ONE)
            });
    }

    fn on_closed_outcome(&self, gen: u32, outcome: Outcome, slow: bool) {
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

    fn on_probe_outcome(&self, gen: u32, outcome: Outcome, slow: bool) {
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
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Counters {
    fn absorb(&self, other: &Counters) {
        for (mine, theirs) in self.fields().into_iter().zip(other.fields()) {
            Counters::add_shared(mine, theirs.load(Ordering::Relaxed));
        }
    }
}

impl Core {
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
                State::ForcedOpen => return Err(BreakerOpen::new(None)),
                State::Open => {
                    let now = self.now();
                    let until = self.deadline.load(Ordering::Acquire);
                    if now < until {
                        return Err(BreakerOpen::new(Some(Duration::from_nanos(until - now))));
                    }
                    // The open period is over: this call may be the first probe.
                    self.transition_from(word, State::HalfOpen, now);
                }
                State::HalfOpen => {
                    let now = self.now();
                    if probes_of(word) < self.config.half_open_max_calls {
                        // Push the give-up time out before taking the permit, so that nobody
                        // who sees the permit taken reads an older give-up time.
                        self.deadline.fetch_max(
                            now.saturating_add(nanos(self.config.probe_timeout)),
                            Ordering::AcqRel,
                        );
                        if self
                            .word
                            .compare_exchange(
                                word,
                                word + PROBE_ONE,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                        {
                            return Ok(Admission::Probe(ProbeGuard {
                                core: Arc::clone(self),
                                gen: gen_of(word),
                                armed: true,
                            }));
                        }
                    } else if now >= self.deadline.load(Ordering::Acquire) {
                        // Every permit is held by a probe that has not answered in time: give
                        // up on them as failed, so a hung probe cannot wedge the breaker.
                        self.transition_from(word, State::Open, now);
                    } else {
                        return Err(BreakerOpen::new(None));
                    }
                }
            }
        }
    }

    /// Counts a call rejected without reaching the inner service.
    pub(crate) fn count_rejected(&self) {
        if local::with(self.id, |_, counters| Counters::bump(&counters.rejected)).is_none() {
            Counters::add_shared(&self.retired_counts.rejected, 1);
        }
    }

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
            if let Admission::Probe(mut guard) = admission {
                guard.armed = false;
                self.release_probe(guard.gen);
            }
            return;
        }
        if slow {
            Counters::bump(&counters.slow);
        }
        match admission {
            Admission::Disabled(_) | Admission::Recorded => {}
            Admission::Closed(gen) => self.on_closed_outcome(gen, outcome, slow),
            Admission::Probe(mut guard) => {
                guard.armed = false;
                self.on_probe_outcome(guard.gen, outcome, slow);
            }
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
