//! Delivery from the store: rounds of the oldest events, each about one sink batch, so a
//! round goes out on one connection in order. An event is deleted from the store only once
//! the sink confirmed it, and a round stops at its first failure: nothing after a failed
//! event counts as delivered, so a replay starts exactly there, in order. A failure that
//! could be one event's own is isolated, and an event the server fails on alone is set
//! aside (see [`crate::blame`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use crate::destination::{Failure, FailureKind, Outgoing};
use tokio::sync::watch;

use sluice_store::error_chain;

use crate::blame::{Suspects, SET_ASIDE_AFTER};
use crate::owner::Ownership;
use crate::relay::Relay;
use crate::socketio::MAX_RETRY_WAIT;
use crate::store_worker::Round;

/// The most events in a round, and the sink's batch size (one round, one batch).
pub(crate) const ROUND_EVENTS: usize = 50;
/// The most payload bytes in a round, and the sink's batch byte cap.
pub(crate) const ROUND_BYTES: usize = 1 << 20;
/// What an ack timeout means while the dashboard has acknowledged nothing yet.
const NEVER_ACKED: &str = "; the dashboard had acknowledged no event when this round timed \
    out: for a server that never acknowledges, set SLUICE_DELIVERY=written where the hooks \
    run, then `sluice-hook stop` (README: A server that never acknowledges)";
/// How long a stopping relay lets its round in flight finish.
const STOP_GRACE: Duration = Duration::from_millis(1_500);

/// Delivers the store once this relay owns it, until the relay stops.
pub(crate) async fn run(
    relay: Arc<Relay>,
    ownership: Ownership,
    mut stopped: watch::Receiver<bool>,
) {
    let waited = !ownership.is_held();
    // Held until delivery ends: then another relay may take over at once.
    let _lock = tokio::select! {
        lock = ownership.held() => match lock {
            Ok(lock) => lock,
            Err(error) => {
                tracing::error!(%error, "cannot take the store's lock: this relay delivers nothing");
                return;
            }
        },
        _ = stopped.wait_for(|stop| *stop) => return,
    };
    if waited {
        tracing::info!("the relay that delivered this store exited: delivering it now");
        relay.delivers.store(true, Ordering::Relaxed);
    }
    let mut delivery = Delivery {
        relay,
        stopped,
        suspects: Suspects::default(),
        replaying: false,
        told_never_acked: false,
    };
    delivery.run().await;
}

struct Delivery {
    relay: Arc<Relay>,
    stopped: watch::Receiver<bool>,
    suspects: Suspects,
    replaying: bool,
    told_never_acked: bool,
}

/// What became of a round's sends.
struct Sent {
    confirmed: Vec<i64>,
    unreadable: u64,
    /// The first event not confirmed, and why (nothing after it counts as confirmed).
    failure: Option<(usize, Failure)>,
}

impl Delivery {
    async fn run(&mut self) {
        loop {
            if *self.stopped.borrow() {
                return;
            }
            if let Some(key) = self.suspects.due() {
                self.try_alone(key).await;
                continue;
            }
            let round = match self
                .relay
                .store
                .take(ROUND_EVENTS, ROUND_BYTES, self.suspects.keys())
                .await
            {
                Ok(round) => round,
                Err(error) => {
                    tracing::error!(%error, "cannot read the store");
                    if pause(Duration::from_millis(200), &mut self.stopped).await {
                        return;
                    }
                    continue;
                }
            };
            // Events that failed alone before (a relay since restarted) go alone again.
            let earlier: Vec<i64> = round
                .rows
                .iter()
                .filter(|row| row.alone > 0)
                .map(|row| row.key)
                .collect();
            if !earlier.is_empty() {
                for key in earlier {
                    self.suspects.suspect(round.place(key), true);
                }
                continue;
            }
            if round.rows.is_empty() {
                self.replaying = false;
                let next_suspect = self.suspects.next_due();
                tokio::select! {
                    () = self.relay.new_events.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = async {
                        match next_suspect {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    } => {}
                    _ = self.stopped.changed() => {}
                }
                continue;
            }
            let sent = self.send(&round).await;
            let failure = self.record(&round, sent).await;
            let Some((index, error)) = failure else {
                continue;
            };
            if *self.stopped.borrow() {
                return;
            }
            self.failed_round(&round, index, &error).await;
            if self.suspects.isolate(&error) {
                self.isolate(&round, index).await;
                continue;
            }
            if pause(retry_wait(&error), &mut self.stopped).await {
                return;
            }
        }
    }

    /// Sends a round's events in order and waits for their outcomes, until the first
    /// failure; a stop lets the round in flight finish within a grace period, so that what
    /// the dashboard has is recorded and not sent again by the next relay.
    async fn send(&mut self, round: &Round) -> Sent {
        let outcomes: Vec<_> = round
            .rows
            .iter()
            .map(|row| {
                let sent = self.relay.destination.send(Outgoing {
                    event_id: row.event_id.clone(),
                    payload: row.payload.clone(),
                });
                (row.key, sent)
            })
            .collect();
        let mut sent = Sent {
            confirmed: Vec::with_capacity(outcomes.len()),
            unreadable: 0,
            failure: None,
        };
        let mut grace = None;
        for (index, (key, outcome)) in outcomes.into_iter().enumerate() {
            if *self.stopped.borrow() {
                grace.get_or_insert_with(|| tokio::time::Instant::now() + STOP_GRACE);
            }
            tokio::pin!(outcome);
            let result = loop {
                match grace {
                    Some(deadline) => {
                        break tokio::time::timeout_at(deadline, &mut outcome).await.ok()
                    }
                    None => tokio::select! {
                        result = &mut outcome => break Some(result),
                        _ = self.stopped.changed() => {
                            grace = Some(tokio::time::Instant::now() + STOP_GRACE);
                        }
                    },
                }
            };
            // What is unconfirmed at the end of the grace stays in the store.
            let Some(result) = result else { break };
            match result {
                Ok(()) => sent.confirmed.push(key),
                Err(error) if error.kind() == FailureKind::Unreadable => {
                    // Not JSON: nothing a destination could take. Counted, and let go.
                    sent.unreadable += 1;
                    sent.confirmed.push(key);
                }
                Err(error) => {
                    sent.failure = Some((index, error));
                    break;
                }
            }
        }
        sent
    }

    /// Deletes what was confirmed and counts it; returns the round's failure.
    async fn record(&mut self, round: &Round, sent: Sent) -> Option<(usize, Failure)> {
        let Sent {
            confirmed,
            unreadable,
            failure,
        } = sent;
        let relay = &self.relay;
        let counts = &relay.counts;
        let acked = confirmed.len() as u64 - unreadable;
        let delivered = match relay
            .store
            .confirm(round.confirming(confirmed.clone()))
            .await
        {
            Ok(_) => acked,
            Err(error) => {
                tracing::error!(%error, "cannot record a delivery; the events will be sent again");
                0
            }
        };
        if acked > 0 {
            self.suspects.acked();
        }
        for key in &confirmed {
            self.suspects.clear(*key);
        }
        counts.rounds.fetch_add(1, Ordering::Relaxed);
        counts.delivered.fetch_add(delivered, Ordering::Relaxed);
        counts.unreadable.fetch_add(unreadable, Ordering::Relaxed);
        if self.replaying {
            counts.replayed.fetch_add(delivered, Ordering::Relaxed);
        }
        failure
    }

    /// A round failed at `index` for a reason not the event's own: note it, say it.
    async fn failed_round(&mut self, round: &Round, index: usize, error: &Failure) {
        self.replaying = true;
        let relay = &self.relay;
        relay.counts.retries.fetch_add(1, Ordering::Relaxed);
        let mut described = error_chain(error);
        let turned_away = matches!(error.kind(), FailureKind::TurnedAway { .. });
        if !turned_away {
            if let Some(row) = round.rows.get(index) {
                let _ = relay
                    .store
                    .failed(round.place(row.key), false, described.clone())
                    .await;
            }
        }
        // An ack timeout before any ack: the events reach such a server and go again every
        // round, so say what to do.
        if error.kind() == (FailureKind::Unconfirmed { no_ack: true })
            && relay.counts.delivered.load(Ordering::Relaxed) == 0
        {
            described.push_str(NEVER_ACKED);
            if !std::mem::replace(&mut self.told_never_acked, true) {
                tracing::warn!(error = described, "no ack, and none so far");
            }
        }
        tracing::debug!(
            error = described,
            "delivery failed; retrying from the store"
        );
        if !turned_away {
            *relay
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(described);
        }
    }

    /// Sends the round's events from `from` on one at a time, each with its own ack: those
    /// the server takes are delivered, those it fails on alone become suspects (blamed once
    /// the server is seen to work). An outage ends it.
    async fn isolate(&mut self, round: &Round, from: usize) {
        self.replaying = true;
        let mut alone_failures = Vec::new();
        for row in &round.rows[from..] {
            let single = round.only(&[row.key]);
            let sent = self.send(&single).await;
            match self.record(&single, sent).await {
                None => {}
                Some((_, error)) if error.could_be_the_event() => {
                    alone_failures.push((row.key, error));
                    // Two failures alone and no ack yet: the server acks nothing.
                    if alone_failures.len() >= 2 && !self.suspects.server_works() {
                        break;
                    }
                }
                Some((_, error)) => {
                    self.failed_round(&single, 0, &error).await;
                    break;
                }
            }
            if *self.stopped.borrow() {
                break;
            }
        }
        let blame = self.suspects.server_works();
        for (key, error) in alone_failures {
            self.failed_alone(round, key, &error, blame).await;
        }
    }

    /// Tries a suspect alone: delivered, a failure alone more, or an outage.
    async fn try_alone(&mut self, key: i64) {
        let single = match self.relay.store.row(key).await {
            Ok(single) => single,
            Err(error) => {
                tracing::error!(%error, "cannot read the store");
                let _ = pause(Duration::from_millis(200), &mut self.stopped).await;
                return;
            }
        };
        if single.rows.is_empty() {
            self.suspects.clear(key);
            return;
        }
        let sent = self.send(&single).await;
        match self.record(&single, sent).await {
            None => {}
            Some((_, error)) if error.could_be_the_event() => {
                let blame = self.suspects.server_works();
                self.failed_alone(&single, key, &error, blame).await;
            }
            Some((_, error)) => {
                self.failed_round(&single, 0, &error).await;
                let _ = pause(retry_wait(&error), &mut self.stopped).await;
            }
        }
    }

    /// Records a failure of `key`'s event sent alone: against the event when `blame`, then
    /// set aside at [`SET_ASIDE_AFTER`]; a suspect, tried alone again, otherwise.
    async fn failed_alone(&mut self, round: &Round, key: i64, error: &Failure, blame: bool) {
        let place = round.place(key);
        let described = error_chain(error);
        let alone = self
            .relay
            .store
            .failed(place, blame, described.clone())
            .await
            .ok()
            .flatten();
        match alone {
            Some(alone) if blame && alone >= SET_ASIDE_AFTER => {
                self.suspects.clear(key);
                if self.relay.store.set_aside(place).await.unwrap_or(false) {
                    self.relay.counts.set_aside.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        event_id = round.rows.iter().find(|row| row.key == key).map(|row| row.event_id.as_str()),
                        failures_alone = alone,
                        error = described,
                        "the dashboard failed this event alone {alone} times while acknowledging others: set it aside (sluice-hook dead-letters)"
                    );
                }
            }
            // Tried alone again soon, and left out of rounds meanwhile.
            Some(_) if blame => self.suspects.suspect(place, false),
            // Not proven the event's own: it stays in the queue, in its place.
            Some(_) | None => self.suspects.clear(key),
        }
        if blame {
            *self
                .relay
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(described);
        }
    }
}

fn retry_wait(error: &Failure) -> Duration {
    match error.kind() {
        FailureKind::TurnedAway { retry_after } => retry_after
            .unwrap_or(Duration::from_millis(200))
            .clamp(Duration::from_millis(20), MAX_RETRY_WAIT),
        _ => Duration::from_millis(200),
    }
}

/// Waits `wait`; true when the relay is stopping.
async fn pause(wait: Duration, stopped: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stopped.borrow(),
        _ = stopped.changed() => true,
    }
}
