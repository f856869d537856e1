//! An embedded Socket.IO dashboard: the server side of sluice's tests, demo and
//! `sluice-hook dashboard`.
//!
//! It accepts the default namespace `/` only (any other gets a CONNECT_ERROR, as the real
//! dashboard does), records every event it receives in arrival order, and can be stopped and
//! started again on the same port to play an outage.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let dashboard = sluice_dashboard::Dashboard::start("127.0.0.1:0".parse().unwrap()).await?;
//! println!("listening on {}", dashboard.url());
//! // ... emit to it ...
//! assert_eq!(dashboard.received().count("/", "claude_event"), 0);
//! dashboard.stop().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hyper_util::rt::TokioIo;
use serde_json::Value;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinSet;

/// One event the dashboard received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The namespace it came on.
    pub namespace: String,
    /// The event name.
    pub event: String,
    /// Its single argument (or `Null` without one).
    pub data: Value,
    /// How many arguments it had: the real dashboard drops events without exactly one.
    pub args: usize,
}

/// What the dashboard received so far; shared across restarts.
#[derive(Clone, Default)]
pub struct Log {
    inner: Arc<Mutex<Vec<Received>>>,
    feed: Arc<Mutex<Option<broadcast::Sender<Received>>>>,
    waiters: Arc<Waiters>,
}

/// Tasks waiting in [`Log::wait_for`]: woken once, when their count is reached, so that a
/// waiter does not cost the server a wake-up per event.
#[derive(Debug)]
struct Waiters {
    /// The smallest count waited for; `usize::MAX` when nobody waits.
    next: AtomicUsize,
    list: Mutex<Vec<(usize, oneshot::Sender<()>)>>,
}

impl Default for Waiters {
    fn default() -> Self {
        Self {
            next: AtomicUsize::new(usize::MAX),
            list: Mutex::default(),
        }
    }
}

impl Waiters {
    /// Wakes those waiting for at most `count`; called with the log locked.
    fn reached(&self, count: usize) {
        if count < self.next.load(Ordering::Acquire) {
            return;
        }
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, waiter) in list.extract_if(.., |(target, _)| *target <= count) {
            let _ = waiter.send(());
        }
        self.update(&list);
    }

    fn update(&self, list: &[(usize, oneshot::Sender<()>)]) {
        let next = list.iter().map(|(target, _)| *target).min();
        self.next
            .store(next.unwrap_or(usize::MAX), Ordering::Release);
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log").field("events", &self.len()).finish()
    }
}

impl Log {
    fn push(&self, received: Received) {
        if let Some(feed) = self
            .feed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            let _ = feed.send(received.clone());
        }
        let mut events = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        events.push(received);
        self.waiters.reached(events.len());
    }

    /// Forgets everything received so far (benchmarks clear it between iterations, so that a
    /// growing log does not weigh on later ones).
    pub fn clear(&self) {
        let mut events = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        events.clear();
        events.shrink_to_fit();
    }

    /// Waits until at least `n` events were received, or `timeout` passed; returns how many
    /// were.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> usize {
        let reached = {
            let events = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            if events.len() >= n {
                return events.len();
            }
            let (waiter, reached) = oneshot::channel();
            let mut list = self
                .waiters
                .list
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Waiters that timed out are gone: forget them.
            list.retain(|(_, waiter)| !waiter.is_closed());
            list.push((n, waiter));
            self.waiters.update(&list);
            reached
        };
        let _ = tokio::time::timeout(timeout, reached).await;
        self.len()
    }

    /// All events received, in arrival order.
    pub fn events(&self) -> Vec<Received> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How many events were received.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing was received yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many `event`s were received on `namespace`.
    pub fn count(&self, namespace: &str, event: &str) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|r| r.namespace == namespace && r.event == event)
            .count()
    }

    /// Counts per (namespace, event).
    pub fn counts(&self) -> HashMap<(String, String), usize> {
        let mut counts = HashMap::new();
        for r in self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            *counts
                .entry((r.namespace.clone(), r.event.clone()))
                .or_default() += 1;
        }
        counts
    }

    /// A live feed of what arrives from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Received> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        feed.get_or_insert_with(|| broadcast::channel(4_096).0)
            .subscribe()
    }
}

/// A running dashboard.
///
/// It runs on a runtime and thread of its own, so that [`stop`](Self::stop) can drop every
/// socket at once, as a crash does: clients see their connections cut, not a polite close.
#[derive(Debug)]
pub struct Dashboard {
    addr: SocketAddr,
    log: Log,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Dashboard {
    /// Starts a dashboard on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with_log(addr, Log::default()).await
    }

    /// Starts a dashboard on `addr` that records into `log` (to keep counting across a
    /// restart).
    pub async fn start_with_log(addr: SocketAddr, log: Log) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (shutdown, stopped) = oneshot::channel();
        let recorder = log.clone();
        let thread = std::thread::Builder::new()
            .name("sluice-dashboard".to_string())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = serve(listener, recorder) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every task and so every socket.
                drop(runtime);
            })?;
        Ok(Self {
            addr,
            log,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What it received so far.
    pub fn received(&self) -> &Log {
        &self.log
    }

    /// Stops listening and cuts every connection, as a crash would.
    pub async fn stop(mut self) -> Log {
        self.halt().await;
        self.log.clone()
    }

    async fn halt(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Serves Socket.IO on `listener`, recording into `log`.
async fn serve(listener: TcpListener, log: Log) {
    let (svc, io) = SocketIo::new_svc();
    io.ns("/", async move |socket: SocketRef| {
        let recorder = log.clone();
        // A plain closure returning a ready future: socketioxide calls it in arrival order
        // and spawns only the (empty) future, so the log keeps the wire order.
        socket.on_fallback(
            move |event: socketioxide::extract::Event, Data::<Value>(data): Data<Value>| {
                recorder.push(Received {
                    namespace: "/".to_string(),
                    event: event.0,
                    args: 1,
                    data,
                });
                std::future::ready(())
            },
        );
    });
    let mut connections = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: let some close before trying again.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let svc = svc.clone();
        connections.spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn event(seq: u64) -> Received {
        Received {
            namespace: "/".to_string(),
            event: "claude_event".to_string(),
            data: serde_json::json!({ "seq": seq }),
            args: 1,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_wakes_at_its_count_and_gives_up_at_its_timeout() {
        let log = Log::default();
        let early = tokio::spawn({
            let log = log.clone();
            async move { log.wait_for(2, Duration::from_secs(5)).await }
        });
        let late = tokio::spawn({
            let log = log.clone();
            async move { log.wait_for(4, Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        for seq in 0..3 {
            log.push(event(seq));
        }
        // Woken at 2 (it reads the count after the third arrived), not at its timeout.
        assert_eq!(early.await.unwrap(), 3);
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(4), log.wait_for(3, Duration::ZERO)).await,
            Ok(3),
            "an already reached count returns at once"
        );
        let started = tokio::time::Instant::now();
        assert_eq!(
            late.await.unwrap(),
            3,
            "never reached: the count at the timeout"
        );
        assert!(started.elapsed() >= Duration::from_secs(4));
    }
}
