//! `sluice-hook demo`: a Claude Code session played through real `sluice-hook` processes
//! against an embedded dashboard that goes down in the middle; SIGINT or SIGTERM stop it at
//! once (its hooks, relay and dashboard, and its temporary directory go with it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_dashboard::{Dashboard, Log};
use sluice_hook::cli::DemoArgs;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Mutex;

use crate::report::{Arrival, Recording};
use crate::script::{expected_events, script};
use crate::teardown;

pub(crate) fn run(args: &DemoArgs) -> i32 {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return 1;
    };
    let dir: PathBuf = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
    let code = runtime.block_on(async {
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return 1;
        };
        let code = tokio::select! {
            code = play(args, &dir) => code,
            _ = interrupt.recv() => {
                println!("\ninterrupted (SIGINT): stopping the hooks, the relay and the dashboard");
                130
            }
            _ = terminate.recv() => {
                println!("\nterminated (SIGTERM): stopping the hooks, the relay and the dashboard");
                143
            }
        };
        // `play` is dropped by now: its hook (kill_on_drop) and its dashboard are gone.
        teardown::stop_relay(&dir.join("run")).await;
        code
    });
    let _ = std::fs::remove_dir_all(&dir);
    code
}

/// Waits until `n` distinct events arrived (duplicates do not count), or `timeout`.
async fn wait_distinct(log: &Log, n: usize, timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = HashSet::new();
    let mut read = 0;
    loop {
        let events = log.events();
        for received in &events[read.min(events.len())..] {
            seen.insert(Arrival::of(&received.data).key);
        }
        read = events.len();
        if seen.len() >= n || tokio::time::Instant::now() >= deadline {
            return seen.len();
        }
        // Woken by the next arrival, or after a short while.
        let _ = log.wait_for(read + 1, Duration::from_millis(100)).await;
    }
}

async fn play(args: &DemoArgs, dir: &Path) -> i32 {
    let Some(hook) = std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("sluice-hook"))
        .filter(|path| path.exists())
    else {
        eprintln!("demo: the sluice-hook binary is not next to sluice-demo; build both packages");
        return 2;
    };
    let _ = std::fs::remove_dir_all(dir);
    let (runtime_dir, state_dir) = (dir.join("run"), dir.join("state"));
    let dashboard = match Dashboard::start("127.0.0.1:0".parse().expect("an address")).await {
        Ok(dashboard) => dashboard,
        Err(error) => {
            eprintln!("demo: cannot start the dashboard: {error}");
            return 2;
        }
    };
    let addr = dashboard.addr();
    let socket = sluice_relay::config::relay_socket(&runtime_dir, &format!("http://{addr}"));
    let log = dashboard.received().clone();
    // The same token after the restart, so that an open page reconnects by itself.
    let token = dashboard.token().to_string();
    let inputs = script(usize::try_from(args.events).unwrap_or(usize::MAX));
    let tasks = inputs.iter().filter(|i| expected_events(i) == 2).count() as u64;
    let expected = inputs.len() + tasks as usize;
    println!(
        "sluice demo: {} hook invocations of 3 Claude Code sessions; {expected} dashboard events \
         expected ({tasks} Task PreToolUse hooks also emit a subagent_start)",
        inputs.len()
    );
    println!(
        "  dashboard: embedded Socket.IO server at {}",
        dashboard.url()
    );
    println!("  web view:  {}", dashboard.page_url());
    println!("  hook:      {} (a real process per event)", hook.display());
    println!("  files:     {} (removed at the end)", dir.display());
    println!(
        "  the dashboard goes down for {:.2} s after {} hooks\n",
        args.outage_secs,
        args.outage_at()
    );

    let started = Instant::now();
    let sent = AtomicU64::new(0);
    // Held by the player while a hook runs: whoever holds it has no hook in flight.
    let gate = Mutex::new(());
    // Sampling the relay's spool depth; stopped when `play` ends or is dropped.
    let watcher = AbortOnDrop(tokio::spawn(teardown::watch_depth(socket.clone())));

    // The player and the conductor are futures of `play` itself, not spawned tasks: when a
    // signal drops `play`, they stop with it, and so does the running hook (kill_on_drop).
    let player = async {
        let url = format!("http://{addr}");
        let mut latencies = Vec::with_capacity(inputs.len());
        let mut failures = 0u64;
        let mut pace = tokio::time::interval(DemoArgs::PACE);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for input in &inputs {
            pace.tick().await;
            let _running = gate.lock().await;
            let begin = Instant::now();
            let ok = run_hook(&hook, &runtime_dir, &state_dir, &url, input).await;
            latencies.push(begin.elapsed().as_micros() as u64);
            failures += u64::from(!ok);
            let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
            if n.is_multiple_of(250) {
                println!(
                    "  {:>6.2} s  {n} hooks run",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        (latencies, failures)
    };
    // The outage: after `outage_at` hooks, down for the outage, back on the same port.
    let conductor = async {
        while sent.load(Ordering::SeqCst) < args.outage_at() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let down_at = started.elapsed().as_secs_f64();
        dashboard.stop().await;
        println!("  {down_at:>6.2} s  dashboard DOWN");
        tokio::time::sleep(args.outage()).await;
        // No hook runs while the figures of the restart are taken.
        let _paused = gate.lock().await;
        let stats = teardown::relay_stats(&socket).await;
        let spooled = stats.map_or(0, |stats| stats["spool_depth"].as_u64().unwrap_or(0));
        let at = (sent.load(Ordering::SeqCst), spooled, log.len());
        let dashboard = Dashboard::builder()
            .log(log.clone())
            .token(token.clone())
            .start(addr)
            .await?;
        let up_at = started.elapsed().as_secs_f64();
        println!("  {up_at:>6.2} s  dashboard UP again");
        Ok::<_, std::io::Error>((dashboard, at, down_at, up_at))
    };
    let ((mut latencies, hook_failures), restarted) = tokio::join!(player, conductor);
    let (dashboard, at, down_at, up_at) = match restarted {
        Ok(restarted) => restarted,
        Err(error) => {
            eprintln!("demo: cannot restart the dashboard: {error}");
            return 2;
        }
    };
    let (hooks_before_restart, spooled_at_restart, arrivals_before_restart) = at;
    let played_at = started.elapsed().as_secs_f64();
    wait_distinct(&log, expected, Duration::from_secs(90)).await;
    let drained_at = started.elapsed().as_secs_f64();
    let stats = teardown::relay_stats(&socket).await.unwrap_or(Value::Null);
    drop(watcher);
    let deepest_sampled = teardown::DEEPEST.load(Ordering::Relaxed);
    latencies.sort_unstable();
    let recording = Recording {
        hooks: latencies.len() as u64,
        hook_failures,
        tasks,
        arrivals: log.events().iter().map(|r| Arrival::of(&r.data)).collect(),
        arrivals_before_restart,
        hooks_before_restart,
        spooled_at_restart,
        deepest_sampled: deepest_sampled.max(spooled_at_restart),
        stats,
        latencies_us: latencies,
        down_at,
        up_at,
        played_at,
        drained_at,
    };
    if let Some(path) = &args.record {
        if let Ok(text) = serde_json::to_string(&recording) {
            let _ = std::fs::write(path, text);
        }
    }
    print!("{}", recording.render());
    dashboard.stop().await;
    let figures = recording.figures();
    if figures.lost > 0 || hook_failures > 0 || !recording.broken().is_empty() {
        println!(
            "\nFAIL: {} events lost, {hook_failures} hooks failed",
            figures.lost
        );
        1
    } else {
        println!("\nOK: nothing lost");
        0
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One hook process with `input` on stdin; whether it exited 0. Killed if dropped.
async fn run_hook(
    hook: &Path,
    runtime_dir: &Path,
    state_dir: &Path,
    url: &str,
    input: &Value,
) -> bool {
    let child = Command::new(hook)
        .env("SLUICE_RUNTIME_DIR", runtime_dir)
        .env("SLUICE_STATE_DIR", state_dir)
        .env("SLUICE_URL", url)
        .env("SLUICE_IDLE_SECS", "120")
        // The relay reports its breaker and store to the web view every second.
        .env("SLUICE_STATUS_EVERY", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.to_string().as_bytes()).await;
    }
    child.wait().await.is_ok_and(|status| status.success())
}
