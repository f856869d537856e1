//! What a breaker is configured with: the trip policies, the windows that rate policies look
//! at, and the open durations, each with its validation.

use std::time::Duration;

use crate::error::ConfigError;

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

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
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
