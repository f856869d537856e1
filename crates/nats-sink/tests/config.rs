//! What `build` refuses, and failures that name the server: no stream needed.

mod support;

use sluice_nats_sink::{ConfigError, NatsSink, SinkError};
use sluice_test_support::NatsServer;

#[tokio::test]
async fn an_unreadable_credentials_file_is_named() {
    let path = std::env::temp_dir().join("sluice-no-such-file.creds");
    let error = NatsSink::builder("nats://127.0.0.1:4222")
        .credentials_file(&path)
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConfigError::Credentials { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("sluice-no-such-file.creds"),
        "{error}"
    );
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test]
async fn credentials_in_the_url_and_a_file_are_refused() {
    let error = NatsSink::builder("nats://u:secret-pw@127.0.0.1:4222")
        .credentials_file("/dev/null")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, ConfigError::TwoCredentials), "{error:?}");
}

#[tokio::test]
async fn a_url_that_is_not_nats_is_refused_without_its_secret() {
    for url in ["http://u:secret-pw@127.0.0.1:4222", "nats://", "not a url"] {
        let error = NatsSink::builder(url).build().await.unwrap_err();
        assert!(matches!(error, ConfigError::Url { .. }), "{url}: {error:?}");
        assert!(
            !format!("{error} {error:?}").contains("secret-pw"),
            "{error}"
        );
    }
    let error = NatsSink::builder("nats://127.0.0.1:4222")
        .prefix("..")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(error, ConfigError::Prefix), "{error:?}");
}

#[tokio::test]
async fn a_tls_failure_is_an_outage_that_names_the_server() {
    // A server without TLS, asked for it.
    let server = NatsServer::start();
    let url = format!("tls://127.0.0.1:{}", server.port());
    let sink = support::sink(&url).await;
    let error = sink.publish(support::event(1, 100)).await.unwrap_err();
    let SinkError::NotConnected(not_connected) = &error else {
        panic!("{error:?}")
    };
    assert!(error.is_outage());
    assert!(error.to_string().contains(&url), "{error}");
    assert!(not_connected.last_error().is_some(), "{error}");
    assert!(!sink.stats().connected);
}

#[tokio::test]
async fn with_the_server_gone_the_breaker_opens_and_every_failure_is_an_outage() {
    let mut server = NatsServer::start();
    let sink = support::sink(&server.url()).await;
    server.kill();
    // Five failed batches in a row (each waits 300 ms for the connection) open the breaker;
    // the next event is turned away at once.
    let mut errors = Vec::new();
    for n in 0..6 {
        errors.push(sink.publish(support::event(n, 100)).await.unwrap_err());
    }
    assert!(errors.iter().all(SinkError::is_outage), "{errors:?}");
    assert!(
        errors[..5]
            .iter()
            .all(|e| matches!(e, SinkError::NotConnected(_))),
        "{errors:?}"
    );
    assert!(
        matches!(
            errors[5],
            SinkError::BreakerOpen {
                retry_after: Some(_)
            }
        ),
        "{:?}",
        errors[5]
    );
    assert!(errors[5].is_dropped());
    let stats = sink.stats();
    assert_eq!(stats.circuit_state, "open");
    assert_eq!((stats.failed, stats.dropped_breaker_open), (5, 1));
}
