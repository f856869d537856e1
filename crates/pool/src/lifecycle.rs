//! Optional behaviour of pooled connections: health checks and graceful close.

use std::future::Future;
use std::pin::Pin;

use crate::error::BoxError;

/// A boxed future; these run off the request path (health checks, closes), so boxing costs
/// nothing that matters.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the pool may do with an idle connection besides handing it out.
///
/// Implemented by `()`: no health check, and closing is dropping. Implement it for a type of
/// yours to ping idle connections (e.g. a protocol-level ping) or to close them gracefully
/// (drain writes, say goodbye), and pass it to [`Builder::lifecycle`](crate::Builder::lifecycle).
///
/// The pool drops it once the pool and every waker it gave a connection are gone: a
/// connection still closing, or a waker clone kept elsewhere, keeps it a little longer.
pub trait Lifecycle<C: Send + 'static>: Send + Sync + 'static {
    /// Checks an idle connection, every `health_check_interval`; an error evicts it.
    fn check(&self, conn: C) -> BoxFuture<Result<C, BoxError>> {
        Box::pin(std::future::ready(Ok(conn)))
    }

    /// Closes a connection the pool is done with (evicted, expired, or on
    /// [`close`](crate::PoolHandle::close)).
    fn close(&self, conn: C) -> BoxFuture<()> {
        drop(conn);
        Box::pin(std::future::ready(()))
    }
}

impl<C: Send + 'static> Lifecycle<C> for () {}
