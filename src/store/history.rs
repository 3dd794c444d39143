//! The append-only check history, and the health transitions kept longer.

use super::*;

impl Store {
    /// An account's history, newest first.
    pub async fn history(&self, account_ref: AccountRef, limit: i64) -> Result<Vec<HistoryEntry>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT at, event, outcome, health, changed, detail FROM health_history \
                 WHERE account_ref = $1 ORDER BY at DESC, id DESC LIMIT $2",
            )
            .bind(account_ref)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// An account's transitions at or after `since`, oldest first (at most 10,000: a change a
    /// day for 400 days is 400).
    pub async fn transitions(
        &self,
        account_ref: AccountRef,
        since: UnixTime,
    ) -> Result<Vec<crate::health::timeline::Transition>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT at, from_health, to_health, needs_person, reason FROM health_transitions \
                 WHERE account_ref = $1 AND at >= $2 ORDER BY at, id LIMIT 10000",
            )
            .bind(account_ref)
            .bind(since)
            .fetch_all(pool)
            .await?)
        })
    }

    /// An account's health just before `at` as its transitions say (`None`: no transition
    /// before it is kept).
    pub async fn health_before(&self, account_ref: AccountRef, at: UnixTime) -> Result<Option<Health>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT to_health FROM health_transitions WHERE account_ref = $1 AND at < $2 \
                 ORDER BY at DESC, id DESC LIMIT 1",
            )
            .bind(account_ref)
            .bind(at)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Deletes transitions older than `before` (`health.transitions_retention`); returns how
    /// many rows.
    pub async fn prune_transitions(&self, before: UnixTime) -> Result<u64, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query("DELETE FROM health_transitions WHERE at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }

    /// Deletes history older than `before`; returns how many rows.
    pub async fn prune_history(&self, before: UnixTime) -> Result<u64, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query("DELETE FROM health_history WHERE at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected())
        })
    }
}

/// Inserts a history row for each of `checked`, inside the batch's transaction `tx`, as
/// multi-row inserts. Rows of accounts deleted while they were being checked are skipped
/// (their history went with them): a DELETE racing a sweep never costs the rest of the batch.
macro_rules! insert_checks {
    ($tx:expr, $checked:expr, $event:expr) => {{
        let checked: &[&HealthUpdate] = $checked;
        for chunk in checked.chunks(1000) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO health_history (account_ref, at, event, outcome, health, changed, detail) \
             SELECT column1, column2, column3, column4, column5, column6, column7 FROM (",
            );
            q.push_values(chunk, |mut b, u| {
                b.push_bind(u.account_ref)
                    .push_bind(u.checked_at)
                    .push_bind($event)
                    .push_bind(u.outcome)
                    .push_bind(u.state.health.as_str())
                    .push_bind(u.state.health != u.previous_health)
                    .push_bind(&u.state.last_error);
            });
            q.push(") AS v WHERE v.column1 IN (SELECT id FROM accounts)");
            q.build().execute(&mut *$tx).await?;
        }
    }};
}

/// A `health_transitions` row for each of `changed` whose health, or whether it needs a
/// person, changes, inside the batch's
/// transaction `tx`, before the health rows are written: once per change, whoever else
/// records the same account meanwhile. The rows are locked first (a write that changes
/// nothing: PostgreSQL's row locks, SQLite's write lock), then each transition is inserted
/// only where the stored health is still the one it starts from: a second daemon that
/// checked the same account waits for the first, then finds the health already changed.
macro_rules! insert_transitions {
    ($tx:expr, $changed:expr) => {{
        let changed: &[&HealthUpdate] = $changed;
        let mut moved: Vec<&HealthUpdate> = changed
            .iter()
            .copied()
            .filter(|u| u.state.health != u.previous_health || u.state.needs_reconnect != u.previous_needs_reconnect)
            .collect();
        moved.sort_by_key(|u| u.account_ref);
        for chunk in moved.chunks(1000) {
            let mut lock = QueryBuilder::<Db>::new("UPDATE account_health SET health = health WHERE account_ref IN (");
            let mut ids = lock.separated(", ");
            for u in chunk {
                ids.push_bind(u.account_ref);
            }
            lock.push(")");
            lock.build().execute(&mut *$tx).await?;
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO health_transitions (account_ref, workspace_id, at, from_health, to_health, needs_person, reason) \
                 SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7 FROM (",
            );
            q.push_values(chunk, |mut b, u| {
                b.push_bind(u.account_ref)
                    .push_bind(u.workspace_id)
                    .push_bind(u.checked_at)
                    .push_bind(u.previous_health.as_str())
                    .push_bind(u.state.health.as_str())
                    .push_bind(u.state.needs_reconnect)
                    .push_bind($crate::store::history::transition_reason(u))
                    .push_bind(u.previous_needs_reconnect);
            });
            q.push(
                ") AS v JOIN account_health h ON h.account_ref = v.column1 AND h.health = v.column4 \
                 AND h.needs_reconnect = v.column8",
            );
            q.build().execute(&mut *$tx).await?;
        }
    }};
}

/// What caused a transition: the assessment's first recommendation, else its error.
pub(crate) fn transition_reason(u: &HealthUpdate) -> String {
    u.state
        .recommendations
        .first()
        .or(u.state.last_error.as_ref())
        .cloned()
        .unwrap_or_default()
}
