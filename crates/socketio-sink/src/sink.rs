//! The sink: batch → breaker → pool → connector.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use serde::Serialize;
use sluice_batch::{BatchHandle, BatchLayer, Batcher, Dispatch, Overflow, ShutdownTimedOut};
use sluice_breaker::{BreakerHandle, BreakerOpen, CircuitBreakerLayer, OpenDuration, State};
use sluice_pool::{PoolHandle, PoolLayer};
use tower::{Service, ServiceBuilder};

use crate::connection::{Goodbye, LastFailure, SocketIoConnector};
use crate::emit::{Delivery, Emit, Encoded, Encoding, Name};
use crate::error::{BoxError, SinkError};

/// Builds a [`SocketIoSink`]; get one from [`SocketIoSink::builder`].
///
/// The defaults are the reference system's: 5 connections; the breaker opens after 5
/// failures in a row, for 30 s; batches of at most 10 events, at most 50 ms after the first,
/// grouped by namespace. Plus: eager dispatch (a batch leaves as soon as nothing of its
/// namespace is in flight, see [`dispatch`](Self::dispatch)), delivery confirmed by the server's ack (5 s to come, 8
/// batches on their way at once), a queue of 10,000 events that drops the newest when full
/// (an emit never waits), 5 s to connect, 5 s per emit, 2 s to wait for a connection.
#[derive(Debug, Clone)]
pub struct SinkBuilder {
    connector: SocketIoConnector,
    max_connections: usize,
    connect_timeout: Duration,
    wait_timeout: Duration,
    failure_threshold: u32,
    open_duration: OpenDuration,
    max_items: usize,
    max_wait: Duration,
    max_bytes: usize,
    queue_capacity: usize,
    reconnect_backoff: (Duration, Duration),
    max_in_flight: Option<usize>,
    dispatch: Dispatch,
}

impl SinkBuilder {
    fn new(url: impl Into<String>) -> Self {
        Self {
            connector: SocketIoConnector::new(url),
            max_connections: 5,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(2),
            failure_threshold: 5,
            open_duration: OpenDuration::Fixed(Duration::from_secs(30)),
            max_items: 10,
            max_wait: Duration::from_millis(50),
            max_bytes: 64 * 1024,
            queue_capacity: 10_000,
            reconnect_backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            max_in_flight: None,
            dispatch: Dispatch::Eager,
        }
    }

    /// Changes the connector (namespace, auth, headers, emit timeout, encoding).
    #[must_use]
    pub fn connector(
        mut self,
        configure: impl FnOnce(SocketIoConnector) -> SocketIoConnector,
    ) -> Self {
        self.connector = configure(self.connector);
        self
    }

    /// Sets the most connections (default 5).
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets how long a connect may take (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a batch waits for a connection (default 2 s).
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Sets the failures in a row that open the breaker (default 5).
    #[must_use]
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Sets how long the breaker stays open (default 30 s).
    #[must_use]
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = OpenDuration::Fixed(duration);
        self
    }

    /// Sets a growing open period instead.
    #[must_use]
    pub fn open_backoff(mut self, backoff: OpenDuration) -> Self {
        self.open_duration = backoff;
        self
    }

    /// Sets the most events per batch (default 10).
    #[must_use]
    pub fn max_items(mut self, n: usize) -> Self {
        self.max_items = n;
        self
    }

    /// Sets how long after its first event a batch leaves at the latest (default 50 ms): the
    /// window of [`Dispatch::Window`], an upper bound with [`Dispatch::Eager`].
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Sets when a batch leaves (default [`Dispatch::Eager`]): at once when nothing of its
    /// namespace is in flight, gathering what arrives meanwhile into the next batch, so an
    /// event reaching an idle sink waits for no timer. [`Dispatch::Window`] is the reference
    /// system's fixed window: a batch that does not fill up waits out `max_wait` (50 ms).
    #[must_use]
    pub fn dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// Sets the byte cap of a batch in [`Encoding::Array`] (default 64 KiB).
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets how many events may wait (default 10,000); beyond, new ones are dropped and
    /// counted.
    #[must_use]
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Sets the wait before reconnecting after a failed connect: from `initial`, doubling up
    /// to `max` (default 100 ms to 5 s). A small `max` finds a returning server sooner.
    #[must_use]
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_backoff = (initial, max);
        self
    }

    /// Sets when an event counts as sent (default [`Delivery::Acknowledged`]; see the
    /// [crate documentation](crate#delivery) for which one a server needs).
    #[must_use]
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.connector = self.connector.delivery(delivery);
        self
    }

    /// Sets how long a written batch waits for the server's ack (default 5 s). Past it the
    /// batch fails with [`SinkError::AckTimedOut`] and its connection is replaced.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.connector = self.connector.ack_timeout(timeout);
        self
    }

    /// Sets how many batches may be on their way at once (default: 8 with
    /// [`Delivery::Acknowledged`], written while earlier ones wait for their ack; 1 with
    /// [`Delivery::Written`], as before acks). They share one connection, in order.
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// Builds the sink and starts its worker on the current Tokio runtime.
    pub fn build(self) -> Result<SocketIoSink, BoxError> {
        let url = self.connector.url().to_string();
        let namespace = self.connector.namespace_name().to_string();
        let pool = PoolLayer::builder(())
            .max_size(self.max_connections)
            .connect_timeout(self.connect_timeout)
            .wait_timeout(self.wait_timeout)
            .backoff(self.reconnect_backoff.0, self.reconnect_backoff.1)
            .lifecycle(Goodbye {
                timeout: Duration::from_secs(1),
            })
            .build()?;
        let breaker = CircuitBreakerLayer::builder()
            .consecutive_failures(self.failure_threshold)
            .open_backoff(self.open_duration)
            .build()?;
        let max_in_flight = self
            .max_in_flight
            .unwrap_or(match self.connector.delivery_kind() {
                Delivery::Written => 1,
                _ => 8,
            });
        let unconfirmed = self.connector.unconfirmed();
        let last_failure = self.connector.last_failure();
        let mut batch = BatchLayer::builder()
            .max_items(self.max_items)
            .max_in_flight_per_key(max_in_flight)
            .dispatch(self.dispatch)
            .max_wait(self.max_wait)
            .capacity(self.queue_capacity)
            .overflow(Overflow::DropNewest)
            // A namespace's batches are called in order and a connection stays ready while
            // it carries some, so they all go to the same connection, which writes them in
            // call order (see `Connection`).
            .key_fn(|event: &Encoded| event.namespace().clone())
            .rejected_if(|error| error.is::<BreakerOpen>());
        if self.connector.encoding_kind() == Encoding::Array {
            // An event's share of the frame: its text and a comma.
            batch = batch.max_bytes(self.max_bytes, |event: &Encoded| event.json().len() + 1);
        }
        let batch = batch.build()?;
        let breaker_handle = breaker.handle();
        let pooled = tower::Layer::layer(&pool, self.connector);
        let pool_handle = pooled.handle();
        let batcher = ServiceBuilder::new()
            .layer(batch)
            .layer(breaker)
            .service(pooled);
        let batch_handle = batcher.handle();
        Ok(SocketIoSink {
            batcher,
            batch: batch_handle,
            breaker: breaker_handle,
            pool: pool_handle,
            server_url: url,
            namespace,
            max_connections: self.max_connections,
            unconfirmed,
            last_failure,
        })
    }
}

/// Sends events to a Socket.IO server through batching, a circuit breaker and a connection
/// pool. See the [crate documentation](crate).
pub struct SocketIoSink {
    batcher: Batcher<Encoded, Name>,
    batch: BatchHandle,
    breaker: BreakerHandle,
    pool: PoolHandle,
    server_url: String,
    namespace: String,
    max_connections: usize,
    unconfirmed: Arc<AtomicU64>,
    last_failure: Arc<LastFailure>,
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
    /// [`Delivery::Written`]), or with why not; dropping it does not withdraw the event.
    ///
    /// The payload is serialized here, on the caller's thread (see [`Encoded`]).
    pub fn emit(&self, emit: Emit) -> EmitFuture {
        self.emit_encoded(Encoded::from(emit))
    }

    /// Queues an event whose payload is JSON text already; otherwise as [`emit`](Self::emit).
    pub fn emit_encoded(&self, event: Encoded) -> EmitFuture {
        EmitFuture {
            inner: self.batcher.try_call(event),
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
        self.project()
            .inner
            .poll(cx)
            .map(|result| result.map_err(SinkError::from_box))
    }
}

/// A snapshot of the sink: the reference system's `get_stats` fields, and ours.
///
/// `submitted == sent + failed + dropped + queued` in every snapshot; `sent` counts events
/// the server acknowledged ([`Delivery::Acknowledged`]) or that were written to a
/// connection whose namespace it accepted ([`Delivery::Written`]), never events merely
/// queued or written and not yet acknowledged (those are `unconfirmed`, within `queued`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SinkStats {
    /// Connections allowed.
    pub max_connections: usize,
    /// Connections idle in the pool.
    pub available_connections: usize,
    /// Connections open.
    pub active_connections: usize,
    /// Events delivered (same as `sent`).
    pub total_events_sent: u64,
    /// Events that failed on the way (same as `failed`).
    pub total_errors: u64,
    /// `closed`, `open`, `half_open`, `forced_open` or `disabled`.
    pub circuit_state: String,
    /// Failures in a row counted by the breaker.
    pub circuit_failures: u32,
    /// Events waiting to be sent.
    pub batch_queue_size: u64,
    /// The server.
    pub server_url: String,
    /// Events handed to `emit`.
    pub submitted: u64,
    /// Events delivered: acknowledged by the server (or written, in
    /// [`Delivery::Written`]).
    pub sent: u64,
    /// Events that failed on the way (connect, emit, timeout).
    pub failed: u64,
    /// Events dropped on purpose: breaker open or queue full.
    pub dropped: u64,
    /// Of `dropped`: while the breaker was open.
    pub dropped_breaker_open: u64,
    /// Of `dropped`: the queue was full.
    pub dropped_queue_full: u64,
    /// Events accepted and not yet answered: waiting, being written or waiting for their
    /// ack.
    pub queued: u64,
    /// Of `queued`: written and waiting for the server's ack.
    pub unconfirmed: u64,
    /// Connections made.
    pub connects: u64,
    /// Connections made to replace lost ones.
    pub reconnects: u64,
    /// Connects that failed.
    pub connect_failures: u64,
    /// Breaker state changes.
    pub breaker_transitions: u64,
    /// The last connect error with its host and cause, until a connect succeeds:
    /// `cannot connect to 127.0.0.1:9 (connection refused)`.
    pub last_error: Option<String>,
}
