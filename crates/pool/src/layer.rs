//! [`PoolLayer`]: wraps a connector in a [`Pool`](crate::Pool).

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::config::{Builder, Config};
use crate::connect::Connector;
use crate::lifecycle::Lifecycle;
use crate::service::Pool;
use crate::shared::Shared;

/// Wraps a connector (a `Service<Target>` whose responses are connections) in a [`Pool`].
///
/// Each connector it wraps gets a pool of its own. Wrapping needs no runtime (the upkeep
/// for `min_idle`, lifetimes and health checks then starts when a request first waits), but
/// the pool must be used within a Tokio runtime: see [`Pool`]'s panics.
pub struct PoolLayer<Target, L = ()> {
    target: Target,
    config: Config,
    lifecycle: Arc<L>,
}

impl<Target> PoolLayer<Target> {
    /// A pool of connections to `target` with the default settings.
    pub fn new(target: Target) -> Self {
        Self::builder(target)
            .build()
            .expect("the default pool settings are valid")
    }

    /// Starts a [`Builder`] for connections to `target`.
    pub fn builder(target: Target) -> Builder<Target> {
        Builder::new(target)
    }
}

impl<Target, L> PoolLayer<Target, L> {
    pub(crate) fn from_parts(target: Target, config: Config, lifecycle: Arc<L>) -> Self {
        Self {
            target,
            config,
            lifecycle,
        }
    }
}

impl<M, Target, C, L> Layer<M> for PoolLayer<Target, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    type Service = Pool<M, Target, L>;

    fn layer(&self, connector: M) -> Self::Service {
        let shared = Shared::new(
            self.config.clone(),
            self.target.clone(),
            connector,
            Arc::clone(&self.lifecycle),
        );
        // Keeps `min_idle` warm from the start when a runtime is at hand, else from the
        // first request.
        shared.ensure_maintenance();
        Pool::from_shared(shared)
    }
}

impl<Target: Clone, L> Clone for PoolLayer<Target, L> {
    fn clone(&self) -> Self {
        Self {
            target: self.target.clone(),
            config: self.config.clone(),
            lifecycle: Arc::clone(&self.lifecycle),
        }
    }
}

impl<Target: fmt::Debug, L> fmt::Debug for PoolLayer<Target, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolLayer")
            .field("target", &self.target)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
