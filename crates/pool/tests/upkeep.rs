//! The background upkeep (`min_idle`) when the connector is not always ready: it must wait
//! for the connector, not spin, even on a one-thread runtime.
//!
//! A spinning task never yields, so no timer inside its runtime could end the test: the
//! runtime runs on a thread of its own and the test waits for it with a bound.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use sluice_pool::{PoolLayer, Stats};
use tower::limit::ConcurrencyLimit;
use tower::{service_fn, Layer};

/// A connection that answers every request with itself.
fn conn() -> impl tower::Service<u32, Response = u32, Error = Infallible> + Send {
    service_fn(|request: u32| std::future::ready(Ok::<_, Infallible>(request)))
}

#[test]
fn min_idle_waits_for_a_connector_that_takes_one_connect_at_a_time() {
    let (done, finished) = mpsc::channel::<Stats>();
    let made = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&made);
    std::thread::spawn(move || {
        let runtime = sluice_test_support::paused_runtime();
        runtime.block_on(async move {
            // Ready for one connect at a time: Pending while a connect is under way.
            let connector = ConcurrencyLimit::new(
                service_fn(move |()| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        tokio::task::yield_now().await;
                        Ok::<_, Infallible>(conn())
                    }
                }),
                1,
            );
            let pool = PoolLayer::builder(())
                .max_size(4)
                .min_idle(3)
                .build()
                .unwrap()
                .layer(connector);
            let handle = pool.handle();
            while handle.stats().live < 3 {
                tokio::task::yield_now().await;
            }
            done.send(handle.stats()).unwrap();
        });
    });
    let stats = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("the upkeep never let the runtime run the connects");
    assert_eq!(
        (stats.live, stats.idle, stats.created),
        (3, 3, 3),
        "{stats:?}"
    );
    assert_eq!(made.load(Ordering::SeqCst), 3);
}

/// A connector that is never ready, and says when it is dropped.
struct NeverReady(Arc<AtomicUsize>);

impl tower::Service<()> for NeverReady {
    type Response = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, Infallible>>>;
    type Error = Infallible;
    type Future = std::future::Pending<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Pending
    }

    fn call(&mut self, (): ()) -> Self::Future {
        unreachable!("never ready, never called")
    }
}

impl Drop for NeverReady {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test(start_paused = true)]
async fn the_upkeep_waiting_for_the_connector_ends_when_the_pool_is_dropped() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let pool = PoolLayer::builder(())
        .min_idle(1)
        .build()
        .unwrap()
        .layer(NeverReady(Arc::clone(&dropped)));
    let metrics = tokio::runtime::Handle::current().metrics();
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), 1, "the upkeep task runs");
    assert_eq!(pool.handle().stats().connecting, 0);
    drop(pool);
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the upkeep holds no pool while it waits"
    );
    // The next round (1 s) sees the pool gone.
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::yield_now().await;
    assert_eq!(metrics.num_alive_tasks(), 0, "the upkeep task ended");
}
