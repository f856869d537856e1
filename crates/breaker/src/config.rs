//! The builder, and the validated settings it hands to the breaker (the policies it takes
//! are in `policy`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::classify::ErrIsFailure;
use crate::core::Breaker;
use crate::error::ConfigError;
use crate::hook::{DynHook, OnStateChange};
use crate::layer::CircuitBreakerLayer;
use crate::policy::{OpenDuration, TripPolicy};

/// The most half-open probes in flight at once.
pub const MAX_HALF_OPEN_CALLS: u32 = 255;
/// The most successes a half-open breaker can be asked to wait for.
pub const MAX_HALF_OPEN_SUCCESSES: u32 = u16::MAX as u32;
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
