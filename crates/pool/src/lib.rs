//! A connection pool for [`tower`](https://docs.rs/tower), as a layer over any connector.
//!
//! A connector is a `Service<Target>` whose responses are connections, each a
//! `Service<Req>` (tower's `MakeService`). [`Pool`] is itself a `Service<Req>`: it sends
//! each request over a ready connection, making up to `max_size` of them lazily, and
//! replaces the ones that break.
//!
//! ```
//! use std::time::Duration;
//! use sluice_pool::PoolLayer;
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! // A connector: here each "connection" answers with the address it was made for.
//! let connector = service_fn(|addr: &'static str| async move {
//!     Ok::<_, BoxError>(service_fn(move |request: u32| async move {
//!         Ok::<_, BoxError>(format!("{addr} answered {request}"))
//!     }))
//! });
//! let mut pool = ServiceBuilder::new()
//!     .layer(
//!         PoolLayer::builder("127.0.0.1:8765")
//!             .max_size(5)
//!             .wait_timeout(Duration::from_secs(1))
//!             .build()?,
//!     )
//!     .service(connector);
//! let handle = pool.handle();
//!
//! let answer = pool.ready().await?.call(7).await?;
//! assert_eq!(answer, "127.0.0.1:8765 answered 7");
//! assert_eq!(handle.stats().created, 1);
//! pool.ready().await?.call(8).await?; // the same connection, reused
//! assert_eq!(handle.stats().created, 1);
//! # Ok(())
//! # }
//! ```
//!
//! # Connections
//!
//! A request goes to the most recently used connection that is ready, looking first among
//! those its own thread used last (idle connections are kept per thread, so that tasks on
//! different threads seldom wait on one lock), then among all. A connection reports
//! its own capacity through `poll_ready`: one that can carry several requests at once stays
//! ready, one that carries one at a time answers `Pending` while busy. A connection is asked
//! again right after each call: a busy one is set aside, polled by nobody, until its own
//! waker says it can take a request, and only then is a waiting request woken. When no
//! connection is ready and fewer than `max_size` are alive or connecting, the pool makes one,
//! in a task of its own, under `connect_timeout`. Never more than `max_size` connections are
//! alive or connecting.
//!
//! Requests that find no ready connection wait in line, as on tokio's `Semaphore`: each
//! connection that comes free wakes the first in line, which takes it, or passes the wake on
//! to the next if it stops waiting without it (its wait timed out, or its `Pool` was
//! dropped). A `Pool` whose `ready()` was cancelled but which is kept, unpolled, keeps its
//! place: woken first, it holds up the next in line until it is polled or dropped, another
//! connection comes free, or that request's `wait_timeout` ends (it then finds the
//! connection).
//!
//! A connection whose `poll_ready` fails is evicted and replaced; so is one whose call error
//! a [`Builder::fatal_error`] classifier flags. Optional `max_lifetime`, `idle_timeout` and a
//! periodic health check through a [`Lifecycle`] retire connections in the background, and
//! `min_idle` keeps some warm.
//!
//! # Errors
//!
//! Transient failures come out of `call` as error futures, never out of `poll_ready`:
//!
//! - [`PoolTimeout`]: no connection became ready within `wait_timeout`; it carries the last
//!   connect error, so a refused connect does not hide behind "timed out".
//! - [`ConnectFailed`]: nothing is alive or connecting and the last connect failed; the real
//!   connect error is its [`source`](std::error::Error::source), and the next connect waits
//!   for an exponential backoff with jitter.
//!
//! After an outage of any length, the next request after the backoff connects again: the
//! pool needs no restart. Errors of the connections pass through unchanged. `poll_ready`
//! fails only with [`Closed`], once [`PoolHandle::close`] was called.
//!
//! # Runtime
//!
//! The pool runs on Tokio: connects, closes and the upkeep run on tasks spawned on the
//! current runtime, and `connect_timeout`, `wait_timeout` and the backoff use Tokio's clock,
//! so its time driver must be enabled. A pool can be built anywhere, but `poll_ready` panics
//! outside a runtime as soon as it has to connect or wait, as `tokio::spawn` does.
//!
//! # Stats
//!
//! [`PoolHandle::stats`] reports live, idle, in-use and connecting connections, waiting
//! requests, connections made, connect failures and evictions by reason.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![doc(test(attr(deny(warnings))))]

mod config;
mod connect;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod lifecycle;
mod service;
mod shard;
mod shared;
mod stats;
mod wait;
mod worker;

pub use crate::config::Builder;
pub use crate::error::{
    BoxError, Closed, ConfigError, ConnectFailed, ConnectTimedOut, PoolTimeout,
};
pub use crate::handle::PoolHandle;
pub use crate::layer::PoolLayer;
pub use crate::lifecycle::{BoxFuture, Lifecycle};
pub use crate::service::Pool;
pub use crate::stats::{Eviction, Evictions, Stats};

// The README (the crate's crates.io page) is tested too: its example must keep compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
