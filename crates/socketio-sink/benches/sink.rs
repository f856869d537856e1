//! Events per second delivered to an in-process socketioxide server through the full stack,
//! against raw `rust_socketio` emits on one connection, in the same run. Run with
//! `cargo bench -p sluice-socketio-sink`.
//!
//! Each iteration sends `EVENTS` events and ends when the server has received all of them
//! and, for the sink, every outcome is in; the server's log is cleared before each, so that
//! no contender pays for the ones before.
//! - `per_event`: raw `emit` of each event (awaited in turn) vs the sink with `PerEvent`.
//! - `array_10`: raw `emit` of arrays of 10 (one argument each) vs the sink with `Array` and
//!   batches of 10 (`Dispatch::Window`, so that every array holds 10 as raw's do; all
//!   events are emitted at once, so every batch leaves full, at once); throughput counts
//!   items.
//!
//! The sink runs with its defaults: `Delivery::Acknowledged` (an outcome is Ok only once the
//! server acked it) and, per event, eager dispatch. `sluice_written` is the same sink with
//! `Delivery::Written`, what "sent" meant before acks, for the cost of confirmation. Raw
//! emits ask for no ack: raw is the ceiling of a client that confirms nothing.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rust_socketio::Payload;
use serde_json::{json, Value};
use sluice_dashboard::Dashboard;
use sluice_socketio_sink::{Delivery, Dispatch, Emit, Encoding, SocketIoSink};
use sluice_test_support::raw_client;

const EVENTS: usize = 20_000;

type BoxedSend<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

fn payload(seq: usize) -> Value {
    json!({
        "event": "claude_event", "type": "hook", "subtype": "pre_tool",
        "data": { "tool_name": "Bash", "seq": seq, "session_id": "3f1c2a9e" }
    })
}

/// Runs `iters` iterations: clear the server's log, send, wait until the server has
/// `received` events; returns the time taken.
fn measure<'a>(
    runtime: &tokio::runtime::Runtime,
    log: &sluice_dashboard::Log,
    iters: u64,
    received: usize,
    send: &dyn Fn() -> BoxedSend<'a>,
) -> Duration {
    runtime.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            log.clear();
            send().await;
            assert_eq!(
                log.wait_for(received, Duration::from_secs(60)).await,
                received
            );
        }
        start.elapsed()
    })
}

fn delivery(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dashboard = runtime
        .block_on(Dashboard::start("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let url = dashboard.url();
    let log = dashboard.received().clone();
    let raw = runtime.block_on(raw_client(url.as_str()));
    let sink = |encoding: Encoding, delivery: Delivery| {
        // Arrays of exactly 10, as raw sends: batches leave full (all events are emitted at
        // once, so none waits out a window). Per event, the default eager dispatch.
        let dispatch = match encoding {
            Encoding::Array => Dispatch::Window,
            _ => Dispatch::Eager,
        };
        runtime.block_on(async {
            SocketIoSink::builder(url.clone())
                .connector(|c| c.encoding(encoding))
                .delivery(delivery)
                .dispatch(dispatch)
                .queue_capacity(EVENTS)
                .build()
                .unwrap()
        })
    };
    let per_event = sink(Encoding::PerEvent, Delivery::Acknowledged);
    let array = sink(Encoding::Array, Delivery::Acknowledged);
    let per_event_written = sink(Encoding::PerEvent, Delivery::Written);
    let array_written = sink(Encoding::Array, Delivery::Written);

    let mut group = c.benchmark_group("delivery");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    let raw = &raw;
    let log = &log;
    let sinks = [
        ("per_event", [&per_event, &per_event_written], EVENTS),
        ("array_10", [&array, &array_written], EVENTS / 10),
    ];
    for (name, [sink, written], received) in sinks {
        group.bench_function(BenchmarkId::new("raw", name), |b| {
            b.iter_custom(|iters| {
                measure(&runtime, log, iters, received, &|| {
                    Box::pin(async move {
                        if received == EVENTS {
                            for seq in 0..EVENTS {
                                raw.emit("claude_event", Payload::from(payload(seq)))
                                    .await
                                    .unwrap();
                            }
                        } else {
                            for chunk in 0..EVENTS / 10 {
                                let items = (0..10).map(|i| payload(chunk * 10 + i)).collect();
                                raw.emit("claude_event", Payload::from(Value::Array(items)))
                                    .await
                                    .unwrap();
                            }
                        }
                    })
                })
            });
        });
        for (contender, sink) in [("sluice", sink), ("sluice_written", written)] {
            group.bench_function(BenchmarkId::new(contender, name), |b| {
                b.iter_custom(|iters| {
                    measure(&runtime, log, iters, received, &|| {
                        Box::pin(async move {
                            let outcomes: Vec<_> = (0..EVENTS)
                                .map(|seq| sink.emit(Emit::new("claude_event", payload(seq))))
                                .collect();
                            // Checked once the server has them all: awaiting each in turn
                            // would wake this thread once per batch, a cost of the
                            // benchmark's loop rather than of the sink.
                            log.wait_for(received, Duration::from_secs(60)).await;
                            for outcome in outcomes {
                                outcome.await.unwrap();
                            }
                        })
                    })
                });
            });
        }
    }
    group.finish();
    runtime.block_on(async {
        for sink in [&per_event, &array, &per_event_written, &array_written] {
            sink.shutdown(None).await.unwrap();
        }
        dashboard.stop().await;
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = delivery
}
criterion_main!(benches);
