//! The parts of `sluice-hook`, the light command Claude Code runs for every event (no TLS,
//! no async runtime: it starts in well under a millisecond): reading and normalising the
//! event, handing it to the relay, and the commands people run around it. The relay, its
//! settings and protocol are the `sluice-relay` library, the store `sluice-store`; the
//! embedded dashboard and the demo live in the separate `sluice-demo` package.
//!
//! Not a public API: the crate's interface is its commands.

#![forbid(unsafe_code)]
#![allow(missing_docs, unreachable_pub)] // an internal library of two binaries

pub mod cli;
pub mod client;
pub mod dead_letters;
pub mod events;
mod git;
pub mod install;
pub mod large;
pub mod normalize;
mod time;
