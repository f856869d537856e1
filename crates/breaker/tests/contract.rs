//! The breaker holds its inner service to the tower contract, closed or open.

use std::time::Duration;

use sluice_breaker::{BreakerOpen, CircuitBreakerLayer, State};
use sluice_test_support::ContractProbe;
use tower::{Layer, Service, ServiceExt};

#[tokio::test(start_paused = true)]
async fn the_breaker_never_calls_an_unready_clone() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let handle = layer.handle();
    let probe = ContractProbe::new();
    let mut service = layer.layer(probe.clone());
    for i in 0..10u32 {
        // Every clone starts unready; the breaker must ready each one before calling it.
        let mut clone = service.clone();
        assert_eq!(
            ServiceExt::<u32>::ready(&mut clone)
                .await
                .unwrap()
                .call(i)
                .await
                .unwrap(),
            i
        );
    }
    assert_eq!(
        ServiceExt::<u32>::ready(&mut service)
            .await
            .unwrap()
            .call(10)
            .await
            .unwrap(),
        10
    );
    assert_eq!(probe.calls(), 11);

    handle.force_open();
    let error = service.clone().oneshot(11).await.unwrap_err();
    assert!(error.is::<BreakerOpen>());
    handle.reset();
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(service.clone().oneshot(12).await.unwrap(), 12);
    assert_eq!(probe.calls(), 12);
}
