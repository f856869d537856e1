//! What the sink's tests share: a sink with short timeouts, numbered events, and the
//! stream read back by a consumer.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use sluice_nats_sink::{Message, NatsSink, StreamSettings, DEFAULT_STREAM};

/// A sink with timeouts short enough for tests: an ack within 1 s, the connection within
/// 300 ms, the breaker open for 100 ms, reconnects every 20 to 100 ms.
pub async fn sink(url: &str) -> NatsSink {
    NatsSink::builder(url)
        .host("test-host")
        .ack_timeout(Duration::from_secs(1))
        .connect_wait(Duration::from_millis(300))
        .open_duration(Duration::from_millis(100))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100))
        .build()
        .await
        .expect("the sink builds")
}

/// The default stream with room for 64 MiB: the server reserves `max_bytes` on its disk
/// when it creates the stream, and a test machine's disk may be small.
pub fn settings() -> StreamSettings {
    let mut settings = StreamSettings::default();
    settings.max_bytes = 64 << 20;
    settings
}

/// Event `n`: id `e00042`, one of three sessions, a JSON payload of about `size` bytes.
pub fn event(n: usize, size: usize) -> Message {
    let id = format!("e{n:05}");
    let session = format!("s{}", n % 3);
    let pad = "x".repeat(size.saturating_sub(60));
    let payload =
        format!(r#"{{"subtype":"pre_tool","data":{{"event_id":"{id}","n":{n},"pad":"{pad}"}}}}"#);
    Message::new(id, session, "pre_tool", payload)
}

/// A message read back from the stream.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub subject: String,
    pub sequence: u64,
}

/// Every message of the stream, in stream order, read by an ephemeral pull consumer.
pub async fn stored(client: &async_nats::Client) -> Vec<Stored> {
    let js = jetstream::new(client.clone());
    let mut stream = js
        .get_stream(DEFAULT_STREAM)
        .await
        .expect("the stream exists");
    let count = stream.info().await.expect("stream info").state.messages as usize;
    if count == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a consumer");
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(500)
        .messages()
        .await
        .expect("messages");
    let mut stored = Vec::with_capacity(count);
    while stored.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("the stream's messages within 5 s")
            .expect("more messages")
            .expect("a message");
        let id = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get("Nats-Msg-Id"))
            .map(|id| id.as_str().to_string())
            .expect("a Nats-Msg-Id");
        let sequence = message.info().expect("message info").stream_sequence;
        stored.push(Stored {
            id,
            subject: message.subject.to_string(),
            sequence,
        });
    }
    stored
}

/// How many times each id is in the stream.
pub fn copies(stored: &[Stored]) -> HashMap<String, usize> {
    let mut copies = HashMap::new();
    for message in stored {
        *copies.entry(message.id.clone()).or_insert(0) += 1;
    }
    copies
}
