//! Property test: random outcomes, durations, time steps and concurrent probes, run against
//! the breaker and against a small reference model of the state machine written here without
//! atomics. Every admission decision, state and counter must agree.

use std::time::Duration;

use proptest::prelude::*;
use sluice_breaker::{
    BoxError, BreakerOpen, CircuitBreakerLayer, OpenDuration, Outcome, State, TripPolicy, Window,
};
use tokio::sync::oneshot;
use tokio_test::task;
use tower::{Layer, Service};

const MS: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
enum Policy {
    Consecutive(u32),
    FailureCount {
        threshold: f64,
        n: u32,
        min: u32,
    },
    FailureTime {
        threshold: f64,
        span_ms: u64,
        buckets: u32,
        min: u32,
    },
    SlowCount {
        threshold: f64,
        slow_ms: u64,
        n: u32,
        min: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct Config {
    policy: Policy,
    /// Fixed open period, or backoff from `open_ms` doubling up to `max_ms`.
    open_ms: u64,
    backoff_max_ms: Option<u64>,
    max_probes: u32,
    successes: u32,
    probe_timeout_ms: u64,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Start,
    Complete(usize, Outcome),
    Drop(usize),
    ReserveAndDrop,
    /// `poll_ready` on a clone that is called later, by `CallReserved`, whatever happens
    /// in between.
    Reserve,
    CallReserved,
    Advance(u64),
    ForceOpen,
    Disable,
    Reset,
}

fn policy() -> impl Strategy<Value = Policy> {
    let threshold = prop::sample::select(vec![0.2, 0.5, 0.75, 1.0]);
    prop_oneof![
        (1u32..=5).prop_map(Policy::Consecutive),
        (threshold.clone(), 1u32..=8, 1u32..=5)
            .prop_map(|(threshold, n, min)| Policy::FailureCount { threshold, n, min }),
        (threshold.clone(), 100u64..=2_000, 1u32..=5, 1u32..=5).prop_map(
            |(threshold, span_ms, buckets, min)| Policy::FailureTime {
                threshold,
                span_ms,
                buckets,
                min
            }
        ),
        (threshold, 10u64..=200, 1u32..=8, 1u32..=5).prop_map(|(threshold, slow_ms, n, min)| {
            Policy::SlowCount {
                threshold,
                slow_ms,
                n,
                min,
            }
        }),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (
        policy(),
        1u64..=1_000,
        prop::option::of(1u64..=8),
        1u32..=3,
        1u32..=3,
        50u64..=2_000,
    )
        .prop_map(
            |(policy, open_ms, factor, max_probes, successes, probe_timeout_ms)| Config {
                policy,
                open_ms,
                backoff_max_ms: factor.map(|f| open_ms * f),
                max_probes,
                successes,
                probe_timeout_ms,
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        3 => Just(Outcome::Success),
        3 => Just(Outcome::Failure),
        1 => Just(Outcome::Ignore),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Start),
        8 => (any::<usize>(), outcome()).prop_map(|(i, o)| Op::Complete(i, o)),
        1 => any::<usize>().prop_map(Op::Drop),
        1 => Just(Op::ReserveAndDrop),
        2 => Just(Op::Reserve),
        2 => Just(Op::CallReserved),
        6 => (0u64..=700).prop_map(Op::Advance),
        1 => prop_oneof![Just(Op::ForceOpen), Just(Op::Disable), Just(Op::Reset)],
    ]
}

type Classifier = fn(&Result<&'static str, &'static str>) -> Outcome;

fn build(config: &Config) -> CircuitBreakerLayer<Classifier> {
    let policy = match config.policy {
        Policy::Consecutive(n) => TripPolicy::consecutive_failures(n),
        Policy::FailureCount { threshold, n, min } => {
            TripPolicy::failure_rate(threshold, Window::last_calls(n)).min_calls(min)
        }
        Policy::FailureTime {
            threshold,
            span_ms,
            buckets,
            min,
        } => TripPolicy::failure_rate(
            threshold,
            Window::last_in_buckets(Duration::from_millis(span_ms), buckets),
        )
        .min_calls(min),
        Policy::SlowCount {
            threshold,
            slow_ms,
            n,
            min,
        } => TripPolicy::slow_call_rate(
            threshold,
            Duration::from_millis(slow_ms),
            Window::last_calls(n),
        )
        .min_calls(min),
    };
    let open = Duration::from_millis(config.open_ms);
    let builder = CircuitBreakerLayer::builder()
        .trip_policy(policy)
        .half_open_max_calls(config.max_probes)
        .half_open_successes(config.successes)
        .probe_timeout(Duration::from_millis(config.probe_timeout_ms));
    let builder = match config.backoff_max_ms {
        None => builder.open_duration(open),
        Some(max) => builder.open_backoff(OpenDuration::backoff(open, Duration::from_millis(max))),
    };
    let classify: Classifier = |result| match result {
        Ok("ignore") => Outcome::Ignore,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    };
    builder.classifier(classify).build().unwrap()
}

/// The reference model: the state machine, written as plainly as possible.
#[derive(Debug)]
struct Model {
    config: Config,
    state: State,
    gen: u64,
    consecutive: u32,
    /// Every call recorded since the window was last cleared: (time, failed, slow).
    window: Vec<(u64, bool, bool)>,
    open_until: u64,
    probe_deadline: u64,
    probes: u32,
    successes: u32,
    reopens: u32,
    counts: [u64; 5], // successes, failures, ignored, rejected, slow
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Admit {
    Closed(u64),
    Probe(u64),
    Disabled(u64),
}

impl Admit {
    fn gen(self) -> u64 {
        match self {
            Self::Closed(gen) | Self::Probe(gen) | Self::Disabled(gen) => gen,
        }
    }
}

impl Model {
    fn new(config: Config) -> Self {
        Self {
            config,
            state: State::Closed,
            gen: 0,
            consecutive: 0,
            window: Vec::new(),
            open_until: 0,
            probe_deadline: 0,
            probes: 0,
            successes: 0,
            reopens: 0,
            counts: [0; 5],
        }
    }

    fn open_period(&self) -> u64 {
        match self.config.backoff_max_ms {
            None => self.config.open_ms * MS,
            Some(max) => {
                let grown = self.config.open_ms as f64 * 2f64.powi(self.reopens as i32);
                if grown < max as f64 {
                    Duration::from_secs_f64(grown / 1_000.0).as_nanos() as u64
                } else {
                    max * MS
                }
            }
        }
    }

    fn to(&mut self, state: State, now: u64) {
        match state {
            State::Open => {
                self.reopens = if self.state == State::HalfOpen {
                    self.reopens + 1
                } else {
                    0
                };
                self.open_until = now + self.open_period();
            }
            State::HalfOpen => self.probe_deadline = now + self.config.probe_timeout_ms * MS,
            _ => {
                self.consecutive = 0;
                self.window.clear();
                if state == State::Closed {
                    self.reopens = 0;
                }
            }
        }
        self.state = state;
        self.gen += 1;
        self.probes = 0;
        self.successes = 0;
    }

    fn admit(&mut self, now: u64) -> Option<Admit> {
        loop {
            match self.state {
                State::Closed => return Some(Admit::Closed(self.gen)),
                State::Disabled => return Some(Admit::Disabled(self.gen)),
                State::Open if now >= self.open_until => self.to(State::HalfOpen, now),
                State::HalfOpen if self.probes < self.config.max_probes => {
                    self.probe_deadline = self
                        .probe_deadline
                        .max(now + self.config.probe_timeout_ms * MS);
                    self.probes += 1;
                    return Some(Admit::Probe(self.gen));
                }
                State::HalfOpen if now >= self.probe_deadline => self.to(State::Open, now),
                // A rejection is counted when the rejected call is made (see `Op::Start`).
                _ => return None,
            }
        }
    }

    fn release(&mut self, admit: Admit) {
        if admit == Admit::Probe(self.gen) && self.state == State::HalfOpen && self.probes > 0 {
            self.probes -= 1;
        }
    }

    fn slow_ms(&self) -> Option<u64> {
        match self.config.policy {
            Policy::SlowCount { slow_ms, .. } => Some(slow_ms),
            _ => None,
        }
    }

    fn window_tally(&self, now: u64) -> (u64, u64, u64) {
        let records: Vec<_> = match self.config.policy {
            Policy::Consecutive(_) => return (0, 0, 0),
            Policy::FailureCount { n, .. } | Policy::SlowCount { n, .. } => {
                let skip = self.window.len().saturating_sub(n as usize);
                self.window[skip..].to_vec()
            }
            Policy::FailureTime {
                span_ms, buckets, ..
            } => {
                let width = (span_ms * MS / u64::from(buckets)).max(1);
                self.window
                    .iter()
                    .copied()
                    .filter(|(t, _, _)| now / width - t / width < u64::from(buckets))
                    .collect()
            }
        };
        let calls = records.len() as u64;
        let failed = records.iter().filter(|r| r.1).count() as u64;
        let slow = records.iter().filter(|r| r.2).count() as u64;
        (calls, failed, slow)
    }

    fn complete(&mut self, admit: Admit, outcome: Outcome, elapsed_ms: u64, now: u64) {
        let slow = self.slow_ms().is_some_and(|t| elapsed_ms >= t);
        match outcome {
            Outcome::Success => self.counts[0] += 1,
            Outcome::Failure => self.counts[1] += 1,
            Outcome::Ignore => {
                self.counts[2] += 1;
                self.release(admit);
                return;
            }
        }
        if slow {
            self.counts[4] += 1;
        }
        let failed = outcome == Outcome::Failure;
        match admit {
            Admit::Disabled(_) => {}
            Admit::Closed(gen) if gen == self.gen && self.state == State::Closed => {
                self.consecutive = if failed { self.consecutive + 1 } else { 0 };
                let trips = match self.config.policy {
                    Policy::Consecutive(threshold) => self.consecutive >= threshold,
                    Policy::FailureCount { threshold, min, .. }
                    | Policy::FailureTime { threshold, min, .. } => {
                        self.window.push((now, failed, slow));
                        let (calls, bad, _) = self.window_tally(now);
                        failed && calls >= u64::from(min) && bad as f64 >= threshold * calls as f64
                    }
                    Policy::SlowCount { threshold, min, .. } => {
                        self.window.push((now, failed, slow));
                        let (calls, _, bad) = self.window_tally(now);
                        slow && calls >= u64::from(min) && bad as f64 >= threshold * calls as f64
                    }
                };
                if trips {
                    self.to(State::Open, now);
                }
            }
            Admit::Probe(gen) if gen == self.gen && self.state == State::HalfOpen => {
                if failed || slow {
                    self.to(State::Open, now);
                } else if self.successes + 1 >= self.config.successes {
                    self.to(State::Closed, now);
                } else {
                    self.probes -= 1;
                    self.successes += 1;
                }
            }
            Admit::Closed(_) | Admit::Probe(_) => {} // began in an earlier state
        }
    }
}

type Answer = Result<&'static str, &'static str>;

async fn inner(answer: oneshot::Receiver<Answer>) -> Answer {
    answer.await.unwrap_or(Err("dropped"))
}

/// Polls `service` for readiness once; true when it is ready (every service here is, at once).
fn poll_ready<S: Service<oneshot::Receiver<Answer>>>(service: &mut S) -> bool {
    task::spawn(std::future::poll_fn(|cx| service.poll_ready(cx)))
        .poll()
        .is_ready()
}

fn run(config: Config, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = sluice_test_support::paused_runtime();
    runtime.block_on(async move {
        let layer = build(&config);
        let handle = layer.handle();
        let mut service = layer.layer(tower::service_fn(inner));
        let mut model = Model::new(config);
        let mut now = 0u64;
        // Outstanding calls: the response future, the answer sender, the model's admission,
        // and the start time.
        let mut calls = Vec::new();
        // A clone made ready by `Op::Reserve`, and what the model admitted then.
        let mut reserved = None;
        // Polls a call's response future once: it must be pending when the model admits the
        // call (the answer comes with `Op::Complete`), or a `BreakerOpen` at once.
        macro_rules! settle {
            ($future:expr, $send:expr, $expected:expr) => {{
                let mut response = task::spawn($future);
                match (response.poll(), $expected) {
                    (std::task::Poll::Pending, Some(admit)) => {
                        calls.push((response, $send, admit, now));
                    }
                    (std::task::Poll::Ready(Err(error)), None) => {
                        prop_assert!(error.is::<BreakerOpen>(), "{error}");
                        model.counts[3] += 1;
                    }
                    (poll, expected) => {
                        prop_assert!(false, "breaker {poll:?}, model {expected:?}");
                    }
                }
            }};
        }
        for op in ops {
            match op {
                Op::Start => {
                    let expected = model.admit(now);
                    let (send, receive) = oneshot::channel();
                    prop_assert!(poll_ready(&mut service));
                    settle!(service.call(receive), send, expected);
                }
                Op::Reserve if reserved.is_none() => {
                    let mut clone = service.clone();
                    let expected = model.admit(now);
                    prop_assert!(poll_ready(&mut clone));
                    reserved = Some((clone, expected));
                }
                Op::CallReserved if reserved.is_some() => {
                    let (mut clone, admitted) = reserved.take().unwrap();
                    // An admission the breaker has moved on from is decided again at the call;
                    // a rejection stands.
                    let expected = match admitted {
                        Some(admit) if admit.gen() != model.gen => model.admit(now),
                        admitted => admitted,
                    };
                    let (send, receive) = oneshot::channel();
                    settle!(clone.call(receive), send, expected);
                }
                Op::Reserve | Op::CallReserved => {}
                Op::Complete(i, outcome) if !calls.is_empty() => {
                    let (mut response, send, admit, started) = calls.remove(i % calls.len());
                    let answer = match outcome {
                        Outcome::Success => Ok("ok"),
                        Outcome::Ignore => Ok("ignore"),
                        Outcome::Failure => Err("fail"),
                    };
                    send.send(answer).unwrap();
                    let result: Result<&str, BoxError> = match response.poll() {
                        std::task::Poll::Ready(result) => result,
                        std::task::Poll::Pending => panic!("answered call still pending"),
                    };
                    prop_assert_eq!(result.is_ok(), answer.is_ok());
                    model.complete(admit, outcome, (now - started) / MS, now);
                }
                Op::Drop(i) if !calls.is_empty() => {
                    let (_, _, admit, _) = calls.remove(i % calls.len());
                    model.release(admit);
                }
                Op::Complete(..) | Op::Drop(_) => {}
                Op::ReserveAndDrop => {
                    let mut clone = service.clone();
                    let expected = model.admit(now);
                    prop_assert!(poll_ready(&mut clone));
                    drop(clone);
                    if let Some(admit) = expected {
                        model.release(admit);
                    }
                }
                Op::Advance(ms) => {
                    tokio::time::advance(Duration::from_millis(ms)).await;
                    now += ms * MS;
                }
                Op::ForceOpen => {
                    handle.force_open();
                    model.to(State::ForcedOpen, now);
                }
                Op::Disable => {
                    handle.disable();
                    model.to(State::Disabled, now);
                }
                Op::Reset => {
                    handle.reset();
                    model.to(State::Closed, now);
                }
            }
            let metrics = handle.metrics();
            prop_assert_eq!(metrics.state, model.state, "after {:?}", op);
            prop_assert_eq!(
                [
                    metrics.successes,
                    metrics.failures,
                    metrics.ignored,
                    metrics.rejected,
                    metrics.slow
                ],
                model.counts
            );
            prop_assert_eq!(metrics.consecutive_failures, model.consecutive);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_breaker_agrees_with_the_model(config in config(), ops in prop::collection::vec(op(), 1..120)) {
        run(config, ops)?;
    }
}
