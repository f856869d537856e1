//! sluice-pool side by side with deadpool 0.13 and bb8 0.9. Run with
//! `cargo bench -p sluice-pool`.
//!
//! A trivial connection, at most 5: sluice's `ready` + `call` (+ awaiting the response)
//! against the peers' `get` + drop of the guard, all with default settings otherwise (deadpool
//! recycles on each get, bb8 tests on check-out). On one task, and with 8 tasks on a 2-worker
//! runtime (time per operation over all tasks).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_pool::PoolLayer;
use tower::{service_fn, BoxError, Layer, Service, ServiceExt};

type Conn = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;

fn trivial_conn() -> Conn {
    service_fn((|x| ready(Ok(x))) as fn(u64) -> Ready<Result<u64, Infallible>>)
}

type Connector = tower::util::ServiceFn<fn(()) -> Ready<Result<Conn, Infallible>>>;
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

async fn contenders() -> Vec<(&'static str, Contender<Sluice>)> {
    let deadpool = deadpool::managed::Pool::builder(DeadpoolManager)
        .max_size(5)
        .build()
        .unwrap();
    let bb8 = bb8::Pool::builder()
        .max_size(5)
        .build(Bb8Manager)
        .await
        .unwrap();
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

fn eight_tasks(c: &mut Criterion) {
    let mut group = c.benchmark_group("eight_tasks");
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    for (name, contender) in runtime.block_on(contenders()) {
        group.bench_function(BenchmarkId::new(name, "8 tasks"), |b| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(TASKS);
                let tasks: Vec<_> = (0..TASKS).map(|_| contender.clone()).collect();
                runtime.block_on(async move {
                    let start = Instant::now();
                    let handles: Vec<_> = tasks
                        .into_iter()
                        .map(|mut contender| {
                            tokio::spawn(async move {
                                for i in 0..per_task {
                                    contender.op(i).await;
                                }
                            })
                        })
                        .collect();
                    for handle in handles {
                        handle.await.unwrap();
                    }
                    start.elapsed()
                })
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = one_task, eight_tasks
}
criterion_main!(benches);
