//! Errors: each failure a small type of its own, and [`SinkError`], the one enum to match.
//!
//! Every `Display` is one line about its own failure; the cause, when there is one, is the
//! [`source`](std::error::Error::source). No message shows a credential: servers are named
//! by their URL without user information.

use std::error::Error;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_batch::{BatchFailed, QueueFull};
use sluice_breaker::BreakerOpen;

pub use tower::BoxError;

/// The command that creates the stream, named wherever a stream is missing.
pub const SETUP_HINT: &str = "create it with `sluice-hook nats setup`";

/// The client had no connection to the server when a batch was to be written (the server is
/// down or unreachable, or refused the client: see [`last_error`](Self::last_error)). An
/// outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotConnected {
    pub(crate) server: String,
    pub(crate) last_error: Option<String>,
}

impl NotConnected {
    /// The servers, without credentials.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The client's last connection error in a few words (`authorization violation`,
    /// `tls error`, `io error`), if it reported one.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }
}

impl fmt::Display for NotConnected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not connected to {}", self.server)?;
        match &self.last_error {
            Some(error) => write!(f, " ({error})"),
            None => Ok(()),
        }
    }
}

impl Error for NotConnected {}

/// No stream takes the subject: the server answered "no responders". An outage: the stream
/// was never created, was deleted, or JetStream is not (yet) running on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoStream {
    pub(crate) subject: String,
    pub(crate) server: String,
}

impl NoStream {
    /// The subject published to.
    pub fn subject(&self) -> &str {
        &self.subject
    }
}

impl fmt::Display for NoStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no JetStream stream on {} takes subject {}: {SETUP_HINT}",
            self.server, self.subject
        )
    }
}

impl Error for NoStream {}

/// No `PublishAck` came within the ack timeout. An outage: the message may or may not be in
/// the stream; sending it again is safe within the stream's duplicate window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckTimedOut {
    /// The timeout that passed.
    pub after: Duration,
}

impl fmt::Display for AckTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no JetStream ack within {:?}", self.after)
    }
}

impl Error for AckTimedOut {}

/// The connection failed while the message waited for its ack. An outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLost {
    pub(crate) server: String,
}

impl fmt::Display for ConnectionLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection to {} lost before the ack", self.server)
    }
}

impl Error for ConnectionLost {}

/// The stream refused messages for want of room (`max_bytes`, `max_msgs` with the discard
/// policy `new`, or the server's storage). An outage: it is no event's fault.
#[derive(Debug, Clone)]
pub struct StreamFull {
    pub(crate) source: Arc<async_nats::jetstream::context::PublishError>,
}

impl fmt::Display for StreamFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the stream has no room")
    }
}

impl Error for StreamFull {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// The server or the client refused this message: it is over the server's `max_payload` or
/// the stream's `max_msg_size`, or the server answered with an error about it. Could be the
/// event's own fault; the source says what.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub(crate) source: Arc<async_nats::jetstream::context::PublishError>,
}

impl Rejected {
    /// Whether the message is larger than the server or the stream accepts.
    pub fn is_too_large(&self) -> bool {
        use async_nats::jetstream::context::PublishErrorKind;
        self.source.kind() == PublishErrorKind::MaxPayloadExceeded
            || jetstream_code(&self.source)
                == Some(async_nats::jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM)
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the message was refused")
    }
}

impl Error for Rejected {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// The writer task is gone (the runtime is shutting down): the sink is closed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterStopped;

impl fmt::Display for WriterStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the sink's writer stopped")
    }
}

impl Error for WriterStopped {}

/// The JetStream error code behind a publish error, if the server sent one.
pub(crate) fn jetstream_code(
    error: &async_nats::jetstream::context::PublishError,
) -> Option<async_nats::jetstream::ErrorCode> {
    error
        .source()?
        .downcast_ref::<async_nats::jetstream::Error>()
        .map(async_nats::jetstream::Error::error_code)
}

/// Why an event was not confirmed: one enum to match, built once. Each variant is one
/// failure; `Display` and `source` are that failure's.
///
/// [`is_outage`](Self::is_outage) sorts them for a caller that keeps events: an outage is
/// never the event's fault (retry it later, set nothing aside); only
/// [`Rejected`](Self::Rejected) could be.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// Turned away: the circuit breaker is open (the server was failing).
    BreakerOpen {
        /// When the breaker lets a probe through, if known.
        retry_after: Option<Duration>,
    },
    /// Turned away: the queue was full.
    QueueFull,
    /// The sink was shut down.
    Closed,
    /// No connection to the server.
    NotConnected(NotConnected),
    /// No stream takes the subject (create it: [`SETUP_HINT`]).
    NoStream(NoStream),
    /// No ack in time: the message may be in the stream.
    AckTimedOut(AckTimedOut),
    /// The connection failed before the ack.
    ConnectionLost(ConnectionLost),
    /// The stream has no room.
    StreamFull(StreamFull),
    /// This message was refused: the event's own fault, possibly.
    Rejected(Rejected),
    /// Anything else (counted as an outage).
    Other(BoxError),
}

impl SinkError {
    /// Classifies an error from the layer stack.
    pub(crate) fn from_box(error: BoxError) -> Self {
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
            // The retry time is the breaker's, read through its handle by `PublishFuture`.
            return Some(Self::BreakerOpen { retry_after: None });
        }
        if let Some(error) = error.downcast_ref::<NotConnected>() {
            return Some(Self::NotConnected(error.clone()));
        }
        if let Some(error) = error.downcast_ref::<NoStream>() {
            return Some(Self::NoStream(error.clone()));
        }
        if let Some(error) = error.downcast_ref::<AckTimedOut>() {
            return Some(Self::AckTimedOut(*error));
        }
        if let Some(error) = error.downcast_ref::<ConnectionLost>() {
            return Some(Self::ConnectionLost(error.clone()));
        }
        if let Some(error) = error.downcast_ref::<StreamFull>() {
            return Some(Self::StreamFull(error.clone()));
        }
        if error.is::<sluice_batch::Closed>() || error.is::<WriterStopped>() {
            return Some(Self::Closed);
        }
        None
    }

    /// Whether the event failed for a reason of the destination's, never its own: no
    /// connection, no stream for the subject, no ack in time, a lost connection, a full
    /// stream, the breaker open, the queue full, the sink closed, or anything unknown. Only
    /// [`Rejected`](Self::Rejected) is not an outage.
    pub fn is_outage(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }

    /// Whether the event was turned away on purpose (breaker open, queue full) without being
    /// sent.
    pub fn is_dropped(&self) -> bool {
        matches!(self, Self::BreakerOpen { .. } | Self::QueueFull)
    }

    fn failure(&self) -> Option<&(dyn Error + 'static)> {
        Some(match self {
            Self::NotConnected(error) => error,
            Self::NoStream(error) => error,
            Self::AckTimedOut(error) => error,
            Self::ConnectionLost(error) => error,
            Self::StreamFull(error) => error,
            Self::Rejected(error) => error,
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
            other => match other.failure() {
                Some(error) => fmt::Display::fmt(error, f),
                None => Ok(()),
            },
        }
    }
}

impl Error for SinkError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.failure().and_then(Error::source)
    }
}

/// A sink configuration that [`SinkBuilder::build`](crate::SinkBuilder::build) refused.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The server URL (shown without credentials) cannot be used.
    Url {
        /// The URL or list, credentials replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The subject prefix has no token left once sanitised.
    Prefix,
    /// The credentials file cannot be read or parsed; the source says why.
    Credentials {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// A URL carries credentials and a credentials file was given too.
    TwoCredentials,
    /// A batching setting was refused.
    Batch(sluice_batch::ConfigError),
    /// A breaker setting was refused.
    Breaker(sluice_breaker::ConfigError),
    /// A duration that must be positive was zero (`field` names the setting).
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Url { url, reason } => write!(f, "cannot use server URL {url:?}: {reason}"),
            Self::Prefix => f.write_str("the subject prefix is empty once sanitised"),
            Self::Credentials { path, .. } => {
                write!(f, "cannot use credentials file {}", path.display())
            }
            Self::TwoCredentials => {
                f.write_str("credentials both in the URL and in a credentials file: keep one")
            }
            Self::Batch(_) => f.write_str("invalid batching setting"),
            Self::Breaker(_) => f.write_str("invalid circuit breaker setting"),
            Self::ZeroDuration { field } => write!(f, "{field} must be more than zero"),
        }
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Credentials { source, .. } => Some(source),
            Self::Batch(error) => Some(error),
            Self::Breaker(error) => Some(error),
            _ => None,
        }
    }
}
