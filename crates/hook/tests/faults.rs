//! "Nothing lost", under faults: the built `sluice-hook` and its relay as real processes, a
//! real SQLite store and a real dashboard on 127.0.0.1. Every event is numbered and counted by
//! its `event_id` at the dashboard.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_dashboard::{Dashboard, Log};

use sluice_test_support::{eventually, prompt, prompt_number, unused_addr, HookEnv};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

/// The store of `env`'s relay.
fn store_path(env: &HookEnv) -> std::path::PathBuf {
    sluice_relay::config::relay_store(&env.state_dir(), env.url())
}

/// Each distinct event that arrived, by `event_id`: its prompt number, and how often it came.
fn arrivals(log: &Log) -> BTreeMap<String, (Option<usize>, usize)> {
    let mut seen: BTreeMap<String, (Option<usize>, usize)> = BTreeMap::new();
    for received in log.events() {
        let data = &received.data["data"];
        let Some(id) = data["event_id"].as_str() else {
            continue;
        };
        let number = prompt_number(data);
        let entry = seen.entry(id.to_string()).or_insert((number, 0));
        assert_eq!(entry.0, number, "one event_id, one event");
        entry.1 += 1;
    }
    seen
}

/// The prompt numbers the dashboard received, in arrival order, repeats included.
fn numbers_in_order(log: &Log) -> Vec<usize> {
    log.events()
        .iter()
        .filter_map(|e| prompt_number(&e.data["data"]))
        .collect()
}

/// Waits (bounded) until `done` holds for the dashboard's log.
async fn wait_until(log: &Log, timeout: Duration, done: impl Fn(&Log) -> bool) -> bool {
    eventually(timeout, || done(log)).await
}

/// A dashboard on a free loopback port.
async fn local_dashboard() -> Dashboard {
    Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Checks that events sent one after another arrived first in that order: the events of
/// `lanes` senders, sender `k` sending the numbers `n` with `n % lanes == k` in turn. A
/// replay may repeat an event, never reorder.
fn assert_in_order_per_lane(log: &Log, lanes: usize) {
    let mut first = HashSet::new();
    let mut last: Vec<Option<usize>> = vec![None; lanes];
    for n in numbers_in_order(log) {
        if !first.insert(n) {
            continue;
        }
        let lane = &mut last[n % lanes];
        assert!(
            lane.is_none_or(|before| before < n),
            "event {n} first arrived after event {lane:?}, sent after it"
        );
        *lane = Some(n);
    }
}

fn distinct(log: &Log) -> usize {
    arrivals(log).len()
}

fn relay_pid(env: &HookEnv) -> Option<u32> {
    env.stats()["relay_pid"].as_u64().map(|p| p as u32)
}

fn rss_kib(pid: u32) -> u64 {
    vm_kib(pid, "VmRSS")
}

/// A memory figure of process `pid` in KiB (`VmRSS`, `VmHWM`: its peak), 0 if it is gone.
fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_cap_under_a_stream_loses_nothing_uncounted() {
    // Today's main lost 229 of 3,000 here, with spool_dropped = 0.
    let dashboard = local_dashboard().await;
    let env = std::sync::Arc::new(HookEnv::new(BIN, "cap-stream", dashboard.addr()));
    let total = 3_000;
    let senders: Vec<_> = (0..4)
        .map(|lane| {
            let env = std::sync::Arc::clone(&env);
            std::thread::spawn(move || {
                for n in (lane..total).step_by(4) {
                    let output = env.hook_with(&[("SLUICE_SPOOL_MAX_BYTES", "200000")], &prompt(n));
                    assert!(output.status.success(), "{output:?}");
                }
            })
        })
        .collect();
    for sender in senders {
        sender.join().unwrap();
    }
    let log = dashboard.received().clone();
    let settled = wait_until(&log, Duration::from_secs(30), |_| {
        env.stats()["spool_depth"] == 0
    })
    .await;
    assert!(settled, "the store drains: {}", env.stats());
    let stats = env.stats();
    let dropped = stats["spool_dropped"].as_u64().unwrap() as usize;
    let arrived: HashSet<usize> = arrivals(&log).values().filter_map(|(n, _)| *n).collect();
    assert!(
        arrived.iter().all(|n| *n < total),
        "only the events sent arrived"
    );
    assert_eq!(
        arrived.len() + dropped,
        total,
        "every event arrived or was counted as dropped: {stats}"
    );
    assert_in_order_per_lane(&log, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_event_arrives_marked_and_costs_its_neighbours_nothing() {
    // Today's main: the 1.6 MB payload closed the connection; it and the next 3 were lost.
    let dashboard = local_dashboard().await;
    let env = HookEnv::new(BIN, "oversized", dashboard.addr());
    let edits: Vec<String> = (0..100)
        .map(|i| format!("{i:03}{}", "y".repeat(8_100)))
        .collect();
    let big = json!({
        "session_id": "s", "cwd": "/tmp", "hook_event_name": "PreToolUse",
        "tool_name": "MultiEdit", "tool_input": {"edits": edits}
    })
    .to_string();
    assert!(big.len() > 810_000);
    let output = env.hook(big.as_bytes());
    assert!(output.status.success(), "{output:?}");
    for n in 0..3 {
        assert!(env.hook(&prompt(n)).status.success());
    }
    let log = dashboard.received().clone();
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == 4).await);
    let events = log.events();
    assert_eq!(events.len(), 4, "each once");
    let first = &events[0].data;
    assert_eq!(first["subtype"], "pre_tool");
    assert_eq!(first["data"]["truncated"], true);
    assert!(first["data"]["original_size"].as_u64().unwrap() > 810_000);
    assert!(first.to_string().len() < 1_000_000);
    let prompts: Vec<&str> = events[1..]
        .iter()
        .map(|e| e.data["data"]["prompt"].as_str().unwrap())
        .collect();
    assert_eq!(prompts, ["prompt 0", "prompt 1", "prompt 2"]);
    assert_eq!(env.stats()["spool_oversized"], 1);
}

/// Runs the hook on `head`, `filler` bytes of `x` and `tail`, written as they are made; gives
/// its output and its peak resident memory (KiB) once it read all but the tail.
fn hook_streamed(env: &HookEnv, head: &str, filler: usize, tail: &str) -> (Output, u64) {
    let mut child = env
        .command()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..filler / chunk.len() {
        stdin.write_all(&chunk).unwrap();
    }
    // A pipe holds 64 KiB at most: the hook has read all but that, and is waiting for more.
    let peak = vm_kib(child.id(), "VmHWM");
    stdin.write_all(tail.as_bytes()).unwrap();
    drop(stdin);
    (child.wait_with_output().unwrap(), peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_over_the_limit_arrive_as_stubs_read_in_bounded_memory() {
    // Today's main: an input over 1 MiB was refused whole; the tool never finished.
    let dashboard = local_dashboard().await;
    let env = HookEnv::new(BIN, "big-input", dashboard.addr());
    assert!(env.hook(&prompt(0)).status.success());
    let bash = r#"{"session_id":"s","cwd":"/tmp","hook_event_name":"PostToolUse","tool_name":"Bash","tool_use_id":"toolu_bash","duration_ms":4321,"tool_input":{"command":"make all"},"tool_response":{"stderr":"make: *** [all] Error 2","interrupted":false,"stdout":""#;
    let filler = 32 << 20;
    let (tail, bash_size) = (r#""}}"#, bash.len() + filler + 3);
    let (output, peak_kib) = hook_streamed(&env, bash, filler, tail);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{output:?}"
    );
    // Holding the input would take 32 MiB; the hook keeps its first MiB and a few KiB more.
    assert!(peak_kib > 0 && peak_kib < 12 * 1024, "peak {peak_kib} KiB");
    assert!(env.hook(&prompt(1)).status.success());
    let content = "w".repeat(3 << 20);
    let write = json!({
        "session_id": "s", "cwd": "/tmp", "hook_event_name": "PostToolUse", "tool_name": "Write",
        "tool_use_id": "toolu_write", "duration_ms": 12,
        "tool_input": {"file_path": "/tmp/big.txt", "content": content},
        "tool_response": {"type": "create", "filePath": "/tmp/big.txt", "content": content},
    })
    .to_string();
    let output = env.hook(write.as_bytes());
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{output:?}"
    );
    let write_size = write.len();
    assert!(env.hook(&prompt(2)).status.success());

    let log = dashboard.received().clone();
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == 5).await);
    let events = log.events();
    assert_eq!(events.len(), 5, "each once");
    assert_eq!(numbers_in_order(&log), [0, 1, 2]);
    let (bash, write) = (&events[1].data, &events[3].data);
    for (stub, tool, size, success) in [
        (bash, "Bash", bash_size, false),
        (write, "Write", write_size, true),
    ] {
        assert_eq!(stub["subtype"], "post_tool");
        let data = &stub["data"];
        assert_eq!(data["tool_name"], tool);
        assert_eq!(
            data["tool_use_id"],
            format!("toolu_{}", tool.to_lowercase())
        );
        assert_eq!(data["session_id"], "s");
        assert_eq!(data["truncated"], true);
        assert_eq!(data["original_size"], size);
        assert_eq!(data["success"], success, "{data}");
        assert!(
            data.get("output_size").is_none(),
            "not measured on a stub: {data}"
        );
        assert!(stub.to_string().len() < 16 * 1024, "{stub}");
    }
    assert_eq!(bash["data"]["duration_ms"], 4321);
    assert_eq!(bash["data"]["command_preview"], "make all");
    assert_eq!(write["data"]["tool_input"]["file_path"], "/tmp/big.txt");
    assert_eq!(env.stats()["spool_oversized"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_is_set_aside_and_new_events_flow() {
    let dashboard = local_dashboard().await;
    let env = HookEnv::new(BIN, "damaged", dashboard.addr());
    let store = store_path(&env);
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    std::fs::write(&store, b"this is not a database, it is garbage".repeat(200)).unwrap();
    for n in 0..20 {
        assert!(env.hook(&prompt(n)).status.success());
    }
    let log = dashboard.received().clone();
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == 20).await);
    let stats = env.stats();
    assert_eq!(stats["spool_damaged"], 1, "{stats}");
    let aside: Vec<_> = std::fs::read_dir(store.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains(".damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "set aside, not wiped: {aside:?}");

    // The store deleted under the running relay: the next events still arrive.
    std::fs::remove_file(&store).unwrap();
    for n in 20..40 {
        assert!(env.hook(&prompt(n)).status.success());
    }
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == 40).await);
    let numbers = numbers_in_order(&log);
    assert_eq!(numbers, (0..40).collect::<Vec<_>>(), "each once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_dir_that_is_not_ours_gets_nothing() {
    let dashboard = local_dashboard().await;
    let env = HookEnv::new(BIN, "foreign", dashboard.addr());
    let run = env.dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o777)).unwrap();
    let is_root = sluice_relay::safety::uid() == 0;
    if is_root {
        // Owned by someone else too (only root can make that).
        std::process::Command::new("chown")
            .arg("65534")
            .arg(&run)
            .status()
            .unwrap();
    }
    // A fake relay listening where ours would.
    let socket = run.join(
        store_path(&env)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace("spool-", "relay-")
            .replace(".db", ".sock"),
    );
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();

    let output = env.hook(&prompt(7));
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("not safe"), "{stderr}");
    assert!(
        listener.accept().is_err(),
        "the fake relay got no connection"
    );
    // The event waits in the store.
    let store =
        sluice_store::Store::open(&store_path(&env), 1 << 20, Duration::from_secs(1)).unwrap();
    let rows = store.take(10, usize::MAX, &[]).unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].payload.contains("prompt 7"));
    for file in std::fs::read_dir(store_path(&env).parent().unwrap()).unwrap() {
        let file = file.unwrap();
        let mode = file.metadata().unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "{:?} is private: {mode:o}",
            file.file_name()
        );
    }
    assert_eq!(
        std::fs::metadata(&run).unwrap().permissions().mode() & 0o777,
        0o777,
        "not chmod-ed"
    );
    let _ = std::fs::remove_file(&socket);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_frame_without_a_newline_does_not_grow_the_relay() {
    // Today's main grew to 115 MB on 100 MiB with no newline.
    let dashboard = local_dashboard().await;
    let env = HookEnv::new(BIN, "frame", dashboard.addr());
    assert!(env.hook(&prompt(0)).status.success());
    let pid = relay_pid(&env).expect("a relay runs");
    let idle = rss_kib(pid);
    let socket = std::fs::read_dir(env.dir.join("run"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "sock"))
        .unwrap();
    let sender = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(socket).unwrap();
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0;
        for _ in 0..100 {
            if stream.write_all(&chunk).is_err() {
                break; // closed by the relay
            }
            sent += 1;
        }
        sent
    });
    let sent = sender.join().unwrap();
    let peak = rss_kib(pid);
    assert!(
        sent < 100,
        "the relay closed the connection (accepted {sent} MiB)"
    );
    assert!(
        peak.saturating_sub(idle) < 20 * 1024,
        "RSS grew from {idle} KiB to {peak} KiB"
    );
    assert!(env.hook(&prompt(1)).status.success());
    let log = dashboard.received().clone();
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == 2).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_relay_whose_state_dir_was_removed() {
    // Today's main retried its spool every 200 ms and ignored SIGTERM for 45 minutes.
    let dashboard = local_dashboard().await;
    let env = HookEnv::new(BIN, "statedir", dashboard.addr());
    assert!(env.hook(&prompt(0)).status.success());
    let pid = relay_pid(&env).expect("a relay runs");
    std::fs::remove_dir_all(env.dir.join("state")).unwrap();
    assert!(env.hook(&prompt(1)).status.success());
    let started = Instant::now();
    signal(pid, "TERM");
    while alive(pid) && started.elapsed() < Duration::from_secs(6) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(pid),
        "still running {:?} after SIGTERM",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(env.hook(&prompt(2)).status.success());
    let log = dashboard.received().clone();
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == 3).await);
    assert_ne!(relay_pid(&env), Some(pid), "a new relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_five_times_during_a_replay_loses_nothing() {
    let addr = unused_addr();
    let env = HookEnv::new(BIN, "replay-kill", addr);
    // A backlog of 10,000 numbered events, as hooks left it while no relay ran.
    std::fs::create_dir_all(env.dir.join("state")).unwrap();
    let total = 10_000;
    {
        let mut store =
            sluice_store::Store::open(&store_path(&env), 64 << 20, Duration::from_secs(1)).unwrap();
        let events: Vec<(String, String)> = (0..total)
            .map(|n| {
                let id = format!("backlog-{n:05}");
                let payload = json!({"event": "claude_event", "subtype": "user_prompt",
                    "data": {"event_id": id, "prompt": format!("prompt {n}")}});
                (id, payload.to_string())
            })
            .collect();
        let new: Vec<_> = events
            .iter()
            .map(|(id, payload)| sluice_store::NewEvent {
                event_id: id,
                payload,
                oversized: false,
            })
            .collect();
        store.append(&new).unwrap();
    }
    let dashboard = Dashboard::start(addr).await.unwrap();
    let log = dashboard.received().clone();
    let mut kills = 0;
    let mut next = total;
    while kills < 5 {
        // A hook starts (or finds) a relay, which replays.
        assert!(env.hook(&prompt(next)).status.success());
        next += 1;
        let before = distinct(&log);
        let progressed = wait_until(&log, Duration::from_secs(10), |log| {
            distinct(log) > before + 500
        })
        .await;
        assert!(progressed, "replay progresses: {}", env.stats());
        let pid = relay_pid(&env).expect("a relay runs");
        signal(pid, "KILL");
        while alive(pid) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        kills += 1;
    }
    assert!(env.hook(&prompt(next)).status.success());
    next += 1;
    let all = wait_until(&log, Duration::from_secs(60), |log| distinct(log) == next).await;
    let seen = arrivals(&log);
    let numbers: HashSet<usize> = seen.values().filter_map(|(n, _)| *n).collect();
    assert!(all, "{} of {next} arrived: {}", numbers.len(), env.stats());
    assert_eq!(numbers, (0..next).collect::<HashSet<_>>(), "every event");
    assert_in_order_per_lane(&log, 1);
    let duplicates: usize = seen.values().map(|(_, times)| times - 1).sum();
    eprintln!("{duplicates} duplicates over 5 kills, each with its event's event_id");
}

#[test]
fn event_ids_are_unique_and_time_ordered() {
    let payloads: Vec<Value> = (0..1_000).map(|n| json!({"data": {"n": n}})).collect();
    let prepared = sluice_hook::client::prepare(payloads, 1 << 20);
    let ids: Vec<&str> = prepared.iter().map(|p| p.event_id.as_str()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ordered by creation");
    for p in &prepared {
        let value: Value = serde_json::from_str(&p.json).unwrap();
        assert_eq!(value["data"]["event_id"], p.event_id.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_within_two_seconds_of_the_dashboard_coming_back() {
    // Today's main: 17 to 20 s after a 45 s outage (breaker backoff capped at 30 s).
    let dashboard = local_dashboard().await;
    let addr = dashboard.addr();
    let env = HookEnv::new(BIN, "recovery", addr);
    assert!(env.hook(&prompt(0)).status.success());
    let log = dashboard.received().clone();
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == 1).await);
    let log = dashboard.stop().await;
    // An outage long enough for every backoff to reach its cap (12 s; the issue's 45 s
    // with SLUICE_TEST_OUTAGE_SECS=45).
    let outage_secs = std::env::var("SLUICE_TEST_OUTAGE_SECS")
        .ok()
        .and_then(|secs| secs.parse().ok())
        .unwrap_or(12);
    let outage = Instant::now();
    let mut n = 1;
    while outage.elapsed() < Duration::from_secs(outage_secs) {
        assert!(env.hook(&prompt(n)).status.success());
        n += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let back = Instant::now();
    let _dashboard = Dashboard::start_with_log(addr, log.clone()).await.unwrap();
    let first = wait_until(&log, Duration::from_secs(10), |log| distinct(log) > 1).await;
    let resumed = back.elapsed();
    assert!(first, "nothing arrived after the outage: {}", env.stats());
    eprintln!(
        "delivery resumed {resumed:?} after the dashboard came back ({outage_secs} s outage)"
    );
    assert!(
        resumed < Duration::from_secs(2),
        "resumed after {resumed:?}"
    );
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == n).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idle_relay_exits_only_once_its_store_is_empty() {
    // Today's main never idle-exited after a cap drop (its pending count stuck at 229).
    let addr = unused_addr();
    let env = HookEnv::new(BIN, "idle", addr);
    let hook = |n: usize| {
        let vars = [
            ("SLUICE_IDLE_SECS", "1"),
            ("SLUICE_SPOOL_MAX_BYTES", "2000"),
        ];
        assert!(env.hook_with(&vars, &prompt(n)).status.success());
    };
    for n in 0..30 {
        hook(n);
    }
    let pid = relay_pid(&env).expect("a relay runs");
    let stats = env.stats();
    assert!(
        stats["spool_dropped"].as_u64().unwrap() > 0,
        "the cap bit: {stats}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(alive(pid), "idle, but events wait: it stays");
    let dashboard = Dashboard::start(addr).await.unwrap();
    let log = dashboard.received().clone();
    let depth = stats["spool_depth"].as_u64().unwrap() as usize;
    assert!(wait_until(&log, Duration::from_secs(10), |log| distinct(log) == depth).await);
    eventually(Duration::from_secs(10), || !alive(pid)).await;
    assert!(
        !alive(pid),
        "the store is empty and the relay idle: it exits"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hook_for_another_dashboard_gets_its_own_relay() {
    // Today's main: the relay of the first URL took every later hook's events, whatever
    // their SLUICE_URL, and spooled them behind an open breaker.
    let first = local_dashboard().await;
    let second = local_dashboard().await;
    let env = HookEnv::new(BIN, "two-urls", first.addr());
    assert!(env.hook(&prompt(0)).status.success());
    let other_url = format!("http://{}", second.addr());
    let output = env.hook_with(&[("SLUICE_URL", &other_url)], &prompt(1));
    assert!(output.status.success(), "{output:?}");
    assert!(assert_arrives(&first, &["prompt 0"]).await);
    assert!(assert_arrives(&second, &["prompt 1"]).await);
    let stats = env
        .command()
        .env("SLUICE_URL", &other_url)
        .arg("stats")
        .output()
        .unwrap();
    let stats: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(
        stats["server_url"],
        other_url.as_str(),
        "stats name their relay's URL"
    );
    let _ = env
        .command()
        .env("SLUICE_URL", &other_url)
        .arg("stop")
        .output();
}

/// Waits until the dashboard has exactly these prompts, in order.
async fn assert_arrives(dashboard: &Dashboard, prompts: &[&str]) -> bool {
    let log = dashboard.received().clone();
    wait_until(&log, Duration::from_secs(10), |log| {
        let got: Vec<String> = log
            .events()
            .iter()
            .filter_map(|e| e.data["data"]["prompt"].as_str().map(str::to_string))
            .collect();
        got == prompts
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_drops_exactly_the_oldest_and_counts_them() {
    let addr = unused_addr();
    let env = HookEnv::new(BIN, "cap-oldest", addr);
    let total = 400;
    for n in 0..total {
        let output = env.hook_with(&[("SLUICE_SPOOL_MAX_BYTES", "20000")], &prompt(n));
        assert!(output.status.success(), "{output:?}");
    }
    let dropped = env.stats()["spool_dropped"].as_u64().unwrap() as usize;
    assert!(
        dropped > 0 && dropped < total,
        "the cap bit: {}",
        env.stats()
    );
    let dashboard = Dashboard::start(addr).await.unwrap();
    let log = dashboard.received().clone();
    assert!(
        wait_until(&log, Duration::from_secs(10), |log| distinct(log)
            == total - dropped)
        .await,
        "{} of {} arrived: {}",
        distinct(&log),
        total - dropped,
        env.stats()
    );
    let numbers = numbers_in_order(&log);
    assert_eq!(
        numbers,
        (dropped..total).collect::<Vec<_>>(),
        "the newest, each once, in order"
    );
    assert_eq!(
        env.stats()["spool_dropped"].as_u64().unwrap() as usize,
        dropped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dashboard_killed_and_restarted_every_second_loses_nothing() {
    // With "sent" meaning "written", the issue measured 95 of 3,000 counted delivered and
    // never received (a Node server killed and restarted every second).
    let first = local_dashboard().await;
    let addr = first.addr();
    let log = first.received().clone();
    let env = std::sync::Arc::new(HookEnv::new(BIN, "kill-restart", addr));
    let total = 3_000;
    let senders: Vec<_> = (0..4)
        .map(|lane| {
            let env = std::sync::Arc::clone(&env);
            std::thread::spawn(move || {
                for n in (lane..total).step_by(4) {
                    assert!(env.hook(&prompt(n)).status.success());
                }
            })
        })
        .collect();
    let mut dashboard = Some(first);
    let mut restarts = 0;
    while senders.iter().any(|s| !s.is_finished()) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Some(running) = dashboard.take() {
            running.stop().await; // every socket cut, as a crash does
        }
        dashboard = Some(restart(addr, &log).await);
        restarts += 1;
    }
    for sender in senders {
        sender.join().unwrap();
    }
    assert!(
        restarts >= 2,
        "the dashboard was restarted {restarts} times"
    );
    let all = wait_until(&log, Duration::from_secs(30), |log| distinct(log) == total).await;
    let numbers: HashSet<usize> = arrivals(&log).values().filter_map(|(n, _)| *n).collect();
    assert!(all, "{} of {total} arrived: {}", numbers.len(), env.stats());
    assert_eq!(numbers, (0..total).collect::<HashSet<_>>());
    assert_in_order_per_lane(&log, 4);
    let settled = wait_until(&log, Duration::from_secs(10), |_| {
        env.stats()["spool_depth"] == 0
    })
    .await;
    assert!(settled, "the store empties: {}", env.stats());
}

/// Starts a dashboard on `addr` again, once the stopped one has let the port go.
async fn restart(addr: std::net::SocketAddr, log: &Log) -> Dashboard {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Dashboard::start_with_log(addr, log.clone()).await {
            Ok(dashboard) => return dashboard,
            Err(error) if Instant::now() < deadline => {
                assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse, "{error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(error) => panic!("cannot restart the dashboard: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stopped_during_hand_overs_delivers_each_event_once() {
    // A stopped relay holds each hook's frame unread; the hook, unanswered after 50 ms,
    // stores the event itself. Resumed, the relay reads the frames it was sent: the same
    // events, which must not be stored, nor delivered, a second time.
    let dashboard = local_dashboard().await;
    let log = dashboard.received().clone();
    let env = HookEnv::new(BIN, "stopped-hand-over", dashboard.addr());
    assert!(env.hook(&prompt(0)).status.success());
    let pid = relay_pid(&env).expect("a relay runs");
    // Stopped idle, not holding the store's write lock (the hooks could not store then).
    let idle = wait_until(&log, Duration::from_secs(5), |log| {
        distinct(log) == 1 && env.stats()["spool_depth"] == 0
    })
    .await;
    assert!(idle, "{}", env.stats());
    signal(pid, "STOP");
    let total = 20;
    for n in 1..total {
        assert!(env.hook(&prompt(n)).status.success());
    }
    signal(pid, "CONT");
    let all = wait_until(&log, Duration::from_secs(10), |log| distinct(log) == total).await;
    assert!(
        all,
        "{} of {total} arrived: {}",
        distinct(&log),
        env.stats()
    );
    let settled = wait_until(&log, Duration::from_secs(10), |_| {
        env.stats()["spool_depth"] == 0
    })
    .await;
    assert!(settled, "the store empties: {}", env.stats());
    let repeated: Vec<_> = arrivals(&log)
        .into_values()
        .filter(|(_, times)| *times > 1)
        .collect();
    assert!(
        repeated.is_empty() && log.duplicates_seen() == 0,
        "delivered more than once: {repeated:?} ({} duplicates seen)",
        log.duplicates_seen()
    );
    assert_eq!(numbers_in_order(&log), (0..total).collect::<Vec<_>>());
}
