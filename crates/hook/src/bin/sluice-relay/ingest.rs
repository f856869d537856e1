//! One hook's connection: bounded request lines in, one answer line each out. A client whose
//! line exceeds the limit, or that stays silent too long, is closed, so no client can make
//! the relay hold more than one line of memory.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio_util::codec::{FramedRead, LinesCodec};

use sluice_hook::protocol;
use sluice_hook::size::{self, Fit};

use crate::relay::Relay;
use crate::store_worker::Incoming;

/// How long a client may stay silent before it is closed.
const CLIENT_IDLE: Duration = Duration::from_secs(5);

pub(crate) async fn serve(relay: Arc<Relay>, stream: UnixStream) {
    if let Err(error) = sluice_hook::safety::check_peer(&stream) {
        tracing::warn!(%error, "refused a client");
        return;
    }
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(protocol::MAX_LINE));
    loop {
        let line = match tokio::time::timeout(CLIENT_IDLE, lines.next()).await {
            Err(_) | Ok(None) => return,
            Ok(Some(Err(error))) => {
                tracing::warn!(%error, "closed a client that sent a bad line");
                return;
            }
            Ok(Some(Ok(line))) => line,
        };
        let answer = relay.answer(line).await;
        if write.write_all(&answer).await.is_err() {
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
                let _ = self.stop.send(true);
                protocol::ACK.to_vec()
            }
            _ => b"N unknown request\n".to_vec(),
        }
    }

    /// Stores an event, then acknowledges it: from here on it survives a crash.
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
            Ok(()) => {
                self.new_events.notify_one();
                protocol::ACK.to_vec()
            }
            Err(error) => format!("N spool: {error}\n").into_bytes(),
        }
    }
}
