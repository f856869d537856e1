//! The Socket.IO dashboard as a [`Destination`]: the `sluice-socketio-sink` built for the
//! relay, its errors sorted into outages and failures that could be the event's own.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_socketio_sink::{Encoded, OpenDuration, SinkBuilder, SinkError, SocketIoSink, State};

use crate::config::{Config, Delivery, TOKEN_HEADER};
use crate::destination::{Destination, Failure, FailureKind, Outgoing, Pending};

/// The longest wait before retrying after a failure: delivery resumes this soon after the
/// dashboard is back, however long it was away.
pub(crate) const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);

/// How long one of the bridge's batches waits for its connection.
const BRIDGE_WAIT: Duration = Duration::from_secs(30);

/// The dashboard, through one sink.
#[derive(Debug)]
pub(crate) struct SocketIo {
    sink: SocketIoSink,
}

impl SocketIo {
    /// The sink the relay uses: batches of up to `max_items` events and `max_bytes` bytes.
    pub(crate) fn build(
        config: &Config,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Self, sluice_socketio_sink::BoxError> {
        let builder = SocketIoSink::builder(config.url.clone());
        Self::configure(builder, config, config.delivery, max_items, max_bytes)
    }

    /// The sink the bridge uses: as [`build`](Self::build), always waiting for the
    /// dashboard's ack, at most `ack_timeout` (its consumer's `ack_wait` must be longer), on
    /// one connection, so that the dashboard sees events in the order they were sent.
    pub(crate) fn build_for_bridge(
        config: &Config,
        max_items: usize,
        max_bytes: usize,
        ack_timeout: Duration,
    ) -> Result<Self, sluice_socketio_sink::BoxError> {
        // Batches wait for the one connection in line, as long as those ahead may take: one
        // that gave up waiting would fail unsent while a later one got the connection and
        // reached the dashboard before it.
        let builder = SocketIoSink::builder(config.url.clone())
            .ack_timeout(ack_timeout)
            .max_connections(1)
            .wait_timeout(BRIDGE_WAIT);
        Self::configure(
            builder,
            config,
            Delivery::Acknowledged,
            max_items,
            max_bytes,
        )
    }

    fn configure(
        builder: SinkBuilder,
        config: &Config,
        delivery: Delivery,
        max_items: usize,
        max_bytes: usize,
    ) -> Result<Self, sluice_socketio_sink::BoxError> {
        let sink = builder
            .delivery(delivery.into())
            .open_backoff(OpenDuration::Backoff {
                initial: Duration::from_millis(250),
                max: MAX_RETRY_WAIT,
                multiplier: 2.0,
                jitter: true,
            })
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
            .max_items(max_items)
            .max_bytes(max_bytes)
            // On a dashboard off loopback, sending needs its token (`SLUICE_TOKEN`).
            .connector(|connector| match &config.token {
                Some(token) => connector.header(TOKEN_HEADER, token.expose()),
                None => connector,
            })
            .build()?;
        Ok(Self { sink })
    }

    /// Whether the sink's breaker is closed, so that an event sent now is not turned away.
    pub(crate) fn circuit_closed(&self) -> bool {
        self.sink.circuit_state() == State::Closed
    }
}

impl Destination for SocketIo {
    fn send(&self, event: Outgoing) -> Pending {
        // The stored JSON text goes as it is: checked to be one value, not parsed into a tree.
        match Encoded::from_json("claude_event", event.payload) {
            Ok(encoded) => {
                let sent = self.sink.emit_encoded(encoded);
                Box::pin(async move { sent.await.map_err(failure) })
            }
            Err(error) => Box::pin(std::future::ready(Err(Failure::new(
                FailureKind::Unreadable,
                error,
            )))),
        }
    }

    fn stats(&self) -> Value {
        serde_json::to_value(self.sink.stats()).unwrap_or_else(|_| json!({}))
    }

    fn shutdown(&self, grace: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = self.sink.shutdown(Some(grace)).await;
        })
    }
}

/// Sorts the sink's error: an open breaker turns the event away, a missing ack or a lost
/// connection could be the event's own, and anything else is an outage.
fn failure(error: SinkError) -> Failure {
    let kind = match &error {
        SinkError::BreakerOpen { retry_after } => FailureKind::TurnedAway {
            retry_after: *retry_after,
        },
        SinkError::AckTimedOut(_) => FailureKind::Unconfirmed { no_ack: true },
        SinkError::ConnectionLost(_) => FailureKind::Unconfirmed { no_ack: false },
        _ => FailureKind::Outage,
    };
    Failure::new(kind, error)
}
