//! Requests waiting for a busy connection, on a multi-thread runtime: a waiter that is dropped
//! or cancelled must neither strand the others nor stay counted (in `Stats::waiting`, and in
//! the demand that decides how many connects to start). One exception, documented: a kept
//! `Pool` whose `ready()` was cancelled holds its place in line, and woken first it holds up
//! the next until that one's `wait_timeout` (on a paused clock, below).
//!
//! Real time: a stranded waiter sleeps until its `wait_timeout` (20 s; its last look then
//! finds the connection free, so it is late rather than failed). The tests give it 5 s, far
//! longer than it takes when nothing is stranded.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_pool::{BoxError, Pool, PoolHandle, PoolLayer};
use tokio::sync::{oneshot, Notify};
use tower::limit::ConcurrencyLimit;
use tower::util::{BoxService, ServiceFn};
use tower::{service_fn, Layer, Service, ServiceExt};

type Answer = Pin<Box<dyn Future<Output = Result<u32, Infallible>> + Send>>;
/// One request at a time, like a plain socket.
type Conn = ConcurrencyLimit<ServiceFn<Box<dyn FnMut(u32) -> Answer + Send>>>;
type Connector = BoxService<(), Conn, Infallible>;

/// A connection that answers each request with itself; request 0 is answered only once
/// `release` is notified, so it keeps the connection busy until then.
fn conn(release: Arc<Notify>) -> Conn {
    let answer: Box<dyn FnMut(u32) -> Answer + Send> = Box::new(move |request| {
        let release = Arc::clone(&release);
        Box::pin(async move {
            if request == 0 {
                release.notified().await;
            }
            Ok(request)
        })
    });
    ConcurrencyLimit::new(service_fn(answer), 1)
}

/// A pool of one such connection, made at once.
fn one_connection(release: &Arc<Notify>) -> Pool<Connector, ()> {
    let release = Arc::clone(release);
    let connector = BoxService::new(service_fn(move |()| {
        std::future::ready(Ok::<_, Infallible>(conn(Arc::clone(&release))))
    }));
    PoolLayer::builder(())
        .max_size(1)
        .wait_timeout(WAIT_TIMEOUT)
        .build()
        .unwrap()
        .layer(connector)
}

const WAIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Awaits a waiter the busy connection came free for: it must be served at once, not at its
/// `wait_timeout`.
async fn served(waiter: tokio::task::JoinHandle<Result<u32, BoxError>>) -> u32 {
    let answer = tokio::time::timeout(Duration::from_secs(5), waiter).await;
    let answer = answer.expect("stranded: still waiting 5 s after the connection came free");
    answer.unwrap().unwrap()
}

/// Yields until `stats` holds for the pool, within a bound.
async fn until(handle: &PoolHandle, what: &str, stats: impl Fn(&sluice_pool::Stats) -> bool) {
    let reached = tokio::time::timeout(Duration::from_secs(5), async {
        while !stats(&handle.stats()) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(reached.is_ok(), "never {what}: {:?}", handle.stats());
}

/// Takes the pool's one connection and keeps it busy with request 0 until `release`.
async fn occupy(pool: &mut Pool<Connector, ()>) -> tokio::task::JoinHandle<u32> {
    pool.ready().await.unwrap();
    let busy = pool.call(0);
    tokio::spawn(async move { busy.await.unwrap() })
}

/// A task that waits for the pool and sends `request` through it.
fn waiter(
    mut pool: Pool<Connector, ()>,
    request: u32,
) -> tokio::task::JoinHandle<Result<u32, BoxError>> {
    tokio::spawn(async move { pool.ready().await?.call(request).await })
}

/// The pool's one connection busy with request 0, and a first waiter for it (request 1).
struct Busy {
    release: Arc<Notify>,
    pool: Pool<Connector, ()>,
    handle: PoolHandle,
    busy: tokio::task::JoinHandle<u32>,
    first: tokio::task::JoinHandle<Result<u32, BoxError>>,
}

impl Busy {
    async fn new() -> Self {
        let release = Arc::new(Notify::new());
        let mut pool = one_connection(&release);
        let handle = pool.handle();
        let busy = occupy(&mut pool).await;
        let first = waiter(pool.clone(), 1);
        until(&handle, "one waiting", |s| s.waiting == 1).await;
        Self {
            release,
            pool,
            handle,
            busy,
            first,
        }
    }

    /// Ends request 0; the first waiter must then be served at once.
    async fn release(self) {
        self.release.notify_one();
        assert_eq!(self.busy.await.unwrap(), 0);
        assert_eq!(served(self.first).await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_last_poller_does_not_strand_the_others() {
    let scene = Busy::new().await;
    let handle = &scene.handle;
    // The second polls the busy connection last: its readiness would wake only this one.
    let last = waiter(scene.pool.clone(), 2);
    until(handle, "two waiting", |s| s.waiting == 2).await;
    last.abort();
    assert!(last.await.unwrap_err().is_cancelled());
    assert_eq!(
        handle.stats().waiting,
        1,
        "the dropped waiter left the list"
    );
    scene.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_last_poller_does_not_strand_the_others() {
    let scene = Busy::new().await;
    let handle = scene.handle.clone();
    // The last poller gives up waiting (its `ready` is cancelled) but lives on, holding its
    // pool, on something else: a wake-up meant for the pool reaches a task that no longer
    // polls it.
    let (cancel, cancelled) = oneshot::channel::<()>();
    let (gave_up, given_up) = oneshot::channel::<()>();
    let (finish, finished) = oneshot::channel::<()>();
    let mut last_pool = scene.pool.clone();
    let last = tokio::spawn(async move {
        tokio::select! {
            biased;
            _ = cancelled => {}
            _ = last_pool.ready() => panic!("the connection is busy"),
        }
        gave_up.send(()).unwrap();
        finished.await.unwrap();
        drop(last_pool);
    });
    until(&handle, "two waiting", |s| s.waiting == 2).await;
    cancel.send(()).unwrap();
    given_up.await.unwrap();
    scene.release().await;
    // Woken in its turn (the first's request put the connection back), the one that gave up
    // is no longer counted as waiting.
    assert_eq!(handle.stats().waiting, 0, "{:?}", handle.stats());
    finish.send(()).unwrap();
    last.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_woken_for_a_connection_and_dropped_passes_the_wake_on() {
    let release = Arc::new(Notify::new());
    let mut pool = one_connection(&release);
    let handle = pool.handle();
    let busy = occupy(&mut pool).await;
    // First in line, polled by hand: it is dropped after being woken, before it looks.
    let mut first = tokio_test::task::spawn(pool.clone().ready_oneshot());
    assert!(first.poll().is_pending());
    let second = waiter(pool.clone(), 2);
    until(&handle, "two waiting", |s| s.waiting == 2).await;
    release.notify_one();
    assert_eq!(busy.await.unwrap(), 0);
    assert!(
        first.is_woken(),
        "the first in line is woken for the connection"
    );
    drop(first);
    // The connection is woken for once: the second must have its turn now.
    assert_eq!(served(second).await, 2);
    assert_eq!(handle.stats().waiting, 0, "{:?}", handle.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_waiters_leave_the_waiting_count_and_the_connect_demand() {
    // Connects hang until released, so that waiters pile up on one connect under way.
    let release = Arc::new(Notify::new());
    let connects = Arc::new(AtomicUsize::new(0));
    let connector = {
        let release = Arc::clone(&release);
        let connects = Arc::clone(&connects);
        BoxService::new(service_fn(move |()| {
            connects.fetch_add(1, Ordering::SeqCst);
            let release = Arc::clone(&release);
            async move {
                release.notified().await;
                Ok::<_, Infallible>(conn(Arc::new(Notify::new())))
            }
        }))
    };
    let pool: Pool<Connector, ()> = PoolLayer::builder(())
        .max_size(3)
        .wait_timeout(WAIT_TIMEOUT)
        .connect_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
        .layer(connector);
    let handle = pool.handle();

    let gone = waiter(pool.clone(), 1);
    until(&handle, "one waiting", |s| {
        s.waiting == 1 && s.connecting == 1
    })
    .await;
    gone.abort();
    assert!(gone.await.unwrap_err().is_cancelled());
    let stats = handle.stats();
    assert_eq!((stats.waiting, stats.connecting), (0, 1), "{stats:?}");

    // One request now waits, and one connect is under way for it: no second connect.
    let mut next = tokio_test::task::spawn(pool.clone().ready_oneshot());
    assert!(next.poll().is_pending());
    let stats = handle.stats();
    assert_eq!((stats.waiting, stats.connecting), (1, 1), "{stats:?}");
    assert_eq!(connects.load(Ordering::SeqCst), 1);

    release.notify_one();
    let mut ready = next.await.unwrap();
    assert_eq!(ready.call(2).await.unwrap(), 2);
    let stats = handle.stats();
    assert_eq!((stats.created, stats.waiting), (1, 0), "{stats:?}");
    assert_eq!(connects.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_kept_pool_whose_wait_was_cancelled_holds_up_the_next_until_its_wait_timeout() {
    let release = Arc::new(Notify::new());
    let mut pool = one_connection(&release);
    let handle = pool.handle();
    let busy = occupy(&mut pool).await;
    // First in line, then cancelled: its `ready()` is dropped, its pool kept, never polled.
    let mut kept = pool.clone();
    {
        let mut ready = tokio_test::task::spawn(kept.ready());
        assert!(ready.poll().is_pending());
    }
    let next = waiter(pool.clone(), 2);
    until(&handle, "two waiting", |s| s.waiting == 2).await;
    let started = tokio::time::Instant::now();
    release.notify_one();
    assert_eq!(busy.await.unwrap(), 0);
    // The connection came free and woke the kept pool, which never looks: the next request
    // finds it on its last look, at its `wait_timeout`, late but served.
    assert_eq!(next.await.unwrap().unwrap(), 2);
    assert_eq!(started.elapsed(), WAIT_TIMEOUT);
    assert_eq!(handle.stats().waiting, 0, "{:?}", handle.stats());
    drop(kept);
}

/// A connection that is never ready and wakes its waker at once on every poll, as a tokio
/// resource out of coop budget does.
struct AlwaysYields;

impl Service<u32> for AlwaysYields {
    type Response = u32;
    type Error = Infallible;
    type Future = std::future::Ready<Result<u32, Infallible>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }

    fn call(&mut self, _: u32) -> Self::Future {
        unreachable!("never ready")
    }
}

#[test]
fn a_connection_that_wakes_at_once_does_not_make_poll_ready_spin() {
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let connector = service_fn(|()| std::future::ready(Ok::<_, Infallible>(AlwaysYields)));
            let pool = PoolLayer::builder(())
                .max_size(1)
                .build()
                .unwrap()
                .layer(connector);
            let handle = pool.handle();
            let mut ready = tokio_test::task::spawn(pool.ready_oneshot());
            assert!(ready.poll().is_pending()); // starts the connect
            while handle.stats().live == 0 {
                tokio::task::yield_now().await;
            }
            // The connection wakes the pool's waker on every poll: poll_ready looks again a
            // few times, then yields to the runtime (woken, so it is polled again).
            assert!(ready.poll().is_pending());
            assert!(ready.is_woken());
            done.send(handle.stats()).unwrap();
        });
    });
    let stats = finished
        .recv_timeout(Duration::from_secs(20))
        .expect("poll_ready never returned");
    assert_eq!((stats.live, stats.waiting), (1, 1), "{stats:?}");
}
