//! `sluice-hook bridge`: from the JetStream stream to a Socket.IO dashboard.
//!
//! A durable pull consumer with explicit acks on the stream `SLUICE_HOOKS`, feeding the
//! relay's Socket.IO destination. A message is acked only once the dashboard acknowledged
//! its event; one the dashboard did not take is nak'd with a delay (redelivered later); one
//! that is not a `claude_event` is terminated and counted; one the dashboard fails alone,
//! again and again while it acknowledges others, is set aside (see `suspects`).
//!
//! Order. The bridge pulls in rounds of at most [`MAX_ACK_PENDING`] messages, sends each as
//! it comes (pipelined, in stream order) and settles them in that order. While the sink's
//! breaker is not closed, one event at a time is in flight: one turned away is never
//! overtaken by one sent as the breaker lets a probe through. After a failure the rest of
//! the round is nak'd too, and the next round starts only once the nak delay has passed, so
//! the server redelivers the nak'd messages, in order, before any newer one. A bridge that
//! dies leaves its messages unacked: the consumer's bounded `max_ack_pending` and short
//! `ack_wait` bring them back after [`ACK_WAIT`], and a bridge that finds messages pending
//! when it starts waits that long first, so that they come before newer ones. A pull that
//! fails, a pull the server never ends, or a reconnection during a round may have lost
//! messages on the way in the same manner: the rest of the round is left unacked, and the
//! bridge opens the consumer again and waits as well, whatever the consumer then counts
//! (a leader elected in the meantime may not know its predecessor's last deliveries yet).
//! With one bridge per durable, each session's first arrivals at the dashboard are in
//! stream order; bridges sharing a durable share the work and promise no order across them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::config::{without_credentials, Config};
use crate::destination::Destination;
use crate::socketio::SocketIo;

mod consume;
mod round;
mod stats;
mod suspects;

pub use stats::query_all;
use stats::Counters;

/// Unacked messages a durable may have out at once, over all its bridges; also a round's
/// size. It bounds what a dead bridge leaves to redeliver, and so what waits [`ACK_WAIT`];
/// 256 events in flight keep the dashboard's batches full (one round trip per round).
pub const MAX_ACK_PENDING: usize = 256;

/// How long a message may stay unacked before the server redelivers it: what a dead bridge
/// costs in recovery time. Longer than the dashboard's ack timeout ([`DASHBOARD_ACK_TIMEOUT`]),
/// so that a message in flight is seldom redelivered under a live bridge (a batch written
/// while an ack travels can wait for the next one); when it is, the dashboard sees a repeat
/// of its `event_id`, never a loss.
pub const ACK_WAIT: Duration = Duration::from_secs(3);

/// How long a batch waits for the dashboard's ack before it fails (and is nak'd).
pub const DASHBOARD_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// The durable's name unless `--durable` says otherwise.
pub const DEFAULT_DURABLE: &str = "sluice-bridge";

/// How long a round's pull waits for messages when the stream is idle.
const ROUND_EXPIRES: Duration = Duration::from_millis(500);

/// How long a bridge that finds messages unacked, or pulls open, waits before its first
/// pull: a dead bridge's last pull expires, then what it left unacked comes back.
const STARTUP_WAIT: Duration = ROUND_EXPIRES
    .saturating_add(ACK_WAIT)
    .saturating_add(Duration::from_millis(500));

/// How long a nak'd message waits when the dashboard did not say.
const NAK_DELAY: Duration = Duration::from_millis(500);

/// How often the stats go to the log.
const STATS_EVERY: Duration = Duration::from_secs(10);

/// What the bridge does: read `from` (a NATS URL), deliver to `to` (a dashboard URL).
#[derive(Debug, Clone)]
pub struct Bridge {
    pub from: String,
    pub to: String,
    pub durable: String,
}

/// Runs the bridge until SIGTERM or SIGINT; returns the exit code.
pub fn run(config: Config, bridge: Bridge) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sluice-hook bridge: {error}");
            return 1;
        }
    };
    runtime.block_on(serve(config, bridge))
}

async fn serve(mut config: Config, bridge: Bridge) -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        eprintln!("sluice-hook bridge: cannot handle signals");
        return 1;
    };
    config.url = bridge.to.clone();
    let destination = match SocketIo::build_for_bridge(
        &config,
        MAX_ACK_PENDING,
        crate::deliver::ROUND_BYTES,
        DASHBOARD_ACK_TIMEOUT,
    ) {
        Ok(destination) => Arc::new(destination),
        Err(error) => {
            eprintln!(
                "sluice-hook bridge: {}: {}",
                without_credentials(&bridge.to),
                crate::error_chain(&*error)
            );
            return 1;
        }
    };
    let counters = Arc::new(Counters::default());
    // `sluice-hook stats --bridge` asks here; without it, the log still has the stats.
    let _socket = match stats::listen(&config.runtime_dir()) {
        Ok((socket, listener)) => {
            let (counters, bridge, destination) =
                (counters.clone(), bridge.clone(), destination.clone());
            tokio::spawn(stats::answer(listener, move || {
                counters.json(&bridge, &*destination)
            }));
            Some(socket)
        }
        Err(error) => {
            tracing::warn!(%error, "no stats socket: the stats are in the log only");
            None
        }
    };
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut work = tokio::spawn(consume::consume(
        config.clone(),
        bridge.clone(),
        destination.clone(),
        counters.clone(),
        stop,
    ));
    tracing::info!(
        from = %without_credentials(&bridge.from),
        to = %without_credentials(&bridge.to),
        durable = %bridge.durable,
        "bridge started"
    );
    let mut every = tokio::time::interval(STATS_EVERY);
    let mut last = Value::Null;
    let code = loop {
        tokio::select! {
            _ = term.recv() => break None,
            _ = int.recv() => break None,
            _ = usr1.recv() => {
                tracing::info!(stats = %counters.json(&bridge, &*destination), "stats");
            }
            _ = every.tick() => {
                let stats = counters.json(&bridge, &*destination);
                if stats["bridge"] != last["bridge"] {
                    tracing::info!(stats = %stats, "stats");
                    last = stats;
                }
            }
            done = &mut work => break Some(done.unwrap_or(1)),
        }
    };
    let code = match code {
        Some(code) => code,
        None => {
            tracing::info!("SIGTERM: finishing the messages in flight");
            let _ = stop_tx.send(true);
            // 3 s for the round, then 0.5 s for the sink and 1 s for its goodbye: within 5 s.
            match tokio::time::timeout(Duration::from_secs(3), &mut work).await {
                Ok(done) => done.unwrap_or(1),
                Err(_) => {
                    work.abort();
                    0 // what was not acked comes back to another bridge after ACK_WAIT
                }
            }
        }
    };
    destination.shutdown(Duration::from_millis(500)).await;
    tracing::info!(stats = %counters.json(&bridge, &*destination), "bridge exiting");
    code
}
