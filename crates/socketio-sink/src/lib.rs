//! A resilient, non-blocking Socket.IO event sink: the three sluice layers composed over
//! [`rust_socketio`](https://docs.rs/rust_socketio) connections.
//!
//! ```text
//! emit ──▶ Batch (queue, eager: ≤ 10 events, ≤ 50 ms, per namespace)
//!            └─▶ CircuitBreaker (5 failures → open 30 s)
//!                  └─▶ Pool (≤ 5 connections, reconnect with backoff)
//!                        └─▶ SocketIoConnector ──websocket──▶ dashboard
//! ```
//!
//! ```no_run
//! use serde_json::json;
//! use sluice_socketio_sink::{Emit, SocketIoSink};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let sink = SocketIoSink::builder("http://localhost:8765").build()?;
//! // Returns at once; the event goes out with the next batch.
//! let delivered = sink.emit(Emit::new("claude_event", json!({"type": "hook"})));
//! drop(delivered); // fire and forget, or await it to learn the outcome
//! sink.shutdown(None).await?; // deliver what is queued, close cleanly
//! println!("{}", serde_json::to_string(&sink.stats())?);
//! # Ok(())
//! # }
//! ```
//!
//! # Delivery
//!
//! With [`Delivery::Acknowledged`] (the default) an event counts as sent once the server
//! acknowledged it. The last emit of a batch asks for an ack; Socket.IO keeps a
//! connection's events in order and servers handle them in order, so that one ack confirms
//! the batch and every batch written before it on the connection. Never more than one ack
//! is outstanding per connection: while one travels, the next batches are written and the
//! ack after it confirms them. An ack that does not come within
//! [`ack_timeout`](SinkBuilder::ack_timeout) (5 s) fails the batches waiting for it with
//! [`SinkError::AckTimedOut`] and the connection is replaced. Events written but not yet
//! acknowledged are counted as `unconfirmed` (within `queued`).
//!
//! With [`Delivery::Written`] an event counts as sent once it was written to a connection
//! whose namespace the server accepted: "written", not "received". An event written just
//! before the connection dies can be lost without an error.
//!
//! **Which one does a server need?** Servers that acknowledge an emit that asks for it
//! (claude-mpm's dashboard, python-socketio, Node socket.io and socketioxide handlers that
//! take an ack callback and call it) work with `Acknowledged`. A server whose handler for the
//! event ignores the ack never answers: every batch then fails with `AckTimedOut` after
//! `ack_timeout`, and the sink's `unconfirmed` stays up while `sent` stays at 0. That is
//! the sign to build the sink with `.delivery(Delivery::Written)`.
//!
//! **Nagle's algorithm, and a `[patch]` your project needs.** rust_engineio 0.6.0 (under
//! rust_socketio 0.6; the newest release) opens its websocket with Nagle's algorithm on and
//! offers no way to turn it off. The emit that asks for an ack follows the batch's other
//! emits, so the kernel holds it until the server's TCP ACK of those: at once when the
//! server writes something back (claude-mpm re-broadcasts every event to its clients, the
//! sender included), but only at the server's delayed-ACK timer (about 40 ms on Linux) when
//! it writes nothing but acks, as a plain Node socket.io or python-socketio server does.
//! Measured with raw rust_socketio against such a server: one plain emit then one with an
//! ack, 44 ms a round with Nagle on, 0.37 ms with it off.
//!
//! The sluice repository carries the fix: a copy of rust_engineio 0.6.0 that opens the
//! websocket with `TCP_NODELAY` (`patches/rust_engineio`, applied by `[patch.crates-io]` in
//! the workspace's `Cargo.toml`; `patches/README.md` gives the diff), so `sluice-hook` and
//! everything built in that workspace has it. **A `[patch]` does not travel with a published
//! crate**: a project that takes this crate from crates.io builds the unpatched
//! rust_engineio unless its own root `Cargo.toml` says
//!
//! ```toml
//! [patch.crates-io]
//! rust_engineio = { git = "https://example.invalid/sluice" }
//! ```
//!
//! (cargo finds the package inside the repository; a copy of `patches/rust_engineio` given
//! by `path` does the same). Without it everything works, but against a server that writes
//! nothing back each ack (covering up to 63 batches) waits for that timer.
//!
//! Events that fail are counted as failed, events turned away while the breaker is open or
//! the queue is full as dropped; each emit's future tells which, so a caller can keep them
//! (the hook's spool does).
//!
//! # Batching: eager or windowed
//!
//! By default ([`Dispatch::Eager`]) a batch leaves as soon as its namespace has room on its
//! way (fewer than [`max_in_flight`](SinkBuilder::max_in_flight) batches: 64 with acks, 1
//! without): an event that reaches an idle sink goes at once, and what arrives while the
//! way is full gathers into the next batch, up to 10 events. Under load
//! batches fill by themselves; at rest there is no 50 ms wait. With
//! [`SinkBuilder::dispatch`]`(`[`Dispatch::Window`]`)` the sink batches as the reference
//! system did: a batch leaves when full or 50 ms ([`max_wait`](SinkBuilder::max_wait))
//! after its first event.
//!
//! # What the client's defects cost us
//!
//! `rust_socketio` 0.6 is used behind one small module, which waits for the namespace to be
//! accepted before a connection is used, turns its reconnect loop off (the pool reconnects
//! with backoff), bounds every emit with a timeout, treats any emit error as a broken
//! connection, keeps at most one `emit_with_ack` outstanding per connection (its ack ids
//! collide and panic otherwise), and sends an array as one argument.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod client;
mod connection;
mod emit;
pub mod error;
mod pipeline;
mod sink;
mod stats;

pub use crate::builder::SinkBuilder;
pub use crate::connection::{Connection, SocketIoConnector};
pub use crate::emit::{Delivery, Emit, Encoded, Encoding, Name};
pub use crate::error::{BoxError, ConfigError, ConnectError, SinkError};
pub use crate::sink::{EmitFuture, SocketIoSink};
pub use crate::stats::SinkStats;

// The layers' types that appear in the sink's API, so that a user needs the sink alone.
pub use sluice_batch::{Batch, Dispatch, FlushReason, ShutdownTimedOut};
pub use sluice_breaker::{OpenDuration, State};
pub use sluice_pool::{ConnectFailed, ConnectTimedOut, PoolTimeout};

// The README (the crate's crates.io page) is tested too: its example must keep compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
