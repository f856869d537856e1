use std::fmt;
use std::mem;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use crate::classify::{Classify, ErrIsFailure};
use crate::core::{Admission, Breaker};
use crate::error::{BoxError, BreakerOpen};
use crate::future::ResponseFuture;
use crate::handle::BreakerHandle;
use crate::layer::CircuitBreakerLayer;
use crate::state::ClosedTicket;

/// Rejects calls while the inner service is failing, and lets probes test its recovery.
///
/// Clones share one breaker. See the [crate documentation](crate) for the behaviour.
pub struct CircuitBreaker<S, C = ErrIsFailure> {
    inner: S,
    classifier: C,
    breaker: Arc<Breaker>,
    /// What `poll_ready` decided for the next `call`.
    reserved: Reserved,
}

/// A decision of `poll_ready`. `call` checks that an admission is still of the current state
/// and admits again if the breaker moved in between (a `Buffer` worker, say, can hold a ready
/// service for long). Admission while closed is kept apart, as a ticket checked with one
/// relaxed load, so that the common case moves no payload.
#[derive(Debug)]
enum Reserved {
    Nothing,
    Closed(ClosedTicket),
    Admitted(Admission),
    Rejected(BreakerOpen),
}

impl<S> CircuitBreaker<S> {
    /// Wraps `inner` in a breaker with the default settings (see [`Builder`](crate::Builder)).
    pub fn new(inner: S) -> Self {
        CircuitBreakerLayer::new().into_service(inner)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    pub(crate) fn from_parts(inner: S, classifier: C, breaker: Arc<Breaker>) -> Self {
        Self {
            inner,
            classifier,
            breaker,
            reserved: Reserved::Nothing,
        }
    }

    /// A handle on this breaker's state, metrics and manual controls.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(Arc::clone(&self.breaker))
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

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Reserved::Nothing = self.reserved {
            self.reserved = if let Some(ticket) = self.breaker.core.closed_ticket() {
                Reserved::Closed(ticket)
            } else {
                match self.breaker.core.admit() {
                    Ok(admission) => Reserved::Admitted(admission),
                    Err(open) => Reserved::Rejected(open),
                }
            };
        }
        if let Reserved::Rejected(_) = self.reserved {
            // Rejections come out of `call` as an error future, and the inner service is
            // not polled: it may be the thing that is failing.
            return Poll::Ready(Ok(()));
        }
        match self.inner.poll_ready(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => {
                self.reserved = Reserved::Nothing;
                Poll::Ready(Err(error.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        // Admitted while closed: checked apart, with the future built right here and the
        // other admissions out of line. Measured: building it through `called`, which takes
        // the admission by value, made this path twice as slow where `call` is inlined.
        if let Reserved::Closed(ticket) = self.reserved {
            self.reserved = Reserved::Nothing;
            let core = &self.breaker.core;
            if !core.honours(ticket) {
                return self.admit_again(req);
            }
            let started = core.measures_duration().then(Instant::now);
            return ResponseFuture::called(
                self.inner.call(req),
                core.id(),
                Admission::Closed(ticket.generation()),
                started,
                self.classifier.clone(),
            );
        }
        if let Reserved::Rejected(open) = &self.reserved {
            let open = open.clone();
            self.reserved = Reserved::Nothing;
            self.breaker.core.count_rejected();
            return ResponseFuture::rejected(open, self.classifier.clone());
        }
        self.call_admitted(req)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// `call` with a half-open or disabled admission: kept out of line, so that the closed
    /// path stays small where `call` is inlined.
    #[inline(never)]
    fn call_admitted<Req>(&mut self, req: Req) -> ResponseFuture<S::Future, C>
    where
        S: Service<Req>,
        C: Clone,
    {
        let admission = match mem::replace(&mut self.reserved, Reserved::Nothing) {
            Reserved::Admitted(admission) => admission,
            Reserved::Nothing | Reserved::Closed(_) | Reserved::Rejected(_) => panic!(
                "CircuitBreaker::call without poll_ready: poll_ready must return Ready(Ok) first"
            ),
        };
        if self.breaker.core.is_current(&admission) {
            return self.called(req, admission);
        }
        // A stale probe permit gives nothing back: its half-open period is over.
        drop(admission);
        self.admit_again(req)
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Passes `req` to the inner service under `admission`.
    #[inline]
    fn called<Req>(&mut self, req: Req, admission: Admission) -> ResponseFuture<S::Future, C>
    where
        S: Service<Req>,
        C: Clone,
    {
        let core = &self.breaker.core;
        let started = core.measures_duration().then(Instant::now);
        ResponseFuture::called(
            self.inner.call(req),
            core.id(),
            admission,
            started,
            self.classifier.clone(),
        )
    }

    /// The breaker moved between `poll_ready` and `call`: decides afresh. The inner service is
    /// ready, so an admitted call can still go through.
    #[cold]
    #[inline(never)]
    fn admit_again<Req>(&mut self, req: Req) -> ResponseFuture<S::Future, C>
    where
        S: Service<Req>,
        C: Clone,
    {
        match self.breaker.core.admit() {
            Ok(admission) => self.called(req, admission),
            Err(open) => {
                self.breaker.core.count_rejected();
                ResponseFuture::rejected(open, self.classifier.clone())
            }
        }
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        // A clone starts unready; it shares the breaker.
        Self::from_parts(
            self.inner.clone(),
            self.classifier.clone(),
            Arc::clone(&self.breaker),
        )
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("inner", &self.inner)
            .field("state", &self.breaker.core.state())
            .finish_non_exhaustive()
    }
}
