//! The sink's builder: every knob, and the layer stack it builds (batch → breaker →
//! publisher over one client).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_batch::{BatchLayer, Dispatch, Overflow};
use sluice_breaker::{BreakerOpen, CircuitBreakerLayer, OpenDuration};
use tokio::sync::mpsc;
use tower::ServiceBuilder;

use crate::connection::Events;
use crate::error::ConfigError;
use crate::publish::{self, Counts, Pending, Publisher};
use crate::server::{Servers, UrlAuth};
use crate::sink::NatsSink;
use crate::subject;

/// The subject prefix when none is set.
pub const DEFAULT_PREFIX: &str = "sluice.hooks";

/// Builds a [`NatsSink`]; get one from [`NatsSink::builder`].
///
/// The defaults: batches of at most 64 events, eager (a batch leaves as soon as fewer than 4
/// are on their way; [`max_wait`](Self::max_wait) 50 ms bounds it otherwise); 5 s for an ack;
/// 2 s to wait for the connection before a batch fails as
/// [`NotConnected`](crate::SinkError::NotConnected); the breaker opens after 5 failed batches
/// in a row, for 5 s; a queue of 10,000 events that drops the newest when full (a publish
/// never waits); reconnects from 100 ms, doubling to 5 s.
#[derive(Debug, Clone)]
pub struct SinkBuilder {
    url: String,
    credentials_file: Option<PathBuf>,
    prefix: String,
    host: String,
    name: String,
    max_items: usize,
    max_in_flight: usize,
    max_wait: Duration,
    queue_capacity: usize,
    ack_timeout: Duration,
    connect_timeout: Duration,
    connect_wait: Duration,
    failure_threshold: u32,
    open_duration: OpenDuration,
    reconnect_backoff: (Duration, Duration),
}

impl SinkBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            credentials_file: None,
            prefix: DEFAULT_PREFIX.to_string(),
            host: "_".to_string(),
            name: "sluice".to_string(),
            max_items: 64,
            max_in_flight: 4,
            max_wait: Duration::from_millis(50),
            queue_capacity: 10_000,
            ack_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            connect_wait: Duration::from_secs(2),
            failure_threshold: 5,
            open_duration: OpenDuration::Fixed(Duration::from_secs(5)),
            reconnect_backoff: (Duration::from_millis(100), Duration::from_secs(5)),
        }
    }

    /// Authenticates with a credentials file (`.creds`: a user JWT and its nkey seed), as
    /// `nsc` writes them. Not with credentials in the URL as well.
    #[must_use]
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    /// Sets the subject prefix (default [`DEFAULT_PREFIX`], `sluice.hooks`); each of its
    /// tokens is sanitised.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the host token of every subject (default `_`); pass
    /// [`default_host`](crate::default_host)`()` for `SLUICE_HOST` or the hostname.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets the client's name, shown by the server's monitoring (default `sluice`).
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the most events per batch (default 64): published one after the other, then
    /// their acks awaited together.
    #[must_use]
    pub fn max_items(mut self, n: usize) -> Self {
        self.max_items = n;
        self
    }

    /// Sets how many batches may be on their way at once (default 4). They are written in
    /// order by one writer; while one waits for its acks the next is written.
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets how long a batch may wait for room on its way before it leaves anyway (default
    /// 50 ms).
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Sets how many events may wait (default 10,000); beyond, new ones are turned away as
    /// [`QueueFull`](crate::SinkError::QueueFull).
    #[must_use]
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Sets how long a message waits for its `PublishAck` (default 5 s).
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Sets how long one connection attempt may take (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a batch waits for the connection before failing as not connected
    /// (default 2 s).
    #[must_use]
    pub fn connect_wait(mut self, wait: Duration) -> Self {
        self.connect_wait = wait;
        self
    }

    /// Sets the failed batches in a row that open the breaker (default 5).
    #[must_use]
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Sets how long the breaker stays open (default 5 s: the client reconnects by itself,
    /// so the breaker only spares a caller from queueing onto a dead link).
    #[must_use]
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = OpenDuration::Fixed(duration);
        self
    }

    /// Sets the wait between reconnect attempts: from `initial`, doubling up to `max`
    /// (default 100 ms to 5 s).
    #[must_use]
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_backoff = (initial, max);
        self
    }

    /// Checks the settings, reads the credentials file, and starts the client and the
    /// sink's worker on the current Tokio runtime.
    ///
    /// It does not wait for the server: the client connects in the background and
    /// reconnects by itself, so a sink built while the server is down works once it is up.
    /// It is `async` only to read the credentials file without blocking the runtime.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a URL that is not `nats://` or `tls://`, an unreadable credentials
    /// file, credentials both in the URL and in a file, an empty prefix, or a zero setting.
    pub async fn build(self) -> Result<NatsSink, ConfigError> {
        let prefix = subject::prefix(&self.prefix).ok_or(ConfigError::Prefix)?;
        for (field, value) in [
            ("ack_timeout", self.ack_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::ZeroDuration { field });
            }
        }
        let servers = Servers::parse(&self.url)?;
        let events = Events::new();
        let options = connect_options(&servers, self.credentials_file.as_deref())
            .await?
            .name(&self.name)
            .connection_timeout(self.connect_timeout)
            .retry_on_initial_connect()
            .reconnect_delay_callback({
                let (initial, max) = self.reconnect_backoff;
                move |attempts| backoff(initial, max, attempts)
            })
            .event_callback({
                let events = events.clone();
                move |event| {
                    events.record(&event);
                    async {}
                }
            });
        let client = options
            .connect(servers.urls.clone())
            .await
            .map_err(|_| ConfigError::Url {
                url: servers.display(),
                reason: "the client refused it",
            })?;
        let js = async_nats::jetstream::ContextBuilder::new()
            .timeout(self.ack_timeout)
            .max_ack_inflight(self.max_items.saturating_mul(self.max_in_flight).max(1))
            .backpressure_on_inflight(true)
            .build(client.clone());

        let breaker = CircuitBreakerLayer::builder()
            .consecutive_failures(self.failure_threshold)
            .open_backoff(self.open_duration)
            .build()
            .map_err(ConfigError::Breaker)?;
        let batch = BatchLayer::builder()
            .max_items(self.max_items)
            .max_in_flight(self.max_in_flight)
            .max_in_flight_per_key(self.max_in_flight)
            .dispatch(Dispatch::Eager)
            .max_wait(self.max_wait)
            .capacity(self.queue_capacity)
            .overflow(Overflow::DropNewest)
            .rejected_if(|error| error.is::<BreakerOpen>())
            .build()
            .map_err(ConfigError::Batch)?;

        let server = servers.display();
        let counts = Arc::new(Counts::default());
        let (jobs, queue) = mpsc::unbounded_channel();
        let link = events.link(client.clone(), server.clone());
        let status = events.link(client, server.clone());
        tokio::spawn(publish::write(
            link,
            js,
            self.connect_wait,
            self.ack_timeout,
            Arc::clone(&counts),
            queue,
        ));
        let publisher = Publisher {
            jobs,
            counts: Arc::clone(&counts),
            server: server.into(),
            ack_timeout: self.ack_timeout,
        };
        let breaker_handle = breaker.handle();
        let batcher = ServiceBuilder::new()
            .layer::<BatchLayer<Pending>>(batch)
            .layer(breaker)
            .service(publisher);
        Ok(NatsSink {
            batch: batcher.handle(),
            batcher,
            breaker: breaker_handle,
            link: status,
            prefix,
            host: self.host,
            counts,
        })
    }
}

/// The wait before reconnect attempt `attempts` (1 for the first).
fn backoff(initial: Duration, max: Duration, attempts: usize) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(20);
    initial.saturating_mul(1 << doublings).min(max)
}

/// Connect options carrying the servers' credentials: from the URL, or from a file.
pub(crate) async fn connect_options(
    servers: &Servers,
    credentials_file: Option<&std::path::Path>,
) -> Result<async_nats::ConnectOptions, ConfigError> {
    let mut options = async_nats::ConnectOptions::new();
    match &servers.auth {
        UrlAuth::None => {}
        UrlAuth::Token(token) => options = options.token(token.clone()),
        UrlAuth::UserPassword(user, password) => {
            options = options.user_and_password(user.clone(), password.clone());
        }
    }
    if let Some(path) = credentials_file {
        if servers.auth != UrlAuth::None {
            return Err(ConfigError::TwoCredentials);
        }
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| ConfigError::Credentials {
                    path: path.to_path_buf(),
                    source,
                })?;
    }
    if servers.tls {
        options = options.require_tls(true);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_to_the_cap() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_secs(5));
        let waits: Vec<_> = [1, 2, 3, 7, 1000, usize::MAX]
            .into_iter()
            .map(|n| backoff(initial, max, n).as_millis())
            .collect();
        assert_eq!(waits, [100, 200, 400, 5000, 5000, 5000]);
    }
}
