//! The background worker: evicts expired idle connections, health-checks the rest and
//! keeps `min_idle` warm, every period until the pool is dropped or closed.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::mem;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use crate::connect::Connector;
use crate::lifecycle::Lifecycle;
use crate::shard::Pooled;
use crate::shared::Shared;
use crate::stats::Eviction;

impl<M, Target, C, L> Shared<M, Target, C, L> {
    pub(crate) fn stop_maintenance(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

impl<M, Target, C, L> Shared<M, Target, C, L>
where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    /// Starts the maintenance task once, if the settings need one and a runtime is here.
    pub(crate) fn ensure_maintenance(self: &Arc<Self>) {
        if !self.config.needs_maintenance() || self.maintained.load(Ordering::Acquire) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            if !self.maintained.swap(true, Ordering::AcqRel) {
                runtime.spawn(maintenance(
                    Arc::downgrade(self),
                    self.config.maintenance_period(),
                ));
            }
        }
    }

    /// One round of upkeep: evict expired idle connections and health-check the rest when
    /// due (`poll_keep_warm` then tops up `min_idle`).
    async fn maintain(self: &Arc<Self>, last_check: &mut Option<Instant>) {
        let now = Instant::now();
        let (expired, to_check) = {
            let mut inner = self.inner.lock();
            if self.is_closed() {
                return;
            }
            let check_due = self.config.health_check_interval.is_some_and(|interval| {
                last_check.is_none_or(|at| now.saturating_duration_since(at) >= interval)
            });
            let mut expired = Vec::new();
            let mut kept = VecDeque::new();
            let keep_warm = self.config.min_idle;
            for conn in self.drain(false) {
                match conn.expiry(&self.config, now) {
                    // Idle connections beyond `min_idle` may idle out; the rest stay warm.
                    Some(Eviction::Idle) if inner.live - expired.len() <= keep_warm => {
                        kept.push_back(conn);
                    }
                    Some(reason) => expired.push((conn, reason)),
                    None => kept.push_back(conn),
                }
            }
            inner.live -= expired.len();
            for (_, reason) in &expired {
                inner.counts.evicted.count(*reason);
            }
            let to_check = if check_due {
                *last_check = Some(now);
                kept
            } else {
                // Back, in the same order, into this thread's shard.
                self.local_shard().1.return_idle(kept);
                VecDeque::new()
            };
            if !expired.is_empty() {
                crate::wait::wake_waiters(&mut inner, &self.has_waiters);
            }
            (expired, to_check)
        };
        for (conn, _) in expired {
            self.lifecycle.close(conn.conn).await;
        }
        for conn in to_check {
            let Pooled {
                conn,
                created,
                last_used,
                broken,
                park,
            } = *conn;
            match self.lifecycle.check(conn).await {
                Ok(conn) => self.checkin(
                    Box::new(Pooled {
                        conn,
                        created,
                        last_used,
                        broken,
                        park,
                    }),
                    false,
                ),
                Err(error) => {
                    tracing::debug!(target: "sluice_pool", %error, "health check failed");
                    let mut inner = self.inner.lock();
                    inner.live -= 1;
                    inner.counts.evicted.count(Eviction::HealthCheck);
                    crate::wait::wake_waiters(&mut inner, &self.has_waiters);
                }
            }
        }
    }

    /// Starts connects until `min_idle` connections are alive or connecting. `Pending` when
    /// the connector is not ready: it wakes `cx` when it is.
    fn poll_keep_warm(self: &Arc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            {
                let mut inner = self.inner.lock();
                let now = Instant::now();
                if self.is_closed()
                    || inner.live + inner.connecting >= self.config.min_idle
                    || inner.live + inner.connecting >= self.config.max_size
                    || inner.retry_at.is_some_and(|at| now < at)
                {
                    return Poll::Ready(());
                }
                inner.connecting += 1;
            }
            ready!(self.start_connect(cx));
        }
    }
}

/// Runs upkeep every `period` until the pool is dropped or closed.
pub(crate) async fn maintenance<M, Target, C, L>(
    shared: Weak<Shared<M, Target, C, L>>,
    period: Duration,
) where
    M: Connector<Target, Response = C>,
    Target: Clone + Send + Sync + 'static,
    L: Lifecycle<C>,
{
    let mut last_check = None;
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tick_seen = false;
    loop {
        if !mem::take(&mut tick_seen) {
            interval.tick().await;
        }
        let Some(pool) = shared.upgrade() else {
            return; // the pool is gone
        };
        if pool.stopped.load(Ordering::Acquire) {
            return;
        }
        pool.maintain(&mut last_check).await;
        drop(pool);
        // Keep `min_idle` warm. A connector that is not ready wakes this task when it is;
        // wait for that, but no longer than the next round, so that a pool dropped or
        // closed meanwhile (or a wake-up the connector gave to a request instead) cannot
        // keep this task waiting for ever.
        poll_fn(|cx| {
            let Some(pool) = shared.upgrade() else {
                return Poll::Ready(());
            };
            if pool.poll_keep_warm(cx).is_ready() {
                return Poll::Ready(());
            }
            tick_seen = interval.poll_tick(cx).is_ready();
            if tick_seen {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}
