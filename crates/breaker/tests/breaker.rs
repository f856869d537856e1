//! Behaviour of the breaker, driven by hand over tower-test's mock with a paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_breaker::{
    BoxError, BreakerHandle, BreakerOpen, CircuitBreakerLayer, ConfigError, OpenDuration, Outcome,
    State, TripPolicy, Window,
};
use tokio::time;
use tokio_test::{assert_pending, assert_ready_err, assert_ready_ok, task};
use tower_test::mock;

type Handle = mock::Handle<&'static str, &'static str>;

fn layer(threshold: u32) -> CircuitBreakerLayer {
    CircuitBreakerLayer::builder()
        .consecutive_failures(threshold)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Calls the service once and answers from the mock with `ok` or an error.
async fn call<S>(service: &mut mock::Spawn<S>, handle: &mut Handle, ok: bool)
where
    S: tower::Service<&'static str, Response = &'static str, Error = BoxError>,
{
    assert_ready_ok!(service.poll_ready());
    let response = service.call("req");
    let (_, send) = handle
        .next_request()
        .await
        .expect("request reached the inner service");
    if ok {
        send.send_response("ok");
    } else {
        send.send_error("boom");
    }
    let result = response.await;
    assert_eq!(result.is_ok(), ok, "the inner result passes through");
}

/// Calls the service and expects an immediate `BreakerOpen`, without the inner service seeing
/// the request.
fn rejected<S>(service: &mut mock::Spawn<S>, handle: &mut Handle) -> BreakerOpen
where
    S: tower::Service<&'static str, Response = &'static str, Error = BoxError>,
{
    assert_ready_ok!(service.poll_ready());
    let mut response = task::spawn(service.call("req"));
    let error = assert_ready_err!(response.poll());
    assert!(matches!(handle.poll_request(), std::task::Poll::Pending));
    *error
        .downcast::<BreakerOpen>()
        .expect("a BreakerOpen error")
}

/// Expects a rejection as [`rejected`] does, then reads how long until a call may pass.
fn retry_after<S>(
    service: &mut mock::Spawn<S>,
    handle: &mut Handle,
    breaker: &BreakerHandle,
) -> Option<Duration>
where
    S: tower::Service<&'static str, Response = &'static str, Error = BoxError>,
{
    rejected(service, handle);
    breaker.retry_after()
}

#[tokio::test(start_paused = true)]
async fn opens_after_consecutive_failures_and_rejects_without_calling_inner() {
    let layer = layer(5);
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer::<_, _, _>(layer);
    for _ in 0..4 {
        call(&mut service, &mut handle, false).await;
    }
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().consecutive_failures, 4);
    call(&mut service, &mut handle, false).await;
    assert_eq!(breaker.state(), State::Open);

    // The inner service is not even polled for readiness while open.
    handle.allow(0);
    rejected(&mut service, &mut handle);
    assert_eq!(breaker.retry_after(), Some(Duration::from_secs(30)));
    time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        retry_after(&mut service, &mut handle, &breaker),
        Some(Duration::from_secs(20))
    );
    let metrics = breaker.metrics();
    assert_eq!((metrics.failures, metrics.rejected), (5, 2));
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_count_and_ignored_calls_do_not() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .classifier(|result: &Result<&'static str, BoxError>| match result {
            Ok("404") => Outcome::Ignore,
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Failure,
        })
        .build()
        .unwrap();
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    call(&mut service, &mut handle, false).await;
    call(&mut service, &mut handle, false).await;
    call(&mut service, &mut handle, true).await;
    assert_eq!(breaker.metrics().consecutive_failures, 0);
    call(&mut service, &mut handle, false).await;
    call(&mut service, &mut handle, false).await;
    // A 404 says nothing about the backend's health: it neither resets nor adds.
    assert_ready_ok!(service.poll_ready());
    let response = service.call("req");
    handle.next_request().await.unwrap().1.send_response("404");
    assert_eq!(response.await.unwrap(), "404");
    assert_eq!(breaker.metrics().consecutive_failures, 2);
    assert_eq!(breaker.metrics().ignored, 1);
    call(&mut service, &mut handle, false).await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_one_probe_and_closes_on_success() {
    let layer = layer(1);
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer.clone());
    let (mut other, mut other_handle) = mock::spawn_layer(layer);
    call(&mut service, &mut handle, false).await;
    assert_eq!(breaker.state(), State::Open);
    time::advance(Duration::from_secs(30)).await;

    // The first call after the open period is the probe.
    assert_ready_ok!(service.poll_ready());
    assert_eq!(breaker.state(), State::HalfOpen);
    // A second caller finds the only permit taken.
    rejected(&mut other, &mut other_handle);
    assert_eq!(breaker.retry_after(), None);

    let probe = service.call("probe");
    let (request, send) = handle.next_request().await.unwrap();
    assert_eq!(request, "probe");
    send.send_response("ok");
    probe.await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
    assert_eq!(breaker.metrics().transitions, 3);
    call(&mut other, &mut other_handle, true).await;
}

#[tokio::test(start_paused = true)]
async fn several_probes_and_several_successes_when_configured() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .half_open_max_calls(2)
        .half_open_successes(3)
        .build()
        .unwrap();
    let breaker = layer.handle();
    let (mut a, mut a_handle) = mock::spawn_layer(layer.clone());
    let (mut b, mut b_handle) = mock::spawn_layer(layer.clone());
    let (mut c, mut c_handle) = mock::spawn_layer(layer);
    call(&mut a, &mut a_handle, false).await;
    time::advance(Duration::from_secs(1)).await;
    assert_ready_ok!(a.poll_ready());
    assert_ready_ok!(b.poll_ready());
    rejected(&mut c, &mut c_handle);
    let (fa, fb) = (a.call("a"), b.call("b"));
    a_handle.next_request().await.unwrap().1.send_response("ok");
    b_handle.next_request().await.unwrap().1.send_response("ok");
    fa.await.unwrap();
    fb.await.unwrap();
    assert_eq!(breaker.state(), State::HalfOpen, "two of three successes");
    call(&mut c, &mut c_handle, true).await;
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_with_backoff_growing_to_its_cap() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_backoff(OpenDuration::backoff(
            Duration::from_secs(1),
            Duration::from_secs(5),
        ))
        .build()
        .unwrap();
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    call(&mut service, &mut handle, false).await;
    for expected in [1, 2, 4, 5, 5] {
        let period = Duration::from_secs(expected);
        assert_eq!(
            retry_after(&mut service, &mut handle, &breaker),
            Some(period)
        );
        time::advance(period - Duration::from_millis(1)).await;
        rejected(&mut service, &mut handle);
        time::advance(Duration::from_millis(1)).await;
        call(&mut service, &mut handle, false).await; // the probe fails
        assert_eq!(breaker.state(), State::Open);
    }
    // A successful probe closes and resets the backoff.
    time::advance(Duration::from_secs(5)).await;
    call(&mut service, &mut handle, true).await;
    assert_eq!(breaker.state(), State::Closed);
    call(&mut service, &mut handle, false).await;
    assert_eq!(
        retry_after(&mut service, &mut handle, &breaker),
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_backoff_stays_in_the_upper_half() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_backoff(OpenDuration::Backoff {
            initial: Duration::from_secs(8),
            max: Duration::from_secs(8),
            multiplier: 2.0,
            jitter: true,
        })
        .build()
        .unwrap();
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    for _ in 0..20 {
        breaker.reset();
        call(&mut service, &mut handle, false).await;
        let wait = retry_after(&mut service, &mut handle, &breaker).unwrap();
        assert!(
            wait >= Duration::from_secs(4) && wait <= Duration::from_secs(8),
            "{wait:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_reserved_probe_permit_is_released_when_unused_or_dropped() {
    let layer = layer(1);
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer.clone());
    call(&mut service, &mut handle, false).await;
    time::advance(Duration::from_secs(30)).await;

    // Reserve the permit in poll_ready, then drop the service without calling.
    let (mut reserving, _reserving_handle) = mock::spawn_layer::<&str, &str, _>(layer.clone());
    assert_ready_ok!(reserving.poll_ready());
    assert_eq!(breaker.state(), State::HalfOpen);
    rejected(&mut service, &mut handle);
    drop(reserving);

    // Take the permit again, call, and drop the response future before it completes.
    assert_ready_ok!(service.poll_ready());
    let probe = service.call("probe");
    let (_request, _send) = handle.next_request().await.unwrap();
    drop(probe);

    // The permit is free again: this call is a probe, and it closes the breaker.
    call(&mut service, &mut handle, true).await;
    assert_eq!(breaker.state(), State::Closed);
    // The dropped calls recorded nothing.
    let metrics = breaker.metrics();
    assert_eq!((metrics.successes, metrics.failures), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_hung_probe_is_given_up_after_the_probe_timeout() {
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(30))
        .probe_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    call(&mut service, &mut handle, false).await;
    time::advance(Duration::from_secs(30)).await;
    assert_ready_ok!(service.poll_ready());
    let hung = service.call("hangs");
    let (_request, _never_answered) = handle.next_request().await.unwrap();

    time::advance(Duration::from_millis(4_999)).await;
    assert!(retry_after(&mut service, &mut handle, &breaker).is_none());
    time::advance(Duration::from_millis(1)).await;
    // The next call gives up on the probe: the breaker opens again for the open period.
    rejected(&mut service, &mut handle);
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(breaker.retry_after(), Some(Duration::from_secs(30)));
    time::advance(Duration::from_secs(30)).await;
    call(&mut service, &mut handle, true).await;
    assert_eq!(breaker.state(), State::Closed);
    // The abandoned probe finishing late changes nothing.
    drop(_never_answered);
    assert!(hung.await.is_err());
    assert_eq!(breaker.state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn forced_open_stays_open_and_disabled_admits_while_recording() {
    let layer = layer(1);
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    breaker.force_open();
    assert_eq!(breaker.state(), State::ForcedOpen);
    assert_eq!(retry_after(&mut service, &mut handle, &breaker), None);
    time::advance(Duration::from_secs(3_600)).await;
    rejected(&mut service, &mut handle);
    assert_eq!(breaker.state(), State::ForcedOpen);

    breaker.disable();
    for _ in 0..10 {
        call(&mut service, &mut handle, false).await;
    }
    assert_eq!(breaker.state(), State::Disabled);
    assert_eq!(breaker.metrics().failures, 10);

    breaker.reset();
    assert_eq!(breaker.state(), State::Closed);
    call(&mut service, &mut handle, false).await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_the_slow_call_rate_policy() {
    let layer = CircuitBreakerLayer::builder()
        .trip_policy(
            TripPolicy::slow_call_rate(0.5, Duration::from_millis(100), Window::last_calls(4))
                .min_calls(4),
        )
        .build()
        .unwrap();
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    for slow in [false, true, false, true] {
        assert_ready_ok!(service.poll_ready());
        let response = service.call("req");
        let (_, send) = handle.next_request().await.unwrap();
        time::advance(Duration::from_millis(if slow { 100 } else { 99 })).await;
        send.send_response("ok");
        response.await.unwrap();
    }
    assert_eq!(breaker.metrics().slow, 2);
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_count_window_is_a_true_sliding_window() {
    // tower-resilience's "window" needed 100 failures after 100 successes; the last 10 calls
    // at a 50 % threshold need 5.
    let layer = CircuitBreakerLayer::builder()
        .trip_policy(TripPolicy::failure_rate(0.5, Window::last_calls(10)).min_calls(10))
        .build()
        .unwrap();
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    for _ in 0..100 {
        call(&mut service, &mut handle, true).await;
    }
    for _ in 0..4 {
        call(&mut service, &mut handle, false).await;
    }
    assert_eq!(breaker.state(), State::Closed);
    call(&mut service, &mut handle, false).await;
    assert_eq!(breaker.state(), State::Open);
}

#[tokio::test(start_paused = true)]
async fn a_time_window_forgets_failures_older_than_its_span() {
    let layer = CircuitBreakerLayer::builder()
        .trip_policy(
            TripPolicy::failure_rate(0.5, Window::last_in_buckets(Duration::from_secs(10), 10))
                .min_calls(4),
        )
        .build()
        .unwrap();
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    for _ in 0..3 {
        call(&mut service, &mut handle, false).await;
    }
    // Eleven seconds later the three failures have left the window.
    time::advance(Duration::from_secs(11)).await;
    call(&mut service, &mut handle, true).await;
    call(&mut service, &mut handle, true).await;
    call(&mut service, &mut handle, true).await;
    call(&mut service, &mut handle, false).await;
    assert_eq!(breaker.state(), State::Closed, "1 failure in 4 calls");
    call(&mut service, &mut handle, false).await;
    call(&mut service, &mut handle, false).await;
    assert_eq!(breaker.state(), State::Open, "3 failures in 6 calls");
}

#[tokio::test]
async fn an_inner_poll_ready_error_is_passed_on() {
    let (mut service, mut handle) = mock::spawn_layer::<&str, &str, _>(layer(5));
    handle.send_error("closed for good");
    let error = assert_ready_err!(service.poll_ready());
    assert_eq!(error.to_string(), "closed for good");
}

#[tokio::test]
async fn poll_ready_waits_for_the_inner_service_while_closed() {
    let (mut service, mut handle) = mock::spawn_layer::<&str, &str, _>(layer(5));
    handle.allow(0);
    assert_pending!(service.poll_ready());
    handle.allow(1);
    assert!(service.is_woken());
    assert_ready_ok!(service.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn the_hook_sees_every_transition() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1)
        .open_duration(Duration::from_secs(1))
        .on_state_change(move |from, to| log.lock().unwrap().push((from, to)))
        .build()
        .unwrap();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    call(&mut service, &mut handle, false).await;
    time::advance(Duration::from_secs(1)).await;
    call(&mut service, &mut handle, false).await;
    time::advance(Duration::from_secs(1)).await;
    call(&mut service, &mut handle, true).await;
    use State::*;
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (Closed, Open),
            (Open, HalfOpen),
            (HalfOpen, Open),
            (Open, HalfOpen),
            (HalfOpen, Closed)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_report_time_in_state() {
    let layer = layer(1);
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    time::advance(Duration::from_secs(3)).await;
    call(&mut service, &mut handle, false).await;
    time::advance(Duration::from_secs(2)).await;
    let metrics = breaker.metrics();
    assert_eq!(metrics.state, State::Open);
    assert_eq!(metrics.time_in_state, Duration::from_secs(2));
}

#[test]
fn bad_configuration_is_an_error_from_build() {
    let zero = CircuitBreakerLayer::builder()
        .consecutive_failures(0)
        .build();
    assert_eq!(zero.unwrap_err(), ConfigError::Zero { field: "threshold" });
    let rate = CircuitBreakerLayer::builder()
        .trip_policy(TripPolicy::failure_rate(1.5, Window::last_calls(10)))
        .build();
    assert!(matches!(rate.unwrap_err(), ConfigError::Rate { .. }));
    let nan = CircuitBreakerLayer::builder()
        .trip_policy(TripPolicy::failure_rate(f64::NAN, Window::last_calls(10)))
        .build();
    assert!(matches!(nan.unwrap_err(), ConfigError::Rate { .. }));
    let empty = CircuitBreakerLayer::builder()
        .trip_policy(TripPolicy::failure_rate(0.5, Window::last_calls(0)))
        .build();
    assert_eq!(empty.unwrap_err(), ConfigError::Zero { field: "window" });
    let span = CircuitBreakerLayer::builder()
        .trip_policy(TripPolicy::failure_rate(0.5, Window::last(Duration::ZERO)))
        .build();
    assert!(matches!(
        span.unwrap_err(),
        ConfigError::ZeroDuration { .. }
    ));
    let probes = CircuitBreakerLayer::builder()
        .half_open_max_calls(0)
        .build();
    assert!(matches!(probes.unwrap_err(), ConfigError::Zero { .. }));
    let many = CircuitBreakerLayer::builder()
        .half_open_max_calls(1_000)
        .build();
    assert!(matches!(many.unwrap_err(), ConfigError::TooLarge { .. }));
    let shrink = CircuitBreakerLayer::builder()
        .open_backoff(OpenDuration::Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(2),
            multiplier: 0.5,
            jitter: false,
        })
        .build();
    assert!(matches!(
        shrink.unwrap_err(),
        ConfigError::Multiplier { .. }
    ));
    for (initial, max) in [(1, 0), (2, 1)] {
        let (initial, max) = (Duration::from_secs(initial), Duration::from_secs(max));
        let backoff = CircuitBreakerLayer::builder()
            .open_backoff(OpenDuration::backoff(initial, max))
            .build();
        assert_eq!(
            backoff.unwrap_err(),
            ConfigError::BackoffMax { initial, max },
            "a backoff capped below its first period"
        );
    }
    assert_eq!(
        ConfigError::BackoffMax {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(1)
        }
        .to_string(),
        "backoff `max` (1s) must be at least `initial` (2s)"
    );
    let message = ConfigError::Zero { field: "threshold" }.to_string();
    assert_eq!(message, "`threshold` must be at least 1");
}

/// Rejections are ordinary transient errors for tower's own middleware: a retry policy can
/// see them, a timeout lets them through at once, and load_shed leaves them alone.
#[tokio::test(start_paused = true)]
async fn composes_with_tower_timeout_retry_and_load_shed() {
    use tower::{ServiceBuilder, ServiceExt};

    #[derive(Clone)]
    struct RetryBreakerOpen(usize);
    impl<Req: Clone, Res> tower::retry::Policy<Req, Res, BoxError> for RetryBreakerOpen {
        type Future = std::future::Ready<()>;
        fn retry(
            &mut self,
            _req: &mut Req,
            result: &mut Result<Res, BoxError>,
        ) -> Option<Self::Future> {
            match result {
                Err(error) if error.is::<BreakerOpen>() && self.0 > 0 => {
                    self.0 -= 1;
                    Some(std::future::ready(()))
                }
                _ => None,
            }
        }
        fn clone_request(&mut self, req: &Req) -> Option<Req> {
            Some(req.clone())
        }
    }

    let breaker = layer(1);
    let handle = breaker.handle();
    let attempts = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&attempts);
    let service = ServiceBuilder::new()
        .load_shed()
        .retry(RetryBreakerOpen(3))
        .timeout(Duration::from_secs(1))
        .layer(breaker)
        .service_fn(move |fail: bool| {
            *counted.lock().unwrap() += 1;
            async move {
                if fail {
                    Err::<(), BoxError>("down".into())
                } else {
                    Ok(())
                }
            }
        });
    let error = service.clone().oneshot(true).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "down",
        "the inner error passes through unchanged"
    );
    assert_eq!(handle.state(), State::Open);
    let error = service.clone().oneshot(false).await.unwrap_err();
    assert!(error.is::<BreakerOpen>());
    assert_eq!(
        *attempts.lock().unwrap(),
        1,
        "retries were rejected, not sent"
    );
    assert_eq!(handle.metrics().rejected, 4);
}

/// Counters live per thread: a snapshot must still see every call, from every thread,
/// including threads that have exited.
#[test]
fn metrics_count_calls_from_every_thread() {
    use tower::{Layer, ServiceExt};

    let layer = CircuitBreakerLayer::builder()
        .consecutive_failures(1_000_000)
        .build()
        .unwrap();
    let handle = layer.handle();
    async fn answer(fail: bool) -> Result<(), &'static str> {
        if fail {
            Err("fail")
        } else {
            Ok(())
        }
    }
    let service = layer.layer(tower::service_fn(answer));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let service = service.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    for i in 0..1_000 {
                        let _ = service.clone().oneshot(i % 4 == 0).await;
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let service = service.clone();
                tokio::spawn(async move {
                    for _ in 0..1_000 {
                        service.clone().oneshot(false).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let metrics = handle.metrics();
    assert_eq!((metrics.successes, metrics.failures), (7_000, 1_000));
    assert_eq!(metrics.state, State::Closed);
}

/// A response future may outlive every service, layer and handle of its breaker.
#[tokio::test]
async fn a_future_outliving_its_breaker_still_completes() {
    let (mut service, mut handle) = mock::spawn_layer::<&str, &str, _>(layer(1));
    assert_ready_ok!(service.poll_ready());
    let response = service.call("req");
    drop(service);
    handle.next_request().await.unwrap().1.send_error("boom");
    assert_eq!(response.await.unwrap_err().to_string(), "boom");
}

/// A call admitted by `poll_ready` while closed must not reach the inner service when the
/// breaker has opened before `call`; nor may a probe permit of an earlier half-open period.
#[tokio::test(start_paused = true)]
async fn a_reservation_does_not_outlive_a_state_change() {
    let layer = layer(1);
    let breaker = layer.handle();
    let (mut early, mut early_handle) = mock::spawn_layer(layer.clone());
    let (mut other, mut other_handle) = mock::spawn_layer(layer);

    // Ready while closed; the breaker opens before the call.
    assert_ready_ok!(early.poll_ready());
    call(&mut other, &mut other_handle, false).await;
    assert_eq!(breaker.state(), State::Open);
    let mut late = task::spawn(early.call("late"));
    assert!(
        matches!(early_handle.poll_request(), std::task::Poll::Pending),
        "a call reserved while closed reached the inner service of an open breaker"
    );
    let error = assert_ready_err!(late.poll());
    assert!(error.is::<BreakerOpen>());
    assert_eq!(breaker.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(breaker.metrics().rejected, 1);

    // A probe permit reserved in half-open, then the breaker is forced open.
    time::advance(Duration::from_secs(30)).await;
    assert_ready_ok!(early.poll_ready());
    assert_eq!(breaker.state(), State::HalfOpen);
    breaker.force_open();
    let mut late = task::spawn(early.call("stale probe"));
    assert!(
        matches!(early_handle.poll_request(), std::task::Poll::Pending),
        "a probe permit of an earlier half-open period reached the inner service"
    );
    assert!(assert_ready_err!(late.poll()).is::<BreakerOpen>());
    assert_eq!(breaker.metrics().rejected, 2);

    // A reservation whose state did not change is used as it stands.
    breaker.reset();
    call(&mut early, &mut early_handle, true).await;
    assert_eq!(breaker.metrics().successes, 1);
}

/// A `Buffer` worker keeps its service's reservation while the inner service is not ready.
/// When the breaker turns half-open meanwhile, that reservation must not become a second
/// probe beyond `half_open_max_calls`.
#[tokio::test(start_paused = true)]
async fn a_buffered_reservation_does_not_bypass_half_open_max_calls() {
    use tower::{buffer::Buffer, Layer, ServiceExt};

    let layer = layer(1);
    let breaker = layer.handle();
    let (mut other, mut other_handle) = mock::spawn_layer(layer.clone());
    let (inner, mut handle) = mock::pair::<&'static str, &'static str>();
    handle.allow(0);
    let buffer = Buffer::new(layer.layer(inner), 8);
    // `buffer` lives on, so the worker and its inner service do too.
    let buffered = tokio::spawn(buffer.clone().oneshot("buffered"));
    // A paused clock advances only once every task is idle: the worker has reserved a
    // closed admission and waits for the inner service.
    time::sleep(Duration::from_millis(1)).await;
    assert_eq!(breaker.state(), State::Closed);

    call(&mut other, &mut other_handle, false).await;
    time::advance(Duration::from_secs(30)).await;
    assert_ready_ok!(other.poll_ready());
    assert_eq!(
        breaker.state(),
        State::HalfOpen,
        "`other` holds the only probe"
    );

    handle.allow(1);
    time::sleep(Duration::from_millis(1)).await;
    assert!(
        matches!(handle.poll_request(), std::task::Poll::Pending),
        "the buffered call reached the inner service as a second half-open probe"
    );
    let error = buffered.await.unwrap().unwrap_err();
    assert!(error.is::<BreakerOpen>(), "{error}");
    assert_eq!(breaker.metrics().rejected, 1);

    // The one real probe still decides.
    let probe = other.call("probe");
    other_handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response("ok");
    probe.await.unwrap();
    assert_eq!(breaker.state(), State::Closed);
}

/// A rejection is counted when the rejected call is made, not when `poll_ready` decides it:
/// a reservation that is never called rejected nothing.
#[tokio::test(start_paused = true)]
async fn an_uncalled_reservation_is_not_counted_as_rejected() {
    let layer = layer(1);
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer.clone());
    call(&mut service, &mut handle, false).await;
    assert_eq!(breaker.state(), State::Open);

    let (mut idle, _idle_handle) = mock::spawn_layer::<&str, &str, _>(layer);
    assert_ready_ok!(idle.poll_ready());
    drop(idle);
    assert_eq!(breaker.metrics().rejected, 0, "nothing was called");
    rejected(&mut service, &mut handle);
    assert_eq!(breaker.metrics().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn the_handle_tells_how_long_until_a_call_may_pass_in_every_state() {
    let layer = layer(1);
    let breaker = layer.handle();
    let (mut service, mut handle) = mock::spawn_layer(layer);
    assert_eq!(breaker.retry_after(), Some(Duration::ZERO), "closed");
    call(&mut service, &mut handle, false).await;
    time::advance(Duration::from_secs(12)).await;
    assert_eq!(breaker.retry_after(), Some(Duration::from_secs(18)), "open");
    time::advance(Duration::from_secs(18)).await;
    // Still `Open` until the next call, but that call is the probe.
    assert_eq!(breaker.state(), State::Open);
    assert_eq!(
        breaker.retry_after(),
        Some(Duration::ZERO),
        "open, period over"
    );
    assert_ready_ok!(service.poll_ready());
    assert_eq!(breaker.state(), State::HalfOpen);
    assert_eq!(
        breaker.retry_after(),
        None,
        "half-open, the only permit taken"
    );
    breaker.disable();
    assert_eq!(breaker.retry_after(), Some(Duration::ZERO), "disabled");
    breaker.force_open();
    assert_eq!(breaker.retry_after(), None, "forced open");
}

#[test]
fn a_rejection_is_zero_sized_so_boxing_it_allocates_nothing() {
    assert_eq!(size_of::<BreakerOpen>(), 0);
}
