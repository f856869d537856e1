//! What the demo's test binaries share: where the binaries are, and a Socket.IO client.

#![allow(dead_code)] // each test binary uses part of it

use std::path::{Path, PathBuf};
use std::process::Command;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::TransportType;

/// The `sluice-demo` binary under test.
pub(crate) const DEMO: &str = env!("CARGO_BIN_EXE_sluice-demo");

/// `sluice-hook` and `sluice-relay`, next to `sluice-demo` as the demo expects: built by
/// `cargo test --workspace` already, and built here when only this package is tested.
pub(crate) fn hook_binary() -> PathBuf {
    let hook = Path::new(DEMO).with_file_name("sluice-hook");
    let release = Path::new(DEMO)
        .parent()
        .is_some_and(|dir| dir.ends_with("release"));
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "-p", "sluice-hook", "--bins"]);
    if release {
        build.arg("--release");
    }
    let output = build.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(hook.exists());
    hook
}

/// A Socket.IO client as a relay connects: no token, no Origin. Returns once connected.
pub(crate) async fn sender(url: &str, on_any: impl Fn(String) + Send + Sync + 'static) -> Client {
    let (opened, accepted) = tokio::sync::oneshot::channel::<()>();
    let opened = std::sync::Mutex::new(Some(opened));
    let on_any = std::sync::Arc::new(on_any);
    let client = ClientBuilder::new(url)
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .on("open", move |_, _| {
            if let Some(opened) = opened.lock().unwrap().take() {
                let _ = opened.send(());
            }
            async {}.boxed()
        })
        .on_any(move |event, _, _| {
            on_any(String::from(event));
            async {}.boxed()
        })
        .connect()
        .await
        .unwrap();
    accepted.await.unwrap();
    client
}
