//! The hook itself: what Claude Code runs once per event. Plain blocking I/O, no runtime:
//! it must start, hand the event over and exit in a millisecond or two.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::Config;
use crate::normalize::{self, BadInput, MAX_INPUT};
use crate::protocol;
use crate::spool::Spool;

/// How long to wait for a relay's answer before trying the next way.
const RELAY_BUDGET: Duration = Duration::from_millis(300);

/// Reads the event on stdin and hands it on. Always succeeds from Claude Code's point of view:
/// a problem is one line on stderr.
pub fn run(config: &Config) {
    let deadline = Instant::now() + config.budget;
    let mut input = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(MAX_INPUT as u64 + 1)
        .read_to_end(&mut input);
    let parsed = match read {
        Ok(_) => normalize::parse(&input),
        Err(_) => Err(BadInput::NotUtf8),
    };
    let hook_input = match parsed {
        Ok(input) => input,
        Err(bad) => {
            eprintln!("sluice-hook: ignored: {bad}");
            // Counted by the relay if one runs; never started for this.
            let _ = send_lines(
                config,
                &[format!("B {}", bad.kind())],
                Duration::from_millis(100),
            );
            return;
        }
    };
    let lines: Vec<String> = normalize::payloads(hook_input)
        .iter()
        .map(|payload| format!("E {payload}"))
        .collect();
    let started = Instant::now();
    match deliver(config, &lines, deadline) {
        Ok(how) if config.verbose => {
            eprintln!(
                "sluice-hook: {} event(s) {how} in {:.2?}",
                lines.len(),
                started.elapsed()
            );
        }
        Ok(_) => {}
        Err(problem) => eprintln!("sluice-hook: event not delivered: {problem}"),
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Relay, else a relay we start, else the spool, else a direct send; says which.
fn deliver(config: &Config, lines: &[String], deadline: Instant) -> Result<&'static str, String> {
    let relay_budget = RELAY_BUDGET.min(remaining(deadline));
    if send_lines(config, lines, relay_budget).is_ok() {
        return Ok("handed to the relay");
    }
    if config.spawn_relay
        && start_relay(config, RELAY_BUDGET.min(remaining(deadline)))
        && send_lines(config, lines, RELAY_BUDGET.min(remaining(deadline))).is_ok()
    {
        return Ok("handed to a relay just started");
    }
    match spool_lines(config, lines) {
        Ok(()) => Ok("spooled for the next relay"),
        Err(spool_error) => direct_send(config, lines, remaining(deadline))
            .map(|()| "sent directly")
            .map_err(|error| format!("spool: {spool_error}; direct send: {error}")),
    }
}

/// Sends request lines to the relay and waits for one acknowledgement each.
pub fn send_lines(config: &Config, lines: &[String], budget: Duration) -> std::io::Result<()> {
    let timeout = Some(budget.max(Duration::from_millis(1)));
    let mut stream = UnixStream::connect(config.socket())?;
    stream.set_write_timeout(timeout)?;
    stream.set_read_timeout(timeout)?;
    let mut request = String::new();
    for line in lines {
        request.push_str(line);
        request.push('\n');
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    for _ in lines {
        let mut answer = String::new();
        reader.read_line(&mut answer)?;
        if answer.as_bytes() != protocol::ACK {
            return Err(std::io::Error::other(format!("relay answered {answer:?}")));
        }
    }
    Ok(())
}

/// Asks the relay for one answer line (stats).
pub fn request(config: &Config, line: &str, budget: Duration) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(config.socket())?;
    stream.set_read_timeout(Some(budget))?;
    stream.set_write_timeout(Some(budget))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    Ok(answer)
}

/// Waits (at most `budget`) until no relay holds the relay lock.
pub fn wait_for_relay_exit(config: &Config, budget: Duration) -> bool {
    let Ok(lock) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.relay_lock())
    else {
        return true;
    };
    let (released, release) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = released.send(lock.lock().is_ok());
    });
    release.recv_timeout(budget).unwrap_or(false)
}

/// The heavy sibling binary (`sluice-relay`), next to this one.
pub fn relay_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.with_file_name("sluice-relay"))
}

/// Sends straight to the dashboard through `sluice-relay direct`, killed at `budget`.
fn direct_send(config: &Config, lines: &[String], budget: Duration) -> Result<(), String> {
    let binary = relay_binary().ok_or("no sluice-relay binary")?;
    let mut child = Command::new(binary)
        .arg("direct")
        .arg("--url")
        .arg(&config.url)
        .arg("--budget-ms")
        .arg(budget.as_millis().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(lines.join("\n").as_bytes());
    }
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait().map(|status| status.success()));
    });
    match finished.recv_timeout(budget) {
        Ok(Ok(true)) => Ok(()),
        Ok(_) => Err("direct send failed".to_string()),
        Err(_) => Err("direct send timed out".to_string()),
    }
}

/// Starts a relay in the background and waits until one is listening (ours, or another
/// hook's that won the race: only one relay ever holds the lock).
fn start_relay(config: &Config, budget: Duration) -> bool {
    let Some(exe) = relay_binary() else {
        return false;
    };
    let child = Command::new(exe)
        .arg("relay")
        .arg("--notify-ready")
        .arg("--url")
        .arg(&config.url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group: it outlives this hook and its terminal.
        .process_group(0)
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    let Some(stdout) = child.stdout.take() else {
        return false;
    };
    // The relay prints one line once a relay listens; read it without blocking past budget.
    let (ready, readiness) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let ok = BufReader::new(stdout).read_line(&mut line).is_ok() && line.trim() == "ready";
        let _ = ready.send(ok);
    });
    readiness.recv_timeout(budget).unwrap_or(false)
}

fn spool_lines(config: &Config, lines: &[String]) -> std::io::Result<()> {
    let spool = Spool::new(&config.state_dir, config.spool_max_bytes)?;
    for line in lines {
        if let Some(payload) = line.strip_prefix("E ") {
            spool.append(payload.as_bytes())?;
        }
    }
    Ok(())
}

/// The payloads of event lines.
pub fn payloads(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("E "))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}
