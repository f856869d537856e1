//! The parts of `sluice-hook` shared by its binaries: `sluice-hook`, the light command
//! Claude Code runs for every event (no TLS, no async runtime: it starts in well under a
//! millisecond), and `sluice-relay`, the long-lived relay with the Socket.IO sink. The
//! embedded dashboard and the demo live in the separate `sluice-demo` package.
//!
//! Not a public API: the crate's interface is its commands.

#![forbid(unsafe_code)]
#![allow(missing_docs, unreachable_pub)] // an internal library of two binaries

pub mod cli;
pub mod client;
pub mod config;
pub mod events;
mod git;
pub mod install;
pub mod normalize;
pub mod protocol;
pub mod spool;
pub mod stats;
mod time;
