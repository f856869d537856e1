//! The batches still filling up.

use std::hash::Hash;
use std::sync::Arc;

use crate::completion::Completion;
use crate::keys::{Hashed, KeyMap};

/// The batch of one key that is still filling up.
pub(crate) struct Open<T> {
    pub(crate) id: u64,
    pub(crate) items: Vec<T>,
    pub(crate) bytes: usize,
    /// Queued to go as soon as the inner service is ready ([`Dispatch::Eager`]).
    ///
    /// [`Dispatch::Eager`]: crate::Dispatch::Eager
    pub(crate) eager: bool,
    pub(crate) completion: Arc<Completion>,
}

/// The open batches, by key. The one opened last is kept inline, in the state next to the
/// counters, so that with one busy key an item touches a couple of cache lines under the
/// lock and not also the map's control bytes and bucket: with producers on several cores,
/// each line touched under the lock moves between cores while the others wait.
#[repr(C)]
pub(crate) struct OpenBatches<K, T> {
    hot: Option<(Hashed<K>, Open<T>)>,
    others: KeyMap<K, Open<T>>,
}

impl<K: Hash + Eq + Clone, T> OpenBatches<K, T> {
    pub(crate) fn new() -> Self {
        Self {
            hot: None,
            others: KeyMap::default(),
        }
    }

    pub(crate) fn get(&self, key: &Hashed<K>) -> Option<&Open<T>> {
        match &self.hot {
            Some((hot, open)) if hot == key => Some(open),
            _ => self.others.get(key),
        }
    }

    pub(crate) fn get_mut(&mut self, key: &Hashed<K>) -> Option<&mut Open<T>> {
        match &mut self.hot {
            Some((hot, open)) if hot == key => Some(open),
            _ => self.others.get_mut(key),
        }
    }

    /// Adds the open batch of `key`, which has none, as the hot one: the batch opened last
    /// is the one the next items most likely join.
    pub(crate) fn insert_hot(&mut self, key: Hashed<K>, open: Open<T>) -> &mut Open<T> {
        if let Some((hot, open)) = self.hot.take() {
            self.others.insert(hot, open);
        }
        &mut self.hot.insert((key, open)).1
    }

    pub(crate) fn remove(&mut self, key: &Hashed<K>) -> Option<Open<T>> {
        match &self.hot {
            Some((hot, _)) if hot == key => self.hot.take().map(|(_, open)| open),
            _ => self.others.remove(key),
        }
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Hashed<K>> {
        self.hot
            .iter()
            .map(|(key, _)| key)
            .chain(self.others.keys())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.hot.is_none() && self.others.is_empty()
    }
}
