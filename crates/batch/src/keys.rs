//! Keys hashed once, outside the state lock, and the maps that use them.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

/// A key with its hash, computed before the state lock is taken, so that SipHash does not
/// run while other producers wait for the lock, and once per item, not again per map.
#[derive(Debug, Clone)]
pub(crate) struct Hashed<K> {
    hash: u64,
    key: K,
}

impl<K: Hash> Hashed<K> {
    pub(crate) fn new(key: K, hasher: &RandomState) -> Self {
        Self {
            hash: hasher.hash_one(&key),
            key,
        }
    }
}

impl<K> Hashed<K> {
    pub(crate) fn key(&self) -> &K {
        &self.key
    }
}

impl<K: PartialEq> PartialEq for Hashed<K> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.key == other.key
    }
}

impl<K: Eq> Eq for Hashed<K> {}

impl<K> Hash for Hashed<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The hasher for maps keyed by a precomputed hash ([`Hashed`]) or by ids the batcher
/// assigns itself, neither of which an attacker chooses: a multiplication spreads the bits.
#[derive(Default)]
pub(crate) struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is ever called, by `Hashed`; fold anything else in all the same.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

pub(crate) type KeyMap<K, V> = HashMap<Hashed<K>, V, BuildHasherDefault<Prehashed>>;
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<Prehashed>>;
