//! Sealed batches waiting for the inner service, and how many are in flight per key.

use std::collections::VecDeque;
use std::hash::Hash;
use std::sync::Arc;

use crate::batch::Batch;
use crate::completion::Completion;
use crate::keys::{Hashed, KeyMap};

/// A batch that is full, due or (eager dispatch) about to go, and waits for the inner service.
pub(crate) struct Sealed<T, K> {
    pub(crate) id: u64,
    pub(crate) key: Hashed<K>,
    pub(crate) batch: Batch<T, K>,
    pub(crate) completion: Arc<Completion>,
}

/// How many lanes are kept when idle.
const IDLE_LANES: usize = 16;

/// Sealed batches, queued per key, and the keys that may send one now.
///
/// Finding the next batch to send is O(1) whatever the number of batches waiting: a key is
/// in `runnable` once when it has a batch ready and room in flight.
pub(crate) struct ReadyQueue<T, K> {
    lanes: KeyMap<K, Lane<T, K>>,
    runnable: VecDeque<Hashed<K>>,
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
            lanes: KeyMap::default(),
            runnable: VecDeque::new(),
            batches: 0,
            in_flight: 0,
        }
    }
}

impl<T, K: Hash + Eq + Clone> ReadyQueue<T, K> {
    pub(crate) fn push(&mut self, sealed: Sealed<T, K>, per_key: usize) {
        let key = sealed.key.clone();
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
    pub(crate) fn mark(&mut self, key: &Hashed<K>, per_key: usize) {
        if let Some(lane) = self.lanes.get_mut(key) {
            if !lane.runnable && lane.in_flight < per_key && !lane.ready.is_empty() {
                lane.runnable = true;
                self.runnable.push_back(key.clone());
            }
        }
    }

    /// True when `key` has no batch waiting and room in flight: a batch sealed for it now
    /// would go at once (within `max_in_flight`).
    pub(crate) fn is_idle(&self, key: &Hashed<K>, per_key: usize) -> bool {
        self.lanes
            .get(key)
            .is_none_or(|lane| lane.ready.is_empty() && lane.in_flight < per_key)
    }

    pub(crate) fn can_dispatch(&self, max_in_flight: usize) -> bool {
        self.in_flight < max_in_flight && !self.runnable.is_empty()
    }

    pub(crate) fn pop(&mut self, per_key: usize) -> Option<Sealed<T, K>> {
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

    pub(crate) fn done(&mut self, key: &Hashed<K>, per_key: usize) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        lane.in_flight = lane.in_flight.saturating_sub(1);
        // An idle lane is kept while there are few, so a busy key does not allocate a new
        // one for every batch.
        if lane.ready.is_empty() && lane.in_flight == 0 && self.lanes.len() > IDLE_LANES {
            self.lanes.remove(key);
        } else {
            self.mark(key, per_key);
        }
    }

    pub(crate) fn completions(&self) -> impl Iterator<Item = Arc<Completion>> + '_ {
        self.lanes.values().flat_map(|lane| {
            lane.ready
                .iter()
                .map(|sealed| Arc::clone(&sealed.completion))
        })
    }

    /// Takes every ready batch out.
    pub(crate) fn drain(&mut self) -> Vec<Sealed<T, K>> {
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
    pub(crate) fn forget_in_flight(&mut self) {
        self.in_flight = 0;
        self.lanes.retain(|_, lane| {
            lane.in_flight = 0;
            !lane.ready.is_empty()
        });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.batches == 0
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }
}
