//! Connects: what the pool needs of a connector (named once), and the connect itself, run
//! on a task of its own.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use crate::error::{BoxError, ConnectTimedOut};
use crate::lifecycle::Lifecycle;
use crate::shard::Pooled;
use crate::shared::Shared;
use crate::wait::ParkWaker;

/// A connector the pool can use: a `Service<Target>` whose responses are connections
/// (tower's `MakeService`), which moves to the pool's tasks, whose connects run on tasks of
/// their own, and whose errors box. Implemented for every such service.
///
/// The bounds are associated-type bounds on the supertrait, so they hold wherever
/// `M: Connector<Target>` does (a `where` clause on the trait would have to be restated at
/// every use). The trait has no associated types of its own, and no type the pool or its
/// futures store names it: a spawned task's future must be `Send` for every lifetime rustc
/// erases in it, and proving a bound like `Into<BoxError>` there is where an earlier attempt
/// failed ("implementation of `From` is not general enough"). `tests/connector.rs` keeps a
/// `service_fn` connector with `BoxError`s, used inside `tokio::spawn`, compiling.
pub(crate) trait Connector<Target>:
    Service<Target, Response: Send + 'static, Future: Send + 'static, Error: Into<BoxError>>
    + Send
    + 'static
{
}

impl<M, Target> Connector<Target> for M where
    M: Service<Target, Response: Send + 'static, Future: Send + 'static, Error: Into<BoxError>>
        + Send
        + 'static
{
}

impl<M, Target, C, L> Shared<M, Target, C, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    /// Asks the connector for a connection and runs the connect in a task of its own. The
    /// caller has counted it in `connecting`. `Pending` (and uncounted) when the connector
    /// is not ready: it wakes `cx` when it is.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, before asking the connector, with the counts restored.
    pub(crate) fn start_connect(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.lock().connecting -= 1;
            panic!("sluice-pool connects on tasks of its own: use the pool within a Tokio runtime");
        };
        let connecting = {
            let mut connector = self.connector.lock();
            match connector.poll_ready(cx) {
                Poll::Ready(Ok(())) => Ok(connector.call(self.target.clone())),
                Poll::Ready(Err(error)) => Err(error.into()),
                Poll::Pending => {
                    // The connector will wake the caller; the next poll tries again.
                    self.inner.lock().connecting -= 1;
                    return Poll::Pending;
                }
            }
        };
        match connecting {
            Ok(future) => {
                let shared = Arc::clone(self);
                let timeout = self.config.connect_timeout;
                // From now, not from when the task first runs.
                let deadline = crate::config::after(Instant::now(), timeout);
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
    fn connected(self: &Arc<Self>, result: Result<C, BoxError>) {
        let mut inner = self.inner.lock();
        inner.connecting -= 1;
        match result {
            Ok(conn) if !self.is_closed() => {
                inner.live += 1;
                inner.counts.created += 1;
                inner.failures = 0;
                inner.retry_at = None;
                inner.last_error = None;
                inner.next_conn += 1;
                let (home, shard) = self.local_shard();
                let park = ParkWaker::park(&self.core, inner.next_conn, home);
                let now = Instant::now();
                let conn = Box::new(Pooled {
                    conn,
                    created: now,
                    last_used: self.config.idle_timeout.map(|_| now),
                    broken: self.config.fatal.as_ref().map(|_| Arc::default()),
                    park,
                });
                shard.push_idle(&mut shard.conns.lock(), conn);
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
                inner.retry_at = Some(crate::config::after(
                    Instant::now(),
                    self.config.backoff(inner.failures),
                ));
                inner.last_error = Some(Arc::new(error));
            }
        }
        crate::wait::wake_waiters(&mut inner, &self.has_waiters);
    }
}
