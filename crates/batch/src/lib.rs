//! Micro-batching for [`tower`](https://docs.rs/tower) services.
//!
//! A [`Batcher`] takes items one at a time and hands them to an inner
//! `Service<`[`Batch`]`<T, K>>` in batches: when a batch reaches `max_items`, or `max_bytes`
//! by a size function, or `max_wait` after its *first* item, whichever comes first. The wait
//! is a latency bound: no item waits longer than `max_wait` for its batch to be handed over
//! while the inner service is ready. With [`Dispatch::Eager`], a batch also goes as soon as
//! its key has room in flight (see [below](#dispatch-eager-or-window)).
//!
//! ```
//! use std::time::Duration;
//! use sluice_batch::{Batch, BatchLayer};
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let mut events = ServiceBuilder::new()
//!     .layer(
//!         BatchLayer::builder()
//!             .max_items(10)
//!             .max_wait(Duration::from_millis(50))
//!             .key_fn(|event: &(String, u32)| event.0.clone()) // one window per namespace
//!             .build()?,
//!     )
//!     .service(service_fn(|batch: Batch<(String, u32), String>| async move {
//!         println!("{} events for {}", batch.len(), batch.key());
//!         Ok::<_, BoxError>(())
//!     }));
//! let handle = events.handle();
//!
//! for n in 0..25 {
//!     // Returns as soon as the item is queued; the response future resolves with its batch.
//!     let delivered = events.ready().await?.call(("/".to_string(), n));
//!     drop(delivered); // fire and forget: the item is delivered all the same
//! }
//! handle.shutdown(None).await?; // deliver everything, then stop
//! let stats = handle.stats();
//! assert_eq!((stats.submitted, stats.sent), (25, 25));
//! assert_eq!(stats.batches.size, 2); // two full batches of 10, then 5 at shutdown
//! # Ok(())
//! # }
//! ```
//!
//! # Dispatch: eager or window
//!
//! [`Builder::dispatch`] chooses when a batch that is neither full nor due goes:
//!
//! - [`Dispatch::Window`] (the default) waits out `max_wait` after a batch's first item, even
//!   when the inner service is idle. Choose it when fewer, fuller batches matter more than
//!   latency: a downstream that charges per request, or a rate of items too low to fill a
//!   batch but where a few tens of milliseconds do not matter.
//! - [`Dispatch::Eager`] hands a batch over as soon as its key has room in flight (fewer
//!   than `max_in_flight_per_key` of its batches, 1 by default: no batch of its key in
//!   flight; and fewer than `max_in_flight` in all) and the inner service is ready; the items
//!   that arrive while there is no room form the next batch. An item at an idle batcher goes at once, with
//!   no timer; under load, batches grow by themselves up to `max_items` or `max_bytes`, as
//!   long as the inner service takes to answer. `max_wait` still bounds a batch while the
//!   inner service is not ready. Choose it for live traffic: a dashboard, an event stream.
//!
//! ```
//! use std::time::Duration;
//! use sluice_batch::{Batch, BatchLayer, Dispatch, FlushReason};
//! use tower::{service_fn, BoxError, Service, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let layer = BatchLayer::builder()
//!     .max_items(100)
//!     .max_wait(Duration::from_secs(3600)) // an hour: no timer is waited for below
//!     .dispatch(Dispatch::Eager)
//!     .build()?;
//! let mut events = layer.spawn(service_fn(|batch: Batch<u32>| async move {
//!     // An idle batcher hands each batch over at once.
//!     assert_eq!(batch.reason(), FlushReason::Idle);
//!     Ok::<_, BoxError>(())
//! }));
//! let handle = events.handle();
//!
//! let started = tokio::time::Instant::now();
//! for n in 0..3 {
//!     // One at a time, each awaited: every item finds the batcher idle.
//!     events.ready().await?.call(n).await?;
//! }
//! assert!(started.elapsed() < Duration::from_secs(60));
//! assert_eq!(handle.stats().batches.idle, 3);
//! # Ok(())
//! # }
//! ```
//!
//! # Keys and order
//!
//! With a key function (the namespace of an event, say), items with different keys never
//! share a batch and each key has its own window. Items with the same key reach the inner
//! service in submission order, across batches: by default one batch per key is in the inner
//! service at a time ([`Builder::max_in_flight_per_key`]); different keys proceed
//! concurrently, up to [`Builder::max_in_flight`] batches in all.
//!
//! # Responses
//!
//! Each item's response future resolves when its batch completes: `Ok(())`, or the batch's
//! error as a [`BatchFailed`] that shares the inner error. Dropping the future does not
//! withdraw the item. A failed batch does not poison the batcher: later items keep flowing.
//! If the inner service's `poll_ready` fails, the batcher closes for good: the items waiting
//! get that error, and `poll_ready` fails with [`Closed`] from then on.
//!
//! # Backpressure
//!
//! The queue holds at most `capacity` items not yet handed to the inner service. When it is
//! full, `poll_ready` is `Pending` until the worker makes room ([`Overflow::Backpressure`],
//! the default), or `call` fails at once with [`QueueFull`] and the item is counted as dropped
//! ([`Overflow::DropNewest`]). A slot reserved by `poll_ready` and never used is released when
//! the service is dropped. With backpressure, `call` also reserves the slot of the caller's
//! next item while the queue is less than half full (so its next `poll_ready` is free); such
//! slots never hold more than half the queue, so producers that go quiet holding one cannot
//! starve the others.
//!
//! # Flush and shutdown
//!
//! [`BatchHandle::flush`] hands every open batch over and resolves once everything
//! submitted before it was delivered or failed. [`BatchHandle::shutdown`] stops accepting,
//! delivers everything queued and ends the worker. Dropping every [`Batcher`] also delivers
//! what is queued before the worker ends. A process that awaits `shutdown` before exiting
//! loses nothing.
//!
//! # Stats
//!
//! [`BatchHandle::stats`] returns a [`Stats`] snapshot taken under the batcher's lock, so
//! `submitted == sent + failed + rejected + dropped + queued` holds in every snapshot; an item
//! counts as sent only once the inner service answered its batch with `Ok`.
//!
//! # Cost
//!
//! Items are grouped on the caller's side under one short lock; the response future waits
//! on its batch's completion, shared by the batch's items, not on a channel of its own. The
//! worker is woken when a batch opens or fills up, not for every item. Time is read through
//! [`tokio::time`], so tests can pause it.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![doc(test(attr(deny(warnings))))]

mod batch;
mod completion;
mod config;
mod dispatch;
pub mod error;
pub mod future;
mod handle;
mod keys;
mod layer;
mod open;
mod ready;
mod service;
mod state;
mod stats;
mod submit;
mod worker;

pub use crate::batch::{Batch, FlushReason};
pub use crate::config::{Builder, Dispatch, Overflow};
pub use crate::error::{BatchFailed, BoxError, Closed, ConfigError, QueueFull, ShutdownTimedOut};
pub use crate::handle::BatchHandle;
pub use crate::layer::BatchLayer;
pub use crate::service::Batcher;
pub use crate::stats::{BatchCounts, Stats};
pub use crate::worker::Worker;

// The README (the crate's crates.io page) is tested too: its example must keep compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
