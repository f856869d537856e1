//! The relay's socket protocol: one line per request, one line per answer.
//!
//! - `E <json>`: an event payload; answered `A` once it is spooled.
//! - `B <kind>`: a hook refused a bad input (counted); answered `A`.
//! - `S`: the relay's stats; answered with one line of JSON.
//! - `Q`: flush and exit; answered `A` when done.

pub const EVENT: u8 = b'E';
pub const BAD_INPUT: u8 = b'B';
pub const STATS: u8 = b'S';
pub const QUIT: u8 = b'Q';
pub const ACK: &[u8] = b"A\n";
