//! [`CircuitBreaker`]: the service; admits or refuses each call and records its outcome.

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
    /// The state word of the open period this service was last rejected in, and when that
    /// period ends: a further call in that period is rejected after one clock read and one
    /// comparison (see `Core::open_until`).
    open_until: Option<(u64, Instant)>,
}

/// A decision of `poll_ready`. `call` checks that an admission is still of the current state
/// and admits again if the breaker moved in between (a `Buffer` worker, say, can hold a ready
/// service for long). Admission while closed is kept apart, as a ticket checked with one
/// relaxed load, so that the common case moves no payload. The tag is a field of its own:
/// in a niche of `Admission` (where it went once a rejection carried no payload), every
/// check of the closed path decoded it, which cost that path a tenth more instructions.
#[derive(Debug)]
#[repr(u8)]
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
            open_until: None,
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
            // Each branch writes the reservation in place: one built apart and then moved
            // in was stored in narrow parts and loaded back whole, which stalls.
            match self.breaker.core.closed_ticket() {
                Ok(ticket) => self.reserved = Reserved::Closed(ticket),
                Err(word) => self.admit_not_closed(word),
            }
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
        // First make sure the reservation is of the breaker's current state; if it moved
        // since `poll_ready`, decide again, in place.
        let current = match &self.reserved {
            Reserved::Closed(ticket) => self.breaker.core.honours(*ticket),
            Reserved::Admitted(admission) => self.breaker.core.is_current(admission),
            Reserved::Nothing | Reserved::Rejected(_) => true,
        };
        if !current {
            self.admit_again();
        }
        let core = &self.breaker.core;
        // Then use it. Every path builds its future right here, from plain values: a future
        // built out of line and returned through memory was copied in wide loads over
        // narrow stores, which stalls, and made the closed path up to twice as slow.
        if let Reserved::Closed(ticket) = self.reserved {
            self.reserved = Reserved::Nothing;
            let started = core.measures_duration().then(Instant::now);
            return ResponseFuture::called(
                self.inner.call(req),
                core.id(),
                Admission::Closed(ticket.generation()),
                started,
                self.classifier.clone(),
            );
        }
        if let Reserved::Rejected(open) = self.reserved {
            self.reserved = Reserved::Nothing;
            core.count_rejected();
            return ResponseFuture::rejected(open, self.classifier.clone());
        }
        let admission = match mem::replace(&mut self.reserved, Reserved::Nothing) {
            Reserved::Admitted(admission) => admission,
            Reserved::Nothing | Reserved::Closed(_) | Reserved::Rejected(_) => panic!(
                "CircuitBreaker::call without poll_ready: poll_ready must return Ready(Ok) first"
            ),
        };
        let started = core.measures_duration().then(Instant::now);
        ResponseFuture::called(
            self.inner.call(req),
            core.id(),
            admission,
            started,
            self.classifier.clone(),
        )
    }
}

impl<S, C> CircuitBreaker<S, C> {
    /// Reserves when the breaker was not closed (its state word was `word`). Out of line,
    /// so that the closed path stays short.
    #[inline(never)]
    fn admit_not_closed(&mut self, word: u64) {
        if let Some((open, until)) = self.open_until {
            if open == word && Instant::now() < until {
                // Still in the open period this service was last rejected in.
                self.reserved = Reserved::Rejected(BreakerOpen::new());
                return;
            }
        }
        self.reserved = match self.breaker.core.admit() {
            Ok(admission) => Reserved::Admitted(admission),
            Err(open) => {
                self.open_until = self.breaker.core.open_until();
                Reserved::Rejected(open)
            }
        };
    }

    /// The breaker moved between `poll_ready` and `call`: replaces the reservation with a
    /// fresh decision. The inner service is ready, so an admitted call can still go through.
    #[cold]
    #[inline(never)]
    fn admit_again(&mut self) {
        // A stale probe permit gives nothing back: its half-open period is over.
        self.reserved = Reserved::Nothing;
        self.reserved = match self.breaker.core.admit() {
            Ok(admission) => Reserved::Admitted(admission),
            Err(open) => Reserved::Rejected(open),
        };
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
