//! A circuit breaker for [`tower`](https://docs.rs/tower) services.
//!
//! [`CircuitBreaker`] watches the outcomes of the calls it passes to an inner service. When
//! the inner service is failing, it *opens* and rejects calls at once, without touching the
//! inner service, returning a [`BreakerOpen`] error. After the open period it turns
//! *half-open* and lets a bounded number of probes through: enough successes close it again,
//! any failure reopens it.
//!
//! ```text
//!            trip policy met                 open period over
//!  Closed ─────────────────────▶ Open ──────────────────────────▶ HalfOpen
//!    ▲                            ▲  probe failed, or timed out       │
//!    │                            └───────────────────────────────────┤
//!    └────────────────────────────────────────────────────────────────┘
//!                          `half_open_successes` probes succeeded
//! ```
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use sluice_breaker::{BreakerOpen, CircuitBreakerLayer, State};
//! use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let breaker = CircuitBreakerLayer::builder()
//!     .consecutive_failures(2)
//!     .open_duration(Duration::from_secs(30))
//!     .build()?;
//! let handle = breaker.handle();
//!
//! let mut service = ServiceBuilder::new()
//!     .layer(breaker)
//!     .service(service_fn(|fail: bool| async move {
//!         if fail { Err("backend down") } else { Ok("done") }
//!     }));
//!
//! assert_eq!(service.ready().await?.call(false).await?, "done");
//! for _ in 0..2 {
//!     let _ = service.ready().await?.call(true).await; // two failures in a row
//! }
//! assert_eq!(handle.state(), State::Open);
//!
//! // While open, calls fail fast without reaching the backend.
//! let error = service.ready().await?.call(false).await.unwrap_err();
//! assert!(error.is::<BreakerOpen>());
//! assert_eq!(handle.metrics().rejected, 1);
//! // The breaker, not the error, tells when to try again.
//! assert!(handle.retry_after().unwrap() <= Duration::from_secs(30));
//! # Ok(())
//! # }
//! ```
//!
//! # Trip policies
//!
//! One [`TripPolicy`] per breaker decides when a closed breaker opens:
//!
//! - [`TripPolicy::ConsecutiveFailures`] (the default, 5 in a row);
//! - [`TripPolicy::FailureRate`] over a true sliding [`Window`]: the last N calls, or the
//!   calls of the last T in buckets, once the window holds `min_calls`;
//! - [`TripPolicy::SlowCallRate`]: the share of calls slower than a threshold.
//!
//! What counts as a failure is the [`Classify`] implementation's call: by default `Err`
//! fails and `Ok` succeeds; a closure can, say, fail on HTTP 503 and ignore a 404.
//!
//! # Half-open
//!
//! At most `half_open_max_calls` probes are in flight; other calls are rejected. A permit
//! reserved by `poll_ready` and never used, or held by a response future that is dropped, is
//! given back. A probe that does not finish within `probe_timeout` is given up on as failed by
//! the next call that finds no permit free, so a hung probe cannot wedge the breaker.
//!
//! `poll_ready` reserves the admission and `call` uses it, but only if the breaker has not
//! changed state in between: a service made ready while closed, and called once the breaker
//! has opened (a `tower::buffer::Buffer` worker can hold a ready service for long), is
//! admitted afresh, so it is rejected, or takes a probe permit like any other call. A
//! rejection is counted in [`Metrics::rejected`] when the rejected call is made.
//!
//! # Errors and composition
//!
//! Rejections come out of `call` as an immediately ready error future, never out of
//! `poll_ready`, and the inner service is neither polled nor called while open, so
//! `tower::retry`, `tower::timeout` and `tower::load_shed` compose as with any transient
//! error. An error from the inner `poll_ready` is passed on: it means the service is closed
//! for good. Inner errors pass through unchanged as [`BoxError`]; downcast to tell a
//! [`BreakerOpen`] apart.
//!
//! # Cost
//!
//! There is no background task and nothing is allocated or locked per call: a rejection's
//! [`BreakerOpen`] is zero-sized, so boxing it allocates nothing (the time until the next
//! probe is read through [`BreakerHandle::retry_after`]). Admitting a call while closed is
//! one atomic load; recording it is a plain increment of a counter owned by the current
//! thread, with no atomic read-modify-write (plus the window's atomics for rate policies). A
//! service rejected again within the open period it was last rejected in reads the clock
//! once and compares. The clock is read only when it matters: while open or half-open, and
//! with a time window or slow-call policy.
//! Time is read through [`tokio::time::Instant`], so tests can pause it.
//!
//! # Observability
//!
//! [`BreakerHandle`] (from the layer or the service) reads the [`State`] and a [`Metrics`]
//! snapshot, and forces the breaker open, disables it, or resets it. A hook set with
//! [`Builder::on_state_change`] runs after every transition, and every transition emits a
//! `tracing` event at `INFO` level with the target `sluice_breaker`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![doc(test(attr(deny(warnings))))]

mod classify;
mod closed;
mod config;
mod core;
pub mod error;
pub mod future;
mod handle;
mod hook;
mod layer;
mod local;
mod metrics;
mod policy;
mod probe;
mod service;
mod state;
mod window;

pub use crate::classify::{Classify, ErrIsFailure, Outcome};
pub use crate::config::{Builder, MAX_HALF_OPEN_CALLS, MAX_HALF_OPEN_SUCCESSES};
pub use crate::error::{BoxError, BreakerOpen, ConfigError};
pub use crate::handle::BreakerHandle;
pub use crate::hook::OnStateChange;
pub use crate::layer::CircuitBreakerLayer;
pub use crate::metrics::Metrics;
pub use crate::policy::{OpenDuration, TripPolicy, Window, MAX_WINDOW_BUCKETS, MAX_WINDOW_CALLS};
pub use crate::service::CircuitBreaker;
pub use crate::state::State;

// The README (the crate's crates.io page) is tested too: its example must keep compiling.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
