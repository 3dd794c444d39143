//! The daemons sharing the database: their heartbeats (how many are alive, to share a
//! platform's rate limit) and the platforms' app-wide holds (a 429's retry time, seen by one
//! daemon and honoured by all).

use super::*;

/// A daemon that has not beaten for this long (seconds, the database's clock) is counted
/// out: its share of a rate limit goes to its peers, and its sweep's claims are taken over
/// at once rather than when their lease (`schedule.claim_lease`) runs out.
pub const LIVE_WITHIN: i64 = 10;

impl Store {
    /// Records that instance `id` is alive now, by the database's clock (inserting it on its
    /// first beat); answers that clock's time, Unix seconds.
    pub async fn heartbeat(&self, id: &str, started_at: UnixTime) -> Result<UnixTime, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar(
                "INSERT INTO instances (id, started_at, heartbeat_at) VALUES ($1, $2, unixepoch()) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at RETURNING heartbeat_at",
            )
            .bind(id)
            .bind(started_at)
            .fetch_one(pool)
            .await?)
        })
    }

    /// How many instances beat within the last `live_within` seconds (this one included),
    /// and forgets those that have not beaten for `forget_after`; the database's clock.
    pub async fn live_instances(&self, live_within: i64, forget_after: i64) -> Result<i64, StoreError> {
        with_db!(self, |pool| {
            sqlx::query("DELETE FROM instances WHERE heartbeat_at < unixepoch() - $1")
                .bind(forget_after)
                .execute(pool)
                .await?;
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM instances WHERE heartbeat_at >= unixepoch() - $1")
                .bind(live_within)
                .fetch_one(pool)
                .await?;
            Ok(n)
        })
    }

    /// Removes instance `id` (a clean stop: its peers take its share at once).
    pub async fn forget_instance(&self, id: &str) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("DELETE FROM instances WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Holds `platform` for `secs` seconds from now for every daemon (a later hold wins);
    /// stored on the database's clock.
    pub async fn hold_platform(&self, platform: Platform, secs: i64) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO platform_holds (platform, until) VALUES ($1, unixepoch() + $2) \
                 ON CONFLICT (platform) DO UPDATE SET until = excluded.until \
                 WHERE platform_holds.until < excluded.until",
            )
            .bind(platform.as_str())
            .bind(secs)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The platforms held now, and for how many more seconds (the database's clock).
    pub async fn platform_holds(&self) -> Result<Vec<(Platform, i64)>, StoreError> {
        with_db!(self, |pool| Ok(sqlx::query_as(
            "SELECT platform, until - unixepoch() FROM platform_holds WHERE until > unixepoch()"
        )
        .fetch_all(pool)
        .await?))
    }
}
