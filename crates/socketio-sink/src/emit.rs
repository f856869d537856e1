//! What the sink sends.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A namespace or event name: a `&'static str` costs no allocation per event.
pub type Name = Cow<'static, str>;

/// One Socket.IO event: `event` with one argument, `payload`, on `namespace`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emit {
    /// The namespace, `/` for the dashboard.
    pub namespace: Name,
    /// The event name, `claude_event` for the dashboard.
    pub event: Name,
    /// The single argument.
    pub payload: Value,
}

impl Emit {
    /// An event on the default namespace `/`.
    pub fn new(event: impl Into<Name>, payload: Value) -> Self {
        Self {
            namespace: Cow::Borrowed("/"),
            event: event.into(),
            payload,
        }
    }

    /// The same event on `namespace`.
    #[must_use]
    pub fn on_namespace(mut self, namespace: impl Into<Name>) -> Self {
        self.namespace = namespace.into();
        self
    }
}

/// An [`Emit`] whose payload is already JSON text.
///
/// The sink queues these: [`SocketIoSink::emit`](crate::SocketIoSink::emit) serializes the
/// payload on the caller's thread, while the value is still in cache, and frees it there;
/// the connection then copies text instead of walking a tree that another thread allocated.
/// In [`Encoding::Array`] the text's length is also the event's exact share of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    namespace: Name,
    event: Name,
    json: String,
}

impl Encoded {
    /// An event on the default namespace `/` whose payload is `json`, JSON text kept
    /// elsewhere (a store, a log): it is checked to be one JSON value, without building a
    /// tree, and sent as it is, so the caller neither parses nor re-serializes it.
    ///
    /// ```
    /// use sluice_socketio_sink::Encoded;
    ///
    /// let stored = r#"{"type":"hook","data":{"n":1}}"#.to_string();
    /// let event = Encoded::from_json("claude_event", stored).unwrap();
    /// assert_eq!(event.json(), r#"{"type":"hook","data":{"n":1}}"#);
    /// assert!(Encoded::from_json("claude_event", "{not json".to_string()).is_err());
    /// ```
    pub fn from_json(event: impl Into<Name>, json: String) -> Result<Self, serde_json::Error> {
        serde_json::from_str::<&serde_json::value::RawValue>(&json)?;
        Ok(Self {
            namespace: Cow::Borrowed("/"),
            event: event.into(),
            json,
        })
    }

    /// The same event on `namespace`.
    #[must_use]
    pub fn on_namespace(mut self, namespace: impl Into<Name>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// The namespace.
    pub fn namespace(&self) -> &Name {
        &self.namespace
    }

    /// The event name.
    pub fn event(&self) -> &Name {
        &self.event
    }

    /// The payload as JSON text.
    pub fn json(&self) -> &str {
        &self.json
    }

    pub(crate) fn into_parts(self) -> (Name, String) {
        (self.event, self.json)
    }
}

impl From<Emit> for Encoded {
    fn from(emit: Emit) -> Self {
        Self {
            // Serializing a `Value` cannot fail: its map keys are strings.
            json: emit.payload.to_string(),
            namespace: emit.namespace,
            event: emit.event,
        }
    }
}

/// How a batch goes on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Encoding {
    /// One emit per event, in order: what the dashboard understands (the default).
    #[default]
    PerEvent,
    /// One emit per batch whose single argument is the array of payloads, for servers that
    /// accept it. All events of a batch must share the event name of the first; each batch is
    /// kept under the byte cap.
    Array,
}

/// When an event counts as sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Delivery {
    /// Once the server acknowledged it (the default).
    #[default]
    Acknowledged,
    /// Once it was written to the connection.
    Written,
}
