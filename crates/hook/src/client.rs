//! The hook itself: what Claude Code runs once per event. Plain blocking I/O, no runtime:
//! it must start, hand the event over and exit in a millisecond or two.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::large;
use crate::normalize::{self, BadInput, MAX_INPUT};
use sluice_relay::config::Config;
use sluice_relay::size::{self, Fit};
use sluice_relay::{protocol, safety, socket};
use sluice_store::{NewEvent, Store};

/// How long a running relay has to acknowledge an event before the hook spools it itself.
const RELAY_ACK_BUDGET: Duration = Duration::from_millis(50);
/// How long a relay the hook just started has to say it listens.
const RELAY_START_BUDGET: Duration = Duration::from_millis(300);
/// The longest a hook waits for another process's write lock on the store.
const STORE_BUSY_BUDGET: Duration = Duration::from_millis(250);

/// One event ready to hand on: its id, its payload within the size limit, and whether the
/// size guard had to shrink it.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub event_id: String,
    pub json: String,
    pub oversized: bool,
}

/// Reads the event on stdin and hands it on. Always succeeds from Claude Code's point of view:
/// a problem is one line on stderr.
pub fn run(config: &Config) {
    if let Some(missing) = config.missing_state_dir() {
        // Nowhere to keep the event, nor a private place for a relay's socket.
        eprintln!("sluice-hook: event not delivered: {missing}");
        return;
    }
    let deadline = Instant::now() + config.budget;
    let mut input = Vec::new();
    let mut stdin = std::io::stdin().lock();
    let read = (&mut stdin)
        .take(MAX_INPUT as u64 + 1)
        .read_to_end(&mut input);
    let big = input.len() > MAX_INPUT;
    let parsed = match read {
        Ok(_) if big => large::parse(input, stdin, deadline),
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
                Duration::from_millis(50),
            );
            return;
        }
    };
    let mut payloads = normalize::payloads(hook_input);
    if big {
        for payload in &mut payloads {
            // Measured on the few bytes a stub keeps of the output, it would mislead.
            if let Some(data) = payload.get_mut("data").and_then(Value::as_object_mut) {
                data.remove("output_size");
            }
        }
    }
    let mut events = prepare(payloads, config.max_event_bytes);
    // A stub is an event the size guard had to shrink.
    events.iter_mut().for_each(|event| event.oversized |= big);
    let started = Instant::now();
    match deliver(config, &events, deadline) {
        Ok(how) if config.verbose => {
            eprintln!(
                "sluice-hook: {} event(s) {how} in {:.2?}",
                events.len(),
                started.elapsed()
            );
        }
        Ok(_) => {}
        Err(problem) => eprintln!("sluice-hook: event not delivered: {problem}"),
    }
}

/// Gives each payload a time-ordered id (`data.event_id`, so any dashboard can drop
/// duplicates) and fits it under `max_event_bytes`.
pub fn prepare(payloads: Vec<Value>, max_event_bytes: usize) -> Vec<Prepared> {
    payloads
        .into_iter()
        .map(|mut payload| {
            let event_id = uuid::Uuid::now_v7().to_string();
            if let Some(data) = payload.get_mut("data").and_then(Value::as_object_mut) {
                data.insert("event_id".to_string(), json!(event_id));
            }
            let (json, fit) = size::fit(payload, max_event_bytes);
            Prepared {
                event_id,
                json,
                oversized: fit != Fit::Unchanged,
            }
        })
        .collect()
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Relay, else a relay we start, else the store, else a direct send; says which.
fn deliver(
    config: &Config,
    events: &[Prepared],
    deadline: Instant,
) -> Result<&'static str, String> {
    let lines: Vec<String> = events
        .iter()
        .map(|e| protocol::event_line(&e.event_id, &e.json, e.oversized))
        .collect();
    match send_lines(config, &lines, RELAY_ACK_BUDGET.min(remaining(deadline))) {
        Ok(()) => return Ok("handed to the relay"),
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("sluice-hook: {error}; the event goes to the spool");
        }
        Err(error) if config.spawn_relay && no_relay(&error) => {
            if start_relay(config, RELAY_START_BUDGET.min(remaining(deadline)))
                && send_lines(config, &lines, RELAY_ACK_BUDGET.min(remaining(deadline))).is_ok()
            {
                return Ok("handed to a relay just started");
            }
        }
        Err(error) if config.verbose => eprintln!("sluice-hook: relay: {error}"),
        Err(_) => {}
    }
    match store_events(config, events, STORE_BUSY_BUDGET.min(remaining(deadline))) {
        Ok(()) => Ok("spooled for the relay"),
        Err(store_error) => direct_send(config, &lines, remaining(deadline))
            .map(|()| "sent directly")
            .map_err(|error| format!("spool: {store_error}; direct send: {error}")),
    }
}

/// Whether a failure means no relay listens, or the one that did is dying (a killed relay's
/// last thread can still hold the socket for a moment), rather than a relay that is slow.
fn no_relay(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{
        BrokenPipe, ConnectionRefused, ConnectionReset, NotFound, UnexpectedEof,
    };
    matches!(
        error.kind(),
        NotFound | ConnectionRefused | ConnectionReset | BrokenPipe | UnexpectedEof
    )
}

/// Connects to the relay's socket, in a runtime directory we trust, served by our own user;
/// the connect itself, each write and each read wait at most `budget`.
fn connect(config: &Config, budget: Duration) -> std::io::Result<UnixStream> {
    safety::check_dir(&config.runtime_dir()).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => error,
        _ => std::io::Error::new(std::io::ErrorKind::PermissionDenied, error.to_string()),
    })?;
    let stream = socket::connect(&config.socket(), budget)?;
    safety::check_peer(&stream)?;
    Ok(stream)
}

/// Sends request lines to the relay and waits for one acknowledgement each.
pub fn send_lines(config: &Config, lines: &[String], budget: Duration) -> std::io::Result<()> {
    let mut stream = connect(config, budget)?;
    let mut request = String::new();
    for line in lines {
        request.push_str(line);
        request.push('\n');
    }
    stream.write_all(request.as_bytes())?;
    let mut reader = BufReader::new(stream);
    for _ in lines {
        let mut answer = String::new();
        if reader.read_line(&mut answer)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if answer.as_bytes() != protocol::ACK {
            return Err(std::io::Error::other(format!("relay answered {answer:?}")));
        }
    }
    Ok(())
}

/// Asks the relay for one answer line (stats).
pub fn request(config: &Config, line: &str, budget: Duration) -> std::io::Result<String> {
    let mut stream = connect(config, budget)?;
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
        // The hook's own setting, which may have come as a flag rather than a variable.
        .arg("--delivery")
        .arg(config.delivery.name())
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

/// Writes the events into the store itself (no relay answered in time).
fn store_events(config: &Config, events: &[Prepared], busy: Duration) -> Result<(), String> {
    safety::private_dir(&config.state_dir).map_err(|e| e.to_string())?;
    let mut store = Store::open(&config.store_path(), config.spool_max_bytes, busy)
        .map_err(|e| sluice_store::error_chain(&e))?;
    let new: Vec<NewEvent<'_>> = events
        .iter()
        .map(|e| NewEvent {
            event_id: &e.event_id,
            payload: &e.json,
            oversized: e.oversized,
        })
        .collect();
    store
        .append(&new)
        .map(drop)
        .map_err(|e| sluice_store::error_chain(&e))
}
