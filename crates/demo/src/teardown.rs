//! The demo's dealings with the relay its hooks started: reading its stats, sampling its
//! spool depth, and stopping it (politely, then for good) when the demo ends or is stopped.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The deepest spool the watcher saw.
pub(crate) static DEEPEST: AtomicU64 = AtomicU64::new(0);

/// One request line to the relay and its one answer line.
async fn ask(socket: &Path, request: &[u8]) -> Option<String> {
    let stream = tokio::time::timeout(Duration::from_millis(500), UnixStream::connect(socket))
        .await
        .ok()?
        .ok()?;
    let (read, mut write) = stream.into_split();
    write.write_all(request).await.ok()?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(1),
        BufReader::new(read).read_line(&mut line),
    )
    .await
    .ok()?
    .ok()?;
    Some(line)
}

/// The relay's stats, if one answers.
pub(crate) async fn relay_stats(socket: &Path) -> Option<Value> {
    serde_json::from_str(&ask(socket, b"S\n").await?).ok()
}

/// Samples the relay's spool depth every 50 ms into [`DEEPEST`], until aborted.
pub(crate) async fn watch_depth(socket: std::path::PathBuf) {
    loop {
        if let Some(stats) = relay_stats(&socket).await {
            let depth = stats["spool_depth"].as_u64().unwrap_or(0);
            DEEPEST.fetch_max(depth, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Stops every relay serving `runtime_dir`: asks it to quit, gives it a second, then kills
/// what is left (its spool is about to be deleted with the demo's directory).
pub(crate) async fn stop_relay(runtime_dir: &Path) {
    // One relay per dashboard URL, each with its own socket.
    let sockets = std::fs::read_dir(runtime_dir)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "sock").then_some(path)
        });
    for socket in sockets {
        let _ = ask(&socket, b"Q\n").await;
    }
    for _ in 0..20 {
        if relays_of(runtime_dir).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for pid in relays_of(runtime_dir) {
        let _ = tokio::process::Command::new("kill")
            .arg("-KILL")
            .arg(pid.to_string())
            .status()
            .await;
    }
}

/// Live `sluice-relay` processes whose environment names `runtime_dir` (the hooks hand
/// theirs down to the relay they start).
pub(crate) fn relays_of(runtime_dir: &Path) -> Vec<u32> {
    let marker = format!("SLUICE_RUNTIME_DIR={}", runtime_dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let path = entry.path();
            let cmdline = std::fs::read(path.join("cmdline")).ok()?;
            if !String::from_utf8_lossy(&cmdline).contains("sluice-relay") {
                return None;
            }
            let environ = std::fs::read(path.join("environ")).ok()?;
            let ours = environ
                .split(|b| *b == 0)
                .any(|var| var == marker.as_bytes());
            // A zombie has no environment left: it is gone already.
            ours.then_some(pid)
        })
        .collect()
}
