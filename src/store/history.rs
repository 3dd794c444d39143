//! The append-only check history, and the health transitions kept longer.

use std::time::Instant;

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

    /// Deletes transitions older than `before` (`health.transitions_retention`), in bounded
    /// statements (see [`Store::prune_history`]).
    pub async fn prune_transitions(&self, before: UnixTime) -> Result<Pruned, StoreError> {
        self.prune("health_transitions", before, PRUNE_HOLD).await
    }

    /// Deletes history older than `before` (`health.history_retention`), in bounded
    /// statements: each deletes a batch of the oldest rows in its own transaction, sized so that
    /// it holds the writer about [`PRUNE_HOLD`], and the next waits as long as the last one
    /// took, so the sweep's writes (and another daemon's) get in between. A day of a million
    /// accounts' checks is millions of rows: one statement would hold SQLite's writer for
    /// seconds.
    pub async fn prune_history(&self, before: UnixTime) -> Result<Pruned, StoreError> {
        self.prune("health_history", before, PRUNE_HOLD).await
    }

    /// Deletes `table`'s rows with `at < before` in statements aimed at `hold` each.
    async fn prune(&self, table: &'static str, before: UnixTime, hold: Duration) -> Result<Pruned, StoreError> {
        let sql =
            format!("DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE at < $1 ORDER BY at LIMIT $2)");
        let mut done = Pruned::default();
        let mut batch: i64 = PRUNE_BATCH_MIN;
        loop {
            let started = Instant::now();
            let n = with_db!(self, |pool| {
                // `table` is one of this module's two constant names.
                sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                    .bind(before)
                    .bind(batch)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            let took = started.elapsed();
            done.rows += n;
            done.statements += 1;
            done.longest_hold = done.longest_hold.max(took);
            if n < batch as u64 {
                return Ok(done);
            }
            // Aim the next statement at `hold`: grow while well under it, shrink when over.
            if took < hold / 2 {
                batch = (batch * 2).min(PRUNE_BATCH_MAX);
            } else if took > hold {
                batch = (batch / 2).max(PRUNE_BATCH_MIN);
            }
            tokio::time::sleep(took.max(Duration::from_millis(1))).await;
        }
    }
}

/// What one pruning did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Rows deleted.
    pub rows: u64,
    /// Statements (transactions) it took.
    pub statements: u32,
    /// The longest of them: how long the writer was held at most.
    pub longest_hold: Duration,
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, o: Pruned) {
        self.rows += o.rows;
        self.statements += o.statements;
        self.longest_hold = self.longest_hold.max(o.longest_hold);
    }
}

/// How long one pruning statement aims to hold the writer (issue 27's bound is 100 ms).
pub const PRUNE_HOLD: Duration = Duration::from_millis(25);
/// The smallest and largest batch of rows one pruning statement deletes.
const PRUNE_BATCH_MIN: i64 = 500;
const PRUNE_BATCH_MAX: i64 = 50_000;

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
            q.build().persistent(false).execute(&mut *$tx).await?;
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
            lock.build().persistent(false).execute(&mut *$tx).await?;
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
            q.build().persistent(false).execute(&mut *$tx).await?;
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
