//! Error types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The alias tower uses for type-erased errors: the same type as `tower::BoxError`, named
/// here so that the layer depends on `tower-service` and `tower-layer` alone.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// No connection became ready within `wait_timeout`.
///
/// Carries the last connect error, if a connect failed: a refused or timed-out connect is
/// the usual reason, and it should not hide behind "timed out".
#[derive(Debug, Clone)]
pub struct PoolTimeout {
    waited: Duration,
    last_connect_error: Option<Arc<BoxError>>,
}

impl PoolTimeout {
    pub(crate) fn new(waited: Duration, last_connect_error: Option<Arc<BoxError>>) -> Self {
        Self {
            waited,
            last_connect_error,
        }
    }

    /// How long the request waited.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// The error of the last failed connect, if any.
    pub fn last_connect_error(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.last_connect_error.as_deref().map(|error| &**error)
    }
}

impl fmt::Display for PoolTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no pooled connection became ready within {:?}",
            self.waited
        )
    }
}

impl std::error::Error for PoolTimeout {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last_connect_error
            .as_deref()
            .map(|error| &**error as _)
    }
}

/// The pool has no connection, and its last attempt to make one failed with
/// [`source`](std::error::Error::source); the next attempt waits for its backoff.
#[derive(Debug, Clone)]
pub struct ConnectFailed {
    error: Arc<BoxError>,
}

impl ConnectFailed {
    pub(crate) fn new(error: Arc<BoxError>) -> Self {
        Self { error }
    }

    /// The connector's error, to downcast.
    pub fn error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &**self.error
    }
}

impl fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("could not connect")
    }
}

impl std::error::Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&**self.error)
    }
}

/// A connect took longer than `connect_timeout`; the connect error of a [`ConnectFailed`]
/// or [`PoolTimeout`] when that is why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectTimedOut {
    /// The timeout that passed.
    pub after: Duration,
}

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connect timed out after {:?}", self.after)
    }
}

impl std::error::Error for ConnectTimedOut {}

/// The pool was closed with [`PoolHandle::close`](crate::PoolHandle::close): it makes and
/// hands out no more connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Closed {
    _p: (),
}

impl Closed {
    pub(crate) const fn new() -> Self {
        Self { _p: () }
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("pool is closed")
    }
}

impl std::error::Error for Closed {}

/// A configuration that [`Builder::build`](crate::Builder::build) refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 was 0.
    Zero {
        /// The setting's name.
        field: &'static str,
    },
    /// A duration that must be positive was zero.
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
    /// `min_idle` exceeds `max_size`.
    MinIdleAboveMax {
        /// The `min_idle` given.
        min_idle: usize,
        /// The `max_size` given.
        max_size: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero { field } => write!(f, "`{field}` must be at least 1"),
            Self::ZeroDuration { field } => write!(f, "`{field}` must be longer than zero"),
            Self::MinIdleAboveMax { min_idle, max_size } => {
                write!(
                    f,
                    "`min_idle` ({min_idle}) must not exceed `max_size` ({max_size})"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}
