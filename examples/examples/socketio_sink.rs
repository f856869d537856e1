//! The Socket.IO sink used directly from a Tokio application, against an embedded dashboard.
//!
//! ```sh
//! cargo run -p sluice-examples --example socketio_sink
//! ```

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::time::Duration;

use serde_json::json;
use sluice_dashboard::Dashboard;
use sluice_socketio_sink::{Emit, SocketIoSink};
use tower::BoxError;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dashboard = Dashboard::start("127.0.0.1:0".parse()?).await?;
    let sink = SocketIoSink::builder(dashboard.url()).build()?;

    for n in 0..25 {
        // Never waits for the network: the event is queued and goes out with its batch.
        let delivered = sink.emit(Emit::new(
            "claude_event",
            json!({"type": "hook", "subtype": "notification", "data": {"message": format!("step {n}")}}),
        ));
        drop(delivered); // fire and forget (await it to learn the outcome)
    }
    sink.shutdown(Some(Duration::from_secs(5))).await?;
    let received = dashboard
        .received()
        .wait_for(25, Duration::from_secs(5))
        .await;
    println!("the dashboard received {received} events");
    println!("{}", serde_json::to_string_pretty(&sink.stats())?);
    assert_eq!(received, 25);
    dashboard.stop().await;
    Ok(())
}
