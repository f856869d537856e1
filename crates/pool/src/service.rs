//! [`Pool`]: the service that sends each request over one of the pooled connections.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::connect::Connector;
use crate::error::{BoxError, Closed, ConnectFailed, PoolTimeout};
use crate::future::ResponseFuture;
use crate::handle::PoolHandle;
use crate::lifecycle::Lifecycle;
use crate::shard::Conn;
use crate::shared::Shared;
use crate::stats::Eviction;
use crate::wait::{Plan, Waiter};

/// Sends each request over one of up to `max_size` connections made by a connector `M`.
///
/// Cheap to clone; clones share the connections. See the [crate documentation](crate).
///
/// The connector `M` is a `Service<Target>` that is `Send + 'static`, whose futures are
/// `Send + 'static`, whose errors convert into [`BoxError`] and whose responses, the
/// connections, are `Send + 'static`; the target is `Clone + Send + Sync + 'static`. (The
/// pool's impls name these bounds through a private `Connector<Target>` trait that every
/// such service implements.) Prefer an owned target (a `String`, an address) to a borrowed
/// one: with a `&'static str`, a pool used inside `tokio::spawn` does not compile today
/// (rustc cannot prove the connector's impl for every lifetime it erases in the task).
///
/// # Panics
///
/// `poll_ready` panics outside a Tokio runtime when it must connect or wait: connects run
/// on tasks spawned on the current runtime, and waits are timed by its clock (with the
/// `time` driver enabled). Building a pool needs no runtime.
pub struct Pool<M, Target, L = ()>
where
    M: Service<Target>,
{
    shared: Arc<Shared<M, Target, M::Response, L>>,
    /// What `poll_ready` got for the next `call`.
    reserved: Option<Reserved<M::Response>>,
    /// When the wait for a connection began, while waiting.
    wait: Option<Instant>,
    /// Bounds the wait. Kept between waits: it is set to an earlier wait's deadline, or to
    /// this one's, and moved on when it fires early.
    timer: Option<Pin<Box<Sleep>>>,
    /// The waker `timer` was last polled with.
    timer_waker: Option<Waker>,
    /// This service's place in the pool's line of waiters, made on its first wait.
    waiter: Option<Arc<Waiter>>,
    /// Whether it is waiting (in line, or woken and not yet served).
    waiting: bool,
}

enum Reserved<C> {
    Conn(Conn<C>),
    Failed(BoxError),
}

impl<M, Target, L> Pool<M, Target, L>
where
    M: Service<Target>,
{
    pub(crate) fn from_shared(shared: Arc<Shared<M, Target, M::Response, L>>) -> Self {
        Self {
            shared,
            reserved: None,
            wait: None,
            timer: None,
            timer_waker: None,
            waiter: None,
            waiting: false,
        }
    }

    /// Stops waiting: leaves the pool's line of waiters, if on it. `served` says whether it
    /// got a connection; if it was woken for one and did not take it, the next in line is
    /// woken instead.
    fn stop_waiting(&mut self, served: bool) {
        if std::mem::take(&mut self.waiting) {
            if let Some(waiter) = &self.waiter {
                self.shared.stop_waiting(waiter, served);
            }
        }
    }
}

// `Connector` is private on purpose (see connect.rs): every connector a `PoolLayer` wraps
// meets it, and `Pool`'s docs say what it asks.
#[allow(private_bounds)]
impl<M, Target, C, L> Pool<M, Target, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    /// A handle to observe and close this pool.
    pub fn handle(&self) -> PoolHandle {
        PoolHandle::new(Arc::clone(&self.shared) as _)
    }
}

impl<M, Target, C, L, Req> Service<Req> for Pool<M, Target, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    C: Service<Req>,
    C::Error: Into<BoxError>,
    L: Lifecycle<C>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = ResponseFuture<C::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.reserved.is_some() {
            return Poll::Ready(Ok(()));
        }
        let poll = self.reserve(cx);
        if poll.is_ready() {
            let served = matches!(self.reserved, Some(Reserved::Conn(_)));
            self.stop_waiting(served);
        }
        poll
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let reserved = self
            .reserved
            .take()
            .expect("Pool::call without poll_ready: poll_ready must return Ready(Ok) first");
        match reserved {
            Reserved::Failed(error) => ResponseFuture::failed(error),
            Reserved::Conn(mut conn) => {
                let future = conn.conn.call(req);
                let fatal = match (&conn.broken, &self.shared.config.fatal) {
                    (Some(broken), Some(is_fatal)) => {
                        Some((Arc::clone(broken), Arc::clone(is_fatal)))
                    }
                    _ => None,
                };
                self.after_call(conn);
                ResponseFuture::called(future, fatal)
            }
        }
    }
}

#[allow(private_bounds)] // as above
impl<M, Target, C, L> Pool<M, Target, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    /// Reserves a ready connection, or a failure to give `call`; `Pending` while waiting.
    fn reserve<Req>(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>>
    where
        C: Service<Req>,
        C::Error: Into<BoxError>,
    {
        // A connection may come back, or a busy one become ready, just as this caller
        // turns to wait: it looks again, a few times in one poll at most (a connection
        // out of coop budget wakes its waker at once, every time).
        let mut looks = 0;
        loop {
            looks += 1;
            let (ready, seen) = self.take_ready();
            if let Some(conn) = ready {
                self.wait = None;
                self.reserved = Some(Reserved::Conn(conn));
                return Poll::Ready(Ok(()));
            }
            match self
                .shared
                .plan(cx, seen, &mut self.waiter, &mut self.waiting)
            {
                Plan::Retry if looks < 4 => continue,
                Plan::Retry => {
                    cx.waker().wake_by_ref();
                    break;
                }
                Plan::Closed => return Poll::Ready(Err(Box::new(Closed::new()))),
                Plan::Fail(error) => {
                    // Nothing to wait for: give the caller the real connect error now.
                    self.wait = None;
                    let error = Box::new(ConnectFailed::new(error));
                    self.reserved = Some(Reserved::Failed(error));
                    return Poll::Ready(Ok(()));
                }
                Plan::Wait => break,
            }
        }
        self.shared.ensure_maintenance();
        let started = *self.wait.get_or_insert_with(Instant::now);
        let timer = match &mut self.timer {
            Some(timer) => timer,
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(crate::config::after(
                    started,
                    self.shared.config.wait_timeout,
                )))),
        };
        // Registered with this task's waker already and not fired: it will wake this task.
        // (Polling it again would register the same waker again.)
        if self
            .timer_waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
            && !timer.is_elapsed()
        {
            return Poll::Pending;
        }
        // A timer left from an earlier wait fires before this wait's deadline, never after:
        // it is moved only once it fires early, not at every wait (moving it takes the
        // timer driver's lock), so it is moved at most once per `wait_timeout`.
        // Polled outside tokio's budget: out of budget, `Sleep` would answer `Pending`
        // without registering, and the check above would then skip it for good.
        let deadline = crate::config::after(started, self.shared.config.wait_timeout);
        while Pin::new(&mut tokio::task::unconstrained(timer.as_mut()))
            .poll(cx)
            .is_ready()
        {
            if Instant::now() < deadline {
                timer.as_mut().reset(deadline);
                continue;
            }
            self.wait = None;
            // A connection that answered `Pending` and never woke its waker (against the
            // `Service` contract) would stay parked for ever: before giving up, look at the
            // parked ones once more, so that it costs a wait, not the connection.
            self.shared.unpark_all();
            if let (Some(conn), _) = self.take_ready() {
                self.reserved = Some(Reserved::Conn(conn));
                return Poll::Ready(Ok(()));
            }
            let waited = started.elapsed();
            let error = PoolTimeout::new(waited, self.shared.last_error());
            self.reserved = Some(Reserved::Failed(Box::new(error)));
            return Poll::Ready(Ok(()));
        }
        match &mut self.timer_waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => self.timer_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Puts a connection back at once after a call: with the idle ones if it can carry
    /// another request now, else set aside until its own waker says it can. Asking now
    /// spares the waiters: a busy connection put back with the idle ones woke them all, and
    /// one of them took it out only to find it busy.
    fn after_call<Req>(&self, mut conn: Conn<C>)
    where
        C: Service<Req>,
        C::Error: Into<BoxError>,
    {
        let wakes = conn.park.state.before_poll();
        match conn
            .conn
            .poll_ready(&mut Context::from_waker(&conn.park.waker))
        {
            Poll::Ready(Ok(())) => self.shared.checkin(conn, true),
            Poll::Ready(Err(error)) => {
                let error: BoxError = error.into();
                tracing::debug!(target: "sluice_pool", %error, "connection broken");
                self.shared.evict(conn, Eviction::Broken);
            }
            Poll::Pending => {
                self.shared.touch(&mut conn);
                if let Some(conn) = self.shared.park(conn, wakes) {
                    self.shared.checkin(conn, false);
                }
            }
        }
    }

    /// Takes out the first idle connection that is ready, evicting broken and expired ones
    /// on the way and setting busy ones aside. Also returns the count of returns seen before
    /// the first look.
    fn take_ready<Req>(&mut self) -> (Option<Conn<C>>, u64)
    where
        C: Service<Req>,
        C::Error: Into<BoxError>,
    {
        let mut woken = Vec::new();
        let mut seen = None;
        let ready = loop {
            let conn = match self.shared.checkout_local() {
                Some(conn) => Some(conn),
                None => {
                    // This thread's shard is empty: note the returns before looking in all.
                    seen.get_or_insert_with(|| self.shared.returns());
                    self.shared.checkout_any()
                }
            };
            let Some(mut conn) = conn else {
                break None;
            };
            if let Some(reason) = self.shared.expiry(&conn) {
                self.shared.evict(conn, reason);
                continue;
            }
            // Polled with its own waker, not the caller's: it keeps only the last poller's,
            // and this caller may stop polling. Its wakes are counted first, so that only a
            // wake after this poll began counts when it is parked.
            let wakes = conn.park.state.before_poll();
            match conn
                .conn
                .poll_ready(&mut Context::from_waker(&conn.park.waker))
            {
                Poll::Ready(Ok(())) => break Some(conn),
                Poll::Ready(Err(error)) => {
                    let error: BoxError = error.into();
                    tracing::debug!(target: "sluice_pool", %error, "connection broken");
                    self.shared.evict(conn, Eviction::Broken);
                }
                Poll::Pending => {
                    // Set aside until its waker fires, which wakes the waiters. The returns
                    // are noted first, so that it cannot wake them before this caller is
                    // listed.
                    seen.get_or_insert_with(|| self.shared.returns());
                    // Woken already (out of coop budget, say): back once done looking, so
                    // that this look polls it once.
                    woken.extend(self.shared.park(conn, wakes));
                }
            }
        };
        if !woken.is_empty() {
            for conn in woken {
                self.shared.checkin(conn, false);
            }
        }
        (ready, seen.unwrap_or_default())
    }
}

impl<M, Target, L> Clone for Pool<M, Target, L>
where
    M: Service<Target>,
{
    fn clone(&self) -> Self {
        // A clone starts without a connection.
        Self::from_shared(Arc::clone(&self.shared))
    }
}

impl<M, Target, L> Drop for Pool<M, Target, L>
where
    M: Service<Target>,
{
    fn drop(&mut self) {
        self.stop_waiting(false);
        if let Some(Reserved::Conn(conn)) = self.reserved.take() {
            self.shared.give_back(conn);
        }
    }
}

impl<M, Target, L> fmt::Debug for Pool<M, Target, L>
where
    M: Service<Target>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("shared", &self.shared)
            .field("reserved", &self.reserved.is_some())
            .finish()
    }
}
