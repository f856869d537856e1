//! [`CircuitBreakerLayer`]: wraps services in one shared breaker.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::classify::ErrIsFailure;
use crate::config::Builder;
use crate::core::Breaker;
use crate::handle::BreakerHandle;
use crate::service::CircuitBreaker;

/// Wraps services in one shared [`CircuitBreaker`].
///
/// A layer is one breaker: every service it wraps, and every clone of those, counts toward
/// and obeys the same state. Build another layer for an independent breaker.
#[derive(Clone)]
pub struct CircuitBreakerLayer<C = ErrIsFailure> {
    breaker: Arc<Breaker>,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A breaker with the default settings: five failures in a row open it for 30 seconds.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default breaker settings are valid")
    }

    /// Starts a [`Builder`] with the default settings.
    pub fn builder() -> Builder {
        Builder::new()
    }
}

impl Default for CircuitBreakerLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> CircuitBreakerLayer<C> {
    pub(crate) fn from_parts(breaker: Arc<Breaker>, classifier: C) -> Self {
        Self {
            breaker,
            classifier,
        }
    }

    /// A handle on this breaker's state, metrics and manual controls.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(Arc::clone(&self.breaker))
    }

    pub(crate) fn into_service<S>(self, inner: S) -> CircuitBreaker<S, C> {
        CircuitBreaker::from_parts(inner, self.classifier, self.breaker)
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        self.clone().into_service(inner)
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("state", &self.breaker.core.state())
            .finish_non_exhaustive()
    }
}
