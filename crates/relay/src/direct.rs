//! The last resort of a hook with no relay and no spool: send straight to the dashboard,
//! within what is left of its budget.

use std::time::Duration;

use sluice_socketio_sink::{Emit, SocketIoSink};

use crate::config::Config;

pub fn send(config: &Config, lines: &[String], budget: Duration) -> Result<(), String> {
    if budget.is_zero() {
        return Err("no time left".to_string());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let sink = SocketIoSink::builder(config.url.clone())
            .delivery(config.delivery.into())
            .connect_timeout(budget / 2)
            .wait_timeout(budget / 2)
            .max_wait(Duration::from_millis(1))
            .build()
            .map_err(|e| e.to_string())?;
        let outcomes: Vec<_> = crate::protocol::payloads(lines)
            .into_iter()
            .map(|payload| sink.emit(Emit::new("claude_event", payload)))
            .collect();
        let delivered = tokio::time::timeout(budget, async {
            for outcome in outcomes {
                outcome.await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        })
        .await
        .map_err(|_| "timed out".to_string())?;
        let _ = sink.shutdown(Some(Duration::from_millis(50))).await;
        delivered
    })
}
