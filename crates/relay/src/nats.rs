//! NATS JetStream as a [`Destination`]: the `sluice-nats-sink` built for the relay from its
//! settings (`SLUICE_URL` nats:// or tls://, `SLUICE_NATS_CREDS`, `SLUICE_HOST`).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{json, Value};
use sluice_nats_sink::{default_host, Message, NatsSink, SinkError, StreamSettings};

use crate::config::Config;
use crate::destination::{Destination, Failure, FailureKind, Outgoing, Pending};

/// The stream, through one sink.
#[derive(Debug)]
pub(crate) struct Nats {
    sink: NatsSink,
}

impl Nats {
    /// The sink the relay uses: batches of up to `max_items` events. It does not wait for
    /// the server: a relay starts, and stores its hooks' events, while NATS is down.
    pub(crate) async fn build(
        config: &Config,
        max_items: usize,
    ) -> Result<Self, sluice_nats_sink::ConfigError> {
        // Back within a second of the server's return, as the Socket.IO sink is.
        let mut builder = NatsSink::builder(config.url.as_str())
            .host(default_host())
            .max_items(max_items)
            .open_duration(Duration::from_secs(1))
            .reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1));
        if let Some(creds) = &config.nats_creds {
            builder = builder.credentials_file(creds);
        }
        Ok(Self {
            sink: builder.build().await?,
        })
    }
}

impl Destination for Nats {
    fn send(&self, event: Outgoing) -> Pending {
        // The event's id is the stored one: the payload's `data.event_id` (the hook's).
        match Message::from_claude_event(event.payload) {
            Ok(message) => {
                let published = self.sink.publish(message);
                Box::pin(async move { published.await.map(drop).map_err(failure) })
            }
            Err(error) => Box::pin(std::future::ready(Err(Failure::new(
                FailureKind::Unreadable,
                error,
            )))),
        }
    }

    fn stats(&self) -> Value {
        serde_json::to_value(self.sink.stats()).unwrap_or_else(|_| json!({}))
    }

    fn shutdown(&self, grace: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let _ = self.sink.shutdown(Some(grace)).await;
        })
    }
}

/// Sorts the sink's error: an open breaker turns the event away; an outage (no connection,
/// no stream for the subject, no ack in time) is never the event's doing; only a message
/// the server rejected could be.
fn failure(error: SinkError) -> Failure {
    let kind = match &error {
        SinkError::BreakerOpen { retry_after } => FailureKind::TurnedAway {
            retry_after: *retry_after,
        },
        error if error.is_outage() => FailureKind::Outage,
        _ => FailureKind::Unconfirmed { no_ack: false },
    };
    Failure::new(kind, error)
}

/// `sluice-hook nats setup`: creates or updates the stream on the server of the settings'
/// URL, and says what it did.
pub fn setup(config: &Config, replicas: usize) -> Result<String, String> {
    if !crate::config::is_nats(&config.url) {
        return Err(format!(
            "{} is not a NATS server: set SLUICE_URL (or --url) to nats://host:4222 or tls://...",
            crate::config::without_credentials(&config.url)
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client = sluice_nats_sink::connect(&config.url, config.nats_creds.as_deref())
            .await
            .map_err(|e| sluice_store::error_chain(&e))?;
        let settings = StreamSettings::replicas(replicas);
        let outcome = sluice_nats_sink::setup(&client, &settings)
            .await
            .map_err(|e| sluice_store::error_chain(&e))?;
        Ok(format!(
            "stream {} {outcome} on {}: subjects {}.>, file storage, {} replica(s), at most {} MiB \
             and {} days, duplicate window {} min",
            settings.name,
            crate::config::without_credentials(&config.url),
            settings.prefix,
            settings.replicas,
            settings.max_bytes >> 20,
            settings.max_age.as_secs() / 86_400,
            settings.duplicate_window.as_secs() / 60,
        ))
    })
}
