//! The one place that knows `rust_socketio`: opening a connection and emitting on it.
//!
//! Everything the sink needs of a Socket.IO client is here, so another client could replace
//! it without touching the layers. What this module absorbs of rust_socketio 0.6:
//!
//! - `connect()` returns before the server accepted the namespace, and emitting before that
//!   loses events: a connection counts as open only after the `"open"` callback (the
//!   namespace's CONNECT), and a CONNECT_ERROR becomes [`NamespaceRefused`] (recognised by
//!   the exact text the client reports it with: see [`CONNECT_ERROR_PREFIX`]).
//! - Its reconnect loop spins when the server is gone for long: it is turned off, the pool
//!   reconnects with backoff instead.
//! - `emit` has no timeout and `"close"` does not fire on transport loss: every write runs
//!   under a timeout (in the pipeline), and any emit error, timeout, `"close"` or `"error"`
//!   marks the link broken so the pool replaces it.
//! - `emit_with_ack` is unsafe with concurrent acks (random ids in 0..999, a panic on a
//!   collision, timed-out acks never removed): the pipeline keeps one outstanding per link
//!   and drops the link when one times out.
//! - `Payload::from(Vec<Value>)` sends N arguments: an array goes as one `Value::Array`.
//! - Payload text that is already JSON goes through `Payload::String` (deprecated in 0.6, but
//!   the only way in without parsing it back into a `Value`): the client embeds valid JSON as
//!   is, after a validating scan, and does not escape the event name, so a name that would
//!   need escaping takes the `Value` path instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::emit::{Delivery, Name};
use crate::error::{
    AckTimedOut, BoxError, ConnectError, ConnectionLost, EmitTimedOut, LostHow, NamespaceRefused,
};

/// The single argument of an event.
#[derive(Debug)]
pub(crate) enum Argument {
    /// A value the client serializes.
    Value(Value),
    /// JSON text, serialized already.
    Json(String),
}

impl Argument {
    fn into_payload(self, event: &str) -> Payload {
        match self {
            Self::Value(value) => Payload::from(value),
            Self::Json(text) if is_plain(event) => {
                #[allow(deprecated)] // see the module's documentation
                Payload::String(text)
            }
            Self::Json(text) => match serde_json::from_str::<Value>(&text) {
                Ok(value) => Payload::from(value),
                Err(_) => Payload::from(Value::String(text)),
            },
        }
    }
}

/// Whether `event` can go into JSON text without escaping.
fn is_plain(event: &str) -> bool {
    !event.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20)
}

/// How to open a link.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) auth: Option<Value>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) emit_timeout: Duration,
    pub(crate) ack_timeout: Duration,
    pub(crate) delivery: Delivery,
    /// In [`Delivery::Acknowledged`], how many unconfirmed batches make a connection ask for
    /// an ack even while more follow: the sink sets half the batches it lets on their way;
    /// 1 otherwise (an ack whenever none is outstanding).
    pub(crate) ack_every: u64,
}

/// Why a link broke.
#[derive(Debug, Clone)]
pub(crate) enum Broken {
    /// The transport failed or the server closed it.
    Lost(Arc<dyn std::error::Error + Send + Sync>),
    /// A write took longer than the emit timeout.
    EmitTimedOut(Duration),
    /// An acknowledgement did not come within the ack timeout.
    AckTimedOut(Duration),
}

impl Broken {
    fn into_error(self) -> BoxError {
        match self {
            Self::Lost(cause) => Box::new(ConnectionLost::new(cause)),
            Self::EmitTimedOut(after) => Box::new(EmitTimedOut { after }),
            Self::AckTimedOut(after) => Box::new(AckTimedOut { after }),
        }
    }
}

/// Runs when a link breaks.
type OnBroken = Box<dyn Fn() + Send + Sync>;

/// Shared between the link and the client's callbacks.
#[derive(Default)]
struct Health {
    broken: AtomicBool,
    cause: Mutex<Option<Broken>>,
    on_broken: OnceLock<OnBroken>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Health {
    fn fail(&self, cause: Broken) {
        {
            let mut slot = self.cause.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert(cause);
            self.broken.store(true, Ordering::Release);
        }
        if let Some(on_broken) = self.on_broken.get() {
            on_broken();
        }
    }

    fn cause(&self) -> Broken {
        self.cause
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| Broken::Lost(Arc::new(LostHow::ServerClosed)))
    }
}

/// An open Socket.IO connection to one namespace.
#[derive(Clone)]
pub(crate) struct Link {
    client: Client,
    health: Arc<Health>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("broken", &self.is_broken())
            .finish_non_exhaustive()
    }
}

type Signal = Arc<Mutex<Option<oneshot::Sender<Result<(), String>>>>>;

fn signal(slot: &Signal, outcome: Result<(), String>) {
    if let Some(sender) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
        let _ = sender.send(outcome);
    }
}

impl Link {
    /// Connects and waits for the server to accept the namespace. The caller bounds the
    /// whole with its connect timeout; dropped early, the half-open client is dropped too.
    pub(crate) async fn open(config: &LinkConfig) -> Result<Self, BoxError> {
        let health = Arc::new(Health::default());
        let (opened, accepted) = oneshot::channel();
        let opened: Signal = Arc::new(Mutex::new(Some(opened)));
        let on_open = Arc::clone(&opened);
        let on_error = Arc::clone(&opened);
        let error_health = Arc::clone(&health);
        let close_health = Arc::clone(&health);
        let mut builder = ClientBuilder::new(config.url.clone())
            .namespace(config.namespace.clone())
            .transport_type(TransportType::Websocket)
            .reconnect(false)
            .reconnect_on_disconnect(false)
            .on("open", move |_, _| {
                signal(&on_open, Ok(()));
                async {}.boxed()
            })
            .on("error", move |payload, _| {
                let message = describe(&payload);
                // Before "open", an error is the answer to our CONNECT.
                signal(&on_error, Err(message.clone()));
                error_health.fail(Broken::Lost(Arc::new(LostHow::ClientReported(message))));
                async {}.boxed()
            })
            .on("close", move |_, _| {
                close_health.fail(Broken::Lost(Arc::new(LostHow::ServerClosed)));
                async {}.boxed()
            });
        if let Some(auth) = &config.auth {
            builder = builder.auth(auth.clone());
        }
        for (name, value) in &config.headers {
            builder = builder.opening_header(name.as_str(), value.as_str());
        }
        let client = builder
            .connect()
            .await
            .map_err(|error| -> BoxError { Box::new(ConnectError::new(&config.url, error)) })?;
        match accepted.await {
            Ok(Ok(())) => Ok(Self { client, health }),
            Ok(Err(message)) => {
                let _ = client.disconnect().await;
                Err(refusal(&config.namespace, message))
            }
            Err(_) => Err(Box::new(ConnectionLost::new(Arc::new(
                LostHow::StoppedBeforeOpen,
            )))),
        }
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.health.broken.load(Ordering::Acquire)
    }

    /// Writes one event with one argument (`Payload::from(Value)` is one argument even for
    /// an array). No timeout: the caller bounds its writes.
    pub(crate) async fn emit(&self, event: Name, argument: Argument) -> Result<(), BoxError> {
        let payload = argument.into_payload(&event);
        self.client
            .emit(event.into_owned(), payload)
            .await
            .map_err(|error| self.lost(error))
    }

    /// Writes one event that asks for an acknowledgement; `on_ack` runs in the client's
    /// reader task when it arrives.
    ///
    /// rust_socketio 0.6 draws the ack id at random from 0..999, panics when two outstanding
    /// acks share an id, and never removes an ack that timed out: the caller keeps at most
    /// one outstanding per link, and drops the link when one times out.
    pub(crate) async fn emit_with_ack(
        &self,
        event: Name,
        argument: Argument,
        timeout: Duration,
        on_ack: impl Fn() + Send + Sync + 'static,
    ) -> Result<(), BoxError> {
        let payload = argument.into_payload(&event);
        self.client
            .emit_with_ack(event.into_owned(), payload, timeout, move |_, _| {
                on_ack();
                async {}.boxed()
            })
            .await
            .map_err(|error| self.lost(error))
    }

    /// Marks the link broken by `cause`; the first cause is kept. Runs the
    /// [`on_broken`](Self::on_broken) hook: the caller must hold no lock that hook takes.
    pub(crate) fn fail(&self, cause: Broken) {
        self.health.fail(cause);
    }

    /// Sets what runs each time the link is marked broken, whoever notices it (the client's
    /// callbacks included); set once, the first hook stays.
    pub(crate) fn on_broken(&self, hook: impl Fn() + Send + Sync + 'static) {
        let _ = self.health.on_broken.set(Box::new(hook));
    }

    /// Why the link broke, as an error (a generic one if it did not).
    pub(crate) fn broken_error(&self) -> BoxError {
        self.health.cause().into_error()
    }

    fn lost(&self, error: rust_socketio::Error) -> BoxError {
        let cause: Arc<dyn std::error::Error + Send + Sync> = Arc::new(error);
        self.health.fail(Broken::Lost(Arc::clone(&cause)));
        Box::new(ConnectionLost::new(cause))
    }

    /// Closes the connection politely, within `timeout`.
    pub(crate) async fn close(self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.client.disconnect()).await;
    }
}

/// What rust_socketio 0.6 puts before a CONNECT_ERROR packet's data when it reports it.
///
/// The client hands a CONNECT_ERROR to us only as the text of an `"error"` callback, built
/// as this prefix and the packet's data (`PacketId::ConnectError` in its
/// `asynchronous/client/client.rs`): no typed route exists. So the refusal is recognised by
/// this exact prefix, not by a substring anywhere in the text, and the server's own message
/// is read from the data after it.
const CONNECT_ERROR_PREFIX: &str = "Received an ConnectError frame: ";

/// The error for an `"error"` callback that came before the namespace was accepted.
fn refusal(namespace: &str, reported: String) -> BoxError {
    match reported.strip_prefix(CONNECT_ERROR_PREFIX) {
        Some(data) => {
            let parsed = serde_json::from_str::<Value>(data).ok();
            let message = match parsed.as_ref().and_then(|v| v.get("message")) {
                Some(Value::String(message)) => message.clone(),
                _ => data.to_string(),
            };
            Box::new(NamespaceRefused {
                namespace: namespace.to_string(),
                message,
            })
        }
        None => Box::new(ConnectionLost::new(Arc::new(LostHow::ClientReported(
            reported,
        )))),
    }
}

fn describe(payload: &Payload) -> String {
    match payload {
        Payload::Text(values) => values
            .iter()
            .map(|value| match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_text_goes_as_is_unless_the_event_name_needs_escaping() {
        let text = r#"{"a":[1,"two"]}"#.to_string();
        #[allow(deprecated)]
        let as_is = Payload::String(text.clone());
        assert_eq!(
            Argument::Json(text.clone()).into_payload("claude_event"),
            as_is
        );
        // The client would paste the name into the text unescaped: parsed back instead.
        let parsed = Payload::Text(vec![serde_json::json!({"a": [1, "two"]})]);
        for name in ["say \"hi\"", "back\\slash", "new\nline"] {
            assert_eq!(Argument::Json(text.clone()).into_payload(name), parsed);
        }
        assert!(is_plain("claude_event") && is_plain("héllo ✓"));
    }

    #[test]
    fn a_connect_error_frame_is_a_refusal_and_anything_else_a_lost_connection() {
        let refused = refusal(
            "/admin",
            format!("{CONNECT_ERROR_PREFIX}{{\"message\":\"Invalid namespace\"}}"),
        );
        let refused = refused.downcast_ref::<NamespaceRefused>().unwrap();
        assert_eq!(
            (refused.namespace.as_str(), refused.message.as_str()),
            ("/admin", "Invalid namespace")
        );
        // A transport error that merely mentions ConnectError is not a refusal.
        let lost = refusal("/", "websocket: ConnectError while reading".to_string());
        let lost = lost.downcast_ref::<ConnectionLost>().unwrap();
        let how = std::error::Error::source(lost)
            .and_then(|cause| cause.downcast_ref::<LostHow>())
            .unwrap();
        assert_eq!(
            how,
            &LostHow::ClientReported("websocket: ConnectError while reading".to_string())
        );
    }
}
