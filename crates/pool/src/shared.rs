//! The pool's shared state: its bookkeeping, construction, stats, eviction and close.
//!
//! Idle connections sit in shards, one per thread up to the number of cores (and at most
//! `max_size`; see `shard.rs`): a request takes a connection out of its thread's shard (one
//! short lock), polls it for readiness without the lock, calls it, and puts it back into its
//! thread's shard (one short lock), so tasks on different threads rarely meet on a lock.
//! Only when its shard is empty does a thread look in the others. A connection that can
//! carry several requests says so through `poll_ready`. One more mutex guards the rest of
//! the bookkeeping (counts, waiters, connects), which the common path does not touch.
//! Requests that find no ready connection wait (`wait.rs`); connects run in spawned tasks
//! (`connect.rs`), so a caller that gives up does not strand a half-made connection, and at
//! most `max_size` connections are ever alive or connecting. A background task keeps idle
//! connections fresh (`worker.rs`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::task::Waker;

use tokio::time::Instant;

use crate::config::Config;
use crate::connect::Connector;
use crate::error::BoxError;
use crate::lifecycle::Lifecycle;
use crate::shard::{Conn, Shard};
use crate::stats::{Counts, Eviction, Stats};
use crate::wait::Waiter;

/// The bookkeeping behind `Shared::inner`'s lock.
pub(crate) struct Inner {
    /// Connections alive: idle in a shard, or handed out.
    pub(crate) live: usize,
    pub(crate) connecting: usize,
    /// Requests waiting for a connection, in line, each by its `Pool`'s place: one entry
    /// per waiting service, taken off when it is woken for a connection, stops waiting or is
    /// dropped.
    pub(crate) waiters: VecDeque<(Arc<Waiter>, Waker)>,
    /// The id of the last connection made.
    pub(crate) next_conn: u64,
    pub(crate) last_error: Option<Arc<BoxError>>,
    pub(crate) failures: u32,
    /// No connect before this, after a failure.
    pub(crate) retry_at: Option<Instant>,
    pub(crate) counts: Counts,
}

/// A value alone on its cache lines (128 bytes: two lines, as adjacent lines are fetched in
/// pairs).
#[repr(align(128))]
pub(crate) struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// What every clone of a pool shares.
pub(crate) struct Shared<M, Target, C, L> {
    pub(crate) config: Config,
    pub(crate) target: Target,
    pub(crate) connector: Mutex<M>,
    /// What the connections' wakers share with the pool (see [`Core`]).
    pub(crate) core: Arc<Core<C, L>>,
    /// Tells the maintenance task to stop.
    pub(crate) stopped: AtomicBool,
    /// Whether the maintenance task was started.
    pub(crate) maintained: AtomicBool,
}

/// The connections and the bookkeeping: what a connection's waker needs to bring it back.
///
/// The wakers hold it strongly, so that a wake costs no reference-count round trip (a
/// `Weak` upgrade and its drop are two locked instructions, on every wake of a busy
/// connection). A parked connection holds its waker, and the core holds the connection:
/// [`Shared`]'s `Drop` empties the shards, which ends that cycle. What is left (the
/// `Lifecycle`, the bookkeeping, the empty shards) lives on while a connection's waker does,
/// kept by a connection being closed, say, or by a waker clone held elsewhere.
pub(crate) struct Core<C, L> {
    pub(crate) lifecycle: Arc<L>,
    /// On cache lines of its own: written at every wait and wake, it would otherwise make
    /// other threads reread the fields beside it, which they read at every request.
    pub(crate) inner: Padded<Mutex<Inner>>,
    pub(crate) shards: Box<[Shard<C>]>,
    /// Set by `close`, under `inner`'s lock; also read under a shard's lock when a connection
    /// goes back.
    closed: AtomicBool,
    /// Whether anything waits; read without the lock when a connection goes back.
    pub(crate) has_waiters: AtomicBool,
}

impl<M, Target, C, L> std::ops::Deref for Shared<M, Target, C, L> {
    type Target = Core<C, L>;

    fn deref(&self) -> &Core<C, L> {
        &self.core
    }
}

impl<M, Target, C, L> Drop for Shared<M, Target, C, L> {
    fn drop(&mut self) {
        // Frees the parked connections' wakers, which hold the core. (Nothing else is left
        // to count them against: no `inner` lock needed.)
        drop(self.core.drain(true));
    }
}

impl<M, Target, C, L> fmt::Debug for Shared<M, Target, C, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<C, L> Core<C, L> {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl<C, L: Lifecycle<C>> Core<C, L>
where
    C: Send + 'static,
{
    pub(crate) fn close_conn(&self, conn: C) {
        let closing = self.lifecycle.close(conn);
        // Closing may take a round trip; it must not hold up the caller. Without a runtime
        // (a pool dropped at exit), the connection is simply dropped.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(closing);
        }
    }
}

impl<M, Target, C, L> Shared<M, Target, C, L> {
    pub(crate) fn stats(&self) -> Stats {
        let inner = self.inner.lock();
        let idle = self
            .shards
            .iter()
            .map(|shard| shard.conns.lock().idle.len())
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
        self.inner.lock().last_error.clone()
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
        Arc::new(Self {
            config,
            target,
            connector: Mutex::new(connector),
            core: Arc::new(Core {
                lifecycle,
                inner: Padded(Mutex::new(Inner {
                    live: 0,
                    connecting: 0,
                    waiters: VecDeque::new(),
                    next_conn: 0,
                    last_error: None,
                    failures: 0,
                    retry_at: None,
                    counts: Counts::default(),
                })),
                shards: (0..shards).map(|_| Shard::new()).collect(),
                closed: AtomicBool::new(false),
                has_waiters: AtomicBool::new(false),
            }),
            stopped: AtomicBool::new(false),
            maintained: AtomicBool::new(false),
        })
    }

    /// Drops a checked-out connection from the pool and closes it.
    #[allow(clippy::boxed_local)] // callers hold connections boxed
    pub(crate) fn evict(&self, conn: Conn<C>, reason: Eviction) {
        {
            let mut inner = self.inner.lock();
            inner.live -= 1;
            inner.counts.evicted.count(reason);
            // A slot is free: a waiter may connect.
            crate::wait::wake_waiters(&mut inner, &self.has_waiters);
        }
        tracing::debug!(target: "sluice_pool", reason = reason.as_str(), "connection evicted");
        self.close_conn(conn.conn);
    }

    /// Checks whether a taken-out connection may be used now, by its age and flags.
    #[inline]
    pub(crate) fn expiry(&self, conn: &Conn<C>) -> Option<Eviction> {
        if self.config.max_lifetime.is_none()
            && self.config.idle_timeout.is_none()
            && conn.broken.is_none()
        {
            return None; // no clock read on the common path
        }
        conn.expiry(&self.config, Instant::now())
    }

    /// Closes the pool: idle connections now, handed-out ones when they come back.
    pub(crate) async fn close(&self) {
        let idle = {
            let mut inner = self.inner.lock();
            self.closed.store(true, Ordering::SeqCst);
            // Parked connections are busy; they are closed with the idle ones, as they were
            // when they waited among them.
            let idle = self.drain(true);
            inner.live -= idle.len();
            for _ in 0..idle.len() {
                inner.counts.evicted.count(Eviction::Closed);
            }
            crate::wait::wake_waiters(&mut inner, &self.has_waiters);
            idle
        };
        self.stop_maintenance();
        for conn in idle {
            self.lifecycle.close(conn.conn).await;
        }
    }
}
