//! State shared by a batcher's services, handles and worker.
//!
//! Items are grouped into batches on the caller's side, under one mutex held for a few
//! dozen nanoseconds, so that `call` knows the batch its item joined and the response future
//! waits on that batch's [`Completion`] (one per batch, not a channel per item). The mutex is
//! parking_lot's: with producers on several threads it is taken once per item, and spinning
//! briefly beats parking the thread. The worker takes it twice per batch (one look, one
//! take) and is woken only when a batch fills up or opens with no timer armed.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::batch::{Batch, FlushReason};
use crate::config::Config;
use crate::error::{BatchFailed, BoxError, Closed};
use crate::stats::{Counts, Stats};

/// Why items did not get through.
#[derive(Debug, Clone)]
pub(crate) enum Failure {
    /// The inner service failed their batch.
    Batch(Arc<BoxError>),
    /// They never reached the inner service.
    Closed(Option<Arc<BoxError>>),
}

impl Failure {
    pub(crate) fn to_error(&self) -> BoxError {
        match self {
            Self::Batch(inner) => Box::new(BatchFailed::new(Arc::clone(inner))),
            Self::Closed(None) => Box::new(Closed::new()),
            Self::Closed(Some(cause)) => Box::new(Closed::because(Arc::clone(cause))),
        }
    }
}

/// The outcome of one batch, awaited by its items' futures and by flushes.
#[derive(Default)]
pub(crate) struct Completion {
    outcome: OnceLock<Result<(), Failure>>,
    waiters: Mutex<Vec<Waker>>,
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("outcome", &self.outcome.get())
            .finish_non_exhaustive()
    }
}

impl Completion {
    pub(crate) fn complete(&self, outcome: Result<(), Failure>) {
        if self.outcome.set(outcome).is_ok() {
            let waiters = mem::take(&mut *lock(&self.waiters));
            for waker in waiters {
                waker.wake();
            }
        }
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.outcome.get().is_some()
    }

    pub(crate) fn poll(&self, cx: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        if let Some(outcome) = self.outcome.get() {
            return Poll::Ready(outcome.clone());
        }
        let mut waiters = lock(&self.waiters);
        // Checked again under the lock: `complete` sets the outcome before it takes the lock.
        if let Some(outcome) = self.outcome.get() {
            return Poll::Ready(outcome.clone());
        }
        if !waiters.iter().any(|waker| waker.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here leaves the state half-updated across a panic, so a poisoned lock is
    // still consistent.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The batch of one key that is still filling up.
struct Open<T> {
    id: u64,
    items: Vec<T>,
    bytes: usize,
    completion: Arc<Completion>,
}

/// A batch that is full, or due, and waits for the inner service.
pub(crate) struct Sealed<T, K> {
    id: u64,
    pub(crate) batch: Batch<T, K>,
    pub(crate) completion: Arc<Completion>,
}

pub(crate) struct State<T, K> {
    open: HashMap<K, Open<T>>,
    /// Open batches' deadlines in the order they opened, which is deadline order since every
    /// batch waits the same `max_wait`. Entries of batches sealed early are skipped.
    deadlines: VecDeque<(u64, K, Instant)>,
    ready: ReadyQueue<T, K>,
    /// Completions of the batches in the inner service, for flushes.
    in_flight_completions: HashMap<u64, Arc<Completion>>,
    next_id: u64,
    /// Set when no new item is accepted, with the reason given to them.
    closed: Option<Failure>,
    counts: Counts,
    max_in_flight_per_key: usize,
}

pub(crate) struct Shared<T, K> {
    pub(crate) config: Config<T, K>,
    state: parking_lot::Mutex<State<T, K>>,
    /// Items reserved by `poll_ready` or waiting for the inner service, against `capacity`.
    slots: AtomicUsize,
    producers: Mutex<Vec<Waker>>,
    /// Set when `producers` may hold a waker.
    producers_waiting: AtomicBool,
    worker: AtomicWaker,
    work: AtomicBool,
    /// Mirrors `state.closed.is_some()`, so `poll_ready` need not lock.
    closed_flag: AtomicBool,
    /// Live service handles; the worker drains and ends when none is left.
    pub(crate) services: AtomicUsize,
    /// Completed when the worker has ended.
    pub(crate) finished: Completion,
}

impl<T, K> fmt::Debug for Shared<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

impl<T, K> Shared<T, K> {
    /// Takes a queue slot if one is free.
    pub(crate) fn try_reserve(&self) -> bool {
        let capacity = self.config.capacity;
        self.slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < capacity).then_some(used + 1)
            })
            .is_ok()
    }

    /// Takes a queue slot, or registers to be woken when one frees up.
    pub(crate) fn poll_reserve(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.try_reserve() {
            return Poll::Ready(());
        }
        let mut producers = lock(&self.producers);
        // Checked again after registering: `release` frees slots before it wakes producers.
        if self.try_reserve() {
            return Poll::Ready(());
        }
        if !producers.iter().any(|waker| waker.will_wake(cx.waker())) {
            producers.push(cx.waker().clone());
        }
        self.producers_waiting.store(true, Ordering::Release);
        // Checked once more: a release between the check above and the flag would not have
        // looked at the waiters.
        if self.try_reserve() {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Gives back `n` queue slots and wakes producers waiting for one.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.slots.fetch_sub(n, Ordering::AcqRel);
        // Only look at the waiters when there are some: this runs for every batch.
        if self.producers_waiting.swap(false, Ordering::AcqRel) {
            let producers = mem::take(&mut *lock(&self.producers));
            for waker in producers {
                waker.wake();
            }
        }
    }

    /// Why new items are refused, if they are.
    pub(crate) fn closed(&self) -> Option<Failure> {
        if !self.closed_flag.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().closed.clone()
    }

    /// Counts an item turned away because the queue was full.
    pub(crate) fn count_dropped(&self) {
        let mut state = self.state.lock();
        state.counts.submitted += 1;
        state.counts.dropped += 1;
    }

    pub(crate) fn wake_worker(&self) {
        self.work.store(true, Ordering::Release);
        self.worker.wake();
    }

    /// Registers the worker's waker; true if work arrived since the worker last looked.
    pub(crate) fn register_worker(&self, waker: &Waker) -> bool {
        self.worker.register(waker);
        self.work.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn release_waiters(&self) {
        self.producers_waiting.store(false, Ordering::Release);
        let producers = mem::take(&mut *lock(&self.producers));
        for waker in producers {
            waker.wake();
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.state.lock().counts.snapshot()
    }
}

impl<T, K: Hash + Eq + Clone> Shared<T, K> {
    pub(crate) fn new(config: Config<T, K>) -> Self {
        let max_in_flight_per_key = config.max_in_flight_per_key;
        Self {
            config,
            state: parking_lot::Mutex::new(State {
                open: HashMap::new(),
                deadlines: VecDeque::new(),
                ready: ReadyQueue::default(),
                in_flight_completions: HashMap::new(),
                next_id: 0,
                closed: None,
                counts: Counts::default(),
                max_in_flight_per_key,
            }),
            slots: AtomicUsize::new(0),
            producers: Mutex::new(Vec::new()),
            producers_waiting: AtomicBool::new(false),
            worker: AtomicWaker::new(),
            work: AtomicBool::new(false),
            closed_flag: AtomicBool::new(false),
            services: AtomicUsize::new(1),
            finished: Completion::default(),
        }
    }

    /// Adds an item (its slot already reserved) to its key's open batch.
    pub(crate) fn submit(&self, item: T) -> Result<Arc<Completion>, Failure> {
        // User code runs before the lock is taken.
        let key = (self.config.key_fn)(&item);
        let size = self.config.max_bytes.as_ref().map(|(_, size)| size(&item));
        let mut wake_worker = false;
        let completion = {
            let mut state = self.state.lock();
            if let Some(failure) = &state.closed {
                let failure = failure.clone();
                drop(state);
                self.release(1);
                return Err(failure);
            }
            state.counts.submitted += 1;
            state.counts.waiting += 1;
            if let (Some(size), Some((limit, _))) = (size, &self.config.max_bytes) {
                let full = state
                    .open
                    .get(&key)
                    .is_some_and(|open| open.bytes.saturating_add(size) > *limit);
                if full {
                    state.seal(&key, FlushReason::Bytes);
                    wake_worker = true;
                }
            }
            let state = &mut *state;
            let open = match state.open.get_mut(&key) {
                Some(open) => open,
                None => {
                    // A new window needs a timer. Deadlines only grow, and while any is queued
                    // the worker has a timer for the earliest (or a wake-up pending from when
                    // it was queued), which then re-arms for this one: only a window opened
                    // with none queued wakes it. The clock is read once per batch.
                    wake_worker |= state.deadlines.is_empty();
                    let now = Instant::now();
                    let id = state.next_id;
                    state.next_id += 1;
                    state
                        .deadlines
                        .push_back((id, key.clone(), now + self.config.max_wait));
                    state.open.entry(key.clone()).or_insert(Open {
                        id,
                        items: Vec::with_capacity(self.config.max_items.min(1_024)),
                        bytes: 0,
                        completion: Arc::default(),
                    })
                }
            };
            open.items.push(item);
            open.bytes = open.bytes.saturating_add(size.unwrap_or(0));
            let completion = Arc::clone(&open.completion);
            if open.items.len() >= self.config.max_items {
                state.seal(&key, FlushReason::Size);
                wake_worker = true;
            }
            completion
        };
        if wake_worker {
            self.wake_worker();
        }
        Ok(completion)
    }

    /// Hands every open batch over (for a flush or shutdown) and returns the completions of
    /// every batch not yet complete.
    pub(crate) fn seal_all(&self, reason: FlushReason) -> Vec<Arc<Completion>> {
        let pending = {
            let mut state = self.state.lock();
            state.seal_open(reason);
            state
                .ready
                .completions()
                .chain(state.in_flight_completions.values().cloned())
                .collect()
        };
        self.wake_worker();
        pending
    }

    /// Stops accepting items; those already accepted are still delivered.
    pub(crate) fn close(&self) {
        {
            let mut state = self.state.lock();
            if state.closed.is_none() {
                state.closed = Some(Failure::Closed(None));
                self.closed_flag.store(true, Ordering::Release);
            }
        }
        // Producers waiting for a slot must learn that none will come.
        self.release_waiters();
    }

    // ----- the worker's side -----

    /// The worker's look at the state, under one lock: records the batches the inner service
    /// finished (then completes them, outside the lock), hands over every open batch when
    /// `closing` and those whose window has passed. Returns the next deadline and whether a
    /// sealed batch may go to the inner service now.
    pub(crate) fn turn(
        &self,
        finished: &mut Vec<(Dispatched<K>, Result<(), BoxError>)>,
        closing: bool,
        now: Instant,
    ) -> (Option<Instant>, bool) {
        let mut outcomes = Vec::with_capacity(finished.len());
        let look = {
            let mut state = self.state.lock();
            for (done, result) in finished.drain(..) {
                let outcome = result.map_err(|error| Failure::Batch(Arc::new(error)));
                self.record(&mut state, &done, &outcome);
                outcomes.push((done, outcome));
            }
            if closing {
                // No item can join an open batch any more: hand them all over now.
                state.seal_open(FlushReason::Shutdown);
            }
            let next_deadline = state.seal_expired(now);
            let dispatchable = state.ready.can_dispatch(self.config.max_in_flight);
            (next_deadline, dispatchable)
        };
        for (done, outcome) in outcomes {
            if let Err(failure) = &outcome {
                tracing::debug!(target: "sluice_batch", items = done.items, error = %failure.to_error(), "batch failed");
            }
            done.completion.complete(outcome);
        }
        look
    }

    /// Takes the oldest sealed batch that may go to the inner service now; also says whether
    /// another may follow it.
    pub(crate) fn take_dispatchable(&self) -> Option<(Sealed<T, K>, bool)> {
        let (sealed, more) = {
            let mut state = self.state.lock();
            if !state.ready.can_dispatch(self.config.max_in_flight) {
                return None;
            }
            let sealed = state.ready.pop(self.config.max_in_flight_per_key)?;
            let n = sealed.batch.len() as u64;
            state.counts.waiting -= n;
            state.counts.in_flight += n;
            state.counts.count_batch(sealed.batch.reason());
            state
                .in_flight_completions
                .insert(sealed.id, Arc::clone(&sealed.completion));
            let more = state.ready.can_dispatch(self.config.max_in_flight);
            (sealed, more)
        };
        self.release(sealed.batch.len());
        Some((sealed, more))
    }

    /// Counts the outcome of a batch the inner service finished.
    fn record(&self, state: &mut State<T, K>, done: &Dispatched<K>, outcome: &Result<(), Failure>) {
        let n = done.items as u64;
        state.counts.in_flight -= n;
        match outcome {
            Ok(()) => state.counts.sent += n,
            Err(Failure::Batch(error))
                if self.config.rejected_if.as_ref().is_some_and(|is| is(error)) =>
            {
                state.counts.rejected += n;
            }
            Err(_) => state.counts.failed += n,
        }
        state
            .ready
            .done(&done.key, self.config.max_in_flight_per_key);
        state.in_flight_completions.remove(&done.id);
    }

    /// Fails every item not yet in the inner service with `failure`, and refuses later items
    /// with `refusal` (the inner service is gone or broken for good).
    pub(crate) fn fail_waiting(&self, failure: Failure, refusal: Failure) {
        let failed: Vec<Arc<Completion>> = {
            let mut state = self.state.lock();
            // A plain shutdown gives way to the more telling reason.
            if matches!(state.closed, None | Some(Failure::Closed(None))) {
                state.closed = Some(refusal);
                self.closed_flag.store(true, Ordering::Release);
            }
            state.seal_open(FlushReason::Shutdown);
            let ready = state.ready.drain();
            let n: u64 = ready.iter().map(|sealed| sealed.batch.len() as u64).sum();
            state.counts.waiting -= n;
            state.counts.failed += n;
            let released = n as usize;
            drop(state);
            self.release(released);
            ready.into_iter().map(|sealed| sealed.completion).collect()
        };
        for completion in failed {
            completion.complete(Err(failure.clone()));
        }
        self.release_waiters();
    }

    /// Fails the batches still in the inner service (the worker is being dropped).
    pub(crate) fn fail_in_flight(&self, failure: &Failure) {
        let in_flight: Vec<Arc<Completion>> = {
            let mut state = self.state.lock();
            let n = state.counts.in_flight;
            state.counts.in_flight = 0;
            state.counts.failed += n;
            state.ready.forget_in_flight();
            state
                .in_flight_completions
                .drain()
                .map(|(_, c)| c)
                .collect()
        };
        for completion in in_flight {
            completion.complete(Err(failure.clone()));
        }
    }

    /// The worker is gone before its time: nothing queued can be delivered any more.
    pub(crate) fn abandon(&self) {
        let failure = Failure::Closed(None);
        self.fail_waiting(failure.clone(), failure.clone());
        self.fail_in_flight(&failure);
        self.finished.complete(Ok(()));
    }

    /// True when nothing is open, sealed or in flight.
    pub(crate) fn is_drained(&self) -> bool {
        let state = self.state.lock();
        state.open.is_empty() && state.ready.is_empty() && state.ready.in_flight() == 0
    }

    /// True when no more items can arrive: closed, or no service handle left.
    pub(crate) fn is_closing(&self) -> bool {
        self.services.load(Ordering::Acquire) == 0 || self.closed_flag.load(Ordering::Acquire)
    }
}

/// What the worker keeps about a batch while the inner service has it.
#[derive(Debug)]
pub(crate) struct Dispatched<K> {
    pub(crate) id: u64,
    pub(crate) key: K,
    pub(crate) items: usize,
    pub(crate) completion: Arc<Completion>,
}

impl<T, K> Sealed<T, K> {
    pub(crate) fn dispatched(&self) -> Dispatched<K>
    where
        K: Clone,
    {
        Dispatched {
            id: self.id,
            key: self.batch.key().clone(),
            items: self.batch.len(),
            completion: Arc::clone(&self.completion),
        }
    }
}

impl<T, K: Hash + Eq + Clone> State<T, K> {
    /// Hands over the batches whose window has passed; returns the next deadline.
    fn seal_expired(&mut self, now: Instant) -> Option<Instant> {
        while let Some((id, key, deadline)) = self.deadlines.front().cloned() {
            let still_open = self.open.get(&key).is_some_and(|open| open.id == id);
            if !still_open {
                self.deadlines.pop_front();
            } else if deadline <= now {
                self.deadlines.pop_front();
                self.seal(&key, FlushReason::Time);
            } else {
                return Some(deadline);
            }
        }
        None
    }

    fn seal_open(&mut self, reason: FlushReason) {
        let keys: Vec<K> = self.open.keys().cloned().collect();
        for key in keys {
            self.seal(&key, reason);
        }
    }

    fn seal(&mut self, key: &K, reason: FlushReason) {
        if let Some(open) = self.open.remove(key) {
            self.ready.push(
                Sealed {
                    id: open.id,
                    batch: Batch::new(key.clone(), open.items, reason),
                    completion: open.completion,
                },
                self.max_in_flight_per_key,
            );
        }
    }
}

/// Sealed batches, queued per key, and the keys that may send one now.
///
/// Finding the next batch to send is O(1) whatever the number of batches waiting: a key is
/// in `runnable` once when it has a batch ready and room in flight.
struct ReadyQueue<T, K> {
    lanes: HashMap<K, Lane<T, K>>,
    runnable: VecDeque<K>,
    batches: usize,
    in_flight: usize,
}

struct Lane<T, K> {
    ready: VecDeque<Sealed<T, K>>,
    in_flight: usize,
    runnable: bool,
}

impl<T, K> Default for ReadyQueue<T, K> {
    fn default() -> Self {
        Self {
            lanes: HashMap::new(),
            runnable: VecDeque::new(),
            batches: 0,
            in_flight: 0,
        }
    }
}

impl<T, K: Hash + Eq + Clone> ReadyQueue<T, K> {
    fn push(&mut self, sealed: Sealed<T, K>, per_key: usize) {
        let key = sealed.batch.key().clone();
        self.lanes
            .entry(key.clone())
            .or_insert_with(|| Lane {
                ready: VecDeque::new(),
                in_flight: 0,
                runnable: false,
            })
            .ready
            .push_back(sealed);
        self.batches += 1;
        self.mark(&key, per_key);
    }

    /// Queues `key` as runnable if it has a batch ready and room in flight.
    fn mark(&mut self, key: &K, per_key: usize) {
        if let Some(lane) = self.lanes.get_mut(key) {
            if !lane.runnable && lane.in_flight < per_key && !lane.ready.is_empty() {
                lane.runnable = true;
                self.runnable.push_back(key.clone());
            }
        }
    }

    fn can_dispatch(&self, max_in_flight: usize) -> bool {
        self.in_flight < max_in_flight && !self.runnable.is_empty()
    }

    fn pop(&mut self, per_key: usize) -> Option<Sealed<T, K>> {
        let key = self.runnable.pop_front()?;
        let lane = self.lanes.get_mut(&key)?;
        lane.runnable = false;
        let sealed = lane.ready.pop_front()?;
        lane.in_flight += 1;
        self.batches -= 1;
        self.in_flight += 1;
        self.mark(&key, per_key);
        Some(sealed)
    }

    fn done(&mut self, key: &K, per_key: usize) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        lane.in_flight = lane.in_flight.saturating_sub(1);
        if lane.ready.is_empty() && lane.in_flight == 0 {
            self.lanes.remove(key);
        } else {
            self.mark(key, per_key);
        }
    }

    fn completions(&self) -> impl Iterator<Item = Arc<Completion>> + '_ {
        self.lanes.values().flat_map(|lane| {
            lane.ready
                .iter()
                .map(|sealed| Arc::clone(&sealed.completion))
        })
    }

    /// Takes every ready batch out.
    fn drain(&mut self) -> Vec<Sealed<T, K>> {
        self.runnable.clear();
        self.batches = 0;
        let mut drained = Vec::new();
        self.lanes.retain(|_, lane| {
            lane.runnable = false;
            drained.extend(lane.ready.drain(..));
            lane.in_flight > 0
        });
        drained
    }

    /// The batches in flight were given up on.
    fn forget_in_flight(&mut self) {
        self.in_flight = 0;
        self.lanes.retain(|_, lane| {
            lane.in_flight = 0;
            !lane.ready.is_empty()
        });
    }

    fn is_empty(&self) -> bool {
        self.batches == 0
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}
