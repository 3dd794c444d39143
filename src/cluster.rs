//! Several daemons on one PostgreSQL database: who this daemon is, how many peers are
//! alive, and the platform budgets they share.
//!
//! Each daemon writes a heartbeat row every [`HEARTBEAT`]; the live peers are those that
//! beat within [`LIVE_WITHIN`]. A platform's `rate_limit` is an app-wide budget, so each
//! daemon paces at its share (`rate_limit / live peers`). An app-wide throttle (a 429 with a
//! retry time) seen by one daemon is written to `platform_holds` and every daemon's gate
//! holds that platform until then. On SQLite (one daemon per file) none of this runs: the
//! daemon is alone and its gates keep the whole budget.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::{self, UnixTime};

/// The machine's name: part of this daemon's name, and the line of an alert that says
/// which installation wrote.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// What the heartbeat needs: this daemon's identity, the database, and the gates whose
/// shares and holds it sets. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The database.
    pub store: crate::store::Store,
    /// The daemon's clock (holds are kept on the database's; each gate holds for what is left).
    pub clock: crate::clock::Clock,
    /// Per-platform pacing: each daemon paces at its share.
    pub gates: std::sync::Arc<crate::pacing::Gates>,
    /// This daemon.
    pub instance: std::sync::Arc<Instance>,
    /// The peers gauge.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Where a rotated token key is reported.
    pub problems: std::sync::Arc<crate::problems::Problems>,
}

/// How often a daemon beats and reads the peers and holds.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A peer that has not beaten for this long (seconds) is counted out: its share goes to the
/// others, and its sweep's claims are taken over without waiting for their lease.
pub use crate::store::LIVE_WITHIN;
/// Heartbeat rows older than this are deleted.
const FORGET_AFTER: i64 = 3600;

/// This daemon among its peers.
#[derive(Debug)]
pub struct Instance {
    /// Unique per process: host name, process ID and a random part (names its claims).
    pub id: String,
    /// When it started.
    pub started_at: UnixTime,
    /// Live daemons on the database, this one included (1 on SQLite).
    peers: AtomicI64,
    /// Seconds this host's clock is ahead of the database's (negative: behind), when more
    /// than [`SKEW_TOLERANCE`]; else 0.
    pub skew: AtomicI64,
}

impl Instance {
    /// A new identity for this process.
    pub fn new() -> Instance {
        let host = host_name();
        let mut b = [0u8; 4];
        rand::fill(&mut b);
        Instance {
            id: format!("{host}-{}-{}", std::process::id(), hex::encode(b)),
            started_at: domain::now(),
            peers: AtomicI64::new(1),
            skew: AtomicI64::new(0),
        }
    }

    /// Live daemons on the database, this one included.
    pub fn peers(&self) -> i64 {
        self.peers.load(Ordering::Relaxed)
    }

    /// A claimant name unique to one run of this instance (a sweep, a delivery).
    pub fn claimant(&self, what: &str) -> String {
        let mut b = [0u8; 4];
        rand::fill(&mut b);
        format!("{}/{what}/{}", self.id, hex::encode(b))
    }
}

impl Default for Instance {
    fn default() -> Self {
        Instance::new()
    }
}

/// One beat: records this daemon, counts the live peers and sets the gates' shares, and
/// takes the platform holds set by any daemon.
pub async fn beat(state: &Cluster) -> Result<(), crate::store::StoreError> {
    let me = &state.instance;
    let before = domain::now();
    let db_now = state.store.heartbeat(&me.id, me.started_at).await?;
    note_skew(state, before, domain::now(), db_now);
    let live = state.store.live_instances(LIVE_WITHIN, FORGET_AFTER).await?.max(1);
    if me.peers.swap(live, Ordering::Relaxed) != live {
        tracing::info!(
            peers = live,
            "daemons sharing the database changed; each paces at its share of the rate limits"
        );
        state.gates.set_share(live);
        state.metrics.set_peers(live);
    }
    // A rotate-token-key run elsewhere: this daemon seals with a key the database no longer
    // names (its writes of sealed data are refused); say so until it restarts.
    let current = state.store.token_key_current().await?;
    let new = state.problems.set_note(
        "token-key",
        (!current)
            .then(|| "token key: rotate-token-key named another key; restart this daemon with the new key file".into()),
    );
    if new {
        tracing::error!("the token key was rotated while this daemon ran; restart it with the new key file");
    }
    // Holds are kept on the database's clock; each gate holds for what is left of them.
    let now = state.clock.now();
    for (platform, left) in state.store.platform_holds().await? {
        state.gates.get(platform).block_until(now + left);
    }
    Ok(())
}

/// Largest difference between this host's clock and the database's that goes unremarked.
pub const SKEW_TOLERANCE: i64 = 5;

/// Compares this host's clock with the database's (`db_now`, read between `before` and
/// `after` by this host's clock): a difference over [`SKEW_TOLERANCE`] is logged when it
/// starts and shown by `/healthz` while it lasts. Coordination never depends on it (leases,
/// claims, heartbeats and holds are on the database's clock), but expiry times and the
/// times in answers are this host's.
fn note_skew(state: &Cluster, before: UnixTime, after: UnixTime, db_now: UnixTime) {
    let skew = if db_now < before {
        before - db_now
    } else if db_now > after {
        after - db_now
    } else {
        0
    };
    let skew = if skew.abs() > SKEW_TOLERANCE { skew } else { 0 };
    let old = state.instance.skew.swap(skew, Ordering::Relaxed);
    if skew != 0 && old == 0 {
        tracing::warn!(
            seconds = skew,
            "this host's clock differs from the database's by more than {SKEW_TOLERANCE} s; fix its time (NTP)"
        );
    } else if skew == 0 && old != 0 {
        tracing::info!("this host's clock agrees with the database's again");
    }
}

/// Beats every [`HEARTBEAT`] until `cancel`, then removes this daemon's row so that its
/// peers take its share at once. Nothing runs on a database of one daemon (SQLite).
pub async fn run(state: Cluster, cancel: CancellationToken) {
    if !state.store.is_shared() {
        return;
    }
    state.metrics.set_peers(1);
    loop {
        if let Err(e) = beat(&state).await {
            tracing::warn!(error = %e, "heartbeat not written; peers may count this daemon out");
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
    if let Err(e) = state.store.forget_instance(&state.instance.id).await {
        tracing::warn!(error = %e, "could not remove this daemon's heartbeat; it expires on its own");
    }
}
