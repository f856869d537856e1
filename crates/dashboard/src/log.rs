//! What the dashboard received: the events in arrival order, each counted once by its
//! `data.event_id`, the duplicates seen, the acks asked for and sent, and waiters for a count.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

/// One event the dashboard received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The namespace it came on.
    pub namespace: String,
    /// The event name.
    pub event: String,
    /// Its first argument (`Null` without one).
    pub data: Value,
    /// How many arguments it had: the real dashboard drops events without exactly one.
    pub args: usize,
}

impl Received {
    /// The event's identity, `data.event_id` of its payload, when it has one.
    pub fn event_id(&self) -> Option<&str> {
        self.data.get("data")?.get("event_id")?.as_str()
    }
}

/// Acknowledgements asked for and sent, over every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AckStats {
    /// Events that asked for an ack.
    pub requested: u64,
    /// Acks sent.
    pub sent: u64,
    /// The most acks one connection had asked for and not yet been sent, at any moment.
    pub max_pending_per_connection: usize,
    /// Events that arrived on a connection while an ack it asked for was not yet sent: a
    /// client that keeps writing while its ack travels.
    pub arrived_while_pending: u64,
}

/// What the dashboard received so far; shared across restarts.
///
/// An event whose payload carries `data.event_id` is kept once: a later event with the same
/// id is counted in [`duplicates_seen`](Self::duplicates_seen) and not kept (nor fed to
/// subscribers). Events without an id are all kept.
#[derive(Clone, Default)]
pub struct Log {
    inner: Arc<Mutex<Events>>,
    feed: Arc<Mutex<Option<broadcast::Sender<Received>>>>,
    waiters: Arc<Waiters>,
    acks: Arc<AckCounters>,
}

#[derive(Default)]
struct Events {
    list: Vec<Received>,
    ids: HashSet<String>,
    duplicates: u64,
}

#[derive(Debug, Default)]
struct AckCounters {
    requested: AtomicU64,
    sent: AtomicU64,
    max_pending: AtomicUsize,
    arrived_while_pending: AtomicU64,
}

/// Tasks waiting in [`Log::wait_for`]: woken once, when their count is reached, so that a
/// waiter does not cost the server a wake-up per event.
#[derive(Debug)]
struct Waiters {
    /// The smallest count waited for; `usize::MAX` when nobody waits.
    next: AtomicUsize,
    list: Mutex<Vec<(usize, oneshot::Sender<()>)>>,
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            next: AtomicUsize::new(usize::MAX),
            list: Mutex::default(),
        }
    }
}

impl Waiters {
    /// Wakes those waiting for at most `count`; called with the log locked.
    fn reached(&self, count: usize) {
        if count < self.next.load(Ordering::Acquire) {
            return;
        }
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, waiter) in list.extract_if(.., |(target, _)| *target <= count) {
            let _ = waiter.send(());
        }
        self.update(&list);
    }

    fn update(&self, list: &[(usize, oneshot::Sender<()>)]) {
        let next = list.iter().map(|(target, _)| *target).min();
        self.next
            .store(next.unwrap_or(usize::MAX), Ordering::Release);
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log").field("events", &self.len()).finish()
    }
}

impl Log {
    fn events_lock(&self) -> std::sync::MutexGuard<'_, Events> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `received`; returns `false` if it is a duplicate (not kept).
    pub(crate) fn push(&self, received: Received) -> bool {
        let mut events = self.events_lock();
        if let Some(id) = received.event_id() {
            if !events.ids.insert(id.to_string()) {
                events.duplicates += 1;
                return false;
            }
        }
        if let Some(feed) = self
            .feed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = feed.send(received.clone());
        }
        events.list.push(received);
        self.waiters.reached(events.list.len());
        true
    }

    pub(crate) fn ack_requested(&self, pending_on_connection: usize) {
        self.acks.requested.fetch_add(1, Ordering::Relaxed);
        self.acks
            .max_pending
            .fetch_max(pending_on_connection, Ordering::Relaxed);
    }

    pub(crate) fn arrived_while_ack_pending(&self) {
        self.acks
            .arrived_while_pending
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ack_sent(&self) {
        self.acks.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Forgets everything received so far, the ids seen included (benchmarks clear it
    /// between iterations, so that a growing log does not weigh on later ones).
    pub fn clear(&self) {
        let mut events = self.events_lock();
        events.list.clear();
        events.list.shrink_to_fit();
        events.ids.clear();
        events.ids.shrink_to_fit();
    }

    /// Waits until at least `n` distinct events were received (duplicates of an
    /// `event_id` count once), or `timeout` passed; returns how many were.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> usize {
        let reached = {
            let events = self.events_lock();
            if events.list.len() >= n {
                return events.list.len();
            }
            let (waiter, reached) = oneshot::channel();
            let mut list = self
                .waiters
                .list
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Waiters that timed out are gone: forget them.
            list.retain(|(_, waiter)| !waiter.is_closed());
            list.push((n, waiter));
            self.waiters.update(&list);
            reached
        };
        let _ = tokio::time::timeout(timeout, reached).await;
        self.len()
    }

    /// All events kept, in arrival order, each once.
    pub fn events(&self) -> Vec<Received> {
        self.events_lock().list.clone()
    }

    /// How many distinct events were received.
    pub fn len(&self) -> usize {
        self.events_lock().list.len()
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many events arrived again with an `event_id` already seen (not kept).
    pub fn duplicates_seen(&self) -> u64 {
        self.events_lock().duplicates
    }

    /// Acks asked for and sent so far.
    pub fn ack_stats(&self) -> AckStats {
        AckStats {
            requested: self.acks.requested.load(Ordering::Relaxed),
            sent: self.acks.sent.load(Ordering::Relaxed),
            max_pending_per_connection: self.acks.max_pending.load(Ordering::Relaxed),
            arrived_while_pending: self.acks.arrived_while_pending.load(Ordering::Relaxed),
        }
    }

    /// How many `event`s were received on `namespace`.
    pub fn count(&self, namespace: &str, event: &str) -> usize {
        self.events_lock()
            .list
            .iter()
            .filter(|r| r.namespace == namespace && r.event == event)
            .count()
    }

    /// Counts per (namespace, event).
    pub fn counts(&self) -> HashMap<(String, String), usize> {
        let mut counts = HashMap::new();
        for r in &self.events_lock().list {
            *counts
                .entry((r.namespace.clone(), r.event.clone()))
                .or_default() += 1;
        }
        counts
    }

    /// A live feed of what arrives from now on (each event once).
    pub fn subscribe(&self) -> broadcast::Receiver<Received> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        feed.get_or_insert_with(|| broadcast::channel(4_096).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn event(seq: u64) -> Received {
        Received {
            namespace: "/".to_string(),
            event: "claude_event".to_string(),
            data: json!({ "seq": seq }),
            args: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_wakes_at_its_count_and_gives_up_at_its_timeout() {
        let log = Log::default();
        let early = tokio::spawn({
            let log = log.clone();
            async move { log.wait_for(2, Duration::from_secs(5)).await }
        });
        let late = tokio::spawn({
            let log = log.clone();
            async move { log.wait_for(4, Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        for seq in 0..3 {
            log.push(event(seq));
        }
        // Woken at 2 (it reads the count after the third arrived), not at its timeout.
        assert_eq!(early.await.unwrap(), 3);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(4), log.wait_for(3, Duration::ZERO)).await,
            Ok(3),
            "an already reached count returns at once"
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            late.await.unwrap(),
            3,
            "never reached: the count at the timeout"
        );
        assert!(started.elapsed() >= Duration::from_secs(4));
    }

    fn identified(seq: u64, event_id: &str) -> Received {
        Received {
            data: serde_json::json!({ "seq": seq, "data": { "event_id": event_id } }),
            ..event(seq)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_id_is_kept_once_and_waiters_count_distinct_events() {
        let log = Log::default();
        // a, b, a again (a replay), two events without an id, b again.
        for received in [
            identified(0, "a"),
            identified(1, "b"),
            identified(0, "a"),
            event(2),
            event(2),
            identified(1, "b"),
        ] {
            log.push(received);
        }
        let seqs: Vec<_> = log.events().iter().map(|r| r.data["seq"].clone()).collect();
        assert_eq!(
            seqs,
            [0, 1, 2, 2],
            "each id once, events without one all kept"
        );
        assert_eq!(log.len(), 4);
        assert_eq!(
            log.wait_for(5, Duration::from_secs(1)).await,
            4,
            "duplicates do not count towards a wait"
        );
        assert_eq!(log.duplicates_seen(), 2);
    }
}
