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
use std::sync::{Arc, Mutex, PoisonError};

use hyper_util::rt::TokioIo;
use serde_json::Value;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
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
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log").field("events", &self.len()).finish()
    }
}

impl Log {
    fn push(&self, received: Received) {
        if let Some(feed) = self.feed.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            let _ = feed.send(received.clone());
        }
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(received);
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
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).len()
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
        for r in self.inner.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            *counts.entry((r.namespace.clone(), r.event.clone())).or_default() += 1;
        }
        counts
    }

    /// A live feed of what arrives from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Received> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        feed.get_or_insert_with(|| broadcast::channel(4_096).0).subscribe()
    }
}

/// A running dashboard.
#[derive(Debug)]
pub struct Dashboard {
    addr: SocketAddr,
    log: Log,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Starts a dashboard on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start_with_log(addr, Log::default()).await
    }

    /// Starts a dashboard on `addr` that records into `log` (to keep counting across a
    /// restart).
    pub async fn start_with_log(addr: SocketAddr, log: Log) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (svc, io) = SocketIo::new_svc();
        let recorder = log.clone();
        io.ns("/", async move |socket: SocketRef| {
            let recorder = recorder.clone();
            socket.on_fallback(async move |socket: SocketRef, event: socketioxide::extract::Event, Data::<Value>(data): Data<Value>| {
                let _ = socket;
                recorder.push(Received {
                    namespace: "/".to_string(),
                    event: event.0.to_string(),
                    args: 1,
                    data,
                });
            });
        });
        let (shutdown, mut stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let svc = svc.clone();
                        connections.spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        });
                    }
                    _ = stopped.changed() => break,
                }
            }
            // Dropping the set aborts every connection: an abrupt outage.
            drop(connections);
        });
        Ok(Self {
            addr,
            log,
            shutdown,
            server,
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
    pub async fn stop(self) -> Log {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        self.log
    }
}
