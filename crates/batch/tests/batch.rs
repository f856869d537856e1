//! Behaviour of the batcher with a paused clock; the worker is driven by hand (`pair`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_batch::{
    Batch, BatchFailed, BatchLayer, Batcher, BoxError, Closed, ConfigError, Dispatch, FlushReason,
    Overflow, QueueFull, Worker,
};
use tokio::time::{self, Instant};
use tokio_test::task::{self, Spawn};
use tokio_test::{assert_pending, assert_ready, assert_ready_err, assert_ready_ok};
use tower::{service_fn, Service};
use tower_test::mock;
use tower_test::mock::Spawn as ServiceSpawn;

/// What the recording inner service saw: key, items, reason, and when.
type Seen<K> = Arc<Mutex<Vec<(K, Vec<u32>, FlushReason, Instant)>>>;

type Record<K> = Box<dyn FnMut(Batch<u32, K>) -> std::future::Ready<Result<(), BoxError>> + Send>;
type Recorder<K> = tower::util::ServiceFn<Record<K>>;

/// An inner service that answers at once: Ok, or an error when the batch holds a multiple
/// of `fail_every` (0: never).
fn recorder<K: Clone + Send + 'static>(fail_every: u32) -> (Recorder<K>, Seen<K>) {
    let seen: Seen<K> = Arc::default();
    let log = Arc::clone(&seen);
    let f: Record<K> = Box::new(move |batch: Batch<u32, K>| {
        let fails = fail_every != 0 && batch.items().iter().any(|i| i % fail_every == 0);
        log.lock().unwrap().push((
            batch.key().clone(),
            batch.items().to_vec(),
            batch.reason(),
            Instant::now(),
        ));
        std::future::ready(if fails {
            Err("inner failed".into())
        } else {
            Ok(())
        })
    });
    (service_fn(f), seen)
}

fn submit<K>(
    batcher: &mut ServiceSpawn<Batcher<u32, K>>,
    item: u32,
) -> Spawn<sluice_batch::future::ResponseFuture>
where
    K: std::hash::Hash + Eq + Clone,
{
    assert_ready_ok!(batcher.poll_ready());
    task::spawn(batcher.call(item))
}

fn batches<K: Clone>(seen: &Seen<K>) -> Vec<(K, Vec<u32>, FlushReason)> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(k, items, reason, _)| (k.clone(), items.clone(), *reason))
        .collect()
}

fn layer() -> BatchLayer<u32> {
    BatchLayer::builder()
        .max_items(3)
        .max_wait(Duration::from_millis(50))
        .build()
        .unwrap()
}

fn pair_spawned<S>(
    layer: &BatchLayer<u32>,
    service: S,
) -> (ServiceSpawn<Batcher<u32>>, Spawn<Worker<S, u32>>)
where
    S: Service<Batch<u32>>,
    S::Error: Into<BoxError>,
{
    let (batcher, worker) = layer.pair(service);
    (ServiceSpawn::new(batcher), task::spawn(worker))
}

#[tokio::test(start_paused = true)]
async fn a_batch_leaves_exactly_max_wait_after_its_first_item() {
    let (inner, seen) = recorder(0);
    let (mut batcher, mut worker) = pair_spawned(&layer(), inner);
    let start = Instant::now();
    let mut first = submit(&mut batcher, 1);
    assert_pending!(worker.poll());
    time::advance(Duration::from_millis(20)).await;
    let _second = submit(&mut batcher, 2);
    time::advance(Duration::from_millis(29)).await;
    assert_pending!(worker.poll());
    assert!(seen.lock().unwrap().is_empty(), "not before 50 ms");
    assert_pending!(first.poll());
    time::advance(Duration::from_millis(1)).await;
    assert!(worker.is_woken());
    assert_pending!(worker.poll());
    let log = seen.lock().unwrap().clone();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].1, [1, 2]);
    assert_eq!(log[0].2, FlushReason::Time);
    assert_eq!(log[0].3 - start, Duration::from_millis(50));
    assert!(first.is_woken());
    assert_ready_ok!(first.poll());
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_leaves_at_once_and_the_next_item_opens_a_new_window() {
    let (inner, seen) = recorder(0);
    let (mut batcher, mut worker) = pair_spawned(&layer(), inner);
    let responses: Vec<_> = (0..4).map(|i| submit(&mut batcher, i)).collect();
    assert_pending!(worker.poll());
    assert_eq!(batches(&seen), [((), vec![0, 1, 2], FlushReason::Size)]);
    time::advance(Duration::from_millis(50)).await;
    assert_pending!(worker.poll());
    assert_eq!(batches(&seen)[1], ((), vec![3], FlushReason::Time));
    for mut response in responses {
        assert_ready_ok!(response.poll());
    }
    let stats = batcher.get_ref().handle().stats();
    assert_eq!((stats.submitted, stats.sent, stats.queued), (4, 4, 0));
    assert_eq!((stats.batches.size, stats.batches.time), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_batch_leaves_before_an_item_would_take_it_past_max_bytes() {
    let layer = BatchLayer::builder()
        .max_items(100)
        .max_bytes(100, |item: &u32| *item as usize)
        .build()
        .unwrap();
    let (inner, seen) = recorder(0);
    let (batcher, worker) = layer.pair(inner);
    let (mut batcher, mut worker) = (ServiceSpawn::new(batcher), task::spawn(worker));
    for size in [40, 40, 40, 100, 150, 10] {
        drop(submit(&mut batcher, size)); // fire and forget
    }
    assert_pending!(worker.poll());
    assert_eq!(
        batches(&seen),
        [
            ((), vec![40, 40], FlushReason::Bytes),
            ((), vec![40], FlushReason::Bytes),
            ((), vec![100], FlushReason::Bytes),
            // An item larger than the cap on its own travels alone.
            ((), vec![150], FlushReason::Bytes),
        ]
    );
    let control = batcher.get_ref().handle();
    let mut flush = task::spawn(control.flush());
    assert_pending!(flush.poll());
    assert_pending!(worker.poll());
    assert!(flush.is_woken());
    assert_ready!(flush.poll());
    assert_eq!(batches(&seen)[4..], [((), vec![10], FlushReason::Flush)]);
}

#[tokio::test(start_paused = true)]
async fn different_keys_never_share_a_batch_and_have_their_own_windows() {
    let layer = BatchLayer::builder()
        .max_items(10)
        .max_wait(Duration::from_millis(50))
        .key_fn(|item: &u32| item % 2)
        .build()
        .unwrap();
    let (inner, seen) = recorder(0);
    let (batcher, worker) = layer.pair(inner);
    let (mut batcher, mut worker) = (ServiceSpawn::new(batcher), task::spawn(worker));
    drop(submit(&mut batcher, 0)); // fire and forget
    drop(submit(&mut batcher, 2)); // fire and forget
    time::advance(Duration::from_millis(30)).await;
    drop(submit(&mut batcher, 1)); // fire and forget
    drop(submit(&mut batcher, 4)); // fire and forget
    time::advance(Duration::from_millis(20)).await;
    assert_pending!(worker.poll());
    assert_eq!(batches(&seen), [(0, vec![0, 2, 4], FlushReason::Time)]);
    time::advance(Duration::from_millis(30)).await;
    assert_pending!(worker.poll());
    assert_eq!(batches(&seen)[1], (1, vec![1], FlushReason::Time));
}

#[tokio::test(start_paused = true)]
async fn flush_resolves_once_everything_before_it_is_delivered() {
    let (inner, mut handle) = mock::pair::<Batch<u32>, ()>();
    let (batcher, worker) = layer().pair(inner);
    let control = batcher.handle();
    let mut batcher = ServiceSpawn::new(batcher);
    tokio::spawn(worker);
    let mut first = submit(&mut batcher, 1);
    let mut flush = task::spawn(control.flush());
    assert_pending!(flush.poll());
    let (batch, respond) = handle.next_request().await.unwrap();
    assert_eq!(
        (batch.items(), batch.reason()),
        (&[1][..], FlushReason::Flush)
    );
    assert_pending!(flush.poll());
    respond.send_response(());
    tokio::task::yield_now().await;
    assert_ready!(flush.poll());
    assert_ready_ok!(first.poll());
    // Nothing pending: a flush resolves at once.
    assert_ready!(task::spawn(control.flush()).poll());
}

#[tokio::test(start_paused = true)]
async fn shutdown_delivers_everything_then_refuses_new_items() {
    let (inner, seen) = recorder(0);
    let batcher = layer().spawn(inner);
    let handle = batcher.handle();
    let mut batcher = ServiceSpawn::new(batcher);
    let responses: Vec<_> = (0..7).map(|i| submit(&mut batcher, i)).collect();
    handle.shutdown(None).await.unwrap();
    assert!(handle.is_finished());
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.1.clone())
            .collect::<Vec<_>>(),
        (0..7).collect::<Vec<_>>()
    );
    for mut response in responses {
        assert_ready_ok!(response.poll());
    }
    let error = assert_ready_err!(batcher.poll_ready());
    assert!(error.is::<Closed>());
    let stats = handle.stats();
    assert_eq!((stats.submitted, stats.sent), (7, 7));
    assert_eq!((stats.batches.size, stats.batches.shutdown), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn dropping_every_service_delivers_what_is_queued() {
    let (inner, seen) = recorder(0);
    let batcher = layer().spawn(inner);
    let handle = batcher.handle();
    let mut batcher = ServiceSpawn::new(batcher);
    let clone = batcher.get_ref().clone();
    drop(submit(&mut batcher, 1)); // fire and forget
    drop(submit(&mut batcher, 2)); // fire and forget
    drop(batcher);
    tokio::task::yield_now().await;
    assert!(!handle.is_finished(), "a clone is still alive");
    drop(clone);
    // The worker delivers what is queued and ends by itself.
    handle.finished().await;
    assert_eq!(batches(&seen), [((), vec![1, 2], FlushReason::Shutdown)]);
}

#[tokio::test(start_paused = true)]
async fn shutdown_reports_what_is_left_at_its_deadline() {
    let (inner, mut mock_handle) = mock::pair::<Batch<u32>, ()>();
    let batcher = layer().spawn(inner);
    let handle = batcher.handle();
    let mut batcher = ServiceSpawn::new(batcher);
    drop(submit(&mut batcher, 1)); // fire and forget
    let error = handle
        .shutdown(Some(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(error.remaining, 1);
    // The item is still delivered once the inner service answers.
    mock_handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_response(());
    handle.shutdown(None).await.unwrap();
    assert_eq!(handle.stats().sent, 1);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_applies_backpressure() {
    let layer = BatchLayer::builder()
        .max_items(10)
        .capacity(2)
        .build()
        .unwrap();
    let (inner, mut mock_handle) = mock::pair::<Batch<u32>, ()>();
    mock_handle.allow(0);
    let (batcher, worker) = layer.pair(inner);
    let (mut batcher, mut worker) = (ServiceSpawn::new(batcher), task::spawn(worker));
    drop(submit(&mut batcher, 1)); // fire and forget
    drop(submit(&mut batcher, 2)); // fire and forget
    assert_pending!(batcher.poll_ready());
    time::advance(Duration::from_millis(50)).await;
    assert_pending!(worker.poll());
    assert!(
        !batcher.is_woken(),
        "the inner service is not ready: nothing left the queue"
    );
    mock_handle.allow(1);
    assert_pending!(worker.poll());
    assert!(batcher.is_woken());
    assert_ready_ok!(batcher.poll_ready());
    assert_eq!(batcher.get_ref().handle().stats().queue_len, 0);
}

#[tokio::test(start_paused = true)]
async fn drop_newest_turns_items_away_and_counts_them() {
    let layer = BatchLayer::builder()
        .max_items(10)
        .capacity(2)
        .overflow(Overflow::DropNewest)
        .build()
        .unwrap();
    let (inner, mut mock_handle) = mock::pair::<Batch<u32>, ()>();
    mock_handle.allow(0);
    let (batcher, _worker) = layer.pair(inner);
    let mut batcher = ServiceSpawn::new(batcher);
    drop(submit(&mut batcher, 1)); // fire and forget
    drop(submit(&mut batcher, 2)); // fire and forget
    let mut third = submit(&mut batcher, 3);
    let error = assert_ready_err!(third.poll());
    assert!(error.is::<QueueFull>());
    let stats = batcher.get_ref().handle().stats();
    assert_eq!((stats.submitted, stats.dropped, stats.queued), (3, 1, 2));
    assert_eq!(
        stats.submitted,
        stats.sent + stats.failed + stats.rejected + stats.dropped + stats.queued
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_batch_does_not_poison_the_batcher() {
    let (inner, _seen) = recorder(5);
    let batcher = layer().spawn(inner);
    let handle = batcher.handle();
    let mut batcher = ServiceSpawn::new(batcher);
    let mut failing = submit(&mut batcher, 5);
    handle.flush().await;
    let error = assert_ready_err!(failing.poll());
    let failed = error.downcast_ref::<BatchFailed>().expect("a BatchFailed");
    assert_eq!(failed.inner().to_string(), "inner failed");
    let mut later = submit(&mut batcher, 6);
    handle.flush().await;
    assert_ready_ok!(later.poll());
    let stats = handle.stats();
    assert_eq!((stats.sent, stats.failed), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn an_inner_poll_ready_error_fails_waiting_items_and_closes() {
    let (inner, mut mock_handle) = mock::pair::<Batch<u32>, ()>();
    let (batcher, worker) = layer().pair(inner);
    let (mut batcher, mut worker) = (ServiceSpawn::new(batcher), task::spawn(worker));
    let mut waiting = submit(&mut batcher, 1);
    mock_handle.send_error("connection lost for good");
    time::advance(Duration::from_millis(50)).await;
    assert_ready!(worker.poll(), "the worker ends: nothing can be delivered");
    let error = assert_ready_err!(waiting.poll());
    let failed = error.downcast_ref::<BatchFailed>().unwrap();
    assert_eq!(failed.inner().to_string(), "connection lost for good");
    let error = assert_ready_err!(batcher.poll_ready());
    let closed = error.downcast_ref::<Closed>().unwrap();
    let source = std::error::Error::source(closed).unwrap();
    assert_eq!(source.to_string(), "connection lost for good");
}

#[tokio::test(start_paused = true)]
async fn one_batch_per_key_in_flight_keeps_order_and_other_keys_proceed() {
    let layer = BatchLayer::builder()
        .max_items(2)
        .key_fn(|item: &u32| item / 100)
        .build()
        .unwrap();
    let (inner, mut mock_handle) = mock::pair::<Batch<u32, u32>, ()>();
    let (batcher, worker) = layer.pair(inner);
    let (mut batcher, mut worker) = (ServiceSpawn::new(batcher), task::spawn(worker));
    for item in [1, 2, 3, 4, 101, 102] {
        drop(submit(&mut batcher, item)); // fire and forget
    }
    assert_pending!(worker.poll());
    let (first, respond_first) = mock_handle.next_request().await.unwrap();
    assert_eq!(first.items(), [1, 2]);
    // Key 0's second batch waits for its first; key 1's goes ahead.
    let (other, respond_other) = mock_handle.next_request().await.unwrap();
    assert_eq!(other.items(), [101, 102]);
    assert!(matches!(
        mock_handle.poll_request(),
        std::task::Poll::Pending
    ));
    respond_first.send_response(());
    assert_pending!(worker.poll());
    let (second, respond_second) = mock_handle.next_request().await.unwrap();
    assert_eq!(second.items(), [3, 4]);
    respond_other.send_response(());
    respond_second.send_response(());
    assert_pending!(worker.poll());
    assert_eq!(batcher.get_ref().handle().stats().sent, 6);
}

#[tokio::test(start_paused = true)]
async fn items_fail_with_closed_when_the_worker_is_dropped() {
    let (inner, _seen) = recorder(0);
    let (batcher, worker) = layer().pair(inner);
    let handle = batcher.handle();
    let mut batcher = ServiceSpawn::new(batcher);
    let mut response = submit(&mut batcher, 1);
    drop(worker);
    let error = assert_ready_err!(response.poll());
    assert!(error.is::<Closed>());
    assert!(assert_ready_err!(batcher.poll_ready()).is::<Closed>());
    let stats = handle.stats();
    assert_eq!((stats.submitted, stats.failed, stats.queued), (1, 1, 0));
    assert!(handle.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_reserved_slot_is_released_when_the_service_is_dropped() {
    let layer = BatchLayer::builder().capacity(1).build().unwrap();
    let (inner, _seen) = recorder(0);
    let (batcher, _worker) = layer.pair(inner);
    let mut clone = ServiceSpawn::new(batcher.clone());
    let mut batcher = ServiceSpawn::new(batcher);
    assert_ready_ok!(clone.poll_ready());
    assert_pending!(batcher.poll_ready());
    drop(clone);
    assert!(batcher.is_woken());
    assert_ready_ok!(batcher.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn a_slot_reserved_ahead_counts_against_capacity_and_is_released_on_drop() {
    let layer = BatchLayer::builder()
        .max_items(10)
        .capacity(4)
        .build()
        .unwrap();
    let (inner, _seen) = recorder(0);
    let (batcher, _worker) = layer.pair(inner);
    let mut quiet = ServiceSpawn::new(batcher.clone());
    let mut busy = ServiceSpawn::new(batcher);
    // With the queue under half full, `call` reserves a slot for the caller's next item ...
    drop(submit(&mut quiet, 1));
    // ... which the other producer cannot use while the quiet one holds it.
    drop(submit(&mut busy, 2));
    drop(submit(&mut busy, 3));
    assert_pending!(busy.poll_ready());
    assert_eq!(busy.get_ref().handle().stats().queue_len, 3);
    drop(quiet);
    assert!(busy.is_woken());
    assert_ready_ok!(busy.poll_ready());
}

#[tokio::test(start_paused = true)]
async fn slots_reserved_ahead_never_hold_more_than_half_the_queue() {
    let capacity = 10;
    let layer = BatchLayer::builder()
        .max_items(1)
        .capacity(capacity)
        .build()
        .unwrap();
    let (inner, seen) = recorder(0);
    let (batcher, worker) = pair_spawned(&layer, inner);
    let mut worker = worker;
    // Producers that each send one item, which is delivered, and go quiet, holding the slot
    // `call` reserved for their next item.
    let quiet: Vec<_> = (0..2 * capacity)
        .map(|i| {
            let mut producer = ServiceSpawn::new(batcher.get_ref().clone());
            drop(submit(&mut producer, i as u32));
            assert_pending!(worker.poll());
            producer
        })
        .collect();
    assert_eq!(seen.lock().unwrap().len(), 2 * capacity);
    assert_eq!(batcher.get_ref().handle().stats().queue_len, 0);
    // The queue is empty; what the quiet producers hold is not.
    let mut late = ServiceSpawn::new(batcher.get_ref().clone());
    let mut accepted = 0;
    while late.poll_ready().is_ready() {
        drop(late.call(0));
        accepted += 1;
    }
    assert!(
        accepted >= capacity / 2,
        "only {accepted} of {capacity} slots left for a new producer"
    );
    drop(quiet);
    assert!(late.is_woken());
    assert_ready_ok!(late.poll_ready());
}

#[test]
fn bad_configuration_is_an_error_from_build() {
    let error = BatchLayer::<u32>::builder()
        .max_items(0)
        .build()
        .unwrap_err();
    assert_eq!(error, ConfigError::Zero { field: "max_items" });
    let error = BatchLayer::<u32>::builder()
        .max_wait(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(error, ConfigError::ZeroDuration { field: "max_wait" });
    let error = BatchLayer::<u32>::builder()
        .max_bytes(0, |_| 1)
        .build()
        .unwrap_err();
    assert_eq!(error, ConfigError::Zero { field: "max_bytes" });
    assert!(BatchLayer::<u32>::builder().capacity(0).build().is_err());
}

#[tokio::test(start_paused = true)]
async fn rejections_are_counted_apart_from_failures() {
    let layer = BatchLayer::builder()
        .max_items(3)
        .rejected_if(|error| error.to_string() == "inner failed")
        .build()
        .unwrap();
    let (inner, _seen) = recorder(5);
    let batcher = layer.spawn(inner);
    let handle = batcher.handle();
    let mut batcher = ServiceSpawn::new(batcher);
    drop(submit(&mut batcher, 5)); // fire and forget
    handle.flush().await;
    drop(submit(&mut batcher, 6)); // fire and forget
    handle.flush().await;
    let stats = handle.stats();
    assert_eq!((stats.sent, stats.failed, stats.rejected), (1, 0, 1));
    assert_eq!(
        stats.submitted,
        stats.sent + stats.failed + stats.rejected + stats.dropped + stats.queued
    );
}

#[tokio::test(start_paused = true)]
async fn try_call_never_waits_and_counts_what_it_turns_away() {
    // Backpressure mode: `call` would wait, `try_call` does not.
    let layer = BatchLayer::builder()
        .max_items(10)
        .capacity(2)
        .build()
        .unwrap();
    let (inner, mut mock_handle) = mock::pair::<Batch<u32>, ()>();
    mock_handle.allow(0);
    let (batcher, _worker) = layer.pair(inner);
    let first = batcher.try_call(1);
    let second = batcher.try_call(2);
    let mut third = task::spawn(batcher.try_call(3));
    let error = assert_ready_err!(third.poll());
    assert!(error.is::<QueueFull>());
    let stats = batcher.handle().stats();
    assert_eq!((stats.submitted, stats.queued, stats.dropped), (3, 2, 1));
    drop((first, second));
    batcher.handle().shutdown(Some(Duration::ZERO)).await.ok();
    let mut after = task::spawn(batcher.try_call(4));
    assert!(assert_ready_err!(after.poll()).is::<Closed>());
}

fn eager(max_items: usize) -> BatchLayer<u32> {
    BatchLayer::builder()
        .max_items(max_items)
        .max_wait(Duration::from_millis(50))
        .dispatch(Dispatch::Eager)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn eager_an_item_at_an_idle_key_reaches_the_inner_service_without_a_timer() {
    let (inner, seen) = recorder(0);
    let (mut batcher, mut worker) = pair_spawned(&eager(3), inner);
    let start = Instant::now();
    assert_pending!(worker.poll());
    let mut first = submit(&mut batcher, 1);
    assert!(
        worker.is_woken(),
        "the item wakes the worker, no timer does"
    );
    assert_pending!(worker.poll());
    assert_eq!(batches(&seen), [((), vec![1], FlushReason::Idle)]);
    assert_eq!(seen.lock().unwrap()[0].3, start, "no time passed");
    assert_ready_ok!(first.poll());
    // The key is idle again: the next item goes at once too.
    let mut second = submit(&mut batcher, 2);
    assert!(worker.is_woken());
    assert_pending!(worker.poll());
    assert_eq!(batches(&seen)[1], ((), vec![2], FlushReason::Idle));
    assert_eq!(seen.lock().unwrap()[1].3, start);
    assert_ready_ok!(second.poll());
    let stats = batcher.get_ref().handle().stats();
    assert_eq!(
        (stats.sent, stats.batches.idle, stats.batches.time),
        (2, 2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn eager_items_that_arrive_while_a_batch_is_in_flight_form_the_next_batch() {
    let (inner, mut mock_handle) = mock::pair::<Batch<u32>, ()>();
    let (mut batcher, mut worker) = pair_spawned(&eager(10), inner);
    let start = Instant::now();
    let first = submit(&mut batcher, 1);
    assert_pending!(worker.poll());
    let (batch, respond_first) = mock_handle.next_request().await.unwrap();
    assert_eq!(
        (batch.items(), batch.reason()),
        (&[1][..], FlushReason::Idle)
    );
    let later: Vec<_> = (2..=4).map(|i| submit(&mut batcher, i)).collect();
    assert_pending!(worker.poll());
    assert!(
        matches!(mock_handle.poll_request(), std::task::Poll::Pending),
        "one batch of the key in flight at a time"
    );
    respond_first.send_response(());
    assert_pending!(worker.poll());
    let (batch, respond) = mock_handle.next_request().await.unwrap();
    assert_eq!(
        (batch.items(), batch.reason()),
        (&[2, 3, 4][..], FlushReason::Idle)
    );
    assert_eq!(Instant::now(), start, "no timer was waited for");
    respond.send_response(());
    assert_pending!(worker.poll());
    for mut response in [first].into_iter().chain(later) {
        assert_ready_ok!(response.poll());
    }
    let stats = batcher.get_ref().handle().stats();
    assert_eq!((stats.submitted, stats.sent, stats.queued), (4, 4, 0));
}

#[tokio::test(start_paused = true)]
async fn eager_batches_still_split_at_max_items_in_order() {
    let (inner, mut mock_handle) = mock::pair::<Batch<u32>, ()>();
    let (mut batcher, mut worker) = pair_spawned(&eager(3), inner);
    drop(submit(&mut batcher, 1)); // fire and forget
    assert_pending!(worker.poll());
    let (_, mut respond) = mock_handle.next_request().await.unwrap();
    for item in 2..=8 {
        drop(submit(&mut batcher, item)); // fire and forget
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        respond.send_response(());
        assert_pending!(worker.poll());
        let (batch, next) = mock_handle.next_request().await.unwrap();
        seen.push((batch.items().to_vec(), batch.reason()));
        respond = next;
    }
    respond.send_response(());
    assert_eq!(
        seen,
        [
            (vec![2, 3, 4], FlushReason::Size),
            (vec![5, 6, 7], FlushReason::Size),
            (vec![8], FlushReason::Idle),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn eager_items_gather_while_the_inner_service_is_not_ready_until_max_wait() {
    let (inner, mut mock_handle) = mock::pair::<Batch<u32>, ()>();
    mock_handle.allow(0);
    let (mut batcher, mut worker) = pair_spawned(&eager(10), inner);
    drop(submit(&mut batcher, 1)); // fire and forget
    assert_pending!(worker.poll());
    drop(submit(&mut batcher, 2)); // fire and forget
    time::advance(Duration::from_millis(10)).await;
    mock_handle.allow(1);
    assert_pending!(worker.poll());
    let (batch, respond) = mock_handle.next_request().await.unwrap();
    assert_eq!(
        (batch.items(), batch.reason()),
        (&[1, 2][..], FlushReason::Idle)
    );
    respond.send_response(());
    // Not ready for longer than max_wait: the window still bounds the batch.
    drop(submit(&mut batcher, 3)); // fire and forget
    assert_pending!(worker.poll());
    time::advance(Duration::from_millis(50)).await;
    assert_pending!(worker.poll());
    drop(submit(&mut batcher, 4)); // fire and forget
    mock_handle.allow(2);
    assert_pending!(worker.poll());
    let (batch, respond) = mock_handle.next_request().await.unwrap();
    assert_eq!(
        (batch.items(), batch.reason()),
        (&[3][..], FlushReason::Time)
    );
    respond.send_response(());
    assert_pending!(worker.poll());
    let (batch, _) = mock_handle.next_request().await.unwrap();
    assert_eq!(
        (batch.items(), batch.reason()),
        (&[4][..], FlushReason::Idle)
    );
}

#[tokio::test(start_paused = true)]
async fn eager_keys_go_concurrently_within_max_in_flight() {
    let layer = BatchLayer::builder()
        .max_items(10)
        .max_in_flight(2)
        .key_fn(|item: &u32| item / 100)
        .dispatch(Dispatch::Eager)
        .build()
        .unwrap();
    let (inner, mut mock_handle) = mock::pair::<Batch<u32, u32>, ()>();
    let (batcher, worker) = layer.pair(inner);
    let (mut batcher, mut worker) = (ServiceSpawn::new(batcher), task::spawn(worker));
    for item in [1, 101, 201, 2] {
        drop(submit(&mut batcher, item)); // fire and forget
    }
    assert_pending!(worker.poll());
    let (a, respond_a) = mock_handle.next_request().await.unwrap();
    let (b, _respond_b) = mock_handle.next_request().await.unwrap();
    assert_eq!((a.items(), b.items()), (&[1, 2][..], &[101][..]));
    assert!(
        matches!(mock_handle.poll_request(), std::task::Poll::Pending),
        "max_in_flight is 2"
    );
    drop(submit(&mut batcher, 3)); // fire and forget
    respond_a.send_response(());
    assert_pending!(worker.poll());
    // The key that waited longest goes first.
    let (c, _) = mock_handle.next_request().await.unwrap();
    assert_eq!(c.items(), [201]);
    let _ = worker.poll();
}

#[tokio::test(start_paused = true)]
async fn a_response_polled_from_another_task_wakes_that_task() {
    let (inner, _seen) = recorder(0);
    let (mut batcher, mut worker) = pair_spawned(&layer(), inner);
    assert_ready_ok!(batcher.poll_ready());
    let mut response = batcher.call(1);
    let mut first = task::spawn(&mut response);
    assert_pending!(first.poll());
    assert_pending!(first.poll()); // polled again by the same task: still one waiter
    drop(first);
    let mut second = task::spawn(&mut response);
    assert_pending!(second.poll());
    time::advance(Duration::from_millis(50)).await;
    assert_pending!(worker.poll());
    assert!(second.is_woken(), "the task that polled last is woken");
    assert_ready_ok!(second.poll());
}
