//! What the pool needs of a connector, named once.

use tower_service::Service;

use crate::error::BoxError;

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
