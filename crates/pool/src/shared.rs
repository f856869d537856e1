//! The pool's shared state: idle connections, counts, waiters, and the connector.
//!
//! Idle connections sit in shards, one per thread up to the number of cores (and at most
//! `max_size`): a request takes a connection out of its thread's shard (one short lock),
//! polls it for readiness without the lock, calls it, and puts it back into its thread's
//! shard (one short lock), so tasks on different threads rarely meet on a lock. Only when its
//! shard is empty does a thread look in the others. A connection that can carry several
//! requests says so through `poll_ready`. One more mutex guards the rest of the bookkeeping
//! (counts, waiters, connects), which the common path does not touch. Connects run in
//! spawned tasks, so a caller that gives up does not strand a half-made connection, and at
//! most `max_size` connections are ever alive or connecting.

use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{ready, Context, Poll, Wake, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::connect::Connector;
use crate::error::{BoxError, ConnectTimedOut};
use crate::lifecycle::Lifecycle;
use crate::stats::{Counts, Eviction, Stats};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is complete before any user code runs, so a poisoned
    // lock still guards consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pooled connection and what the pool knows about it.
pub(crate) struct Conn<C> {
    pub(crate) conn: C,
    /// When it was made; read only if `max_lifetime` is set.
    created: Instant,
    /// When it was last handed out; kept only if `idle_timeout` is set.
    last_used: Option<Instant>,
    /// Set by a response future whose error the fatal classifier flagged.
    pub(crate) broken: Option<Arc<AtomicBool>>,
}

impl<C> Conn<C> {
    fn expiry(&self, config: &Config, now: Instant) -> Option<Eviction> {
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
struct Shard<C> {
    /// Most recently used first, so that the others can idle out.
    idle: Mutex<VecDeque<Conn<C>>>,
    /// Counts connections put back here ready for use, so that a caller who found none can
    /// tell whether one came back while it looked.
    returns: AtomicU64,
}

impl<C> Shard<C> {
    fn new() -> Self {
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

struct Inner {
    /// Connections alive: idle in a shard, or handed out.
    live: usize,
    connecting: usize,
    /// Requests waiting for a connection, each by the id of its `Pool`: one entry per
    /// waiting service, removed when it stops waiting or is dropped.
    waiters: Vec<(u64, Waker)>,
    /// The id of the next `Pool` to wait.
    next_waiter: u64,
    last_error: Option<Arc<BoxError>>,
    failures: u32,
    /// No connect before this, after a failure.
    retry_at: Option<Instant>,
    counts: Counts,
}

/// What a request without a ready connection should do.
pub(crate) enum Plan {
    /// A connection came back meanwhile: look again.
    Retry,
    /// Wait: a connection may free up, or a connect is under way.
    Wait,
    /// Fail now: nothing is alive or connecting, and the last connect failed.
    Fail(Arc<BoxError>),
    /// The pool is closed.
    Closed,
}

pub(crate) struct Shared<M, Target, C, L> {
    pub(crate) config: Config,
    target: Target,
    connector: Mutex<M>,
    lifecycle: Arc<L>,
    inner: Mutex<Inner>,
    shards: Box<[Shard<C>]>,
    /// Set by `close`, under `inner`'s lock; also read under a shard's lock when a connection
    /// goes back.
    closed: AtomicBool,
    /// Whether anything waits; read without the lock when a connection goes back.
    has_waiters: AtomicBool,
    /// Tells the maintenance task to stop.
    stopped: AtomicBool,
    /// Whether the maintenance task was started.
    maintained: AtomicBool,
    /// Given to connections that answer `Pending`: wakes every waiter when one of them is
    /// ready, whoever polled it last (see [`BusyWaker`]).
    busy_waker: Waker,
}

impl<M, Target, C, L> fmt::Debug for Shared<M, Target, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<M, Target, C, L> Shared<M, Target, C, L> {
    /// The waker to poll a connection with after it answered `Pending` to the caller's.
    pub(crate) fn busy_waker(&self) -> &Waker {
        &self.busy_waker
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn local_shard(&self) -> (usize, &Shard<C>) {
        let index = thread_number() % self.shards.len();
        (index, &self.shards[index])
    }

    /// Takes the most recently used idle connection of this thread's shard out.
    pub(crate) fn checkout_local(&self) -> Option<Conn<C>> {
        lock(&self.local_shard().1.idle).pop_front()
    }

    /// Takes an idle connection out of any shard, this thread's first.
    pub(crate) fn checkout_any(&self) -> Option<Conn<C>> {
        let (start, _) = self.local_shard();
        let count = self.shards.len();
        (0..count).find_map(|offset| lock(&self.shards[(start + offset) % count].idle).pop_front())
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
    fn drain_idle(&self) -> Vec<Conn<C>> {
        let mut idle = Vec::new();
        for shard in &self.shards[..] {
            idle.extend(lock(&shard.idle).drain(..));
        }
        idle
    }

    pub(crate) fn stats(&self) -> Stats {
        let inner = lock(&self.inner);
        let idle = self
            .shards
            .iter()
            .map(|shard| lock(&shard.idle).len())
            .sum::<usize>();
        Stats {
            max: self.config.max_size,
            live: inner.live,
            idle,
            in_use: inner.live.saturating_sub(idle),
            connecting: inner.connecting,
            waiting: inner.waiters.len(),
            created: inner.counts.created,
            connect_failures: inner.counts.connect_failures,
            evicted: inner.counts.evicted.clone(),
            last_connect_error: inner.last_error.as_ref().map(|e| e.to_string()),
            closed: self.is_closed(),
        }
    }

    pub(crate) fn last_error(&self) -> Option<Arc<BoxError>> {
        lock(&self.inner).last_error.clone()
    }

    fn wake_waiters(inner: &mut Inner, has_waiters: &AtomicBool) {
        has_waiters.store(false, Ordering::Release);
        for (_, waker) in inner.waiters.drain(..) {
            waker.wake();
        }
    }

    /// Tells the waiters a connection is ready: counted first, then waiters checked; `plan`
    /// does the reverse, so either this sees a waiter that just registered, or that waiter
    /// sees this count.
    fn came_ready(&self, shard: &Shard<C>) {
        shard.returns.fetch_add(1, Ordering::SeqCst);
        if self.has_waiters.load(Ordering::SeqCst) {
            Self::wake_waiters(&mut lock(&self.inner), &self.has_waiters);
        }
    }

    /// Takes the `Pool` with this id off the waiter list, if it is on it.
    pub(crate) fn stop_waiting(&self, id: u64) {
        let mut inner = lock(&self.inner);
        if let Some(place) = inner.waiters.iter().position(|(waiter, _)| *waiter == id) {
            inner.waiters.swap_remove(place);
            if inner.waiters.is_empty() {
                self.has_waiters.store(false, Ordering::SeqCst);
            }
        }
    }

    /// Puts a taken-out connection back: first in line if `ready` (it can serve now), last
    /// if busy. Returns the connection instead when the pool was closed meanwhile.
    fn put_back(&self, conn: Conn<C>, ready: bool) -> Option<C> {
        let (_, shard) = self.local_shard();
        {
            let mut idle = lock(&shard.idle);
            // Read under the shard's lock: `close` sets it before draining the shards, so
            // a connection put back here after the drain sees it.
            if self.is_closed() {
                drop(idle);
                let mut inner = lock(&self.inner);
                inner.live -= 1;
                inner.counts.evicted.count(Eviction::Closed);
                return Some(conn.conn);
            }
            if ready {
                idle.push_front(conn);
            } else {
                idle.push_back(conn);
            }
        }
        if ready {
            self.came_ready(shard);
        }
        None
    }

    /// Puts back a connection reserved by a service that was dropped before calling. (If
    /// the pool was closed meanwhile it is dropped: there may be no runtime to close it on.)
    pub(crate) fn give_back(&self, conn: Conn<C>) {
        drop(self.put_back(conn, true));
    }

    pub(crate) fn stop_maintenance(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

impl<M, Target, C, L> Shared<M, Target, C, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    pub(crate) fn new(
        config: Config,
        target: Target,
        connector: M,
        lifecycle: Arc<L>,
    ) -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let shards = cores.min(config.max_size).clamp(1, 64);
        Arc::new_cyclic(|shared| Self {
            shards: (0..shards).map(|_| Shard::new()).collect(),
            busy_waker: Waker::from(Arc::new(BusyWaker(shared.clone()))),
            config,
            target,
            connector: Mutex::new(connector),
            lifecycle,
            inner: Mutex::new(Inner {
                live: 0,
                connecting: 0,
                waiters: Vec::new(),
                next_waiter: 0,
                last_error: None,
                failures: 0,
                retry_at: None,
                counts: Counts::default(),
            }),
            closed: AtomicBool::new(false),
            has_waiters: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            maintained: AtomicBool::new(false),
        })
    }

    /// Puts a connection back after `call`, or closes it if the pool was closed meanwhile.
    pub(crate) fn checkin(&self, mut conn: Conn<C>, used: bool) {
        if used && self.config.idle_timeout.is_some() {
            conn.last_used = Some(Instant::now());
        }
        if let Some(closed) = self.put_back(conn, true) {
            self.close_conn(closed);
        }
    }

    /// Puts back a connection that was not ready, behind the others.
    pub(crate) fn checkin_busy(&self, conn: Conn<C>) {
        if let Some(closed) = self.put_back(conn, false) {
            self.close_conn(closed);
        }
    }

    /// Starts the maintenance task once, if the settings need one and a runtime is here.
    pub(crate) fn ensure_maintenance(self: &Arc<Self>) {
        if !self.config.needs_maintenance() || self.maintained.load(Ordering::Acquire) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            if !self.maintained.swap(true, Ordering::AcqRel) {
                runtime.spawn(maintenance(
                    Arc::downgrade(self),
                    self.config.maintenance_period(),
                ));
            }
        }
    }

    /// Drops a checked-out connection from the pool and closes it.
    pub(crate) fn evict(&self, conn: Conn<C>, reason: Eviction) {
        {
            let mut inner = lock(&self.inner);
            inner.live -= 1;
            inner.counts.evicted.count(reason);
            // A slot is free: a waiter may connect.
            Self::wake_waiters(&mut inner, &self.has_waiters);
        }
        tracing::debug!(target: "sluice_pool", reason = reason.as_str(), "connection evicted");
        self.close_conn(conn.conn);
    }

    fn close_conn(&self, conn: C) {
        let closing = self.lifecycle.close(conn);
        // Closing may take a round trip; it must not hold up the caller. Without a runtime
        // (a pool dropped at exit), the connection is simply dropped.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(closing);
        }
    }

    /// Checks whether a taken-out connection may be used now, by its age and flags.
    pub(crate) fn expiry(&self, conn: &Conn<C>) -> Option<Eviction> {
        if self.config.max_lifetime.is_none()
            && self.config.idle_timeout.is_none()
            && conn.broken.is_none()
        {
            return None; // no clock read on the common path
        }
        conn.expiry(&self.config, Instant::now())
    }

    /// Decides what a request that found no ready connection does; starts a connect if
    /// there is room, and registers the caller to be woken.
    /// `seen` is the count of returns from before the caller looked (see `checkout`);
    /// `waiter` is the caller's id on the waiter list, given on its first wait.
    pub(crate) fn plan(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        seen: u64,
        waiter: &mut Option<u64>,
    ) -> Plan {
        let now = Instant::now();
        let mut inner = lock(&self.inner);
        if self.is_closed() {
            return Plan::Closed;
        }
        // One connect per waiting request at most: a caller polled again while its connect
        // is under way must not start another.
        let listed = waiter.is_some_and(|id| inner.waiters.iter().any(|(w, _)| *w == id));
        let demand = inner.waiters.len() + usize::from(!listed);
        if inner.live + inner.connecting < self.config.max_size
            && inner.connecting < demand
            && inner.retry_at.is_none_or(|at| now >= at)
        {
            inner.connecting += 1;
            drop(inner);
            // If the connector is not ready, it wakes this caller when it is.
            let _ = self.start_connect(cx);
            inner = lock(&self.inner);
        }
        if inner.live == 0 && inner.connecting == 0 {
            if let Some(error) = &inner.last_error {
                return Plan::Fail(Arc::clone(error));
            }
        }
        // Listed, or listed again: the list may have been woken and emptied meanwhile.
        let inner = &mut *inner;
        match waiter.and_then(|id| inner.waiters.iter_mut().find(|(w, _)| *w == id)) {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => {
                let id = *waiter.get_or_insert_with(|| {
                    inner.next_waiter += 1;
                    inner.next_waiter
                });
                inner.waiters.push((id, cx.waker().clone()));
            }
        }
        self.has_waiters.store(true, Ordering::SeqCst);
        if self.returns() != seen {
            // A connection came back after this caller looked, maybe before the waker was
            // in place: look again rather than wait. (The caller leaves the list when it
            // stops waiting.)
            return Plan::Retry;
        }
        Plan::Wait
    }

    /// Asks the connector for a connection and runs the connect in a task of its own. The
    /// caller has counted it in `connecting`. `Pending` (and uncounted) when the connector
    /// is not ready: it wakes `cx` when it is.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, before asking the connector, with the counts restored.
    fn start_connect(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            lock(&self.inner).connecting -= 1;
            panic!("sluice-pool connects on tasks of its own: use the pool within a Tokio runtime");
        };
        let connecting = {
            let mut connector = lock(&self.connector);
            match connector.poll_ready(cx) {
                Poll::Ready(Ok(())) => Ok(connector.call(self.target.clone())),
                Poll::Ready(Err(error)) => Err(error.into()),
                Poll::Pending => {
                    // The connector will wake the caller; the next poll tries again.
                    lock(&self.inner).connecting -= 1;
                    return Poll::Pending;
                }
            }
        };
        match connecting {
            Ok(future) => {
                let shared = Arc::clone(self);
                let timeout = self.config.connect_timeout;
                // From now, not from when the task first runs.
                let deadline = Instant::now() + timeout;
                runtime.spawn(async move {
                    let result = match tokio::time::timeout_at(deadline, future).await {
                        Ok(result) => result.map_err(Into::into),
                        Err(_) => Err(Box::new(ConnectTimedOut { after: timeout }) as BoxError),
                    };
                    shared.connected(result);
                });
            }
            Err(error) => self.connected(Err(error)),
        }
        Poll::Ready(())
    }

    /// Records the end of a connect.
    fn connected(&self, result: Result<C, BoxError>) {
        let mut inner = lock(&self.inner);
        inner.connecting -= 1;
        match result {
            Ok(conn) if !self.is_closed() => {
                inner.live += 1;
                inner.counts.created += 1;
                inner.failures = 0;
                inner.retry_at = None;
                inner.last_error = None;
                let now = Instant::now();
                let (_, shard) = self.local_shard();
                lock(&shard.idle).push_front(Conn {
                    conn,
                    created: now,
                    last_used: self.config.idle_timeout.map(|_| now),
                    broken: self.config.fatal.as_ref().map(|_| Arc::default()),
                });
                // Counted for `plan`; every waiter is woken below.
                shard.returns.fetch_add(1, Ordering::SeqCst);
            }
            Ok(conn) => {
                drop(inner);
                self.close_conn(conn);
                return;
            }
            Err(error) => {
                tracing::debug!(target: "sluice_pool", %error, "connect failed");
                inner.failures = inner.failures.saturating_add(1);
                inner.counts.connect_failures += 1;
                inner.retry_at = Some(Instant::now() + self.config.backoff(inner.failures));
                inner.last_error = Some(Arc::new(error));
            }
        }
        Self::wake_waiters(&mut inner, &self.has_waiters);
    }

    /// Closes the pool: idle connections now, handed-out ones when they come back.
    pub(crate) async fn close(&self) {
        let idle = {
            let mut inner = lock(&self.inner);
            self.closed.store(true, Ordering::SeqCst);
            let idle = self.drain_idle();
            inner.live -= idle.len();
            for _ in 0..idle.len() {
                inner.counts.evicted.count(Eviction::Closed);
            }
            Self::wake_waiters(&mut inner, &self.has_waiters);
            idle
        };
        self.stop_maintenance();
        for conn in idle {
            self.lifecycle.close(conn.conn).await;
        }
    }

    /// One round of upkeep: evict expired idle connections and health-check the rest when
    /// due (`poll_keep_warm` then tops up `min_idle`).
    async fn maintain(self: &Arc<Self>, last_check: &mut Option<Instant>) {
        let now = Instant::now();
        let (expired, to_check) = {
            let mut inner = lock(&self.inner);
            if self.is_closed() {
                return;
            }
            let check_due = self.config.health_check_interval.is_some_and(|interval| {
                last_check.is_none_or(|at| now.saturating_duration_since(at) >= interval)
            });
            let mut expired = Vec::new();
            let mut kept = VecDeque::new();
            let keep_warm = self.config.min_idle;
            for conn in self.drain_idle() {
                match conn.expiry(&self.config, now) {
                    // Idle connections beyond `min_idle` may idle out; the rest stay warm.
                    Some(Eviction::Idle) if inner.live - expired.len() <= keep_warm => {
                        kept.push_back(conn);
                    }
                    Some(reason) => expired.push((conn, reason)),
                    None => kept.push_back(conn),
                }
            }
            inner.live -= expired.len();
            for (_, reason) in &expired {
                inner.counts.evicted.count(*reason);
            }
            let to_check = if check_due {
                *last_check = Some(now);
                kept
            } else {
                // Back, in the same order, into this thread's shard.
                let (_, shard) = self.local_shard();
                let mut idle = lock(&shard.idle);
                kept.append(&mut idle);
                *idle = kept;
                VecDeque::new()
            };
            if !expired.is_empty() {
                Self::wake_waiters(&mut inner, &self.has_waiters);
            }
            (expired, to_check)
        };
        for (conn, _) in expired {
            self.lifecycle.close(conn.conn).await;
        }
        for conn in to_check {
            let Conn {
                conn,
                created,
                last_used,
                broken,
            } = conn;
            match self.lifecycle.check(conn).await {
                Ok(conn) => self.checkin(
                    Conn {
                        conn,
                        created,
                        last_used,
                        broken,
                    },
                    false,
                ),
                Err(error) => {
                    tracing::debug!(target: "sluice_pool", %error, "health check failed");
                    let mut inner = lock(&self.inner);
                    inner.live -= 1;
                    inner.counts.evicted.count(Eviction::HealthCheck);
                    Self::wake_waiters(&mut inner, &self.has_waiters);
                }
            }
        }
    }

    /// Starts connects until `min_idle` connections are alive or connecting. `Pending` when
    /// the connector is not ready: it wakes `cx` when it is.
    fn poll_keep_warm(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            {
                let mut inner = lock(&self.inner);
                let now = Instant::now();
                if self.is_closed()
                    || inner.live + inner.connecting >= self.config.min_idle
                    || inner.live + inner.connecting >= self.config.max_size
                    || inner.retry_at.is_some_and(|at| now < at)
                {
                    return Poll::Ready(());
                }
                inner.connecting += 1;
            }
            ready!(self.start_connect(cx));
        }
    }
}

/// The waker a busy connection gets: a connection keeps only the waker of the last task
/// that polled it, and that task may be gone, or no longer polling the pool, when the
/// connection becomes ready. This one tells every waiter of the pool instead.
struct BusyWaker<M, Target, C, L>(Weak<Shared<M, Target, C, L>>);

impl<M, Target, C, L> Wake for BusyWaker<M, Target, C, L> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.0.upgrade() {
            shared.came_ready(shared.local_shard().1);
        }
    }
}

/// Runs upkeep every `period` until the pool is dropped or closed.
pub(crate) async fn maintenance<M, Target, C, L>(
    shared: Weak<Shared<M, Target, C, L>>,
    period: Duration,
) where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    let mut last_check = None;
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick_seen = false;
    loop {
        if !mem::take(&mut tick_seen) {
            interval.tick().await;
        }
        let Some(pool) = shared.upgrade() else {
            return; // the pool is gone
        };
        if pool.stopped.load(Ordering::Acquire) {
            return;
        }
        pool.maintain(&mut last_check).await;
        drop(pool);
        // Keep `min_idle` warm. A connector that is not ready wakes this task when it is;
        // wait for that, but no longer than the next round, so that a pool dropped or
        // closed meanwhile (or a wake-up the connector gave to a request instead) cannot
        // keep this task waiting for ever.
        poll_fn(|cx| {
            let Some(pool) = shared.upgrade() else {
                return Poll::Ready(());
            };
            if pool.poll_keep_warm(cx).is_ready() {
                return Poll::Ready(());
            }
            tick_seen = interval.poll_tick(cx).is_ready();
            if tick_seen {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
