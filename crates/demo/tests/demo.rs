//! The built `sluice-demo` (and `sluice-hook dashboard`/`demo`, which run it) as a person
//! runs them: real processes, real signals, a real relay.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::{hook_binary, DEMO};

/// A private temporary directory for one test's demo.
fn tmpdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-demo-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Its stdout, line by line, through a channel (so that a test can wait with a deadline).
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                return;
            }
        }
    });
    lines
}

/// Reads lines until one contains `marker`; returns every line read.
fn until(lines: &mpsc::Receiver<String>, marker: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut read = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let found = line.contains(marker);
        read.push(line);
        if found {
            return read;
        }
    }
    panic!("no line with {marker:?} in {read:#?}");
}

fn after<'a>(lines: &'a [String], prefix: &str) -> &'a str {
    lines
        .iter()
        .find_map(|line| line.trim_start().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("{prefix:?} in {lines:#?}"))
        .split_whitespace()
        .next()
        .unwrap()
}

/// `sluice-relay` processes whose environment names `runtime_dir`.
fn relays_of(runtime_dir: &Path) -> usize {
    let marker = format!("SLUICE_RUNTIME_DIR={}", runtime_dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains("sluice-relay")
                && environ.split(|b| *b == 0).any(|v| v == marker.as_bytes())
        })
        .count()
}

fn signal_stops_the_demo(signal: &str, to_group: bool, code: i32) {
    hook_binary();
    let tmp = tmpdir(signal);
    let mut demo = Command::new(DEMO)
        .args(["demo", "--events", "4000", "--outage-secs", "4"])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let lines = lines(&mut demo);
    let read = until(&lines, "dashboard DOWN", Duration::from_secs(60));
    let files = PathBuf::from(after(&read, "files:"));
    let url = after(&read, "dashboard: embedded Socket.IO server at");
    let addr = url.trim_start_matches("http://").to_string();
    assert!(files.starts_with(&tmp), "{files:?}");
    assert_eq!(
        relays_of(&files.join("run")),
        1,
        "the hooks started a relay"
    );

    // As Ctrl-C does: the whole process group (the running hook too), or the demo alone.
    let target = if to_group {
        format!("-{}", demo.id())
    } else {
        demo.id().to_string()
    };
    let sent = Instant::now();
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), "--", &target])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = demo.wait().unwrap();
    let took = sent.elapsed();
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(status.code(), Some(code), "{rest:#?}");
    // "At once": well before the 4 s outage would have ended, let alone the 90 s drain.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(
        rest.iter().any(|line| line.contains(signal)),
        "it says why it stopped: {rest:#?}"
    );
    assert!(
        !rest.iter().any(|line| line.contains("report")),
        "{rest:#?}"
    );
    assert!(!files.exists(), "{files:?} removed");
    assert_eq!(relays_of(&files.join("run")), 0, "its relay is gone");
    assert!(
        std::net::TcpStream::connect(addr.as_str()).is_err(),
        "its dashboard is gone"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn sigint_to_the_process_group_stops_the_demo_at_once() {
    signal_stops_the_demo("INT", true, 130);
}

#[test]
fn sigterm_stops_the_demo_at_once() {
    signal_stops_the_demo("TERM", false, 143);
}

#[test]
fn a_run_reports_figures_that_add_up() {
    let hook = hook_binary();
    let tmp = tmpdir("report");
    let record = tmp.join("run.json");
    // Through sluice-hook, as the README runs it.
    let output = Command::new(&hook)
        .args([
            "demo",
            "--events",
            "300",
            "--outage-secs",
            "0.4",
            "--record",
        ])
        .arg(&record)
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("checked: every identity above holds"),
        "{stdout}"
    );
    assert!(stdout.contains("OK: nothing lost"), "{stdout}");

    // The same arithmetic, redone from what the run recorded.
    let run: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let n = |key: &str| run[key].as_u64().unwrap();
    let arrivals = run["arrivals"].as_array().unwrap();
    let before = n("arrivals_before_restart") as usize;
    let mut seen = std::collections::HashSet::new();
    let mut from_backlog = 0;
    for (index, arrival) in arrivals.iter().enumerate() {
        let first = seen.insert(arrival["key"].as_str().unwrap().to_string());
        let seq = arrival["seq"].as_u64().unwrap();
        if first && index >= before && seq < n("hooks_before_restart") {
            from_backlog += 1;
        }
    }
    let expected = n("hooks") + n("tasks");
    assert_eq!(n("hooks"), 300);
    assert!(n("tasks") > 0, "the script has Task calls");
    assert_eq!(
        seen.len() as u64,
        expected,
        "every event arrived, once or more"
    );
    assert!(from_backlog > 0, "the outage held events back");
    assert!(from_backlog <= n("spooled_at_restart"));
    let line = |label: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("{label} in {stdout}"))
            .to_string()
    };
    assert!(
        line("dashboard events expected").ends_with(&format!(
            "{expected} = {} + {}",
            n("hooks"),
            n("tasks")
        )),
        "{stdout}"
    );
    assert!(
        line("received").contains(&format!(
            "{} = {} distinct + {} duplicates",
            arrivals.len(),
            seen.len(),
            arrivals.len() - seen.len()
        )),
        "{stdout}"
    );
    assert!(
        line("delivered from the backlog").contains(&format!("{from_backlog} of ")),
        "{stdout}"
    );
    assert!(line("lost").ends_with(" 0"), "{stdout}");
    let leftovers: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers, [std::ffi::OsString::from("run.json")]);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn the_dashboard_prints_the_line_to_point_the_hook_at_it() {
    dashboard_stopped_by("INT");
}

#[test]
fn sigterm_stops_the_dashboard_with_its_summary() {
    // Before: SIGTERM killed it (no exit code, no summary line).
    dashboard_stopped_by("TERM");
}

/// Runs `dashboard PORT`, reads its lines, stops it with `signal`: exit 0, then the summary.
fn dashboard_stopped_by(signal: &str) {
    let hook = hook_binary();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A bare port means 127.0.0.1:PORT.
    let mut dashboard = Command::new(&hook)
        .args(["dashboard", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines(&mut dashboard);
    let read = until(&lines, "open the web view:", Duration::from_secs(20));
    assert!(
        read.iter()
            .any(|l| l.ends_with(&format!("SLUICE_URL=http://127.0.0.1:{port}"))),
        "{read:#?}"
    );
    // The page's URL, with its random token.
    let page = read.last().unwrap();
    let token = page
        .strip_prefix(&format!(
            "open the web view: http://127.0.0.1:{port}/?token="
        ))
        .unwrap_or_else(|| panic!("{page}"));
    assert_eq!(token.len(), 32, "{page}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{page}");
    let kill = Command::new("kill")
        .args([&format!("-{signal}"), &dashboard.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(dashboard.wait().unwrap().code(), Some(0), "SIG{signal}");
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(rest, ["0 events received"], "SIG{signal}");
}
