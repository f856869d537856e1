//! Requests that found no ready connection: what they do (connect, wait or fail), the list
//! of waiters, and the connections' own wakers, which bring a busy connection back when it
//! becomes ready and tell the waiters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use tokio::time::Instant;

use crate::connect::Connector;
use crate::error::BoxError;
use crate::lifecycle::Lifecycle;
use crate::shard::{Park, ParkState, Shard};
use crate::shared::{Core, Inner, Shared};

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

/// A `Pool`'s place in the line of waiters, made on its first wait and kept for the next.
#[derive(Debug, Default)]
pub(crate) struct Waiter {
    /// Whether it is in line. Written under `inner`'s lock; read without it by its own
    /// `Pool`, the only one that puts it in line, so that a request woken for a connection
    /// and served leaves without the lock.
    queued: AtomicBool,
}

/// Wakes every waiter, and empties the line.
pub(crate) fn wake_waiters(inner: &mut Inner, has_waiters: &AtomicBool) {
    has_waiters.store(false, Ordering::Release);
    for (waiter, waker) in inner.waiters.drain(..) {
        waiter.queued.store(false, Ordering::Release);
        waker.wake();
    }
}

impl<C, L> Core<C, L> {
    /// Takes the first in line off the line; the caller wakes it once it let go of `inner`
    /// (a wake may have to rouse another thread, which should not wait for the lock).
    fn next_in_line(&self, inner: &mut Inner) -> Option<Waker> {
        let (waiter, waker) = inner.waiters.pop_front()?;
        waiter.queued.store(false, Ordering::Release);
        if inner.waiters.is_empty() {
            self.has_waiters.store(false, Ordering::SeqCst);
        }
        Some(waker)
    }

    /// Tells the first waiter in line that a connection is ready: counted first, then
    /// waiters checked; `plan` does the reverse, so either this sees a waiter that just
    /// registered, or that waiter sees this count. One connection, one waiter woken: it
    /// takes the connection, or passes the wake on if it stops waiting without one.
    pub(crate) fn came_ready(&self, shard: &Shard<C>) {
        shard.returns.fetch_add(1, Ordering::SeqCst);
        if self.has_waiters.load(Ordering::SeqCst) {
            let next = self.next_in_line(&mut self.inner.lock());
            if let Some(waker) = next {
                waker.wake();
            }
        }
    }

    /// Takes `waiter` off the line, if it is on it. Off it already, it was woken for a
    /// connection: if it did not take one (`served`), the next in line is woken in its place.
    pub(crate) fn stop_waiting(&self, waiter: &Arc<Waiter>, served: bool) {
        if served && !waiter.queued.load(Ordering::Acquire) {
            return; // woken, and took the connection
        }
        let mut inner = self.inner.lock();
        if waiter.queued.load(Ordering::Acquire) {
            if let Some(place) = inner
                .waiters
                .iter()
                .position(|(w, _)| Arc::ptr_eq(w, waiter))
            {
                inner.waiters.remove(place);
            }
            waiter.queued.store(false, Ordering::Release);
            if inner.waiters.is_empty() {
                self.has_waiters.store(false, Ordering::SeqCst);
            }
        } else if !served {
            if let Some(waker) = self.next_in_line(&mut inner) {
                drop(inner);
                waker.wake();
            }
        }
    }
}

impl<M, Target, C, L> Shared<M, Target, C, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    /// Decides what a request that found no ready connection does; starts a connect if
    /// there is room, and registers the caller to be woken.
    /// `seen` is the count of returns from before the caller looked (see `checkout`);
    /// `waiter` is the caller's place in line, made on its first wait, and `waiting` says
    /// whether it was waiting already (set once it is in line).
    pub(crate) fn plan(
        self: &Arc<Self>,
        cx: &mut Context<'_>,
        seen: u64,
        waiter: &mut Option<Arc<Waiter>>,
        waiting: &mut bool,
    ) -> Plan {
        let mut inner = self.inner.lock();
        if self.is_closed() {
            return Plan::Closed;
        }
        // A connection came back after the caller looked (a connect that landed counts its
        // connection under this lock): no connect for it, it looks again below. (A second
        // connection made for a lone caller would split what it sends in order over two.)
        let came_back = self.returns() != seen;
        // One connect per waiting request at most: a caller polled again while its connect
        // is under way must not start another.
        let listed = waiter
            .as_ref()
            .is_some_and(|w| w.queued.load(Ordering::Acquire));
        let demand = inner.waiters.len() + usize::from(!listed);
        if !came_back
            && inner.live + inner.connecting < self.config.max_size
            && inner.connecting < demand
            // The clock is read only after a failed connect.
            && inner.retry_at.is_none_or(|at| Instant::now() >= at)
        {
            inner.connecting += 1;
            drop(inner);
            // If the connector is not ready, it wakes this caller when it is.
            let _ = self.start_connect(cx);
            inner = self.inner.lock();
        }
        if inner.live == 0 && inner.connecting == 0 {
            if let Some(error) = &inner.last_error {
                return Plan::Fail(Arc::clone(error));
            }
        }
        // Listed, or listed again: woken meanwhile, it is back first in line, where it was.
        let place = waiter.get_or_insert_with(Arc::default);
        if listed {
            if let Some((_, waker)) = inner
                .waiters
                .iter_mut()
                .find(|(w, _)| Arc::ptr_eq(w, place))
            {
                waker.clone_from(cx.waker());
            }
        } else {
            place.queued.store(true, Ordering::Release);
            let entry = (Arc::clone(place), cx.waker().clone());
            if *waiting {
                inner.waiters.push_front(entry);
            } else {
                inner.waiters.push_back(entry);
            }
        }
        *waiting = true;
        // Stored only if unset (a store here costs as much as a lock): with the line not
        // empty it was set under this lock, and is cleared only under it.
        if !self.has_waiters.load(Ordering::SeqCst) {
            self.has_waiters.store(true, Ordering::SeqCst);
        }
        if self.returns() != seen {
            // A connection came back after this caller looked, maybe before the waker was
            // in place: look again rather than wait. (The caller leaves the list when it
            // stops waiting.)
            return Plan::Retry;
        }
        Plan::Wait
    }
}

/// A connection's own waker: a connection keeps only the waker of the last task that polled
/// it, and that task may be gone, or no longer polling the pool, when the connection becomes
/// ready. The pool polls it with this one instead, which brings the parked connection back
/// to the idle ones and wakes the first waiter. It holds the pool's [`Core`], not the whole
/// pool (see there).
pub(crate) struct ParkWaker<C, L> {
    core: Arc<Core<C, L>>,
    id: u64,
    state: Arc<ParkState>,
}

impl<C, L> ParkWaker<C, L>
where
    C: Send + 'static,
    L: Lifecycle<C>,
{
    /// The waker of connection `id` of `core`.
    pub(crate) fn park(core: &Arc<Core<C, L>>, id: u64, home: usize) -> Park {
        let state = Arc::new(ParkState::new(home));
        let waker = Waker::from(Arc::new(Self {
            core: Arc::clone(core),
            id,
            state: Arc::clone(&state),
        }));
        Park { id, waker, state }
    }
}

impl<C, L> Wake for ParkWaker<C, L>
where
    C: Send + 'static,
    L: Lifecycle<C>,
{
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.core.unpark(self.id, &self.state);
    }
}
