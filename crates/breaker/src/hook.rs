//! Observing state changes.

use std::fmt;

use crate::State;

/// Called after every state change of a breaker, outside any lock.
///
/// Implemented for `()` (does nothing) and for every `Fn(State, State) + Send + Sync`, whose
/// arguments are the old and the new state.
pub trait OnStateChange: Send + Sync + 'static {
    /// The breaker went from `from` to `to`.
    fn on_state_change(&self, from: State, to: State);
}

impl OnStateChange for () {
    #[inline]
    fn on_state_change(&self, _from: State, _to: State) {}
}

impl<F> OnStateChange for F
where
    F: Fn(State, State) + Send + Sync + 'static,
{
    fn on_state_change(&self, from: State, to: State) {
        self(from, to);
    }
}

/// Type-erased hook kept by the shared state; it only runs on transitions, so the indirection
/// costs nothing on the hot path.
pub(crate) struct DynHook(pub(crate) Box<dyn OnStateChange>);

impl fmt::Debug for DynHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OnStateChange")
    }
}
