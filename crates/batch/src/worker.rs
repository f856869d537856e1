//! The background task that hands batches to the inner service.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::batch::Batch;
use crate::completion::Failure;
use crate::dispatch::Dispatched;
use crate::error::BoxError;
use crate::state::Shared;

pin_project! {
    /// Hands sealed batches to the inner service and reports their outcomes.
    ///
    /// [`BatchLayer::layer`](crate::BatchLayer) spawns it on the current Tokio runtime;
    /// [`BatchLayer::pair`](crate::BatchLayer::pair) returns it for you to spawn. It ends once
    /// the batcher is shut down, or every [`Batcher`](crate::Batcher) is dropped, and all
    /// queued items are delivered. Dropped before that, it fails the items it still has with
    /// [`Closed`](crate::Closed).
    pub struct Worker<S, T, K = ()>
    where
        S: Service<Batch<T, K>>,
        K: Hash,
        K: Eq,
        K: Clone,
    {
        shared: Arc<Shared<T, K>>,
        service: S,
        in_flight: FuturesUnordered<InFlight<S::Future, K>>,
        // Batches the inner service finished, recorded at the worker's next look.
        done: Vec<(Dispatched<K>, Result<(), BoxError>)>,
        timer: Option<Pin<Box<Sleep>>>,
        // Set once the inner service's `poll_ready` failed: it is never polled again.
        broken: bool,
        finished: bool,
    }

    impl<S, T, K> PinnedDrop for Worker<S, T, K>
    where
        S: Service<Batch<T, K>>,
        K: Hash,
        K: Eq,
        K: Clone,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.finished {
                this.shared.abandon();
            }
        }
    }
}

impl<S, T, K> Worker<S, T, K>
where
    S: Service<Batch<T, K>>,
    K: Hash + Eq + Clone,
{
    pub(crate) fn new(shared: Arc<Shared<T, K>>, service: S) -> Self {
        Self {
            shared,
            service,
            in_flight: FuturesUnordered::new(),
            done: Vec::new(),
            timer: None,
            broken: false,
            finished: false,
        }
    }
}

impl<S, T, K> Future for Worker<S, T, K>
where
    S: Service<Batch<T, K>>,
    S::Error: Into<BoxError>,
    K: Hash + Eq + Clone,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if *this.finished {
            return Poll::Ready(());
        }
        loop {
            while let Poll::Ready(Some(done)) = this.in_flight.poll_next_unpin(cx) {
                this.done.push(done);
            }
            let closing = this.shared.is_closing();
            let (next_deadline, mut dispatchable) =
                this.shared.turn(this.done, closing, Instant::now());

            let mut dispatched = false;
            while !*this.broken && dispatchable {
                match this.service.poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let Some((sealed, more)) = this.shared.take_dispatchable() else {
                            break;
                        };
                        dispatchable = more;
                        let done = sealed.dispatched();
                        let future = this.service.call(sealed.batch);
                        this.in_flight.push(InFlight {
                            future,
                            done: Some(done),
                        });
                        dispatched = true;
                    }
                    Poll::Ready(Err(error)) => {
                        let error = Arc::new(error.into());
                        tracing::warn!(target: "sluice_batch", error = %error, "inner service failed; batcher closed");
                        *this.broken = true;
                        this.shared.fail_waiting(
                            Failure::Batch(Arc::clone(&error)),
                            Failure::Closed(Some(error)),
                        );
                    }
                    Poll::Pending => break,
                }
            }
            if dispatched {
                continue; // poll the new futures once, so they register their wakers
            }
            if closing && this.in_flight.is_empty() && this.shared.is_drained() {
                *this.finished = true;
                this.shared.finished.complete(Ok(()));
                return Poll::Ready(());
            }
            if let Some(deadline) = next_deadline {
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                // Deadlines only grow, so a timer set for an earlier one still fires in time
                // (and finds nothing due, or re-arms): resetting it for every new batch would
                // cost a timer-wheel update each.
                if timer.is_elapsed() || deadline < timer.deadline() {
                    timer.as_mut().reset(deadline);
                }
                if timer.as_mut().poll(cx).is_ready() {
                    continue;
                }
            }
            if this.shared.register_worker(cx.waker()) {
                continue; // work arrived while we looked
            }
            return Poll::Pending;
        }
    }
}

impl<S, T, K> fmt::Debug for Worker<S, T, K>
where
    S: Service<Batch<T, K>> + fmt::Debug,
    K: Hash + Eq + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("service", &self.service)
            .field("in_flight", &self.in_flight.len())
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// One batch in the inner service.
    struct InFlight<F, K> {
        #[pin]
        future: F,
        done: Option<Dispatched<K>>,
    }
}

impl<F, R, E, K> Future for InFlight<F, K>
where
    F: Future<Output = Result<R, E>>,
    E: Into<BoxError>,
{
    type Output = (Dispatched<K>, Result<(), BoxError>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.future.poll(cx));
        let done = this
            .done
            .take()
            .expect("FuturesUnordered polls a finished future no more");
        Poll::Ready((done, result.map(drop).map_err(Into::into)))
    }
}
