//! The alert outbox and its per-recipient deliveries.

use super::*;

impl Store {
    /// Alerts not delivered yet: how many, and when the oldest was raised.
    pub async fn pending_alert_stats(&self) -> Result<(i64, Option<UnixTime>), StoreError> {
        with_db!(self, |pool| {
            Ok(
                sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM alert_outbox WHERE sent_at IS NULL")
                    .fetch_one(pool)
                    .await?,
            )
        })
    }

    /// Alerts due for delivery, by workspace then age, claimed for `claim.holder` until
    /// `claim.until` so that of several daemons exactly one delivers each (PostgreSQL skips
    /// the rows a peer is claiming at that moment). Marking an alert sent or failed, or
    /// [`Store::release_alerts`], ends the claim; a claim left by a daemon that died
    /// expires and the alert is delivered by another.
    pub async fn pending_alerts(&self, limit: i64, claim: &Claim<'_>) -> Result<Vec<PendingAlert>, StoreError> {
        with_db!(self, |pool| {
            // One statement (atomic on both backends); PostgreSQL also skips the rows a
            // peer's statement is claiming at that moment.
            macro_rules! claim_sql {
                ($lock:literal) => {
                    concat!(
                        "WITH picked AS (SELECT id FROM alert_outbox WHERE sent_at IS NULL AND next_attempt_at <= $1 \
                         AND (claimed_until IS NULL OR claimed_until <= unixepoch()) ORDER BY workspace_id, id LIMIT $2",
                        $lock,
                        ") UPDATE alert_outbox SET claimed_until = unixepoch() + $3, claimed_by = $4 \
                         WHERE id IN (SELECT id FROM picked) \
                         AND (claimed_until IS NULL OR claimed_until <= unixepoch()) RETURNING id"
                    )
                };
            }
            let sql = if self.is_shared() {
                claim_sql!(" FOR UPDATE SKIP LOCKED")
            } else {
                claim_sql!("")
            };
            let claimed: Vec<i64> = sqlx::query_scalar(sql)
                .bind(claim.now)
                .bind(limit)
                .bind(claim.lease)
                .bind(claim.holder)
                .fetch_all(pool)
                .await?;
            if claimed.is_empty() {
                return Ok(Vec::new());
            }
            let mut q = QueryBuilder::<Db>::new(
                "SELECT o.id, o.workspace_id, w.name AS workspace, o.account_ref, o.kind, o.severity, o.platform, o.account_id, \
                 o.username, o.problem, o.action, o.attempts, o.dedup_key, o.created_at, \
                 CASE WHEN o.kind LIKE 'expiring_%' OR o.kind = 'tokens_refreshed' OR o.kind = 'refresh_superseded' \
                      THEN a.token_expires_at \
                      WHEN o.kind LIKE 'data_access_expiring_%' THEN h.data_access_expires_at END AS reconnect_by \
                 FROM alert_outbox o JOIN workspaces w ON w.id = o.workspace_id \
                 LEFT JOIN accounts a ON a.id = o.account_ref LEFT JOIN account_health h ON h.account_ref = o.account_ref \
                 WHERE o.id IN (",
            );
            let mut sep = q.separated(", ");
            for id in &claimed {
                sep.push_bind(*id);
            }
            q.push(") ORDER BY o.workspace_id, o.id");
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// Extends the claims `holder` still has on alerts to `lease` seconds from now (the
    /// database's clock): a delivery round that runs long keeps them.
    pub async fn renew_alert_claims(&self, holder: &str, lease: i64) -> Result<u64, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE alert_outbox SET claimed_until = unixepoch() + $1 WHERE claimed_by = $2 AND sent_at IS NULL",
            )
            .bind(lease)
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// Ends the claims on alerts that a delivery run neither sent nor failed (they wait for
    /// a recipient): the next run, by any daemon, takes them again.
    pub async fn release_alerts(&self, ids: &[i64], holder: &str) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            for chunk in ids.chunks(1000) {
                let mut q = QueryBuilder::<Db>::new(
                    "UPDATE alert_outbox SET claimed_until = NULL, claimed_by = NULL WHERE claimed_by = ",
                );
                q.push_bind(holder).push(" AND id IN (");
                let mut sep = q.separated(", ");
                for id in chunk {
                    sep.push_bind(*id);
                }
                q.push(")");
                q.build().persistent(false).execute(pool).await?;
            }
            Ok(())
        })
    }

    /// Marks alerts delivered (`note` says why when they were not sent, e.g. no recipients).
    pub async fn mark_alerts_sent(&self, ids: &[i64], now: UnixTime, note: Option<&str>) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            for id in ids {
                sqlx::query("UPDATE alert_outbox SET sent_at = $1, last_error = $2, claimed_until = NULL, claimed_by = NULL WHERE id = $3")
                    .bind(now)
                    .bind(note)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Records a failed delivery attempt and when to try again.
    pub async fn mark_alerts_failed(&self, ids: &[i64], error: &str, retry_at: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            for id in ids {
                sqlx::query(
                    "UPDATE alert_outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2, \
                     claimed_until = NULL, claimed_by = NULL WHERE id = $3",
                )
                .bind(error)
                .bind(retry_at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Alerts not yet delivered (for metrics and tests).
    pub async fn undelivered_alerts(&self) -> Result<i64, StoreError> {
        with_db!(self, |pool| {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox WHERE sent_at IS NULL")
                    .fetch_one(pool)
                    .await?,
            )
        })
    }

    /// Which recipients already have which of these alerts: (alert ID, recipient).
    pub async fn alert_deliveries(&self, ids: &[i64]) -> Result<Vec<(i64, String)>, StoreError> {
        with_db!(self, |pool| {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut q = QueryBuilder::<Db>::new("SELECT alert_id, recipient FROM alert_deliveries WHERE alert_id IN (");
            let mut sep = q.separated(", ");
            for id in ids {
                sep.push_bind(*id);
            }
            q.push(")");
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// Records that `recipient` has these alerts (or was given up, `note` says why).
    pub async fn record_deliveries(
        &self,
        ids: &[i64],
        recipient: &str,
        now: UnixTime,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            for id in ids {
                sqlx::query(
                    "INSERT INTO alert_deliveries (alert_id, recipient, delivered_at, note) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (alert_id, recipient) DO NOTHING",
                )
                .bind(id)
                .bind(recipient)
                .bind(now)
                .bind(note)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}

/// Inserts the alerts a batch of checks raised, inside the batch's transaction `tx`, as
/// multi-row inserts (11 parameters a row); a key seen before is skipped, and an account
/// deleted while it was being checked raises nothing.
macro_rules! insert_raised {
    ($tx:expr, $alerts:expr) => {{
        let alerts: &[&PendingAlert] = $alerts;
        for chunk in alerts.chunks(ALERT_CHUNK) {
            let mut q = QueryBuilder::<Db>::new(
                "INSERT INTO alert_outbox (workspace_id, account_ref, dedup_key, kind, severity, platform, account_id, \
             username, problem, action, created_at, next_attempt_at) \
             SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, column10, \
             column11, column11 FROM (",
            );
            q.push_values(chunk, |mut b, a| {
                b.push_bind(a.workspace_id)
                    .push_bind(a.account_ref)
                    .push_bind(&a.dedup_key)
                    .push_bind(a.kind.to_string())
                    .push_bind(a.severity.as_str())
                    .push_bind(a.platform.as_str())
                    .push_bind(&a.account_id)
                    .push_bind(&a.username)
                    .push_bind(&a.problem)
                    .push_bind(&a.action)
                    .push_bind(a.created_at);
            });
            q.push(") AS v WHERE v.column2 IN (SELECT id FROM accounts) ON CONFLICT (dedup_key) DO NOTHING");
            q.build().persistent(false).execute(&mut *$tx).await?;
        }
    }};
}

impl Store {
    /// Puts events raised outside a check (a refresh's `tokens_refreshed`) in the outbox; a
    /// key seen before is skipped.
    pub async fn raise_alerts(&self, alerts: &[PendingAlert]) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            let refs: Vec<&PendingAlert> = alerts.iter().collect();
            insert_raised!(tx, &refs);
            tx.commit().await?;
            Ok(())
        })
    }
}
