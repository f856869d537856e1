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

mod log;
mod server;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use crate::log::{AckStats, Log, Received};
pub use crate::server::{Acks, Echo};

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
        Self::start_with(addr, log, Acks::Immediate).await
    }

    /// Starts a dashboard on `addr` that records into `log` and answers acks by `acks`.
    pub async fn start_with(addr: SocketAddr, log: Log, acks: Acks) -> std::io::Result<Self> {
        Self::start_with_echo(addr, log, acks, Echo::ToSender).await
    }

    /// Starts a dashboard on `addr` that records into `log`, answers acks by `acks` and
    /// echoes events by `echo`.
    pub async fn start_with_echo(
        addr: SocketAddr,
        log: Log,
        acks: Acks,
        echo: Echo,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
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
                        () = server::serve(listener, recorder, acks, echo) => {}
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
