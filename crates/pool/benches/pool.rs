//! sluice-pool side by side with deadpool 0.13 and bb8 0.9. Run with
//! `cargo bench -p sluice-pool`.
//!
//! A trivial connection, at most 5: sluice's `ready` + `call` (+ awaiting the response)
//! against the peers' `get` + drop of the guard, all with default settings otherwise (deadpool
//! recycles on each get, bb8 tests on check-out). On one task, and with 8 tasks on a 2-worker
//! runtime (time per operation over all tasks).
//!
//! `held/8_tasks` (and `held/8_tasks_1_thread`, on a current-thread runtime): 8 tasks on a
//! 2-worker runtime share 5 connections, each holding its
//! connection across a `tokio::task::yield_now().await`, so that tasks wait for one another:
//! sluice's connection takes one request at a time, as a plain socket does (`poll_ready` is
//! `Pending` until its response, which yields once, is done; the response is not boxed, as
//! the peers allocate nothing per get), deadpool's and bb8's
//! guards are held across the yield, and a tokio `Semaphore` of 5 permits (acquire, yield,
//! release) is the floor: waiting and nothing else. `sluice_limit` is sluice with the same
//! connection made of tower's `ConcurrencyLimit` of 1 over a `service_fn`, whose own
//! semaphore costs about as much as the pool.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::task::AtomicWaker;
use sluice_pool::PoolLayer;
use tokio::sync::Semaphore;
use tower::limit::ConcurrencyLimit;
use tower::util::ServiceFn;
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

type Conn = ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn trivial_conn() -> Conn {
    service_fn((|x| ready(Ok(x))) as fn(u64) -> Ready<Result<u64, Infallible>>)
}

type Connector = ServiceFn<fn(()) -> Ready<Result<Conn, Infallible>>>;
type Sluice = sluice_pool::Pool<Connector, ()>;

fn sluice() -> Sluice {
    let connector: Connector =
        service_fn((|()| ready(Ok(trivial_conn()))) as fn(()) -> Ready<Result<Conn, Infallible>>);
    PoolLayer::builder(())
        .max_size(5)
        .build()
        .unwrap()
        .layer(connector)
}

struct DeadpoolManager;

impl deadpool::managed::Manager for DeadpoolManager {
    type Type = u64;
    type Error = Infallible;

    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

struct Bb8Manager;

impl bb8::ManageConnection for Bb8Manager {
    type Connection = u64;
    type Error = Infallible;

    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }

    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }

    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

/// One operation of each contender.
#[derive(Clone)]
enum Contender<S> {
    Sluice(S),
    Deadpool(deadpool::managed::Pool<DeadpoolManager>),
    Bb8(bb8::Pool<Bb8Manager>),
}

impl<S> Contender<S>
where
    S: Service<u64, Response = u64, Error = BoxError>,
{
    async fn op(&mut self, i: u64) {
        match self {
            Self::Sluice(pool) => {
                black_box(pool.ready().await.unwrap().call(i).await.unwrap());
            }
            Self::Deadpool(pool) => drop(black_box(pool.get().await.unwrap())),
            Self::Bb8(pool) => drop(black_box(pool.get().await.unwrap())),
        }
    }
}

/// deadpool's and bb8's pools of at most 5.
async fn peers() -> (
    deadpool::managed::Pool<DeadpoolManager>,
    bb8::Pool<Bb8Manager>,
) {
    let deadpool = deadpool::managed::Pool::builder(DeadpoolManager)
        .max_size(5)
        .build()
        .unwrap();
    let bb8 = bb8::Pool::builder()
        .max_size(5)
        .build(Bb8Manager)
        .await
        .unwrap();
    (deadpool, bb8)
}

async fn contenders() -> Vec<(&'static str, Contender<Sluice>)> {
    let (deadpool, bb8) = peers().await;
    vec![
        ("sluice", Contender::Sluice(sluice())),
        ("deadpool", Contender::Deadpool(deadpool)),
        ("bb8", Contender::Bb8(bb8)),
    ]
}

fn one_task(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_task");
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for (name, contender) in runtime.block_on(contenders()) {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut contender = contender.clone();
                runtime.block_on(async move {
                    contender.op(0).await; // warm: the connection exists
                    let start = Instant::now();
                    for i in 0..iters {
                        contender.op(i).await;
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

const TASKS: u64 = 8;

/// Runs `iters` operations split over 8 tasks on `runtime`, each task running `run` on its
/// own clone of `contender`; returns the wall time.
fn spread<T, F, Fut>(
    runtime: &tokio::runtime::Runtime,
    contender: &T,
    iters: u64,
    run: F,
) -> Duration
where
    T: Clone,
    F: Fn(T, u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let per_task = iters.div_ceil(TASKS);
    let tasks: Vec<Fut> = (0..TASKS)
        .map(|_| run(contender.clone(), per_task))
        .collect();
    runtime.block_on(async move {
        let start = Instant::now();
        let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
        for handle in handles {
            handle.await.unwrap();
        }
        start.elapsed()
    })
}

fn eight_tasks(c: &mut Criterion) {
    let mut group = c.benchmark_group("eight_tasks");
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let runtime = &runtime;
    for (name, contender) in runtime.block_on(contenders()) {
        group.bench_function(BenchmarkId::new(name, "8 tasks"), |b| {
            b.iter_custom(|iters| {
                spread(runtime, &contender, iters, |mut contender, n| async move {
                    for i in 0..n {
                        contender.op(i).await;
                    }
                })
            });
        });
    }
    group.finish();
}

/// A connection that carries one request at a time, as a plain socket does (hyper's HTTP/1
/// `SendRequest` is one): `poll_ready` is `Pending` while a response is out, and the
/// response frees it once answered (or dropped), waking whoever asked. The response is
/// `answer`'s future, which yields once, so the connection is held across the yield; it is
/// not boxed, as the peers' guards are not: an allocation per request would be the
/// connection's cost, not the pool's.
struct HeldConn<A> {
    state: Arc<HeldState>,
    answer: A,
}

#[derive(Default)]
struct HeldState {
    busy: AtomicBool,
    waker: AtomicWaker,
}

/// Frees the connection when the response is done with.
struct Free(Arc<HeldState>);

impl Drop for Free {
    fn drop(&mut self) {
        self.0.busy.store(false, Ordering::Release);
        self.0.waker.wake();
    }
}

impl<A, F> Service<u64> for HeldConn<A>
where
    A: Fn(u64, Free) -> F,
    F: Future<Output = Result<u64, Infallible>>,
{
    type Response = u64;
    type Error = Infallible;
    type Future = F;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.state.busy.load(Ordering::Acquire) {
            self.state.waker.register(cx.waker());
            if self.state.busy.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u64) -> F {
        self.state.busy.store(true, Ordering::Release);
        (self.answer)(request, Free(Arc::clone(&self.state)))
    }
}

/// The held connection's answer: yields once, then frees the connection.
async fn answer(request: u64, free: Free) -> Result<u64, Infallible> {
    tokio::task::yield_now().await;
    drop(free);
    Ok(request)
}

fn held_conn() -> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Send {
    HeldConn {
        state: Arc::default(),
        answer,
    }
}

/// The same one-at-a-time connection made with tower's `ConcurrencyLimit` of 1 over a
/// `service_fn`: its semaphore and reusable boxed acquire cost more than the pool does.
fn limit_conn() -> impl Service<u64, Response = u64, Error = Infallible, Future: Send> + Send {
    async fn answer(request: u64) -> Result<u64, Infallible> {
        tokio::task::yield_now().await;
        Ok(request)
    }
    ConcurrencyLimit::new(service_fn(answer), 1)
}

/// A pool of at most 5 connections made by `conn`.
fn held_pool<C>(conn: fn() -> C) -> impl HeldPool
where
    C: Service<u64, Response = u64, Error = Infallible, Future: Send> + Send + 'static,
{
    let connector = service_fn(move |()| ready(Ok::<_, Infallible>(conn())));
    PoolLayer::builder(())
        .max_size(5)
        .build()
        .unwrap()
        .layer(connector)
}

/// One operation of each contender, the connection held across a yield.
#[derive(Clone)]
enum Held<S, T> {
    Sluice(S),
    SluiceLimit(T),
    Deadpool(deadpool::managed::Pool<DeadpoolManager>),
    Bb8(bb8::Pool<Bb8Manager>),
    Semaphore(Arc<Semaphore>),
}

impl<S, T> Held<S, T>
where
    S: Service<u64, Response = u64, Error = BoxError>,
    T: Service<u64, Response = u64, Error = BoxError>,
{
    async fn op(&mut self, i: u64) {
        match self {
            Self::Sluice(pool) => {
                black_box(pool.ready().await.unwrap().call(i).await.unwrap());
            }
            Self::SluiceLimit(pool) => {
                black_box(pool.ready().await.unwrap().call(i).await.unwrap());
            }
            Self::Deadpool(pool) => {
                let conn = black_box(pool.get().await.unwrap());
                tokio::task::yield_now().await;
                drop(conn);
            }
            Self::Bb8(pool) => {
                let conn = black_box(pool.get().await.unwrap());
                tokio::task::yield_now().await;
                drop(conn);
            }
            Self::Semaphore(semaphore) => {
                let permit = black_box(semaphore.acquire().await.unwrap());
                tokio::task::yield_now().await;
                drop(permit);
            }
        }
    }
}

/// What the `held` bench needs of a pool.
trait HeldPool:
    Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static
{
}

impl<S> HeldPool for S where
    S: Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone + Send + 'static
{
}

async fn held_contenders() -> Vec<(&'static str, Held<impl HeldPool, impl HeldPool>)> {
    let (deadpool, bb8) = peers().await;
    vec![
        ("sluice", Held::Sluice(held_pool(held_conn))),
        ("sluice_limit", Held::SluiceLimit(held_pool(limit_conn))),
        ("deadpool", Held::Deadpool(deadpool)),
        ("bb8", Held::Bb8(bb8)),
        ("semaphore", Held::Semaphore(Arc::new(Semaphore::new(5)))),
    ]
}

fn held(c: &mut Criterion) {
    let mut group = c.benchmark_group("held");
    group.throughput(Throughput::Elements(1));
    let two_threads = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for (runtime, tasks) in [(&two_threads, "8_tasks"), (&one_thread, "8_tasks_1_thread")] {
        held_group(&mut group, runtime, tasks);
    }
    group.finish();
}

fn held_group(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    tasks: &str,
) {
    for (name, contender) in runtime.block_on(held_contenders()) {
        group.bench_function(BenchmarkId::new(name, tasks), |b| {
            b.iter_custom(|iters| {
                spread(runtime, &contender, iters, |mut contender, n| async move {
                    for i in 0..n {
                        contender.op(i).await;
                    }
                })
            });
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = one_task, eight_tasks, held
}
criterion_main!(benches);
