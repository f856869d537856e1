//! `sluice-hook demo`: a Claude Code session played through real `sluice-hook` processes
//! against an embedded dashboard that goes down for a few seconds in the middle.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_dashboard::Dashboard;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::Command;

const SESSIONS: [&str; 3] = [
    "3f1c2a9e-5b7d-4e21-9c4a-0d8e6f1b2a37",
    "8a2d4c61-0f3e-4b59-a7c2-61e9d0b3f4a8",
    "c5e7f9a1-2b4d-4c6e-8f0a-1b3c5d7e9f02",
];
const PROMPTS: [&str; 6] = [
    "Fix the failing test in src/lib.rs",
    "Add a --verbose flag to the CLI",
    "Why is the build slow? Profile it",
    "Refactor the parser into its own module",
    "Write docs for the public API",
    "Review the last commit for bugs",
];
const COMMANDS: [&str; 6] = [
    "cargo test",
    "git status --short",
    "cargo build --release",
    "rg TODO src/",
    "git diff HEAD~1",
    "ls -la",
];
const FILES: [&str; 5] = [
    "src/lib.rs",
    "src/main.rs",
    "src/parser.rs",
    "README.md",
    "Cargo.toml",
];

/// A realistic stream of hook inputs: prompts, tool calls in pairs, subagents,
/// notifications and stops, over a few sessions; every input tagged with `demo_seq`.
fn script(events: usize) -> Vec<Value> {
    let mut inputs = Vec::with_capacity(events);
    let mut rng = fastrand_like(42);
    let mut step = 0usize;
    while inputs.len() < events {
        let session = SESSIONS[step % SESSIONS.len()];
        let base = |name: &str| {
            json!({
                "session_id": session,
                "transcript_path": format!("/home/user/.claude/projects/demo/{session}.jsonl"),
                "cwd": "/home/user/demo",
                "permission_mode": "default",
                "hook_event_name": name,
            })
        };
        let mut prompt = base("UserPromptSubmit");
        prompt["prompt"] = json!(PROMPTS[rng() % PROMPTS.len()]);
        inputs.push(prompt);
        for _ in 0..(3 + rng() % 5) {
            let (tool, input, response) = match rng() % 6 {
                0 | 1 => {
                    let command = COMMANDS[rng() % COMMANDS.len()];
                    let failed = rng().is_multiple_of(5);
                    (
                        "Bash",
                        json!({"command": command, "description": format!("Run {command}")}),
                        json!({"stdout": "ok\n", "stderr": if failed { "error: failed\n" } else { "" },
                               "interrupted": false, "isImage": false}),
                    )
                }
                2 => (
                    "Read",
                    json!({"file_path": FILES[rng() % FILES.len()]}),
                    json!({"content": "fn main() {}\n"}),
                ),
                3 => (
                    "Edit",
                    json!({"file_path": FILES[rng() % FILES.len()],
                                      "old_string": "a", "new_string": "b"}),
                    json!({"success": true}),
                ),
                4 => (
                    "Grep",
                    json!({"pattern": "TODO", "path": "src"}),
                    json!({"content": "3 matches"}),
                ),
                _ => (
                    "Task",
                    json!({"subagent_type": "research", "description": "Survey the code",
                                      "prompt": "List the modules under src/"}),
                    json!({"content": "done"}),
                ),
            };
            let mut pre = base("PreToolUse");
            pre["tool_name"] = json!(tool);
            pre["tool_input"] = input.clone();
            inputs.push(pre);
            if tool == "Task" {
                let mut stop = base("SubagentStop");
                stop["stop_hook_active"] = json!(false);
                inputs.push(stop);
            }
            let mut post = base("PostToolUse");
            post["tool_name"] = json!(tool);
            post["tool_input"] = input;
            post["tool_response"] = response;
            inputs.push(post);
        }
        if rng().is_multiple_of(3) {
            let mut note = base("Notification");
            note["message"] = json!("Claude needs your permission to use Bash");
            inputs.push(note);
        }
        let mut stop = base("Stop");
        stop["stop_hook_active"] = json!(false);
        inputs.push(stop);
        step += 1;
    }
    inputs.truncate(events);
    for (seq, input) in inputs.iter_mut().enumerate() {
        input["demo_seq"] = json!(seq);
    }
    inputs
}

/// A small deterministic generator (xorshift), so every demo plays the same session.
fn fastrand_like(seed: u64) -> impl FnMut() -> usize {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 33) as usize
    }
}

/// How many dashboard events an input makes: a Task's PreToolUse also starts a subagent.
fn expected_events(input: &Value) -> usize {
    if input["hook_event_name"] == "PreToolUse" && input["tool_name"] == "Task" {
        2
    } else {
        1
    }
}

async fn relay_stats(socket: &Path) -> Option<Value> {
    let stream = tokio::time::timeout(Duration::from_millis(500), UnixStream::connect(socket))
        .await
        .ok()?
        .ok()?;
    let (read, mut write) = stream.into_split();
    write.write_all(b"S\n").await.ok()?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(1),
        BufReader::new(read).read_line(&mut line),
    )
    .await
    .ok()?
    .ok()?;
    serde_json::from_str(&line).ok()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

pub(crate) fn run(events: usize, outage: Duration) -> i32 {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return 1;
    };
    runtime.block_on(play(events, outage))
}

async fn play(events: usize, outage: Duration) -> i32 {
    let Some(hook) = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("sluice-hook"))
        .filter(|path| path.exists())
    else {
        eprintln!("demo: the sluice-hook binary is not next to sluice-relay; build the package");
        return 2;
    };
    let dir: PathBuf = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let runtime_dir = dir.join("run");
    let state_dir = dir.join("state");
    let mut dashboard = match Dashboard::start("127.0.0.1:0".parse().expect("an address")).await {
        Ok(dashboard) => dashboard,
        Err(error) => {
            eprintln!("demo: cannot start the dashboard: {error}");
            return 2;
        }
    };
    let addr = dashboard.addr();
    let log = dashboard.received().clone();
    let inputs = script(events);
    let expected: usize = inputs.iter().map(expected_events).sum();
    println!(
        "sluice demo: {} hook invocations ({expected} dashboard events) of 3 Claude Code sessions",
        inputs.len()
    );
    println!(
        "  dashboard: embedded Socket.IO server at {}",
        dashboard.url()
    );
    println!("  hook:      {} (a real process per event)", hook.display());
    println!("  the dashboard goes down for {outage:?} at 30 % of the run\n");

    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let socket = runtime_dir.join("relay.sock");

    // Watch the relay: breaker transitions with their times, and the deepest spool.
    let watcher = {
        let socket = socket.clone();
        tokio::spawn(async move {
            let mut transitions = Vec::new();
            let mut last_state = String::from("closed");
            let mut deepest = 0u64;
            loop {
                if let Some(stats) = relay_stats(&socket).await {
                    let state = stats["circuit_state"].as_str().unwrap_or("?").to_string();
                    if state != last_state {
                        transitions.push((started.elapsed(), last_state.clone(), state.clone()));
                        last_state = state;
                    }
                    deepest = deepest.max(stats["spool_depth"].as_u64().unwrap_or(0));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = tokio::signal::ctrl_c() => break,
                }
                if STOP_WATCHER.load(Ordering::Relaxed) {
                    break;
                }
            }
            (transitions, deepest)
        })
    };

    // Play the session, one real hook process at a time, paced like a busy session.
    let player = {
        let sent = Arc::clone(&sent);
        let hook = hook.clone();
        let (runtime_dir, state_dir) = (runtime_dir.clone(), state_dir.clone());
        let url = format!("http://{addr}");
        tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(inputs.len());
            let mut failures = 0;
            for input in &inputs {
                let begin = Instant::now();
                let child = Command::new(&hook)
                    .env("SLUICE_RUNTIME_DIR", &runtime_dir)
                    .env("SLUICE_STATE_DIR", &state_dir)
                    .env("SLUICE_URL", &url)
                    .env("SLUICE_IDLE_SECS", "120")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn();
                let ok = match child {
                    Ok(mut child) => {
                        if let Some(mut stdin) = child.stdin.take() {
                            let _ = stdin.write_all(input.to_string().as_bytes()).await;
                        }
                        child.wait().await.is_ok_and(|status| status.success())
                    }
                    Err(_) => false,
                };
                latencies.push(begin.elapsed());
                if !ok {
                    failures += 1;
                }
                let n = sent.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_multiple_of(250) {
                    println!(
                        "  {:>6.2} s  {n} hooks run",
                        started.elapsed().as_secs_f64()
                    );
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (latencies, failures)
        })
    };

    // The outage: at 30 % of the hooks, down for `outage`, back on the same port.
    let outage_at = events * 3 / 10;
    while sent.load(Ordering::Relaxed) < outage_at && !player.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let down_at = started.elapsed();
    dashboard.stop().await;
    println!("  {:>6.2} s  dashboard DOWN", down_at.as_secs_f64());
    tokio::time::sleep(outage).await;
    dashboard = match Dashboard::start_with_log(addr, log.clone()).await {
        Ok(dashboard) => dashboard,
        Err(error) => {
            eprintln!("demo: cannot restart the dashboard: {error}");
            return 2;
        }
    };
    let up_at = started.elapsed();
    println!("  {:>6.2} s  dashboard UP again", up_at.as_secs_f64());

    let Ok((mut latencies, hook_failures)) = player.await else {
        return 2;
    };
    let played = started.elapsed();
    // Wait for the relay to drain the spool to the dashboard.
    let received = log.wait_for(expected, Duration::from_secs(90)).await;
    let drained = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = relay_stats(&socket).await.unwrap_or(Value::Null);
    STOP_WATCHER.store(true, Ordering::Relaxed);
    let (transitions, deepest) = watcher.await.unwrap_or_default();

    // What arrived, without duplicates (delivery is at least once).
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    for event in log.events() {
        let key = (
            event.data["data"]["demo_seq"].as_u64(),
            event.data["subtype"].as_str().map(str::to_string),
        );
        if !seen.insert(key) {
            duplicates += 1;
        }
    }
    let lost = expected.saturating_sub(seen.len());
    latencies.sort_unstable();
    let identity = stats["submitted"]
        .as_u64()
        .zip(stats["sent"].as_u64())
        .is_some_and(|(s, t)| {
            s == t
                + stats["failed"].as_u64().unwrap_or(0)
                + stats["dropped"].as_u64().unwrap_or(0)
                + stats["queued"].as_u64().unwrap_or(0)
        });

    println!("\n== report ==");
    let rows: BTreeMap<&str, String> = BTreeMap::from([
        (
            "01 hook invocations",
            format!("{} ({} failed)", latencies.len(), hook_failures),
        ),
        ("02 dashboard events expected", expected.to_string()),
        (
            "03 received by the dashboard",
            format!(
                "{} distinct ({received} in all, {duplicates} duplicates)",
                seen.len()
            ),
        ),
        ("04 lost", lost.to_string()),
        ("05 written by the relay (sent)", stats["sent"].to_string()),
        (
            "06 spooled while down (deepest)",
            format!("{deepest} events"),
        ),
        (
            "07 delivered from the backlog after the outage",
            stats["replayed"].to_string(),
        ),
        (
            "08 emits refused by the open breaker (kept in the spool, retried)",
            stats["dropped_breaker_open"].to_string(),
        ),
        (
            "09 emits failed on the way (kept in the spool, retried)",
            stats["failed"].to_string(),
        ),
        (
            "10 dropped by a full spool",
            stats["spool_dropped"].to_string(),
        ),
        (
            "11 hook latency p50 / p90 / p99 / max",
            format!(
                "{:.2?} / {:.2?} / {:.2?} / {:.2?}",
                percentile(&latencies, 0.5),
                percentile(&latencies, 0.9),
                percentile(&latencies, 0.99),
                latencies.last().copied().unwrap_or_default()
            ),
        ),
        (
            "12 connects / reconnects",
            format!("{} / {}", stats["connects"], stats["reconnects"]),
        ),
        (
            "13 accounting identity submitted = sent + failed + dropped + queued",
            if identity {
                "held".to_string()
            } else {
                format!("BROKEN: {stats}")
            },
        ),
        (
            "14 timeline",
            format!(
                "played in {:.2} s, dashboard down {:.2}..{:.2} s, all delivered at {:.2} s",
                played.as_secs_f64(),
                down_at.as_secs_f64(),
                up_at.as_secs_f64(),
                drained.as_secs_f64()
            ),
        ),
    ]);
    for (label, value) in &rows {
        println!("  {:<72} {value}", &label[3..]);
    }
    println!("  breaker transitions:");
    for (at, from, to) in &transitions {
        println!("    {:>6.2} s  {from} -> {to}", at.as_secs_f64());
    }
    // Stop the relay and clean up.
    if let Ok(stream) = UnixStream::connect(&socket).await {
        let (_, mut write) = stream.into_split();
        let _ = write.write_all(b"Q\n").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    dashboard.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    if lost > 0 || hook_failures > 0 || !identity {
        println!("\nFAIL: {lost} events lost, {hook_failures} hooks failed");
        1
    } else {
        println!("\nOK: nothing lost");
        0
    }
}

/// Tells the stats watcher to hand in its findings.
static STOP_WATCHER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
