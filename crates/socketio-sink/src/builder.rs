//! The sink's builder: every knob, and the layer stack it builds (batch → breaker → pool →
//! connector).

use std::time::Duration;

use sluice_batch::{BatchLayer, Dispatch, Overflow};
use sluice_breaker::{BreakerOpen, CircuitBreakerLayer, OpenDuration};
use sluice_pool::PoolLayer;
use tower::ServiceBuilder;

use crate::connection::{Goodbye, SocketIoConnector};
use crate::emit::{Delivery, Encoded, Encoding};
use crate::error::{BoxError, ConfigError};
use crate::sink::SocketIoSink;

/// Builds a [`SocketIoSink`]; get one from [`SocketIoSink::builder`].
///
/// The defaults are the reference system's: 5 connections; the breaker opens after 5
/// failures in a row, for 30 s; batches of at most 10 events, at most 50 ms after the first,
/// grouped by namespace. Plus: eager dispatch (a batch leaves as soon as its namespace has
/// room on its way, see [`dispatch`](Self::dispatch)); delivery confirmed by the
/// server's ack (5 s to come; 64 batches on their way at once, an ack asked once 32 are
/// unconfirmed); a queue of 10,000 events that drops the newest when full (an emit never
/// waits); 5 s to connect, 5 s per emit, 2 s to wait for a connection.
#[derive(Debug, Clone)]
pub struct SinkBuilder {
    connector: SocketIoConnector,
    max_connections: usize,
    connect_timeout: Duration,
    wait_timeout: Duration,
    failure_threshold: u32,
    open_duration: OpenDuration,
    max_items: usize,
    max_wait: Duration,
    max_bytes: usize,
    queue_capacity: usize,
    reconnect_backoff: (Duration, Duration),
    max_in_flight: Option<usize>,
    dispatch: Dispatch,
}

impl SinkBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        Self {
            connector: SocketIoConnector::new(url),
            max_connections: 5,
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(2),
            failure_threshold: 5,
            open_duration: OpenDuration::Fixed(Duration::from_secs(30)),
            max_items: 10,
            max_wait: Duration::from_millis(50),
            max_bytes: 64 * 1024,
            queue_capacity: 10_000,
            reconnect_backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            max_in_flight: None,
            dispatch: Dispatch::Eager,
        }
    }

    /// Changes the connector (namespace, auth, headers, emit timeout, encoding).
    #[must_use]
    pub fn connector(
        mut self,
        configure: impl FnOnce(SocketIoConnector) -> SocketIoConnector,
    ) -> Self {
        self.connector = configure(self.connector);
        self
    }

    /// Sets the most connections (default 5).
    #[must_use]
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets how long a connect may take (default 5 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a batch waits for a connection (default 2 s).
    #[must_use]
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = timeout;
        self
    }

    /// Sets the failures in a row that open the breaker (default 5).
    #[must_use]
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// Sets how long the breaker stays open (default 30 s).
    #[must_use]
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.open_duration = OpenDuration::Fixed(duration);
        self
    }

    /// Sets a growing open period instead.
    #[must_use]
    pub fn open_backoff(mut self, backoff: OpenDuration) -> Self {
        self.open_duration = backoff;
        self
    }

    /// Sets the most events per batch (default 10).
    #[must_use]
    pub fn max_items(mut self, n: usize) -> Self {
        self.max_items = n;
        self
    }

    /// Sets how long after its first event a batch leaves at the latest (default 50 ms): the
    /// window of [`Dispatch::Window`], an upper bound with [`Dispatch::Eager`].
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Sets when a batch leaves (default [`Dispatch::Eager`]): at once while fewer than
    /// [`max_in_flight`](Self::max_in_flight) batches of its namespace are on their way,
    /// gathering what arrives once they are into the next batch, so an event reaching an
    /// idle sink waits for no timer. [`Dispatch::Window`] is the reference
    /// system's fixed window: a batch that does not fill up waits out `max_wait` (50 ms).
    #[must_use]
    pub fn dispatch(mut self, dispatch: Dispatch) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// Sets the byte cap of a batch in [`Encoding::Array`] (default 64 KiB).
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets how many events may wait (default 10,000); beyond, new ones are dropped and
    /// counted.
    #[must_use]
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Sets the wait before reconnecting after a failed connect: from `initial`, doubling up
    /// to `max` (default 100 ms to 5 s). A small `max` finds a returning server sooner.
    #[must_use]
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.reconnect_backoff = (initial, max);
        self
    }

    /// Sets when an event counts as sent (default [`Delivery::Acknowledged`]; see the
    /// [crate documentation](crate#delivery) for which one a server needs).
    #[must_use]
    pub fn delivery(mut self, delivery: Delivery) -> Self {
        self.connector = self.connector.delivery(delivery);
        self
    }

    /// Sets how long a written batch waits for the server's ack (default 5 s). Past it the
    /// batch fails with [`SinkError::AckTimedOut`](crate::SinkError::AckTimedOut) and its connection is replaced.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.connector = self.connector.ack_timeout(timeout);
        self
    }

    /// Sets how many batches may be on their way at once (default: 64 with
    /// [`Delivery::Acknowledged`]; 1 with [`Delivery::Written`], as before acks). They share
    /// one connection, in order. With acks, a connection asks for one once half of them are
    /// unconfirmed (or when no batch follows), and writes the other half while it travels.
    /// At most one ack is outstanding per connection: under a steady stream each covers about
    /// half of them, after a lull up to all but one. Any number from 1 is honoured as given.
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = Some(n);
        self
    }

    /// Refuses a setting the sink could not honour as given: a zero count or duration, a
    /// reconnect backoff whose longest wait is below its first.
    fn check(&self) -> Result<(), ConfigError> {
        let counts = [
            ("max_connections", self.max_connections),
            ("max_items", self.max_items),
            ("max_bytes", self.max_bytes),
            ("queue_capacity", self.queue_capacity),
            ("max_in_flight", self.max_in_flight.unwrap_or(1)),
            ("failure_threshold", self.failure_threshold as usize),
        ];
        if let Some((knob, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::Zero { knob });
        }
        let (emit_timeout, ack_timeout) = self.connector.timeouts();
        let (initial, max) = self.reconnect_backoff;
        let durations = [
            ("connect_timeout", self.connect_timeout),
            ("wait_timeout", self.wait_timeout),
            ("max_wait", self.max_wait),
            ("reconnect_backoff", initial),
            ("emit_timeout", emit_timeout),
            ("ack_timeout", ack_timeout),
        ];
        if let Some((knob, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::ZeroDuration { knob });
        }
        if max < initial {
            return Err(ConfigError::BackoffMax { initial, max });
        }
        Ok(())
    }

    /// Builds the sink and starts its worker on the current Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] (boxed) for a setting the sink could not honour as given, or the
    /// breaker's `ConfigError` for an open backoff it refuses.
    pub fn build(self) -> Result<SocketIoSink, BoxError> {
        self.check()?;
        let url = self.connector.url().to_string();
        let namespace = self.connector.namespace_name().to_string();
        let pool = PoolLayer::builder(())
            .max_size(self.max_connections)
            .connect_timeout(self.connect_timeout)
            .wait_timeout(self.wait_timeout)
            .backoff(self.reconnect_backoff.0, self.reconnect_backoff.1)
            .lifecycle(Goodbye {
                timeout: Duration::from_secs(1),
            })
            .build()?;
        let breaker = CircuitBreakerLayer::builder()
            .consecutive_failures(self.failure_threshold)
            .open_backoff(self.open_duration)
            .build()?;
        let max_in_flight = self
            .max_in_flight
            .unwrap_or(match self.connector.delivery_kind() {
                Delivery::Written => 1,
                _ => 64,
            });
        let connector = self.connector.batches_on_their_way(max_in_flight);
        let unconfirmed = connector.unconfirmed();
        let last_failure = connector.last_failure();
        let mut batch = BatchLayer::builder()
            .max_items(self.max_items)
            // One namespace, so one key: its limit is the whole limit.
            .max_in_flight(max_in_flight)
            .max_in_flight_per_key(max_in_flight)
            .dispatch(self.dispatch)
            .max_wait(self.max_wait)
            .capacity(self.queue_capacity)
            .overflow(Overflow::DropNewest)
            // A namespace's batches are called in order and a connection stays ready while
            // it carries some, so they all go to the same connection, which writes them in
            // call order (see `Connection`).
            .key_fn(|event: &Encoded| event.namespace().clone())
            .rejected_if(|error| error.is::<BreakerOpen>());
        if connector.encoding_kind() == Encoding::Array {
            // An event's share of the frame: its text and a comma.
            batch = batch.max_bytes(self.max_bytes, |event: &Encoded| event.json().len() + 1);
        }
        let batch = batch.build()?;
        let breaker_handle = breaker.handle();
        let pooled = tower::Layer::layer(&pool, connector);
        let pool_handle = pooled.handle();
        let batcher = ServiceBuilder::new()
            .layer(batch)
            .layer(breaker)
            .service(pooled);
        let batch_handle = batcher.handle();
        Ok(SocketIoSink {
            batcher,
            batch: batch_handle,
            breaker: breaker_handle,
            pool: pool_handle,
            server_url: url,
            namespace,
            max_connections: self.max_connections,
            unconfirmed,
            last_failure,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The error `build` gives: refused before any runtime is needed.
    fn refused(builder: SinkBuilder) -> ConfigError {
        match builder.build() {
            Ok(sink) => panic!("built {sink:?}"),
            Err(error) => *error.downcast::<ConfigError>().unwrap(),
        }
    }

    #[test]
    fn a_setting_the_sink_cannot_honour_is_refused_by_name() {
        let sink = || SocketIoSink::builder("http://127.0.0.1:9");
        let zero = Duration::ZERO;
        for (builder, knob) in [
            (sink().max_connections(0), "max_connections"),
            (sink().max_items(0), "max_items"),
            (sink().max_bytes(0), "max_bytes"),
            (sink().queue_capacity(0), "queue_capacity"),
            (sink().max_in_flight(0), "max_in_flight"),
            (sink().failure_threshold(0), "failure_threshold"),
        ] {
            assert_eq!(refused(builder), ConfigError::Zero { knob });
        }
        let second = Duration::from_secs(1);
        for (builder, knob) in [
            (sink().connect_timeout(zero), "connect_timeout"),
            (sink().wait_timeout(zero), "wait_timeout"),
            (sink().max_wait(zero), "max_wait"),
            (sink().reconnect_backoff(zero, second), "reconnect_backoff"),
            (sink().connector(|c| c.emit_timeout(zero)), "emit_timeout"),
            (sink().ack_timeout(zero), "ack_timeout"),
        ] {
            assert_eq!(refused(builder), ConfigError::ZeroDuration { knob });
        }
        let backoff = sink().reconnect_backoff(second, second / 2);
        assert_eq!(
            refused(backoff),
            ConfigError::BackoffMax {
                initial: second,
                max: second / 2
            }
        );
        let said = refused(sink().queue_capacity(0)).to_string();
        assert_eq!(said, "`queue_capacity` must be at least 1");
        // The open period is the breaker's to check, and its error says so.
        let Err(error) = sink().open_duration(zero).build() else {
            panic!("a zero open period was accepted");
        };
        assert_eq!(
            error.downcast_ref::<sluice_breaker::ConfigError>(),
            Some(&sluice_breaker::ConfigError::ZeroDuration {
                field: "open_duration"
            })
        );
    }
}
