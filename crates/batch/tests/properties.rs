//! Property tests: random item streams with random keys, sizes, timings and inner failures,
//! against the promises of the batcher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use proptest::prelude::*;
use sluice_batch::{Batch, BatchFailed, BatchLayer, BoxError, Dispatch, Overflow, QueueFull};
use tokio::time::Instant;
use tokio_test::task;

#[derive(Debug, Clone, Copy)]
struct Item {
    id: u32,
    key: u8,
    size: usize,
    fail: bool,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Submit {
        key: u8,
        size: usize,
        fail: bool,
        keep: bool,
    },
    Advance(u64),
    Flush,
}

#[derive(Debug, Clone)]
struct Setup {
    max_items: usize,
    max_bytes: Option<usize>,
    max_wait_ms: u64,
    capacity: usize,
    drop_newest: bool,
    /// How long the inner service takes per batch.
    inner_ms: u64,
    per_key: usize,
    eager: bool,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1usize..6,
        prop::option::of(5usize..30),
        10u64..100,
        prop_oneof![Just(1_000usize), 1usize..8],
        any::<bool>(),
        prop_oneof![Just(0u64), 1u64..80],
        1usize..3,
        any::<bool>(),
    )
        .prop_map(
            |(
                max_items,
                max_bytes,
                max_wait_ms,
                capacity,
                drop_newest,
                inner_ms,
                per_key,
                eager,
            )| {
                Setup {
                    max_items,
                    max_bytes,
                    max_wait_ms,
                    capacity,
                    drop_newest,
                    inner_ms,
                    per_key,
                    eager,
                }
            },
        )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 1usize..12, prop::bool::weighted(0.15), prop::bool::weighted(0.7))
            .prop_map(|(key, size, fail, keep)| Op::Submit { key, size, fail, keep }),
        3 => (0u64..60).prop_map(Op::Advance),
        1 => Just(Op::Flush),
    ]
}

type Seen = Arc<Mutex<Vec<(u8, Vec<Item>, Instant)>>>;

fn run(setup: Setup, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = sluice_test_support::paused_runtime();
    runtime.block_on(async move {
        let mut builder = BatchLayer::builder()
            .max_items(setup.max_items)
            .max_wait(Duration::from_millis(setup.max_wait_ms))
            .capacity(setup.capacity)
            .max_in_flight_per_key(setup.per_key)
            .dispatch(if setup.eager {
                Dispatch::Eager
            } else {
                Dispatch::Window
            })
            .overflow(if setup.drop_newest {
                Overflow::DropNewest
            } else {
                Overflow::Backpressure
            })
            .key_fn(|item: &Item| item.key);
        if let Some(limit) = setup.max_bytes {
            builder = builder.max_bytes(limit, |item: &Item| item.size);
        }
        let layer = builder.build().unwrap();
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let inner_ms = setup.inner_ms;
        let inner = tower::service_fn(move |batch: Batch<Item, u8>| {
            let fails = batch.items().iter().any(|item| item.fail);
            log.lock()
                .unwrap()
                .push((*batch.key(), batch.items().to_vec(), Instant::now()));
            async move {
                if inner_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(inner_ms)).await;
                }
                if fails {
                    Err::<(), BoxError>("inner failed".into())
                } else {
                    Ok(())
                }
            }
        });
        let (batcher, worker) = layer.pair(inner);
        let handle = batcher.handle();
        let mut batcher = tower_test::mock::Spawn::new(batcher);
        let mut worker = task::spawn(worker);

        let mut next_id = 0;
        // Every item offered: (item, submitted at, response future if kept, turned away).
        let mut offered = Vec::new();
        // Items submitted while the batcher was idle.
        let mut idle_at_submit = Vec::new();
        let mut responses = Vec::new();
        let mut flushes = Vec::new();
        for op in ops {
            match op {
                Op::Submit {
                    key,
                    size,
                    fail,
                    keep,
                } => {
                    let item = Item {
                        id: next_id,
                        key,
                        size,
                        fail,
                    };
                    // With backpressure and a full queue, let the worker and time make room.
                    let mut waited = 0;
                    while batcher.poll_ready().is_pending() {
                        let _ = worker.poll();
                        tokio::time::advance(Duration::from_millis(1)).await;
                        waited += 1;
                        prop_assert!(waited < 10_000, "backpressure never released");
                    }
                    next_id += 1;
                    // Nothing waiting or in flight, for any key: the batcher is idle.
                    if handle.stats().queued == 0 {
                        idle_at_submit.push(item.id);
                    }
                    let mut response = task::spawn(batcher.call(item));
                    let turned_away = match response.poll() {
                        Poll::Ready(Err(error)) if error.is::<QueueFull>() => true,
                        Poll::Ready(other) => {
                            prop_assert!(false, "answered before delivery: {other:?}");
                            unreachable!()
                        }
                        Poll::Pending => false,
                    };
                    if turned_away {
                        prop_assert!(setup.drop_newest);
                    } else if keep {
                        responses.push((item, response));
                    }
                    offered.push((item, Instant::now(), turned_away));
                }
                Op::Advance(ms) => {
                    // Step by step, so the worker runs when its timer fires, as it would on a
                    // running runtime.
                    for _ in 0..ms {
                        tokio::time::advance(Duration::from_millis(1)).await;
                        let _ = worker.poll();
                    }
                }
                Op::Flush => {
                    let handle = handle.clone();
                    let mut flush = task::spawn(async move { handle.flush().await });
                    if flush.poll().is_pending() {
                        flushes.push(flush);
                    }
                }
            }
            let _ = worker.poll();
            let stats = handle.stats();
            prop_assert_eq!(
                stats.submitted,
                stats.sent + stats.failed + stats.rejected + stats.dropped + stats.queued
            );
        }

        // Shut down and let the worker and the inner service finish.
        let shutdown_handle = handle.clone();
        let mut shutdown = task::spawn(async move { shutdown_handle.shutdown(None).await });
        let mut rounds = 0;
        while shutdown.poll().is_pending() {
            let _ = worker.poll();
            tokio::time::advance(Duration::from_millis(1)).await;
            rounds += 1;
            prop_assert!(rounds < 100_000, "shutdown never finished");
        }
        for mut flush in flushes {
            prop_assert!(flush.poll().is_ready(), "a flush outlived the shutdown");
        }

        // Every kept response is answered: Ok exactly when its batch had no failing item.
        let batches = seen.lock().unwrap().clone();
        let batch_of: HashMap<u32, usize> = batches
            .iter()
            .enumerate()
            .flat_map(|(i, (_, items, _))| items.iter().map(move |item| (item.id, i)))
            .collect();
        for (item, mut response) in responses {
            let Poll::Ready(result) = response.poll() else {
                prop_assert!(false, "item {} never answered", item.id);
                unreachable!()
            };
            let batch_failed = batches[batch_of[&item.id]].1.iter().any(|i| i.fail);
            match result {
                Ok(()) => prop_assert!(!batch_failed),
                Err(error) => {
                    prop_assert!(batch_failed, "{error}");
                    prop_assert!(error.is::<BatchFailed>());
                }
            }
        }

        // Every accepted item reached the inner service exactly once; turned-away ones never.
        let mut delivered: Vec<u32> = batches
            .iter()
            .flat_map(|(_, items, _)| items.iter().map(|item| item.id))
            .collect();
        delivered.sort_unstable();
        let mut accepted: Vec<u32> = offered
            .iter()
            .filter(|(_, _, away)| !away)
            .map(|(item, _, _)| item.id)
            .collect();
        accepted.sort_unstable();
        prop_assert_eq!(&delivered, &accepted);

        let submitted_at: HashMap<u32, Instant> =
            offered.iter().map(|(item, at, _)| (item.id, *at)).collect();
        for (key, items, handed_at) in &batches {
            prop_assert!(!items.is_empty());
            prop_assert!(items.iter().all(|item| item.key == *key), "keys never mix");
            prop_assert!(items.len() <= setup.max_items);
            if let Some(limit) = setup.max_bytes {
                let bytes: usize = items.iter().map(|item| item.size).sum();
                prop_assert!(items.len() == 1 || bytes <= limit, "{bytes} > {limit}");
            }
            if setup.inner_ms == 0 {
                // The inner service is always ready: nothing waits past max_wait.
                let waited = *handed_at - submitted_at[&items[0].id];
                prop_assert!(
                    waited <= Duration::from_millis(setup.max_wait_ms),
                    "{waited:?}"
                );
                if setup.eager {
                    // Eager, with an inner service that is always ready and answers at once,
                    // every key is idle whenever an item arrives: no batch waits for a timer.
                    prop_assert_eq!(waited, Duration::ZERO);
                }
            }
        }
        if setup.eager {
            // An item that finds the batcher idle is handed over at once, whatever the inner
            // service's pace: no timer is waited for.
            let handed_at: HashMap<u32, Instant> = batches
                .iter()
                .flat_map(|(_, items, at)| items.iter().map(move |item| (item.id, *at)))
                .collect();
            for id in &idle_at_submit {
                prop_assert_eq!(handed_at[id], submitted_at[id], "item {} waited", id);
            }
        }
        // Same-key items reach the inner service in submission order.
        for key in 0..3u8 {
            let order: Vec<u32> = batches
                .iter()
                .filter(|(k, _, _)| *k == key)
                .flat_map(|(_, items, _)| items.iter().map(|item| item.id))
                .collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(order, sorted);
        }

        let stats = handle.stats();
        let failed_items: u64 = batches
            .iter()
            .filter(|(_, items, _)| items.iter().any(|item| item.fail))
            .map(|(_, items, _)| items.len() as u64)
            .sum();
        prop_assert_eq!(stats.queued, 0);
        prop_assert_eq!(stats.submitted, offered.len() as u64);
        prop_assert_eq!(stats.failed, failed_items);
        prop_assert_eq!(stats.sent, accepted.len() as u64 - failed_items);
        prop_assert_eq!(stats.batches.total(), batches.len() as u64);
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_batcher_keeps_its_promises(setup in setup(), ops in prop::collection::vec(op(), 1..80)) {
        run(setup, ops)?;
    }
}
