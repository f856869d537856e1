//! The batch handed to the inner service.

use std::fmt;

/// Why a batch was handed to the inner service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FlushReason {
    /// It reached `max_items`.
    Size,
    /// One more item would have taken it past `max_bytes`.
    Bytes,
    /// `max_wait` passed since its first item.
    Time,
    /// Its key had no batch in flight and the inner service was ready
    /// ([`Dispatch::Eager`](crate::Dispatch::Eager)).
    Idle,
    /// [`BatchHandle::flush`](crate::BatchHandle::flush) asked for it.
    Flush,
    /// The batcher is shutting down, or every service handle was dropped.
    Shutdown,
}

impl FlushReason {
    /// The reason's name in snake case.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Size => "size",
            Self::Bytes => "bytes",
            Self::Time => "time",
            Self::Idle => "idle",
            Self::Flush => "flush",
            Self::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for FlushReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Items that share a key, in the order they were submitted.
///
/// Batches of one key reach the inner service in submission order; batches never mix keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<T, K = ()> {
    key: K,
    items: Vec<T>,
    reason: FlushReason,
}

impl<T, K> Batch<T, K> {
    /// A batch of `items` under `key` (for tests of inner services).
    pub fn new(key: K, items: Vec<T>, reason: FlushReason) -> Self {
        Self { key, items, reason }
    }

    /// The key every item of this batch has.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// The items, oldest first.
    pub fn items(&self) -> &[T] {
        &self.items
    }

    /// How many items the batch holds (at least one).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Always false: the batcher never hands over an empty batch.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Why the batch was handed over.
    pub fn reason(&self) -> FlushReason {
        self.reason
    }

    /// The key and the items.
    pub fn into_parts(self) -> (K, Vec<T>) {
        (self.key, self.items)
    }

    /// The items, oldest first.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

impl<T, K> IntoIterator for Batch<T, K> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<'a, T, K> IntoIterator for &'a Batch<T, K> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}
