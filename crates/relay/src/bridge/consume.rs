//! The bridge's work: the durable opened, and round after round of pulled messages; after
//! trouble, the durable opened again.

use std::sync::Arc;
use std::time::Duration;

use sluice_nats_sink::async_nats::jetstream::stream::ConsumerErrorKind;
use sluice_nats_sink::async_nats::{
    self,
    jetstream::{self, consumer},
};
use sluice_nats_sink::DEFAULT_STREAM;

use super::round::{round, Connects, Round, Shared};
use super::stats::Counters;
use super::suspects::Suspects;
use super::{Bridge, ACK_WAIT, MAX_ACK_PENDING, STARTUP_WAIT};
use crate::config::{without_credentials, Config};
use crate::socketio::SocketIo;

/// How long a failed opening of the consumer waits before the next, doubling up to
/// [`OPEN_RETRY_MAX`]: a cluster that is still electing answers within a second or two, a
/// durable the server refuses to change is named in the log without filling it.
const OPEN_RETRY: Duration = Duration::from_secs(1);
const OPEN_RETRY_MAX: Duration = Duration::from_secs(30);

/// How long each request of the opening may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// How long after trouble the consumer is opened again.
const TROUBLE_PAUSE: Duration = Duration::from_millis(500);

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
    let mut suspects = Suspects::default();
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
        let mut isolate = false;
        while !*stop.borrow() {
            let shared = Shared {
                destination: &destination,
                counters: &counters,
                connected: &connected,
                suspects: &mut suspects,
            };
            let ended = round(&consumer, shared, std::mem::take(&mut isolate)).await;
            let wait = match ended {
                Round::Done => continue,
                Round::Failed {
                    delay,
                    isolate: next,
                } => {
                    isolate = next;
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

/// Sleeps `wait`; true if the bridge is stopping.
async fn pause(wait: Duration, stop: &mut tokio::sync::watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
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
    let mut js = jetstream::new(client.clone());
    // A cluster that is recovering may not answer: try again soon rather than wait out the
    // client's 10 s.
    js.set_timeout(OPEN_TIMEOUT);
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
