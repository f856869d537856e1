//! Configuration: trip policies, open durations and the builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::classify::ErrIsFailure;
use crate::core::Breaker;
use crate::error::ConfigError;
use crate::hook::{DynHook, OnStateChange};
use crate::layer::CircuitBreakerLayer;

/// The most half-open probes in flight at once.
pub const MAX_HALF_OPEN_CALLS: u32 = 255;
/// The most successes a half-open breaker can be asked to wait for.
pub const MAX_HALF_OPEN_SUCCESSES: u32 = u16::MAX as u32;
/// The most calls a count-based window can hold.
pub const MAX_WINDOW_CALLS: u32 = 1 << 20;
/// The most buckets a time-based window can have.
pub const MAX_WINDOW_BUCKETS: u32 = 1 << 12;

/// The calls a rate-based policy looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Window {
    /// The last `n` calls.
    Count(u32),
    /// The calls of the last `span`, counted in `buckets` equal slices: the oldest slice
    /// leaves the window as a whole, so the window really spans between
    /// `span - span / buckets` and `span`.
    Time {
        /// How far back the window looks.
        span: Duration,
        /// How many slices the span is counted in.
        buckets: u32,
    },
}

impl Window {
    /// The last `n` calls.
    pub const fn last_calls(n: u32) -> Self {
        Self::Count(n)
    }

    /// The calls of the last `span`, in 10 buckets.
    pub const fn last(span: Duration) -> Self {
        Self::Time { span, buckets: 10 }
    }

    /// The calls of the last `span`, in `buckets` buckets.
    pub const fn last_in_buckets(span: Duration, buckets: u32) -> Self {
        Self::Time { span, buckets }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::Count(0) => Err(ConfigError::Zero { field: "window" }),
            Self::Count(n) if n > MAX_WINDOW_CALLS => Err(ConfigError::TooLarge {
                field: "window",
                max: MAX_WINDOW_CALLS.into(),
            }),
            Self::Count(_) => Ok(()),
            Self::Time { span, .. } if span.is_zero() => {
                Err(ConfigError::ZeroDuration { field: "window" })
            }
            Self::Time { buckets: 0, .. } => Err(ConfigError::Zero {
                field: "window buckets",
            }),
            Self::Time { buckets, .. } if buckets > MAX_WINDOW_BUCKETS => {
                Err(ConfigError::TooLarge {
                    field: "window buckets",
                    max: MAX_WINDOW_BUCKETS.into(),
                })
            }
            Self::Time { span, buckets } if span / buckets < Duration::from_nanos(1) => {
                Err(ConfigError::ZeroDuration {
                    field: "window bucket",
                })
            }
            Self::Time { .. } => Ok(()),
        }
    }
}

/// When a closed breaker opens.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum TripPolicy {
    /// After `threshold` failures in a row (a success resets the count; ignored calls don't).
    ConsecutiveFailures {
        /// Failures in a row that open the breaker.
        threshold: u32,
    },
    /// When failures make up at least `threshold` of the calls in `window`, once the window
    /// holds at least `min_calls` calls.
    FailureRate {
        /// The failure rate, in `0.0..=1.0`, that opens the breaker.
        threshold: f64,
        /// The calls looked at.
        window: Window,
        /// The fewest calls in the window before the rate counts.
        min_calls: u32,
    },
    /// When calls slower than `slow_call` make up at least `threshold` of the calls in
    /// `window`, once the window holds at least `min_calls` calls. In half-open, a slow probe
    /// counts as a failed one.
    SlowCallRate {
        /// The slow-call rate, in `0.0..=1.0`, that opens the breaker.
        threshold: f64,
        /// A call that takes at least this long is slow.
        slow_call: Duration,
        /// The calls looked at.
        window: Window,
        /// The fewest calls in the window before the rate counts.
        min_calls: u32,
    },
}

impl TripPolicy {
    /// Open after `threshold` failures in a row.
    pub const fn consecutive_failures(threshold: u32) -> Self {
        Self::ConsecutiveFailures { threshold }
    }

    /// Open when at least `threshold` of the calls in `window` failed (min calls 1).
    pub const fn failure_rate(threshold: f64, window: Window) -> Self {
        Self::FailureRate {
            threshold,
            window,
            min_calls: 1,
        }
    }

    /// Open when at least `threshold` of the calls in `window` took `slow_call` or longer
    /// (min calls 1).
    pub const fn slow_call_rate(threshold: f64, slow_call: Duration, window: Window) -> Self {
        Self::SlowCallRate {
            threshold,
            slow_call,
            window,
            min_calls: 1,
        }
    }

    /// Sets the fewest calls a rate policy needs in its window; no effect on
    /// [`TripPolicy::ConsecutiveFailures`].
    #[must_use]
    pub const fn min_calls(mut self, n: u32) -> Self {
        match &mut self {
            Self::ConsecutiveFailures { .. } => {}
            Self::FailureRate { min_calls, .. } | Self::SlowCallRate { min_calls, .. } => {
                *min_calls = n;
            }
        }
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rate = |value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Rate {
                    field: "threshold",
                    value,
                })
            }
        };
        match *self {
            Self::ConsecutiveFailures { threshold: 0 } => {
                Err(ConfigError::Zero { field: "threshold" })
            }
            Self::ConsecutiveFailures { .. } => Ok(()),
            Self::FailureRate {
                threshold,
                window,
                min_calls,
            } => {
                rate(threshold)?;
                window.validate()?;
                validate_min_calls(min_calls)
            }
            Self::SlowCallRate {
                threshold,
                slow_call,
                window,
                min_calls,
            } => {
                rate(threshold)?;
                if slow_call.is_zero() {
                    return Err(ConfigError::ZeroDuration { field: "slow_call" });
                }
                window.validate()?;
                validate_min_calls(min_calls)
            }
        }
    }
}

fn validate_min_calls(min_calls: u32) -> Result<(), ConfigError> {
    if min_calls == 0 {
        Err(ConfigError::Zero { field: "min_calls" })
    } else {
        Ok(())
    }
}

impl Default for TripPolicy {
    /// Five failures in a row, as the reference system.
    fn default() -> Self {
        Self::consecutive_failures(5)
    }
}

/// How long the breaker stays open before it lets a probe through.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum OpenDuration {
    /// Always the same time.
    Fixed(Duration),
    /// `initial` after the breaker trips, multiplied by `multiplier` each time a half-open
    /// probe fails and the breaker opens again, never above `max`. With `jitter`, each period
    /// is drawn uniformly from its upper half, so many clients don't probe in step.
    Backoff {
        /// The first open period.
        initial: Duration,
        /// The longest open period, at least `initial`.
        max: Duration,
        /// Growth per failed probe, at least 1.0.
        multiplier: f64,
        /// Draw each period from `[d/2, d]`.
        jitter: bool,
    },
}

impl OpenDuration {
    /// Doubling from `initial` up to `max`, without jitter.
    pub const fn backoff(initial: Duration, max: Duration) -> Self {
        Self::Backoff {
            initial,
            max,
            multiplier: 2.0,
            jitter: false,
        }
    }

    /// The open period after `reopens` failed probes in a row.
    pub(crate) fn period(&self, reopens: u32) -> Duration {
        match *self {
            Self::Fixed(d) => d,
            Self::Backoff {
                initial,
                max,
                multiplier,
                jitter,
            } => {
                let exponent = i32::try_from(reopens).unwrap_or(i32::MAX);
                let grown = initial.as_secs_f64() * multiplier.powi(exponent);
                let period = if grown.is_finite() && grown < max.as_secs_f64() {
                    Duration::from_secs_f64(grown)
                } else {
                    max
                };
                if jitter {
                    let half = period / 2;
                    half + half.mul_f64(fastrand::f64())
                } else {
                    period
                }
            }
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Self::Fixed(d) if d.is_zero() => Err(ConfigError::ZeroDuration {
                field: "open_duration",
            }),
            Self::Fixed(_) => Ok(()),
            Self::Backoff { initial, .. } if initial.is_zero() => Err(ConfigError::ZeroDuration {
                field: "open_duration",
            }),
            Self::Backoff { multiplier, .. } if multiplier.is_nan() || multiplier < 1.0 => {
                Err(ConfigError::Multiplier { value: multiplier })
            }
            // `max < initial` would make every period `max`, and `max = 0` an open period
            // of nothing.
            Self::Backoff { initial, max, .. } if max < initial => {
                Err(ConfigError::BackoffMax { initial, max })
            }
            Self::Backoff { .. } => Ok(()),
        }
    }
}

impl Default for OpenDuration {
    /// 30 seconds, as the reference system.
    fn default() -> Self {
        Self::Fixed(Duration::from_secs(30))
    }
}

/// Validated settings shared by all clones of one breaker.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) policy: TripPolicy,
    pub(crate) open_duration: OpenDuration,
    pub(crate) half_open_max_calls: u32,
    pub(crate) half_open_successes: u32,
    pub(crate) probe_timeout: Duration,
}

/// Builds a [`CircuitBreakerLayer`]; get one from [`CircuitBreakerLayer::builder`].
///
/// Every setting has the reference system's default: five failures in a row open the breaker
/// for 30 seconds, then one probe at a time decides whether it closes.
pub struct Builder<C = ErrIsFailure> {
    config: Config,
    classifier: C,
    hook: Option<DynHook>,
}

impl<C: fmt::Debug> fmt::Debug for Builder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// The defaults described on [`Builder`].
    pub fn new() -> Self {
        Self {
            config: Config {
                policy: TripPolicy::default(),
                open_duration: OpenDuration::default(),
                half_open_max_calls: 1,
                half_open_successes: 1,
                probe_timeout: Duration::from_secs(30),
            },
            classifier: ErrIsFailure,
            hook: None,
        }
    }
}

impl<C> Builder<C> {
    /// Sets when the closed breaker opens (default: 5 failures in a row).
    #[must_use]
    pub fn trip_policy(mut self, policy: TripPolicy) -> Self {
        self.config.policy = policy;
        self
    }

    /// Shortcut for `trip_policy(TripPolicy::consecutive_failures(threshold))`.
    #[must_use]
    pub fn consecutive_failures(self, threshold: u32) -> Self {
        self.trip_policy(TripPolicy::consecutive_failures(threshold))
    }

    /// Sets a fixed open period (default: 30 s).
    #[must_use]
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.config.open_duration = OpenDuration::Fixed(duration);
        self
    }

    /// Sets a growing open period, see [`OpenDuration::Backoff`].
    #[must_use]
    pub fn open_backoff(mut self, backoff: OpenDuration) -> Self {
        self.config.open_duration = backoff;
        self
    }

    /// Sets how many probes may be in flight at once when half-open (default 1, at most
    /// [`MAX_HALF_OPEN_CALLS`]); later calls are rejected until one finishes.
    #[must_use]
    pub fn half_open_max_calls(mut self, n: u32) -> Self {
        self.config.half_open_max_calls = n;
        self
    }

    /// Sets how many probes must succeed before the breaker closes (default 1).
    #[must_use]
    pub fn half_open_successes(mut self, n: u32) -> Self {
        self.config.half_open_successes = n;
        self
    }

    /// Sets how long a half-open breaker waits for a probe before it gives up on it and opens
    /// again (default 30 s), so a probe that never finishes cannot wedge the breaker. The check
    /// happens on the next call that finds every probe permit taken.
    #[must_use]
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.config.probe_timeout = timeout;
        self
    }

    /// Sets what counts as a failure (default: [`ErrIsFailure`]).
    #[must_use]
    pub fn classifier<C2>(self, classifier: C2) -> Builder<C2> {
        Builder {
            config: self.config,
            classifier,
            hook: self.hook,
        }
    }

    /// Sets a hook called after each state change.
    #[must_use]
    pub fn on_state_change(mut self, hook: impl OnStateChange) -> Self {
        self.hook = Some(DynHook(Box::new(hook)));
        self
    }

    /// Checks the settings and builds the layer; each built layer is one breaker, shared by
    /// every service it wraps and all their clones.
    pub fn build(self) -> Result<CircuitBreakerLayer<C>, ConfigError> {
        let config = self.config;
        config.policy.validate()?;
        config.open_duration.validate()?;
        if config.half_open_max_calls == 0 {
            return Err(ConfigError::Zero {
                field: "half_open_max_calls",
            });
        }
        if config.half_open_max_calls > MAX_HALF_OPEN_CALLS {
            return Err(ConfigError::TooLarge {
                field: "half_open_max_calls",
                max: MAX_HALF_OPEN_CALLS.into(),
            });
        }
        if config.half_open_successes == 0 {
            return Err(ConfigError::Zero {
                field: "half_open_successes",
            });
        }
        if config.half_open_successes > MAX_HALF_OPEN_SUCCESSES {
            return Err(ConfigError::TooLarge {
                field: "half_open_successes",
                max: MAX_HALF_OPEN_SUCCESSES.into(),
            });
        }
        if config.probe_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration {
                field: "probe_timeout",
            });
        }
        let breaker = Arc::new(Breaker::new(config, self.hook));
        Ok(CircuitBreakerLayer::from_parts(breaker, self.classifier))
    }
}
