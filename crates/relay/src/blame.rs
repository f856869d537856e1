//! Finding the event a server fails on, and setting it aside.
//!
//! Acks are cumulative: one ack confirms every event written before it on the connection,
//! so when a round times out (or the server closes the connection under it) the round says
//! which event was the first unconfirmed, not which one the server could not take. Then:
//!
//! - **Isolate.** The round's unconfirmed events are sent again one at a time, each with an
//!   ack of its own. Those the server acknowledges are delivered; one that fails alone is a
//!   *suspect*.
//! - **Blame only a working server.** A failure alone counts against the event only if the
//!   server acknowledged something within [`BLAME_WINDOW`] (before or during the isolation):
//!   a server that acknowledges nothing (the README's "never acknowledges" case), or an
//!   outage, sets nothing aside. A failure to connect, or an open breaker, ends an isolation
//!   at once: that is an outage.
//! - **Suspects go alone.** A suspect is left out of rounds, so the events behind it flow on,
//!   and is tried alone again after [`SUSPECT_RETRY`]. Its first arrival was at its place in
//!   order (the server saw it and did not acknowledge it), so order of first arrivals holds.
//! - **Set aside after [`SET_ASIDE_AFTER`] failures alone** (3): one failure alone can be a
//!   coincidence (the server restarted during that send), two in a row rarely, three while the
//!   server acknowledges everything else is the event. Each try alone costs the ack timeout
//!   (5 s), so an event is set aside about 20 s after its first send. It moves to the store's
//!   `dead_letters` (logged once, counted in `stats`, out of the depth that keeps a relay from
//!   idle exit) until `sluice-hook dead-letters --retry` puts it back at the end of the queue.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::destination::Failure;
use tokio::time::Instant;

use crate::store_worker::Place;

/// Failures alone after which an event is set aside.
pub(crate) const SET_ASIDE_AFTER: u32 = 3;
/// How recent an acknowledgement must be for a failure alone to count against the event.
pub(crate) const BLAME_WINDOW: Duration = Duration::from_secs(60);
/// How long a suspect waits before it is tried alone again.
pub(crate) const SUSPECT_RETRY: Duration = Duration::from_secs(1);
/// How often an isolation may run while no acknowledgement proves the server works (a
/// server that acknowledges nothing would otherwise cost one isolation per round).
pub(crate) const UNPROVEN_EVERY: Duration = Duration::from_secs(30);

/// The suspects, by key, with when each is tried alone next; and the last acknowledgement.
#[derive(Debug, Default)]
pub(crate) struct Suspects {
    next_try: BTreeMap<i64, Instant>,
    last_ack: Option<Instant>,
    last_unproven: Option<Instant>,
}

impl Suspects {
    /// The server acknowledged something just now.
    pub(crate) fn acked(&mut self) {
        self.last_ack = Some(Instant::now());
    }

    /// Whether the server acknowledged something within the blame window.
    pub(crate) fn server_works(&self) -> bool {
        self.last_ack.is_some_and(|at| at.elapsed() < BLAME_WINDOW)
    }

    /// Whether a round that failed as `error` should be isolated now.
    pub(crate) fn isolate(&mut self, error: &Failure) -> bool {
        if !error.could_be_the_event() {
            return false;
        }
        if self.server_works() {
            return true;
        }
        // No recent ack: isolate now and then, in case the first event is the bad one.
        let due = self
            .last_unproven
            .is_none_or(|at| at.elapsed() >= UNPROVEN_EVERY);
        if due {
            self.last_unproven = Some(Instant::now());
        }
        due
    }

    /// The keys left out of rounds.
    pub(crate) fn keys(&self) -> Vec<i64> {
        self.next_try.keys().copied().collect()
    }

    /// The oldest suspect due for a try alone.
    pub(crate) fn due(&self) -> Option<i64> {
        let now = Instant::now();
        self.next_try
            .iter()
            .find(|(_, at)| **at <= now)
            .map(|(key, _)| *key)
    }

    /// When the next suspect is due, if any.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.next_try.values().min().copied()
    }

    /// Tries `place`'s event alone, now or after the retry wait.
    pub(crate) fn suspect(&mut self, place: Place, now: bool) {
        let at = if now {
            Instant::now()
        } else {
            Instant::now() + SUSPECT_RETRY
        };
        self.next_try.insert(place.key, at);
    }

    /// `key`'s event is no suspect any more (delivered, set aside or gone).
    pub(crate) fn clear(&mut self, key: i64) {
        self.next_try.remove(&key);
    }
}
