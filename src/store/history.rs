//! The append-only check history.

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
