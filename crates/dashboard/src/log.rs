//! What the dashboard received: the events in arrival order, each counted once by its
//! `data.event_id`, the duplicates seen, the acks asked for and sent, and waiters for a count;
//! and the web view's history: the last events, numbered, and the pages following them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};

/// How many events the web view's history keeps by default.
pub const DEFAULT_HISTORY: usize = 10_000;

/// One event as the web view sees it: numbered in arrival order from 1, with no gap, and
/// serialized once, as it arrives (`{"seq": 1, "event": "claude_event", "data": {...}}`), so
/// that a page opening on a long history costs the dashboard a copy, not a serialization.
#[derive(Debug, Clone)]
pub struct Numbered {
    seq: u64,
    json: Box<RawValue>,
}

impl Numbered {
    fn new(seq: u64, received: &Received) -> Self {
        #[derive(Serialize)]
        struct Wire<'a> {
            seq: u64,
            event: &'a str,
            data: &'a Value,
        }
        let wire = Wire {
            seq,
            event: &received.event,
            data: &received.data,
        };
        // A `Value` always serializes; `null` (never seen) rather than a panic.
        let json =
            serde_json::value::to_raw_value(&wire).unwrap_or_else(|_| RawValue::NULL.to_owned());
        Self { seq, json }
    }

    /// Its number: one more than the event kept before it.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its JSON: `{"seq": ..., "event": ..., "data": ...}`.
    pub fn json(&self) -> &str {
        self.json.get()
    }
}

impl Serialize for Numbered {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// What the web view's header shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Counters {
    /// Distinct events received.
    pub events: u64,
    /// Distinct `data.session_id`s among them.
    pub sessions: u64,
    /// Events dropped because their `data.event_id` was already seen.
    pub duplicates: u64,
}

/// A follower of the live stream: told each new event under the log's lock, so that
/// nothing arrives between its history and its first live event. It returns `false` to
/// stop following.
type Follower = Box<dyn FnMut(&Numbered) -> bool + Send>;

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
///
/// It also keeps the web view's history: the last [`DEFAULT_HISTORY`] events (or as many as
/// [`with_history`](Self::with_history) says), numbered, for a page that opens late.
///
/// A log made by [`with_history`](Self::with_history) (or `default`) keeps every event and
/// every id, as a test wants; one made by [`bounded`](Self::bounded), for a dashboard that
/// runs for days, keeps only the web history and the last ids, and counts the rest.
#[derive(Clone)]
pub struct Log {
    /// Tells this log's numbering from another's (a page that reconnects to a dashboard
    /// started afresh starts over).
    epoch: u64,
    inner: Arc<Mutex<Events>>,
    feed: Arc<Mutex<Option<broadcast::Sender<Received>>>>,
    waiters: Arc<Waiters>,
    acks: Arc<AckCounters>,
}

struct Events {
    /// Every event kept, unless the log is bounded.
    list: Vec<Received>,
    /// Distinct events received (`list.len()` when every one is kept).
    received: usize,
    /// Distinct events received per namespace and event name.
    kinds: HashMap<String, HashMap<String, usize>>,
    ids: HashSet<String>,
    /// In a bounded log, the ids remembered, oldest first, and how many at most; `None`
    /// keeps every event and every id.
    id_order: VecDeque<String>,
    max_ids: Option<usize>,
    duplicates: u64,
    /// The last `capacity` events, numbered.
    history: VecDeque<Numbered>,
    capacity: usize,
    /// The number of the last event kept (0: none yet).
    seq: u64,
    sessions: HashSet<String>,
    followers: Vec<Follower>,
}

impl Events {
    fn with_history(capacity: usize) -> Self {
        Self {
            list: Vec::new(),
            received: 0,
            kinds: HashMap::new(),
            ids: HashSet::new(),
            id_order: VecDeque::new(),
            max_ids: None,
            duplicates: 0,
            history: VecDeque::new(),
            capacity,
            seq: 0,
            sessions: HashSet::new(),
            followers: Vec::new(),
        }
    }
}

impl Default for Events {
    fn default() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }
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

/// Counts `received` under its namespace and event name, allocating only for a new one.
fn count_kind(kinds: &mut HashMap<String, HashMap<String, usize>>, received: &Received) {
    let per_event = match kinds.get_mut(&received.namespace) {
        Some(per_event) => per_event,
        None => kinds.entry(received.namespace.clone()).or_default(),
    };
    match per_event.get_mut(&received.event) {
        Some(count) => *count += 1,
        None => {
            per_event.insert(received.event.clone(), 1);
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self::with_history(DEFAULT_HISTORY)
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log").field("events", &self.len()).finish()
    }
}

impl Log {
    /// A log that keeps the last `history` events for the web view and nothing else but
    /// counts: [`events`](Self::events) is empty, while [`len`](Self::len),
    /// [`count`](Self::count) and [`counters`](Self::counters) count everything. Repeats are
    /// told by the last `ids` event ids (at least one): an event sent again after that many
    /// others is kept again. Its memory stays bounded however long it runs, given bounded
    /// events.
    pub fn bounded(history: usize, ids: usize) -> Self {
        let log = Self::with_history(history);
        {
            let mut events = log.events_lock();
            events.max_ids = Some(ids.max(1));
        }
        log
    }

    /// A log whose web history keeps the last `capacity` events, and which keeps every
    /// event besides.
    pub fn with_history(capacity: usize) -> Self {
        // Not a secret: only tells two logs apart, so the clock is enough.
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64);
        Self {
            epoch,
            inner: Arc::new(Mutex::new(Events::with_history(capacity))),
            feed: Arc::default(),
            waiters: Arc::default(),
            acks: Arc::default(),
        }
    }

    /// Tells this log's numbering apart from another's.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Hands `history` the events kept for the web view, oldest first, then `live` every
    /// event kept from then on, until it returns `false`. Both run under the log's lock, so
    /// that `live` starts right after the history: no event missed, none twice. Neither
    /// may block.
    pub fn follow(
        &self,
        history: impl FnOnce(&[Numbered]),
        live: impl FnMut(&Numbered) -> bool + Send + 'static,
    ) {
        let mut events = self.events_lock();
        history(events.history.make_contiguous());
        events.followers.push(Box::new(live));
    }

    /// Events, sessions and duplicates counted so far.
    pub fn counters(&self) -> Counters {
        let events = self.events_lock();
        Counters {
            events: events.seq,
            sessions: events.sessions.len() as u64,
            duplicates: events.duplicates,
        }
    }

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
            if let Some(max) = events.max_ids {
                events.id_order.push_back(id.to_string());
                if events.id_order.len() > max {
                    if let Some(oldest) = events.id_order.pop_front() {
                        events.ids.remove(&oldest);
                    }
                }
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
        events.seq += 1;
        if let Some(session) = received.data["data"]["session_id"].as_str() {
            if !events.sessions.contains(session) {
                events.sessions.insert(session.to_string());
            }
        }
        let numbered = Numbered::new(events.seq, &received);
        events.followers.retain_mut(|follower| follower(&numbered));
        if events.capacity > 0 {
            if events.history.len() == events.capacity {
                events.history.pop_front();
            }
            events.history.push_back(numbered);
        }
        events.received += 1;
        count_kind(&mut events.kinds, &received);
        if events.max_ids.is_none() {
            events.list.push(received);
        }
        self.waiters.reached(events.received);
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
        events.received = 0;
        events.kinds.clear();
        events.ids.clear();
        events.ids.shrink_to_fit();
        events.id_order.clear();
        events.history.clear();
        events.sessions.clear();
    }

    /// Waits until at least `n` distinct events were received (duplicates of an
    /// `event_id` count once), or `timeout` passed; returns how many were.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> usize {
        let reached = {
            let events = self.events_lock();
            if events.received >= n {
                return events.received;
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

    /// All events kept, in arrival order, each once; none in a [`bounded`](Self::bounded)
    /// log.
    pub fn events(&self) -> Vec<Received> {
        self.events_lock().list.clone()
    }

    /// How many distinct events were received.
    pub fn len(&self) -> usize {
        self.events_lock().received
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
            .kinds
            .get(namespace)
            .and_then(|events| events.get(event))
            .copied()
            .unwrap_or(0)
    }

    /// Counts per (namespace, event).
    pub fn counts(&self) -> HashMap<(String, String), usize> {
        let events = self.events_lock();
        let mut counts = HashMap::new();
        for (namespace, per_event) in &events.kinds {
            for (event, count) in per_event {
                counts.insert((namespace.clone(), event.clone()), *count);
            }
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

    #[test]
    fn a_bounded_log_counts_everything_and_keeps_only_its_history_and_last_ids() {
        let log = Log::bounded(3, 4);
        for seq in 0..10 {
            assert!(log.push(identified(seq, &format!("e{seq}"))));
        }
        // A repeat of one of the last 4 ids is told; an older one is not remembered.
        assert!(!log.push(identified(9, "e9")));
        assert!(!log.push(identified(6, "e6")));
        assert!(log.push(identified(5, "e5")));
        log.push(Received {
            event: "other".to_string(),
            ..event(11)
        });
        assert!(log.events().is_empty(), "no event kept beyond the history");
        assert_eq!(log.len(), 12);
        assert_eq!(log.count("/", "claude_event"), 11);
        assert_eq!(log.count("/", "other"), 1);
        assert_eq!(log.count("/chat", "claude_event"), 0);
        assert_eq!(log.counts().len(), 2);
        assert_eq!(log.duplicates_seen(), 2);
        let mut history = Vec::new();
        log.follow(
            |kept| history.extend(kept.iter().map(Numbered::seq)),
            |_| false,
        );
        assert_eq!(history, [10, 11, 12], "the last 3, numbered");
        let events = log.events_lock();
        assert_eq!((events.ids.len(), events.id_order.len()), (4, 4));
    }

    #[test]
    fn a_full_log_counts_as_it_keeps() {
        let log = Log::default();
        for seq in 0..5 {
            log.push(identified(seq, &format!("e{seq}")));
        }
        log.push(identified(0, "e0"));
        assert_eq!((log.len(), log.events().len()), (5, 5));
        assert_eq!(log.count("/", "claude_event"), 5);
        log.clear();
        assert_eq!((log.len(), log.count("/", "claude_event")), (0, 0));
        assert!(log.push(identified(0, "e0")), "ids forgotten by clear");
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

    #[test]
    fn a_follower_gets_the_history_then_every_later_event_none_twice() {
        let log = Log::with_history(1_000);
        let pushers: Vec<_> = (0..2)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for seq in 0..2_000 {
                        log.push(event(seq));
                    }
                })
            })
            .collect();
        // Joins while both threads push.
        while log.len() < 500 {
            std::thread::yield_now();
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let live = Arc::clone(&seen);
        log.follow(
            |history| {
                assert!(
                    history.len() <= 1_000,
                    "the history keeps the last 1,000 only"
                );
                seen.lock()
                    .unwrap()
                    .extend(history.iter().map(Numbered::seq));
            },
            move |numbered| {
                live.lock().unwrap().push(numbered.seq());
                true
            },
        );
        for pusher in pushers {
            pusher.join().unwrap();
        }
        let seen = seen.lock().unwrap();
        let first = seen[0];
        assert_eq!(
            *seen,
            (first..=4_000).collect::<Vec<_>>(),
            "no gap, no repeat at the seam"
        );
        assert_eq!(log.counters().events, 4_000);
        log.follow(
            |history| {
                let newest: Value = serde_json::from_str(history[999].json()).unwrap();
                assert_eq!(newest["seq"], 4_000);
                assert_eq!(newest["event"], "claude_event");
                assert_eq!(newest["data"]["seq"], 1_999);
            },
            |_| false,
        );
    }
}
