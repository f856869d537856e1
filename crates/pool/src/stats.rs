//! Counters.

/// Why connections left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Eviction {
    /// Its `poll_ready` failed.
    Broken,
    /// A call error the fatal classifier flagged.
    Fatal,
    /// Older than `max_lifetime`.
    Lifetime,
    /// Unused for `idle_timeout`.
    Idle,
    /// A health check failed.
    HealthCheck,
    /// The pool was closed.
    Closed,
}

impl Eviction {
    /// The reason's name in snake case.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Broken => "broken",
            Self::Fatal => "fatal",
            Self::Lifetime => "lifetime",
            Self::Idle => "idle",
            Self::HealthCheck => "health_check",
            Self::Closed => "closed",
        }
    }
}

/// Connections evicted, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Evictions {
    /// `poll_ready` failed.
    pub broken: u64,
    /// A fatal call error.
    pub fatal: u64,
    /// Past `max_lifetime`.
    pub lifetime: u64,
    /// Past `idle_timeout`.
    pub idle: u64,
    /// A failed health check.
    pub health_check: u64,
    /// Closed with the pool.
    pub closed: u64,
}

impl Evictions {
    pub(crate) fn count(&mut self, reason: Eviction) {
        let counter = match reason {
            Eviction::Broken => &mut self.broken,
            Eviction::Fatal => &mut self.fatal,
            Eviction::Lifetime => &mut self.lifetime,
            Eviction::Idle => &mut self.idle,
            Eviction::HealthCheck => &mut self.health_check,
            Eviction::Closed => &mut self.closed,
        };
        *counter += 1;
    }

    /// All evictions.
    pub fn total(&self) -> u64 {
        self.broken + self.fatal + self.lifetime + self.idle + self.health_check + self.closed
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) created: u64,
    pub(crate) connect_failures: u64,
    pub(crate) evicted: Evictions,
}

/// A snapshot of a pool, taken under its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// `max_size`.
    pub max: usize,
    /// Connections alive (idle or handed out).
    pub live: usize,
    /// Connections waiting in the pool, ready to take a request.
    pub idle: usize,
    /// Connections handed out to a request right now, or busy with the requests they
    /// carry (set aside until they can take another).
    pub in_use: usize,
    /// Connects under way.
    pub connecting: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
    /// Connections made so far.
    pub created: u64,
    /// Connects that failed so far.
    pub connect_failures: u64,
    /// Connections evicted so far, by reason.
    pub evicted: Evictions,
    /// The last connect error, until a connect succeeds.
    pub last_connect_error: Option<String>,
    /// Whether the pool was closed.
    pub closed: bool,
}
