//! One owner per store, no name another user can take, and no event stranded by a relay's
//! exit: the built `sluice-hook` and its relays as real processes, a real store and a real
//! dashboard on 127.0.0.1, every event numbered and counted at the dashboard.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_dashboard::{Acks, Dashboard, Log};
use sluice_test_support::{eventually, feed, prompt, prompt_number, HookEnv};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

/// How often each numbered event arrived, and the numbers in order of first arrival.
fn tally(log: &Log) -> (HashMap<usize, usize>, Vec<usize>) {
    let mut times = HashMap::new();
    let mut first = Vec::new();
    for n in log
        .events()
        .iter()
        .filter_map(|e| prompt_number(&e.data["data"]))
    {
        let count = times.entry(n).or_insert(0);
        if *count == 0 {
            first.push(n);
        }
        *count += 1;
    }
    (times, first)
}

/// Asserts that events `0..n` each arrived exactly once (the log keeps one copy of each
/// `event_id` and counts the rest), first arrivals in order.
fn assert_once_in_order(log: &Log, n: usize) {
    assert_eq!(log.duplicates_seen(), 0, "copies of an event_id arrived");
    let (times, first) = tally(log);
    let missing: Vec<usize> = (0..n).filter(|k| !times.contains_key(k)).collect();
    let twice: Vec<(&usize, &usize)> = times.iter().filter(|(_, c)| **c > 1).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
    assert!(twice.is_empty(), "arrived more than once: {twice:?}");
    assert_eq!(first, (0..n).collect::<Vec<_>>(), "first arrivals in order");
}

fn quiet(output: &Output) {
    assert!(output.status.success(), "{output:?}");
    assert!(output.stderr.is_empty(), "{output:?}");
}

async fn dashboard(acks: Acks) -> Dashboard {
    Dashboard::start_with("127.0.0.1:0".parse().unwrap(), Log::default(), acks)
        .await
        .unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtime_dirs_on_one_state_dir_deliver_each_event_once() {
    // Today's main: two relays, two sockets, one store, each sending what the other had
    // not confirmed yet: events arrived twice. The server acks after 40 ms, as a Node
    // socket.io server behind Nagle's delayed ACK does.
    let dashboard = dashboard(Acks::After(Duration::from_millis(40))).await;
    let env = HookEnv::new(BIN, "two-runtime-dirs", dashboard.addr());
    let other_run = env.dir.join("other-run");
    let other_run_var = other_run.to_str().unwrap();
    const EVENTS: usize = 200;
    let log = dashboard.received().clone();
    let mut arrivals = log.subscribe();
    let arrived = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let recorder = tokio::spawn({
        let arrived = std::sync::Arc::clone(&arrived);
        async move {
            while let Ok(received) = arrivals.recv().await {
                if let Some(n) = prompt_number(&received.data["data"]) {
                    arrived
                        .lock()
                        .unwrap()
                        .entry(n)
                        .or_insert_with(Instant::now);
                }
            }
        }
    });
    let mut started = HashMap::new();
    for n in 0..EVENTS {
        // Even events from the usual context, odd ones from one with its own runtime dir.
        let vars: &[(&str, &str)] = if n % 2 == 0 {
            &[]
        } else {
            &[("SLUICE_RUNTIME_DIR", other_run_var)]
        };
        started.insert(n, Instant::now());
        quiet(&env.hook_with(vars, &prompt(n)));
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(log.wait_for(EVENTS, Duration::from_secs(20)).await, EVENTS);
    // Give a second relay time to send its copies, as today's main did.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_once_in_order(&log, EVENTS);
    let delivers = |vars: &[(&str, &str)]| {
        let output = env
            .command()
            .envs(vars.iter().copied())
            .arg("stats")
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&output.stdout).unwrap()["delivers"].clone()
    };
    assert_eq!(delivers(&[]), json!(true), "the first relay owns the store");
    assert_eq!(
        delivers(&[("SLUICE_RUNTIME_DIR", other_run_var)]),
        json!(false),
        "the second one stands by"
    );
    let _ = env
        .command()
        .env("SLUICE_RUNTIME_DIR", &other_run)
        .arg("stop")
        .output();
    dashboard.stop().await;
    // Hook start to arrival, for the events the second relay stored for the owner.
    recorder.abort();
    let arrived = arrived.lock().unwrap();
    let mut latencies: Vec<Duration> = (1..EVENTS)
        .step_by(2)
        .map(|n| arrived[&n] - started[&n])
        .collect();
    latencies.sort();
    let (p50, p99) = (
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
    );
    eprintln!("standby relay's events, hook start to arrival: p50 {p50:?}, p99 {p99:?}");
    assert!(p99 < Duration::from_secs(1), "p50 {p50:?}, p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_relay_takes_over_when_the_owner_exits() {
    let dashboard = dashboard(Acks::Immediate).await;
    let env = HookEnv::new(BIN, "takeover", dashboard.addr());
    let other_run = env.dir.join("other-run");
    let other = [("SLUICE_RUNTIME_DIR", other_run.to_str().unwrap())];
    quiet(&env.hook(&prompt(0)));
    quiet(&env.hook_with(&other, &prompt(1)));
    let log = dashboard.received().clone();
    assert_eq!(log.wait_for(2, Duration::from_secs(10)).await, 2);
    env.stop_relay(); // the owner
    quiet(&env.hook_with(&other, &prompt(2)));
    assert_eq!(log.wait_for(3, Duration::from_secs(10)).await, 3);
    assert_once_in_order(&log, 3);
    let stats = env.command().envs(other).arg("stats").output().unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["delivers"], json!(true), "{stats}");
    let _ = env.command().envs(other).arg("stop").output();
}

/// A hook's command with no runtime or state dir given and `HOME` at `home`: the defaults.
fn bare_hook(env: &HookEnv, home: &Path, tmp: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TMPDIR", tmp)
        .env("USER", "sluice-squat-test")
        .env("SLUICE_URL", env.url())
        .env("SLUICE_IDLE_SECS", "60");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squatted_tmp_names_stop_nothing_without_xdg_runtime_dir() {
    // Today's main: without XDG_RUNTIME_DIR the runtime dir was $TMPDIR/sluice-$USER; a
    // name another user made first was refused, no relay started, and 0 of 20 arrived.
    let dashboard = dashboard(Acks::Immediate).await;
    let env = HookEnv::new(BIN, "squat", dashboard.addr());
    let tmp = env.dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).unwrap();
    // Every name the hook ever used there, taken first: open to all, or a link elsewhere.
    let uid = my_uid();
    for name in [
        "sluice-sluice-squat-test",
        &format!("sluice-{uid}"),
        "sluice-user",
    ] {
        let squat = tmp.join(name);
        std::fs::create_dir_all(&squat).unwrap();
        std::fs::set_permissions(&squat, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    for name in [
        "sluice-state-sluice-squat-test",
        &format!("sluice-state-{uid}"),
    ] {
        std::os::unix::fs::symlink(&env.dir, tmp.join(name)).unwrap();
    }
    let home = env.dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    for n in 0..20 {
        quiet(&feed(bare_hook(&env, &home, &tmp), &prompt(n)));
    }
    let log = dashboard.received().clone();
    assert_eq!(log.wait_for(20, Duration::from_secs(10)).await, 20);
    assert_once_in_order(&log, 20);
    let state = home.join(".local/state/sluice");
    let socket = std::fs::read_dir(state.join("run"))
        .unwrap()
        .filter_map(Result::ok)
        .find(|entry| entry.file_name().to_string_lossy().ends_with(".sock"));
    assert!(socket.is_some(), "the socket is in the private state dir");
    for entry in std::fs::read_dir(&tmp).unwrap().filter_map(Result::ok) {
        let mode = entry.metadata().unwrap().permissions().mode();
        assert!(
            entry.path().is_symlink() || mode & 0o777 == 0o777,
            "nothing of ours in the shared dir: {}",
            entry.path().display()
        );
    }
    let _ = bare_hook(&env, &home, &tmp).arg("stop").output();
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|meta| std::os::unix::fs::MetadataExt::uid(&meta))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_state_dir_still_gets_a_relay() {
    // Past the 108 bytes of a socket path, the socket stays in the private state dir.
    let dashboard = dashboard(Acks::Immediate).await;
    let env = HookEnv::new(BIN, "deep-state", dashboard.addr());
    let deep = env.dir.join("a".repeat(50)).join("b".repeat(50));
    let deep_var = deep.to_str().unwrap();
    let vars = [("SLUICE_STATE_DIR", deep_var), ("SLUICE_RUNTIME_DIR", "")];
    let mut command = env.command();
    command.env_remove("XDG_RUNTIME_DIR").envs(vars);
    for n in 0..3 {
        let mut command = env.command();
        command.env_remove("XDG_RUNTIME_DIR").envs(vars);
        quiet(&feed(command, &prompt(n)));
    }
    let log = dashboard.received().clone();
    assert_eq!(log.wait_for(3, Duration::from_secs(10)).await, 3);
    assert_once_in_order(&log, 3);
    let stats = command.arg("stats").output().unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["delivers"], json!(true), "{stats}");
    let mut command = env.command();
    let _ = command
        .env_remove("XDG_RUNTIME_DIR")
        .envs(vars)
        .arg("stop")
        .output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_home_the_state_dir_comes_from_the_passwd_entry() {
    // Today's main fell back to $TMPDIR/sluice-state-$USER, as squattable as the runtime dir.
    let dashboard = dashboard(Acks::Immediate).await;
    let env = HookEnv::new(BIN, "passwd-home", dashboard.addr());
    let tmp = env.dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let home = std::env::home_dir().expect("the test's user has a home");
    let store = sluice_relay::config::relay_store(&home.join(".local/state/sluice"), env.url());
    let mut command = bare_hook(&env, &home, &tmp);
    command.env_remove("HOME").env("SLUICE_NO_SPAWN", "1");
    quiet(&feed(command, &prompt(0)));
    let stored = store.exists();
    let mut command = bare_hook(&env, &home, &tmp);
    command.env_remove("HOME");
    quiet(&feed(command, &prompt(1)));
    let log = dashboard.received().clone();
    let arrived = log.wait_for(2, Duration::from_secs(10)).await;
    let mut command = bare_hook(&env, &home, &tmp);
    let _ = command.env_remove("HOME").arg("stop").output();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", store.display()));
    }
    let _ = std::fs::remove_file(sluice_relay::config::store_lock(
        &home.join(".local/state/sluice"),
        env.url(),
    ));
    assert!(stored, "the event was kept under the passwd home");
    assert_eq!(arrived, 2);
    assert_once_in_order(&log, 2);
    assert!(
        std::fs::read_dir(&tmp).unwrap().next().is_none(),
        "nothing in $TMPDIR"
    );
}

#[test]
fn a_user_without_a_home_gets_one_clear_line_and_exit_zero() {
    assert_eq!(
        my_uid(),
        0,
        "this test runs the hook as a uid without a passwd entry: run it as root"
    );
    let dir = std::env::temp_dir().join(format!("sluice-no-home-{}", std::process::id()));
    let mut command = Command::new(BIN);
    std::os::unix::process::CommandExt::uid(&mut command, 54_321);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("TMPDIR", &dir)
        .env("SLUICE_URL", "http://127.0.0.1:9");
    let output = feed(command, &prompt(0));
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no state directory") && stderr.contains("SLUICE_STATE_DIR"),
        "{stderr}"
    );
    assert!(!dir.exists(), "nothing made under $TMPDIR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_socket_was_removed_gives_the_store_to_the_next() {
    // The runtime dir removed under a running relay (a logout): the next hook's relay
    // binds a new socket; the old one must not keep delivering the same store beside it.
    let dashboard = dashboard(Acks::Immediate).await;
    let env = HookEnv::new(BIN, "socket-gone", dashboard.addr());
    quiet(&env.hook(&prompt(0)));
    let old = env.stats()["relay_pid"].as_u64().unwrap() as u32;
    std::fs::remove_dir_all(env.dir.join("run")).unwrap();
    quiet(&env.hook(&prompt(1)));
    eventually(Duration::from_secs(5), || !alive(old)).await;
    assert!(!alive(old), "the relay that lost its socket exited");
    quiet(&env.hook(&prompt(2)));
    let log = dashboard.received().clone();
    assert_eq!(log.wait_for(3, Duration::from_secs(10)).await, 3);
    assert_once_in_order(&log, 3);
    assert_eq!(env.stats()["delivers"], json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_during_a_slow_stop_gets_a_relay_that_delivers_it() {
    // Today's main: the hook's new relay gave up after about 1 s while the old one took
    // 2.5 s to let its round go, and the event stayed in the store with no relay.
    let dashboard = dashboard(Acks::After(Duration::from_secs(3))).await;
    let env = HookEnv::new(BIN, "slow-stop", dashboard.addr());
    quiet(&env.hook(&prompt(0)));
    let log = dashboard.received().clone();
    assert_eq!(log.wait_for(1, Duration::from_secs(5)).await, 1);
    let stop = std::thread::spawn({
        let mut command = env.command();
        move || command.arg("stop").output().unwrap()
    });
    // The relay is stopping, its round waiting for the slow ack.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hook = env.hook(&prompt(1));
    assert!(hook.status.success(), "{hook:?}");
    let _ = stop.join();
    // No further hook comes: the event must still arrive.
    assert!(
        eventually(Duration::from_secs(15), || tally(&log).0.contains_key(&1)).await,
        "the event handed over during the stop never arrived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_acknowledged_once_a_stop_began() {
    // Today's main: a connection open when the stop came kept getting its events
    // acknowledged, and they stayed in the store with no relay to send them.
    let dashboard = dashboard(Acks::After(Duration::from_millis(1000))).await;
    let env = HookEnv::new(BIN, "ack-during-stop", dashboard.addr());
    quiet(&env.hook(&prompt(0)));
    let socket = sluice_relay::config::relay_socket(&env.dir.join("run"), env.url());
    let mut open = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut quit = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    quit.write_all(b"Q\n").unwrap();
    let mut answer = String::new();
    BufReader::new(&quit).read_line(&mut answer).unwrap();
    assert_eq!(answer, "A\n");
    let line = format!(
        "E 0190a5e2-0000-7000-8000-000000000001 {}\n",
        String::from_utf8(prompt(1)).unwrap()
    );
    let _ = open.write_all(line.as_bytes());
    let mut answer = String::new();
    let _ = BufReader::new(&open).read_line(&mut answer);
    if answer == "A\n" {
        // Acknowledged: then it must be delivered, with no further hook.
        let log = dashboard.received().clone();
        assert!(
            eventually(Duration::from_secs(15), || tally(&log).0.contains_key(&1)).await,
            "an event acknowledged during the stop was never delivered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_racing_idle_exits_and_stops_lose_nothing() {
    let dashboard = dashboard(Acks::Immediate).await;
    let env = HookEnv::new(BIN, "race-idle", dashboard.addr());
    let vars = [("SLUICE_IDLE_SECS", "1")];
    const LANES: usize = 3;
    const EACH: usize = 12;
    std::thread::scope(|scope| {
        for lane in 0..LANES {
            let env = &env;
            scope.spawn(move || {
                for k in 0..EACH {
                    let n = k * LANES + lane;
                    // Around the idle second, so hooks meet relays that are leaving.
                    let gap = 700 + (n * 97 % 600) as u64;
                    std::thread::sleep(Duration::from_millis(gap));
                    quiet(&env.hook_with(&vars, &prompt(n)));
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..5 {
                std::thread::sleep(Duration::from_millis(1900));
                let _ = env.command().arg("stop").output();
            }
        });
    });
    // The last hook has returned; no further hook comes. Every event must arrive.
    let log = dashboard.received().clone();
    let all = LANES * EACH;
    assert!(
        eventually(Duration::from_secs(15), || tally(&log).0.len() == all).await,
        "missing: {:?}",
        (0..all)
            .filter(|n| !tally(&log).0.contains_key(n))
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_relay_with_a_full_backlog_does_not_hold_a_hook() {
    // Today's main: the hook's connect() blocked for as long as the relay was stopped.
    let dashboard = dashboard(Acks::Immediate).await;
    let env = HookEnv::new(BIN, "ctrl-z", dashboard.addr());
    quiet(&env.hook(&prompt(0)));
    let log = dashboard.received().clone();
    assert_eq!(log.wait_for(1, Duration::from_secs(5)).await, 1);
    let pid = env.stats()["relay_pid"].as_u64().unwrap() as u32;
    signal(pid, "STOP");
    let socket = sluice_relay::config::relay_socket(&env.dir.join("run"), env.url());
    let mut held = Vec::new();
    while let Ok(stream) = sluice_relay::socket::connect(&socket, Duration::from_millis(20)) {
        held.push(stream);
        assert!(held.len() < 10_000, "the backlog never filled");
    }
    let mut child = env
        .command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&prompt(1)).unwrap();
    let started = Instant::now();
    let finished = eventually(Duration::from_secs(3), || {
        matches!(child.try_wait(), Ok(Some(_)))
    })
    .await;
    let took = started.elapsed();
    if !finished {
        let _ = child.kill();
    }
    signal(pid, "CONT");
    drop(held);
    assert!(finished, "the hook was still waiting after {took:?}");
    assert!(took < Duration::from_millis(1_500), "took {took:?}");
    // Kept in the store, and delivered once the relay runs again.
    assert_eq!(log.wait_for(2, Duration::from_secs(10)).await, 2);
    assert_once_in_order(&log, 2);
}
