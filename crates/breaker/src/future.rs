//! Future types.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use crate::classify::Classify;
use crate::error::{BoxError, BreakerOpen};
use crate::shared::{Admission, Shard};
use std::sync::Arc;

/// What a call needs to report its outcome when it finishes.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) shard: Arc<Shard>,
    pub(crate) admission: Admission,
    pub(crate) started: Option<Instant>,
}

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
            recorder: Option<Recorder>,
        },
        Rejected {
            error: BreakerOpen,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, recorder: Recorder, classifier: C) -> Self {
        Self {
            kind: Kind::Called {
                future,
                recorder: Some(recorder),
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Called { future, recorder } => {
                let result = ready!(future.poll(cx));
                if let Some(Recorder {
                    shard,
                    admission,
                    started,
                }) = recorder.take()
                {
                    let outcome = this.classifier.classify(&result);
                    shard.record(admission, outcome, started.map(|s| s.elapsed()));
                }
                Poll::Ready(result.map_err(Into::into))
            }
            KindProj::Rejected { error } => Poll::Ready(Err(Box::new(error.clone()))),
        }
    }
}
