//! One hook's connection: bounded request lines in, one answer line each out. A client whose
//! line exceeds the limit, or that stays silent too long, is closed, so no client can make
//! the relay hold more than one line of memory.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

use tokio_util::codec::{FramedRead, LinesCodec};

use crate::protocol;
use crate::size::{self, Fit};

use crate::relay::Relay;
use crate::store_worker::Incoming;

/// How long a client may stay silent before it is closed.
const CLIENT_IDLE: Duration = Duration::from_secs(5);
/// How long delivery of a client's events waits for the client to hang up.
const HANG_UP_WAIT: Duration = Duration::from_millis(2);

/// The most hook connections served at once; more wait in the listen backlog.
pub(crate) const MAX_CLIENTS: usize = 128;

/// Serves the hooks' connections until ingest closes. Runs on the store's thread
/// (see [`crate::store_worker::StoreWorker::serve_beside`]), where it makes its listener.
pub(crate) fn listen(
    relay: Arc<Relay>,
    listener: std::os::unix::net::UnixListener,
) -> impl Future<Output = ()> + Send + 'static {
    // However this ends (a stop, a panic, the store's thread gone, even before the task's
    // first poll), the relay stops: one that no longer listens must not hold the lock that
    // keeps another from starting.
    let stop = StopOnExit(Arc::clone(&relay));
    async move {
        let _stop = stop;
        accept(relay, listener).await;
    }
}

async fn accept(relay: Arc<Relay>, listener: std::os::unix::net::UnixListener) {
    let listener = match UnixListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot listen");
            return;
        }
    };
    let mut closing = relay.closing.subscribe();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&relay.clients).acquire_owned() => permit,
            _ = closing.wait_for(|closing| *closing) => return,
        };
        let Ok(permit) = permit else { return };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = closing.wait_for(|closing| *closing) => return,
        };
        if let Ok((stream, _)) = accepted {
            let relay = Arc::clone(&relay);
            tokio::spawn(async move {
                serve(relay, stream).await;
                drop(permit);
            });
        }
    }
}

struct StopOnExit(Arc<Relay>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        let _ = self.0.stop.send(true);
    }
}

async fn serve(relay: Arc<Relay>, stream: UnixStream) {
    if let Err(error) = crate::safety::check_peer(&stream) {
        tracing::warn!(%error, "refused a client");
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(protocol::MAX_LINE));
    // Whether the client handed over events that delivery was not told of yet. It is told
    // once the hook hangs up, sends another line or goes quiet for HANG_UP_WAIT: Claude
    // Code waits for the hook, nobody waits for the dashboard, and delivering while the
    // hook exits slowed the hook by 0.04 to 0.07 ms on this 2-core machine (paired).
    let mut untold = false;
    let mut closing = relay.closing.subscribe();
    loop {
        let wait = if untold { HANG_UP_WAIT } else { CLIENT_IDLE };
        // Once ingest closes, no further line is read, so none is acknowledged: the hook
        // finds the connection closed and starts the next relay.
        let next = tokio::select! {
            biased;
            _ = closing.wait_for(|closing| *closing) => Ok(None),
            next = tokio::time::timeout(wait, lines.next()) => next,
        };
        if std::mem::take(&mut untold) {
            relay.new_events.notify_one();
            if next.is_err() {
                continue; // quiet, still connected: keep serving it
            }
        }
        let line = match next {
            Err(_) | Ok(None) => return,
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "closed a client that sent a bad line");
                return;
            }
            Ok(Some(Ok(line))) => line,
        };
        let event = matches!(
            line.as_bytes().first(),
            Some(&(protocol::EVENT | protocol::OVERSIZED_EVENT))
        );
        let answer = relay.answer(line).await;
        untold |= event && answer == protocol::ACK;
        if write.write_all(&answer).await.is_err() {
            if untold {
                relay.new_events.notify_one();
            }
            return;
        }
    }
}

impl Relay {
    async fn answer(&self, line: String) -> Vec<u8> {
        match line.as_bytes().first().copied() {
            Some(kind @ (protocol::EVENT | protocol::OVERSIZED_EVENT)) => {
                let rest = line.get(2..).unwrap_or_default();
                self.accept(rest, kind == protocol::OVERSIZED_EVENT).await
            }
            Some(protocol::BAD_INPUT) => {
                self.counts.bad_inputs.fetch_add(1, Ordering::Relaxed);
                protocol::ACK.to_vec()
            }
            Some(protocol::STATS) => {
                let mut stats = self.stats().await.to_string();
                stats.push('\n');
                stats.into_bytes()
            }
            Some(protocol::QUIT) => {
                // No event is taken once the stop is acknowledged.
                self.closing.send_replace(true);
                let _ = self.stop.send(true);
                protocol::ACK.to_vec()
            }
            _ => b"N unknown request\n".to_vec(),
        }
    }

    /// Stores an event, then acknowledges it: from here on it survives a crash. The caller
    /// tells delivery.
    async fn accept(&self, rest: &str, oversized: bool) -> Vec<u8> {
        self.counts.events.fetch_add(1, Ordering::Relaxed);
        *self
            .last_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let (event_id, json) = protocol::split_event(rest);
        let event_id = event_id.map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string);
        let mut incoming = Incoming {
            event_id,
            json: json.to_string(),
            oversized,
        };
        if incoming.json.len() > self.config.max_event_bytes {
            // A client that did not guard the size (an older hook, another program).
            if let Ok(value) = serde_json::from_str(json) {
                let (fitted, fit) = size::fit(value, self.config.max_event_bytes);
                incoming.json = fitted;
                incoming.oversized = fit != Fit::Unchanged;
            }
        }
        match self.store.append(incoming).await {
            Ok(()) => protocol::ACK.to_vec(),
            Err(error) => format!("N spool: {error}\n").into_bytes(),
        }
    }
}
