//! [`ContractProbe`]: an inner service that holds a layer to the `tower::Service` contract.

use std::future::{ready, Ready};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

/// An inner service that panics when the `poll_ready`-before-`call` contract is broken.
///
/// Each instance must see `poll_ready` return `Ready(Ok)` before each `call`. A clone starts
/// unready, like a clone of `tower::buffer::Buffer` or `ConcurrencyLimit` does, so a layer that
/// clones its inner service and calls the clone without readying it is caught.
#[derive(Debug)]
pub struct ContractProbe {
    ready: bool,
    calls: Arc<AtomicUsize>,
}

impl ContractProbe {
    /// A probe that answers every request with the request itself.
    pub fn new() -> Self {
        Self {
            ready: false,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many calls all clones of this probe have served.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Default for ContractProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for ContractProbe {
    fn clone(&self) -> Self {
        // A clone must be readied on its own before it may be called.
        Self {
            ready: false,
            calls: Arc::clone(&self.calls),
        }
    }
}

impl<Req> Service<Req> for ContractProbe {
    type Response = Req;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Req, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        assert!(
            self.ready,
            "contract violated: ContractProbe::call without a successful poll_ready on this instance"
        );
        self.ready = false;
        self.calls.fetch_add(1, Ordering::SeqCst);
        ready(Ok(req))
    }
}
