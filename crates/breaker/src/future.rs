//! Future types.

use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::classify::{Classify, Outcome};
use crate::core::Admission;
use crate::error::{BoxError, BreakerOpen};
use crate::local;

pin_project! {
    /// Response future of [`CircuitBreaker`](crate::CircuitBreaker).
    ///
    /// Records the call's outcome when it completes. Dropped before completion, it records
    /// nothing and gives back a half-open probe permit it holds.
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        kind: Kind<F>,
        classifier: C,
    }
}

pin_project! {
    #[project = KindProj]
    #[derive(Debug)]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            // The breaker's id; see `local` for why not an `Arc`.
            breaker: u64,
            admission: Admission,
            started: Option<Instant>,
        },
        Rejected {
            error: BreakerOpen,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(crate) fn called(
        future: F,
        breaker: u64,
        admission: Admission,
        started: Option<Instant>,
        classifier: C,
    ) -> Self {
        Self {
            kind: Kind::Called {
                future,
                breaker,
                admission,
                started,
            },
            classifier,
        }
    }

    pub(crate) fn rejected(error: BreakerOpen, classifier: C) -> Self {
        Self {
            kind: Kind::Rejected { error },
            classifier,
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called {
                future,
                breaker,
                admission,
                started,
            } => {
                let result = ready!(future.poll(cx));
                let outcome = this.classifier.classify(&result);
                // A `None` from `local` means the breaker is gone: nobody can observe the
                // outcome any more.
                if let (Admission::Closed(gen), Outcome::Success, None) =
                    (&*admission, outcome, *started)
                {
                    // The hot path, checked apart so that it moves no payload.
                    let gen = *gen;
                    *admission = Admission::Recorded;
                    let _ = local::with_no_reentry(*breaker, |core, counters| {
                        core.record_closed_success(counters, gen);
                    });
                    return Poll::Ready(result.map_err(Into::into));
                }
                match (
                    mem::replace(admission, Admission::Recorded),
                    outcome,
                    *started,
                ) {
                    (Admission::Recorded, ..) => {} // polled again after completion
                    (admission, outcome, started) => {
                        let elapsed = started.map(|started| started.elapsed());
                        let _ = local::with(*breaker, |core, counters| {
                            core.record(counters, admission, outcome, elapsed);
                        });
                    }
                }
                Poll::Ready(result.map_err(Into::into))
            }
            // Zero-sized: boxing it allocates nothing.
            KindProj::Rejected { error } => Poll::Ready(Err(Box::new(*error))),
        }
    }
}
