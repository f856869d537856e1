//! Behaviour of the pool over tower-test's mock connector, with a paused clock.
//!
//! Connects run in spawned tasks: `settle()` yields so they run (no wall-clock sleeps).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_pool::{
    BoxError, BoxFuture, Closed, ConfigError, ConnectFailed, ConnectTimedOut, Lifecycle, Pool,
    PoolLayer, PoolTimeout,
};
use tokio::time;
use tokio_test::{assert_pending, assert_ready_ok};
use tower::Layer;
use tower_test::mock;

type Conn = mock::Mock<u32, u32>;
type ConnHandle = mock::Handle<u32, u32>;
type Connector = mock::Mock<&'static str, Conn>;
type ConnectorHandle = mock::Handle<&'static str, Conn>;

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn pool(
    layer: PoolLayer<&'static str>,
) -> (mock::Spawn<Pool<Connector, &'static str>>, ConnectorHandle) {
    let (connector, handle) = mock::pair::<&'static str, Conn>();
    (mock::Spawn::new(layer.layer(connector)), handle)
}

fn layer() -> sluice_pool::Builder<&'static str> {
    PoolLayer::builder("dashboard")
        .max_size(2)
        .wait_timeout(Duration::from_secs(1))
        .connect_timeout(Duration::from_secs(3))
        .backoff(Duration::from_millis(100), Duration::from_millis(100))
}

/// Answers the next connect with a fresh mock connection; returns its handle.
async fn accept(connector: &mut ConnectorHandle) -> ConnHandle {
    let (target, respond) = connector.next_request().await.expect("a connect");
    assert_eq!(target, "dashboard");
    let (conn, handle) = mock::pair();
    respond.send_response(conn);
    settle().await;
    handle
}

/// Sends one request through the pool (already ready) and answers it on `conn`.
async fn round_trip<S>(pool: &mut mock::Spawn<S>, conn: &mut ConnHandle, request: u32)
where
    S: tower::Service<u32, Response = u32, Error = BoxError>,
{
    let response = pool.call(request);
    let (seen, respond) = conn.next_request().await.unwrap();
    assert_eq!(seen, request);
    respond.send_response(request * 10);
    assert_eq!(response.await.unwrap(), request * 10);
}

fn error_of(error: &BoxError) -> String {
    std::error::Error::source(&**error)
        .map(|source| source.to_string())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn connections_are_made_lazily_and_reused() {
    let (mut pool, mut connector) = pool(layer().build().unwrap());
    let handle = pool.get_ref().handle();
    settle().await;
    assert!(matches!(connector.poll_request(), std::task::Poll::Pending));
    assert_eq!(handle.stats().live, 0);

    assert_pending!(pool.poll_ready());
    let mut conn = accept(&mut connector).await;
    assert!(pool.is_woken());
    assert_ready_ok!(pool.poll_ready());
    round_trip(&mut pool, &mut conn, 1).await;
    assert_ready_ok!(pool.poll_ready());
    round_trip(&mut pool, &mut conn, 2).await;

    let stats = handle.stats();
    assert_eq!((stats.created, stats.live, stats.idle), (1, 1, 1));
    assert!(matches!(connector.poll_request(), std::task::Poll::Pending));
}

#[tokio::test(start_paused = true)]
async fn a_busy_connection_leads_to_a_second_and_never_more_than_max() {
    let layer = layer().build().unwrap();
    let (connector, mut connector_handle) = mock::pair::<&'static str, Conn>();
    let pool = layer.layer(connector);
    let handle = pool.handle();
    let mut a = mock::Spawn::new(pool.clone());
    let mut b = mock::Spawn::new(pool.clone());
    let mut c = mock::Spawn::new(pool);

    assert_pending!(a.poll_ready());
    let mut first = accept(&mut connector_handle).await;
    first.allow(1);
    assert_ready_ok!(a.poll_ready());
    let _in_flight = a.call(1);
    // The first connection can take no more: the next caller gets a second one.
    assert_pending!(b.poll_ready());
    let _second = accept(&mut connector_handle).await;
    assert_ready_ok!(b.poll_ready());
    // Both taken (b holds its reservation): a third waits, and no third connect starts.
    assert_pending!(c.poll_ready());
    settle().await;
    assert!(matches!(
        connector_handle.poll_request(),
        std::task::Poll::Pending
    ));
    let stats = handle.stats();
    assert_eq!((stats.live, stats.connecting, stats.waiting), (2, 0, 1));
    // The wait is bounded.
    time::advance(Duration::from_secs(1)).await;
    assert_ready_ok!(c.poll_ready());
    let error = c.call(3).await.unwrap_err();
    assert!(error.is::<PoolTimeout>());
}

#[tokio::test(start_paused = true)]
async fn each_wait_gets_its_whole_wait_timeout() {
    // One connection; `a` keeps it busy while `c` waits twice. The timer `c` keeps from its
    // first wait (due at 1 s) fires during its second (due at 1.8 s): it must not end it.
    let layer = layer().max_size(1).build().unwrap();
    let (connector, mut connector_handle) = mock::pair::<&'static str, Conn>();
    let pool = layer.layer(connector);
    let mut a = mock::Spawn::new(pool.clone());
    let mut c = mock::Spawn::new(pool);

    assert_pending!(a.poll_ready());
    let mut conn = accept(&mut connector_handle).await;
    conn.allow(1);
    assert_ready_ok!(a.poll_ready());
    let _first = a.call(1);
    assert_pending!(c.poll_ready());

    time::advance(Duration::from_millis(600)).await;
    conn.allow(1);
    assert!(c.is_woken());
    assert_ready_ok!(c.poll_ready());
    let _second = c.call(2);

    time::advance(Duration::from_millis(200)).await;
    assert_pending!(c.poll_ready()); // the second wait begins, at 0.8 s
    time::advance(Duration::from_millis(300)).await;
    assert_pending!(c.poll_ready()); // 1.1 s: the first wait's deadline passed
    time::advance(Duration::from_millis(699)).await;
    assert_pending!(c.poll_ready());
    time::advance(Duration::from_millis(1)).await;
    assert!(c.is_woken());
    assert_ready_ok!(c.poll_ready());
    let error = c.call(3).await.unwrap_err();
    let timeout = error.downcast_ref::<PoolTimeout>().expect("PoolTimeout");
    assert_eq!(timeout.waited(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_wait_begun_out_of_coop_budget_still_times_out() {
    // The connect never answers (and has a minute): only the wait timeout ends this wait.
    let layer = layer()
        .connect_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let (connector, _connector_handle) = mock::pair::<&'static str, Conn>();
    let mut pool = layer.layer(connector);
    let mut spent = false;
    let ready = time::timeout(
        Duration::from_secs(10),
        std::future::poll_fn(|cx| {
            if !std::mem::replace(&mut spent, true) {
                // Spend this task's budget first, as a busy task may have: a timer polled
                // now answers `Pending` without registering.
                loop {
                    let spend = std::pin::pin!(tokio::task::consume_budget());
                    if spend.poll(cx).is_pending() {
                        break;
                    }
                }
            }
            tower::Service::poll_ready(&mut pool, cx)
        }),
    )
    .await;
    assert!(ready.expect("the wait timed out by itself").is_ok());
    let error = tower::Service::call(&mut pool, 1).await.unwrap_err();
    let timeout = error.downcast_ref::<PoolTimeout>().expect("PoolTimeout");
    assert_eq!(timeout.waited(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn duration_max_settings_mean_no_limit_not_a_panic() {
    let layer = layer()
        .wait_timeout(Duration::MAX)
        .connect_timeout(Duration::MAX)
        .backoff(Duration::MAX, Duration::MAX)
        .build()
        .unwrap();
    let (mut pool, mut connector) = pool(layer);
    assert_pending!(pool.poll_ready());
    let (_, respond) = connector.next_request().await.unwrap();
    respond.send_error("connection refused");
    settle().await;
    assert_ready_ok!(pool.poll_ready());
    let error = pool.call(1).await.unwrap_err();
    assert!(error.is::<ConnectFailed>());
    // Within the (endless) backoff: fails fast, no second connect.
    assert_ready_ok!(pool.poll_ready());
    assert!(pool.call(2).await.unwrap_err().is::<ConnectFailed>());
}

#[tokio::test(start_paused = true)]
async fn a_broken_connection_is_evicted_and_replaced() {
    let (mut pool, mut connector) = pool(layer().build().unwrap());
    let handle = pool.get_ref().handle();
    assert_pending!(pool.poll_ready());
    let mut conn = accept(&mut connector).await;
    assert_ready_ok!(pool.poll_ready());
    round_trip(&mut pool, &mut conn, 1).await;

    conn.send_error("connection reset");
    assert_pending!(pool.poll_ready());
    let mut replacement = accept(&mut connector).await;
    assert_ready_ok!(pool.poll_ready());
    round_trip(&mut pool, &mut replacement, 2).await;
    let stats = handle.stats();
    assert_eq!((stats.created, stats.live, stats.evicted.broken), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_failed_connect_gives_the_real_error_then_retries_after_backoff() {
    let (mut pool, mut connector) = pool(layer().build().unwrap());
    let handle = pool.get_ref().handle();
    assert_pending!(pool.poll_ready());
    let (_, respond) = connector.next_request().await.unwrap();
    respond.send_error("connection refused");
    settle().await;
    assert!(pool.is_woken());
    assert_ready_ok!(pool.poll_ready());
    let error = pool.call(1).await.unwrap_err();
    let failed = error
        .downcast_ref::<ConnectFailed>()
        .expect("ConnectFailed");
    assert_eq!(failed.error().to_string(), "connection refused");
    assert_eq!(handle.stats().connect_failures, 1);
    assert_eq!(handle.stats().live, 0, "a failed connect holds no slot");

    // Within the backoff: fail fast, no new connect.
    assert_ready_ok!(pool.poll_ready());
    assert!(pool.call(2).await.unwrap_err().is::<ConnectFailed>());
    settle().await;
    assert!(matches!(connector.poll_request(), std::task::Poll::Pending));

    // After it, the next request connects again: the server is back.
    time::advance(Duration::from_millis(100)).await;
    assert_pending!(pool.poll_ready());
    let mut conn = accept(&mut connector).await;
    assert_ready_ok!(pool.poll_ready());
    round_trip(&mut pool, &mut conn, 3).await;
    assert_eq!(handle.stats().last_connect_error, None);
}

#[tokio::test(start_paused = true)]
async fn the_wait_timeout_carries_the_last_connect_error() {
    let (mut pool, mut connector) = pool(layer().build().unwrap());
    assert_pending!(pool.poll_ready());
    let (_, respond) = connector.next_request().await.unwrap();
    respond.send_error("connection refused");
    settle().await;
    assert_ready_ok!(pool.poll_ready());
    drop(pool.call(1));

    time::advance(Duration::from_millis(100)).await;
    assert_pending!(pool.poll_ready());
    let (_, _hangs) = connector.next_request().await.unwrap();
    time::advance(Duration::from_secs(1)).await;
    assert_ready_ok!(pool.poll_ready());
    let error = pool.call(2).await.unwrap_err();
    let timeout = error.downcast_ref::<PoolTimeout>().expect("PoolTimeout");
    assert_eq!(timeout.waited(), Duration::from_secs(1));
    assert_eq!(
        timeout.last_connect_error().unwrap().to_string(),
        "connection refused"
    );
    assert_eq!(error_of(&error), "connection refused");
}

#[tokio::test(start_paused = true)]
async fn a_hung_connect_times_out_with_its_own_error() {
    let layer = layer()
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let (mut pool, mut connector) = pool(layer);
    assert_pending!(pool.poll_ready());
    let (_, _never) = connector.next_request().await.unwrap();
    time::advance(Duration::from_millis(500)).await;
    settle().await;
    assert_ready_ok!(pool.poll_ready());
    let error = pool.call(1).await.unwrap_err();
    let failed = error.downcast_ref::<ConnectFailed>().unwrap();
    assert!(failed.error().is::<ConnectTimedOut>());
}

#[tokio::test(start_paused = true)]
async fn min_idle_connections_are_kept_warm() {
    let (connector, mut connector_handle) = mock::pair::<&'static str, Conn>();
    let pool = layer().min_idle(2).build().unwrap().layer(connector);
    let handle = pool.handle();
    let _first = accept(&mut connector_handle).await;
    time::advance(Duration::from_secs(1)).await;
    let _second = accept(&mut connector_handle).await;
    time::advance(Duration::from_secs(1)).await;
    settle().await;
    let stats = handle.stats();
    assert_eq!((stats.live, stats.idle, stats.created), (2, 2, 2));
    assert!(matches!(
        connector_handle.poll_request(),
        std::task::Poll::Pending
    ));
}

#[tokio::test(start_paused = true)]
async fn old_and_idle_connections_are_retired() {
    let layer = layer()
        .max_lifetime(Duration::from_secs(60))
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut pool, mut connector) = pool(layer);
    let handle = pool.get_ref().handle();
    assert_pending!(pool.poll_ready());
    let mut conn = accept(&mut connector).await;
    assert_ready_ok!(pool.poll_ready());
    round_trip(&mut pool, &mut conn, 1).await;
    // Unused for 10 s: the maintenance task closes it, and the pool shrinks.
    time::advance(Duration::from_secs(11)).await;
    settle().await;
    assert_eq!((handle.stats().live, handle.stats().evicted.idle), (0, 1));

    // A connection in steady use still retires at its lifetime.
    assert_pending!(pool.poll_ready());
    let mut conn = accept(&mut connector).await;
    for i in 0..12 {
        assert_ready_ok!(pool.poll_ready());
        round_trip(&mut pool, &mut conn, i).await;
        time::advance(Duration::from_secs(5)).await;
    }
    assert_pending!(pool.poll_ready());
    let _replacement = accept(&mut connector).await;
    assert_eq!(handle.stats().evicted.lifetime, 1);
}

/// Fails the health check of connections, and counts closes.
#[derive(Default)]
struct Checks {
    failing: std::sync::atomic::AtomicBool,
    closed: AtomicUsize,
}

#[derive(Clone)]
struct Hooks(Arc<Checks>);

impl Lifecycle<Conn> for Hooks {
    fn check(&self, conn: Conn) -> BoxFuture<Result<Conn, BoxError>> {
        let failing = self.0.failing.load(Ordering::SeqCst);
        Box::pin(async move {
            if failing {
                Err("no pong".into())
            } else {
                Ok(conn)
            }
        })
    }

    fn close(&self, conn: Conn) -> BoxFuture<()> {
        self.0.closed.fetch_add(1, Ordering::SeqCst);
        drop(conn);
        Box::pin(async {})
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_health_check_evicts_and_close_goes_through_the_lifecycle() {
    let checks = Arc::new(Checks::default());
    let layer = layer()
        .health_check_interval(Duration::from_secs(5))
        .lifecycle(Hooks(Arc::clone(&checks)))
        .build()
        .unwrap();
    let (connector, mut connector_handle) = mock::pair::<&'static str, Conn>();
    let mut pool = mock::Spawn::new(layer.layer(connector));
    let handle = pool.get_ref().handle();
    assert_pending!(pool.poll_ready());
    let mut conn = accept(&mut connector_handle).await;
    assert_ready_ok!(pool.poll_ready());
    round_trip(&mut pool, &mut conn, 1).await;
    time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(handle.stats().live, 1, "a healthy connection stays");
    checks.failing.store(true, Ordering::SeqCst);
    time::advance(Duration::from_secs(5)).await;
    settle().await;
    assert_eq!(
        (handle.stats().live, handle.stats().evicted.health_check),
        (0, 1)
    );

    checks.failing.store(false, Ordering::SeqCst);
    assert_pending!(pool.poll_ready());
    let _second = accept(&mut connector_handle).await;
    assert_ready_ok!(pool.poll_ready());
    let mut other = mock::Spawn::new(pool.get_ref().clone());
    handle.close().await;
    // The reserved connection goes back on drop and is closed then.
    drop(pool);
    settle().await;
    assert_eq!(handle.stats().live, 0);
    let error = tokio_test::assert_ready_err!(other.poll_ready());
    assert!(error.is::<Closed>());
}

#[tokio::test(start_paused = true)]
async fn a_fatal_call_error_evicts_the_connection() {
    let layer = layer()
        .fatal_error(|error| error.to_string() == "protocol error")
        .build()
        .unwrap();
    let (mut pool, mut connector) = pool(layer);
    let handle = pool.get_ref().handle();
    assert_pending!(pool.poll_ready());
    let mut conn = accept(&mut connector).await;
    assert_ready_ok!(pool.poll_ready());
    let response = pool.call(1);
    conn.next_request().await.unwrap().1.send_error("not found");
    assert_eq!(response.await.unwrap_err().to_string(), "not found");
    assert_ready_ok!(pool.poll_ready());
    let response = pool.call(2);
    conn.next_request()
        .await
        .unwrap()
        .1
        .send_error("protocol error");
    assert_eq!(response.await.unwrap_err().to_string(), "protocol error");
    assert_pending!(pool.poll_ready());
    let _replacement = accept(&mut connector).await;
    assert_eq!(handle.stats().evicted.fatal, 1);
}

#[test]
fn bad_configuration_is_an_error_from_build() {
    assert_eq!(
        PoolLayer::builder(()).max_size(0).build().unwrap_err(),
        ConfigError::Zero { field: "max_size" }
    );
    assert!(matches!(
        PoolLayer::builder(())
            .max_size(2)
            .min_idle(3)
            .build()
            .unwrap_err(),
        ConfigError::MinIdleAboveMax { .. }
    ));
    assert!(matches!(
        PoolLayer::builder(())
            .wait_timeout(Duration::ZERO)
            .build()
            .unwrap_err(),
        ConfigError::ZeroDuration { .. }
    ));
}
