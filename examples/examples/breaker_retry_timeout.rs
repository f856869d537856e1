//! The circuit breaker with `tower::retry` and `tower::timeout` around a flaky service,
//! printing each transition as it happens.
//!
//! ```sh
//! cargo run -p sluice-examples --example breaker_retry_timeout
//! ```
//!
//! The backend answers in 5 ms while healthy, hangs from 150 ms to 450 ms after the start (the
//! timeout turns each hung call into an error), then recovers. Retries absorb single failures; once the breaker opens, calls are
//! rejected at once without reaching the backend, until a probe finds it healthy again.

#![allow(clippy::print_stdout)] // an example prints what it shows

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_breaker::{BreakerOpen, CircuitBreakerLayer};
use tower::retry::Policy;
use tower::timeout::error::Elapsed;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};

/// Retries a request once when the backend timed out; never retries a `BreakerOpen`, whose
/// whole point is to stop calling.
/// tower clones the policy for each request, so `retried` is per request.
#[derive(Clone)]
struct RetryTimeoutsOnce {
    retried: bool,
}

impl<Req: Clone, Res> Policy<Req, Res, BoxError> for RetryTimeoutsOnce {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _req: &mut Req,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        match result {
            Err(error) if error.is::<Elapsed>() && !self.retried => {
                self.retried = true;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let started = Instant::now();
    let breaker = CircuitBreakerLayer::builder()
        .consecutive_failures(3)
        .open_duration(Duration::from_millis(200))
        .on_state_change(move |from, to| {
            println!(
                "{:>6.0} ms  breaker {from} -> {to}",
                started.elapsed().as_secs_f64() * 1e3
            );
        })
        .build()?;
    let handle = breaker.handle();

    let backend_calls = Arc::new(AtomicU32::new(0));
    let calls = Arc::clone(&backend_calls);
    let backend = service_fn(move |request: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        let down = (150..450).contains(&started.elapsed().as_millis());
        async move {
            let delay = if down { 3_600_000 } else { 5 };
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok::<_, BoxError>(request * 2)
        }
    });

    // Retry outermost so that a retried request goes through the breaker again.
    let mut service = ServiceBuilder::new()
        .retry(RetryTimeoutsOnce { retried: false })
        .layer(breaker)
        .timeout(Duration::from_millis(20))
        .service(backend);

    let (mut ok, mut timed_out, mut rejected) = (0, 0, 0);
    for request in 0..60u32 {
        match service.ready().await?.call(request).await {
            Ok(_) => ok += 1,
            Err(error) if error.is::<BreakerOpen>() => rejected += 1,
            Err(error) if error.is::<Elapsed>() => timed_out += 1,
            Err(error) => return Err(error),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let metrics = handle.metrics();
    println!();
    println!("requests: {ok} ok, {timed_out} timed out, {rejected} rejected by the open breaker");
    println!(
        "backend calls: {} (the breaker spared it {} calls)",
        backend_calls.load(Ordering::SeqCst),
        metrics.rejected
    );
    println!(
        "breaker: {} now, {} transitions, {} successes, {} failures",
        metrics.state, metrics.transitions, metrics.successes, metrics.failures
    );
    Ok(())
}
