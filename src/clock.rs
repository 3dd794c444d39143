//! The daemon's clock: the system's time plus an offset that only tests move. Checks,
//! sweeps, throttle gates, deliveries and the API's lists go by it. What coordinates several
//! daemons (leases, claims, heartbeats, holds) goes by the database's clock instead, in the
//! statement (`unixepoch()`). `domain::now()` remains where the real time is meant:
//! - a time compared with another host's clock: a webhook signature's `t` (the receiver
//!   checks it against its own), the skew check against the database's clock;
//! - what the platform adapters compute from an answer (`expires_in` turned into an expiry,
//!   a `Retry-After` into a time): the answer came at that real moment;
//! - a time recorded as it happened: an account's `connected_at`, an instance's start,
//!   the admin commands (`keys revoke`, `rotate-token-key`, `demo`), which run outside the
//!   daemon and its clock.

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
