//! [`PoolHandle`]: stats of a pool, and closing it, from outside the stack.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::connect::Connector;
use crate::lifecycle::Lifecycle;
use crate::shared::Shared;
use crate::stats::Stats;

type BoxFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What a handle needs of a pool, whatever its connector and connection types.
pub(crate) trait Control: Send + Sync + fmt::Debug {
    fn stats(&self) -> Stats;
    fn close(&self) -> BoxFuture<'_>;
}

impl<M, Target, C, L> Control for Shared<M, Target, C, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    fn stats(&self) -> Stats {
        Shared::stats(self)
    }

    fn close(&self) -> BoxFuture<'_> {
        Box::pin(Shared::close(self))
    }
}

/// Observes and closes a pool; get one from [`Pool::handle`](crate::Pool::handle).
#[derive(Clone)]
pub struct PoolHandle {
    control: Arc<dyn Control>,
}

impl PoolHandle {
    pub(crate) fn new(control: Arc<dyn Control>) -> Self {
        Self { control }
    }

    /// A snapshot of the pool.
    pub fn stats(&self) -> Stats {
        self.control.stats()
    }

    /// Closes every idle connection through the [`Lifecycle`], and the handed-out ones when
    /// they come back; later requests fail with [`Closed`](crate::Closed).
    pub async fn close(&self) {
        self.control.close().await;
    }
}

impl fmt::Debug for PoolHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHandle")
            .field("pool", &self.control)
            .finish()
    }
}
