//! Wall time of one invocation of the `sluice-hook` binary, process start to exit, as Claude
//! Code runs it. Run with `cargo bench -p sluice-hook` (the binary is the bench profile's,
//! i.e. optimized).
//!
//! - `warm/dashboard_up` and `warm/dashboard_down`: a relay is running.
//! - `cold`: no relay: the hook starts one, hands the event over, and the relay is stopped
//!   again before the next iteration.
//! - `concurrent`: events/s sustained by 8 hook processes at a time.
//!
//! Criterion reports medians; the percentiles the targets name (p50, p99 over 500
//! invocations) are printed at the end.

#![allow(missing_docs, clippy::print_stdout)] // criterion_group! items; a bench prints

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_dashboard::Dashboard;

const INPUT: &[u8] = br#"{"session_id":"3f1c2a9e","transcript_path":"/tmp/t.jsonl","cwd":"/tmp","permission_mode":"default","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"git status --short","description":"Show working tree status"}}"#;

#[path = "../tests/support/env.rs"]
#[allow(dead_code)]
mod support;

use support::Env;

/// One hook invocation; returns its wall time.
fn timed(env: &Env) -> Duration {
    let start = Instant::now();
    let output = env.hook(INPUT);
    let elapsed = start.elapsed();
    assert!(output.status.success());
    elapsed
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dashboard = runtime
        .block_on(Dashboard::start("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let up = Env::new("up", dashboard.addr());
    let down_addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    });
    let down = Env::new("down", down_addr);
    timed(&up); // starts the relays
    timed(&down);

    let mut group = c.benchmark_group("warm");
    group.sample_size(200);
    group.bench_function("dashboard_up", |b| b.iter(|| timed(&up)));
    group.bench_function("dashboard_down", |b| b.iter(|| timed(&down)));
    group.finish();

    let cold = Env::new("cold", dashboard.addr());
    let mut group = c.benchmark_group("cold");
    group.sample_size(20);
    group.bench_function("no_relay", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                cold.stop_relay();
                total += timed(&cold);
            }
            total
        });
    });
    group.finish();

    let mut group = c.benchmark_group("concurrent");
    group.sample_size(10);
    const PROCESSES: usize = 8;
    const EACH: usize = 25;
    group.throughput(Throughput::Elements((PROCESSES * EACH) as u64));
    group.bench_function("8_processes", |b| {
        b.iter(|| {
            std::thread::scope(|scope| {
                for _ in 0..PROCESSES {
                    scope.spawn(|| {
                        for _ in 0..EACH {
                            timed(&up);
                        }
                    });
                }
            });
        });
    });
    group.finish();

    // The targets' percentiles, over 500 invocations each.
    println!("\nwall time per invocation over 500 invocations (process start to exit):");
    println!("| case | p50 | p99 |\n|---|---|---|");
    for (name, env) in [
        ("relay running, dashboard up", &up),
        ("relay running, dashboard down", &down),
    ] {
        let (p50, p99) = percentiles((0..500).map(|_| timed(env)).collect());
        println!("| {name} | {p50:.2?} | {p99:.2?} |");
    }
    let (p50, p99) = percentiles(
        (0..30)
            .map(|_| {
                cold.stop_relay();
                timed(&cold)
            })
            .collect(),
    );
    println!("| no relay (cold start, 30 runs) | {p50:.2?} | {p99:.2?} |");
    drop((up, down, cold));
    runtime.block_on(dashboard.stop());
}

criterion_group!(benches, bench);
criterion_main!(benches);
