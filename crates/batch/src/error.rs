//! Error types.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The alias tower uses for type-erased errors: the same type as `tower::BoxError`, named
/// here so that the layer depends on `tower-service` and `tower-layer` alone.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The queue was full and the batcher drops the newest item (see
/// [`Overflow::DropNewest`](crate::Overflow::DropNewest)); the item was counted as dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueFull {
    _p: (),
}

impl QueueFull {
    pub(crate) const fn new() -> Self {
        Self { _p: () }
    }
}

impl fmt::Display for QueueFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("batch queue is full")
    }
}

impl std::error::Error for QueueFull {}

/// The batcher no longer accepts items: it was shut down, its worker is gone, or its inner
/// service failed for good (then [`source`](std::error::Error::source) says how).
///
/// An item that failed with `Closed` was not handed to the inner service.
#[derive(Debug, Clone, Default)]
pub struct Closed {
    cause: Option<Arc<BoxError>>,
}

impl Closed {
    pub(crate) const fn new() -> Self {
        Self { cause: None }
    }

    pub(crate) fn because(cause: Arc<BoxError>) -> Self {
        Self { cause: Some(cause) }
    }
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("batcher is closed")
    }
}

impl std::error::Error for Closed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|error| &**error as _)
    }
}

/// The inner service failed the batch this item was in. Every item of the batch gets a
/// `BatchFailed` sharing the inner error, which [`source`](std::error::Error::source) and
/// [`inner`](Self::inner) return.
#[derive(Debug, Clone)]
pub struct BatchFailed {
    inner: Arc<BoxError>,
}

impl BatchFailed {
    pub(crate) fn new(inner: Arc<BoxError>) -> Self {
        Self { inner }
    }

    /// The inner service's error, to downcast.
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &**self.inner
    }
}

impl fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("batch failed")
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&**self.inner)
    }
}

/// [`BatchHandle::shutdown`](crate::BatchHandle::shutdown) gave up at its deadline with
/// items still undelivered; they are still queued and the worker keeps delivering them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownTimedOut {
    /// Items submitted but neither delivered nor failed at the deadline.
    pub remaining: u64,
    /// The deadline that passed.
    pub deadline: Duration,
}

impl fmt::Display for ShutdownTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "batcher shutdown timed out after {:?} with {} items undelivered",
            self.deadline, self.remaining
        )
    }
}

impl std::error::Error for ShutdownTimedOut {}

/// A configuration that [`Builder::build`](crate::Builder::build) refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 was 0 (`field` names the setting).
    Zero {
        /// The setting's name.
        field: &'static str,
    },
    /// A duration that must be positive was zero.
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero { field } => write!(f, "`{field}` must be at least 1"),
            Self::ZeroDuration { field } => write!(f, "`{field}` must be longer than zero"),
        }
    }
}

impl std::error::Error for ConfigError {}
