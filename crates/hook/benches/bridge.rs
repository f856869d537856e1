//! The whole pipeline through NATS: hook -> relay -> JetStream (one local `nats-server`,
//! file storage) -> `sluice-hook bridge` -> the embedded dashboard. Run with
//! `cargo bench -p sluice-hook --bench bridge` (the binaries are the bench profile's); it
//! prints:
//!
//! - the latency from a hook's start to the dashboard seeing its event, one at a time (an
//!   idle pipeline), p50 and p99 over 300;
//! - the pipeline's throughput: 4 hook processes at a time, 4,000 events, from the first
//!   hook's start to the last event at the dashboard;
//! - the bridge's own throughput: 20,000 events waiting in the stream, from the bridge's
//!   start to the last at the dashboard (the previous bridge stopped cleanly, so that the new
//!   one has nothing to wait for).

#![allow(missing_docs, clippy::print_stdout)] // a bench prints

use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_dashboard::Dashboard;
use sluice_nats_sink::async_nats::{self, jetstream};
use sluice_test_support::{prompt, unused_addr, BridgeProcess, HookEnv, NatsServer};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99))
}

fn main() {
    // `cargo bench` passes `--bench`; a filter is not supported (one scenario).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = NatsServer::start();
    let url = server.url();
    let dashboard = runtime
        .block_on(Dashboard::start("127.0.0.1:0".parse().unwrap()))
        .unwrap();
    let log = dashboard.received().clone();
    let env = Arc::new(HookEnv::new(BIN, "bridge-bench", unused_addr()));
    let vars = [("SLUICE_URL", url.as_str())];
    assert!(env.run(&["nats", "setup"], &vars, b"").status.success());
    let mut bridge = BridgeProcess::start(BIN, "bench", &url, &dashboard.url(), "bench");

    // Idle latency: hook start to the dashboard seeing the event.
    let mut feed = log.subscribe();
    let hook = |n: usize| {
        assert!(env.hook_with(&vars, &prompt(n)).status.success());
    };
    hook(0);
    runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), feed.recv()).await })
        .expect("the first event through within 30 s")
        .unwrap();
    let samples: Vec<Duration> = (1..=300)
        .map(|n| {
            let start = Instant::now();
            hook(n);
            runtime
                .block_on(async {
                    tokio::time::timeout(Duration::from_secs(10), feed.recv()).await
                })
                .expect("an event within 10 s")
                .unwrap();
            start.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(samples);
    println!("\nhook start to the dashboard through NATS and a bridge, idle (300): p50 {p50:.2?}, p99 {p99:.2?}");

    // The pipeline's throughput: 4 hook processes at a time.
    log.clear();
    let (lanes, each) = (4, 1_000);
    let start = Instant::now();
    let senders: Vec<_> = (0..lanes)
        .map(|lane| {
            let env = Arc::clone(&env);
            let url = url.clone();
            std::thread::spawn(move || {
                for k in 0..each {
                    let output =
                        env.hook_with(&[("SLUICE_URL", &url)], &prompt(10_000 + k * lanes + lane));
                    assert!(output.status.success());
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let handed = start.elapsed();
    let total = lanes * each;
    let arrived = runtime.block_on(log.wait_for(total, Duration::from_secs(120)));
    assert_eq!(arrived, total);
    let took = start.elapsed();
    println!(
        "pipeline, 4 hooks at a time, {total} events: {:.0} events/s at the dashboard (hooks done in {handed:.2?}, all arrived in {took:.2?})",
        total as f64 / took.as_secs_f64()
    );

    // The bridge's own throughput: a backlog in the stream.
    // Stopped cleanly, it leaves nothing unacked, and its last pull expires meanwhile: the
    // new bridge has nothing to wait for (one that finds either waits 4 s first; README,
    // "Bridges"), so the time below is the bridge's own.
    assert!(bridge
        .terminate(Duration::from_secs(6))
        .is_some_and(|s| s.success()));
    log.clear();
    let backlog = 20_000;
    runtime.block_on(publish(&url, backlog));
    std::thread::sleep(Duration::from_secs(1));
    bridge.start_again();
    let start = Instant::now();
    // Counted by identity: a pipeline event the killed bridge had not acked comes again.
    let mut want = backlog;
    loop {
        runtime.block_on(log.wait_for(want, Duration::from_secs(120)));
        let arrived = log.events().iter().filter(|e| from_backlog(e)).count();
        if arrived == backlog {
            break;
        }
        assert!(
            log.len() >= want,
            "the backlog within 120 s: {arrived} of {backlog}"
        );
        want += backlog - arrived;
    }
    let took = start.elapsed();
    println!(
        "bridge, a backlog of {backlog} events: {:.0} events/s from its start to the dashboard ({took:.2?})",
        backlog as f64 / took.as_secs_f64()
    );
    let _ = bridge.terminate(Duration::from_secs(5));
    env.stop_relay();
    runtime.block_on(dashboard.stop());
    drop(server);
}

/// An event of the backlog run (not a pipeline event that came again).
fn from_backlog(event: &sluice_dashboard::Received) -> bool {
    event
        .event_id()
        .is_some_and(|id| id.starts_with("backlog-"))
}

/// `n` events of about 400 bytes straight into the stream, pipelined.
async fn publish(url: &str, n: usize) {
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let mut acks = Vec::with_capacity(256);
    for k in 0..n {
        let id = format!("backlog-{k}");
        let payload = serde_json::json!({
            "source": "bench",
            "data": {
                "event_id": id, "session_id": "backlog", "hook_event_name": "PreToolUse",
                "cwd": "/tmp", "tool_name": "Bash",
                "tool_input": {"command": "git status --short", "description": "Show working tree status"},
                "prompt": format!("prompt {k}"),
            }
        });
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        acks.push(
            js.publish_with_headers(
                "sluice.hooks.bench.backlog.PreToolUse",
                headers,
                payload.to_string().into(),
            )
            .await
            .unwrap(),
        );
        if acks.len() == 256 {
            for ack in acks.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in acks {
        ack.await.unwrap();
    }
}
