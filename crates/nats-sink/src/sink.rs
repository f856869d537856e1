//! The sink: queues each event and hands back a future of its own outcome.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use pin_project_lite::pin_project;
use sluice_batch::{BatchHandle, Batcher, ShutdownTimedOut};
use sluice_breaker::{BreakerHandle, State};
use tokio::sync::oneshot;
use tower_service::Service;

use crate::builder::SinkBuilder;
use crate::connection::Link;
use crate::error::SinkError;
use crate::message::Message;
use crate::publish::{Confirmed, Counts, Pending};
use crate::stats::SinkStats;
use crate::subject;

/// Publishes events to JetStream through batching and a circuit breaker, over one client.
/// See the [crate documentation](crate).
pub struct NatsSink {
    pub(crate) batcher: Batcher<Pending>,
    pub(crate) batch: BatchHandle,
    pub(crate) breaker: BreakerHandle,
    pub(crate) link: Link,
    pub(crate) prefix: String,
    pub(crate) host: String,
    pub(crate) counts: Arc<Counts>,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("server", &self.link.server)
            .field("prefix", &self.prefix)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Starts a [`SinkBuilder`] for `url`: `nats://host:4222` or `tls://host:4222`, with a
    /// user and password (`nats://user:pass@host`) or a token (`nats://token@host`) if the
    /// server wants them, or several such URLs separated by commas (a cluster).
    pub fn builder(url: impl Into<String>) -> SinkBuilder {
        SinkBuilder::new(url)
    }

    /// Queues `message` and returns at once, never waiting for the network. The future
    /// resolves with the stream's [`Confirmed`] once the server acknowledged the message
    /// (a duplicate counts), or with why not; dropping it does not withdraw the message.
    pub fn publish(&self, message: Message) -> PublishFuture {
        let (outcome, told) = oneshot::channel();
        let pending = Pending {
            subject: self.subject(&message),
            event_id: message.event_id,
            payload: Bytes::from(message.payload),
            outcome,
        };
        PublishFuture {
            batch: self.batcher.try_call(pending),
            told,
            breaker: self.breaker.clone(),
        }
    }

    /// The subject `message` is published on: `<prefix>.<host>.<session>.<event>`.
    pub fn subject(&self, message: &Message) -> String {
        subject::subject(&self.prefix, &self.host, &message.session, &message.event)
    }

    /// Resolves once everything published before the call was confirmed or failed.
    pub async fn flush(&self) {
        self.batch.flush().await;
    }

    /// Stops accepting events, waits for what is queued to be confirmed or to fail (within
    /// `deadline`, if given), and closes the connection.
    pub async fn shutdown(&self, deadline: Option<Duration>) -> Result<(), ShutdownTimedOut> {
        let done = self.batch.shutdown(deadline).await;
        // Every ack awaited is in: nothing is left to write, so the close loses nothing.
        let _ = self.link.client.drain().await;
        done
    }

    /// A snapshot of the sink's counters.
    pub fn stats(&self) -> SinkStats {
        let batch = self.batch.stats();
        let breaker = self.breaker.metrics();
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let client = self.link.client.statistics();
        SinkStats {
            server: self.link.server.clone(),
            prefix: self.prefix.clone(),
            host: subject::token(&self.host),
            connected: self.link.is_connected(),
            circuit_state: breaker.state.as_str().to_string(),
            circuit_failures: breaker.consecutive_failures,
            breaker_transitions: breaker.transitions,
            submitted: batch.submitted,
            confirmed: load(&self.counts.confirmed),
            duplicates: load(&self.counts.duplicates),
            rejected: load(&self.counts.rejected),
            failed: load(&self.counts.failed),
            dropped: batch.dropped + batch.rejected,
            dropped_breaker_open: batch.rejected,
            dropped_queue_full: batch.dropped,
            queued: batch.queued,
            unconfirmed: load(&self.counts.unconfirmed),
            connects: client.connects.load(Ordering::Relaxed),
            last_error: self.link.last_error(),
        }
    }

    /// The breaker's state.
    pub fn circuit_state(&self) -> State {
        self.breaker.state()
    }

    /// The client, shared: for [`setup`](crate::setup), or a consumer on the same
    /// connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.link.client
    }
}

impl Service<Message> for NatsSink {
    type Response = Confirmed;
    type Error = SinkError;
    type Future = PublishFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), SinkError>> {
        // Never waits: a full queue turns the newest event away, counted.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, message: Message) -> PublishFuture {
        self.publish(message)
    }
}

pin_project! {
    /// Resolves when a published event was confirmed by the stream, or with why not.
    pub struct PublishFuture {
        #[pin]
        batch: sluice_batch::future::ResponseFuture,
        told: oneshot::Receiver<Result<Confirmed, SinkError>>,
        breaker: BreakerHandle,
    }
}

impl fmt::Debug for PublishFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublishFuture").finish_non_exhaustive()
    }
}

impl Future for PublishFuture {
    type Output = Result<Confirmed, SinkError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // The batch completes after each of its events was told its outcome.
        let batch = ready!(this.batch.poll(cx));
        Poll::Ready(match this.told.try_recv() {
            Ok(outcome) => outcome,
            // Never reached the publisher: turned away, or its batch failed before writing.
            Err(_) => Err(match batch {
                Err(error) => match SinkError::from_box(error) {
                    SinkError::BreakerOpen { .. } => SinkError::BreakerOpen {
                        retry_after: this.breaker.retry_after(),
                    },
                    error => error,
                },
                Ok(()) => SinkError::Closed,
            }),
        })
    }
}
