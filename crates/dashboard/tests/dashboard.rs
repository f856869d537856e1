//! The dashboard against a raw rust_socketio client: what it records of each emit.

use std::time::Duration;

use rust_socketio::Payload;
use serde_json::json;
use sluice_dashboard::Dashboard;
use sluice_test_support::raw_client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_array_argument_is_told_from_several_arguments() {
    let dashboard = Dashboard::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = raw_client(dashboard.url()).await;
    let items = vec![json!({"seq": 0}), json!({"seq": 1}), json!({"seq": 2})];
    // One argument, an array of three; then the same three as three arguments; then none.
    client
        .emit("claude_event", Payload::from(json!(items)))
        .await
        .unwrap();
    client
        .emit("claude_event", Payload::Text(items.clone()))
        .await
        .unwrap();
    client
        .emit("claude_event", Payload::Text(Vec::new()))
        .await
        .unwrap();
    let log = dashboard.received();
    assert_eq!(log.wait_for(3, Duration::from_secs(5)).await, 3);
    let seen: Vec<_> = log.events().into_iter().map(|r| (r.args, r.data)).collect();
    assert_eq!(
        seen,
        vec![
            (1, json!(items)),
            (3, items[0].clone()),
            (0, serde_json::Value::Null)
        ]
    );
    client.disconnect().await.unwrap();
    dashboard.stop().await;
}
