//! The stream: created or brought up to date, and what was done.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::builder::DEFAULT_PREFIX;

/// The stream's name when none is set.
pub const DEFAULT_STREAM: &str = "SLUICE_HOOKS";

/// What [`setup`] makes the stream: file storage, the discard policy `old` (a full stream
/// forgets its oldest messages, it never refuses new ones), and the fields below. The
/// server reserves `max_bytes` on its disk when it creates the stream.
///
/// # Choosing the duplicate window
///
/// The server drops a message whose `Nats-Msg-Id` it saw within the stream's duplicate
/// window, and acknowledges it with `duplicate: true`. A relay sends an event again when it
/// got no ack for it (the server died, or the connection, after storing it), and keeps doing
/// so for as long as the event stays in its store: minutes in an ordinary outage, hours for
/// a laptop that slept through one. A repeat after the window is stored twice; consumers
/// still tell the copies apart by `event_id` (the embedded dashboard drops repeats). So the
/// window only has to cover the usual gap between a lost ack and the resend, and should not
/// cost the server much: it keeps every id of the window in memory (about 100 bytes each).
/// The default, 2 hours, covers a relay's retries through any outage short of a night, at
/// about 30 MB for fifty machines each sending 3,000 events an hour; set it lower for
/// busier teams, never below the relay's ack timeout plus its breaker's open period
/// (about 10 s), where a resend would already be a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamSettings {
    /// The stream's name (default [`DEFAULT_STREAM`]).
    pub name: String,
    /// The subject prefix: the stream takes `<prefix>.>` (default `sluice.hooks`).
    pub prefix: String,
    /// Copies of each message: 1 on one server, 3 in a cluster of three or more (default 1).
    pub replicas: usize,
    /// The most bytes kept (default 1 GiB).
    pub max_bytes: i64,
    /// How long a message is kept (default 7 days).
    pub max_age: Duration,
    /// The duplicate window (default 2 hours; see [above](Self)).
    pub duplicate_window: Duration,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_STREAM.to_string(),
            prefix: DEFAULT_PREFIX.to_string(),
            replicas: 1,
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(2 * 3600),
        }
    }
}

impl StreamSettings {
    /// The defaults with `replicas` copies.
    pub fn replicas(replicas: usize) -> Self {
        Self {
            replicas,
            ..Self::default()
        }
    }

    fn subjects(&self) -> Vec<String> {
        let prefix = crate::subject::prefix(&self.prefix).unwrap_or_else(|| "_".to_string());
        vec![format!("{prefix}.>")]
    }

    /// `config` with these settings applied, the rest kept.
    fn apply(&self, mut config: stream::Config) -> stream::Config {
        config.name.clone_from(&self.name);
        config.subjects = self.subjects();
        config.storage = stream::StorageType::File;
        config.num_replicas = self.replicas;
        config.max_bytes = self.max_bytes;
        config.max_age = self.max_age;
        config.duplicate_window = self.duplicate_window;
        config.discard = stream::DiscardPolicy::Old;
        config
    }
}

/// What [`setup`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetupOutcome {
    /// There was no stream; it was created.
    Created,
    /// The stream differed from the settings; it was updated.
    Updated,
    /// The stream had the settings already.
    Unchanged,
}

impl fmt::Display for SetupOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
        })
    }
}

/// The server refused to create, read or update the stream; the source says why.
#[derive(Debug)]
pub struct SetupError {
    action: &'static str,
    stream: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot {} stream {}", self.action, self.stream)
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Creates the stream, or updates it to `settings`, or leaves it as it is; safe to run
/// again. Fields the settings do not name (set by hand on the server, say) are kept.
///
/// # Errors
///
/// [`SetupError`] when the server refuses: no JetStream, not enough servers for the
/// replicas, subjects that overlap another stream's, no connection.
pub async fn setup(
    client: &async_nats::Client,
    settings: &StreamSettings,
) -> Result<SetupOutcome, SetupError> {
    let js = jetstream::new(client.clone());
    let error = |action, source: Box<dyn std::error::Error + Send + Sync>| SetupError {
        action,
        stream: settings.name.clone(),
        source,
    };
    // A server outside a cluster takes a stream of 3 replicas, says it has 3, and keeps 1.
    if settings.replicas > 1 && client.server_info().cluster.is_none() {
        return Err(error(
            "replicate",
            format!(
                "the server is in no cluster: {} replicas need a cluster of at least {} servers",
                settings.replicas, settings.replicas
            )
            .into(),
        ));
    }
    match js.get_stream(&settings.name).await {
        Ok(mut stream) => {
            let info = stream
                .info()
                .await
                .map_err(|e| error("read", Box::new(e)))?;
            let current = info.config.clone();
            let wanted = settings.apply(current.clone());
            if same(&current, &wanted) {
                return Ok(SetupOutcome::Unchanged);
            }
            js.update_stream(wanted)
                .await
                .map_err(|e| error("update", Box::new(e)))?;
            Ok(SetupOutcome::Updated)
        }
        Err(e) if is_not_found(&e) => {
            js.create_stream(settings.apply(stream::Config::default()))
                .await
                .map_err(|e| error("create", Box::new(e)))?;
            Ok(SetupOutcome::Created)
        }
        Err(e) => Err(error("read", Box::new(e))),
    }
}

fn is_not_found(error: &jetstream::context::GetStreamError) -> bool {
    matches!(
        error.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(e)
            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// Whether the fields [`StreamSettings`] sets are equal.
fn same(a: &stream::Config, b: &stream::Config) -> bool {
    a.subjects == b.subjects
        && a.storage == b.storage
        && a.num_replicas.max(1) == b.num_replicas.max(1)
        && a.max_bytes == b.max_bytes
        && a.max_age == b.max_age
        && a.duplicate_window == b.duplicate_window
        && a.discard == b.discard
}

/// The client could not connect; the source is the client's error. Names the servers
/// without credentials.
#[derive(Debug)]
pub struct ConnectFailed {
    server: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl ConnectFailed {
    /// The servers, without credentials.
    pub fn server(&self) -> &str {
        &self.server
    }
}

impl fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot connect to {}", self.server)
    }
}

impl std::error::Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Connects once, for a command such as `sluice-hook nats setup`: the same URLs and
/// credentials as [`NatsSink::builder`](crate::NatsSink::builder), but waits for the
/// server and fails if it does not answer (an authorization or TLS failure names it).
///
/// # Errors
///
/// [`ConnectFailed`], whose source is a [`ConfigError`](crate::ConfigError) for a bad URL or
/// credentials file, or the client's error.
pub async fn connect(
    url: &str,
    credentials_file: Option<&std::path::Path>,
) -> Result<async_nats::Client, ConnectFailed> {
    let failed = |server: String| {
        move |source: Box<dyn std::error::Error + Send + Sync>| ConnectFailed { server, source }
    };
    let servers = crate::server::Servers::parse(url)
        .map_err(|e| failed(crate::server::redact(url))(Box::new(e)))?;
    let options = crate::builder::connect_options(&servers, credentials_file)
        .await
        .map_err(|e| failed(servers.display())(Box::new(e)))?;
    options
        .name("sluice-setup")
        .connect(servers.urls.clone())
        .await
        .map_err(|e| failed(servers.display())(Box::new(e)))
}
