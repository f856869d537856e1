//! Errors: what each part of the sink adds, and [`SinkError`], the one enum to match.
//!
//! Every `Display` is one line about its own layer; the cause is the
//! [`source`](std::error::Error::source), typed, to downcast.

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_batch::{BatchFailed, QueueFull};
use sluice_breaker::BreakerOpen;
use sluice_pool::{ConnectFailed, PoolTimeout};

pub use tower::BoxError;

/// A connection to the server could not be opened; the client's error is the source.
#[derive(Debug)]
pub struct ConnectError {
    host: String,
    source: rust_socketio::Error,
}

impl ConnectError {
    pub(crate) fn new(url: &str, source: rust_socketio::Error) -> Self {
        Self {
            host: host_of(url).to_string(),
            source,
        }
    }

    /// The server's host and port, from the URL (`127.0.0.1:8765`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The innermost cause in a few words: an I/O error's kind (`connection refused`), else
    /// the deepest error's text. For a log line such as
    /// `cannot connect to 127.0.0.1:9 (connection refused)`.
    pub fn reason(&self) -> String {
        let mut deepest: &(dyn Error + 'static) = &self.source;
        loop {
            if let Some(io) = deepest.downcast_ref::<std::io::Error>() {
                return io.kind().to_string();
            }
            match deepest.source() {
                Some(next) => deepest = next,
                None => return deepest.to_string(),
            }
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to {}", self.host)
    }
}

impl Error for ConnectError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// `host:port` of a URL such as `http://127.0.0.1:8765/path`.
pub(crate) fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// The server refused the namespace (a Socket.IO CONNECT_ERROR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRefused {
    /// The namespace asked for.
    pub namespace: String,
    /// The server's message, as it sent it.
    pub message: String,
}

impl fmt::Display for NamespaceRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the server refused namespace {}", self.namespace)
    }
}

impl Error for NamespaceRefused {}

/// An emit was not written within `emit_timeout`; the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmitTimedOut {
    /// The timeout that passed.
    pub after: Duration,
}

impl fmt::Display for EmitTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "emit not written within {:?}", self.after)
    }
}

impl Error for EmitTimedOut {}

/// A written batch was not acknowledged within `ack_timeout`; the connection is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckTimedOut {
    /// The timeout that passed.
    pub after: Duration,
}

impl fmt::Display for AckTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no ack within {:?}", self.after)
    }
}

impl Error for AckTimedOut {}

/// The connection was lost while the batch was on it; the source says how, when known.
#[derive(Debug, Clone)]
pub struct ConnectionLost {
    cause: Arc<dyn Error + Send + Sync>,
}

impl ConnectionLost {
    pub(crate) fn new(cause: Arc<dyn Error + Send + Sync>) -> Self {
        Self { cause }
    }
}

impl fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("socket.io connection lost")
    }
}

impl Error for ConnectionLost {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.cause)
    }
}

/// How a connection was lost, when the client told us no more than this.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LostHow {
    /// The server closed it.
    ServerClosed,
    /// The client reported an error, as text only (rust_socketio's `"error"` callback).
    ClientReported(String),
    /// The client stopped before the server accepted the namespace.
    StoppedBeforeOpen,
    /// A batch was dropped mid-delivery, so the write order on it was lost.
    Abandoned,
}

impl fmt::Display for LostHow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerClosed => f.write_str("the server closed the connection"),
            Self::ClientReported(text) => f.write_str(text),
            Self::StoppedBeforeOpen => {
                f.write_str("the client stopped before the namespace was accepted")
            }
            Self::Abandoned => f.write_str("a batch was abandoned mid-delivery"),
        }
    }
}

impl Error for LostHow {}

/// An event for a namespace the sink was not built for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongNamespace {
    /// The sink's namespace.
    pub expected: String,
    /// The event's.
    pub got: String,
}

impl fmt::Display for WrongNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "event for namespace {} on a sink for {}",
            self.got, self.expected
        )
    }
}

impl Error for WrongNamespace {}

/// A setting [`SinkBuilder::build`](crate::SinkBuilder::build) refused because the sink could
/// not honour it as given; it names the builder's method. (The layers' own errors, such as
/// the breaker's for an open backoff, come as they are.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count that must be at least 1 was 0.
    Zero {
        /// The builder's method.
        knob: &'static str,
    },
    /// A duration that must be longer than zero was zero.
    ZeroDuration {
        /// The builder's (or the connector's) method.
        knob: &'static str,
    },
    /// [`reconnect_backoff`](crate::SinkBuilder::reconnect_backoff)'s `max` is below its
    /// `initial` wait, which would never be waited.
    BackoffMax {
        /// The first wait.
        initial: Duration,
        /// The longest wait.
        max: Duration,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero { knob } => write!(f, "`{knob}` must be at least 1"),
            Self::ZeroDuration { knob } => write!(f, "`{knob}` must be longer than zero"),
            Self::BackoffMax { initial, max } => write!(
                f,
                "`reconnect_backoff`: the longest wait ({max:?}) is shorter than the first \
                 ({initial:?})"
            ),
        }
    }
}

impl Error for ConfigError {}

/// Why an event was not delivered: one enum to match, built by downcasting the layers'
/// errors once. Each variant is its layer's error: `Display` and `source` are that error's.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// Dropped: the circuit breaker is open (the dashboard was failing).
    BreakerOpen {
        /// How long until the breaker lets a call through, read from the breaker when the
        /// sink's future resolved (`None` when not known, and from
        /// [`from_box`](Self::from_box), which has no breaker to ask).
        retry_after: Option<Duration>,
    },
    /// Dropped: the queue was full.
    QueueFull,
    /// The sink was shut down.
    Closed,
    /// The namespace was refused by the server.
    NamespaceRefused(NamespaceRefused),
    /// No connection could be made; its source is the connect error (a [`ConnectError`],
    /// or the pool's `ConnectTimedOut`): see [`connect_error`](Self::connect_error).
    Connect(ConnectFailed),
    /// No connection became ready in time; its source is the last connect error, if any.
    PoolTimeout(PoolTimeout),
    /// The emit was not written in time.
    EmitTimedOut(EmitTimedOut),
    /// The server did not acknowledge the batch in time (written, maybe received).
    AckTimedOut(AckTimedOut),
    /// The connection failed while the batch was on it.
    ConnectionLost(ConnectionLost),
    /// The event's namespace is not the sink's.
    WrongNamespace(WrongNamespace),
    /// Anything else.
    Other(BoxError),
}

impl SinkError {
    /// Classifies an error from the layer stack.
    pub fn from_box(error: BoxError) -> Self {
        let error = match error.downcast::<BatchFailed>() {
            Ok(failed) => {
                return Self::from_inner(failed.inner())
                    .unwrap_or_else(|| Self::Other(Box::new(*failed)))
            }
            Err(error) => error,
        };
        if error.is::<QueueFull>() {
            return Self::QueueFull;
        }
        Self::from_inner(&*error).unwrap_or(Self::Other(error))
    }

    fn from_inner(error: &(dyn Error + Send + Sync + 'static)) -> Option<Self> {
        if error.is::<BreakerOpen>() {
            // The rejection carries no time; the sink's futures read it from the breaker.
            return Some(Self::BreakerOpen { retry_after: None });
        }
        if let Some(failed) = error.downcast_ref::<ConnectFailed>() {
            if let Some(refused) = failed.error().downcast_ref::<NamespaceRefused>() {
                return Some(Self::NamespaceRefused(refused.clone()));
            }
            return Some(Self::Connect(failed.clone()));
        }
        if let Some(timeout) = error.downcast_ref::<PoolTimeout>() {
            return Some(Self::PoolTimeout(timeout.clone()));
        }
        if let Some(timeout) = error.downcast_ref::<EmitTimedOut>() {
            return Some(Self::EmitTimedOut(*timeout));
        }
        if let Some(timeout) = error.downcast_ref::<AckTimedOut>() {
            return Some(Self::AckTimedOut(*timeout));
        }
        if let Some(lost) = error.downcast_ref::<ConnectionLost>() {
            return Some(Self::ConnectionLost(lost.clone()));
        }
        if let Some(refused) = error.downcast_ref::<NamespaceRefused>() {
            return Some(Self::NamespaceRefused(refused.clone()));
        }
        if let Some(wrong) = error.downcast_ref::<WrongNamespace>() {
            return Some(Self::WrongNamespace(wrong.clone()));
        }
        if error.is::<sluice_batch::Closed>() || error.is::<sluice_pool::Closed>() {
            return Some(Self::Closed);
        }
        None
    }

    /// Whether the event was dropped on purpose (breaker open, queue full) rather than lost
    /// on the way: worth keeping for later (a spool).
    pub fn is_dropped(&self) -> bool {
        matches!(self, Self::BreakerOpen { .. } | Self::QueueFull)
    }

    /// The connect error behind a [`Connect`](Self::Connect) or
    /// [`PoolTimeout`](Self::PoolTimeout), when a connect was refused or failed (not when it
    /// timed out): it names the host and the cause.
    pub fn connect_error(&self) -> Option<&ConnectError> {
        let cause: &(dyn Error + 'static) = match self {
            Self::Connect(failed) => failed.error(),
            Self::PoolTimeout(timeout) => timeout.last_connect_error()?,
            _ => return None,
        };
        cause.downcast_ref()
    }

    fn layer_error(&self) -> Option<&(dyn Error + 'static)> {
        Some(match self {
            Self::NamespaceRefused(error) => error,
            Self::Connect(error) => error,
            Self::PoolTimeout(error) => error,
            Self::EmitTimedOut(error) => error,
            Self::AckTimedOut(error) => error,
            Self::ConnectionLost(error) => error,
            Self::WrongNamespace(error) => error,
            Self::Other(error) => &**error,
            Self::BreakerOpen { .. } | Self::QueueFull | Self::Closed => return None,
        })
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BreakerOpen { .. } => f.write_str("dropped: circuit breaker open"),
            Self::QueueFull => f.write_str("dropped: queue full"),
            Self::Closed => f.write_str("sink closed"),
            other => match other.layer_error() {
                Some(error) => fmt::Display::fmt(error, f),
                None => Ok(()),
            },
        }
    }
}

impl Error for SinkError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.layer_error().and_then(Error::source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_the_authority_of_the_url() {
        assert_eq!(host_of("http://127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(
            host_of("https://dash.local:8765/socket.io/?x=1"),
            "dash.local:8765"
        );
        assert_eq!(host_of("localhost:8765"), "localhost:8765");
    }
}
