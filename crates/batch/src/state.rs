//! The state a batcher's services, handles and worker share, behind one lock; the producer
//! side is in `submit.rs`, the worker side in `dispatch.rs`.
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
//! batch fills up, opens with no timer armed, or (eager dispatch) opens at an idle key.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, RandomState};
use std::mem;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::batch::{Batch, FlushReason};
use crate::completion::{Completion, Failure};
use crate::config::{Config, Dispatch};
use crate::keys::{Hashed, IdMap};
use crate::open::OpenBatches;
use crate::ready::{ReadyQueue, Sealed};
use crate::stats::{Counts, Stats};

/// In declaration order (`repr(C)`), what every `call` touches first, so that it spans as
/// few cache lines as possible.
#[repr(C)]
pub(crate) struct State<T, K> {
    /// Items reserved by `poll_ready` or waiting for the inner service, against `capacity`.
    /// Kept under the lock that `call` takes anyway: as an atomic of its own it was one more
    /// cache line for producers on different cores to pass back and forth.
    pub(crate) slots: usize,
    /// Set when no new item is accepted, with the reason given to them.
    pub(crate) closed: Option<Failure>,
    pub(crate) open: OpenBatches<K, T>,
    pub(crate) counts: Counts,
    /// Open batches' deadlines in the order they opened, which is deadline order since every
    /// batch waits the same `max_wait`. Entries of batches sealed early are skipped.
    pub(crate) deadlines: VecDeque<(u64, Hashed<K>, Instant)>,
    pub(crate) ready: ReadyQueue<T, K>,
    /// With [`Dispatch::Eager`]: open batches (id and key) to hand over as soon as the inner
    /// service is ready, oldest first; their key was idle when queued. Entries of batches
    /// sealed meanwhile, or whose key is busy again, are skipped.
    pub(crate) eager: VecDeque<(u64, Hashed<K>)>,
    /// Completions of the batches in the inner service, for flushes.
    pub(crate) in_flight_completions: IdMap<Arc<Completion>>,
    pub(crate) next_id: u64,
    pub(crate) max_in_flight_per_key: usize,
    pub(crate) dispatch: Dispatch,
    /// Producers waiting for a slot.
    pub(crate) producers: Vec<Waker>,
}

pub(crate) struct Shared<T, K> {
    pub(crate) config: Config<T, K>,
    pub(crate) hasher: RandomState,
    pub(crate) state: parking_lot::Mutex<State<T, K>>,
    pub(crate) worker: AtomicWaker,
    pub(crate) work: AtomicBool,
    /// Mirrors `state.closed.is_some()`, so `poll_ready` need not lock.
    pub(crate) closed_flag: AtomicBool,
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
}

impl<T, K> State<T, K> {
    /// Gives back `n` queue slots; returns the producers to wake if any slot is free.
    #[must_use = "the producers must be woken, once the lock is released"]
    pub(crate) fn release(&mut self, n: usize) -> Vec<Waker> {
        self.slots -= n;
        if n > 0 {
            mem::take(&mut self.producers)
        } else {
            Vec::new()
        }
    }
}

pub(crate) fn wake_all(wakers: Vec<Waker>) {
    for waker in wakers {
        waker.wake();
    }
}

impl<T, K: Hash + Eq + Clone> State<T, K> {
    pub(crate) fn seal_open(&mut self, reason: FlushReason) {
        let keys: Vec<Hashed<K>> = self.open.keys().cloned().collect();
        for key in keys {
            self.seal(&key, reason);
        }
    }

    pub(crate) fn seal(&mut self, key: &Hashed<K>, reason: FlushReason) {
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
