//! The relay's own state, sent to the dashboard every `SLUICE_STATUS_EVERY` seconds (off by
//! default) as a `sluice_status` event: its breaker, store depth and dead letters, for a web
//! view to show.
//!
//! It goes on a connection of its own and asks no ack: it is not a Claude Code event, must
//! not take a place in the store or a batch, and a lost one is replaced by the next. A
//! dashboard that does not know the event ignores it (claude-mpm's handles `claude_event`
//! only).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::relay::Relay;

/// The event's name (the embedded dashboard's `sluice_dashboard::STATUS_EVENT`).
const STATUS_EVENT: &str = "sluice_status";
/// The most one connection attempt or one emit may take.
const STEP: Duration = Duration::from_secs(2);

/// Sends the relay's state every `every` until the relay stops.
pub(crate) async fn run(relay: Arc<Relay>, every: Duration, mut stopped: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut client: Option<(Client, Arc<AtomicBool>)> = None;
    tracing::debug!(?every, "status: sending the relay's state");
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
        let status = status(&relay).await;
        // An emit on a connection the dashboard cut (a restart) may still "succeed".
        if client
            .as_ref()
            .is_some_and(|(_, closed)| closed.load(Ordering::Acquire))
        {
            tracing::debug!("status: the connection closed; connecting again");
            close(client.take()).await;
        }
        if client.is_none() {
            client = connect(&relay).await;
        }
        if let Some((open, _)) = &client {
            let sent = tokio::time::timeout(STEP, open.emit(STATUS_EVENT, Payload::from(status)));
            if !matches!(sent.await, Ok(Ok(()))) {
                // Reconnected at the next tick; the dashboard may be down meanwhile.
                close(client.take()).await;
            }
        }
    }
    close(client).await;
}

async fn close(client: Option<(Client, Arc<AtomicBool>)>) {
    if let Some((client, _)) = client {
        let _ = tokio::time::timeout(STEP, client.disconnect()).await;
    }
}

/// What the page shows of a relay: its breaker, its store and its dead letters (events it
/// will never deliver: dropped at the store's cap, damaged in it, or not JSON).
async fn status(relay: &Relay) -> Value {
    let stats = relay.stats().await;
    let count = |key: &str| stats[key].as_u64().unwrap_or(0);
    json!({
        "relay_pid": std::process::id(),
        "breaker": stats["circuit_state"],
        "store_depth": stats["spool_depth"],
        "dead_letters": count("spool_dropped") + count("spool_damaged") + count("unreadable"),
        "delivered": stats["delivered"],
        "uptime_secs": stats["uptime_secs"],
    })
}

/// A connection the dashboard accepted, and whether it was lost since.
///
/// As the sink does with rust_socketio 0.6: `connect()` returns before the server accepted
/// the namespace (an emit before that is lost, and socketioxide drops the connection), and
/// a connection the server cut reports `"error"`, not `"close"`.
async fn connect(relay: &Relay) -> Option<(Client, Arc<AtomicBool>)> {
    let closed = Arc::new(AtomicBool::new(false));
    let (on_close, on_error) = (Arc::clone(&closed), Arc::clone(&closed));
    let (opened, accepted) = tokio::sync::oneshot::channel::<()>();
    let opened = std::sync::Mutex::new(Some(opened));
    let mut builder = ClientBuilder::new(relay.config.url.as_str())
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .reconnect_on_disconnect(false)
        .on(Event::Connect, move |_, _| {
            let opened = opened
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some(opened) = opened {
                let _ = opened.send(());
            }
            async {}.boxed()
        })
        .on(Event::Close, move |_, _| {
            on_close.store(true, Ordering::Release);
            async {}.boxed()
        })
        .on(Event::Error, move |_, _| {
            on_error.store(true, Ordering::Release);
            async {}.boxed()
        })
        // The dashboard may send events: nothing to do with them.
        .on_any(|_, _, _| async {}.boxed());
    if let Some(token) = &relay.config.token {
        builder = builder.opening_header(crate::config::TOKEN_HEADER, token.expose());
    }
    let open = async {
        let client = builder.connect().await.map_err(|e| e.to_string())?;
        match accepted.await {
            Ok(()) => Ok(client),
            Err(_) => {
                let _ = client.disconnect().await;
                Err("the namespace was not accepted".to_string())
            }
        }
    };
    match tokio::time::timeout(STEP, open).await {
        Ok(Ok(client)) => Some((client, closed)),
        Ok(Err(error)) => {
            tracing::debug!(%error, "status: cannot connect");
            None
        }
        Err(_) => {
            tracing::debug!("status: cannot connect within {STEP:?}");
            None
        }
    }
}
