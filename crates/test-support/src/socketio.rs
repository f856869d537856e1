//! A raw rust_socketio client, the peer of the sink in benchmarks and tests.

use std::sync::Mutex;
use std::time::Duration;

use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::TransportType;

/// A raw `rust_socketio` client on `url` over websocket, without reconnects, returned once the
/// server accepted its namespace (within 5 s); panics otherwise.
pub async fn raw_client(url: impl Into<String>) -> Client {
    let (opened, accepted) = tokio::sync::oneshot::channel::<()>();
    let opened = Mutex::new(Some(opened));
    let client = ClientBuilder::new(url.into())
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .on("open", move |_, _| {
            if let Some(opened) = opened.lock().unwrap().take() {
                let _ = opened.send(());
            }
            async {}.boxed()
        })
        .connect()
        .await
        .expect("the client connects");
    tokio::time::timeout(Duration::from_secs(5), accepted)
        .await
        .expect("the namespace is accepted within 5 s")
        .expect("the client's open callback ran");
    client
}
