//! The relay: one long-lived process per user that keeps the dashboard connections, the
//! breaker and the batching across hook processes, and the spool.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_socketio_sink::{Emit, SinkError, SocketIoSink};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Notify};

use sluice_hook::config::Config;
use sluice_hook::protocol;
use sluice_hook::spool::Spool;

/// Counters of the relay itself.
#[derive(Debug, Default)]
struct Counts {
    events: AtomicU64,
    bad_inputs: AtomicU64,
    delivered: AtomicU64,
    replayed: AtomicU64,
    spool_dropped: AtomicU64,
    retries: AtomicU64,
    /// Records in the spool not yet delivered (counted once at start, then kept up to date,
    /// so that stats never read the backlog).
    pending: AtomicU64,
}

struct Relay {
    config: Config,
    spool: Spool,
    sink: SocketIoSink,
    counts: Counts,
    new_events: Notify,
    last_event: Mutex<Instant>,
    started: Instant,
    stop: watch::Sender<bool>,
}

/// Runs the relay until it is idle, told to quit, or sent SIGTERM. With `notify_ready`,
/// prints `ready` on stdout once a relay (this one or another) listens.
pub(crate) fn run(config: Config, notify_ready: bool) -> i32 {
    if let Err(error) = prepare_dirs(&config) {
        eprintln!("sluice-hook relay: {error}");
        return 1;
    }
    let Ok(lock) = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(config.relay_lock())
    else {
        return 1;
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sluice-hook relay: {error}");
            return 1;
        }
    };
    if lock.try_lock().is_err() {
        // Another relay holds the lock: wait until it listens, then say so.
        if notify_ready {
            let socket = config.socket();
            let up = runtime.block_on(async {
                for _ in 0..200 {
                    if UnixStream::connect(&socket).await.is_ok() {
                        return true;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                false
            });
            if up {
                println!("ready");
            }
        }
        return 0;
    }
    let code = runtime.block_on(serve(config, notify_ready));
    drop(lock);
    code
}

fn prepare_dirs(config: &Config) -> std::io::Result<()> {
    for dir in [&config.runtime_dir, &config.state_dir] {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        fs::set_permissions(dir, Permissions::from_mode(0o700))?;
    }
    Ok(())
}

async fn serve(config: Config, notify_ready: bool) -> i32 {
    let socket = config.socket();
    let _ = fs::remove_file(&socket); // stale, from a relay that died: we hold the lock
    let listener = match UnixListener::bind(&socket) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot listen");
            return 1;
        }
    };
    let _ = fs::set_permissions(&socket, Permissions::from_mode(0o600));
    let spool = match Spool::new(&config.state_dir, config.spool_max_bytes) {
        Ok(spool) => spool,
        Err(error) => {
            tracing::error!(%error, "cannot open the spool");
            return 1;
        }
    };
    let sink = match SocketIoSink::builder(config.url.clone())
        .open_backoff(sluice_breaker::OpenDuration::Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: true,
        })
        .build()
    {
        Ok(sink) => sink,
        Err(error) => {
            tracing::error!(%error, "cannot build the sink");
            return 1;
        }
    };
    let (stop, stopped) = watch::channel(false);
    let counts = Counts::default();
    counts
        .pending
        .store(spool.depth().records, Ordering::Relaxed);
    let relay = Arc::new(Relay {
        config,
        spool,
        sink,
        counts,
        new_events: Notify::new(),
        last_event: Mutex::new(Instant::now()),
        started: Instant::now(),
        stop,
    });
    tracing::info!(url = %relay.config.url, socket = %socket.display(), "relay listening");
    if notify_ready {
        println!("ready");
        let _ = std::io::stdout().flush();
    }
    let sender = tokio::spawn(send_loop(Arc::clone(&relay), stopped.clone()));
    let watchdog = tokio::spawn(watch_idle(Arc::clone(&relay)));
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut stopped_accept = stopped.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(handle(Arc::clone(&relay), stream));
                }
            }
            _ = stopped_accept.changed() => break,
            Some(()) = async { match terminate.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGTERM: flushing and exiting");
                let _ = relay.stop.send(true);
                break;
            }
        }
    }
    drop(listener);
    let _ = fs::remove_file(&socket);
    let _ = sender.await;
    watchdog.abort();
    let _ = relay.sink.shutdown(Some(Duration::from_secs(2))).await;
    tracing::info!("relay stopped");
    0
}

async fn handle(relay: Arc<Relay>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match line.as_bytes().first().copied() {
            Some(protocol::EVENT) => {
                let payload = line.get(2..).unwrap_or_default().as_bytes().to_vec();
                relay.accept(payload).await
            }
            Some(protocol::BAD_INPUT) => {
                relay.counts.bad_inputs.fetch_add(1, Ordering::Relaxed);
                protocol::ACK.to_vec()
            }
            Some(protocol::STATS) => {
                let mut stats = relay.stats().to_string();
                stats.push('\n');
                stats.into_bytes()
            }
            Some(protocol::QUIT) => {
                let _ = relay.stop.send(true);
                protocol::ACK.to_vec()
            }
            _ => b"N unknown request\n".to_vec(),
        };
        if write.write_all(&answer).await.is_err() {
            return;
        }
    }
}

impl Relay {
    /// Spools an event, then acknowledges it: from here on it survives a crash.
    async fn accept(self: &Arc<Self>, payload: Vec<u8>) -> Vec<u8> {
        self.counts.events.fetch_add(1, Ordering::Relaxed);
        *self
            .last_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let relay = Arc::clone(self);
        let spooled = tokio::task::spawn_blocking(move || relay.spool.append(&payload)).await;
        match spooled {
            Ok(Ok(dropped)) => {
                self.counts
                    .spool_dropped
                    .fetch_add(dropped, Ordering::Relaxed);
                // One more waiting, less those the cap pushed out.
                let pending = &self.counts.pending;
                pending.fetch_add(1, Ordering::Relaxed);
                let _ = pending.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_sub(dropped))
                });
                self.new_events.notify_one();
                protocol::ACK.to_vec()
            }
            Ok(Err(error)) => format!("N spool: {error}\n").into_bytes(),
            Err(error) => format!("N {error}\n").into_bytes(),
        }
    }

    fn stats(&self) -> Value {
        let mut stats = serde_json::to_value(self.sink.stats()).unwrap_or_else(|_| json!({}));
        let counts = &self.counts;
        if let Some(map) = stats.as_object_mut() {
            for (key, value) in [
                ("spool_depth", json!(counts.pending.load(Ordering::Relaxed))),
                ("spool_bytes", json!(self.spool.bytes())),
                (
                    "spool_dropped",
                    json!(counts.spool_dropped.load(Ordering::Relaxed)),
                ),
                ("hook_events", json!(counts.events.load(Ordering::Relaxed))),
                (
                    "hook_bad_inputs",
                    json!(counts.bad_inputs.load(Ordering::Relaxed)),
                ),
                ("delivered", json!(counts.delivered.load(Ordering::Relaxed))),
                ("replayed", json!(counts.replayed.load(Ordering::Relaxed))),
                (
                    "send_retries",
                    json!(counts.retries.load(Ordering::Relaxed)),
                ),
                ("relay_pid", json!(std::process::id())),
                ("uptime_secs", json!(self.started.elapsed().as_secs())),
            ] {
                map.insert(key.to_string(), value);
            }
        }
        stats
    }
}

/// Reads the spool in order, emits, and moves the cursor past what was delivered; on a
/// failure, waits and starts again from the first undelivered event.
async fn send_loop(relay: Arc<Relay>, mut stopped: watch::Receiver<bool>) {
    let mut retrying = false;
    loop {
        let spool = relay.spool.clone();
        let found = tokio::task::spawn_blocking(move || {
            let cursor = spool.read_cursor();
            spool.read(cursor, 500).map(|found| (cursor, found))
        })
        .await;
        let Ok(Ok((cursor, found))) = found else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if found.records.is_empty() {
            // The backlog is gone: later deliveries are no longer replays.
            retrying = false;
            if *stopped.borrow() {
                return;
            }
            tokio::select! {
                () = relay.new_events.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stopped.changed() => {}
            }
            continue;
        }
        let outcomes: Vec<_> = found
            .records
            .into_iter()
            .map(|(end, payload)| {
                let emit = serde_json::from_slice::<Value>(&payload)
                    .ok()
                    .map(|value| relay.sink.emit(Emit::new("claude_event", value)));
                (end, emit)
            })
            .collect();
        let mut committed = cursor;
        let mut committed_records = 0;
        let mut failure: Option<SinkError> = None;
        let mut delivered = 0;
        for (end, outcome) in outcomes {
            match outcome {
                // Empty (a skipped torn record) or not JSON: nothing to send.
                None if failure.is_none() => {
                    committed = end;
                    committed_records += 1;
                }
                None => {}
                Some(outcome) => match outcome.await {
                    Ok(()) if failure.is_none() => {
                        committed = end;
                        committed_records += 1;
                        delivered += 1;
                    }
                    Ok(()) => {}
                    Err(error) => {
                        failure.get_or_insert(error);
                    }
                },
            }
        }
        relay
            .counts
            .delivered
            .fetch_add(delivered, Ordering::Relaxed);
        let _ = relay
            .counts
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(committed_records))
            });
        if retrying {
            relay
                .counts
                .replayed
                .fetch_add(delivered, Ordering::Relaxed);
        }
        if committed != cursor {
            let spool = relay.spool.clone();
            let _ = tokio::task::spawn_blocking(move || spool.commit(committed)).await;
        }
        match failure {
            None => {}
            Some(error) => {
                retrying = true;
                relay.counts.retries.fetch_add(1, Ordering::Relaxed);
                let wait = match &error {
                    SinkError::BreakerOpen { retry_after } => retry_after
                        .unwrap_or(Duration::from_millis(200))
                        .clamp(Duration::from_millis(20), Duration::from_secs(5)),
                    _ => Duration::from_millis(200),
                };
                tracing::debug!(%error, ?wait, "delivery failed; retrying from the spool");
                if *stopped.borrow() {
                    return; // what is left stays spooled for the next relay
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stopped.changed() => {}
                }
            }
        }
    }
}

/// Stops the relay once it has had no event for the idle period and has delivered all.
async fn watch_idle(relay: Arc<Relay>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1).min(relay.config.idle)).await;
        let idle = relay
            .last_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed();
        if idle < relay.config.idle {
            continue;
        }
        if relay.counts.pending.load(Ordering::Relaxed) == 0 {
            tracing::info!(?idle, "idle: exiting");
            let _ = relay.stop.send(true);
            return;
        }
    }
}

/// Sends logs to a size-capped file in the state directory (or stderr when verbose).
pub(crate) fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    if config.verbose {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    let path = config.state_dir.join("relay.log");
    if let Some(file) = capped_log(&path) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_writer(Mutex::new(file))
            .try_init();
    }
}

/// The log file, rotated to `.1` once past 1 MiB.
fn capped_log(path: &Path) -> Option<File> {
    let _ = fs::create_dir_all(path.parent()?);
    if fs::metadata(path).is_ok_and(|m| m.len() > 1 << 20) {
        let _ = fs::rename(path, path.with_extension("log.1"));
    }
    OpenOptions::new().create(true).append(true).open(path).ok()
}
