//! The pool's connector and its connections.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::Value;
use sluice_batch::Batch;
use sluice_pool::{BoxFuture, Lifecycle};
use tower_service::Service;

use crate::client::{Argument, Link, LinkConfig};
use crate::emit::{Delivery, Emit, Encoded, Encoding, Name};
use crate::error::{host_of, BoxError, ConnectError, WrongNamespace};
use crate::pipeline::Pipeline;

/// Makes Socket.IO connections for the pool: a `Service<()>` whose responses are
/// [`Connection`]s.
#[derive(Clone)]
pub struct SocketIoConnector {
    config: Arc<LinkConfig>,
    encoding: Encoding,
    /// Events written and not yet acknowledged, over every connection made.
    unconfirmed: Arc<AtomicU64>,
    /// The last connect error with its cause, for the sink's stats.
    last_failure: Arc<LastFailure>,
}

/// The last connect that failed in the connector, described with its host and cause (the
/// pool keeps only the error's one-line text).
#[derive(Debug, Default)]
pub(crate) struct LastFailure(std::sync::Mutex<Option<(String, String)>>);

impl LastFailure {
    fn record(&self, error: &BoxError) {
        if let Some(connect) = error.downcast_ref::<ConnectError>() {
            let full = format!("{connect} ({})", connect.reason());
            *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((connect.to_string(), full));
        }
    }

    /// `pool_error` (the pool's last connect error, as text) with its host and cause:
    /// `cannot connect to 127.0.0.1:9 (connection refused)`.
    pub(crate) fn describe(&self, pool_error: String, url: &str) -> String {
        let last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*last {
            Some((line, full)) if *line == pool_error => full.clone(),
            // Not ours: a connect timeout, made by the pool around the connector.
            _ => format!("cannot connect to {} ({pool_error})", host_of(url)),
        }
    }
}

impl fmt::Debug for SocketIoConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketIoConnector")
            .field("url", &self.config.url)
            .field("namespace", &self.config.namespace)
            // The auth payload may hold a secret: never printed.
            .field("auth", &self.config.auth.as_ref().map(|_| "<set>"))
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

impl SocketIoConnector {
    /// A connector for `url` (e.g. `http://localhost:8765`) on namespace `/`, emitting per
    /// event, delivery [`Acknowledged`](Delivery::Acknowledged), with a 5 s emit timeout
    /// and a 5 s ack timeout.
    ///
    /// Its connections, used directly, ask for an ack whenever none is outstanding; the sink
    /// has them ask once half the batches it lets on their way are unconfirmed (see
    /// [`SinkBuilder::max_in_flight`](crate::SinkBuilder::max_in_flight)).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            config: Arc::new(LinkConfig {
                url: url.into(),
                namespace: "/".to_string(),
                auth: None,
                headers: Vec::new(),
                emit_timeout: Duration::from_secs(5),
                ack_timeout: Duration::from_secs(5),
                delivery: Delivery::Acknowledged,
                ack_every: 1,
            }),
            encoding: Encoding::PerEvent,
            unconfirmed: Arc::default(),
            last_failure: Arc::default(),
        }
    }

    fn config_mut(&mut self) -> &mut LinkConfig {
        Arc::make_mut(&mut self.config)
    }

    /// Sets the namespace (default `/`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.config_mut().namespace = namespace.into();
        self
    }

    /// Sends `auth` with the CONNECT (default: none, which the dashboard requires).
    #[must_use]
    pub fn auth(mut self, auth: Value) -> Self {
        self.config_mut().auth = Some(auth);
        self
    }

    /// Adds an HTTP header to the opening request.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config_mut().headers.push((name.into(), value.into()));
        self
    }

    /// Sets how long one emit may take to be written (default 5 s).
    #[must_use]
    pub fn emit_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().emit_timeout = timeout;
        self
    }

    /// Sets when an event counts as sent (default: once the server acknowledged it).
    #[must_use]
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.config_mut().delivery = delivery;
        self
    }

    /// Sets how long a written batch waits for its ack (default 5 s); past it the batch
    /// fails and the connection is dropped.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.config_mut().ack_timeout = timeout;
        self
    }

    /// Sets how a batch goes on the wire (default: one emit per event).
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Lets each connection have `batches` on their way: it asks for an ack once half of
    /// them are written, so the other half can be written while that ack travels.
    pub(crate) fn batches_on_their_way(mut self, batches: usize) -> Self {
        self.config_mut().ack_every = (batches as u64 / 2).max(1);
        self
    }

    pub(crate) fn url(&self) -> &str {
        &self.config.url
    }

    pub(crate) fn namespace_name(&self) -> &str {
        &self.config.namespace
    }

    pub(crate) fn encoding_kind(&self) -> Encoding {
        self.encoding
    }

    /// Its emit and ack timeouts.
    pub(crate) fn timeouts(&self) -> (Duration, Duration) {
        (self.config.emit_timeout, self.config.ack_timeout)
    }

    pub(crate) fn delivery_kind(&self) -> Delivery {
        self.config.delivery
    }

    pub(crate) fn unconfirmed(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.unconfirmed)
    }

    pub(crate) fn last_failure(&self) -> Arc<LastFailure> {
        Arc::clone(&self.last_failure)
    }
}

impl Service<()> for SocketIoConnector {
    type Response = Connection;
    type Error = BoxError;
    type Future = BoxFuture<Result<Connection, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, (): ()) -> Self::Future {
        let config = Arc::clone(&self.config);
        let encoding = self.encoding;
        let unconfirmed = Arc::clone(&self.unconfirmed);
        let last_failure = Arc::clone(&self.last_failure);
        Box::pin(async move {
            let link = Link::open(&config)
                .await
                .inspect_err(|error| last_failure.record(error))?;
            tracing::debug!(target: "sluice_socketio", url = %config.url, "connected");
            Ok(Connection::start(link, config, encoding, unconfirmed))
        })
    }
}

/// One open Socket.IO connection: a `Service<Batch<Emit, Name>>` (and
/// `Service<Batch<Encoded, Name>>`, what the sink sends) that writes each batch in the
/// caller's task.
///
/// No writer task of its own: the batch worker polls the writes. Batches are written in the
/// order they were called, one after the other, and a connection takes the next batch
/// while earlier ones wait for their ack (see [`Delivery::Acknowledged`]); it is ready
/// until it breaks.
pub struct Connection {
    link: Link,
    namespace: Arc<str>,
    encoding: Encoding,
    config: Arc<LinkConfig>,
    pipeline: Arc<Pipeline>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("link", &self.link)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn start(
        link: Link,
        config: Arc<LinkConfig>,
        encoding: Encoding,
        unconfirmed: Arc<AtomicU64>,
    ) -> Self {
        Self {
            pipeline: Pipeline::new(&link, unconfirmed),
            link,
            namespace: Arc::from(config.namespace.as_str()),
            encoding,
            config,
        }
    }
}

/// What a connection writes: [`Emit`]s (serialized on the way out) and [`Encoded`]s (serialized
/// already).
pub(crate) trait Item: Send + 'static {
    /// The event and its argument.
    fn into_event(self) -> (Name, Argument);

    /// One event whose argument is the array of the items' payloads, named after the first.
    fn into_array(items: Vec<Self>) -> Option<(Name, Argument)>
    where
        Self: Sized;
}

impl Item for Emit {
    fn into_event(self) -> (Name, Argument) {
        (self.event, Argument::Value(self.payload))
    }

    fn into_array(items: Vec<Self>) -> Option<(Name, Argument)> {
        let mut items = items.into_iter();
        let first = items.next()?;
        let payloads = std::iter::once(first.payload)
            .chain(items.map(|emit| emit.payload))
            .collect();
        Some((first.event, Argument::Value(Value::Array(payloads))))
    }
}

impl Item for Encoded {
    fn into_event(self) -> (Name, Argument) {
        let (event, json) = self.into_parts();
        (event, Argument::Json(json))
    }

    fn into_array(items: Vec<Self>) -> Option<(Name, Argument)> {
        let length = items
            .iter()
            .map(|item| item.json().len() + 1)
            .sum::<usize>()
            + 1;
        let mut items = items.into_iter();
        let (event, first) = items.next()?.into_parts();
        let mut array = String::with_capacity(length);
        array.push('[');
        array.push_str(&first);
        for item in items {
            array.push(',');
            array.push_str(item.json());
        }
        array.push(']');
        Some((event, Argument::Json(array)))
    }
}

impl<T: Item> Service<Batch<T, Name>> for Connection {
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.link.is_broken() {
            // The pool evicts it and makes another.
            return Poll::Ready(Err(self.link.broken_error()));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch<T, Name>) -> Self::Future {
        if batch.key() != &*self.namespace {
            let wrong = WrongNamespace {
                expected: self.namespace.to_string(),
                got: batch.key().to_string(),
            };
            return Box::pin(std::future::ready(Err(Box::new(wrong) as BoxError)));
        }
        let items = batch.len() as u64;
        let events: Vec<_> = match self.encoding {
            Encoding::PerEvent => batch.into_iter().map(Item::into_event).collect(),
            Encoding::Array => T::into_array(batch.into_items()).into_iter().collect(),
        };
        if events.is_empty() {
            // Nothing to write: no place in the write order, which a batch that writes
            // nothing could not keep (a batch before it may count on it for its ack).
            return Box::pin(std::future::ready(Ok(())));
        }
        let ticket = self.pipeline.ticket();
        Box::pin(Arc::clone(&self.pipeline).deliver(
            self.link.clone(),
            Arc::clone(&self.config),
            ticket,
            items,
            events,
        ))
    }
}

/// Closes connections politely when the pool is done with them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Goodbye {
    pub(crate) timeout: Duration,
}

impl Lifecycle<Connection> for Goodbye {
    fn close(&self, conn: Connection) -> BoxFuture<()> {
        let timeout = self.timeout;
        Box::pin(conn.link.close(timeout))
    }
}
