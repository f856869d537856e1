//! Future types.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::completion::Completion;
use crate::error::{BoxError, Closed};

/// Response future of [`Batcher`](crate::Batcher): resolves when the item's batch completes.
///
/// Dropping it does not withdraw the item, which is still delivered: fire-and-forget works.
pub struct ResponseFuture {
    kind: Kind,
}

enum Kind {
    /// The batch's completion, and the place of this future's waker among its waiters.
    Waiting(Arc<Completion>, Option<usize>),
    Failed(Option<BoxError>),
}

impl ResponseFuture {
    pub(crate) fn waiting(completion: Arc<Completion>) -> Self {
        Self {
            kind: Kind::Waiting(completion, None),
        }
    }

    pub(crate) fn failed(error: BoxError) -> Self {
        Self {
            kind: Kind::Failed(Some(error)),
        }
    }
}

impl Future for ResponseFuture {
    type Output = Result<(), BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.kind {
            Kind::Waiting(completion, slot) => completion
                .poll(cx, slot)
                .map(|outcome| outcome.map_err(|failure| failure.to_error())),
            // Polled again after completion: the error has been handed out already.
            Kind::Failed(error) => {
                Poll::Ready(Err(error.take().unwrap_or_else(|| Box::new(Closed::new()))))
            }
        }
    }
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Waiting(completion, _) if completion.is_complete() => "complete",
            Kind::Waiting(..) => "waiting",
            Kind::Failed(_) => "failed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
