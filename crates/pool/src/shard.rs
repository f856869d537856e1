//! Idle connections: the pooled connection's record, and the per-thread shards that hold
//! the connections not handed out.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use parking_lot::{Mutex, MutexGuard};

use tokio::time::Instant;

use crate::config::Config;
use crate::connect::Connector;
use crate::lifecycle::Lifecycle;
use crate::shared::{Core, Shared};
use crate::stats::Eviction;

/// A pooled connection, boxed: it moves between the shards, the services and their calls
/// several times per request, and a pointer moves for less than the whole record.
pub(crate) type Conn<C> = Box<Pooled<C>>;

/// A pooled connection and what the pool knows about it.
pub(crate) struct Pooled<C> {
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
/// from the parked ones when it can take a request. `id` names the connection among them.
pub(crate) struct Park {
    pub(crate) id: u64,
    pub(crate) waker: Waker,
    pub(crate) state: Arc<ParkState>,
}

/// What a connection's waker shares with the pool.
pub(crate) struct ParkState {
    /// The shard it parks in when busy, for life: the shard of the thread that made it. Its
    /// waker looks there, and never reads where a poll on another thread put it.
    pub(crate) home: usize,
    /// Counts the wakes that did not find it parked; written under its home shard's lock.
    wakes: AtomicU64,
}

impl ParkState {
    pub(crate) fn new(home: usize) -> Self {
        Self {
            home,
            wakes: AtomicU64::new(0),
        }
    }

    /// Before the connection is polled: its count of wakes, for [`Shared::park`].
    ///
    /// The waker counts a wake it could not deliver under the home shard's lock, and
    /// parking compares the count under the same lock: either the waker finds the
    /// connection parked, or parking sees the count moved. A wake counted before this read
    /// and seen by it also makes visible what the connection wrote before waking, so the
    /// poll that follows finds it ready. Nothing here depends on how the connection keeps
    /// its waker (it may keep an earlier clone and register nothing).
    pub(crate) fn before_poll(&self) -> u64 {
        self.wakes.load(Ordering::Acquire)
    }
}

impl<C> Pooled<C> {
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
    pub(crate) conns: Mutex<Conns<C>>,
    /// Counts connections put back here ready for use, so that a caller who found none can
    /// tell whether one came back while it looked.
    pub(crate) returns: AtomicU64,
    /// Whether `idle` may hold a connection: written under the lock, read without it, so
    /// that a caller looking in every shard skips the empty ones without locking them. One
    /// put back after the caller read `returns` is seen through the count instead.
    has_idle: AtomicBool,
}

/// The connections of one shard.
pub(crate) struct Conns<C> {
    /// Ready to take a request, most recently used first, so that the others can idle out.
    pub(crate) idle: VecDeque<Conn<C>>,
    /// Busy: they answered `Pending` to their own waker, and wait here, polled by nobody,
    /// until it fires (see [`ParkWaker`](crate::wait::ParkWaker)). A busy connection is
    /// polled once per busy spell, not by every waiter that looks; kept in its home shard
    /// (see [`ParkState::home`]), it comes back under the same lock it goes in with.
    pub(crate) parked: Vec<Conn<C>>,
}

impl<C> Shard<C> {
    pub(crate) fn new() -> Self {
        Self {
            conns: Mutex::new(Conns {
                idle: VecDeque::new(),
                parked: Vec::new(),
            }),
            returns: AtomicU64::new(0),
            has_idle: AtomicBool::new(false),
        }
    }

    /// Puts `conn` first among the idle ones of this shard, whose lock the caller holds.
    pub(crate) fn push_idle(&self, conns: &mut Conns<C>, conn: Conn<C>) {
        conns.idle.push_front(conn);
        self.has_idle.store(true, Ordering::Relaxed);
    }

    /// Puts `idle` first among the idle ones of this shard, in order, and counts each as put
    /// back (a caller may have looked while they were out).
    pub(crate) fn return_idle(&self, mut idle: VecDeque<Conn<C>>) {
        if idle.is_empty() {
            return;
        }
        let returned = idle.len() as u64;
        let mut conns = self.conns.lock();
        idle.append(&mut conns.idle);
        conns.idle = idle;
        self.has_idle.store(true, Ordering::Relaxed);
        drop(conns);
        self.returns.fetch_add(returned, Ordering::SeqCst);
    }

    /// Takes the most recently used idle connection out.
    fn pop_idle(&self) -> Option<Conn<C>> {
        let mut conns = self.conns.lock();
        let conn = conns.idle.pop_front();
        if conns.idle.is_empty() {
            self.has_idle.store(false, Ordering::Relaxed);
        }
        conn
    }
}

/// This thread's number, for picking its shard.
#[inline]
fn thread_number() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Numbered on first use; a `const` initializer spares the lazy-init check on every
        // later read.
        static NUMBER: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    NUMBER.with(|number| match number.get() {
        usize::MAX => {
            let next = NEXT.fetch_add(1, Ordering::Relaxed);
            number.set(next);
            next
        }
        known => known,
    })
}

impl<C, L> Core<C, L> {
    pub(crate) fn local_shard(&self) -> (usize, &Shard<C>) {
        let index = thread_number() % self.shards.len();
        (index, &self.shards[index])
    }

    /// Takes the most recently used idle connection of this thread's shard out, if its flag
    /// says it has one. A stale flag may miss one just put back: the caller then reads
    /// [`returns`](Self::returns) and looks in every shard, which finds it or sees the count
    /// moved (see `take_ready`).
    pub(crate) fn checkout_local(&self) -> Option<Conn<C>> {
        let (_, shard) = self.local_shard();
        if shard.has_idle.load(Ordering::Relaxed) {
            shard.pop_idle()
        } else {
            None
        }
    }

    /// Takes an idle connection out of any shard, this thread's first, skipping those
    /// without one.
    pub(crate) fn checkout_any(&self) -> Option<Conn<C>> {
        let (start, _) = self.local_shard();
        let count = self.shards.len();
        (0..count).find_map(|offset| {
            let shard = &self.shards[(start + offset) % count];
            if shard.has_idle.load(Ordering::Relaxed) {
                shard.pop_idle()
            } else {
                None
            }
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

    /// Takes every idle connection out of every shard, and the parked ones too if `parked`;
    /// the caller holds `inner`, or is `Shared`'s drop (nothing is left to count them).
    pub(crate) fn drain(&self, parked: bool) -> Vec<Conn<C>> {
        let mut taken = Vec::new();
        for shard in &self.shards[..] {
            let mut conns = shard.conns.lock();
            taken.extend(conns.idle.drain(..));
            shard.has_idle.store(false, Ordering::Relaxed);
            if parked {
                taken.append(&mut conns.parked);
            }
        }
        taken
    }

    /// Puts a taken-out connection that can serve now back, first in line, and tells the
    /// waiters (busy ones are parked instead). Returns the connection instead when the pool
    /// was closed meanwhile.
    fn put_back(&self, conn: Conn<C>) -> Option<C> {
        let (_, shard) = self.local_shard();
        self.put_back_into(shard, shard.conns.lock(), conn)
    }

    /// [`put_back`](Self::put_back) into `shard`, whose lock the caller holds.
    fn put_back_into(
        &self,
        shard: &Shard<C>,
        mut conns: MutexGuard<'_, Conns<C>>,
        conn: Conn<C>,
    ) -> Option<C> {
        // Read under the shard's lock: `close` sets it before draining the shards, so a
        // connection put back here after the drain sees it.
        if self.is_closed() {
            drop(conns);
            let mut inner = self.inner.lock();
            inner.live -= 1;
            inner.counts.evicted.count(Eviction::Closed);
            return Some(conn.conn);
        }
        shard.push_idle(&mut conns, conn);
        drop(conns);
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

    /// Sets aside a connection that answered `Pending` to its own waker, in its home shard,
    /// until that waker fires: nobody polls it meanwhile. `wakes` is what
    /// [`ParkState::before_poll`] returned. Returns it instead if the waker fired since (it
    /// may be ready: the caller puts it back once done looking).
    pub(crate) fn park(&self, conn: Conn<C>, wakes: u64) -> Option<Conn<C>> {
        let shard = &self.shards[conn.park.state.home];
        let mut conns = shard.conns.lock();
        if conn.park.state.wakes.load(Ordering::Relaxed) != wakes {
            return Some(conn);
        }
        // Read under the shard's lock: `close` sets it before it drains the shards.
        if self.is_closed() {
            drop(conns);
            let mut inner = self.inner.lock();
            inner.live -= 1;
            inner.counts.evicted.count(Eviction::Closed);
            drop(inner);
            self.close_conn(conn.conn);
            return None;
        }
        conns.parked.push(conn);
        None
    }

    /// Puts every parked connection back with the idle ones, to be polled again.
    pub(crate) fn unpark_all(&self) {
        for shard in &self.shards[..] {
            let parked = std::mem::take(&mut shard.conns.lock().parked);
            for conn in parked {
                self.checkin(conn, false);
            }
        }
    }
}

impl<C, L> Core<C, L>
where
    C: Send + 'static,
    L: Lifecycle<C>,
{
    /// The waker of connection `id` fired: back with the idle ones of its home shard, first
    /// in line, under the same lock, waking a waiter.
    pub(crate) fn unpark(&self, id: u64, state: &ParkState) {
        let Some(shard) = self.shards.get(state.home) else {
            return;
        };
        let mut conns = shard.conns.lock();
        let Some(place) = conns.parked.iter().position(|conn| conn.park.id == id) else {
            // Not parked: in use, idle already, or about to be (see `before_poll`). Only
            // written under this lock, so no read-modify-write is needed.
            let wakes = state.wakes.load(Ordering::Relaxed);
            state.wakes.store(wakes.wrapping_add(1), Ordering::Release);
            return;
        };
        let conn = conns.parked.swap_remove(place);
        if let Some(closed) = self.put_back_into(shard, conns, conn) {
            self.close_conn(closed);
        }
    }
}
