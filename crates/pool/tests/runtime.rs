//! The pool needs a Tokio runtime to be used, not to be built: connects run on spawned
//! tasks and waits are timed by Tokio's clock. Outside a runtime, building works and the
//! first connect panics with a message that says so, leaving the pool's counts consistent.

use std::convert::Infallible;
use std::panic::{catch_unwind, AssertUnwindSafe};

use sluice_pool::PoolLayer;
use tower::{service_fn, Layer, ServiceExt};

fn conn() -> impl tower::Service<u32, Response = u32, Error = Infallible> + Send {
    service_fn(|request: u32| std::future::ready(Ok::<_, Infallible>(request)))
}

#[test]
fn outside_a_runtime_the_pool_builds_and_its_first_connect_panics_saying_why() {
    let connector = service_fn(|()| std::future::ready(Ok::<_, Infallible>(conn())));
    let pool = PoolLayer::builder(())
        .min_idle(1)
        .build()
        .unwrap()
        .layer(connector);
    let handle = pool.handle();
    assert_eq!(handle.stats().live, 0);

    let mut ready = tokio_test::task::spawn(pool.ready_oneshot());
    let panic = catch_unwind(AssertUnwindSafe(|| ready.poll())).unwrap_err();
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    assert!(
        message.contains("sluice-pool") && message.contains("Tokio runtime"),
        "{message}"
    );
    let stats = handle.stats();
    assert_eq!((stats.connecting, stats.waiting), (0, 0), "{stats:?}");
}
