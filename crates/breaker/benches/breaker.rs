//! sluice-breaker side by side with failsafe 1.3 and tower-resilience 0.13, over a bare
//! `service_fn`. Run with `cargo bench -p sluice-breaker`.
//!
//! - `closed`: one thread, every call Ok; the overhead is each breaker's time minus `bare`.
//! - `open`: one thread, every call rejected by an open breaker.
//! - `open_awaited`: the same rejection driven as a caller waiting for its answer drives it:
//!   one task on a current-thread runtime, a fresh `ready().await` then `call(..).await`
//!   each time (failsafe: the inner service's `ready().await`, then the breaker's `call`
//!   awaited).
//! - `contended`: 4 tasks on a 2-worker runtime sharing one breaker, every call Ok; the time
//!   is per call over all tasks (throughput = 1 / time).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::convert::Infallible;
use std::future::{ready, Future, Ready};
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use failsafe::futures::CircuitBreaker as _;
use tower::{service_fn, Layer, Service, ServiceExt};

type Bare = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, Infallible>>>;
type Failsafe = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
    (),
>;

fn bare() -> Bare {
    service_fn((|x| ready(Ok(x))) as fn(u64) -> Ready<Result<u64, Infallible>>)
}

type Failing = tower::util::ServiceFn<fn(u64) -> Ready<Result<u64, &'static str>>>;

fn failing() -> Failing {
    service_fn((|_| ready(Err("down"))) as fn(u64) -> Ready<Result<u64, &'static str>>)
}

fn failsafe() -> Failsafe {
    let backoff = failsafe::backoff::constant(Duration::from_secs(3_600));
    failsafe::Config::new()
        .failure_policy(failsafe::failure_policy::consecutive_failures(5, backoff))
        .build()
}

fn sluice() -> sluice_breaker::CircuitBreakerLayer {
    sluice_breaker::CircuitBreakerLayer::builder()
        .open_duration(Duration::from_secs(3_600))
        .build()
        .unwrap()
}

fn resilience() -> tower_resilience::circuitbreaker::CircuitBreakerLayer {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .consecutive_failures(5)
        .wait_duration_in_open(Duration::from_secs(3_600))
        .build()
        .unwrap()
}

/// Polls a future that is ready at once (every service here answers synchronously) in
/// place, as an executor does, without moving it.
#[inline(always)]
fn now<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("every future here is ready at once"),
    }
}

#[inline(always)]
fn call<S: Service<u64>>(service: &mut S, i: u64) -> Result<S::Response, S::Error> {
    let mut cx = Context::from_waker(Waker::noop());
    match service.poll_ready(&mut cx) {
        Poll::Ready(ready) => ready?,
        Poll::Pending => panic!("every service here is ready at once"),
    }
    now(service.call(i))
}

fn closed(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed");
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    let mut service = bare();
    group.bench_function("bare", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(call(&mut service, black_box(i)).unwrap())
        });
    });
    let mut service = sluice().layer(bare());
    group.bench_function("sluice", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(call(&mut service, black_box(i)).unwrap())
        });
    });
    let breaker = failsafe();
    let mut service = bare();
    group.bench_function("failsafe", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            let mut cx = Context::from_waker(Waker::noop());
            assert!(service.poll_ready(&mut cx).is_ready());
            black_box(now(breaker.call(service.call(black_box(i)))).unwrap())
        });
    });
    let mut service = resilience().layer(bare());
    group.bench_function("tower-resilience", |b| {
        let mut i = 0;
        b.iter(|| {
            i += 1;
            black_box(call(&mut service, black_box(i)).unwrap())
        });
    });
    group.finish();
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = runtime.enter();

    let mut service = sluice().layer(failing());
    for i in 0..5 {
        let _ = call(&mut service, i);
    }
    assert!(call(&mut service, 0)
        .unwrap_err()
        .is::<sluice_breaker::BreakerOpen>());
    group.bench_function("sluice", |b| {
        b.iter(|| black_box(call(&mut service, black_box(0)).is_err()));
    });

    let breaker = failsafe();
    let mut service = failing();
    for i in 0..5 {
        let _ = now(breaker.call(service.call(i)));
    }
    assert!(matches!(
        now(breaker.call(service.call(0))),
        Err(failsafe::Error::Rejected)
    ));
    group.bench_function("failsafe", |b| {
        b.iter(|| black_box(now(breaker.call(service.call(black_box(0)))).is_err()));
    });

    let mut service = resilience().layer(failing());
    for i in 0..5 {
        let _ = call(&mut service, i);
    }
    group.bench_function("tower-resilience", |b| {
        b.iter(|| black_box(call(&mut service, black_box(0)).is_err()));
    });
    group.finish();
}

/// Trips `service`'s breaker (5 failures) inside `runtime`, then times `iters` awaited
/// rejections, each after a fresh `ready().await`, in one task.
fn awaited_rejections<S>(runtime: &tokio::runtime::Runtime, service: &mut S, iters: u64) -> Duration
where
    S: Service<u64, Response = u64>,
{
    runtime.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            let Ok(ready) = service.ready().await else {
                panic!("the inner service is always ready");
            };
            black_box(ready.call(black_box(i)).await.is_err());
        }
        start.elapsed()
    })
}

fn open_awaited(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_awaited");
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut service = sluice().layer(failing());
    runtime.block_on(async {
        for i in 0..5 {
            let _ = service.ready().await.unwrap().call(i).await;
        }
        let error = service.ready().await.unwrap().call(0).await.unwrap_err();
        assert!(error.is::<sluice_breaker::BreakerOpen>());
    });
    group.bench_function("sluice", |b| {
        b.iter_custom(|iters| awaited_rejections(&runtime, &mut service, iters));
    });

    let breaker = failsafe();
    let mut service = failing();
    runtime.block_on(async {
        for i in 0..5 {
            let _ = breaker.call(service.ready().await.unwrap().call(i)).await;
        }
    });
    group.bench_function("failsafe", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for i in 0..iters {
                    let ready = service.ready().await.unwrap();
                    let result = breaker.call(ready.call(black_box(i))).await;
                    black_box(matches!(result, Err(failsafe::Error::Rejected)));
                }
                start.elapsed()
            })
        });
    });

    let mut service = resilience().layer(failing());
    runtime.block_on(async {
        for i in 0..5 {
            let _ = service.ready().await.unwrap().call(i).await;
        }
    });
    group.bench_function("tower-resilience", |b| {
        b.iter_custom(|iters| awaited_rejections(&runtime, &mut service, iters));
    });
    group.finish();
}

const TASKS: u64 = 4;

/// Runs `iters` calls split over 4 tasks on a 2-worker runtime, each task with its own
/// clone of `service`; returns the wall time.
fn contended<S>(runtime: &tokio::runtime::Runtime, service: &S, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
{
    let per_task = iters.div_ceil(TASKS);
    let clones: Vec<S> = (0..TASKS).map(|_| service.clone()).collect();
    runtime.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = clones
            .into_iter()
            .map(|mut service| {
                tokio::spawn(async move {
                    for i in 0..per_task {
                        service.ready().await.unwrap();
                        black_box(service.call(i).await.unwrap());
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

fn four_tasks(c: &mut Criterion) {
    let mut group = c.benchmark_group("contended");
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();

    let service = bare();
    group.bench_function(BenchmarkId::new("bare", "4 tasks"), |b| {
        b.iter_custom(|iters| contended(&runtime, &service, iters));
    });
    let service = sluice().layer(bare());
    group.bench_function(BenchmarkId::new("sluice", "4 tasks"), |b| {
        b.iter_custom(|iters| contended(&runtime, &service, iters));
    });
    // failsafe is not a tower layer: wrap each call by hand, sharing one breaker.
    let breaker = Arc::new(failsafe());
    let service = service_fn(move |i: u64| {
        let breaker = Arc::clone(&breaker);
        async move { breaker.call(ready(Ok::<_, Infallible>(i))).await }
    });
    group.bench_function(BenchmarkId::new("failsafe", "4 tasks"), |b| {
        b.iter_custom(|iters| contended(&runtime, &service, iters));
    });
    let service = resilience().layer(bare());
    group.bench_function(BenchmarkId::new("tower-resilience", "4 tasks"), |b| {
        b.iter_custom(|iters| contended(&runtime, &service, iters));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = closed, open, open_awaited, four_tasks
}
criterion_main!(benches);
