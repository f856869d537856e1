//! Configuration and the builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{BoxError, ConfigError};
use crate::layer::PoolLayer;

pub(crate) type FatalFn = Arc<dyn Fn(&BoxError) -> bool + Send + Sync>;

/// Validated settings of one pool.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) max_size: usize,
    pub(crate) min_idle: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) wait_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) health_check_interval: Option<Duration>,
    pub(crate) fatal: Option<FatalFn>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_size", &self.max_size)
            .field("min_idle", &self.min_idle)
            .field("connect_timeout", &self.connect_timeout)
            .field("wait_timeout", &self.wait_timeout)
            .field("backoff_initial", &self.backoff_initial)
            .field("backoff_max", &self.backoff_max)
            .field("max_lifetime", &self.max_lifetime)
            .field("idle_timeout", &self.idle_timeout)
            .field("health_check_interval", &self.health_check_interval)
            .field("fatal", &self.fatal.is_some())
            .finish()
    }
}

/// `at + by`, or about thirty years after `at` when that overflows: a setting of
/// `Duration::MAX` means "no limit", not a panic.
pub(crate) fn after(at: tokio::time::Instant, by: Duration) -> tokio::time::Instant {
    const FAR: Duration = Duration::from_secs(86_400 * 365 * 30);
    at.checked_add(by).unwrap_or(at + FAR)
}

impl Config {
    /// The wait before connect attempt `failures + 1`, after `failures` failures in a row:
    /// exponential from `backoff_initial`, capped at `backoff_max`, with full jitter over its
    /// upper half so that many pools do not retry in step.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(30);
        let grown = self
            .backoff_initial
            .saturating_mul(1u32 << exponent)
            .min(self.backoff_max);
        let half = grown / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Whether idle connections need a periodic look (and so a maintenance task).
    pub(crate) fn needs_maintenance(&self) -> bool {
        self.min_idle > 0
            || self.max_lifetime.is_some()
            || self.idle_timeout.is_some()
            || self.health_check_interval.is_some()
    }

    /// How often the maintenance task looks.
    pub(crate) fn maintenance_period(&self) -> Duration {
        [
            self.max_lifetime,
            self.idle_timeout,
            self.health_check_interval,
        ]
        .into_iter()
        .flatten()
        .map(|d| d / 2)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(10), Duration::from_secs(30))
    }
}

/// Builds a [`PoolLayer`]; get one from [`PoolLayer::builder`].
///
/// Defaults: at most 5 connections (the reference system's), none kept warm, 5 s to connect,
/// 5 s to wait for a connection, reconnect backoff from 100 ms to 10 s, no lifetime, idle
/// timeout or health check, and no call error is fatal to a connection.
pub struct Builder<Target, L = ()> {
    target: Target,
    config: Config,
    lifecycle: L,
}

impl<Target: fmt::Debug, L> fmt::Debug for Builder<Target, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("target", &self.target)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<Target> Builder<Target> {
    pub(crate) fn new(target: Target) -> Self {
        Self {
            target,
            config: Config {
                max_size: 5,
                min_idle: 0,
                connect_timeout: Duration::from_secs(5),
                wait_timeout: Duration::from_secs(5),
                backoff_initial: Duration::from_millis(100),
                backoff_max: Duration::from_secs(10),
                max_lifetime: None,
                idle_timeout: None,
                health_check_interval: None,
                fatal: None,
            },
            lifecycle: (),
        }
    }
}

impl<Target, L> Builder<Target, L> {
    /// Sets the most connections alive or connecting at once (default 5).
    #[must_use]
    pub fn max_size(mut self, n: usize) -> Self {
        self.config.max_size = n;
        self
    }

    /// Sets how many connections the pool keeps open even when unused (default 0).
    #[must_use]
    pub fn min_idle(mut self, n: usize) -> Self {
        self.config.min_idle = n;
        self
    }

    /// Sets how long one connect may take (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Sets how long a request waits for a ready connection (default 5 s); then it fails
    /// with [`PoolTimeout`](crate::PoolTimeout).
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.config.wait_timeout = timeout;
        self
    }

    /// Sets the reconnect backoff: the wait after the first failed connect, doubling with
    /// each further failure up to `max` (defaults 100 ms and 10 s), jittered.
    #[must_use]
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max;
        self
    }

    /// Closes connections older than `lifetime`.
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: Duration) -> Self {
        self.config.max_lifetime = Some(lifetime);
        self
    }

    /// Closes connections unused for `timeout` (but keeps `min_idle`), so the pool shrinks
    /// after a burst.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = Some(timeout);
        self
    }

    /// Checks idle connections every `interval` through the
    /// [`Lifecycle`](crate::Lifecycle) (see [`lifecycle`](Self::lifecycle)).
    #[must_use]
    pub fn health_check_interval(mut self, interval: Duration) -> Self {
        self.config.health_check_interval = Some(interval);
        self
    }

    /// Marks call errors that mean the connection is broken: the connection is evicted and
    /// replaced. By default only a failing `poll_ready` evicts a connection.
    #[must_use]
    pub fn fatal_error(
        mut self,
        is_fatal: impl Fn(&BoxError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.fatal = Some(Arc::new(is_fatal));
        self
    }

    /// Sets how connections are health-checked and closed (default: never checked, closed
    /// by dropping).
    #[must_use]
    pub fn lifecycle<L2>(self, lifecycle: L2) -> Builder<Target, L2> {
        Builder {
            target: self.target,
            config: self.config,
            lifecycle,
        }
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<PoolLayer<Target, L>, ConfigError> {
        let config = self.config;
        if config.max_size == 0 {
            return Err(ConfigError::Zero { field: "max_size" });
        }
        if config.min_idle > config.max_size {
            return Err(ConfigError::MinIdleAboveMax {
                min_idle: config.min_idle,
                max_size: config.max_size,
            });
        }
        for (field, value) in [
            ("connect_timeout", Some(config.connect_timeout)),
            ("wait_timeout", Some(config.wait_timeout)),
            ("backoff", Some(config.backoff_initial)),
            ("max_lifetime", config.max_lifetime),
            ("idle_timeout", config.idle_timeout),
            ("health_check_interval", config.health_check_interval),
        ] {
            if value.is_some_and(|d| d.is_zero()) {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        Ok(PoolLayer::from_parts(
            self.target,
            config,
            Arc::new(self.lifecycle),
        ))
    }
}
