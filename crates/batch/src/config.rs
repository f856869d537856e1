//! Configuration and the builder.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::layer::BatchLayer;

pub(crate) type KeyFn<T, K> = Arc<dyn Fn(&T) -> K + Send + Sync>;
pub(crate) type SizeFn<T> = Arc<dyn Fn(&T) -> usize + Send + Sync>;
pub(crate) type RejectedFn = Arc<dyn Fn(&crate::BoxError) -> bool + Send + Sync>;

/// What happens to a new item when the queue holds `capacity` items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overflow {
    /// `poll_ready` returns `Pending` until the worker makes room (the default).
    #[default]
    Backpressure,
    /// `poll_ready` stays ready and `call` returns an immediate
    /// [`QueueFull`](crate::QueueFull) error; the item is counted as dropped.
    DropNewest,
}

/// When a batch is handed to the inner service.
///
/// `max_items`, `max_bytes` and `max_wait` bound a batch under either policy; the policy
/// decides whether a batch that is within them goes early.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dispatch {
    /// A batch goes as soon as its key has room in flight (fewer than
    /// [`max_in_flight_per_key`](Builder::max_in_flight_per_key) of its batches, and fewer
    /// than [`max_in_flight`](Builder::max_in_flight) in all; with a per-key limit of 1,
    /// as soon as its key has no batch in flight) and the inner service is ready. Items that
    /// arrive while their key has no room, or while the inner service is not ready, gather
    /// into the next batch. An item that reaches an idle batcher waits for no
    /// timer; under load, batches grow by themselves.
    Eager,
    /// A batch goes when it is full, or `max_wait` after its first item (the default): every
    /// batch that does not fill up waits out its window, even when nothing is in flight.
    #[default]
    Window,
}

/// Validated settings shared by a batcher's services and worker.
pub(crate) struct Config<T, K> {
    pub(crate) max_items: usize,
    pub(crate) max_bytes: Option<(usize, SizeFn<T>)>,
    pub(crate) max_wait: Duration,
    pub(crate) capacity: usize,
    pub(crate) overflow: Overflow,
    pub(crate) dispatch: Dispatch,
    pub(crate) max_in_flight: usize,
    pub(crate) max_in_flight_per_key: usize,
    pub(crate) key_fn: KeyFn<T, K>,
    pub(crate) rejected_if: Option<RejectedFn>,
}

impl<T, K> Clone for Config<T, K> {
    fn clone(&self) -> Self {
        Self {
            max_items: self.max_items,
            max_bytes: self.max_bytes.clone(),
            max_wait: self.max_wait,
            capacity: self.capacity,
            overflow: self.overflow,
            dispatch: self.dispatch,
            max_in_flight: self.max_in_flight,
            max_in_flight_per_key: self.max_in_flight_per_key,
            key_fn: Arc::clone(&self.key_fn),
            rejected_if: self.rejected_if.clone(),
        }
    }
}

impl<T, K> fmt::Debug for Config<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_items", &self.max_items)
            .field(
                "max_bytes",
                &self.max_bytes.as_ref().map(|(limit, _)| limit),
            )
            .field("max_wait", &self.max_wait)
            .field("capacity", &self.capacity)
            .field("overflow", &self.overflow)
            .field("dispatch", &self.dispatch)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_in_flight_per_key", &self.max_in_flight_per_key)
            .field("rejected_if", &self.rejected_if.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`BatchLayer`]; get one from [`BatchLayer::builder`].
///
/// The defaults are the reference system's: batches of at most 10 items, handed over at the
/// latest 50 ms after their first item, one key for everything; plus a queue of 4,096 items
/// with backpressure, one batch per key in flight and at most 64 in flight overall, and
/// [`Dispatch::Window`].
pub struct Builder<T, K = ()> {
    config: Config<T, K>,
    _item: PhantomData<fn(T)>,
}

impl<T, K> fmt::Debug for Builder<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .finish()
    }
}

impl<T> Default for Builder<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Builder<T> {
    /// The defaults described on [`Builder`].
    pub fn new() -> Self {
        Self {
            config: Config {
                max_items: 10,
                max_bytes: None,
                max_wait: Duration::from_millis(50),
                capacity: 4_096,
                overflow: Overflow::Backpressure,
                dispatch: Dispatch::Window,
                max_in_flight: 64,
                max_in_flight_per_key: 1,
                key_fn: Arc::new(|_: &T| ()),
                rejected_if: None,
            },
            _item: PhantomData,
        }
    }
}

impl<T, K> Builder<T, K> {
    /// Sets the most items in one batch (default 10).
    #[must_use]
    pub fn max_items(mut self, n: usize) -> Self {
        self.config.max_items = n;
        self
    }

    /// Caps the summed `size` of a batch's items at `limit`: a batch is handed over before
    /// an item would take it past the cap. An item larger than `limit` on its own travels
    /// alone.
    #[must_use]
    pub fn max_bytes(
        mut self,
        limit: usize,
        size: impl Fn(&T) -> usize + Send + Sync + 'static,
    ) -> Self {
        self.config.max_bytes = Some((limit, Arc::new(size)));
        self
    }

    /// Sets how long after its first item a batch is handed over at the latest (default
    /// 50 ms): a latency bound, not a period.
    #[must_use]
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.config.max_wait = wait;
        self
    }

    /// Sets how many items may wait for the inner service (default 4,096).
    #[must_use]
    pub fn capacity(mut self, n: usize) -> Self {
        self.config.capacity = n;
        self
    }

    /// Sets what happens when the queue is full (default: backpressure).
    #[must_use]
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.config.overflow = overflow;
        self
    }

    /// Sets when a batch is handed over (default: [`Dispatch::Window`]); see
    /// [`Dispatch`] and the [crate documentation](crate#dispatch-eager-or-window).
    #[must_use]
    pub fn dispatch(mut self, dispatch: Dispatch) -> Self {
        self.config.dispatch = dispatch;
        self
    }

    /// Sets how many batches may be in the inner service at once, over all keys (default 64).
    #[must_use]
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.config.max_in_flight = n;
        self
    }

    /// Sets how many batches of one key may be in the inner service at once (default 1).
    ///
    /// With 1, a key's batches reach the inner service one after the other, each after the
    /// previous one completed: submission order holds end to end. With more, they are still
    /// called in submission order, but may complete in any order.
    #[must_use]
    pub fn max_in_flight_per_key(mut self, n: usize) -> Self {
        self.config.max_in_flight_per_key = n;
        self
    }

    /// Groups items by `key`: items with different keys never share a batch, and each key has
    /// its own window.
    #[must_use]
    pub fn key_fn<K2>(self, key: impl Fn(&T) -> K2 + Send + Sync + 'static) -> Builder<T, K2> {
        let config = self.config;
        Builder {
            config: Config {
                max_items: config.max_items,
                max_bytes: config.max_bytes,
                max_wait: config.max_wait,
                capacity: config.capacity,
                overflow: config.overflow,
                dispatch: config.dispatch,
                max_in_flight: config.max_in_flight,
                max_in_flight_per_key: config.max_in_flight_per_key,
                key_fn: Arc::new(key),
                rejected_if: config.rejected_if,
            },
            _item: PhantomData,
        }
    }

    /// Counts the items of a batch that failed with an error `is_rejection` accepts as
    /// [`Stats::rejected`](crate::Stats::rejected) rather than failed: the inner service
    /// turned them away on purpose (a circuit breaker's fail-fast, say), they were not lost
    /// on the way.
    #[must_use]
    pub fn rejected_if(
        mut self,
        is_rejection: impl Fn(&crate::BoxError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.config.rejected_if = Some(Arc::new(is_rejection));
        self
    }

    /// Checks the settings and builds the layer.
    pub fn build(self) -> Result<BatchLayer<T, K>, ConfigError> {
        let config = self.config;
        for (field, value) in [
            ("max_items", config.max_items),
            ("capacity", config.capacity),
            ("max_in_flight", config.max_in_flight),
            ("max_in_flight_per_key", config.max_in_flight_per_key),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if matches!(config.max_bytes, Some((0, _))) {
            return Err(ConfigError::Zero { field: "max_bytes" });
        }
        if config.max_wait.is_zero() {
            return Err(ConfigError::ZeroDuration { field: "max_wait" });
        }
        Ok(BatchLayer::from_config(config))
    }
}
