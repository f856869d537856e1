//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;

use crate::config::FatalFn;
use crate::error::BoxError;

pin_project! {
    /// Response future of [`Pool`](crate::Pool).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Called {
            #[pin]
            future: F,
            // The connection's broken flag and the classifier, when one is set.
            fatal: Option<(Arc<AtomicBool>, FatalFn)>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn called(future: F, fatal: Option<(Arc<AtomicBool>, FatalFn)>) -> Self {
        Self {
            kind: Kind::Called { future, fatal },
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            kind: Kind::Failed { error: Some(error) },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Called { future, fatal } => {
                let result = ready!(future.poll(cx)).map_err(Into::into);
                if let (Err(error), Some((broken, is_fatal))) = (&result, fatal) {
                    if is_fatal(error) {
                        // The pool evicts it the next time it is taken out.
                        broken.store(true, Ordering::Release);
                    }
                }
                Poll::Ready(result)
            }
            KindProj::Failed { error } => Poll::Ready(Err(error
                .take()
                .unwrap_or_else(|| Box::new(crate::error::Closed::new())))),
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
