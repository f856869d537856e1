//! Relays that publish to NATS JetStream: the built `sluice-hook` and its relays as real
//! processes on isolated "machines" (each its own HOME, store and `SLUICE_HOST`), a real
//! `nats-server` started here, and the events counted by `event_id` in the stream.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sluice_nats_sink::async_nats::{self, jetstream};
use sluice_test_support::{prompt_number, Machine, NatsServer};

const BIN: &str = env!("CARGO_BIN_EXE_sluice-hook");

/// Each prompt number in the stream with the host of its subject, in stream order; and how
/// many copies each `Nats-Msg-Id` has.
async fn stream(url: &str) -> (Vec<(String, usize)>, HashMap<String, usize>) {
    let client = async_nats::connect(url).await.expect("a client");
    let js = jetstream::new(client);
    let mut stream = js.get_stream("SLUICE_HOOKS").await.expect("the stream");
    let count = stream.info().await.expect("info").state.messages as usize;
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            ack_policy: jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("a consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let (mut order, mut copies) = (Vec::new(), HashMap::new());
    use futures_util::StreamExt;
    for _ in 0..count {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("a message within 10 s")
            .expect("more")
            .expect("a message");
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|id| id.as_str().to_string())
            .expect("a Nats-Msg-Id");
        *copies.entry(id).or_insert(0) += 1;
        let payload: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let host = message
            .subject
            .split('.')
            .nth(2)
            .unwrap_or_default()
            .to_string();
        if let Some(n) = prompt_number(&payload["data"]) {
            order.push((host, n));
        }
    }
    (order, copies)
}

async fn messages(url: &str) -> usize {
    let Ok(client) = async_nats::connect(url).await else {
        return 0;
    };
    let js = jetstream::new(client);
    match js.get_stream("SLUICE_HOOKS").await {
        Ok(mut stream) => stream.info().await.map_or(0, |i| i.state.messages as usize),
        Err(_) => 0,
    }
}

/// Checks every number of `0..n` is in the stream once, and each machine's in order.
fn assert_each_once_in_order(order: &[(String, usize)], copies: &HashMap<String, usize>, n: usize) {
    let twice: Vec<_> = copies.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "stored twice: {twice:?}");
    let mut seen = vec![0; n];
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (host, k) in order {
        seen[*k] += 1;
        if let Some(before) = last.insert(host.as_str(), *k) {
            assert!(before < *k, "{host}: {k} after {before}");
        }
    }
    let missing: Vec<usize> = (0..n).filter(|k| seen[*k] == 0).collect();
    assert!(missing.is_empty(), "missing: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_machines_through_two_server_kills_lose_nothing() {
    let mut server = NatsServer::start();
    let url = server.url();
    let machines: Vec<Machine> = (0..3)
        .map(|k| Machine::new(BIN, &format!("machine-{k}"), &url))
        .collect();
    let setup = machines[0].run(&["nats", "setup"]);
    let said = String::from_utf8_lossy(&setup.stdout);
    assert!(
        setup.status.success() && said.contains("created"),
        "{setup:?}"
    );
    let again = machines[0].run(&["nats", "setup"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("unchanged"),
        "{again:?}"
    );
    const EACH: usize = 1000;
    let total = machines.len() * EACH;
    std::thread::scope(|scope| {
        for (lane, machine) in machines.iter().enumerate() {
            scope.spawn(move || {
                for k in 0..EACH {
                    machine.hook(k * 3 + lane);
                }
            });
        }
        // Two crashes of the server during the stream.
        let mut kills = 0;
        let started = Instant::now();
        while kills < 2 && started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(1500));
            server.kill();
            std::thread::sleep(Duration::from_millis(500));
            server.start_again();
            kills += 1;
        }
        assert_eq!(kills, 2);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages(&url).await < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (order, copies) = stream(&url).await;
    assert_each_once_in_order(&order, &copies, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_down_30_s_gets_the_stores_within_5_s_of_its_return() {
    let mut server = NatsServer::start();
    let url = server.url();
    let machine = Machine::new(BIN, "outage", &url);
    assert!(machine.run(&["nats", "setup"]).status.success());
    for n in 0..10 {
        machine.hook(n);
    }
    server.kill();
    // Hooks keep writing for 30 s: the relay's store holds them.
    let started = Instant::now();
    let mut n = 10;
    while started.elapsed() < Duration::from_secs(30) {
        machine.hook(n);
        n += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    let stats = machine.run(&["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert!(stats["spool_depth"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        !stats.to_string().contains("@"),
        "no credentials in stats: {stats}"
    );
    server.start_again();
    let back = Instant::now();
    while messages(&url).await < n && back.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = back.elapsed();
    let (order, copies) = stream(&url).await;
    assert_each_once_in_order(&order, &copies, n);
    assert!(
        took <= Duration::from_secs(5),
        "the backlog took {took:?} after the server's return"
    );
}
