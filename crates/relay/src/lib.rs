//! sluice's relay, as a library: what `sluice-relay` runs and `sluice-hook` talks to.
//!
//! - [`config`]: the settings, from flags over the environment, and the names they give the
//!   relay's socket, locks and store.
//! - [`protocol`]: the hook-to-relay protocol over a private Unix socket ([`socket`]), with
//!   the trust checks of [`safety`].
//! - [`size`]: the size guard that fits an event under the largest payload sent.
//! - [`run`]: the relay itself. It takes hooks' events into its store (`sluice-store`)
//!   before acknowledging them, and delivers them to one destination through
//!   [`Destination`], the delivery contract every sink implements: each event confirmed, or
//!   failed as an outage or as possibly its own fault. Only the relay that owns a store
//!   delivers it; an event a destination fails on alone is set aside as a dead letter.
//! - [`stats`]: the relay's stats as people read them.
//!
//! Not a public API: the library of `sluice-relay`, `sluice-hook` and the bridge.

#![forbid(unsafe_code)]
#![allow(missing_docs, unreachable_pub)] // an internal library of the relay and the hook

mod blame;
pub mod bridge;
pub mod config;
mod deliver;
mod destination;
mod direct;
mod ingest;
mod logging;
mod nats;
mod owner;
pub mod protocol;
mod relay;
pub mod safety;
pub mod size;
pub mod socket;
mod socketio;
pub mod stats;
mod status;
mod store_worker;

pub use sluice_store::error_chain;

pub use crate::destination::{Destination, Failure, Outgoing};
pub use crate::direct::send as send_direct;
pub use crate::logging::{init_logging, init_logging_to};
pub use crate::nats::setup as nats_setup;
pub use crate::relay::run;
