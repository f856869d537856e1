//! [`Batcher`]: the service that takes items one at a time and hands them on in batches.

use std::fmt;
use std::hash::Hash;
use std::mem;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tower_service::Service;

use crate::batch::Batch;
use crate::config::Overflow;
use crate::error::{BoxError, QueueFull};
use crate::future::ResponseFuture;
use crate::handle::BatchHandle;
use crate::layer::BatchLayer;
use crate::state::Shared;
use crate::submit::{Refusal, Submitted};
use crate::worker::Worker;

/// Collects items into batches for an inner `Service<Batch<T, K>>` run by a [`Worker`].
///
/// Cheap to clone; clones share the queue and the worker. See the [crate documentation](crate).
pub struct Batcher<T, K = ()> {
    shared: Arc<Shared<T, K>>,
    /// A queue slot taken by `poll_ready` for the next `call`.
    reserved: bool,
}

impl<T> Batcher<T>
where
    T: Send + 'static,
{
    /// Batches for `service` with the default settings, its worker spawned on the current
    /// Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`; use [`Batcher::pair`] to run the
    /// worker elsewhere.
    pub fn new<S>(service: S) -> Self
    where
        S: Service<Batch<T>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
    {
        BatchLayer::new().spawn(service)
    }

    /// Batches for `service` with the default settings, returning the worker to run.
    pub fn pair<S>(service: S) -> (Self, Worker<S, T>)
    where
        S: Service<Batch<T>>,
        S::Error: Into<BoxError>,
    {
        BatchLayer::new().pair(service)
    }
}

impl<T, K> Batcher<T, K> {
    pub(crate) fn from_shared(shared: Arc<Shared<T, K>>) -> Self {
        Self {
            shared,
            reserved: false,
        }
    }
}

impl<T, K> Batcher<T, K>
where
    T: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A handle to flush, shut down and observe this batcher.
    pub fn handle(&self) -> BatchHandle {
        BatchHandle::new(Arc::clone(&self.shared) as _)
    }
}

impl<T, K> Batcher<T, K>
where
    K: Hash + Eq + Clone,
{
    /// Submits `item` without waiting and without `&mut self`: fails at once with
    /// [`QueueFull`] (counted as dropped) when the queue is full, whatever the
    /// [`Overflow`] setting, or with [`Closed`](crate::Closed) after a shutdown. For callers that
    /// must never wait and share one batcher.
    pub fn try_call(&self, item: T) -> ResponseFuture {
        if let Some(failure) = self.shared.closed() {
            return ResponseFuture::failed(failure.to_error());
        }
        response(self.shared.submit(item, false, false))
    }
}

impl<T, K> Service<T> for Batcher<T, K>
where
    K: Hash + Eq + Clone,
{
    type Response = ();
    type Error = BoxError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(failure) = self.shared.closed() {
            return Poll::Ready(Err(failure.to_error()));
        }
        if self.reserved || self.shared.config.overflow == Overflow::DropNewest {
            return Poll::Ready(Ok(()));
        }
        ready!(self.shared.poll_reserve(cx));
        self.reserved = true;
        // Closed while we waited: give the slot back.
        if let Some(failure) = self.shared.closed() {
            self.reserved = false;
            self.shared.release(1);
            return Poll::Ready(Err(failure.to_error()));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, item: T) -> Self::Future {
        let reserved = mem::take(&mut self.reserved);
        let backpressure = self.shared.config.overflow == Overflow::Backpressure;
        assert!(
            reserved || !backpressure,
            "Batcher::call without poll_ready: poll_ready must return Ready(Ok) first"
        );
        // With backpressure, a slot for the next call is reserved now if the queue has room
        // to spare, under the lock taken anyway, sparing the next `poll_ready` a lock.
        let submitted = self.shared.submit(item, reserved, backpressure);
        if let Ok(submitted) = &submitted {
            self.reserved = submitted.next_reserved;
        }
        response(submitted)
    }
}

fn response(submitted: Result<Submitted, Refusal>) -> ResponseFuture {
    match submitted {
        Ok(submitted) => ResponseFuture::waiting(submitted.completion),
        Err(Refusal::Closed(failure)) => ResponseFuture::failed(failure.to_error()),
        Err(Refusal::Full) => ResponseFuture::failed(Box::new(QueueFull::new())),
    }
}

impl<T, K> Clone for Batcher<T, K> {
    fn clone(&self) -> Self {
        self.shared.services.fetch_add(1, Ordering::AcqRel);
        // A clone starts without a reserved slot.
        Self::from_shared(Arc::clone(&self.shared))
    }
}

impl<T, K> Drop for Batcher<T, K> {
    fn drop(&mut self) {
        if self.reserved {
            self.shared.release(1);
        }
        if self.shared.services.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last service handle: the worker delivers what is queued, then ends.
            self.shared.wake_worker();
        }
    }
}

impl<T, K> fmt::Debug for Batcher<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batcher")
            .field("shared", &self.shared)
            .field("reserved", &self.reserved)
            .finish()
    }
}
