//! Test helpers shared by the sluice crates.
//!
//! [`paused_runtime`] is the runtime of the model and property tests: one thread, its clock
//! paused, so timers fire in virtual time and a run is repeatable.
//!
//! [`ContractProbe`] is an inner service that holds every layer to the `tower::Service`
//! contract: a clone starts unready, and `call` without a successful `poll_ready` on the same
//! instance panics. Wrapping it in a layer and driving the layer normally must never panic.
//!
//! [`HookEnv`] runs the `sluice-hook` binary in private directories, against one dashboard;
//! [`feed`] runs a command as Claude Code runs a hook, [`prompt`] is numbered hook input
//! ([`prompt_number`] reads the number back), and [`unused_addr`] is a dashboard that is down.
//!
//! [`init_tracing`] shows the crates' logs in a test's output when `RUST_LOG` asks for them.
//!
//! [`NatsServer`] is a real `nats-server` with JetStream on a free loopback port, to kill
//! with SIGKILL and start again; a missing binary fails the test with
//! [`NATS_SERVER_MISSING`].
//!
//! [`eventually`] waits, within a bound, for something a process will do.
//!
//! [`raw_client`] is a bare rust_socketio client, ready once its namespace is accepted.

mod bridge;
mod contract;
mod hook_env;
mod machine;
mod nats;
mod socketio;

pub use bridge::BridgeProcess;
pub use contract::ContractProbe;
pub use hook_env::{feed, prompt, prompt_number, unused_addr, HookEnv};
pub use machine::Machine;
pub use nats::{NatsCluster, NatsServer, NATS_SERVER_MISSING};
pub use socketio::raw_client;

/// A current-thread runtime with time enabled and the clock paused: timers advance only when
/// every task waits, so a test of timeouts and windows runs in virtual time.
pub fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime builds")
}

/// Sends the crates' `tracing` events to the test's captured output, filtered by `RUST_LOG`
/// (errors only when it is unset). Call it first in a test; later calls do nothing.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Checks `done` every 20 ms until it holds or `timeout` passes; returns whether it held.
/// For what another process does in its own time (a relay draining its store, exiting).
pub async fn eventually(timeout: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
