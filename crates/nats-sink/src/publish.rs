//! The inner service: publishes a batch in order, then awaits its acks together, and tells
//! each event its own outcome.
//!
//! A batch's messages are written by one writer task, in the order the batcher calls the
//! service, so that batches in flight at once never interleave: one machine's events reach
//! the stream in the order they were handed over (unless one fails and is sent again).

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, StreamExt};
use sluice_batch::Batch;
use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

use crate::connection::Link;
use crate::error::{
    jetstream_code, AckTimedOut, BoxError, ConnectionLost, NoStream, Rejected, SinkError,
    StreamFull, WriterStopped,
};

/// What the stream said of one event: it holds it at `sequence`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Confirmed {
    /// The stream's name.
    pub stream: String,
    /// The message's sequence in the stream (the first copy's, for a duplicate).
    pub sequence: u64,
    /// The stream had it already: a repeat of an `event_id` within the duplicate window.
    pub duplicate: bool,
}

/// One event on its way: its subject, id, payload, and where its outcome goes.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) subject: String,
    pub(crate) event_id: String,
    pub(crate) payload: Bytes,
    pub(crate) outcome: oneshot::Sender<Result<Confirmed, SinkError>>,
}

/// The sink's own counts of outcomes, kept where they are known.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) confirmed: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) unconfirmed: AtomicU64,
}

pub(crate) type Job = (Vec<Pending>, oneshot::Sender<Written>);

/// A batch once written: the acks to await, and the events that failed at once.
pub(crate) struct Written {
    acks: Vec<(Pending, PublishAckFuture)>,
    failed: Vec<(Pending, SinkError)>,
}

/// The writer: one task that writes batches in the order they were called.
pub(crate) async fn write(
    mut link: Link,
    js: jetstream::Context,
    connect_wait: Duration,
    ack_timeout: Duration,
    counts: Arc<Counts>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
) {
    while let Some((batch, reply)) = jobs.recv().await {
        if let Err(not_connected) = link.connected(connect_wait).await {
            // Nothing written: every event fails with the outage, and so does the batch.
            let failed = batch
                .into_iter()
                .map(|pending| (pending, SinkError::NotConnected(not_connected.clone())))
                .collect();
            let _ = reply.send(Written {
                acks: Vec::new(),
                failed,
            });
            continue;
        }
        let mut written = Written {
            acks: Vec::with_capacity(batch.len()),
            failed: Vec::new(),
        };
        for pending in batch {
            let publish = jetstream::message::PublishMessage::build()
                .message_id(&pending.event_id)
                .payload(pending.payload.clone());
            let sent = tokio::time::timeout(
                ack_timeout,
                js.send_publish(pending.subject.clone(), publish),
            )
            .await;
            match sent {
                Ok(Ok(ack)) => written.acks.push((pending, ack)),
                Ok(Err(error)) => {
                    let error = classify(error, &pending.subject, &link.server, ack_timeout);
                    written.failed.push((pending, error));
                }
                Err(_) => written.failed.push((
                    pending,
                    SinkError::AckTimedOut(AckTimedOut { after: ack_timeout }),
                )),
            }
        }
        counts
            .unconfirmed
            .fetch_add(written.acks.len() as u64, Ordering::Relaxed);
        let _ = reply.send(written);
    }
}

/// Sorts a publish error into the sink's: outage or the event's own.
fn classify(error: PublishError, subject: &str, server: &str, ack_timeout: Duration) -> SinkError {
    match error.kind() {
        PublishErrorKind::StreamNotFound => SinkError::NoStream(NoStream {
            subject: subject.to_string(),
            server: server.to_string(),
        }),
        PublishErrorKind::TimedOut => SinkError::AckTimedOut(AckTimedOut { after: ack_timeout }),
        PublishErrorKind::BrokenPipe => SinkError::ConnectionLost(ConnectionLost {
            server: server.to_string(),
        }),
        PublishErrorKind::MaxPayloadExceeded => SinkError::Rejected(Rejected {
            source: Arc::new(error),
        }),
        _ => match jetstream_code(&error) {
            // The stream or the account has no room (10077 is how a 2.9 server says
            // "maximum messages" or "maximum bytes exceeded"): no event's fault.
            Some(
                ErrorCode::STREAM_STORE_FAILED
                | ErrorCode::STORAGE_RESOURCES_EXCEEDED
                | ErrorCode::INSUFFICIENT_RESOURCES,
            ) => SinkError::StreamFull(StreamFull {
                source: Arc::new(error),
            }),
            // The server answered about this message.
            Some(_) => SinkError::Rejected(Rejected {
                source: Arc::new(error),
            }),
            // No answer about the message (a client-side failure): not its fault.
            None => SinkError::Other(Box::new(error)),
        },
    }
}

/// The inner service: hands each batch to the writer, then awaits its acks together.
#[derive(Debug, Clone)]
pub(crate) struct Publisher {
    pub(crate) jobs: mpsc::UnboundedSender<Job>,
    pub(crate) counts: Arc<Counts>,
    pub(crate) server: Arc<str>,
    pub(crate) ack_timeout: Duration,
}

/// A batch's future: boxed once per batch (up to `max_items` events), not per event.
pub(crate) type BatchFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

impl Service<Batch<Pending>> for Publisher {
    type Response = ();
    type Error = BoxError;
    type Future = BatchFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch<Pending>) -> BatchFuture {
        // Sent here, in call order, so the writer writes batches in the order they came.
        let (reply, written) = oneshot::channel();
        let sent = self.jobs.send((batch.into_items(), reply));
        let counts = Arc::clone(&self.counts);
        let (server, ack_timeout) = (Arc::clone(&self.server), self.ack_timeout);
        Box::pin(async move {
            if sent.is_err() {
                return Err(Box::new(WriterStopped) as BoxError);
            }
            let Written { acks, failed } = written
                .await
                .map_err(|_| Box::new(WriterStopped) as BoxError)?;
            let mut outage: Option<BoxError> = None;
            let mut settle = |pending: Pending, outcome: Result<Confirmed, SinkError>| {
                let counter = match &outcome {
                    Ok(confirmed) if confirmed.duplicate => {
                        counts.duplicates.fetch_add(1, Ordering::Relaxed);
                        &counts.confirmed
                    }
                    Ok(_) => &counts.confirmed,
                    Err(SinkError::Rejected(_)) => &counts.rejected,
                    Err(error) => {
                        if outage.is_none() {
                            outage = Some(batch_error(error));
                        }
                        &counts.failed
                    }
                };
                counter.fetch_add(1, Ordering::Relaxed);
                let _ = pending.outcome.send(outcome);
            };
            for (pending, error) in failed {
                settle(pending, Err(error));
            }
            let mut acks: FuturesOrdered<_> = acks
                .into_iter()
                .map(|(pending, ack)| {
                    let ack = ack.into_future();
                    async move { (pending, ack.await) }
                })
                .collect();
            while let Some((pending, ack)) = acks.next().await {
                counts.unconfirmed.fetch_sub(1, Ordering::Relaxed);
                let outcome = ack
                    .map(|ack| Confirmed {
                        stream: ack.stream,
                        sequence: ack.sequence,
                        duplicate: ack.duplicate,
                    })
                    .map_err(|error| classify(error, &pending.subject, &server, ack_timeout));
                settle(pending, outcome);
            }
            // A batch with an outage fails, so the breaker counts it; the events' own
            // outcomes were told to them above.
            outage.map_or(Ok(()), Err)
        })
    }
}

/// The error a batch with an outage fails with, for the breaker.
fn batch_error(error: &SinkError) -> BoxError {
    match error {
        SinkError::NotConnected(error) => Box::new(error.clone()),
        SinkError::NoStream(error) => Box::new(error.clone()),
        SinkError::AckTimedOut(error) => Box::new(*error),
        SinkError::ConnectionLost(error) => Box::new(error.clone()),
        SinkError::StreamFull(error) => Box::new(error.clone()),
        other => other.to_string().into(),
    }
}
