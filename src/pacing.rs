//! Pacing the requests to each platform: a [`Gate`] per platform spaces them at its rate
//! limit (shared among the daemons on one database) and holds them while the platform asks
//! to wait. Check-now requests take a reserved slot that is never more than a bound away, from
//! a share of the budget of their own, and give it back when their caller goes away. Holds
//! (a platform's app-wide throttle, shared with the other daemons) and the Graph app-usage
//! pause live here too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::{Platform, UnixTime};

/// When the next requests may go: the end of the queue, and slots given back before it.
#[derive(Debug)]
struct Schedule {
    next: tokio::time::Instant,
    /// Slots inside the queue whose reservation was given back; the next reservation takes
    /// the earliest.
    holes: Vec<tokio::time::Instant>,
}

/// Spaces out the requests to one platform (at most `rate` a second, no burst), and stops
/// them for a while when the platform says it is throttling.
#[derive(Debug)]
pub struct Gate {
    /// Nanoseconds between two requests at the whole rate limit; 0: no pacing. A reload may
    /// change it.
    base_ns: AtomicU64,
    /// Nanoseconds between two requests of this daemon: `base_ns` times the live daemons
    /// sharing the platform's budget.
    interval_ns: AtomicU64,
    /// When the next request may go (tokio's clock, so tests can run it paused).
    schedule: std::sync::Mutex<Schedule>,
    blocked_until: AtomicI64,
}

fn interval_ns(rate: Option<f64>) -> u64 {
    rate.filter(|r| *r > 0.0).map_or(0, |r| {
        Duration::from_secs_f64(1.0 / r)
            .as_nanos()
            .try_into()
            .unwrap_or(u64::MAX)
    })
}

/// A request's turn at a [`Gate`]: waited for with [`Slot::wait`]; a slot dropped before
/// its turn came (its caller went away) is given back for the next request to take.
#[derive(Debug)]
pub struct Slot<'a> {
    gate: &'a Gate,
    at: Option<tokio::time::Instant>,
}

impl Slot<'_> {
    /// Waits for the turn; from then on the slot is used.
    pub async fn wait(mut self) {
        if let Some(at) = self.at {
            tokio::time::sleep_until(at).await;
        }
        self.at = None;
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(at) = self.at.take() {
            self.gate.give_back(at);
        }
    }
}

impl Gate {
    pub(crate) fn new(rate: Option<f64>) -> Gate {
        Gate {
            base_ns: AtomicU64::new(interval_ns(rate)),
            interval_ns: AtomicU64::new(interval_ns(rate)),
            schedule: std::sync::Mutex::new(Schedule {
                next: tokio::time::Instant::now(),
                holes: Vec::new(),
            }),
            blocked_until: AtomicI64::new(0),
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns.load(Ordering::Relaxed))
    }

    /// Reserves the next turn, unless it is more than `max_wait` away (then how far it is).
    pub fn reserve(&self, max_wait: Duration) -> Result<Slot<'_>, Duration> {
        let interval = self.interval();
        if interval.is_zero() {
            return Ok(Slot { gate: self, at: None });
        }
        let now = tokio::time::Instant::now();
        let mut s = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        s.holes.retain(|h| *h >= now);
        if let Some((i, _)) = s.holes.iter().enumerate().min_by_key(|(_, h)| **h) {
            let at = s.holes.swap_remove(i);
            return Ok(Slot {
                gate: self,
                at: Some(at),
            });
        }
        let at = s.next.max(now);
        if at - now > max_wait {
            return Err(at - now);
        }
        s.next = at + interval;
        Ok(Slot {
            gate: self,
            at: Some(at),
        })
    }

    /// A reserved turn not used: the queue's last one shortens the queue; one inside it is
    /// a hole the next reservation takes.
    fn give_back(&self, at: tokio::time::Instant) {
        let mut s = self.schedule.lock().unwrap_or_else(|e| e.into_inner());
        if s.next == at + self.interval() {
            s.next = at;
        } else if at >= tokio::time::Instant::now() {
            s.holes.push(at);
        }
    }

    /// Waits for this request's turn.
    pub(crate) async fn pace(&self) {
        if let Ok(slot) = self.reserve(Duration::MAX) {
            slot.wait().await;
        }
    }

    /// The time the platform asked us to wait until, if it is still ahead.
    pub(crate) fn blocked(&self, now: UnixTime) -> Option<UnixTime> {
        let until = self.blocked_until.load(Ordering::Relaxed);
        (until > now).then_some(until)
    }

    pub(crate) fn block_until(&self, t: UnixTime) {
        self.blocked_until.fetch_max(t, Ordering::Relaxed);
    }
}

/// One [`Gate`] per platform, and the number of daemons sharing each platform's budget.
#[derive(Debug)]
pub struct Gates {
    gates: HashMap<Platform, Gate>,
    /// Per platform, the share of its budget check-now requests may use
    /// (`health.check_now_share`); they take a turn at this gate and at the platform's.
    check_now: HashMap<Platform, Gate>,
    /// Live daemons sharing the platforms' budgets (1 on SQLite).
    daemons: AtomicU64,
}

/// What the check-now share gate's rate is: `rate * share`.
fn share_rate(rate: Option<f64>, share: f64) -> Option<f64> {
    rate.filter(|r| *r > 0.0).map(|r| r * share.clamp(0.000_001, 1.0))
}

impl Gates {
    /// From each platform's `rate_limit` and `health.check_now_share`.
    pub fn new(config: &crate::config::Config) -> Gates {
        let share = config.health.check_now_share;
        Gates {
            gates: Platform::ALL
                .into_iter()
                .map(|p| (p, Gate::new(config.platforms.get(p).rate_limit(p))))
                .collect(),
            check_now: Platform::ALL
                .into_iter()
                .map(|p| (p, Gate::new(share_rate(config.platforms.get(p).rate_limit(p), share))))
                .collect(),
            daemons: AtomicU64::new(1),
        }
    }

    /// Takes each platform's `rate_limit` (and the check-now share) from a reloaded config.
    pub fn set_rates(&self, config: &crate::config::Config) {
        let share = config.health.check_now_share;
        for (p, g) in &self.gates {
            let rate = config.platforms.get(*p).rate_limit(*p);
            g.base_ns.store(interval_ns(rate), Ordering::Relaxed);
            self.check_now[p]
                .base_ns
                .store(interval_ns(share_rate(rate, share)), Ordering::Relaxed);
        }
        self.apply_share();
    }

    /// Paces each platform at `1 / daemons` of its rate limit: the live daemons on one
    /// database together stay under it.
    pub fn set_share(&self, daemons: i64) {
        self.daemons.store(daemons.max(1).unsigned_abs(), Ordering::Relaxed);
        self.apply_share();
    }

    fn apply_share(&self) {
        let n = self.daemons.load(Ordering::Relaxed).max(1);
        for g in self.gates.values().chain(self.check_now.values()) {
            g.interval_ns
                .store(g.base_ns.load(Ordering::Relaxed).saturating_mul(n), Ordering::Relaxed);
        }
    }

    /// This daemon's pace for a platform, in requests a second (`None`: unlimited).
    pub fn rate(&self, p: Platform) -> Option<f64> {
        let ns = self.get(p).interval_ns.load(Ordering::Relaxed);
        (ns > 0).then(|| 1e9 / ns as f64)
    }

    /// Until when the platform asked to wait, if that is still ahead of `now`.
    pub fn held_until(&self, p: Platform, now: UnixTime) -> Option<UnixTime> {
        self.get(p).blocked(now)
    }

    pub(crate) fn get(&self, p: Platform) -> &Gate {
        &self.gates[&p]
    }

    /// A turn for a request made on a caller's behalf (check-now, a registration's first
    /// check): one in the check-now share of the platform's budget and one at its gate, both
    /// at most `max_wait` away; else how long until there would be one.
    pub fn reserve_on_demand(&self, p: Platform, max_wait: Duration) -> Result<(Slot<'_>, Slot<'_>), Duration> {
        let share = self.check_now[&p].reserve(max_wait)?;
        let turn = self.gates[&p].reserve(max_wait)?;
        Ok((share, turn))
    }
}

/// Usage of the app's shared Graph quota above which socialsyncer stops calling (percent).
/// The quota is shared with the user's own publishing product, which must never be starved.
pub const APP_USAGE_LIMIT: i64 = 90;

/// The app's shared Graph quota as the platform last reported it in `X-App-Usage`
/// (`{"call_count":N,"total_cputime":N,"total_time":N}`, percentages), and the pause it
/// imposes: above [`APP_USAGE_LIMIT`] no call goes out until the pause ends.
#[derive(Debug)]
pub struct AppUsage {
    pause: i64,
    paused_until: AtomicI64,
    last_percent: AtomicI64,
}

impl AppUsage {
    /// A tracker that pauses for `pause` seconds once usage is above the limit.
    pub fn new(pause: i64) -> std::sync::Arc<AppUsage> {
        std::sync::Arc::new(AppUsage {
            pause: pause.max(1),
            paused_until: AtomicI64::new(0),
            last_percent: AtomicI64::new(0),
        })
    }

    /// Takes in the usage an answer reported (in `X-App-Usage`, when present) and starts a
    /// pause above the limit.
    pub fn observe(&self, percent: Option<i64>, now: UnixTime) {
        let Some(percent) = percent else {
            return;
        };
        self.last_percent.store(percent, Ordering::Relaxed);
        if percent > APP_USAGE_LIMIT {
            self.pause_until(now.saturating_add(self.pause));
        }
    }

    /// Stops calls until `t` (never shortens a pause already running).
    pub fn pause_until(&self, t: UnixTime) {
        self.paused_until.fetch_max(t, Ordering::Relaxed);
    }

    /// The end of the current pause, if one is running.
    pub fn paused(&self, now: UnixTime) -> Option<UnixTime> {
        let t = self.paused_until.load(Ordering::Relaxed);
        (t > now).then_some(t)
    }

    /// How long a pause lasts, in seconds.
    pub fn pause(&self) -> i64 {
        self.pause
    }

    /// The last reported usage, in percent of the most used of the three measures.
    pub fn last_percent(&self) -> i64 {
        self.last_percent.load(Ordering::Relaxed)
    }
}

/// Holds `platform`'s gate until `until` after an app-wide throttle (a 429 naming a time for
/// every client of the app), and tells the daemons sharing the database (`platform_holds`),
/// whose gates then hold too. A throttle of one token or Page defers that account alone and
/// never comes here.
pub fn hold(
    gates: &Gates,
    store: &crate::store::Store,
    tasks: &crate::tasks::Tasks,
    platform: Platform,
    until: UnixTime,
    now: UnixTime,
) {
    let gate = gates.get(platform);
    if store.is_shared() && gate.blocked(now).is_none_or(|held| held < until) {
        let store = store.clone();
        let secs = until - now;
        tasks.spawn("hold share", true, async move {
            if let Err(e) = store.hold_platform(platform, secs).await {
                tracing::warn!(%platform, error = %e, "could not share the platform's hold with the other daemons");
            }
        });
    }
    gate.block_until(until);
}

#[cfg(test)]
mod tests;
