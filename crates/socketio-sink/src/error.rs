//! Errors.

use std::fmt;
use std::time::Duration;

use sluice_batch::{BatchFailed, QueueFull};
use sluice_breaker::BreakerOpen;
use sluice_pool::{ConnectFailed, ConnectTimedOut, PoolTimeout};

/// The alias tower uses for type-erased errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The server refused the namespace (a Socket.IO CONNECT_ERROR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRefused {
    /// The namespace asked for.
    pub namespace: String,
    /// What the server said.
    pub message: String,
}

impl fmt::Display for NamespaceRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server refused namespace {}: {}",
            self.namespace, self.message
        )
    }
}

impl std::error::Error for NamespaceRefused {}

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

impl std::error::Error for EmitTimedOut {}

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

impl std::error::Error for AckTimedOut {}

/// The connection failed: a write error, the server closed it, or the handshake failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLost {
    /// What the client reported.
    pub message: String,
}

impl fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket.io connection failed: {}", self.message)
    }
}

impl std::error::Error for ConnectionLost {}

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

impl std::error::Error for WrongNamespace {}

/// Why an event was not delivered: one enum to match, built by downcasting the layers'
/// errors once.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// Dropped: the circuit breaker is open (the dashboard was failing).
    BreakerOpen {
        /// When the breaker lets a probe through, if known.
        retry_after: Option<Duration>,
    },
    /// Dropped: the queue was full.
    QueueFull,
    /// The sink was shut down.
    Closed,
    /// The namespace was refused by the server.
    NamespaceRefused(NamespaceRefused),
    /// No connection could be made; the connect error.
    Connect(BoxError),
    /// No connection became ready in time; the last connect error, if any.
    PoolTimeout(Option<String>),
    /// The emit was not written in time.
    EmitTimedOut(Duration),
    /// The connection failed while emitting.
    ConnectionLost(String),
    /// The server did not acknowledge the batch in time (written, maybe received).
    AckTimedOut(Duration),
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
                    .unwrap_or_else(|| Self::Other(failed.inner().to_string().into()))
            }
            Err(error) => error,
        };
        if error.is::<QueueFull>() {
            return Self::QueueFull;
        }
        if error.is::<sluice_batch::Closed>() || error.is::<sluice_pool::Closed>() {
            return Self::Closed;
        }
        Self::from_inner(&*error).unwrap_or(Self::Other(error))
    }

    fn from_inner(error: &(dyn std::error::Error + Send + Sync + 'static)) -> Option<Self> {
        if let Some(open) = error.downcast_ref::<BreakerOpen>() {
            return Some(Self::BreakerOpen {
                retry_after: open.retry_after(),
            });
        }
        if let Some(failed) = error.downcast_ref::<ConnectFailed>() {
            let cause = failed.error();
            if let Some(refused) = cause.downcast_ref::<NamespaceRefused>() {
                return Some(Self::NamespaceRefused(refused.clone()));
            }
            if let Some(timeout) = cause.downcast_ref::<ConnectTimedOut>() {
                return Some(Self::Connect(Box::new(*timeout)));
            }
            return Some(Self::Connect(cause.to_string().into()));
        }
        if let Some(timeout) = error.downcast_ref::<PoolTimeout>() {
            return Some(Self::PoolTimeout(
                timeout.last_connect_error().map(|e| e.to_string()),
            ));
        }
        if let Some(timeout) = error.downcast_ref::<EmitTimedOut>() {
            return Some(Self::EmitTimedOut(timeout.after));
        }
        if let Some(timeout) = error.downcast_ref::<AckTimedOut>() {
            return Some(Self::AckTimedOut(timeout.after));
        }
        if let Some(lost) = error.downcast_ref::<ConnectionLost>() {
            return Some(Self::ConnectionLost(lost.message.clone()));
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
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BreakerOpen { .. } => f.write_str("dropped: circuit breaker open"),
            Self::QueueFull => f.write_str("dropped: queue full"),
            Self::Closed => f.write_str("sink closed"),
            Self::NamespaceRefused(refused) => refused.fmt(f),
            Self::Connect(error) => write!(f, "could not connect: {error}"),
            Self::PoolTimeout(Some(last)) => {
                write!(f, "no connection in time (last connect error: {last})")
            }
            Self::PoolTimeout(None) => f.write_str("no connection in time"),
            Self::EmitTimedOut(after) => write!(f, "emit not written within {after:?}"),
            Self::ConnectionLost(message) => write!(f, "connection lost: {message}"),
            Self::AckTimedOut(after) => write!(f, "no ack within {after:?}"),
            Self::WrongNamespace(wrong) => wrong.fmt(f),
            Self::Other(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for SinkError {}
