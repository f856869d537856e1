use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use crate::classify::{Classify, ErrIsFailure};
use crate::error::{BoxError, BreakerOpen};
use crate::future::{Recorder, ResponseFuture};
use crate::handle::BreakerHandle;
use crate::layer::CircuitBreakerLayer;
use crate::shared::{Admission, Shard, Shards};

/// Rejects calls while the inner service is failing, and lets probes test its recovery.
///
/// Clones share one breaker. See the [crate documentation](crate) for the behaviour.
pub struct CircuitBreaker<S, C = ErrIsFailure> {
    inner: S,
    classifier: C,
    shards: Arc<Shards>,
    /// This clone's counters (see `shared`).
    shard: Arc<Shard>,
    /// What `poll_ready` decided for the next `call`.
    admission: Option<Result<Admission, BreakerOpen>>,
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in a breaker with the default settings (see [`Builder`](crate::Builder)).
    pub fn new(inner: S) -> Self {
        CircuitBreakerLayer::new().into_service(inner)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn from_parts(inner: S, classifier: C, shards: Arc<Shards>) -> Self {
        Self {
            inner,
            classifier,
            shard: shards.pick(),
            shards,
            admission: None,
        }
    }

    /// A handle on this breaker's state, metrics and manual controls.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(Arc::clone(&self.shards))
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, Req> Service<Req> for CircuitBreaker<S, C>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let admission = self.admission.get_or_insert_with(|| self.shard.admit());
        if admission.is_err() {
            // Rejections come out of `call` as an error future, and the inner service is
            // not polled: it may be the thing that is failing.
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => {
                self.admission = None;
                Poll::Ready(Err(error.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let admission = self.admission.take().expect(
            "CircuitBreaker::call without poll_ready: poll_ready must return Ready(Ok) first",
        );
        match admission {
            Err(open) => ResponseFuture::rejected(open, self.classifier.clone()),
            Ok(admission) => {
                let started = self.shard.core.measures_duration().then(Instant::now);
                let recorder = Recorder {
                    shard: Arc::clone(&self.shard),
                    admission,
                    started,
                };
                ResponseFuture::called(self.inner.call(req), recorder, self.classifier.clone())
            }
        }
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone starts unready, with its own counter shard; it shares the breaker.
        Self::from_parts(
            self.inner.clone(),
            self.classifier.clone(),
            Arc::clone(&self.shards),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("state", &self.shards.core.state())
            .finish_non_exhaustive()
    }
}
