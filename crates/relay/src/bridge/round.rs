//! One round: at most [`MAX_ACK_PENDING`] pulled messages, each sent to the dashboard as it
//! comes and settled in stream order.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_util::stream::FuturesOrdered;
use futures_util::StreamExt;
use serde_json::Value;
use sluice_nats_sink::async_nats::{
    self,
    jetstream::{self, consumer, AckKind},
};

use super::stats::Counters;
use super::suspects::{Suspects, Verdict, SET_ASIDE_AFTER, SUSPECT_RETRY};
use super::{MAX_ACK_PENDING, NAK_DELAY, ROUND_EXPIRES};
use crate::destination::{Destination, Failure, FailureKind, Outgoing, Pending};
use crate::socketio::SocketIo;

/// How much later than its expiry a pull may end before the server is thought gone.
const PULL_SLACK: Duration = Duration::from_secs(2);

/// How a round ended.
pub(super) enum Round {
    /// Each message was acked, or terminated.
    Done,
    /// The dashboard did not take one: it and the rest were nak'd with `delay`. With
    /// `isolate`, it was sent and not confirmed (maybe its own fault): the next round sends
    /// one event at a time.
    Failed { delay: Duration, isolate: bool },
    /// The pull failed, or the connection to NATS was made again during the round: the
    /// messages received since were left unacked, for the server to redeliver in order.
    Trouble(String),
}

/// The client's count of connections made, to see whether it reconnected since.
pub(super) struct Connects {
    client: async_nats::Client,
    at: u64,
}

impl Connects {
    pub(super) fn of(client: &async_nats::Client) -> Self {
        Self {
            client: client.clone(),
            at: client.statistics().connects.load(Ordering::Relaxed),
        }
    }

    fn again(&self) -> bool {
        self.client.statistics().connects.load(Ordering::Relaxed) != self.at
    }
}

/// What every round works with.
pub(super) struct Shared<'a> {
    pub(super) destination: &'a SocketIo,
    pub(super) counters: &'a Counters,
    pub(super) connected: &'a Connects,
    pub(super) suspects: &'a mut Suspects,
}

/// Pulls at most [`MAX_ACK_PENDING`] messages, sends each as it comes (one at a time with
/// `isolate`) and settles them in stream order.
pub(super) async fn round(
    consumer: &consumer::PullConsumer,
    shared: Shared<'_>,
    isolate: bool,
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
    let Shared {
        destination,
        counters,
        connected,
        suspects,
    } = shared;
    let mut sending = Sending {
        in_flight: FuturesOrdered::new(),
        alone_in_flight: false,
        held: VecDeque::new(),
        failed: None,
        suspect_nakd: false,
        isolate,
        isolate_next: false,
    };
    // The server ends a pull by ROUND_EXPIRES. A pull still open well after that lost its
    // server side (the consumer's leader went away with it, maybe with messages on the way).
    let give_up = pulled + ROUND_EXPIRES + PULL_SLACK;
    let mut trouble: Option<String> = None;
    let mut more = true;
    // `release` leaves nothing held while nothing is in flight, so the loop ends with both
    // empty.
    while more || !sending.in_flight.is_empty() {
        tokio::select! {
            biased;
            Some(settled) = sending.in_flight.next(), if !sending.in_flight.is_empty() => {
                sending.settle(settled, suspects, counters).await;
                if trouble.is_none() {
                    sending.release(destination, suspects, counters).await;
                }
            }
            next = tokio::time::timeout_at(give_up, batch.next()), if more => match next {
                Err(_) => {
                    more = false;
                    trouble.get_or_insert_with(|| "the server did not end a pull".to_string());
                }
                Ok(Some(Ok(message))) => {
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
                    sending.release(destination, suspects, counters).await;
                }
                Ok(Some(Err(error))) => trouble = Some(format!("pull ended: {error}")),
                Ok(None) => more = false,
            },
        }
    }
    // Held messages (after trouble) stay unacked, as the rest of the round.
    if trouble.is_none() && connected.again() {
        trouble = Some("reconnected to NATS during a pull".to_string());
    }
    match (trouble, sending.failed) {
        (Some(why), _) => Round::Trouble(why),
        (None, Some(delay)) => Round::Failed {
            delay,
            isolate: sending.isolate_next,
        },
        (None, None) => Round::Done,
    }
}

/// A round's messages on their way to the dashboard.
struct Sending {
    /// Each message sent, with its event's outcome, settled in stream order.
    in_flight: FuturesOrdered<Sent>,
    /// Whether what is in flight went alone: nothing follows it until it is settled.
    alone_in_flight: bool,
    /// Received and not sent yet.
    held: VecDeque<jetstream::Message>,
    /// Set once something in this round failed: the rest is nak'd with this delay.
    failed: Option<Duration>,
    /// A suspect was nak'd with SUSPECT_RETRY: nothing behind it may come back sooner.
    suspect_nakd: bool,
    /// Every event goes alone in this round.
    isolate: bool,
    /// The failure that ended the round could be its event's own: isolate the next.
    isolate_next: bool,
}

impl Sending {
    /// Sends what is held, in order, as far as the order allows. With the breaker closed,
    /// each event is sent at once (pipelined). An event goes alone (once nothing is in
    /// flight, and nothing follows until it is settled) while the breaker is not closed (an
    /// event the open breaker turned away, followed by one sent as the breaker let a probe
    /// through, would reach the dashboard after it), in an isolating round, and if it is a
    /// suspect. Once something failed, the rest is nak'd.
    async fn release(&mut self, destination: &SocketIo, suspects: &Suspects, counters: &Counters) {
        while let Some(message) = self.held.front() {
            if let Some(delay) = self.failed {
                for message in self.held.drain(..) {
                    nak(&message, delay, counters).await;
                }
                return;
            }
            let alone = self.isolate
                || !destination.circuit_closed()
                || suspects.is_suspect(sequence(message));
            if !self.in_flight.is_empty() && (alone || self.alone_in_flight) {
                return;
            }
            let Some(message) = self.held.pop_front() else {
                return;
            };
            match decode(&message.payload) {
                Some(event) => {
                    let outcome = destination.send(event);
                    self.alone_in_flight = alone;
                    self.in_flight.push_back(Sent {
                        message: Some(message),
                        outcome,
                        alone,
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

    /// Acks, naks or sets aside a message whose event's outcome came.
    async fn settle(&mut self, settled: Settled, suspects: &mut Suspects, counters: &Counters) {
        let Settled {
            message,
            outcome,
            alone,
        } = settled;
        if self.in_flight.is_empty() {
            self.alone_in_flight = false;
        }
        let failure = match (outcome, self.failed) {
            (Ok(()), None) => {
                if message.ack().await.is_ok() {
                    Counters::add(&counters.delivered);
                }
                suspects.acked(sequence(&message));
                return;
            }
            (_, Some(delay)) => {
                nak(&message, delay, counters).await;
                return;
            }
            (Err(failure), None) => failure,
        };
        let (FailureKind::Unconfirmed { no_ack }, true, Some(at)) =
            (failure.kind(), alone, sequence(&message))
        else {
            // Turned away, an outage, or unconfirmed among others: the rest waits, and after
            // the last, the next round isolates.
            self.isolate_next = matches!(failure.kind(), FailureKind::Unconfirmed { .. });
            self.fail(nak_delay(&failure));
            nak(&message, self.failed.unwrap_or(NAK_DELAY), counters).await;
            return;
        };
        let reason = crate::error_chain(&failure);
        match suspects.failed_alone(at) {
            Verdict::SetAside => {
                if message.ack_with(AckKind::Term).await.is_ok() {
                    Counters::add(&counters.set_aside);
                }
                tracing::warn!(
                    stream_sequence = at,
                    subject = %message.subject,
                    "bridge: {reason}; failed alone {SET_ASIDE_AFTER} times while the \
                     dashboard acknowledged others: set aside (terminated; the stream keeps it)"
                );
                return;
            }
            Verdict::Suspect(failures) => tracing::info!(
                stream_sequence = at,
                "bridge: {reason}; failed alone ({failures} of {SET_ASIDE_AFTER}), tried again"
            ),
            Verdict::NotBlamed => tracing::info!(
                stream_sequence = at,
                "bridge: {reason}; failed alone, tried again"
            ),
        }
        nak(&message, SUSPECT_RETRY, counters).await;
        self.suspect_nakd = true;
        if !no_ack {
            // Maybe never written: what follows must not overtake it.
            self.fail(SUSPECT_RETRY);
        }
    }

    /// Something failed: the rest of the round is nak'd with `delay`, and never comes back
    /// before a suspect nak'd earlier.
    fn fail(&mut self, delay: Duration) {
        let delay = if self.suspect_nakd {
            delay.max(SUSPECT_RETRY)
        } else {
            delay
        };
        self.failed = Some(delay);
    }
}

/// A message whose event's outcome came, and whether it went alone.
struct Settled {
    message: jetstream::Message,
    outcome: Result<(), Failure>,
    alone: bool,
}

/// A message sent, and its event's outcome: resolves to both.
struct Sent {
    message: Option<jetstream::Message>,
    outcome: Pending,
    alone: bool,
}

impl Future for Sent {
    type Output = Settled;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Settled> {
        let outcome = ready!(self.outcome.as_mut().poll(cx));
        let message = self
            .message
            .take()
            .expect("a Sent is not polled after it resolved");
        Poll::Ready(Settled {
            message,
            outcome,
            alone: self.alone,
        })
    }
}

/// The message's place in the stream.
fn sequence(message: &jetstream::Message) -> Option<u64> {
    message.info().ok().map(|info| info.stream_sequence)
}

/// How long a message the dashboard did not take waits before it comes back: what an open
/// breaker says, within bounds, or [`NAK_DELAY`].
fn nak_delay(failure: &Failure) -> Duration {
    tracing::info!("bridge: {}; nak'd for later", crate::error_chain(failure));
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
