//! The websocket under `rust_socketio` is opened with Nagle's algorithm off: the vendored
//! `rust_engineio` (`patches/rust_engineio`, through the workspace's `[patch.crates-io]`).
//!
//! The socket is out of reach (rust_socketio hides it), so this checks the effect. Against a
//! server that acknowledges but writes nothing back to a plain emit, an emit that asks for an
//! ack right after a plain one is held by Nagle until the server's delayed TCP ACK of the
//! first (about 40 ms on Linux); without Nagle its ack is back in about a millisecond. Every
//! pair pays that wait, so the median of a few pairs tells the two apart even on a busy
//! machine. Real time, on 127.0.0.1, bounded.

use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::Payload;
use serde_json::json;
use sluice_dashboard::{Acks, Dashboard, Echo, Log};
use sluice_test_support::raw_client;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// Pairs timed. The first few segments of a connection are ACKed at once (Linux's quick-ACK
/// mode), so more pairs than those are timed and the median read.
const PAIRS: usize = 31;
/// Well under the delayed-ACK wait (Linux: 40 ms at least), well over a loaded machine's
/// round trip on loopback.
const LIMIT: Duration = Duration::from_millis(20);

mod support;
use support::seqs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_right_after_another_is_not_held_for_the_delayed_ack() {
    let dashboard = Dashboard::start_with_echo(
        "127.0.0.1:0".parse().unwrap(),
        Log::default(),
        Acks::Immediate,
        Echo::Off,
    )
    .await
    .unwrap();
    let (acked, mut acks) = mpsc::unbounded_channel();
    let client = raw_client(dashboard.url()).await;

    let mut rounds = Vec::with_capacity(PAIRS);
    for pair in 0..PAIRS as u64 {
        let start = Instant::now();
        client
            .emit("claude_event", Payload::from(json!({ "seq": 2 * pair })))
            .await
            .unwrap();
        let acked = acked.clone();
        client
            .emit_with_ack(
                "claude_event",
                Payload::from(json!({ "seq": 2 * pair + 1 })),
                Duration::from_secs(2),
                move |_, _| {
                    let _ = acked.send(pair);
                    async {}.boxed()
                },
            )
            .await
            .unwrap();
        let got = timeout(Duration::from_secs(2), acks.recv())
            .await
            .expect("the server acks within 2 s");
        assert_eq!(got, Some(pair), "acks come back in order");
        rounds.push(start.elapsed());
    }
    client.disconnect().await.unwrap();
    let log = dashboard.stop().await;
    // Counted by identity: every event once, in order.
    assert_eq!(seqs(&log), (0..2 * PAIRS as u64).collect::<Vec<_>>());

    rounds.sort();
    let median = rounds[PAIRS / 2];
    assert!(
        median < LIMIT,
        "a plain emit then one asking for an ack: the ack came back after {median:?} at the \
         median (fastest {:?}, slowest {:?}); over {LIMIT:?} means the second write waited for \
         the server's delayed ACK, i.e. Nagle's algorithm is on: is the workspace's \
         `[patch.crates-io] rust_engineio` (patches/rust_engineio) still applied?",
        rounds[0],
        rounds[PAIRS - 1],
    );
}
