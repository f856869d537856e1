//! Wall time of one invocation of the `sluice-hook` binary, process start to exit, as Claude
//! Code runs it. Run with `cargo bench -p sluice-hook` (the binary is the bench profile's,
//! i.e. optimized).
//!
//! - `warm/dashboard_up` and `warm/dashboard_down`: a relay is running.
//! - `cold`: no relay: the hook starts one, hands the event over, and the relay is stopped
//!   again before the next iteration.
//! - `concurrent`: events/s sustained by 8 hook processes at a time.
//! - `store_only`: no relay and none started: the hook writes the store itself.
//!
//! Criterion reports medians; the percentiles the targets name (p50, p99 over 500
//! invocations) are printed at the end, with the relay-level figures: a SIGSTOPped relay, the
//! latency from a hook's start to the dashboard seeing its event (idle, and at 2,000
//! events/s), the relay's ingest rate, and the replay of a 100,000-event backlog.

#![allow(missing_docs, clippy::print_stdout)] // criterion_group! items; a bench prints

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_dashboard::{Dashboard, Log};
use sluice_store::{NewEvent, Store};
use sluice_test_support::{feed, HookEnv};

const INPUT: &[u8] = br#"{"session_id":"3f1c2a9e","transcript_path":"/tmp/t.jsonl","cwd":"/tmp","permission_mode":"default","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"git status --short","description":"Show working tree status"}}"#;

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

/// One hook invocation; returns its wall time.
fn timed(env: &HookEnv) -> Duration {
    let start = Instant::now();
    let output = env.hook(INPUT);
    let elapsed = start.elapsed();
    assert!(output.status.success());
    elapsed
}

/// One run of `cat`, spawned as [`timed`] spawns the hook (the event on stdin, stdout and
/// stderr read); returns its wall time.
fn timed_floor() -> Duration {
    let start = Instant::now();
    assert!(feed(Command::new("cat"), INPUT).status.success());
    start.elapsed()
}

/// One hook invocation with the relay never started; returns its wall time.
fn timed_store_only(env: &HookEnv) -> Duration {
    let start = Instant::now();
    let output = env.hook_with(&[("SLUICE_NO_SPAWN", "1")], INPUT);
    assert!(output.status.success());
    start.elapsed()
}

fn relay_pid(env: &HookEnv) -> u32 {
    env.stats()["relay_pid"].as_u64().expect("a relay runs") as u32
}

fn signal(pid: u32, name: &str) {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
}

fn socket(env: &HookEnv) -> PathBuf {
    std::fs::read_dir(env.dir.join("run"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .expect("a relay socket")
}

/// One event frame, as a hook sends it.
fn frame(id: &str, n: usize) -> String {
    let payload = serde_json::json!({"event": "claude_event", "subtype": "user_prompt",
        "data": {"event_id": id, "prompt": format!("prompt {n}")}});
    format!("E {id} {payload}\n")
}

/// Connects, sends one frame and waits for its acknowledgement, as a hook does.
fn hand_over(socket: &PathBuf, frame: &str) {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream.write_all(frame.as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    assert_eq!(answer, "A\n");
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the dashboard has `n` events, polling; returns whether it did.
fn wait_for(log: &Log, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while log.len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    log.len() >= n
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
    let up = HookEnv::new(BIN, "up", dashboard.addr());
    let down_addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    });
    let down = HookEnv::new(BIN, "down", down_addr);
    timed(&up); // starts the relays
    timed(&down);

    let mut group = c.benchmark_group("warm");
    group.sample_size(200);
    group.bench_function("dashboard_up", |b| b.iter(|| timed(&up)));
    group.bench_function("dashboard_down", |b| b.iter(|| timed(&down)));
    group.finish();

    let cold = HookEnv::new(BIN, "cold", dashboard.addr());
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

    let store_only = HookEnv::new(BIN, "store-only", dashboard.addr());
    let mut group = c.benchmark_group("store_only");
    group.sample_size(50);
    group.bench_function("no_relay_no_spawn", |b| {
        b.iter(|| timed_store_only(&store_only));
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
    // The machine's own cost of a process, taken in turn with the hook's runs (this
    // machine's speed drifts by a third within minutes): what no hook can go below.
    let (floor, dashboard_up): (Vec<_>, Vec<_>) =
        (0..500).map(|_| (timed_floor(), timed(&up))).unzip();
    let (p50, p99) = percentiles(floor);
    println!("| floor: `cat` reads the event and exits (in turn with the next row) | {p50:.2?} | {p99:.2?} |");
    let (p50, p99) = percentiles(dashboard_up);
    println!("| relay running, dashboard up | {p50:.2?} | {p99:.2?} |");
    let (p50, p99) = percentiles((0..500).map(|_| timed(&down)).collect());
    println!("| relay running, dashboard down | {p50:.2?} | {p99:.2?} |");
    let (p50, p99) = percentiles(
        (0..30)
            .map(|_| {
                cold.stop_relay();
                timed(&cold)
            })
            .collect(),
    );
    println!("| no relay (cold start, 30 runs) | {p50:.2?} | {p99:.2?} |");
    let (p50, p99) = percentiles((0..300).map(|_| timed_store_only(&store_only)).collect());
    println!(
        "| no relay, none started: the hook writes the store (300 runs) | {p50:.2?} | {p99:.2?} |"
    );
    let stopped = HookEnv::new(BIN, "stopped", dashboard.addr());
    timed(&stopped);
    let pid = relay_pid(&stopped);
    signal(pid, "STOP");
    let (p50, p99) = percentiles((0..100).map(|_| timed(&stopped)).collect());
    signal(pid, "CONT");
    println!("| relay SIGSTOPped (100 runs) | {p50:.2?} | {p99:.2?} |");
    drop((up, down, cold, store_only, stopped));

    relay_figures(&runtime, &dashboard);
    runtime.block_on(dashboard.stop());
}

/// The relay-level figures, printed.
fn relay_figures(runtime: &tokio::runtime::Runtime, dashboard: &Dashboard) {
    let log = dashboard.received().clone();

    // Hook start to the dashboard seeing the event, one at a time (an idle relay).
    let env = HookEnv::new(BIN, "latency", dashboard.addr());
    timed(&env);
    let mut feed = log.subscribe();
    let samples: Vec<Duration> = (0..300)
        .map(|_| {
            let start = Instant::now();
            timed(&env);
            runtime.block_on(feed.recv()).unwrap();
            start.elapsed()
        })
        .collect();
    let (p50, p99) = percentiles(samples);
    println!("\nhook start to the dashboard seeing the event, idle relay (300): p50 {p50:.2?}, p99 {p99:.2?}");

    // Frames at 2,000 events/s for 5 s; latency from handing over to the dashboard.
    log.clear();
    let before = env.stats();
    let socket_path = socket(&env);
    let rate = 2_000;
    let total = rate * 5;
    // Arrival times are taken as events arrive, on the runtime, while this thread sends.
    let recorder = runtime.spawn(async move {
        let mut arrived: Vec<Option<Instant>> = vec![None; total];
        let mut seen = 0;
        while seen < total {
            match tokio::time::timeout(Duration::from_secs(10), feed.recv()).await {
                Ok(Ok(received)) => {
                    let n = received.data["data"]["event_id"]
                        .as_str()
                        .and_then(|id| id.strip_prefix("rate-"))
                        .and_then(|n| n.parse::<usize>().ok());
                    if let Some(slot) = n.and_then(|n| arrived.get_mut(n)) {
                        if slot.is_none() {
                            *slot = Some(Instant::now());
                            seen += 1;
                        }
                    }
                }
                Ok(Err(_)) => continue, // lagged: those arrivals go untimed
                Err(_) => break,
            }
        }
        arrived
    });
    let start = Instant::now();
    let sent_at: Vec<Instant> = (0..total)
        .map(|n| {
            let due = start + Duration::from_secs_f64(n as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let at = Instant::now();
            hand_over(&socket_path, &frame(&format!("rate-{n:06}"), n));
            at
        })
        .collect();
    let arrived = runtime.block_on(recorder).unwrap();
    let latencies: Vec<Duration> = arrived
        .iter()
        .zip(&sent_at)
        .filter_map(|(arrived, sent)| Some(arrived.as_ref()?.duration_since(*sent)))
        .collect();
    let stats = env.stats();
    let (p50, p99) = percentiles(latencies.clone());
    let grew = |key: &str| stats[key].as_f64().unwrap_or(0.0) - before[key].as_f64().unwrap_or(0.0);
    let mean_batch = grew("delivered") / grew("delivery_rounds").max(1.0);
    println!(
        "at {rate} events/s for 5 s: {} of {total} timed, p50 {p50:.2?}, p99 {p99:.2?}, \
         mean batch {mean_batch:.1} events (delivered / delivery rounds)",
        latencies.len()
    );

    // Ingest: 8 threads, each handing over frames as hooks do, a connection per event.
    let ingest = HookEnv::new(BIN, "ingest", "127.0.0.1:9".parse().unwrap());
    timed(&ingest);
    let path = socket(&ingest);
    const THREADS: usize = 8;
    const EACH: usize = 2_500;
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let path = &path;
            scope.spawn(move || {
                for n in 0..EACH {
                    hand_over(path, &frame(&format!("in-{thread}-{n}"), n));
                }
            });
        }
    });
    let elapsed = start.elapsed();
    println!(
        "relay ingest into the store, 8 concurrent senders, {} events: {:.0} events/s",
        THREADS * EACH,
        (THREADS * EACH) as f64 / elapsed.as_secs_f64()
    );
    drop(ingest);

    // Replay of a 100,000-event backlog: time to the dashboard, and the relay's peak RSS.
    log.clear();
    let replay = HookEnv::new(BIN, "replay", dashboard.addr());
    std::fs::create_dir_all(replay.dir.join("state")).unwrap();
    const BACKLOG: usize = 100_000;
    {
        let mut store = Store::open(
            &sluice_relay::config::relay_store(&replay.state_dir(), replay.url()),
            256 << 20,
            Duration::from_secs(1),
        )
        .unwrap();
        let frames: Vec<(String, String)> = (0..BACKLOG)
            .map(|n| {
                let id = format!("backlog-{n:06}");
                let payload = serde_json::json!({"event": "claude_event", "subtype": "user_prompt",
                    "data": {"event_id": id, "prompt": format!("prompt {n}")}});
                (id, payload.to_string())
            })
            .collect();
        let new: Vec<NewEvent<'_>> = frames
            .iter()
            .map(|(id, payload)| NewEvent {
                event_id: id,
                payload,
                oversized: false,
            })
            .collect();
        store.append(&new).unwrap();
    }
    let start = Instant::now();
    timed(&replay);
    let pid = relay_pid(&replay);
    let mut peak = 0;
    while log.len() < BACKLOG + 1 && start.elapsed() < Duration::from_secs(300) {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = wait_for(&log, BACKLOG + 1, Duration::from_secs(1));
    println!(
        "replay of a {BACKLOG}-event backlog: {} in {:.2?}, relay peak RSS {:.1} MiB",
        if all {
            "all delivered"
        } else {
            "NOT all delivered"
        },
        start.elapsed(),
        peak as f64 / 1024.0
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
