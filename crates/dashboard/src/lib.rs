//! An embedded Socket.IO dashboard: the server side of sluice's tests, demo and
//! `sluice-hook dashboard`.
//!
//! It accepts the default namespace `/` only (any other gets a CONNECT_ERROR, as the real
//! dashboard does), records every event it receives in arrival order, echoes it back to its
//! sender (the real one re-broadcasts every event to all its clients; [`Echo::Off`] plays a
//! plain server that does not), acknowledges every
//! emit that asks for an ack once it is recorded (claude-mpm's server acks `claude_event`
//! after handling it; [`Acks`] plays a slow or a silent server), and can be stopped and
//! started again on the same port to play an outage.
//!
//! On the same port it serves a web view: a page at `/` that shows the events live (a
//! timeline, filters kept in the URL, the tools with their durations, a pulse chart and the
//! counters), with the last [`DEFAULT_HISTORY`] events sent to a page that opens late. The
//! page and its socket need a token, random at each start unless given
//! ([`Builder::token`]); [`Dashboard::page_url`] carries it. Clients without it may still
//! send on a loopback address (relays, claude-mpm-style clients) and receive only the echo
//! of what they sent; on any other address sending needs it too (`?token=` in the URL).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let dashboard = sluice_dashboard::Dashboard::start("127.0.0.1:0".parse().unwrap()).await?;
//! println!("listening on {}", dashboard.url());
//! println!("open {}", dashboard.page_url());
//! // ... emit to it ...
//! assert_eq!(dashboard.received().count("/", "claude_event"), 0);
//! dashboard.stop().await;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod log;
mod server;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use crate::log::{AckStats, Counters, Log, Numbered, Received, DEFAULT_HISTORY};
use crate::server::Presence;
pub use crate::server::{Acks, Echo, STATUS_EVENT};
use crate::web::Guard;
pub use crate::web::TOKEN_HEADER;

/// How to start a [`Dashboard`]: its log, how it acks, its token.
#[derive(Debug, Default)]
#[must_use]
pub struct Builder {
    log: Option<Log>,
    acks: Acks,
    echo: Echo,
    token: Option<String>,
    senders_need_token: Option<bool>,
}

impl Builder {
    /// Records into `log` (to keep counting, and the web history, across a restart).
    pub fn log(mut self, log: Log) -> Self {
        self.log = Some(log);
        self
    }

    /// Answers acks by `acks`.
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// Echoes events by `echo` (to their sender by default).
    pub fn echo(mut self, echo: Echo) -> Self {
        self.echo = echo;
        self
    }

    /// The token of the page and of its socket (random when not given, or given empty).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into()).filter(|token: &String| !token.is_empty());
        self
    }

    /// Whether a client needs the token to send (in the query, or in the
    /// [`TOKEN_HEADER`] a relay sets from `SLUICE_TOKEN`). By default only off loopback.
    pub fn senders_need_token(mut self, needed: bool) -> Self {
        self.senders_need_token = Some(needed);
        self
    }

    /// Starts the dashboard on `addr` (port 0 picks a free port).
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<Dashboard> {
        let token = match self.token {
            Some(token) => token,
            None => web::random_token()?,
        };
        let log = self.log.unwrap_or_default();
        Dashboard::launch(
            addr,
            log,
            self.acks,
            self.echo,
            token,
            self.senders_need_token,
        )
        .await
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
    guard: Guard,
    presence: Arc<Presence>,
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
        Self::start_with(addr, log, Acks::Immediate).await
    }

    /// Starts a dashboard on `addr` that records into `log` and answers acks by `acks`.
    pub async fn start_with(addr: SocketAddr, log: Log, acks: Acks) -> std::io::Result<Self> {
        Self::builder().log(log).acks(acks).start(addr).await
    }

    /// Starts a dashboard on `addr` that records into `log`, answers acks by `acks` and
    /// echoes events by `echo`.
    pub async fn start_with_echo(
        addr: SocketAddr,
        log: Log,
        acks: Acks,
        echo: Echo,
    ) -> std::io::Result<Self> {
        Self::builder()
            .log(log)
            .acks(acks)
            .echo(echo)
            .start(addr)
            .await
    }

    /// A dashboard with a given token, log or acks.
    pub fn builder() -> Builder {
        Builder::default()
    }

    async fn launch(
        addr: SocketAddr,
        log: Log,
        acks: Acks,
        echo: Echo,
        token: String,
        senders_need_token: Option<bool>,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let guard = Guard::new(token, addr, senders_need_token);
        let serving = guard.clone();
        let presence = Arc::new(Presence::default());
        let present = Arc::clone(&presence);
        let (shutdown, stopped) = oneshot::channel();
        let recorder = log.clone();
        // The runtime is built in its thread: one built here and dropped here, if the thread
        // could not be spawned, would be dropped inside the caller's runtime, a panic.
        let (built, runtime_built) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("sluice-dashboard".to_string())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        let _ = built.send(Ok(()));
                        runtime
                    }
                    Err(error) => {
                        let _ = built.send(Err(error));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        () = server::serve(listener, recorder, acks, echo, serving, present) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime drops every task and so every socket.
                drop(runtime);
            })?;
        runtime_built
            .await
            .map_err(|_| std::io::Error::other("the dashboard's thread ended"))??;
        Ok(Self {
            addr,
            log,
            guard,
            presence,
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

    /// The web view's address, token included: whoever has it sees every event.
    pub fn page_url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.guard.token())
    }

    /// The token of the page and of its socket.
    pub fn token(&self) -> &str {
        self.guard.token()
    }

    /// The last state each connected relay sent (`SLUICE_STATUS_EVERY`), as the page shows.
    pub fn relays(&self) -> Vec<serde_json::Value> {
        self.presence.relays()
    }

    /// Connections open now (relays, clients and pages).
    pub fn connections(&self) -> usize {
        self.presence.connections()
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
