//! Per-thread counters, so that recording an outcome touches only memory this thread owns.
//!
//! A response future must record its outcome wherever it completes, after the service that
//! made it may be gone. Holding an `Arc` to the breaker in every future would cost two
//! atomic read-modify-writes per call (clone and drop), and a shared counter a third; on this
//! path those dominate. Instead a future carries only the breaker's id, and each thread keeps
//! a small table from id to the breaker and to counters that only this thread writes (plain
//! loads and stores, no lock prefix). The breaker sums every thread's counters for a
//! snapshot. A thread meets a breaker for the first time through a global registry, once.
//!
//! A thread's table keeps the breakers it used alive until that thread next meets a new
//! breaker (it then drops the ones nobody else holds) or exits: a thread that used many
//! short-lived breakers and then only old ones holds a few hundred bytes per breaker a while
//! longer.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::core::Core;

/// One thread's counters for one breaker.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) successes: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) slow: AtomicU64,
}

impl Counters {
    /// Adds one to a counter that only the current thread writes.
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// Adds to a counter that several threads may write.
    pub(crate) fn add_shared(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn fields(&self) -> [&AtomicU64; 5] {
        [
            &self.successes,
            &self.failures,
            &self.ignored,
            &self.rejected,
            &self.slow,
        ]
    }
}

struct Entry {
    id: u64,
    core: Arc<Core>,
    counters: Arc<Counters>,
}

thread_local! {
    static ENTRIES: RefCell<Vec<Rc<Entry>>> = const { RefCell::new(Vec::new()) };
}

/// Breakers by id, for a thread that meets one for the first time.
static REGISTRY: Mutex<Vec<(u64, Weak<Core>)>> = Mutex::new(Vec::new());

pub(crate) fn register(id: u64, core: &Arc<Core>) {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    registry.push((id, Arc::downgrade(core)));
}

pub(crate) fn unregister(id: u64) {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    registry.retain(|(entry, _)| *entry != id);
}

/// Runs `f` with breaker `id` and this thread's counters for it, or returns `None` when the
/// breaker is gone. `f` may re-enter (a state-change hook may call the breaker again).
pub(crate) fn with<R>(id: u64, f: impl FnOnce(&Core, &Counters) -> R) -> Option<R> {
    let found = ENTRIES
        .try_with(|entries| {
            let entries = entries.borrow();
            // An `Rc` clone is a plain increment; it lets the borrow end before `f` runs.
            entries.iter().find(|entry| entry.id == id).map(Rc::clone)
        })
        .ok()
        .flatten();
    match found {
        Some(entry) => Some(f(&entry.core, &entry.counters)),
        None => with_new_entry(id, f),
    }
}

/// Like [`with`], for an `f` that never calls user code and so cannot re-enter: runs it while
/// the table is borrowed, which saves the `Rc` round trip on the hottest path.
#[inline]
pub(crate) fn with_no_reentry<R>(id: u64, f: impl FnOnce(&Core, &Counters) -> R) -> Option<R> {
    let found = ENTRIES.try_with(|entries| {
        let entries = entries.borrow();
        match entries.iter().find(|entry| entry.id == id) {
            Some(entry) => Ok(f(&entry.core, &entry.counters)),
            None => Err(f),
        }
    });
    match found {
        Ok(Ok(result)) => Some(result),
        Ok(Err(f)) => with_new_entry(id, f),
        // The thread is being torn down: the table is gone.
        Err(_) => None,
    }
}

#[cold]
fn with_new_entry<R>(id: u64, f: impl FnOnce(&Core, &Counters) -> R) -> Option<R> {
    let core = {
        let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
        registry
            .iter()
            .find(|(entry, _)| *entry == id)
            .and_then(|(_, core)| core.upgrade())
    }?;
    let counters = core.add_thread();
    let entry = Rc::new(Entry { id, core, counters });
    let result = f(&entry.core, &entry.counters);
    // During thread teardown the table is gone; the counters stay with the breaker anyway.
    let _ = ENTRIES.try_with(|entries| {
        let mut entries = entries.borrow_mut();
        // Drop this thread's hold on breakers nobody else uses any more.
        entries.retain(|entry| !entry.core.is_retired());
        entries.push(entry);
    });
    Some(result)
}
