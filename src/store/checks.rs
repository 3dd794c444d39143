//! What sweeps read (due accounts) and write (a batch of check results, with their
//! history rows and alerts in the same transaction).

use super::*;

impl Store {
    /// Writes check results as the accounts' current health, with their history rows, all in
    /// one transaction.
    pub async fn record_checks(&self, updates: &[HealthUpdate]) -> Result<(), StoreError> {
        retrying(|| self.record_checks_once(updates)).await
    }

    async fn record_checks_once(&self, updates: &[HealthUpdate]) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            // One multi-row UPDATE ... FROM (VALUES ...) per chunk instead of a statement per
            // account: a sweep's results land in a few statements. VALUES columns are named
            // column1..columnN in both SQLite and PostgreSQL. Unchanged assessments write only
            // four columns, deferrals one.
            let (deferred, checked): (Vec<&HealthUpdate>, Vec<&HealthUpdate>) =
                updates.iter().partition(|u| u.deferred);
            for chunk in deferred.chunks(UPDATE_CHUNK) {
                let mut q = QueryBuilder::<Db>::new(
                    "UPDATE account_health SET next_check_at = v.column2, last_error = v.column3, \
                     claimed_until = NULL, claimed_by = NULL FROM (",
                );
                q.push_values(chunk, |mut b, u| {
                    b.push_bind(u.account_ref)
                        .push_bind(u.next_check_at)
                        .push_bind(&u.state.last_error);
                });
                q.push(") AS v WHERE account_health.account_ref = v.column1");
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            let (same, changed): (Vec<&HealthUpdate>, Vec<&HealthUpdate>) =
                checked.into_iter().partition(|u| u.unchanged);
            for chunk in same.chunks(UPDATE_CHUNK) {
                let mut q = QueryBuilder::<Db>::new(
                    "UPDATE account_health SET last_checked_at = v.column2, \
                     last_success_at = CASE WHEN v.column3 THEN v.column2 ELSE account_health.last_success_at END, \
                     consecutive_failures = CASE WHEN v.column3 THEN 0 ELSE account_health.consecutive_failures + 1 END, \
                     next_check_at = v.column4, claimed_until = NULL, claimed_by = NULL FROM (",
                );
                q.push_values(chunk, |mut b, u| {
                    b.push_bind(u.account_ref)
                        .push_bind(u.checked_at)
                        .push_bind(u.answered)
                        .push_bind(u.next_check_at);
                });
                q.push(") AS v WHERE account_health.account_ref = v.column1");
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            insert_transitions!(tx, &changed);
            for chunk in changed.chunks(UPDATE_CHUNK) {
                let mut q = QueryBuilder::<Db>::new(
                    "UPDATE account_health SET health = v.column2, token_valid = v.column3, needs_reconnect = v.column4, \
                     permissions = v.column5, missing_permissions = v.column6, recommendations = v.column7, \
                     data_access_expires_at = v.column8, platform_user_id = v.column9, last_error = v.column10, \
                     last_checked_at = v.column11, \
                     last_success_at = CASE WHEN v.column12 THEN v.column11 ELSE account_health.last_success_at END, \
                     consecutive_failures = CASE WHEN v.column12 THEN 0 ELSE account_health.consecutive_failures + 1 END, \
                     next_check_at = v.column13, refresh_failures = v.column14, last_refresh_error = v.column15, \
                     open_alerts = v.column16, alert_episode = v.column17, claimed_until = NULL, claimed_by = NULL FROM (",
                );
                q.push_values(chunk, |mut b, u| {
                    b.push_bind(u.account_ref)
                        .push_bind(u.state.health.as_str())
                        .push_bind(u.state.token_valid)
                        .push_bind(u.state.needs_reconnect)
                        .push_bind(u.state.permissions.as_deref().map(to_json))
                        .push_bind(to_json(&u.state.missing_permissions))
                        .push_bind(to_json(&u.state.recommendations))
                        .push_bind(u.state.data_access_expires_at)
                        .push_bind(&u.state.platform_user_id)
                        .push_bind(&u.state.last_error)
                        .push_bind(u.checked_at)
                        .push_bind(u.answered)
                        .push_bind(u.next_check_at)
                        .push_bind(u.refresh_failures)
                        .push_bind(&u.last_refresh_error)
                        .push_bind(to_json(&u.open_alerts))
                        .push_bind(u.alert_episode);
                });
                q.push(") AS v WHERE account_health.account_ref = v.column1");
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            let expiries: Vec<&HealthUpdate> = updates
                .iter()
                .filter(|u| u.token_expires_at != u.previous_token_expires_at)
                .collect();
            for chunk in expiries.chunks(UPDATE_CHUNK) {
                let mut q = QueryBuilder::<Db>::new("UPDATE accounts SET token_expires_at = v.column2 FROM (");
                q.push_values(chunk, |mut b, u| {
                    b.push_bind(u.account_ref).push_bind(u.token_expires_at);
                });
                q.push(") AS v WHERE accounts.id = v.column1");
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            // The alerts these changes raised and a history row per check, in the same
            // transaction.
            let alerts: Vec<&PendingAlert> = updates.iter().flat_map(|u| &u.alerts).collect();
            insert_raised!(tx, &alerts);
            let checked: Vec<&HealthUpdate> = updates.iter().filter(|u| !u.deferred).collect();
            insert_checks!(tx, &checked, HistoryEvent::Check);
            // A deferral writes one row when it starts.
            let first: Vec<&HealthUpdate> = deferred.iter().copied().filter(|u| !u.unchanged).collect();
            insert_checks!(tx, &first, HistoryEvent::Deferred);
            bump_generations!(tx, updates.iter().map(|u| u.workspace_id));
            tx.commit().await?;
            Ok(())
        })
    }

    /// `platform`'s accounts due for a check at `due_by`, with their sealed credentials
    /// (saving a query per account), oldest first, after `cursor` (the `(next_check_at, id)`
    /// of the last one seen), at most `limit`.
    ///
    /// On a shared database (PostgreSQL) the page is claimed for `claim.holder` until
    /// `claim.until`: the statement re-checks each row's claim, so two daemons never get the
    /// same account and accounts claimed by a live peer are skipped, and `FOR UPDATE SKIP
    /// LOCKED` keeps a daemon from waiting behind the rows a peer's claim is locking (it takes
    /// the others instead); writing an account's result
    /// releases its claim. Accounts whose claim expired unreleased, or whose claimant's
    /// daemon last beat more than [`LIVE_WITHIN`] seconds ago (a peer died holding them), are
    /// taken over: [`DuePage::taken_over`] counts them. A claimant with no heartbeat row (one
    /// that never beat, or forgotten after an hour) keeps its claims for their lease.
    pub async fn due_accounts(
        &self,
        platform: Platform,
        due_by: UnixTime,
        cursor: Option<(UnixTime, i64)>,
        limit: i64,
        claim: &Claim<'_>,
    ) -> Result<DuePage, StoreError> {
        let (t, id) = cursor.unwrap_or((i64::MIN, i64::MIN));
        match &self.backend {
            Backend::Sqlite(pool) => {
                // One JSON value for the whole page, as in `list_page` (the sealed tokens in
                // hex): a sweep reads every account, and a value at a time through sqlx cost
                // ~5 us a row. One daemon per file: no claims.
                let sql = concat!(
                    "WITH due AS (SELECT h.account_ref AS id FROM account_health h WHERE h.platform = $1 \
                     AND h.next_check_at <= $2 AND (h.next_check_at, h.account_ref) > ($3, $4) \
                     ORDER BY h.next_check_at, h.account_ref LIMIT $5) \
                     SELECT json_group_array(json_array(json_array(",
                    account_columns!(as_json),
                    "), hex(c.access_token), iif(c.refresh_token IS NULL, NULL, hex(c.refresh_token)))) \
                     FROM due d JOIN accounts a ON a.id = d.id JOIN account_health h ON h.account_ref = a.id \
                     JOIN credentials c ON c.account_ref = a.id"
                );
                let (json,): (String,) = sqlx::query_as(sql)
                    .bind(platform.as_str())
                    .bind(due_by)
                    .bind(t)
                    .bind(id)
                    .bind(limit)
                    .fetch_one(pool)
                    .await?;
                let mut rows: Vec<(AccountRow, String, Option<String>)> = from_json_rows(&json)?;
                rows.sort_by_key(|(a, _, _)| (a.next_check_at, a.id));
                let unhex = |h: &str| hex::decode(h).map_err(|e| StoreError::Db(sqlx::Error::Decode(Box::new(e))));
                let accounts = rows
                    .into_iter()
                    .map(|(a, access, refresh)| {
                        let credentials = SealedCredentials {
                            access_token: unhex(&access)?,
                            refresh_token: refresh.as_deref().map(unhex).transpose()?,
                        };
                        Ok((Account::from(a), credentials))
                    })
                    .collect::<Result<_, StoreError>>()?;
                Ok(DuePage {
                    accounts,
                    taken_over: 0,
                })
            }
            Backend::Postgres(pool) => {
                #[derive(FromRow)]
                struct DueRow {
                    #[sqlx(flatten)]
                    account: AccountRow,
                    access_token: Vec<u8>,
                    refresh_token: Option<Vec<u8>>,
                    taken_over: bool,
                }
                // The outer SELECT reads the rows as they were before the claim (one snapshot
                // for the whole statement), which is all it needs.
                let sql = concat!(
                    "WITH due AS (SELECT account_ref, claimed_until FROM account_health WHERE platform = $1 \
                     AND next_check_at <= $2 AND (next_check_at, account_ref) > ($3, $4) \
                     AND (claimed_until IS NULL OR claimed_until <= unixepoch() \
                     OR EXISTS (SELECT 1 FROM instances i WHERE i.id = split_part(account_health.claimed_by, '/', 1) \
                     AND i.heartbeat_at < unixepoch() - $8)) \
                     ORDER BY next_check_at, account_ref LIMIT $5 FOR UPDATE SKIP LOCKED), \
                     claimed AS (UPDATE account_health SET claimed_until = unixepoch() + $6, claimed_by = $7 FROM due \
                     WHERE account_health.account_ref = due.account_ref \
                     RETURNING account_health.account_ref, due.claimed_until AS old_claim) \
                     SELECT ",
                    account_columns!(plain),
                    ", c.access_token, c.refresh_token, cl.old_claim IS NOT NULL AS taken_over \
                     FROM claimed cl JOIN accounts a ON a.id = cl.account_ref \
                     JOIN account_health h ON h.account_ref = a.id JOIN credentials c ON c.account_ref = a.id \
                     ORDER BY h.next_check_at, a.id"
                );
                let rows: Vec<DueRow> = sqlx::query_as(sql)
                    .bind(platform.as_str())
                    .bind(due_by)
                    .bind(t)
                    .bind(id)
                    .bind(limit)
                    .bind(claim.lease)
                    .bind(claim.holder)
                    .bind(LIVE_WITHIN)
                    .fetch_all(pool)
                    .await?;
                let taken_over = rows.iter().filter(|r| r.taken_over).count() as u64;
                let accounts = rows
                    .into_iter()
                    .map(|r| {
                        let credentials = SealedCredentials {
                            access_token: r.access_token,
                            refresh_token: r.refresh_token,
                        };
                        (Account::from(r.account), credentials)
                    })
                    .collect();
                Ok(DuePage { accounts, taken_over })
            }
        }
    }

    /// Gives up the claims `holder` still has on accounts (a sweep that stopped short): its
    /// peers may check them at once instead of after the claims expire.
    pub async fn release_claims(&self, holder: &str) -> Result<u64, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(0),
            Backend::Postgres(pool) => Ok(sqlx::query(
                "UPDATE account_health SET claimed_until = NULL, claimed_by = NULL WHERE claimed_by = $1",
            )
            .bind(holder)
            .execute(pool)
            .await?
            .rows_affected()),
        }
    }

    /// When the last check of any account ran (the last sweep, after a restart).
    pub async fn last_check_at(&self) -> Result<Option<UnixTime>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT MAX(last_checked_at) FROM account_health")
                .fetch_one(pool)
                .await?)
        })
    }
}
