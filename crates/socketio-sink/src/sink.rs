//! The sink: queues each event and hands back a future of its outcome.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use sluice_batch::{BatchHandle, Batcher, ShutdownTimedOut};
use sluice_breaker::{BreakerHandle, State};
use sluice_pool::PoolHandle;
use tower::Service;

use crate::builder::SinkBuilder;
use crate::connection::LastFailure;
use crate::emit::{Emit, Encoded, Name};
use crate::error::SinkError;
use crate::stats::SinkStats;

/// Sends events to a Socket.IO server through batching, a circuit breaker and a connection
/// pool. See the [crate documentation](crate).
pub struct SocketIoSink {
    pub(crate) batcher: Batcher<Encoded, Name>,
    pub(crate) batch: BatchHandle,
    pub(crate) breaker: BreakerHandle,
    pub(crate) pool: PoolHandle,
    pub(crate) server_url: String,
    pub(crate) namespace: String,
    pub(crate) max_connections: usize,
    pub(crate) unconfirmed: Arc<AtomicU64>,
    pub(crate) last_failure: Arc<LastFailure>,
}

impl fmt::Debug for SocketIoSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketIoSink")
            .field("server_url", &self.server_url)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl SocketIoSink {
    /// Starts a [`SinkBuilder`] for `url` (e.g. `http://localhost:8765`).
    pub fn builder(url: impl Into<String>) -> SinkBuilder {
        SinkBuilder::new(url)
    }

    /// Queues `emit` and returns at once, never waiting for the network. The returned future
    /// resolves when the event was delivered (acknowledged, or written in
    /// [`Delivery::Written`](crate::Delivery::Written)), or with why not; dropping it does not withdraw the event.
    ///
    /// The payload is serialized here, on the caller's thread (see [`Encoded`]).
    pub fn emit(&self, emit: Emit) -> EmitFuture {
        self.emit_encoded(Encoded::from(emit))
    }

    /// Queues an event whose payload is JSON text already; otherwise as [`emit`](Self::emit).
    pub fn emit_encoded(&self, event: Encoded) -> EmitFuture {
        EmitFuture {
            inner: self.batcher.try_call(event),
            breaker: self.breaker.clone(),
        }
    }

    /// Resolves once everything emitted before the call was delivered or failed.
    pub async fn flush(&self) {
        self.batch.flush().await;
    }

    /// Stops accepting events, delivers what is queued (within `deadline`, if given), and
    /// closes the connections cleanly.
    pub async fn shutdown(&self, deadline: Option<Duration>) -> Result<(), ShutdownTimedOut> {
        let delivered = self.batch.shutdown(deadline).await;
        self.pool.close().await;
        delivered
    }

    /// A snapshot of the sink's counters.
    pub fn stats(&self) -> SinkStats {
        let batch = self.batch.stats();
        let breaker = self.breaker.metrics();
        let pool = self.pool.stats();
        SinkStats {
            max_connections: self.max_connections,
            available_connections: pool.idle,
            active_connections: pool.live,
            total_events_sent: batch.sent,
            total_errors: batch.failed,
            circuit_state: breaker.state.as_str().to_string(),
            circuit_failures: breaker.consecutive_failures,
            batch_queue_size: batch.queue_len,
            server_url: self.server_url.clone(),
            submitted: batch.submitted,
            sent: batch.sent,
            failed: batch.failed,
            dropped: batch.dropped + batch.rejected,
            dropped_breaker_open: batch.rejected,
            dropped_queue_full: batch.dropped,
            queued: batch.queued,
            // Counted within `queued`: it never exceeds it, even between the two reads.
            unconfirmed: self.unconfirmed.load(Ordering::Relaxed).min(batch.queued),
            connects: pool.created,
            reconnects: pool.created.saturating_sub(1).min(pool.evicted.total()),
            connect_failures: pool.connect_failures,
            breaker_transitions: breaker.transitions,
            last_error: pool
                .last_connect_error
                .map(|error| self.last_failure.describe(error, &self.server_url)),
        }
    }

    /// The breaker's state.
    pub fn circuit_state(&self) -> State {
        self.breaker.state()
    }
}

impl Service<Emit> for SocketIoSink {
    type Response = ();
    type Error = SinkError;
    type Future = EmitFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        // Never waits: a full queue drops the newest event, counted.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, emit: Emit) -> EmitFuture {
        self.emit(emit)
    }
}

pin_project! {
    /// Resolves when an emitted event was delivered, or with why not.
    pub struct EmitFuture {
        #[pin]
        inner: sluice_batch::future::ResponseFuture,
        // A rejection carries no time: the breaker tells how long until it admits again.
        breaker: BreakerHandle,
    }
}

impl fmt::Debug for EmitFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmitFuture").finish_non_exhaustive()
    }
}

impl Future for EmitFuture {
    type Output = Result<(), SinkError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        this.inner.poll(cx).map(|result| {
            result.map_err(|error| match SinkError::from_box(error) {
                SinkError::BreakerOpen { .. } => SinkError::BreakerOpen {
                    retry_after: this.breaker.retry_after(),
                },
                error => error,
            })
        })
    }
}
