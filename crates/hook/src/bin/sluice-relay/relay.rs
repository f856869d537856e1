//! The relay: one long-lived process per user and dashboard URL that keeps the dashboard
//! connections, the breaker and the batching across hook processes, and the store.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_socketio_sink::SocketIoSink;
use tokio::net::UnixStream;
use tokio::sync::{watch, Notify};

use sluice_hook::config::{Config, Delivery};
use sluice_hook::store::Store;
use sluice_hook::{error_chain, safety};

use crate::deliver::{self, MAX_RETRY_WAIT, ROUND_BYTES, ROUND_EVENTS};
use crate::ingest;
use crate::store_worker::StoreWorker;

/// How long a stopping relay waits for its round in flight to finish and be recorded, then
/// for the sink and the store to close: a stop takes at most 4 s.
const ROUND_GRACE: Duration = Duration::from_secs(2);
const STEP_GRACE: Duration = Duration::from_secs(1);

/// Counters of the relay itself (the store keeps its own, across restarts).
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) events: AtomicU64,
    pub(crate) bad_inputs: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) replayed: AtomicU64,
    pub(crate) retries: AtomicU64,
    /// Delivery rounds (about one sink batch each): `delivered / rounds` is the mean batch.
    pub(crate) rounds: AtomicU64,
    /// Stored payloads that were not JSON, let go.
    pub(crate) unreadable: AtomicU64,
}

pub(crate) struct Relay {
    pub(crate) config: Config,
    pub(crate) store: StoreWorker,
    pub(crate) sink: SocketIoSink,
    pub(crate) counts: Counts,
    pub(crate) new_events: Notify,
    pub(crate) last_event: Mutex<Instant>,
    /// The last delivery failure with its causes, for `stats`.
    pub(crate) last_error: Mutex<Option<String>>,
    started: Instant,
    pub(crate) stop: watch::Sender<bool>,
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
        // Another relay holds the lock. Wait until it answers (then say so and leave it the
        // work) or lets the lock go (a relay that was dying: then take over).
        let socket = config.socket();
        let holder = runtime.block_on(async {
            for _ in 0..200 {
                if answers(&socket).await {
                    return Holder::Answers;
                }
                if lock.try_lock().is_ok() {
                    return Holder::Gone;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Holder::Silent
        });
        match holder {
            Holder::Gone => {}
            Holder::Answers => {
                if notify_ready {
                    say_ready();
                }
                return 0;
            }
            Holder::Silent => return 0,
        }
    }
    let code = runtime.block_on(serve(config, notify_ready));
    drop(lock);
    code
}

/// What became of the relay that held the lock when another started.
enum Holder {
    Answers,
    Gone,
    Silent,
}

/// Whether a relay answers a stats request on `socket` within 100 ms (a dying relay's socket
/// can still take a connection).
async fn answers(socket: &Path) -> bool {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let asked = async {
        let mut stream = UnixStream::connect(socket).await?;
        stream.write_all(b"S\n").await?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await?;
        Ok::<_, std::io::Error>(!line.is_empty())
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(100), asked).await,
        Ok(Ok(true))
    )
}

/// Tells the hook that started us that a relay listens. That hook may have given up waiting
/// and exited: a closed pipe is no reason to stop (`println!` would panic on it).
fn say_ready() {
    let mut stdout = std::io::stdout();
    let _ = stdout.write_all(b"ready\n").and_then(|()| stdout.flush());
}

fn prepare_dirs(config: &Config) -> std::io::Result<()> {
    safety::private_dir(&config.runtime_dir)?;
    safety::private_dir(&config.state_dir)
}

async fn serve(config: Config, notify_ready: bool) -> i32 {
    let path = config.store_path();
    let store = match tokio::task::spawn_blocking({
        let (path, max) = (path.clone(), config.spool_max_bytes);
        move || Store::open_checked(&path, max)
    })
    .await
    {
        Ok(Ok((store, opened))) => {
            if let Some((aside, cause)) = &opened.damaged {
                tracing::error!(
                    aside = %aside.display(),
                    cause,
                    salvaged = opened.salvaged,
                    "the store was damaged: set it aside and started a fresh one"
                );
            }
            store
        }
        Ok(Err(error)) => {
            tracing::error!(error = error_chain(&error), path = %path.display(), "cannot open the store");
            return 1;
        }
        Err(error) => {
            tracing::error!(%error, "cannot open the store");
            return 1;
        }
    };
    let store = match StoreWorker::spawn(store, path, config.spool_max_bytes) {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, "cannot start the store's thread");
            return 1;
        }
    };
    let sink = match SocketIoSink::builder(config.url.clone())
        .delivery(match config.delivery {
            Delivery::Acknowledged => sluice_socketio_sink::Delivery::Acknowledged,
            Delivery::Written => sluice_socketio_sink::Delivery::Written,
        })
        .open_backoff(sluice_socketio_sink::OpenDuration::Backoff {
            initial: Duration::from_millis(250),
            max: MAX_RETRY_WAIT,
            multiplier: 2.0,
            jitter: true,
        })
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .max_items(ROUND_EVENTS)
        .max_bytes(ROUND_BYTES)
        .build()
    {
        Ok(sink) => sink,
        Err(error) => {
            tracing::error!(%error, "cannot build the sink");
            return 1;
        }
    };
    let socket = config.socket();
    let _ = fs::remove_file(&socket); // stale, from a relay that died: we hold the lock
    let listener = match std::os::unix::net::UnixListener::bind(&socket)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
    {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, "cannot listen");
            return 1;
        }
    };
    let _ = fs::set_permissions(&socket, Permissions::from_mode(0o600));
    let (stop, stopped) = watch::channel(false);
    let relay = Arc::new(Relay {
        config,
        store,
        sink,
        counts: Counts::default(),
        new_events: Notify::new(),
        last_event: Mutex::new(Instant::now()),
        last_error: Mutex::new(None),
        started: Instant::now(),
        stop,
    });
    tracing::info!(url = %relay.config.url, socket = %socket.display(), "relay listening");
    if notify_ready {
        say_ready();
    }
    let sender = tokio::spawn(deliver::run(Arc::clone(&relay), stopped.clone()));
    let watchdog = tokio::spawn(watch_idle(Arc::clone(&relay)));
    if let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            if terminate.recv().await.is_some() {
                tracing::info!("SIGTERM: exiting");
                let _ = relay.stop.send(true);
            }
        });
    }
    let listening = ingest::listen(Arc::clone(&relay), listener, stopped.clone());
    if let Err(error) = relay.store.serve_beside(listening) {
        tracing::error!(%error, "cannot serve the hooks");
        let _ = relay.stop.send(true);
    }
    let mut stopped = stopped;
    let _ = stopped.wait_for(|stop| *stop).await;
    let _ = fs::remove_file(&socket);
    let _ = tokio::time::timeout(ROUND_GRACE, sender).await;
    watchdog.abort();
    let _ = relay.sink.shutdown(Some(STEP_GRACE)).await;
    let _ = tokio::time::timeout(STEP_GRACE, relay.store.close()).await;
    tracing::info!("relay stopped");
    0
}

impl Relay {
    pub(crate) async fn stats(&self) -> Value {
        let mut stats = serde_json::to_value(self.sink.stats()).unwrap_or_else(|_| json!({}));
        let store = self.store.counters().await;
        let counts = &self.counts;
        let load = |counter: &AtomicU64| json!(counter.load(Ordering::Relaxed));
        if let Some(map) = stats.as_object_mut() {
            let mut set = |key: &str, value: Value| {
                map.insert(key.to_string(), value);
            };
            match store {
                Ok(store) => {
                    set("spool_depth", json!(store.depth));
                    set("spool_bytes", json!(store.bytes));
                    set("spool_dropped", json!(store.dropped));
                    set("spool_oversized", json!(store.oversized));
                    set("spool_damaged", json!(store.damaged));
                }
                Err(error) => set("spool_error", json!(error)),
            }
            set("hook_events", load(&counts.events));
            set("hook_bad_inputs", load(&counts.bad_inputs));
            set("delivered", load(&counts.delivered));
            set("replayed", load(&counts.replayed));
            set("send_retries", load(&counts.retries));
            set("delivery_rounds", load(&counts.rounds));
            set("unreadable", load(&counts.unreadable));
            let last_error = self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            set("last_delivery_error", json!(last_error));
            set("relay_pid", json!(std::process::id()));
            set("uptime_secs", json!(self.started.elapsed().as_secs()));
        }
        stats
    }
}

/// Stops the relay once it has had no event for the idle period and its store is empty.
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
        if relay.store.counters().await.is_ok_and(|c| c.depth == 0) {
            tracing::info!(?idle, "idle: exiting");
            let _ = relay.stop.send(true);
            return;
        }
    }
}
