//! Delivery from the store: rounds of the oldest events, each about one sink batch, so a
//! round goes out on one connection in order. An event is deleted from the store only once
//! the sink confirmed it, and a round stops at its first failure: nothing after a failed
//! event counts as delivered, so a replay starts exactly there, in order.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use serde_json::Value;
use sluice_socketio_sink::{Emit, SinkError};
use tokio::sync::watch;

use sluice_hook::error_chain;

use crate::owner::Ownership;
use crate::relay::Relay;

/// The most events in a round, and the sink's batch size (one round, one batch).
pub(crate) const ROUND_EVENTS: usize = 50;
/// The most payload bytes in a round, and the sink's batch byte cap.
pub(crate) const ROUND_BYTES: usize = 1 << 20;
/// The longest wait before retrying after a failure: delivery resumes this soon after the
/// dashboard is back, however long it was away.
pub(crate) const MAX_RETRY_WAIT: Duration = Duration::from_secs(1);
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
    let mut replaying = false;
    let mut told_never_acked = false;
    loop {
        if *stopped.borrow() {
            return;
        }
        let round = match relay.store.take(ROUND_EVENTS, ROUND_BYTES).await {
            Ok(round) => round,
            Err(error) => {
                tracing::error!(%error, "cannot read the store");
                if pause(Duration::from_millis(200), &mut stopped).await {
                    return;
                }
                continue;
            }
        };
        if round.rows.is_empty() {
            replaying = false;
            tokio::select! {
                () = relay.new_events.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        let outcomes: Vec<_> = round
            .rows
            .iter()
            .map(|row| {
                let emit = serde_json::from_str::<Value>(&row.payload)
                    .ok()
                    .map(|value| relay.sink.emit(Emit::new("claude_event", value)));
                (row.key, emit)
            })
            .collect();
        let mut confirmed = Vec::with_capacity(outcomes.len());
        let mut failure = None;
        let mut unreadable = 0;
        // A stop lets the round in flight finish, within a grace period, so that what the
        // dashboard has is recorded and not sent again by the next relay.
        let mut grace = None;
        for (key, outcome) in outcomes {
            let Some(outcome) = outcome else {
                // Not JSON: nothing a dashboard could take. Counted, and let go.
                unreadable += 1;
                confirmed.push(key);
                continue;
            };
            if *stopped.borrow() {
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
                        _ = stopped.changed() => {
                            grace = Some(tokio::time::Instant::now() + STOP_GRACE);
                        }
                    },
                }
            };
            // What is unconfirmed at the end of the grace stays in the store.
            let Some(result) = result else { break };
            match result {
                Ok(()) => confirmed.push(key),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let counts = &relay.counts;
        let delivered = match relay.store.confirm(round.only(&confirmed)).await {
            Ok(_) => confirmed.len() as u64 - unreadable,
            Err(error) => {
                tracing::error!(%error, "cannot record a delivery; the events will be sent again");
                0
            }
        };
        counts.rounds.fetch_add(1, Ordering::Relaxed);
        counts.delivered.fetch_add(delivered, Ordering::Relaxed);
        counts.unreadable.fetch_add(unreadable, Ordering::Relaxed);
        if replaying {
            counts.replayed.fetch_add(delivered, Ordering::Relaxed);
        }
        let Some(error) = failure else {
            continue;
        };
        replaying = true;
        counts.retries.fetch_add(1, Ordering::Relaxed);
        let wait = retry_wait(&error);
        let mut described = error_chain(&error);
        // An ack timeout before any ack: the events reach such a server and go again every
        // round, so say what to do.
        if matches!(error, SinkError::AckTimedOut(_))
            && counts.delivered.load(Ordering::Relaxed) == 0
        {
            described.push_str(NEVER_ACKED);
            if !std::mem::replace(&mut told_never_acked, true) {
                tracing::warn!(error = described, "no ack, and none so far");
            }
        }
        tracing::debug!(
            error = described,
            ?wait,
            "delivery failed; retrying from the store"
        );
        if !matches!(error, SinkError::BreakerOpen { .. }) {
            *relay
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(described);
        }
        if pause(wait, &mut stopped).await {
            return;
        }
    }
}

fn retry_wait(error: &SinkError) -> Duration {
    match error {
        SinkError::BreakerOpen { retry_after } => retry_after
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
