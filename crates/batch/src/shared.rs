//! State shared by a batcher's services, handles and worker.
//!
//! Items are grouped into batches on the caller's side, under one mutex held for a few
//! dozen nanoseconds, so that `call` knows the batch its item joined and the response future
//! waits on that batch's [`Completion`] (one per batch, not a channel per item). The mutex is
//! parking_lot's: with producers on several threads it is taken once per item, and spinning
//! briefly beats parking the thread. It also guards the queue's slots, so an item costs one
//! lock and nothing else shared; and `call` reserves the next item's slot while it holds it.
//! What an item touches under the lock is kept to a few cache lines (see [`State`]), since
//! with producers on two cores the lock's hold time is mostly lines moving between them.
//! The worker takes the lock twice per batch (one look, one take) and is woken only when a
//! batch fills up or opens with no timer armed.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, RandomState};
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::batch::{Batch, FlushReason};
use crate::config::{Config, Dispatch};
use crate::error::{BatchFailed, BoxError, Closed};
use crate::keys::{Hashed, IdMap};
use crate::open::{Open, OpenBatches};
use crate::ready::ReadyQueue;
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

/// A batch that is full, or due, and waits for the inner service.
pub(crate) struct Sealed<T, K> {
    id: u64,
    pub(crate) key: Hashed<K>,
    pub(crate) batch: Batch<T, K>,
    pub(crate) completion: Arc<Completion>,
}

/// In declaration order (`repr(C)`), what every `call` touches first, so that it spans as
/// few cache lines as possible.
#[repr(C)]
pub(crate) struct State<T, K> {
    /// Items reserved by `poll_ready` or waiting for the inner service, against `capacity`.
    /// Kept under the lock that `call` takes anyway: as an atomic of its own it was one more
    /// cache line for producers on different cores to pass back and forth.
    slots: usize,
    /// Set when no new item is accepted, with the reason given to them.
    closed: Option<Failure>,
    open: OpenBatches<K, T>,
    counts: Counts,
    /// Open batches' deadlines in the order they opened, which is deadline order since every
    /// batch waits the same `max_wait`. Entries of batches sealed early are skipped.
    deadlines: VecDeque<(u64, Hashed<K>, Instant)>,
    ready: ReadyQueue<T, K>,
    /// With [`Dispatch::Eager`]: open batches (id and key) to hand over as soon as the inner
    /// service is ready, oldest first; their key was idle when queued. Entries of batches
    /// sealed meanwhile, or whose key is busy again, are skipped.
    eager: VecDeque<(u64, Hashed<K>)>,
    /// Completions of the batches in the inner service, for flushes.
    in_flight_completions: IdMap<Arc<Completion>>,
    next_id: u64,
    max_in_flight_per_key: usize,
    dispatch: Dispatch,
    /// Producers waiting for a slot.
    producers: Vec<Waker>,
}

/// Why `submit` turned an item away.
pub(crate) enum Refusal {
    Closed(Failure),
    /// No slot was reserved and none is free (counted as dropped).
    Full,
}

/// An item accepted by `submit`.
pub(crate) struct Submitted {
    pub(crate) completion: Arc<Completion>,
    /// A slot was reserved for the caller's next item.
    pub(crate) next_reserved: bool,
}

pub(crate) struct Shared<T, K> {
    pub(crate) config: Config<T, K>,
    hasher: RandomState,
    state: parking_lot::Mutex<State<T, K>>,
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
            .finish_non_exhaustive()
    }
}

impl<T, K> Shared<T, K> {
    /// Takes a queue slot, or registers to be woken when one frees up.
    pub(crate) fn poll_reserve(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock();
        if state.slots < self.config.capacity {
            state.slots += 1;
            return Poll::Ready(());
        }
        if !state
            .producers
            .iter()
            .any(|waker| waker.will_wake(cx.waker()))
        {
            state.producers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Gives back `n` queue slots and wakes producers waiting for one.
    pub(crate) fn release(&self, n: usize) {
        let producers = self.state.lock().release(n);
        wake_all(producers);
    }

    /// Why new items are refused, if they are.
    pub(crate) fn closed(&self) -> Option<Failure> {
        if !self.closed_flag.load(Ordering::Acquire) {
            return None;
        }
        self.state.lock().closed.clone()
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
        let producers = mem::take(&mut self.state.lock().producers);
        wake_all(producers);
    }

    pub(crate) fn stats(&self) -> Stats {
        self.state.lock().counts.snapshot()
    }
}

impl<T, K: Hash + Eq + Clone> Shared<T, K> {
    pub(crate) fn new(config: Config<T, K>) -> Self {
        let max_in_flight_per_key = config.max_in_flight_per_key;
        let dispatch = config.dispatch;
        Self {
            config,
            hasher: RandomState::new(),
            state: parking_lot::Mutex::new(State {
                open: OpenBatches::new(),
                deadlines: VecDeque::new(),
                ready: ReadyQueue::default(),
                eager: VecDeque::new(),
                in_flight_completions: IdMap::default(),
                next_id: 0,
                closed: None,
                counts: Counts::default(),
                max_in_flight_per_key,
                dispatch,
                slots: 0,
                producers: Vec::new(),
            }),
            worker: AtomicWaker::new(),
            work: AtomicBool::new(false),
            closed_flag: AtomicBool::new(false),
            services: AtomicUsize::new(1),
            finished: Completion::default(),
        }
    }

    /// Adds an item to its key's open batch. Its slot was reserved already if `reserved`, or
    /// is taken now if one is free. With `reserve_next`, and while the queue is less than
    /// half full, a slot is also reserved for the caller's next item, so that its next
    /// `poll_ready` need not take the lock: never more than half the queue is held that way,
    /// so producers that hold one and go quiet cannot starve the others.
    pub(crate) fn submit(
        &self,
        item: T,
        reserved: bool,
        reserve_next: bool,
    ) -> Result<Submitted, Refusal> {
        // User code runs before the lock is taken.
        let key = (self.config.key_fn)(&item);
        let key = Hashed::new(key, &self.hasher);
        let size = self.config.max_bytes.as_ref().map(|(_, size)| size(&item));
        let mut wake_worker = false;
        let submitted = {
            let mut state = self.state.lock();
            if let Some(failure) = &state.closed {
                let failure = failure.clone();
                let producers = if reserved {
                    state.release(1)
                } else {
                    Vec::new()
                };
                drop(state);
                wake_all(producers);
                return Err(Refusal::Closed(failure));
            }
            if !reserved {
                if state.slots >= self.config.capacity {
                    state.counts.submitted += 1;
                    state.counts.dropped += 1;
                    return Err(Refusal::Full);
                }
                state.slots += 1;
            }
            let next_reserved = reserve_next && state.slots < self.config.capacity / 2;
            if next_reserved {
                state.slots += 1;
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
                    // Eager: a batch that opens at an idle key goes as soon as the worker
                    // finds the inner service ready.
                    let eager = state.dispatch == Dispatch::Eager
                        && state.ready.is_idle(&key, state.max_in_flight_per_key);
                    if eager {
                        state.eager.push_back((id, key.clone()));
                        wake_worker = true;
                    }
                    state.open.insert_hot(
                        key.clone(),
                        Open {
                            id,
                            items: Vec::with_capacity(self.config.max_items.min(1_024)),
                            bytes: 0,
                            eager,
                            completion: Arc::default(),
                        },
                    )
                }
            };
            open.items.push(item);
            open.bytes = open.bytes.saturating_add(size.unwrap_or(0));
            let completion = Arc::clone(&open.completion);
            if open.items.len() >= self.config.max_items {
                state.seal(&key, FlushReason::Size);
                wake_worker = true;
            }
            Submitted {
                completion,
                next_reserved,
            }
        };
        if wake_worker {
            self.wake_worker();
        }
        Ok(submitted)
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
            let dispatchable = state.can_dispatch(self.config.max_in_flight);
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
        let (sealed, more, producers) = {
            let mut state = self.state.lock();
            if !state.ready.can_dispatch(self.config.max_in_flight) {
                // Nothing sealed may go: an eager batch, if one may, is sealed now, with
                // every item that joined it while the inner service got ready.
                if !state.eager_ready(self.config.max_in_flight) {
                    return None;
                }
                let (_, key) = state.eager.pop_front()?;
                state.seal(&key, FlushReason::Idle);
            }
            let sealed = state.ready.pop(self.config.max_in_flight_per_key)?;
            let n = sealed.batch.len() as u64;
            state.counts.waiting -= n;
            state.counts.in_flight += n;
            state.counts.count_batch(sealed.batch.reason());
            state
                .in_flight_completions
                .insert(sealed.id, Arc::clone(&sealed.completion));
            let more = state.can_dispatch(self.config.max_in_flight);
            let producers = state.release(sealed.batch.len());
            (sealed, more, producers)
        };
        wake_all(producers);
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
        // Eager: the items that gathered while this batch was in flight go next.
        state.queue_eager(&done.key);
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
            state.slots -= n as usize;
            drop(state);
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
    key: Hashed<K>,
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
            key: self.key.clone(),
            items: self.batch.len(),
            completion: Arc::clone(&self.completion),
        }
    }
}

impl<T, K> State<T, K> {
    /// Gives back `n` queue slots; returns the producers to wake if any slot is free.
    #[must_use = "the producers must be woken, once the lock is released"]
    fn release(&mut self, n: usize) -> Vec<Waker> {
        self.slots -= n;
        if n > 0 {
            mem::take(&mut self.producers)
        } else {
            Vec::new()
        }
    }
}

fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

impl<T, K: Hash + Eq + Clone> State<T, K> {
    /// True when a sealed batch, or with [`Dispatch::Eager`] an open one, may go now.
    fn can_dispatch(&mut self, max_in_flight: usize) -> bool {
        self.ready.can_dispatch(max_in_flight) || self.eager_ready(max_in_flight)
    }

    /// True when the oldest queued eager batch may go now; drops the entries before it of
    /// batches sealed meanwhile or whose key is busy again (those are queued again when
    /// their key's batch completes).
    fn eager_ready(&mut self, max_in_flight: usize) -> bool {
        if self.ready.in_flight() >= max_in_flight {
            return false;
        }
        while let Some((id, key)) = self.eager.front() {
            let idle = self.ready.is_idle(key, self.max_in_flight_per_key);
            match self.open.get_mut(key) {
                Some(open) if open.id == *id => {
                    if idle {
                        return true;
                    }
                    open.eager = false;
                }
                _ => {}
            }
            self.eager.pop_front();
        }
        false
    }

    /// With [`Dispatch::Eager`], queues the open batch of `key` to go once the inner service
    /// is ready, if the key is idle and it is not queued yet.
    fn queue_eager(&mut self, key: &Hashed<K>) {
        if self.dispatch != Dispatch::Eager || !self.ready.is_idle(key, self.max_in_flight_per_key)
        {
            return;
        }
        if let Some(open) = self.open.get_mut(key) {
            if !open.eager {
                open.eager = true;
                self.eager.push_back((open.id, key.clone()));
            }
        }
    }

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
        let keys: Vec<Hashed<K>> = self.open.keys().cloned().collect();
        for key in keys {
            self.seal(&key, reason);
        }
    }

    fn seal(&mut self, key: &Hashed<K>, reason: FlushReason) {
        if let Some(open) = self.open.remove(key) {
            self.ready.push(
                Sealed {
                    id: open.id,
                    key: key.clone(),
                    batch: Batch::new(key.key().clone(), open.items, reason),
                    completion: open.completion,
                },
                self.max_in_flight_per_key,
            );
        }
    }
}
