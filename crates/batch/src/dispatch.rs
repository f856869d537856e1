//! The worker's side of the shared state: recording outcomes, sealing due and eager
//! batches, and taking the next batch for the inner service.

use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::time::Instant;

use crate::batch::FlushReason;
use crate::completion::{Completion, Failure};
use crate::config::Dispatch;
use crate::error::BoxError;
use crate::keys::Hashed;
use crate::ready::Sealed;
use crate::state::{wake_all, Shared, State};

impl<T, K: Hash + Eq + Clone> Shared<T, K> {
    /// The worker's look at the state, under one lock: records the batches the inner service
    /// finished (then completes them, outside the lock), hands over every open batch when
    /// `closing` and those whose window has passed. Returns the next deadline and whether a
    /// sealed batch (or, eager, an open one) may go to the inner service now.
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
}
