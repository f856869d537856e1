//! A resilient, pipelined NATS JetStream event sink: the sluice layers composed over one
//! [`async_nats`](https://docs.rs/async-nats) client.
//!
//! ```text
//! publish ──▶ Batch (queue, eager: ≤ 64 events, ≤ 4 batches on their way)
//!               └─▶ CircuitBreaker (5 failed batches → open 5 s)
//!                     └─▶ publisher: write a batch, then await its PublishAcks together
//!                           └─▶ one async_nats::Client ──▶ stream SLUICE_HOOKS
//! ```
//!
//! ```no_run
//! use sluice_nats_sink::{default_host, setup, Message, NatsSink, StreamSettings};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let sink = NatsSink::builder("nats://127.0.0.1:4222")
//!     .host(default_host()) // SLUICE_HOST, else the hostname
//!     .build()
//!     .await?;
//! // Once per deployment (`sluice-hook nats setup`): the stream the subjects go to.
//! setup(sink.client(), &StreamSettings::default()).await?;
//!
//! let message = Message::new("0192f3c4-event-1", "session-1", "pre_tool", r#"{"n":1}"#);
//! // Returns at once; the future resolves when the stream acknowledged the event.
//! let confirmed = sink.publish(message).await?;
//! println!("stored at {} in {}", confirmed.sequence, confirmed.stream);
//! sink.shutdown(None).await?; // wait for what is queued, then close
//! println!("{}", serde_json::to_string(&sink.stats())?);
//! # Ok(())
//! # }
//! ```
//!
//! # Delivery
//!
//! One event is one message on `<prefix>.<host>.<session>.<event>` (prefix `sluice.hooks`
//! by default; each token [sanitised](token)) with the header `Nats-Msg-Id` set to the
//! event's `event_id`, so the server drops a repeat within the stream's duplicate window.
//! An event is **confirmed only by its `PublishAck`** (an ack with `duplicate: true` counts:
//! the stream holds the event): [`publish`](NatsSink::publish) resolves with [`Confirmed`],
//! the stream's sequence. Messages written and not yet acknowledged are `unconfirmed` in
//! [`stats`](NatsSink::stats), never `confirmed`.
//!
//! Publishing is pipelined: a batch's messages are written one after the other without
//! waiting, then their acks are awaited together; while a batch waits for its acks the
//! next ones are written (up to [`max_in_flight`](SinkBuilder::max_in_flight)). One writer
//! writes batches in the order they were handed over, so a machine's events reach the
//! stream in order, except one that fails and is sent again later.
//!
//! # Outages and an event's own failures
//!
//! Each event gets its own outcome, even within a batch. [`SinkError::is_outage`] says
//! whether a failure is the destination's: no connection, no stream for the subject (the
//! message says to run `sluice-hook nats setup`), no ack in time, a lost connection, a full
//! stream, the breaker open, the queue full. Those are never the event's fault; a caller
//! keeps the event and tries again. Only [`SinkError::Rejected`] (the server or client
//! refused this message, e.g. over the server's `max_payload`) could be the event's own.
//! A batch with an outage counts as one failure for the breaker; a rejected event does not.
//!
//! # One client, no pool
//!
//! The socketio sink pools connections because a Socket.IO connection carries one
//! acknowledgement at a time. A NATS client needs no pool: it is one connection that
//! multiplexes every publish and every ack (each request has its own reply subject), and it
//! reconnects by itself with the backoff set on the builder, keeping its subscriptions. A
//! second connection would add nothing but a second order of writes. So the sink holds
//! exactly one [`async_nats::Client`] and one JetStream context; while it is disconnected,
//! a batch waits up to [`connect_wait`](SinkBuilder::connect_wait) and then fails as
//! [`SinkError::NotConnected`], which names the server and the client's last reason
//! (`authorization violation`, `tls error`).
//!
//! # Credentials
//!
//! A user and password (`nats://user:pass@host`) or a token (`nats://token@host`) in the
//! URL, or a credentials file ([`SinkBuilder::credentials_file`]). They are taken out of the
//! URL before the client sees it, and no message, log line or stats field shows them.
//!
//! # The stream
//!
//! [`setup`] creates or updates the stream (`SLUICE_HOOKS`, subjects `<prefix>.>`, file
//! storage, 1 or 3 replicas) and says what it did; [`StreamSettings`] explains the
//! duplicate window against a relay's retries.
//!
//! # Features of `async-nats`
//!
//! Built with `default-features = false` and `jetstream`, `ring` (one TLS backend, pure Rust
//! and assembly, no C toolchain) and `nkeys` (to sign with a credentials file). Off:
//! `server_2_10` to `server_2_14` (stream and consumer fields that servers before 2.10
//! reject; Debian's nats-server is 2.9.10), `websockets`, `kv`, `object-store`, `service`,
//! `crypto` and `nuid` (unused here), and `aws-lc-rs` (a second TLS backend).

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod connection;
pub mod error;
mod message;
mod publish;
mod server;
mod setup;
mod sink;
mod stats;
mod subject;

pub use crate::builder::{SinkBuilder, DEFAULT_PREFIX};
pub use crate::error::{ConfigError, SinkError};
pub use crate::message::{Message, NotAnEvent};
pub use crate::publish::Confirmed;
pub use crate::server::redact;
pub use crate::setup::{
    connect, setup, ConnectFailed, SetupError, SetupOutcome, StreamSettings, DEFAULT_STREAM,
};
pub use crate::sink::{NatsSink, PublishFuture};
pub use crate::stats::SinkStats;
pub use crate::subject::{default_host, token};

// The layers' types that appear in the sink's API, so that a user needs the sink alone.
pub use async_nats;
pub use sluice_batch::ShutdownTimedOut;
pub use sluice_breaker::State;

// The README (the crate's crates.io page) is tested too: its example must keep compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
