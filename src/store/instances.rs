//! The daemons sharing the database: their heartbeats (how many are alive, to share a
//! platform's rate limit) and the platforms' app-wide holds (a 429's retry time, seen by one
//! daemon and honoured by all).

use super::*;

impl Store {
    /// Records that instance `id` is alive at `now` (inserting it on its first beat).
    pub async fn heartbeat(&self, id: &str, started_at: UnixTime, now: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO instances (id, started_at, heartbeat_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            )
            .bind(id)
            .bind(started_at)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// How many instances beat at or after `since` (this one included), and forgets those
    /// that last beat before `forget_before`.
    pub async fn live_instances(&self, since: UnixTime, forget_before: UnixTime) -> Result<i64, StoreError> {
        with_db!(self, |pool| {
            sqlx::query("DELETE FROM instances WHERE heartbeat_at < $1")
                .bind(forget_before)
                .execute(pool)
                .await?;
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM instances WHERE heartbeat_at >= $1")
                .bind(since)
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

    /// Holds `platform` until `until` for every daemon (a later hold wins).
    pub async fn hold_platform(&self, platform: Platform, until: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO platform_holds (platform, until) VALUES ($1, $2) \
                 ON CONFLICT (platform) DO UPDATE SET until = excluded.until \
                 WHERE platform_holds.until < excluded.until",
            )
            .bind(platform.as_str())
            .bind(until)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The platforms held past `now`, and until when.
    pub async fn platform_holds(&self, now: UnixTime) -> Result<Vec<(Platform, UnixTime)>, StoreError> {
        with_db!(self, |pool| Ok(sqlx::query_as(
            "SELECT platform, until FROM platform_holds WHERE until > $1"
        )
        .bind(now)
        .fetch_all(pool)
        .await?))
    }
}
