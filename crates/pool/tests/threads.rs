//! The pool's per-thread shards under real threads: many tasks share few one-at-a-time
//! connections (every request is answered, none waits out its timeout, never more than
//! `max_size` connections), and a close under way on every thread closes every connection.
//! Real time, bounded.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_pool::PoolLayer;
use tower::limit::ConcurrencyLimit;
use tower::util::{BoxService, ServiceFn};
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_on_several_threads_share_few_connections() {
    share(16, 300, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks_on_two_threads_pass_one_connection_back_and_forth() {
    // The narrowest window for a lost wake-up: a waiter that looked while the other task had
    // the only connection out must be woken when it comes back.
    share(2, 5_000, 1).await;
}

type Answer = Pin<Box<dyn Future<Output = Result<u64, Infallible>> + Send>>;

/// Takes one request at a time, busy until the response is out, as a plain socket.
type Conn = ConcurrencyLimit<ServiceFn<fn(u64) -> Answer>>;

fn answer(request: u64) -> Answer {
    Box::pin(async move {
        tokio::task::yield_now().await;
        Ok(request)
    })
}

/// Makes [`Conn`]s, counting them in `made`.
fn connector(made: Arc<AtomicUsize>) -> BoxService<(), Conn, Infallible> {
    BoxService::new(service_fn(move |()| {
        made.fetch_add(1, Ordering::SeqCst);
        let conn = ConcurrencyLimit::new(service_fn(answer as fn(u64) -> Answer), 1);
        std::future::ready(Ok(conn))
    }))
}

async fn share(tasks: u64, requests: u64, max_size: usize) {
    let made = Arc::new(AtomicUsize::new(0));
    let connector = connector(Arc::clone(&made));
    let pool = PoolLayer::builder(())
        .max_size(max_size)
        .wait_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
        .layer(connector);
    let handle = pool.handle();

    let watch = tokio::spawn({
        let handle = handle.clone();
        async move {
            loop {
                let stats = handle.stats();
                assert!(stats.live + stats.connecting <= max_size, "{stats:?}");
                tokio::task::yield_now().await;
            }
        }
    });
    let mut running = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let mut pool = pool.clone();
        running.spawn(async move {
            for i in 0..requests {
                let request = task * requests + i;
                let response = pool.ready().await?.call(request).await?;
                assert_eq!(response, request);
            }
            Ok::<_, BoxError>(())
        });
    }
    let all = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(done) = running.join_next().await {
            done.unwrap().unwrap();
        }
    })
    .await;
    assert!(all.is_ok(), "stuck: {:?}", handle.stats());
    assert!(!watch.is_finished(), "the watcher saw too many connections");
    watch.abort();

    let stats = handle.stats();
    assert!(made.load(Ordering::Relaxed) <= max_size);
    assert_eq!((stats.in_use, stats.idle), (0, stats.live), "{stats:?}");
}

/// Counts the connections the pool closes.
#[derive(Clone, Default)]
struct CountCloses(Arc<AtomicUsize>);

impl<C: Send + 'static> sluice_pool::Lifecycle<C> for CountCloses {
    fn close(&self, conn: C) -> sluice_pool::BoxFuture<()> {
        drop(conn);
        self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn closing_while_tasks_on_several_threads_use_it_closes_every_connection() {
    let made = Arc::new(AtomicUsize::new(0));
    let closes = CountCloses::default();
    let connector = connector(Arc::clone(&made));
    let pool = PoolLayer::builder(())
        .max_size(3)
        .lifecycle(closes.clone())
        .build()
        .unwrap()
        .layer(connector);
    let handle = pool.handle();
    let served = Arc::new(AtomicUsize::new(0));
    let mut running = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let mut pool = pool.clone();
        let served = Arc::clone(&served);
        running.spawn(async move {
            for request in 0.. {
                // After the close, `poll_ready` fails for good: the task stops there.
                let Ok(ready) = pool.ready().await else {
                    return;
                };
                if ready.call(request).await.is_ok() {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    drop(pool);
    // Let the tasks get going on every thread before closing under them.
    while served.load(Ordering::Relaxed) < 2_000 {
        tokio::task::yield_now().await;
    }
    handle.close().await;
    let stopped = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(done) = running.join_next().await {
            done.unwrap();
        }
    })
    .await;
    assert!(stopped.is_ok(), "a task did not see the close");
    // Connections in use when the pool closed are closed when they come back, on tasks of
    // their own: wait for those, within a bound.
    let all_closed = tokio::time::timeout(Duration::from_secs(5), async {
        while closes.0.load(Ordering::SeqCst) < made.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let stats = handle.stats();
    assert!(
        all_closed.is_ok(),
        "made {made:?}, closed {:?}: {stats:?}",
        closes.0
    );
    assert_eq!(closes.0.load(Ordering::SeqCst), made.load(Ordering::SeqCst));
    assert_eq!(
        (stats.live, stats.idle, stats.in_use),
        (0, 0, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_caller_polled_as_its_connect_lands_makes_no_second_connection() {
    // One caller, polled over and over (as a batch worker woken by new items is) while its
    // connect finishes on the other thread. If it looks just before the connection lands and
    // decides just after, it must see the connection, not start another: a second
    // connection splits what one caller sends, in order, over two.
    for round in 0..2_000 {
        let made = Arc::new(AtomicUsize::new(0));
        let mut pool = PoolLayer::builder(())
            .max_size(5)
            .build()
            .unwrap()
            .layer(connector(Arc::clone(&made)));
        let handle = pool.handle();
        std::future::poll_fn(|cx| {
            let ready = pool.poll_ready(cx);
            if ready.is_pending() {
                cx.waker().wake_by_ref();
            }
            ready
        })
        .await
        .unwrap();
        assert_eq!(pool.call(round).await.unwrap(), round);
        // A connect started by mistake lands on its own task: wait for it, bounded.
        let settled = tokio::time::timeout(Duration::from_secs(5), async {
            while handle.stats().connecting > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(
            settled.is_ok(),
            "a connect never ended: {:?}",
            handle.stats()
        );
        assert_eq!(
            made.load(Ordering::SeqCst),
            1,
            "round {round}: {:?}",
            handle.stats()
        );
    }
}
