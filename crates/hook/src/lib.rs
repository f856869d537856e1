//! The parts of `sluice-hook` shared by its binaries: `sluice-hook`, the light command
//! Claude Code runs for every event (no TLS, no async runtime: it starts in well under a
//! millisecond), and `sluice-relay`, the long-lived relay with the Socket.IO sink. The
//! embedded dashboard and the demo live in the separate `sluice-demo` package.
//!
//! Not a public API: the crate's interface is its commands.

#![forbid(unsafe_code)]
#![allow(missing_docs, unreachable_pub)] // an internal library of two binaries

mod checksum;
pub mod cli;
pub mod client;
pub mod config;
pub mod dead_letters;
pub mod events;
mod git;
pub mod install;
pub mod large;
pub mod normalize;
pub mod protocol;
pub mod safety;
pub mod size;
pub mod socket;
pub mod stats;
pub mod store;
mod time;

/// An error and its causes on one line: `outer: inner: innermost`. A cause whose text the
/// line already holds is left out (some errors print their cause in their own text).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
