//! Property test: random requests, connect failures, call failures and evictions, under a
//! paused clock. Never more than `max_size` connections alive or connecting; every request
//! is answered; once the server is back, the pool reconnects.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use sluice_pool::PoolLayer;
use tower::{BoxError, Layer, Service, ServiceExt};

/// The world the connector sees: whether the server is up, connections alive or connecting,
/// the most seen at once, and a kill switch per generation of connections.
#[derive(Default)]
struct World {
    up: AtomicBool,
    occupied: AtomicUsize,
    most: AtomicUsize,
    generation: AtomicUsize,
}

impl World {
    fn occupy(&self) {
        let now = self.occupied.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }
}

/// Counts itself out of `occupied` when dropped.
struct Occupancy(Arc<World>);

impl Drop for Occupancy {
    fn drop(&mut self) {
        self.0.occupied.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Conn {
    world: Arc<World>,
    generation: usize,
    _occupancy: Occupancy,
}

impl Service<(u32, bool)> for Conn {
    type Response = u32;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<u32, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.generation != self.world.generation.load(Ordering::SeqCst) {
            Poll::Ready(Err("connection reset".into()))
        } else {
            Poll::Ready(Ok(()))
        }
    }

    fn call(&mut self, (request, fail): (u32, bool)) -> Self::Future {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(u64::from(request % 7))).await;
            if fail {
                Err("fatal".into())
            } else {
                Ok(request)
            }
        })
    }
}

#[derive(Clone)]
struct Connector(Arc<World>);

impl Service<u64> for Connector {
    type Response = Conn;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Conn, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, latency_ms: u64) -> Self::Future {
        let world = Arc::clone(&self.0);
        world.occupy();
        let occupancy = Occupancy(Arc::clone(&world));
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
            if world.up.load(Ordering::SeqCst) {
                Ok(Conn {
                    generation: world.generation.load(Ordering::SeqCst),
                    world,
                    _occupancy: occupancy,
                })
            } else {
                Err("connection refused".into())
            }
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Request { fail: bool },
    Server(bool),
    KillConnections,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::bool::weighted(0.1).prop_map(|fail| Op::Request { fail }),
        1 => any::<bool>().prop_map(Op::Server),
        1 => Just(Op::KillConnections),
        3 => (0u64..300).prop_map(Op::Advance),
    ]
}

fn run(max_size: usize, latency_ms: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = sluice_test_support::paused_runtime();
    runtime.block_on(async move {
        let world = Arc::new(World::default());
        world.up.store(true, Ordering::SeqCst);
        let pool = PoolLayer::builder(latency_ms)
            .max_size(max_size)
            .connect_timeout(Duration::from_millis(200))
            .wait_timeout(Duration::from_millis(500))
            .backoff(Duration::from_millis(10), Duration::from_millis(200))
            .fatal_error(|error| error.to_string() == "fatal")
            .build()
            .unwrap()
            .layer(Connector(Arc::clone(&world)));
        let handle = pool.handle();
        let mut requests = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Request { fail } => {
                    let pool = pool.clone();
                    let request = n as u32;
                    requests.push(tokio::spawn(async move {
                        (request, pool.oneshot((request, fail)).await)
                    }));
                }
                Op::Server(up) => world.up.store(up, Ordering::SeqCst),
                Op::KillConnections => {
                    world.generation.fetch_add(1, Ordering::SeqCst);
                }
                Op::Advance(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
            let stats = handle.stats();
            prop_assert!(stats.live + stats.connecting <= max_size, "{stats:?}");
        }
        // Every request is answered (the wait is bounded), with its own answer when Ok.
        for request in requests {
            let (sent, answer) = request.await.unwrap();
            if let Ok(got) = answer {
                prop_assert_eq!(got, sent);
            }
        }
        prop_assert!(world.most.load(Ordering::SeqCst) <= max_size);

        // The server is back: the pool reconnects on its own within a few backoffs.
        world.up.store(true, Ordering::SeqCst);
        let mut recovered = false;
        for _ in 0..20 {
            if pool.clone().oneshot((7, false)).await.is_ok() {
                recovered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        prop_assert!(recovered, "{:?}", handle.stats());
        prop_assert!(world.most.load(Ordering::SeqCst) <= max_size);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn the_pool_stays_bounded_answers_everything_and_recovers(
        max_size in 1usize..5,
        latency_ms in 0u64..50,
        ops in prop::collection::vec(op(), 1..60),
    ) {
        run(max_size, latency_ms, ops)?;
    }
}
