//! [`Pool`]: the service that sends each request over one of the pooled connections.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

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
use crate::wait::Plan;

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
    /// Bounds the wait for a connection: the timer and when the wait began.
    wait: Option<(Pin<Box<Sleep>>, Instant)>,
    /// This service's id on the pool's waiter list while it waits.
    waiter: Option<u64>,
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
            waiter: None,
        }
    }

    /// Leaves the pool's waiter list, if on it.
    fn stop_waiting(&mut self) {
        if let Some(id) = self.waiter.take() {
            self.shared.stop_waiting(id);
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
            self.stop_waiting();
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
                // Back at once: a connection that can carry more requests says so through
                // its `poll_ready`.
                self.shared.checkin(conn, true);
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
            let (ready, seen) = self.take_ready(cx);
            if let Some(conn) = ready {
                self.wait = None;
                self.reserved = Some(Reserved::Conn(conn));
                return Poll::Ready(Ok(()));
            }
            match self.shared.plan(cx, seen, &mut self.waiter) {
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
        let timeout = self.shared.config.wait_timeout;
        let (timer, started) = self
            .wait
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(timeout)), Instant::now()));
        if timer.as_mut().poll(cx).is_ready() {
            let waited = started.elapsed();
            self.wait = None;
            let error = PoolTimeout::new(waited, self.shared.last_error());
            self.reserved = Some(Reserved::Failed(Box::new(error)));
            return Poll::Ready(Ok(()));
        }
        Poll::Pending
    }

    /// Takes out the first idle connection that is ready, evicting broken and expired ones
    /// on the way and putting busy ones back. Also returns the count of returns seen before
    /// the first look.
    fn take_ready<Req>(&mut self, cx: &mut Context<'_>) -> (Option<Conn<C>>, u64)
    where
        C: Service<Req>,
        C::Error: Into<BoxError>,
    {
        let mut busy = Vec::new();
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
            let mut polled = conn.conn.poll_ready(cx);
            if polled.is_pending() {
                // It keeps only the last poller's waker, and this caller may stop polling:
                // poll it again for the pool's, which wakes every waiter. The returns are
                // noted first, so that it cannot wake them before this caller is listed.
                seen.get_or_insert_with(|| self.shared.returns());
                polled = conn
                    .conn
                    .poll_ready(&mut Context::from_waker(self.shared.busy_waker()));
            }
            match polled {
                Poll::Ready(Ok(())) => break Some(conn),
                Poll::Ready(Err(error)) => {
                    let error: BoxError = error.into();
                    tracing::debug!(target: "sluice_pool", %error, "connection broken");
                    self.shared.evict(conn, Eviction::Broken);
                }
                // It wakes the pool's waiters when it can take a request.
                Poll::Pending => busy.push(conn),
            }
        };
        for conn in busy {
            self.shared.checkin_busy(conn);
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
        self.stop_waiting();
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
