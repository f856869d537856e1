//! The one client: its connection state as the sink sees it, and the last reason it gave
//! for not connecting.
//!
//! There is no pool. A NATS client is one TCP (or TLS) connection that multiplexes every
//! publish and every ack, and reconnects by itself (with the backoff set on the builder),
//! resubscribing its ack inbox; a second connection would only split the order of one
//! machine's events across two sockets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{ClientError, Event, ServerError};
use tokio::sync::watch;

use crate::error::NotConnected;

/// What the client's events said.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) client: async_nats::Client,
    pub(crate) server: String,
    changed: watch::Receiver<u64>,
    last_error: Arc<Mutex<Option<String>>>,
}

/// The writing end of [`Link`], fed by the client's event callback.
#[derive(Debug, Clone)]
pub(crate) struct Events {
    changed: Arc<watch::Sender<u64>>,
    last_error: Arc<Mutex<Option<String>>>,
}

impl Events {
    pub(crate) fn new() -> Self {
        Self {
            changed: Arc::new(watch::channel(0).0),
            last_error: Arc::default(),
        }
    }

    pub(crate) fn record(&self, event: &Event) {
        let reason = match event {
            Event::Connected => {
                *self.lock() = None;
                None
            }
            Event::ServerError(ServerError::AuthorizationViolation) => {
                Some("authorization violation".to_string())
            }
            Event::ServerError(ServerError::Other(text)) => Some(text.clone()),
            Event::ClientError(ClientError::Other(text)) => Some(text.clone()),
            Event::ClientError(error) => Some(error.to_string()),
            _ => None,
        };
        if let Some(reason) = reason {
            tracing::debug!(%reason, "nats client");
            *self.lock() = Some(reason);
        }
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        // A poisoned lock holds a string all the same.
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn link(&self, client: async_nats::Client, server: String) -> Link {
        Link {
            client,
            server,
            changed: self.changed.subscribe(),
            last_error: Arc::clone(&self.last_error),
        }
    }
}

impl Link {
    pub(crate) fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn not_connected(&self) -> NotConnected {
        NotConnected {
            server: self.server.clone(),
            last_error: self.last_error(),
        }
    }

    /// Waits up to `wait` for the connection; `Err` if it did not come.
    pub(crate) async fn connected(&mut self, wait: Duration) -> Result<(), NotConnected> {
        let deadline = tokio::time::Instant::now() + wait;
        while !self.is_connected() {
            // The client's state changes just after it reports the event, so the state is
            // looked at again now and then as well.
            let next = (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
            tokio::select! {
                _ = self.changed.changed() => {}
                () = tokio::time::sleep_until(next) => {}
            }
            if tokio::time::Instant::now() >= deadline && !self.is_connected() {
                return Err(self.not_connected());
            }
        }
        Ok(())
    }
}
