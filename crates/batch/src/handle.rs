//! [`BatchHandle`]: flush, shutdown and stats of a batcher from outside the stack.

use std::fmt;
use std::future::poll_fn;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::FlushReason;
use crate::completion::Completion;
use crate::error::ShutdownTimedOut;
use crate::state::Shared;
use crate::stats::Stats;

/// What a handle needs of a batcher, whatever its item and key types.
pub(crate) trait Control: Send + Sync + fmt::Debug {
    fn seal_all(&self, reason: FlushReason) -> Vec<Arc<Completion>>;
    fn close(&self);
    fn stats(&self) -> Stats;
    fn finished(&self) -> &Completion;
}

impl<T, K> Control for Shared<T, K>
where
    T: Send,
    K: Hash + Eq + Clone + Send + Sync,
{
    fn seal_all(&self, reason: FlushReason) -> Vec<Arc<Completion>> {
        Shared::seal_all(self, reason)
    }

    fn close(&self) {
        Shared::close(self);
    }

    fn stats(&self) -> Stats {
        Shared::stats(self)
    }

    fn finished(&self) -> &Completion {
        &self.finished
    }
}

/// Flushes, shuts down and observes a batcher; get one from
/// [`Batcher::handle`](crate::Batcher::handle).
///
/// Cheap to clone. It does not keep the worker alive: once every
/// [`Batcher`](crate::Batcher) is dropped the worker delivers what is queued and ends, and
/// the handle still reports its stats.
#[derive(Clone)]
pub struct BatchHandle {
    control: Arc<dyn Control>,
}

impl BatchHandle {
    pub(crate) fn new(control: Arc<dyn Control>) -> Self {
        Self { control }
    }

    /// Hands every open batch over now and resolves once everything submitted before the
    /// call was delivered or failed.
    pub async fn flush(&self) {
        for completion in self.control.seal_all(FlushReason::Flush) {
            let mut slot = None;
            poll_fn(|cx| completion.poll(cx, &mut slot)).await.ok();
        }
    }

    /// Stops accepting items (later calls fail with [`Closed`](crate::Closed)), delivers
    /// everything queued, and resolves when the worker has ended.
    ///
    /// With a `deadline`, gives up waiting after it and reports how many items were still
    /// undelivered; the worker keeps delivering them. A process that awaits `shutdown(None)`
    /// before exiting loses nothing the inner service accepts.
    pub async fn shutdown(&self, deadline: Option<Duration>) -> Result<(), ShutdownTimedOut> {
        self.control.close();
        self.control.seal_all(FlushReason::Shutdown);
        let mut slot = None;
        let finished = poll_fn(|cx| self.control.finished().poll(cx, &mut slot));
        match deadline {
            None => {
                finished.await.ok();
                Ok(())
            }
            Some(deadline) => match tokio::time::timeout(deadline, finished).await {
                Ok(_) => Ok(()),
                Err(_) => Err(ShutdownTimedOut {
                    remaining: self.control.stats().queued,
                    deadline,
                }),
            },
        }
    }

    /// A consistent snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.control.stats()
    }

    /// Resolves when the worker has ended: after a shutdown, or once every
    /// [`Batcher`](crate::Batcher) is dropped and the queue is delivered.
    pub async fn finished(&self) {
        let mut slot = None;
        poll_fn(|cx| self.control.finished().poll(cx, &mut slot))
            .await
            .ok();
    }

    /// True once the worker has ended (shut down, or dropped).
    pub fn is_finished(&self) -> bool {
        self.control.finished().is_complete()
    }
}

impl fmt::Debug for BatchHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchHandle")
            .field("batcher", &self.control)
            .finish()
    }
}
