//! Error types.

use std::fmt;
use std::time::Duration;

/// The alias tower uses for type-erased errors: the same type as `tower::BoxError`, named
/// here so that the layer depends on `tower-service` and `tower-layer` alone.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The breaker rejected a call without calling the inner service.
///
/// Returned (boxed in a [`BoxError`]) by the response future of a rejected call; downcast it to
/// tell a rejection apart from an error of the inner service, which passes through unchanged.
///
/// It is zero-sized, so boxing it allocates nothing and a rejection costs no allocation.
/// How long until the breaker lets a call through is read from the breaker itself, with
/// [`BreakerHandle::retry_after`](crate::BreakerHandle::retry_after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerOpen;

impl BreakerOpen {
    pub(crate) const fn new() -> Self {
        Self
    }
}

impl fmt::Display for BreakerOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("circuit breaker is open")
    }
}

impl std::error::Error for BreakerOpen {}

/// A breaker configuration that [`Builder::build`](crate::Builder::build) refused.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 was 0 (`field` names the setting).
    Zero {
        /// The setting's name.
        field: &'static str,
    },
    /// A count exceeded what the breaker supports.
    TooLarge {
        /// The setting's name.
        field: &'static str,
        /// The largest accepted value.
        max: u64,
    },
    /// A rate was outside `0.0..=1.0` (or not a number).
    Rate {
        /// The setting's name.
        field: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A duration that must be positive was zero.
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
    /// A backoff multiplier below 1.0 (or not a number).
    Multiplier {
        /// The rejected value.
        value: f64,
    },
    /// A backoff whose longest open period is shorter than its first (or zero).
    BackoffMax {
        /// The first open period.
        initial: Duration,
        /// The rejected longest open period.
        max: Duration,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero { field } => write!(f, "`{field}` must be at least 1"),
            Self::TooLarge { field, max } => write!(f, "`{field}` must be at most {max}"),
            Self::Rate { field, value } => {
                write!(
                    f,
                    "`{field}` must be a rate between 0.0 and 1.0, got {value}"
                )
            }
            Self::ZeroDuration { field } => write!(f, "`{field}` must be longer than zero"),
            Self::Multiplier { value } => {
                write!(f, "backoff multiplier must be at least 1.0, got {value}")
            }
            Self::BackoffMax { initial, max } => write!(
                f,
                "backoff `max` ({max:?}) must be at least `initial` ({initial:?})"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}
