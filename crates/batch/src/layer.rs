//! [`BatchLayer`]: wraps a batch service in a [`Batcher`](crate::Batcher) and its worker.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use tower_layer::Layer;
use tower_service::Service;

use crate::batch::Batch;
use crate::config::{Builder, Config};
use crate::error::BoxError;
use crate::service::Batcher;
use crate::state::Shared;
use crate::worker::Worker;

/// Wraps an inner `Service<Batch<T, K>>` in a [`Batcher`] of items `T`.
///
/// Each service it wraps gets its own queue and worker, spawned on the current Tokio runtime.
pub struct BatchLayer<T, K = ()> {
    config: Config<T, K>,
}

impl<T> BatchLayer<T> {
    /// The reference system's settings: at most 10 items, at most 50 ms after the first.
    pub fn new() -> Self {
        Builder::new()
            .build()
            .expect("the default batch settings are valid")
    }

    /// Starts a [`Builder`] with the default settings.
    pub fn builder() -> Builder<T> {
        Builder::new()
    }
}

impl<T> Default for BatchLayer<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, K> BatchLayer<T, K> {
    pub(crate) fn from_config(config: Config<T, K>) -> Self {
        Self { config }
    }
}

impl<T, K> BatchLayer<T, K>
where
    K: Hash + Eq + Clone,
{
    /// Wraps `service`, returning the worker for you to run (on any executor).
    pub fn pair<S>(&self, service: S) -> (Batcher<T, K>, Worker<S, T, K>)
    where
        S: Service<Batch<T, K>>,
        S::Error: Into<BoxError>,
    {
        let shared = Arc::new(Shared::new(self.config.clone()));
        let worker = Worker::new(Arc::clone(&shared), service);
        (Batcher::from_shared(shared), worker)
    }

    /// Wraps `service`, spawning the worker on the current Tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub fn spawn<S>(&self, service: S) -> Batcher<T, K>
    where
        S: Service<Batch<T, K>> + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        T: Send + 'static,
        K: Send + Sync + 'static,
    {
        let (batcher, worker) = self.pair(service);
        tokio::spawn(worker);
        batcher
    }
}

impl<S, T, K> Layer<S> for BatchLayer<T, K>
where
    S: Service<Batch<T, K>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    T: Send + 'static,
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Service = Batcher<T, K>;

    fn layer(&self, service: S) -> Self::Service {
        self.spawn(service)
    }
}

impl<T, K> Clone for BatchLayer<T, K> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<T, K> fmt::Debug for BatchLayer<T, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchLayer")
            .field("config", &self.config)
            .finish()
    }
}
