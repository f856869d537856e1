//! A resilient, non-blocking Socket.IO event sink: the three sluice layers composed over
//! [`rust_socketio`](https://docs.rs/rust_socketio) connections.
//!
//! ```text
//! emit ──▶ Batch (queue, 50 ms / 10 events, per namespace)
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
//! An event counts as sent once `emit` wrote it to a connection whose namespace the server
//! accepted. That is "written", not "received": an event written just before the connection
//! dies can be lost without an error (the server offers no cheap acknowledgement). Events
//! that fail are counted as failed, events turned away while the breaker is open or the queue
//! is full as dropped; each emit's future tells which, so a caller can keep them (the hook's
//! spool does).
//!
//! # What the client's defects cost us
//!
//! `rust_socketio` 0.6 is used behind one small module, which waits for the namespace to be
//! accepted before a connection is used, turns its reconnect loop off (the pool reconnects
//! with backoff), bounds every emit with a timeout, treats any emit error as a broken
//! connection, never uses `emit_with_ack`, and sends an array as one argument.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod connection;
mod emit;
pub mod error;
mod sink;

pub use crate::connection::{Connection, SocketIoConnector};
pub use crate::emit::{Emit, Encoded, Encoding, Name};
pub use crate::error::{BoxError, SinkError};
pub use crate::sink::{EmitFuture, SinkBuilder, SinkStats, SocketIoSink};
