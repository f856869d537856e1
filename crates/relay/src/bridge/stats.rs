//! The bridge's counters, and its stats socket: `sluice-hook stats --bridge` asks every
//! bridge running as this user, as `sluice-hook stats` asks the relay.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::Bridge;
use crate::config::without_credentials;
use crate::destination::Destination;
use crate::{protocol, safety, socket};

/// How long a client of the stats socket may take to ask.
const ASK_WITHIN: Duration = Duration::from_secs(1);

/// How old a socket nobody listens on must be before `query_all` removes it.
const STALE_AFTER: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) received: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) nakd: AtomicU64,
    pub(super) terminated: AtomicU64,
    pub(super) redelivered: AtomicU64,
    pub(super) set_aside: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn json(&self, bridge: &Bridge, destination: &dyn Destination) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "bridge": {
                "pid": std::process::id(),
                "from": without_credentials(&bridge.from),
                "to": without_credentials(&bridge.to),
                "durable": bridge.durable,
                "received": get(&self.received),
                "delivered": get(&self.delivered),
                "nakd": get(&self.nakd),
                "terminated": get(&self.terminated),
                "redelivered": get(&self.redelivered),
                "set_aside": get(&self.set_aside),
            },
            "sink": destination.stats(),
        })
    }
}

/// The stats socket of the bridge with process id `pid`: one per process, since bridges on
/// one durable may run side by side.
fn socket_path(runtime_dir: &Path, pid: u32) -> PathBuf {
    runtime_dir.join(format!("bridge-{pid}.sock"))
}

/// The bridge's stats socket, removed when dropped.
#[derive(Debug)]
pub(super) struct StatsSocket {
    path: PathBuf,
}

impl Drop for StatsSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds this process's stats socket in `runtime_dir` (made private if missing).
pub(super) fn listen(runtime_dir: &Path) -> io::Result<(StatsSocket, tokio::net::UnixListener)> {
    safety::private_dir(runtime_dir)?;
    let path = socket_path(runtime_dir, std::process::id());
    // A socket left by a dead process of the same id, in our own private directory.
    let _ = std::fs::remove_file(&path);
    let listener = socket::bind(&path)?;
    let socket = StatsSocket { path };
    listener.set_nonblocking(true)?;
    Ok((socket, tokio::net::UnixListener::from_std(listener)?))
}

/// Answers each client's stats request (`S`) with one line of JSON from `stats`.
pub(super) async fn answer(
    listener: tokio::net::UnixListener,
    stats: impl Fn() -> Value + Send + Sync + 'static,
) {
    let stats = std::sync::Arc::new(stats);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors, say: the socket stays, and answers once it can.
                tracing::debug!(%error, "stats socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if safety::check_peer(&stream).is_err() {
            continue;
        }
        let stats = std::sync::Arc::clone(&stats);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut line = String::new();
            let mut read = tokio::io::BufReader::new(read.take(64));
            let asked = tokio::time::timeout(ASK_WITHIN, read.read_line(&mut line)).await;
            if matches!(asked, Ok(Ok(_))) && line.as_bytes().first() == Some(&protocol::STATS) {
                let mut answer = stats().to_string();
                answer.push('\n');
                let _ = write.write_all(answer.as_bytes()).await;
            }
        });
    }
}

/// The stats of every bridge running as this user with `runtime_dir`, one JSON value each,
/// oldest socket first. A socket nobody listens on any more (its bridge was killed) is
/// removed.
///
/// # Errors
///
/// When `runtime_dir` is not a private directory of this user, or cannot be read; a bridge
/// that does not answer is left out.
pub fn query_all(runtime_dir: &Path) -> io::Result<Vec<Value>> {
    // The relay's client trusts its directory only after the same check.
    safety::check_dir(runtime_dir)?;
    let mut sockets: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(runtime_dir)?
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Sockets only: a link or a file of that name is never followed, nor removed.
            name.starts_with("bridge-")
                && name.ends_with(".sock")
                && entry.file_type().is_ok_and(|kind| kind.is_socket())
        })
        .map(|entry| {
            let made = entry
                .metadata()
                .and_then(|meta| meta.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (made, entry.path())
        })
        .collect();
    sockets.sort();
    let mut all = Vec::new();
    for (made, path) in sockets {
        match ask(&path) {
            Ok(stats) => all.push(stats),
            // Refused: nobody listens. A socket made this instant may be between its bind
            // and its listen, so only an older one is taken for a dead bridge's.
            Err(error)
                if error.kind() == io::ErrorKind::ConnectionRefused
                    && made.elapsed().is_ok_and(|age| age > STALE_AFTER) =>
            {
                let _ = std::fs::remove_file(&path);
            }
            Err(_) => {}
        }
    }
    Ok(all)
}

fn ask(path: &Path) -> io::Result<Value> {
    let mut stream = socket::connect(path, ASK_WITHIN)?;
    safety::check_peer(&stream)?;
    stream.write_all(&[protocol::STATS, b'\n'])?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    serde_json::from_str(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}
