//! Idle connections: the pooled connection's record, and the per-thread shards that hold
//! the connections not handed out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;

use tokio::time::Instant;

use crate::config::Config;
use crate::connect::Connector;
use crate::lifecycle::Lifecycle;
use crate::shared::Shared;
use crate::stats::Eviction;

/// A pooled connection and what the pool knows about it.
pub(crate) struct Conn<C> {
    pub(crate) conn: C,
    /// When it was made; read only if `max_lifetime` is set.
    pub(crate) created: Instant,
    /// When it was last handed out; kept only if `idle_timeout` is set.
    pub(crate) last_used: Option<Instant>,
    /// Set by a response future whose error the fatal classifier flagged.
    pub(crate) broken: Option<Arc<AtomicBool>>,
    /// The waker it is polled with (see `wait.rs`).
    pub(crate) park: Park,
}

/// A connection's own waker, made once with the connection: it brings the connection back
/// from the parked ones when it can take a request. `id` names the connection among them;
/// `wakes` counts the waker's wakes, so that parking can tell one came after the poll.
pub(crate) struct Park {
    pub(crate) id: u64,
    pub(crate) waker: Waker,
    pub(crate) wakes: Arc<AtomicU64>,
}

impl<C> Conn<C> {
    pub(crate) fn expiry(&self, config: &Config, now: Instant) -> Option<Eviction> {
        if self
            .broken
            .as_ref()
            .is_some_and(|broken| broken.load(Ordering::Acquire))
        {
            return Some(Eviction::Fatal);
        }
        if config
            .max_lifetime
            .is_some_and(|lifetime| now.saturating_duration_since(self.created) >= lifetime)
        {
            return Some(Eviction::Lifetime);
        }
        if let (Some(timeout), Some(last_used)) = (config.idle_timeout, self.last_used) {
            if now.saturating_duration_since(last_used) >= timeout {
                return Some(Eviction::Idle);
            }
        }
        None
    }
}

/// Connections not handed out, in one thread's shard; aligned so that two shards never share
/// a cache line.
#[repr(align(128))]
pub(crate) struct Shard<C> {
    /// Most recently used first, so that the others can idle out.
    pub(crate) idle: Mutex<VecDeque<Conn<C>>>,
    /// Counts connections put back here ready for use, so that a caller who found none can
    /// tell whether one came back while it looked.
    pub(crate) returns: AtomicU64,
}

impl<C> Shard<C> {
    pub(crate) fn new() -> Self {
        Self {
            idle: Mutex::new(VecDeque::new()),
            returns: AtomicU64::new(0),
        }
    }
}

/// This thread's number, for picking its shard.
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    NUMBER.with(|number| *number)
}

impl<M, Target, C, L> Shared<M, Target, C, L> {
    pub(crate) fn local_shard(&self) -> (usize, &Shard<C>) {
        let index = thread_number() % self.shards.len();
        (index, &self.shards[index])
    }

    /// Takes the most recently used idle connection of this thread's shard out.
    pub(crate) fn checkout_local(&self) -> Option<Conn<C>> {
        self.local_shard().1.idle.lock().pop_front()
    }

    /// Takes an idle connection out of any shard, this thread's first.
    pub(crate) fn checkout_any(&self) -> Option<Conn<C>> {
        let (start, _) = self.local_shard();
        let count = self.shards.len();
        (0..count).find_map(|offset| {
            self.shards[(start + offset) % count]
                .idle
                .lock()
                .pop_front()
        })
    }

    /// How many connections were put back ready so far; read before looking in every shard,
    /// and passed to [`plan`](Self::plan).
    pub(crate) fn returns(&self) -> u64 {
        self.shards
            .iter()
            .map(|shard| shard.returns.load(Ordering::SeqCst))
            .sum()
    }

    /// Takes every idle connection out of every shard; the caller holds `inner`.
    pub(crate) fn drain_idle(&self) -> Vec<Conn<C>> {
        let mut idle = Vec::new();
        for shard in &self.shards[..] {
            idle.extend(shard.idle.lock().drain(..));
        }
        idle
    }

    /// Puts a taken-out connection that can serve now back, first in line, and tells the
    /// waiters (busy ones are parked instead). Returns the connection instead when the pool
    /// was closed meanwhile.
    fn put_back(&self, conn: Conn<C>) -> Option<C> {
        let (_, shard) = self.local_shard();
        {
            let mut idle = shard.idle.lock();
            // Read under the shard's lock: `close` sets it before draining the shards, so
            // a connection put back here after the drain sees it.
            if self.is_closed() {
                drop(idle);
                let mut inner = self.inner.lock();
                inner.live -= 1;
                inner.counts.evicted.count(Eviction::Closed);
                return Some(conn.conn);
            }
            idle.push_front(conn);
        }
        self.came_ready(shard);
        None
    }

    /// Puts back a connection reserved by a service that was dropped before calling. (If
    /// the pool was closed meanwhile it is dropped: there may be no runtime to close it on.)
    pub(crate) fn give_back(&self, conn: Conn<C>) {
        drop(self.put_back(conn));
    }
}

impl<M, Target, C, L> Shared<M, Target, C, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    /// Notes that `conn` was just used, if its idle time matters.
    pub(crate) fn touch(&self, conn: &mut Conn<C>) {
        if self.config.idle_timeout.is_some() {
            conn.last_used = Some(Instant::now());
        }
    }

    /// Puts a connection back after `call`, or closes it if the pool was closed meanwhile.
    pub(crate) fn checkin(&self, mut conn: Conn<C>, used: bool) {
        if used {
            self.touch(&mut conn);
        }
        if let Some(closed) = self.put_back(conn) {
            self.close_conn(closed);
        }
    }

    /// Sets aside a connection that answered `Pending` to its own waker, until that waker
    /// fires: nobody polls it meanwhile. `wakes` is its count of wakes from before the poll.
    /// Returns it instead if the waker fired since (it may be ready: the caller puts it back
    /// once done looking).
    pub(crate) fn park(&self, conn: Conn<C>, wakes: u64) -> Option<Conn<C>> {
        let mut parked = self.parked.lock();
        // The waker counts a wake before it looks here, under this lock: either it finds the
        // connection parked, or this sees the count moved.
        if conn.park.wakes.load(Ordering::SeqCst) != wakes {
            return Some(conn);
        }
        // Read under this lock: `close` sets it before it drains the parked connections.
        if self.is_closed() {
            drop(parked);
            let mut inner = self.inner.lock();
            inner.live -= 1;
            inner.counts.evicted.count(Eviction::Closed);
            drop(inner);
            self.close_conn(conn.conn);
            return None;
        }
        parked.push(conn);
        None
    }

    /// Puts every parked connection back with the idle ones, to be polled again.
    pub(crate) fn unpark_all(&self) {
        let parked = std::mem::take(&mut *self.parked.lock());
        for conn in parked {
            self.checkin(conn, false);
        }
    }

    /// The waker of parked connection `id` fired: back with the idle ones, first in line,
    /// waking the waiters.
    pub(crate) fn unpark(&self, id: u64) {
        let conn = {
            let mut parked = self.parked.lock();
            let place = parked.iter().position(|conn| conn.park.id == id);
            place.map(|place| parked.swap_remove(place))
        };
        if let Some(conn) = conn {
            self.checkin(conn, false);
        }
    }
}
