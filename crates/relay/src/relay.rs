//! The relay: one long-lived process per user and dashboard URL that keeps the dashboard
//! connections, the breaker and the batching across hook processes, and the store.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio::sync::{watch, Notify, Semaphore};

use crate::config::{self, Config};
use crate::safety;
use sluice_store::error_chain;
use sluice_store::Store;

use crate::deliver::{self, ROUND_BYTES, ROUND_EVENTS};
use crate::destination::Destination;
use crate::ingest;
use crate::nats::Nats;
use crate::owner::{BoundSocket, Ownership};
use crate::socketio::SocketIo;
use crate::status;
use crate::store_worker::StoreWorker;

/// How long a stopping relay waits for its round in flight to finish and be recorded, then
/// for the sink and the store to close: a stop takes at most 4 s.
const ROUND_GRACE: Duration = Duration::from_secs(2);
const STEP_GRACE: Duration = Duration::from_secs(1);
/// How long a relay started while another holds the runtime lock waits for it to answer or
/// exit: longer than a stop takes.
const LOCK_WAIT: Duration = Duration::from_secs(10);
/// How long closing waits for the hooks' connections in progress to be answered.
const CLIENTS_GRACE: Duration = Duration::from_millis(500);
/// How long an idle relay that found events in its store as it closed keeps delivering
/// them before it leaves the rest to the next relay.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

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
    /// Events set aside into the dead letters by this relay.
    pub(crate) set_aside: AtomicU64,
}

pub(crate) struct Relay {
    pub(crate) config: Config,
    pub(crate) store: StoreWorker,
    pub(crate) destination: Box<dyn Destination>,
    pub(crate) counts: Counts,
    /// Rung when events reach the store: this relay's hooks', or another process's commits.
    pub(crate) new_events: Arc<Notify>,
    /// Whether this relay owns the store and so delivers it.
    pub(crate) delivers: AtomicBool,
    pub(crate) socket: BoundSocket,
    /// The hooks' connections being served; all of its permits once ingest has closed.
    pub(crate) clients: Arc<Semaphore>,
    /// Set first when the relay winds down: no hook's event is taken after it.
    pub(crate) closing: watch::Sender<bool>,
    pub(crate) last_event: Mutex<Instant>,
    /// The last delivery failure with its causes, for `stats`.
    pub(crate) last_error: Mutex<Option<String>>,
    started: Instant,
    pub(crate) stop: watch::Sender<bool>,
}

/// Runs the relay until it is idle, told to quit, or sent SIGTERM. With `notify_ready`,
/// prints `ready` on stdout once a relay (this one or another) listens.
pub fn run(config: Config, notify_ready: bool) -> i32 {
    if let Some(missing) = config.missing_state_dir() {
        eprintln!("sluice-hook relay: {missing}");
        return 1;
    }
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
        // work) or lets the lock go (a relay that was stopping: then take over). A stop
        // takes up to 5 s, so a hook that came meanwhile still gets its relay.
        let socket = config.socket();
        let holder = runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + LOCK_WAIT;
            while tokio::time::Instant::now() < deadline {
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
        let stream = crate::socket::connect(socket, Duration::from_millis(100))?;
        stream.set_nonblocking(true)?;
        let mut stream = UnixStream::from_std(stream)?;
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
    safety::private_dir(&config.runtime_dir())?;
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
    let ownership = match Ownership::claim(&config.store_lock()) {
        Ok(ownership) => ownership,
        Err(error) => {
            tracing::error!(%error, "cannot open the store's lock");
            return 1;
        }
    };
    let new_events = Arc::new(Notify::new());
    let store = match StoreWorker::spawn(
        store,
        path,
        config.spool_max_bytes,
        Arc::clone(&new_events),
    )
    .await
    {
        Ok(store) => store,
        Err(error) => {
            tracing::error!(%error, "cannot start the store's thread");
            return 1;
        }
    };
    // The destination's tasks (batching, connections) run on the store's thread, beside
    // delivery: an event goes from the hook to the store to the dashboard without waking
    // another thread.
    let destination: Result<Box<dyn Destination>, String> = if config::is_nats(&config.url) {
        let config = config.clone();
        store
            .serve_beside(async move {
                Nats::build(&config, ROUND_EVENTS)
                    .await
                    .map(|sink| Box::new(sink) as Box<dyn Destination>)
                    .map_err(|error| error_chain(&error))
            })
            .await
            .unwrap_or_else(|error| Err(error.to_string()))
    } else {
        let _store_thread = store.runtime().enter();
        SocketIo::build(&config, ROUND_EVENTS, ROUND_BYTES)
            .map(|sink| Box::new(sink) as Box<dyn Destination>)
            .map_err(|error| error_chain(&*error))
    };
    let destination = match destination {
        Ok(destination) => destination,
        Err(error) => {
            tracing::error!(error, "cannot build the sink");
            return 1;
        }
    };
    let path = config.socket();
    // Stale, from a relay that died: we hold the runtime lock.
    let _ = fs::remove_file(&path);
    let socket = match crate::socket::bind(&path)
        .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
        .and_then(|listener| Ok((BoundSocket::new(path.clone())?, listener)))
    {
        Ok(bound) => bound,
        Err(error) => {
            tracing::error!(%error, socket = %path.display(), "cannot listen");
            return 1;
        }
    };
    let (socket, listener) = socket;
    let _ = fs::set_permissions(&socket.path, Permissions::from_mode(0o600));
    let (stop, stopped) = watch::channel(false);
    let delivers = ownership.is_held();
    let relay = Arc::new(Relay {
        config,
        store,
        destination,
        counts: Counts::default(),
        new_events,
        delivers: AtomicBool::new(delivers),
        socket,
        clients: Arc::new(Semaphore::new(ingest::MAX_CLIENTS)),
        closing: watch::channel(false).0,
        last_event: Mutex::new(Instant::now()),
        last_error: Mutex::new(None),
        started: Instant::now(),
        stop,
    });
    if delivers {
        tracing::info!(url = %config::without_credentials(&relay.config.url), socket = %relay.socket.path.display(), "relay listening");
    } else {
        tracing::info!(url = %config::without_credentials(&relay.config.url), socket = %relay.socket.path.display(),
            "relay listening; another relay delivers this store, so this one stores its hooks' events for it and takes over when it exits");
    }
    if notify_ready {
        say_ready();
    }
    let sender =
        relay
            .store
            .serve_beside(deliver::run(Arc::clone(&relay), ownership, stopped.clone()));
    let watchdog = tokio::spawn(watch_idle(Arc::clone(&relay)));
    // The status event is the Socket.IO dashboard's.
    if !relay.config.status_every.is_zero() && !config::is_nats(&relay.config.url) {
        let every = relay.config.status_every;
        tokio::spawn(status::run(Arc::clone(&relay), every, stopped.clone()));
    }
    if let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        let relay = Arc::clone(&relay);
        tokio::spawn(async move {
            if terminate.recv().await.is_some() {
                tracing::info!("SIGTERM: exiting");
                relay.closing.send_replace(true);
                let _ = relay.stop.send(true);
            }
        });
    }
    // Should the store's thread be gone, the task is dropped, which stops the relay.
    relay
        .store
        .serve_beside(ingest::listen(Arc::clone(&relay), listener));
    let mut stopped = stopped;
    let _ = stopped.wait_for(|stop| *stop).await;
    relay.close_ingest().await;
    let _ = tokio::time::timeout(ROUND_GRACE, sender).await;
    watchdog.abort();
    relay.destination.shutdown(STEP_GRACE).await;
    let _ = tokio::time::timeout(STEP_GRACE, relay.store.close()).await;
    tracing::info!("relay stopped");
    0
}

impl Relay {
    pub(crate) async fn stats(&self) -> Value {
        let mut stats = self.destination.stats();
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
                    set("dead_letters", json!(store.dead_letters));
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
            set("delivers", json!(self.delivers.load(Ordering::Relaxed)));
            set("relay_pid", json!(std::process::id()));
            set("uptime_secs", json!(self.started.elapsed().as_secs()));
        }
        stats
    }
}

impl Relay {
    /// Takes no more events: the socket goes (the next hook starts a relay at once), and
    /// the connections in progress are answered or closed. Whatever was acknowledged
    /// before is in the store.
    pub(crate) async fn close_ingest(&self) {
        self.closing.send_replace(true);
        self.socket.remove();
        let all = ingest::MAX_CLIENTS as u32;
        let _ = tokio::time::timeout(CLIENTS_GRACE, self.clients.acquire_many(all)).await;
    }
}

/// Stops the relay once it has had no event for the idle period and its store is empty, or
/// once its socket path is no longer its own.
///
/// An idle relay closes ingest before it looks at the store a last time, so no event is
/// acknowledged between the look and the exit; what it then finds, it delivers first.
async fn watch_idle(relay: Arc<Relay>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1).min(relay.config.idle)).await;
        if !relay.socket.is_ours() {
            tracing::warn!(socket = %relay.socket.path.display(),
                "the socket was removed or replaced: exiting, so that one relay serves this store");
            let _ = relay.stop.send(true);
            return;
        }
        let idle = relay
            .last_event
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed();
        if idle < relay.config.idle {
            continue;
        }
        let delivers = relay.delivers.load(Ordering::Relaxed);
        if delivers && !relay.store.counters().await.is_ok_and(|c| c.depth == 0) {
            continue;
        }
        relay.close_ingest().await;
        if delivers {
            drain(&relay).await;
        }
        tracing::info!(?idle, "idle: exiting");
        let _ = relay.stop.send(true);
        return;
    }
}

/// Lets delivery empty the store (events acknowledged while ingest closed), for at most
/// [`DRAIN_GRACE`]; what is left waits for the next relay.
async fn drain(relay: &Relay) {
    let deadline = tokio::time::Instant::now() + DRAIN_GRACE;
    while tokio::time::Instant::now() < deadline {
        match relay.store.counters().await {
            Ok(counters) if counters.depth > 0 => {
                relay.new_events.notify_one();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => return,
        }
    }
    tracing::info!("idle: events left in the store for the next relay");
}
