//! The producer side: reserving queue slots and adding items to their key's open batch.

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;

use crate::batch::FlushReason;
use crate::completion::{Completion, Failure};
use crate::config::Dispatch;
use crate::keys::Hashed;
use crate::open::Open;
use crate::state::{wake_all, Shared};

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
}

impl<T, K: Hash + Eq + Clone> Shared<T, K> {
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
}
