//! The sink against a real nats-server with JetStream: events counted by `event_id` in the
//! stream, read back by a consumer.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_nats_sink::{setup, Message, SetupOutcome, SinkError};
use sluice_test_support::{eventually, NatsServer};
use support::{copies, event, settings, sink, stored};

#[tokio::test]
async fn each_confirmed_event_is_in_the_stream_once_at_its_confirmed_place() {
    let server = NatsServer::start();
    let sink = sink(&server.url()).await;
    assert_eq!(
        setup(sink.client(), &settings()).await.unwrap(),
        SetupOutcome::Created
    );

    let outcomes: Vec<_> = (0..2000).map(|n| sink.publish(event(n, 800))).collect();
    let mut confirmed = BTreeMap::new();
    for (n, outcome) in outcomes.into_iter().enumerate() {
        let ack = outcome.await.unwrap_or_else(|e| panic!("event {n}: {e}"));
        assert!(!ack.duplicate, "event {n} is new");
        confirmed.insert(format!("e{n:05}"), ack.sequence);
    }

    let stored = stored(sink.client()).await;
    assert_eq!(stored.len(), 2000);
    assert!(copies(&stored).values().all(|&n| n == 1));
    for message in &stored {
        // The sequence each event was confirmed with is where the stream holds it.
        assert_eq!(confirmed[&message.id], message.sequence, "{}", message.id);
        let n: usize = message.id[1..].parse().unwrap();
        assert_eq!(
            message.subject,
            format!("sluice.hooks.test-host.s{}.pre_tool", n % 3)
        );
    }
    // One writer: the stream holds them in the order they were published.
    let ids: Vec<_> = stored.iter().map(|m| m.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);

    let stats = sink.stats();
    assert_eq!(
        (stats.submitted, stats.confirmed, stats.failed),
        (2000, 2000, 0)
    );
    sink.shutdown(Some(Duration::from_secs(5))).await.unwrap();
}

#[tokio::test]
async fn a_repeated_event_id_is_confirmed_as_a_duplicate_and_stored_once() {
    let server = NatsServer::start();
    let sink = sink(&server.url()).await;
    setup(sink.client(), &settings()).await.unwrap();

    let first: Vec<_> = (0..100).map(|n| sink.publish(event(n, 100))).collect();
    let mut sequences = Vec::new();
    for outcome in first {
        sequences.push(outcome.await.unwrap().sequence);
    }
    // The same ids again, with other payloads: the server keeps the first copies.
    let again: Vec<_> = (0..100)
        .map(|n| {
            let first = event(n, 100);
            sink.publish(Message::new(first.event_id(), "s9", "stop", "{}"))
        })
        .collect();
    for (n, outcome) in again.into_iter().enumerate() {
        let ack = outcome.await.unwrap();
        assert!(ack.duplicate, "event {n} is a repeat");
        assert_eq!(ack.sequence, sequences[n], "the first copy's sequence");
    }

    let stored = stored(sink.client()).await;
    assert_eq!(stored.len(), 100);
    assert!(copies(&stored).values().all(|&n| n == 1));
    let stats = sink.stats();
    assert_eq!((stats.confirmed, stats.duplicates), (200, 100));
}

#[tokio::test]
async fn a_missing_stream_is_an_outage_that_says_how_to_create_it() {
    let server = NatsServer::start();
    let sink = sink(&server.url()).await;

    let error = sink.publish(event(1, 100)).await.unwrap_err();
    assert!(matches!(error, SinkError::NoStream(_)), "{error:?}");
    assert!(error.is_outage());
    let text = error.to_string();
    assert!(text.contains("sluice-hook nats setup"), "{text}");
    assert!(text.contains(&server.url()), "{text}");
    assert!(
        text.contains("sluice.hooks.test-host.s1.pre_tool"),
        "{text}"
    );
    assert_eq!(sink.stats().confirmed, 0);

    // Once the stream exists, the same event goes through (one failed batch left the
    // breaker closed).
    setup(sink.client(), &settings()).await.unwrap();
    sink.publish(event(1, 100)).await.unwrap();
}

#[tokio::test]
async fn a_message_over_max_payload_is_the_events_own_failure_and_others_flow() {
    let server = NatsServer::start();
    let sink = sink(&server.url()).await;
    setup(sink.client(), &settings()).await.unwrap();
    // The client learns max_payload (1 MiB) from the server's INFO: wait for it.
    sink.publish(event(0, 100)).await.unwrap();

    let big = sink.publish(event(1, 2 << 20));
    let small = sink.publish(event(2, 100));
    let error = big.await.unwrap_err();
    match &error {
        SinkError::Rejected(rejected) => assert!(rejected.is_too_large()),
        other => panic!("{other:?}"),
    }
    assert!(!error.is_outage());
    assert!(
        std::error::Error::source(&error).is_some(),
        "the client's error"
    );
    small.await.unwrap();
    let stats = sink.stats();
    assert_eq!((stats.rejected, stats.circuit_failures), (1, 0));
}

#[tokio::test]
async fn a_server_killed_mid_stream_loses_no_confirmed_event() {
    let mut server = NatsServer::start();
    let sink = sink(&server.url()).await;
    setup(sink.client(), &settings()).await.unwrap();
    let mut relay = Resender::default();

    // 0..500 go through; 500..700 are written to a server that hangs and is then killed
    // with SIGKILL, so they never reach it; 700..1000 are published while it is down; then
    // it starts again on the same store. What is not confirmed is sent again, as a relay
    // does, until everything is.
    relay.publish(&sink, 0..500);
    relay.settle().await;
    assert_eq!(relay.confirmed.len(), 500);
    server.freeze();
    let written = out_bytes(&sink);
    relay.publish(&sink, 500..700);
    let all_written = eventually(Duration::from_secs(5), || {
        out_bytes(&sink) >= written + 200 * 800
    })
    .await;
    assert!(all_written, "the 200 events reached the socket");
    server.kill();
    relay.publish(&sink, 700..1000);
    server.start_again();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while relay.settle().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "all confirmed within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        relay.resend(&sink);
    }
    assert_eq!(relay.confirmed.len(), 1000);

    // Every confirmed event is in the stream, once, where its ack said.
    let stored = stored(sink.client()).await;
    let copies = copies(&stored);
    let sequences: BTreeMap<_, _> = stored.iter().map(|m| (m.id.clone(), m.sequence)).collect();
    for id in relay.confirmed.keys() {
        assert_eq!(copies.get(id), Some(&1), "{id} is in the stream once");
    }
    for (id, sequence) in &relay.confirmed {
        assert_eq!(sequences[id], *sequence, "{id} is where its ack said");
    }
    assert_eq!(stored.len(), 1000);
    assert!(
        relay.outages >= 200,
        "the written events were not confirmed at first"
    );
}

/// Sends numbered events as a relay does: what fails for an outage is sent again.
#[derive(Default)]
struct Resender {
    confirmed: BTreeMap<String, u64>,
    in_flight: Vec<(usize, sluice_nats_sink::PublishFuture)>,
    failed: Vec<usize>,
    outages: usize,
}

impl Resender {
    fn publish(&mut self, sink: &sluice_nats_sink::NatsSink, events: std::ops::Range<usize>) {
        self.in_flight
            .extend(events.map(|n| (n, sink.publish(event(n, 800)))));
    }

    /// Awaits every outcome; whether any failed.
    async fn settle(&mut self) -> bool {
        for (n, outcome) in std::mem::take(&mut self.in_flight) {
            match outcome.await {
                Ok(ack) => {
                    self.confirmed.insert(format!("e{n:05}"), ack.sequence);
                }
                Err(error) => {
                    assert!(error.is_outage(), "event {n}: {error:?}");
                    self.outages += 1;
                    self.failed.push(n);
                }
            }
        }
        !self.failed.is_empty()
    }

    fn resend(&mut self, sink: &sluice_nats_sink::NatsSink) {
        for n in std::mem::take(&mut self.failed) {
            self.publish(sink, n..n + 1);
        }
    }
}

/// Bytes the client wrote to its socket.
fn out_bytes(sink: &sluice_nats_sink::NatsSink) -> u64 {
    sink.client()
        .statistics()
        .out_bytes
        .load(std::sync::atomic::Ordering::Relaxed)
}

#[tokio::test]
async fn setup_creates_then_leaves_then_updates() {
    let server = NatsServer::start();
    let client = sluice_nats_sink::connect(&server.url(), None)
        .await
        .unwrap();
    let defaults = settings();
    assert_eq!(
        setup(&client, &defaults).await.unwrap(),
        SetupOutcome::Created
    );
    assert_eq!(
        setup(&client, &defaults).await.unwrap(),
        SetupOutcome::Unchanged
    );
    let mut shorter = settings();
    shorter.duplicate_window = Duration::from_secs(600);
    assert_eq!(
        setup(&client, &shorter).await.unwrap(),
        SetupOutcome::Updated
    );
    assert_eq!(
        setup(&client, &shorter).await.unwrap(),
        SetupOutcome::Unchanged
    );

    let js = async_nats::jetstream::new(client.clone());
    let config = js
        .get_stream("SLUICE_HOOKS")
        .await
        .unwrap()
        .cached_info()
        .config
        .clone();
    assert_eq!(config.subjects, ["sluice.hooks.>"]);
    assert_eq!(
        config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(config.duplicate_window, Duration::from_secs(600));

    // Three replicas on one server: the server keeps one, and setup says so, every time.
    for _ in 0..2 {
        let mut three = settings();
        three.replicas = 3;
        let error = setup(&client, &three).await.unwrap_err();
        assert!(error.to_string().contains("SLUICE_HOOKS"), "{error}");
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("in no cluster"), "{cause}");
    }
}

#[tokio::test]
async fn a_refused_password_names_the_server_and_never_the_secret() {
    let server = NatsServer::with_args(&["--user", "alice", "--pass", "s3cret-pw"]);
    let port = server.port();

    let wrong = format!("nats://alice:wrong-pw@127.0.0.1:{port}");
    let sink = sink(&wrong).await;
    let error = sink.publish(event(1, 100)).await.unwrap_err();
    let SinkError::NotConnected(not_connected) = &error else {
        panic!("{error:?}")
    };
    assert!(error.is_outage());
    assert_eq!(not_connected.server(), format!("nats://127.0.0.1:{port}"));
    assert_eq!(not_connected.last_error(), Some("authorization violation"));
    let shown = format!(
        "{error} {error:?} {sink:?} {}",
        serde_json::to_string(&sink.stats()).unwrap()
    );
    assert!(!shown.contains("wrong-pw"), "{shown}");

    let failed = sluice_nats_sink::connect(&wrong, None).await.unwrap_err();
    let shown = format!("{failed} {failed:?}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
    assert!(!shown.contains("wrong-pw"), "{shown}");

    let right = format!("nats://alice:s3cret-pw@127.0.0.1:{port}");
    let client = sluice_nats_sink::connect(&right, None).await.unwrap();
    setup(&client, &settings()).await.unwrap();
    let sink = support::sink(&right).await;
    sink.publish(event(2, 100)).await.unwrap();
    assert!(!format!("{sink:?} {:?}", sink.stats()).contains("s3cret"));
}
