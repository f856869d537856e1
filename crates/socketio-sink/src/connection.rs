//! The pool's connector and its connections.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use serde_json::Value;
use sluice_batch::Batch;
use sluice_pool::{BoxFuture, Lifecycle};
use tokio::sync::{mpsc, oneshot};
use tower_service::Service;

use crate::client::{Link, LinkConfig};
use crate::emit::{Emit, Encoding, Name};
use crate::error::{BoxError, ConnectionLost, WrongNamespace};

/// Makes Socket.IO connections for the pool: a `Service<()>` whose responses are
/// [`Connection`]s.
#[derive(Clone)]
pub struct SocketIoConnector {
    config: Arc<LinkConfig>,
    encoding: Encoding,
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
    /// event, with a 5 s emit timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            config: Arc::new(LinkConfig {
                url: url.into(),
                namespace: "/".to_string(),
                auth: None,
                headers: Vec::new(),
                emit_timeout: Duration::from_secs(5),
            }),
            encoding: Encoding::PerEvent,
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

    /// Sets how a batch goes on the wire (default: one emit per event).
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
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
        Box::pin(async move {
            let link = Link::open(&config).await?;
            tracing::debug!(target: "sluice_socketio", url = %config.url, "connected");
            Ok(Connection::start(link, config.namespace.clone(), encoding))
        })
    }
}

/// Batches a connection takes before it answers `Pending`: the next batch is handed over
/// while the previous one is written, so the socket never idles between batches; both are
/// written in the order they were taken.
const PIPELINE: usize = 2;

/// One open Socket.IO connection: a `Service<Batch<Emit, Name>>` whose batches are written
/// in the order they are called, by a task of its own.
pub struct Connection {
    link: Link,
    jobs: mpsc::UnboundedSender<Job>,
    slots: Arc<Slots>,
}

struct Job {
    batch: Batch<Emit, Name>,
    done: oneshot::Sender<Result<(), BoxError>>,
}

/// Batches taken and not yet written; wakes the task waiting for room.
#[derive(Debug, Default)]
struct Slots {
    taken: AtomicUsize,
    waiter: AtomicWaker,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("link", &self.link)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl Connection {
    fn start(link: Link, namespace: String, encoding: Encoding) -> Self {
        let (jobs, mut queue) = mpsc::unbounded_channel::<Job>();
        let slots = Arc::new(Slots::default());
        let writer = link.clone();
        let freed = Arc::clone(&slots);
        tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                let result = write(&writer, &namespace, encoding, job.batch).await;
                freed.taken.fetch_sub(1, Ordering::AcqRel);
                freed.waiter.wake();
                let _ = job.done.send(result);
            }
        });
        Self { link, jobs, slots }
    }
}

impl Service<Batch<Emit, Name>> for Connection {
    type Response = ();
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.link.is_broken() {
            // The pool evicts it and makes another.
            return Poll::Ready(Err(Box::new(ConnectionLost {
                message: self.link.broken_reason(),
            })));
        }
        if self.slots.taken.load(Ordering::Acquire) >= PIPELINE {
            self.slots.waiter.register(cx.waker());
            // Checked again: a batch may have finished before the waker was in place.
            if self.slots.taken.load(Ordering::Acquire) >= PIPELINE {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, batch: Batch<Emit, Name>) -> Self::Future {
        self.slots.taken.fetch_add(1, Ordering::AcqRel);
        let (done, outcome) = oneshot::channel();
        if self.jobs.send(Job { batch, done }).is_err() {
            self.slots.taken.fetch_sub(1, Ordering::AcqRel);
        }
        Box::pin(async move {
            outcome.await.unwrap_or_else(|_| {
                Err(Box::new(ConnectionLost {
                    message: "the connection's writer stopped".to_string(),
                }))
            })
        })
    }
}

async fn write(
    link: &Link,
    namespace: &str,
    encoding: Encoding,
    batch: Batch<Emit, Name>,
) -> Result<(), BoxError> {
    if batch.key() != namespace {
        return Err(Box::new(WrongNamespace {
            expected: namespace.to_string(),
            got: batch.key().to_string(),
        }));
    }
    match encoding {
        Encoding::PerEvent => {
            link.emit_all(batch.into_iter().map(|emit| (emit.event, emit.payload)))
                .await
        }
        Encoding::Array => {
            let mut items = batch.into_items().into_iter();
            let Some(first) = items.next() else {
                return Ok(());
            };
            let event = first.event;
            let payloads: Vec<Value> = std::iter::once(first.payload)
                .chain(items.map(|emit| emit.payload))
                .collect();
            link.emit_all([(event, Value::Array(payloads))]).await
        }
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
