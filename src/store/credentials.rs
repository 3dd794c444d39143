//! Sealed tokens: reading, replacing after a refresh, the refresh lease, re-sealing.

use super::*;

impl Store {
    /// The sealed credentials of an account.
    pub async fn credentials(&self, account_ref: AccountRef) -> Result<SealedCredentials, StoreError> {
        with_db!(self, |pool| {
            sqlx::query_as("SELECT access_token, refresh_token FROM credentials WHERE account_ref = $1")
                .bind(account_ref)
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)
        })
    }

    /// Replaces an account's tokens after a refresh and records it, in one transaction. Once
    /// this returns, the new tokens are durable; before, nothing may report the refresh.
    pub async fn replace_tokens(&self, r: &TokenReplacement) -> Result<(), StoreError> {
        retrying(|| self.replace_tokens_once(r)).await
    }

    async fn replace_tokens_once(&self, r: &TokenReplacement) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE credentials SET access_token = $1, \
                 refresh_token = CASE WHEN $5 THEN NULL ELSE COALESCE($2, refresh_token) END, updated_at = $3 \
                 WHERE account_ref = $4",
            )
            .bind(&r.access_token)
            .bind(&r.refresh_token)
            .bind(r.at)
            .bind(r.account_ref)
            .bind(r.pushed.is_some_and(|p| p.remove_refresh))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                return Err(StoreError::NotFound);
            }
            check_token_key!(self, tx);
            // Rows are locked in the order every transaction uses (health, then the account),
            // so that a batch of check results written at the same time never deadlocks
            // with this one on PostgreSQL.
            sqlx::query(
                "UPDATE account_health SET refresh_failures = 0, last_refresh_error = NULL WHERE account_ref = $1",
            )
            .bind(r.account_ref)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE accounts SET token_expires_at = CASE WHEN $6 THEN $1 ELSE COALESCE($1, token_expires_at) END, \
                 refresh_expires_at = CASE WHEN $7 THEN $2 ELSE COALESCE($2, refresh_expires_at) END, \
                 token_issued_at = $3, scopes = COALESCE($4, scopes) WHERE id = $5",
            )
            .bind(r.expires_at)
            .bind(r.refresh_expires_at)
            .bind(r.at)
            .bind(r.scopes.as_deref().map(to_json))
            .bind(r.account_ref)
            // Pushed tokens' expiries are as given; a refresh token's too when one was pushed
            // or removed.
            .bind(r.pushed.is_some())
            .bind(r.pushed.is_some_and(|p| p.remove_refresh) || (r.pushed.is_some() && r.refresh_token.is_some()))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO health_history (account_ref, at, event, outcome, health, changed, detail) \
                 VALUES ($1, $2, $5, NULL, $3, FALSE, $4)",
            )
            .bind(r.account_ref)
            .bind(r.at)
            .bind(r.health.as_str())
            .bind(
                r.expires_at
                    .map(|t| format!("new token expires {}", crate::domain::rfc3339(t))),
            )
            .bind(if r.pushed.is_some() {
                HistoryEvent::TokensReplaced
            } else {
                HistoryEvent::Refresh
            })
            .execute(&mut *tx)
            .await?;
            bump_generations!(tx, [r.workspace_id]);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Takes the refresh lease of an account for `ttl` seconds, unless another holder has
    /// one that has not expired. True when `holder` now holds it. The time is the
    /// database's (`unixepoch()`, in the statement): daemons whose clocks differ agree on it.
    pub async fn try_refresh_lease(&self, account_ref: AccountRef, holder: &str, ttl: i64) -> Result<bool, StoreError> {
        with_db!(self, |pool| {
            let r = sqlx::query(
                "INSERT INTO refresh_leases (account_ref, holder, expires_at) VALUES ($1, $2, unixepoch() + $3) \
                 ON CONFLICT (account_ref) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                 WHERE refresh_leases.expires_at <= unixepoch()",
            )
            .bind(account_ref)
            .bind(holder)
            .bind(ttl)
            .execute(pool)
            .await;
            match r {
                Ok(r) => Ok(r.rows_affected() == 1),
                // The account was deleted meanwhile: nothing to refresh.
                Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(StoreError::NotFound),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Gives up a refresh lease held by `holder`.
    pub async fn release_refresh_lease(&self, account_ref: AccountRef, holder: &str) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("DELETE FROM refresh_leases WHERE account_ref = $1 AND holder = $2")
                .bind(account_ref)
                .bind(holder)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Records a failed automatic refresh in the history.
    pub async fn record_refresh_failure(
        &self,
        account_ref: AccountRef,
        at: UnixTime,
        health: Health,
        detail: &str,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO health_history (account_ref, at, event, outcome, health, changed, detail) \
                 SELECT $1, $2, $5, NULL, $3, FALSE, $4 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1)",
            )
            .bind(account_ref)
            .bind(at)
            .bind(health.as_str())
            .bind(detail)
            .bind(HistoryEvent::RefreshFailed)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Re-seals every stored token in one transaction that takes the write lock first
    /// (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the tables' EXCLUSIVE lock): the rows are read
    /// and rewritten under it, so a refresh cannot commit in between and be
    /// overwritten with the old tokens. `reseal` maps the rows read to their new sealed
    /// tokens, and the webhooks (ID, workspace, URL, sealed secret) to their new sealed
    /// secrets; an error from it rolls everything back. Returns how many accounts were
    /// re-sealed.
    #[allow(clippy::type_complexity)]
    pub async fn reseal_all<E>(
        &self,
        now: UnixTime,
        new_fingerprint: &str,
        reseal: impl FnOnce(
            Vec<SealedRow>,
            Vec<(i64, i64, String, Vec<u8>)>,
        ) -> Result<(Vec<Resealed>, Vec<(i64, Vec<u8>)>), E>,
    ) -> Result<Result<usize, E>, StoreError> {
        with_db!(self, |pool| {
            let mut tx = if self.is_shared() {
                let mut tx = pool.begin().await?;
                sqlx::query("LOCK TABLE credentials, webhooks IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
                tx
            } else {
                pool.begin_with("BEGIN IMMEDIATE").await?
            };
            // The database names the new key in the same transaction as the re-seal: a
            // daemon still holding the old one refuses to seal with it from then on.
            sqlx::query(
                "INSERT INTO token_key (id, fingerprint) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET fingerprint = excluded.fingerprint",
            )
            .bind(new_fingerprint)
            .execute(&mut *tx)
            .await?;
            let rows: Vec<SealedRow> = sqlx::query_as(
                "SELECT a.id, a.workspace_id, a.platform, a.account_id, c.access_token, c.refresh_token \
                 FROM accounts a JOIN credentials c ON c.account_ref = a.id ORDER BY a.id",
            )
            .fetch_all(&mut *tx)
            .await?;
            let hooks: Vec<(i64, i64, String, Vec<u8>)> =
                sqlx::query_as("SELECT id, workspace_id, url, secret FROM webhooks ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?;
            let (resealed, secrets) = match reseal(rows, hooks) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            for (id, secret) in &secrets {
                sqlx::query("UPDATE webhooks SET secret = $1 WHERE id = $2")
                    .bind(secret)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
            }
            for (id, access, refresh) in &resealed {
                sqlx::query(
                    "UPDATE credentials SET access_token = $1, refresh_token = $2, updated_at = $3 WHERE account_ref = $4",
                )
                .bind(access)
                .bind(refresh)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE workspace_generations SET generation = generation + 1")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Ok(resealed.len()))
        })
    }

    /// The first account's sealed credentials with what binds them (`None`: no tokens are
    /// stored): whether a key opens the stored tokens is told by this one.
    pub async fn first_sealed(&self) -> Result<Option<SealedRow>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT a.id, a.workspace_id, a.platform, a.account_id, c.access_token, c.refresh_token \
                 FROM credentials c JOIN accounts a ON a.id = c.account_ref ORDER BY a.id LIMIT 1",
            )
            .fetch_optional(pool)
            .await?)
        })
    }

    /// How many accounts have sealed credentials.
    pub async fn sealed_count(&self) -> Result<i64, StoreError> {
        with_db!(self, |pool| {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM credentials")
                .fetch_one(pool)
                .await?;
            Ok(n)
        })
    }
}
