//! A busy connection is polled once per busy spell, not by every request waiting for it: it
//! is set aside until its own waker says it can take a request.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_pool::PoolLayer;
use tokio::sync::Notify;
use tower::limit::ConcurrencyLimit;
use tower::util::{BoxService, ServiceFn};
use tower::{service_fn, Layer, Service, ServiceExt};

type Answer = Pin<Box<dyn Future<Output = Result<u32, Infallible>> + Send>>;
type Conn = ConcurrencyLimit<ServiceFn<Box<dyn FnMut(u32) -> Answer + Send>>>;

/// One request at a time, like a plain socket, counting how often it is asked whether it
/// can take one. Request 0 is answered only once `release` is notified.
struct Counted {
    conn: Conn,
    polls: Arc<AtomicUsize>,
}

impl Service<u32> for Counted {
    type Response = u32;
    type Error = Infallible;
    type Future = tower::limit::concurrency::future::ResponseFuture<Answer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.conn.poll_ready(cx)
    }

    fn call(&mut self, request: u32) -> Self::Future {
        self.conn.call(request)
    }
}

fn counted(release: Arc<Notify>, polls: Arc<AtomicUsize>) -> Counted {
    let answer: Box<dyn FnMut(u32) -> Answer + Send> = Box::new(move |request| {
        let release = Arc::clone(&release);
        Box::pin(async move {
            if request == 0 {
                release.notified().await;
            }
            tokio::task::yield_now().await;
            Ok(request)
        })
    });
    Counted {
        conn: ConcurrencyLimit::new(service_fn(answer), 1),
        polls,
    }
}

const WAITERS: u32 = 6;

#[tokio::test(flavor = "current_thread")]
async fn waiters_do_not_poll_a_busy_connection_each_time_one_comes_free() {
    let release = Arc::new(Notify::new());
    let polls = Arc::new(AtomicUsize::new(0));
    let connector = BoxService::new(service_fn({
        let (release, polls) = (Arc::clone(&release), Arc::clone(&polls));
        move |()| {
            let conn = counted(Arc::clone(&release), Arc::clone(&polls));
            std::future::ready(Ok::<_, Infallible>(conn))
        }
    }));
    let pool = PoolLayer::builder(())
        .max_size(1)
        .wait_timeout(Duration::from_secs(20))
        .build()
        .unwrap()
        .layer(connector);
    let handle = pool.handle();

    // The only connection, busy until `release`.
    let mut first = pool.clone();
    first.ready().await.unwrap();
    let busy = tokio::spawn(first.call(0));
    let mut waiters = Vec::new();
    for request in 1..=WAITERS {
        let mut pool = pool.clone();
        waiters.push(tokio::spawn(async move {
            pool.ready().await.unwrap().call(request).await.unwrap()
        }));
    }
    while handle.stats().waiting < WAITERS as usize {
        tokio::task::yield_now().await;
    }
    let before = polls.load(Ordering::SeqCst);

    release.notify_one();
    assert_eq!(busy.await.unwrap().unwrap(), 0);
    for (request, waiter) in (1..).zip(waiters) {
        let answer = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert_eq!(answer.expect("served").unwrap(), request);
    }
    // Each request: one poll that finds it ready, one right after the call that finds it
    // busy, and at most one more when it comes free. Polled by every waiter each time it
    // came free, as before, it took 6 polls per request here, growing with the waiters.
    let per_request = (polls.load(Ordering::SeqCst) - before) as f64 / f64::from(WAITERS);
    assert!(
        per_request <= 3.0,
        "{per_request} polls per request with {WAITERS} waiting"
    );
}

/// Breaks the `Service` contract: right after each call it answers `Pending` once without
/// keeping the waker, so nothing ever wakes it.
struct Forgetful {
    busy: bool,
}

impl Service<u32> for Forgetful {
    type Response = u32;
    type Error = Infallible;
    type Future = std::future::Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if std::mem::take(&mut self.busy) {
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        self.busy = true;
        std::future::ready(Ok(request))
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_wakes_costs_a_wait_not_the_connection() {
    let connector =
        service_fn(|()| std::future::ready(Ok::<_, Infallible>(Forgetful { busy: false })));
    let mut pool = PoolLayer::builder(())
        .max_size(1)
        .wait_timeout(Duration::from_secs(1))
        .build()
        .unwrap()
        .layer(connector);
    assert_eq!(pool.ready().await.unwrap().call(1).await.unwrap(), 1);
    // The connection is set aside, and its waker never fires: the next request waits out
    // its `wait_timeout`, then finds it ready on a last look.
    let started = tokio::time::Instant::now();
    assert_eq!(pool.ready().await.unwrap().call(2).await.unwrap(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(pool.handle().stats().created, 1);
}

/// Busy for good after its first request, keeping the waker it was last polled with (as a
/// socket keeps its reader's); counts itself out of `alive` when dropped.
struct Stuck {
    busy: bool,
    waker: Option<std::task::Waker>,
    alive: Arc<AtomicUsize>,
}

impl Service<u32> for Stuck {
    type Response = u32;
    type Error = Infallible;
    type Future = std::future::Ready<Result<u32, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.busy {
            self.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        self.busy = true;
        std::future::ready(Ok(request))
    }
}

impl Drop for Stuck {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts itself out of `alive` when dropped: the pool's core holds it.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl sluice_pool::Lifecycle<Stuck> for Held {}

#[tokio::test]
async fn a_pool_dropped_with_a_busy_connection_set_aside_drops_it() {
    // The lifecycle below, and the connections as they are made.
    let alive = Arc::new(AtomicUsize::new(1));
    let connector = service_fn({
        let alive = Arc::clone(&alive);
        move |()| {
            alive.fetch_add(1, Ordering::SeqCst);
            let alive = Arc::clone(&alive);
            std::future::ready(Ok::<_, Infallible>(Stuck {
                busy: false,
                waker: None,
                alive,
            }))
        }
    });
    let mut pool = PoolLayer::builder(())
        .max_size(2)
        .lifecycle(Held(Arc::clone(&alive)))
        .build()
        .unwrap()
        .layer(connector);
    let mut other = pool.clone();
    let handle = pool.handle();
    // Two connections, each set aside busy, holding the waker that would bring it back.
    let (first, second) =
        tokio::join!(async { pool.ready().await.unwrap().call(1).await }, async {
            other.ready().await.unwrap().call(2).await
        },);
    assert_eq!((first.unwrap(), second.unwrap()), (1, 2));
    assert_eq!(
        (alive.load(Ordering::SeqCst), handle.stats().created),
        (3, 2)
    );
    drop((pool, other, handle));
    assert_eq!(
        alive.load(Ordering::SeqCst),
        0,
        "the pool kept its connections or its lifecycle alive"
    );
}
