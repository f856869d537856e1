//! The outcome of a batch, shared by its items' response futures and by flushes, and why
//! items fail.

use std::fmt;
use std::mem;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use std::task::{Context, Poll, Waker};

use crate::error::{BatchFailed, BoxError, Closed};

/// Why items did not get through.
/// Why items did not get through.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The inner service failed their batch.
    Batch(Arc<BoxError>),
    /// They never reached the inner service.
    Closed(Option<Arc<BoxError>>),
}

impl Failure {
    pub(crate) fn to_error(&self) -> BoxError {
        match self {
            Self::Batch(inner) => Box::new(BatchFailed::new(Arc::clone(inner))),
            Self::Closed(None) => Box::new(Closed::new()),
            Self::Closed(Some(cause)) => Box::new(Closed::because(Arc::clone(cause))),
        }
    }
}

/// The outcome of one batch, awaited by its items' futures and by flushes.
/// The outcome of one batch, awaited by its items' futures and by flushes.
#[derive(Default)]
pub(crate) struct Completion {
    outcome: OnceLock<Result<(), Failure>>,
    waiters: Mutex<Vec<Waker>>,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("outcome", &self.outcome.get())
            .finish_non_exhaustive()
    }
}

impl Completion {
    pub(crate) fn complete(&self, outcome: Result<(), Failure>) {
        if self.outcome.set(outcome).is_ok() {
            let waiters = mem::take(&mut *self.waiters.lock());
            for waker in waiters {
                waker.wake();
            }
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.outcome.get().is_some()
    }

    /// Ready with the outcome, or registers `cx`'s waker. `slot` is the caller's own, `None`
    /// at first: it keeps the place of the caller's waker, so that a poll replaces it there
    /// in O(1) instead of scanning every waiter (with N tasks awaiting one batch, a scan
    /// per poll made it O(N²): 26 % of the time with 1,000 tasks).
    pub(crate) fn poll(
        &self,
        cx: &mut Context<'_>,
        slot: &mut Option<usize>,
    ) -> Poll<Result<(), Failure>> {
        if let Some(outcome) = self.outcome.get() {
            return Poll::Ready(outcome.clone());
        }
        let mut waiters = self.waiters.lock();
        // Checked again under the lock: `complete` sets the outcome before it takes the lock.
        if let Some(outcome) = self.outcome.get() {
            return Poll::Ready(outcome.clone());
        }
        // The list is only emptied on completion, so a slot stays valid until then.
        match slot.and_then(|i| waiters.get_mut(i)) {
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                *slot = Some(waiters.len());
                waiters.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}
