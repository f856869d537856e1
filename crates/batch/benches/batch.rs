//! sluice-batch side by side with tower-batch 0.4. Run with `cargo bench -p sluice-batch`.
//!
//! - `one_task/batch_N`: 1,000,000 items from one task, batches of N, every response
//!   awaited (a window of 10,000 responses outstanding, the oldest awaited first).
//! - `four_tasks/batch_10`: the same from 4 producer tasks on a 2-worker runtime.
//! - `enqueue/fire_and_forget`: `ready` + `call`, the response dropped: time per item.
//! - `idle_latency`: one item at a time at an idle batcher, each response awaited before the
//!   next item: time from `call` to the inner service seeing the item. sluice hands it over
//!   in a batch ([`Dispatch::Eager`] or [`Dispatch::Window`]); tower-batch hands each item to
//!   its inner service at once (`item`), and closes the batch with a `Flush` at `max_wait`
//!   (`flush`, when the item's response resolves).
//!
//! - `many_waiters/1000_tasks`: 1,000 tasks each send one item and await its response, all
//!   in one batch of 1,000: every response future of the batch waits at once.
//!
//! `sluice` rows use the default [`Dispatch::Window`]; `sluice-eager` rows
//! [`Dispatch::Eager`]. The inner services do no work: what is measured is the batching
//! machinery.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::sync::Arc;

use sluice_batch::{Batch, BatchLayer, Batcher, Dispatch};
use tokio::sync::Notify;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_batch::BatchControl;

const ITEMS: u64 = 1_000_000;
const WINDOW: usize = 10_000;
const MAX_WAIT: Duration = Duration::from_millis(50);

/// A batcher whose queue holds what `producers` keep outstanding. (tower-batch 0.4 bounds
/// its queue by the batch size: a semaphore of `max_size` permits, each held by an item from
/// `poll_ready` until its worker takes it from the channel and hands it to the inner service.)
fn sluice(max_items: usize, producers: usize) -> Batcher<u64> {
    sluice_with(max_items, producers, Dispatch::Window)
}

fn sluice_with(max_items: usize, producers: usize, dispatch: Dispatch) -> Batcher<u64> {
    BatchLayer::builder()
        .max_items(max_items)
        .max_wait(MAX_WAIT)
        .capacity(WINDOW * 2 * producers)
        .dispatch(dispatch)
        .build()
        .unwrap()
        .spawn(service_fn(|batch: Batch<u64>| {
            black_box(batch.len());
            ready(Ok::<_, Infallible>(()))
        }))
}

/// tower-batch's inner service sees every item, then a flush.
#[derive(Clone, Default)]
struct Collect(Vec<u64>);

impl Service<BatchControl<u64>> for Collect {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BatchControl<u64>) -> Self::Future {
        match request {
            BatchControl::Item(item) => self.0.push(item),
            BatchControl::Flush => {
                black_box(self.0.len());
                self.0.clear();
            }
        }
        ready(Ok(()))
    }
}

fn tower_batch(max_items: usize) -> tower_batch::Batch<Collect, u64> {
    tower_batch::Batch::new(Collect::default(), max_items, MAX_WAIT)
}

/// Sends `n` items, keeping at most `WINDOW` responses outstanding.
async fn drive<S>(mut service: S, first: u64, n: u64)
where
    S: Service<u64, Error = BoxError>,
{
    let mut outstanding = VecDeque::with_capacity(WINDOW.min(n as usize));
    for i in first..first + n {
        service.ready().await.unwrap();
        outstanding.push_back(service.call(i));
        if outstanding.len() >= WINDOW {
            outstanding.pop_front().unwrap().await.unwrap();
        }
    }
    while let Some(response) = outstanding.pop_front() {
        response.await.unwrap();
    }
}

fn one_task(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_task");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for max_items in [10, 1_000] {
        group.bench_function(
            BenchmarkId::new("sluice", format!("batch_{max_items}")),
            |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            drive(sluice(max_items, 1), 0, ITEMS).await;
                        }
                        start.elapsed()
                    })
                });
            },
        );
        if max_items == 10 {
            group.bench_function(BenchmarkId::new("sluice-eager", "batch_10"), |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            drive(sluice_with(10, 1, Dispatch::Eager), 0, ITEMS).await;
                        }
                        start.elapsed()
                    })
                });
            });
        }
        group.bench_function(
            BenchmarkId::new("tower-batch", format!("batch_{max_items}")),
            |b| {
                b.iter_custom(|iters| {
                    runtime.block_on(async {
                        let start = Instant::now();
                        for _ in 0..iters {
                            drive(tower_batch(max_items), 0, ITEMS).await;
                        }
                        start.elapsed()
                    })
                });
            },
        );
    }
    group.finish();
}

const PRODUCERS: u64 = 4;

/// Sends `items` items from `tasks` tasks, `items / tasks` each.
async fn drive_concurrently<S>(service: S, tasks: u64, items: u64)
where
    S: Service<u64, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send,
{
    let tasks: Vec<_> = (0..tasks)
        .map(|p| {
            let service = service.clone();
            let per = items / tasks;
            tokio::spawn(drive(service, p * per, per))
        })
        .collect();
    drop(service);
    for task in tasks {
        task.await.unwrap();
    }
}

fn four_tasks(c: &mut Criterion) {
    let mut group = c.benchmark_group("four_tasks");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ITEMS));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    group.bench_function(BenchmarkId::new("sluice", "batch_10"), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    drive_concurrently(sluice(10, PRODUCERS as usize), PRODUCERS, ITEMS).await;
                }
                start.elapsed()
            })
        });
    });
    group.bench_function(BenchmarkId::new("sluice-eager", "batch_10"), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    drive_concurrently(
                        sluice_with(10, PRODUCERS as usize, Dispatch::Eager),
                        PRODUCERS,
                        ITEMS,
                    )
                    .await;
                }
                start.elapsed()
            })
        });
    });
    group.bench_function(BenchmarkId::new("tower-batch", "batch_10"), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    drive_concurrently(tower_batch(10), PRODUCERS, ITEMS).await;
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

fn enqueue(c: &mut Criterion) {
    let mut group = c.benchmark_group("enqueue");
    group.throughput(Throughput::Elements(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    group.bench_function("sluice/fire_and_forget", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut service = sluice(10, 1);
                let handle = service.handle();
                let start = Instant::now();
                for i in 0..iters {
                    service.ready().await.unwrap();
                    drop(service.call(i));
                }
                let elapsed = start.elapsed();
                drop(service);
                handle.finished().await;
                elapsed
            })
        });
    });
    group.bench_function("tower-batch/fire_and_forget", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut service = tower_batch(10);
                let start = Instant::now();
                for i in 0..iters {
                    service.ready().await.unwrap();
                    drop(service.call(i));
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

/// tower-batch's inner service for `idle_latency`: signals each item and each flush.
#[derive(Clone)]
struct Signal {
    item: Arc<Notify>,
    flush: Arc<Notify>,
}

impl Service<BatchControl<u64>> for Signal {
    type Response = ();
    type Error = Infallible;
    type Future = Ready<Result<(), Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: BatchControl<u64>) -> Self::Future {
        match request {
            BatchControl::Item(item) => {
                black_box(item);
                self.item.notify_one();
            }
            BatchControl::Flush => self.flush.notify_one(),
        }
        ready(Ok(()))
    }
}

/// Sends `iters` items one at a time, each response awaited; returns the summed time from
/// `call` to `seen` being signalled.
async fn one_at_a_time<S>(mut service: S, seen: &Notify, iters: u64) -> Duration
where
    S: Service<u64, Error = BoxError>,
{
    let mut total = Duration::ZERO;
    for i in 0..iters {
        service.ready().await.unwrap();
        let start = Instant::now();
        let response = service.call(i);
        seen.notified().await;
        total += start.elapsed();
        response.await.unwrap();
    }
    total
}

fn idle_latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("idle_latency");
    group.sample_size(10);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for (name, dispatch) in [
        ("sluice-eager", Dispatch::Eager),
        ("sluice-window", Dispatch::Window),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let seen = Arc::new(Notify::new());
                    let signal = Arc::clone(&seen);
                    let service = BatchLayer::builder()
                        .max_wait(MAX_WAIT)
                        .dispatch(dispatch)
                        .build()
                        .unwrap()
                        .spawn(service_fn(move |batch: Batch<u64>| {
                            black_box(batch.len());
                            signal.notify_one();
                            ready(Ok::<_, Infallible>(()))
                        }));
                    one_at_a_time(service, &seen, iters).await
                })
            });
        });
    }
    for which in ["item", "flush"] {
        group.bench_function(format!("tower-batch/{which}"), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let signal = Signal {
                        item: Arc::new(Notify::new()),
                        flush: Arc::new(Notify::new()),
                    };
                    let seen = Arc::clone(if which == "item" {
                        &signal.item
                    } else {
                        &signal.flush
                    });
                    let service = tower_batch::Batch::new(signal, 10, MAX_WAIT);
                    one_at_a_time(service, &seen, iters).await
                })
            });
        });
    }
    group.finish();
}

const TASKS: u64 = 1_000;

fn many_waiters(c: &mut Criterion) {
    let mut group = c.benchmark_group("many_waiters");
    group.sample_size(20);
    group.throughput(Throughput::Elements(TASKS));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    group.bench_function(BenchmarkId::new("sluice", "1000_tasks"), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    drive_concurrently(sluice(TASKS as usize, 1), TASKS, TASKS).await;
                }
                start.elapsed()
            })
        });
    });
    group.bench_function(BenchmarkId::new("tower-batch", "1000_tasks"), |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    drive_concurrently(tower_batch(TASKS as usize), TASKS, TASKS).await;
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = one_task, four_tasks, enqueue, idle_latency, many_waiters
}
criterion_main!(benches);
