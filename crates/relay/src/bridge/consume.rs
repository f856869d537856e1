//! The bridge's work: rounds of pulled messages, each sent to the dashboard and settled
//! in stream order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use serde_json::Value;
use sluice_nats_sink::async_nats::jetstream::stream::ConsumerErrorKind;
use sluice_nats_sink::async_nats::{
    self,
    jetstream::{self, consumer, AckKind},
};
use sluice_nats_sink::DEFAULT_STREAM;

use super::stats::Counters;
use super::{Bridge, ACK_WAIT, MAX_ACK_PENDING, NAK_DELAY, ROUND_EXPIRES, STARTUP_WAIT};
use crate::config::{without_credentials, Config};
use crate::destination::{Destination, Failure, FailureKind, Outgoing, Pending};
use crate::socketio::SocketIo;

/// How long a failed opening of the consumer waits before the next, doubling up to
/// [`OPEN_RETRY_MAX`]: a cluster that is still electing answers within a second or two, a
/// durable the server refuses to change is named in the log without filling it.
const OPEN_RETRY: Duration = Duration::from_secs(1);
const OPEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// How long after trouble the consumer is opened again.
const TROUBLE_PAUSE: Duration = Duration::from_millis(500);

/// How much later than its expiry a pull may end before the server is thought gone.
const PULL_SLACK: Duration = Duration::from_secs(2);

/// Opens the durable and delivers round after round until `stop`; returns the exit code.
pub(super) async fn consume(
    config: Config,
    bridge: Bridge,
    destination: Arc<SocketIo>,
    counters: Arc<Counters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> i32 {
    let from = without_credentials(&bridge.from).into_owned();
    let mut retry = OPEN_RETRY;
    // Set after trouble: messages may be on their way to nobody, whatever the consumer says.
    let mut troubled = false;
    while !*stop.borrow() {
        let (client, consumer, info) = match open_consumer(&config, &bridge).await {
            Ok(opened) => {
                retry = OPEN_RETRY;
                opened
            }
            Err(error) => {
                tracing::warn!(%from, "bridge: {error}; retrying in {retry:?}");
                if pause(retry, &mut stop).await {
                    return 0;
                }
                retry = (retry * 2).min(OPEN_RETRY_MAX);
                continue;
            }
        };
        // Messages a dead bridge, or trouble on the way, left unacked come back after
        // ACK_WAIT, counted from now at the latest (the consumer's leader answered, and one
        // elected since restarts their clocks no later than its election), and a dead
        // bridge's last pull may still take some for ROUND_EXPIRES: wait for them, so that
        // they reach the dashboard before newer ones. After trouble the bridge waits even if
        // the consumer counts nothing unacked: a leader elected in the meantime may not have
        // applied its predecessor's last deliveries yet.
        if troubled || info.num_ack_pending > 0 || info.num_waiting > 0 {
            tracing::info!(
                unacked = info.num_ack_pending,
                pulls = info.num_waiting,
                leader = info.cluster.as_ref().and_then(|c| c.leader.as_deref()),
                "waiting {:?} for what was left unacked to come back",
                STARTUP_WAIT
            );
            if pause(STARTUP_WAIT, &mut stop).await {
                return 0;
            }
        }
        troubled = false;
        let connected = Connects::of(&client);
        while !*stop.borrow() {
            let ended = round(&consumer, &destination, &counters, &connected).await;
            let wait = match ended {
                Round::Done => continue,
                Round::Failed(delay) => {
                    // The nak'd messages come back first only once their delay has passed.
                    delay + Duration::from_millis(200)
                }
                Round::Trouble(why) => {
                    // The server may have handed out messages that never reached this
                    // bridge: they come back only after ACK_WAIT, and anything pulled before
                    // would overtake them. The consumer is opened again (it may have a new
                    // leader, or be gone), and what it still counts unacked is waited for.
                    tracing::warn!(%from, "bridge: {why}; opening the consumer again");
                    if pause(TROUBLE_PAUSE, &mut stop).await {
                        return 0;
                    }
                    troubled = true;
                    break;
                }
            };
            if pause(wait, &mut stop).await {
                return 0;
            }
        }
    }
    0
}

/// How a round ended.
enum Round {
    /// Each message was acked, or terminated.
    Done,
    /// The dashboard did not take one: it and the rest were nak'd with this delay.
    Failed(Duration),
    /// The pull failed, or the connection to NATS was made again during the round: the
    /// messages received since were left unacked, for the server to redeliver in order.
    Trouble(String),
}

/// The client's count of connections made, to see whether it reconnected since.
struct Connects {
    client: async_nats::Client,
    at: u64,
}

impl Connects {
    fn of(client: &async_nats::Client) -> Self {
        Self {
            client: client.clone(),
            at: client.statistics().connects.load(Ordering::Relaxed),
        }
    }

    fn again(&self) -> bool {
        self.client.statistics().connects.load(Ordering::Relaxed) != self.at
    }
}

/// Pulls at most [`MAX_ACK_PENDING`] messages, sends each as it comes and settles them in
/// stream order.
async fn round(
    consumer: &consumer::PullConsumer,
    destination: &SocketIo,
    counters: &Counters,
    connected: &Connects,
) -> Round {
    let pulled = tokio::time::Instant::now();
    let mut batch = match consumer
        .batch()
        .max_messages(MAX_ACK_PENDING)
        .expires(ROUND_EXPIRES)
        .messages()
        .await
    {
        Ok(batch) => batch,
        Err(error) => return Round::Trouble(format!("pull failed: {error}")),
    };
    let mut sending = Sending {
        in_flight: FuturesOrdered::new(),
        held: VecDeque::new(),
        failed: None,
    };
    let mut trouble: Option<String> = None;
    let mut more = true;
    // `release` leaves nothing held while nothing is in flight, so the loop ends with both
    // empty.
    while more || !sending.in_flight.is_empty() {
        tokio::select! {
            biased;
            Some((message, outcome)) = sending.in_flight.next(), if !sending.in_flight.is_empty() => {
                let message: jetstream::Message = message;
                match (outcome, sending.failed) {
                    (Ok(()), None) => {
                        let _ = message.ack().await;
                        Counters::add(&counters.delivered);
                    }
                    (outcome, earlier) => {
                        let delay = earlier.unwrap_or_else(|| nak_delay(outcome.err()));
                        sending.failed = Some(delay);
                        nak(&message, delay, counters).await;
                    }
                }
                if trouble.is_none() {
                    sending.release(destination, counters).await;
                }
            }
            next = batch.next(), if more => match next {
                Some(Ok(message)) => {
                    Counters::add(&counters.received);
                    if message.info().is_ok_and(|info| info.delivered > 1) {
                        Counters::add(&counters.redelivered);
                    }
                    if trouble.is_none() && connected.again() {
                        trouble = Some("reconnected to NATS during a pull".to_string());
                    }
                    if trouble.is_some() {
                        continue; // left unacked: redelivered after ACK_WAIT, in order
                    }
                    sending.held.push_back(message);
                    sending.release(destination, counters).await;
                }
                Some(Err(error)) => trouble = Some(format!("pull ended: {error}")),
                None => {
                    more = false;
                    // The server ends a pull by ROUND_EXPIRES; the client gives up 5 s later.
                    // A pull that lasted that long lost its server side: the consumer's leader
                    // went away with it, maybe with messages on the way.
                    if trouble.is_none() && pulled.elapsed() > ROUND_EXPIRES + PULL_SLACK {
                        trouble = Some("the server did not end a pull".to_string());
                    }
                }
            },
        }
    }
    // Held messages (after trouble) stay unacked, as the rest of the round.
    if trouble.is_none() && connected.again() {
        trouble = Some("reconnected to NATS during a pull".to_string());
    }
    match (trouble, sending.failed) {
        (Some(why), _) => Round::Trouble(why),
        (None, Some(delay)) => Round::Failed(delay),
        (None, None) => Round::Done,
    }
}

/// A round's messages on their way to the dashboard.
struct Sending {
    /// Each message sent, with its event's outcome, settled in stream order.
    in_flight: FuturesOrdered<Sent>,
    /// Received and not sent yet.
    held: VecDeque<jetstream::Message>,
    /// Set once something in this round failed: the rest is nak'd with this delay.
    failed: Option<Duration>,
}

impl Sending {
    /// Sends what is held, in order, as far as the order allows. With the breaker closed,
    /// each event is sent at once (pipelined). Otherwise only while nothing is in flight: an
    /// event the open breaker turned away, followed by one sent just after the breaker let a
    /// probe through, would reach the dashboard after it (first arrivals out of order). Once
    /// something failed, the rest is nak'd.
    async fn release(&mut self, destination: &SocketIo, counters: &Counters) {
        while !self.held.is_empty() {
            if let Some(delay) = self.failed {
                for message in self.held.drain(..) {
                    nak(&message, delay, counters).await;
                }
                return;
            }
            if !self.in_flight.is_empty() && !destination.circuit_closed() {
                return;
            }
            let Some(message) = self.held.pop_front() else {
                return;
            };
            match decode(&message.payload) {
                Some(event) => {
                    let outcome = destination.send(event);
                    self.in_flight.push_back(Sent {
                        message: Some(message),
                        outcome,
                    });
                }
                None => {
                    tracing::warn!(subject = %message.subject, "bridge: not a claude_event; terminated");
                    let _ = message.ack_with(AckKind::Term).await;
                    Counters::add(&counters.terminated);
                }
            }
        }
    }
}

/// A message sent, and its event's outcome: resolves to both.
struct Sent {
    message: Option<jetstream::Message>,
    outcome: Pending,
}

impl Future for Sent {
    type Output = (jetstream::Message, Result<(), Failure>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let outcome = ready!(self.outcome.as_mut().poll(cx));
        let message = self
            .message
            .take()
            .expect("a Sent is not polled after it resolved");
        Poll::Ready((message, outcome))
    }
}

/// Sleeps `wait`; true if the bridge is stopping.
async fn pause(wait: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// How long a message the dashboard did not take waits before it comes back: what an open
/// breaker says, within bounds, or [`NAK_DELAY`].
fn nak_delay(failure: Option<Failure>) -> Duration {
    let Some(failure) = failure else {
        return NAK_DELAY;
    };
    tracing::info!("bridge: {}; nak'd for later", crate::error_chain(&failure));
    match failure.kind() {
        FailureKind::TurnedAway { retry_after } => retry_after
            .unwrap_or(NAK_DELAY)
            .clamp(Duration::from_millis(100), Duration::from_secs(2)),
        _ => NAK_DELAY,
    }
}

async fn nak(message: &jetstream::Message, delay: Duration, counters: &Counters) {
    let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
    Counters::add(&counters.nakd);
}

/// The event in a message: a `claude_event` payload with its `data.event_id`.
fn decode(payload: &[u8]) -> Option<Outgoing> {
    let text = std::str::from_utf8(payload).ok()?;
    let value: Value = serde_json::from_str(text).ok()?;
    let event_id = value.get("data")?.get("event_id")?.as_str()?.to_string();
    Some(Outgoing {
        event_id,
        payload: text.to_string(),
    })
}

/// The client, the durable, created, or updated to the bridge's settings (a durable made by
/// hand or by another build keeps its own `ack_wait` otherwise, and the order promise rests
/// on this one), and the durable's state as its leader tells it.
async fn open_consumer(
    config: &Config,
    bridge: &Bridge,
) -> Result<(async_nats::Client, consumer::PullConsumer, consumer::Info), String> {
    let client = sluice_nats_sink::connect(&bridge.from, config.nats_creds.as_deref())
        .await
        .map_err(|e| crate::error_chain(&e))?;
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(DEFAULT_STREAM).await.map_err(|e| {
        format!("no stream {DEFAULT_STREAM} ({e}): create it with `sluice-hook nats setup`")
    })?;
    let mut consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(bridge.durable.clone()),
            description: Some("sluice-hook bridge".to_string()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_ack_pending: MAX_ACK_PENDING as i64,
            ..Default::default()
        })
        .await
        .map_err(|e| {
            // The server refused the settings (it answered): say what to do.
            let hint = if matches!(e.kind(), ConsumerErrorKind::JetStream(_)) {
                " (a durable of that name with settings the server will not change: remove \
                 it, or give the bridge another --durable)"
            } else {
                ""
            };
            format!("consumer {}: {e}{hint}", bridge.durable)
        })?;
    // Asked again: only the consumer's leader answers this, so the clocks of what it counts
    // unacked run from no later than now.
    let info = consumer
        .info()
        .await
        .map_err(|e| format!("consumer {}: no leader answered ({e})", bridge.durable))?
        .clone();
    Ok((client, consumer, info))
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_only_claude_events_with_an_id() {
        let event = decode(br#"{"data":{"event_id":"e1","x":1}}"#).expect("an event");
        assert_eq!(event.event_id, "e1");
        assert!(decode(b"not json").is_none());
        assert!(decode(br#"{"data":{}}"#).is_none());
        assert!(decode(&[0xff, 0xfe]).is_none());
    }
}
