//! The daemon's clock: the system's time plus an offset that only tests move. Checks,
//! sweeps, throttle gates, deliveries and the API's lists go by it. What coordinates several
//! daemons (leases, claims, heartbeats, holds) goes by the database's clock instead, in the
//! statement (`unixepoch()`); `domain::now()` remains where a time is recorded as it happened
//! (history rows, `sent_at`) or compared with another host's (the skew check).

use std::sync::Arc;

/// The daemon's time: the system's, plus an offset that only tests move (shared by every
/// clone of the state), so that a test can let seconds pass without sleeping through them.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset: Arc<std::sync::atomic::AtomicI64>,
}

impl Clock {
    /// Unix seconds now.
    pub fn now(&self) -> crate::domain::UnixTime {
        crate::domain::now() + self.offset.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Moves this clock `secs` seconds ahead (tests).
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, std::sync::atomic::Ordering::Relaxed);
    }
}
