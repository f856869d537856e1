//! Confirmed events per second into a JetStream stream on one local nats-server (file
//! storage), through the sink and through two ways of using `async-nats` by hand, in the
//! same run. Run with `cargo bench -p sluice-nats-sink`.
//!
//! Each iteration publishes `EVENTS` events of about 800 bytes, each with its own
//! `Nats-Msg-Id` (never a repeat: the server would skip storing it), and ends when every one
//! is acknowledged by the stream.
//! - `sluice`: [`NatsSink::publish`] of every event, then every outcome awaited; the sink
//!   with its defaults (batches of 64, 4 on their way).
//! - `ack_each`: publish, await its ack, next: what Vector's NATS sink does at its default
//!   concurrency of 1. Goal: sluice ≥ 5x its rate.
//! - `raw_pipelined`: raw `async-nats` in groups of 64: publish the group, then await its
//!   acks together. Goal: sluice ≥ 80 % of its rate.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::future::IntoFuture;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
use sluice_nats_sink::{setup, Message, NatsSink, StreamSettings};
use sluice_test_support::NatsServer;

const EVENTS: usize = 2_000;
const GROUP: usize = 64;

/// A new id for every event of the run, across contenders and iterations.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn payload() -> String {
    let pad = "x".repeat(720);
    format!(
        r#"{{"subtype":"pre_tool","data":{{"tool_name":"Bash","session_id":"3f1c2a9e","pad":"{pad}"}}}}"#
    )
}

fn next_id() -> String {
    format!("bench-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn confirmed(c: &mut Criterion) {
    let server = NatsServer::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let payload = payload();
    let (sink, js) = runtime.block_on(async {
        let sink = NatsSink::builder(server.url())
            .host("bench")
            .build()
            .await
            .unwrap();
        let mut settings = StreamSettings::default();
        settings.max_bytes = 256 << 20; // reserved on disk by the server; old ones go
        setup(sink.client(), &settings).await.unwrap();
        let client = async_nats::connect(server.url()).await.unwrap();
        (sink, jetstream::new(client))
    });
    let subject = "sluice.hooks.bench.3f1c2a9e.pre_tool";

    let mut group = c.benchmark_group("confirmed");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));

    group.bench_function("sluice", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let outcomes: Vec<_> = (0..EVENTS)
                        .map(|_| {
                            let message =
                                Message::new(next_id(), "3f1c2a9e", "pre_tool", payload.clone());
                            sink.publish(message)
                        })
                        .collect();
                    for outcome in join_all(outcomes).await {
                        assert!(!outcome.unwrap().duplicate);
                    }
                }
                start.elapsed()
            })
        });
    });

    group.bench_function("ack_each", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    for _ in 0..EVENTS {
                        let publish = PublishMessage::build()
                            .message_id(next_id())
                            .payload(payload.clone().into());
                        let ack = js.send_publish(subject, publish).await.unwrap();
                        assert!(!ack.await.unwrap().duplicate);
                    }
                }
                start.elapsed()
            })
        });
    });

    group.bench_function("raw_pipelined", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    for first in (0..EVENTS).step_by(GROUP) {
                        let size = GROUP.min(EVENTS - first);
                        let mut acks = Vec::with_capacity(size);
                        for _ in 0..size {
                            let publish = PublishMessage::build()
                                .message_id(next_id())
                                .payload(payload.clone().into());
                            acks.push(
                                js.send_publish(subject, publish)
                                    .await
                                    .unwrap()
                                    .into_future(),
                            );
                        }
                        for ack in join_all(acks).await {
                            assert!(!ack.unwrap().duplicate);
                        }
                    }
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    runtime.block_on(async {
        sink.shutdown(Some(Duration::from_secs(5))).await.unwrap();
    });
}

criterion_group!(benches, confirmed);
criterion_main!(benches);
