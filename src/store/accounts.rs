//! Accounts: registration, lists and counts, lookups, deletion.

use super::*;

/// The three rows of a new account: the account, its credentials, its `unknown` health.
macro_rules! insert_account_rows {
    ($store:expr, $tx:expr, $a:expr) => {{
        let a: &NewAccount = $a;
        let id: AccountRef = sqlx::query_scalar(
            "INSERT INTO accounts (workspace_id, platform, account_id, username, connected_at, scopes, \
         token_expires_at, token_issued_at, custody, instagram_login) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(a.workspace_id)
        .bind(a.platform.as_str())
        .bind(a.account_id.as_str())
        .bind(&a.username)
        .bind(a.connected_at)
        .bind(to_json(&a.scopes))
        .bind(a.token_expires_at)
        .bind(a.connected_at)
        .bind(a.custody)
        .bind(a.instagram_login)
        .fetch_one(&mut *$tx)
        .await
        .map_err(conflict_or)?;
        sqlx::query(
            "INSERT INTO credentials (account_ref, access_token, refresh_token, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(&a.access_token)
        .bind(&a.refresh_token)
        .bind(a.connected_at)
        .execute(&mut *$tx)
        .await?;
        check_token_key!($store, $tx);
        sqlx::query(
            "INSERT INTO account_health (account_ref, platform, workspace_id, next_check_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(a.platform.as_str())
        .bind(a.workspace_id)
        .bind(a.connected_at)
        .execute(&mut *$tx)
        .await?;
        id
    }};
}

impl Store {
    /// Sets who refreshes the account's grant.
    pub async fn set_custody(
        &self,
        account_ref: AccountRef,
        workspace_id: WorkspaceId,
        custody: Custody,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query("UPDATE accounts SET custody = $1 WHERE id = $2")
                .bind(custody)
                .bind(account_ref)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n != 1 {
                return Err(StoreError::NotFound);
            }
            bump_generations!(tx, [workspace_id]);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Sets the login an Instagram account's tokens work with (learned by a check, or
    /// given by a reconnect).
    pub async fn set_instagram_login(
        &self,
        account_ref: AccountRef,
        workspace_id: WorkspaceId,
        login: InstagramLogin,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE accounts SET instagram_login = $1 WHERE id = $2")
                .bind(login)
                .bind(account_ref)
                .execute(&mut *tx)
                .await?;
            bump_generations!(tx, [workspace_id]);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Registers an account with its sealed credentials and an `unknown` health row, in one
    /// transaction. `StoreError::Conflict` if it exists in the workspace.
    pub async fn insert_account(&self, a: &NewAccount) -> Result<AccountRef, StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            let id = insert_account_rows!(self, tx, a);
            bump_generations!(tx, [a.workspace_id]);
            tx.commit().await?;
            Ok(id)
        })
    }

    /// The accounts of a workspace, optionally filtered, ordered by platform then ID.
    /// A page of a workspace's accounts in ID order after `after` (keyset paging: stable
    /// under concurrent inserts and deletes). `f.health` filters on the health as read now
    /// (see [`crate::health::read_view`]).
    pub async fn list_page(&self, f: &ListFilter, after: Option<i64>, limit: i64) -> Result<Vec<Account>, StoreError> {
        let rows: Vec<AccountRow> = match &self.backend {
            Backend::Sqlite(pool) => {
                // The page leaves SQLite as one JSON array of rows, not as 27 values a row:
                // sqlx copies and hands over each value on its own, which made a page of 1,000
                // accounts take 5.8 ms to read instead of about 1 ms (measured with `bench api`).
                let mut q = QueryBuilder::<sqlx::Sqlite>::new(
                    "WITH page AS (SELECT a.id FROM accounts a JOIN account_health h ON h.account_ref = a.id",
                );
                Self::push_filter(&mut q, f);
                if let Some(after) = after {
                    q.push(" AND a.id > ").push_bind(after);
                }
                q.push(" ORDER BY a.id LIMIT ").push_bind(limit);
                q.push(concat!(
                    ") SELECT json_group_array(json_array(",
                    account_columns!(as_json),
                    ")) FROM page p JOIN accounts a ON a.id = p.id \
                     JOIN account_health h ON h.account_ref = a.id"
                ));
                let (json,): (String,) = q.build_query_as().fetch_one(pool).await?;
                let mut rows: Vec<AccountRow> = from_json_rows(&json)?;
                // An aggregate's order is not promised: the page's order is restored here.
                rows.sort_by_key(|r| r.id);
                rows
            }
            // PostgreSQL's binary protocol hands rows over cheaply: plain rows.
            Backend::Postgres(pool) => {
                let mut q = QueryBuilder::<sqlx::Postgres>::new(ACCOUNT_SELECT);
                Self::push_filter(&mut q, f);
                if let Some(after) = after {
                    q.push(" AND a.id > ").push_bind(after);
                }
                q.push(" ORDER BY a.id LIMIT ").push_bind(limit);
                q.build_query_as().fetch_all(pool).await?
            }
        };
        Ok(rows.into_iter().map(Account::from).collect())
    }

    fn push_filter<DB: Database>(q: &mut QueryBuilder<DB>, f: &ListFilter)
    where
        for<'t> i64: Encode<'t, DB> + Type<DB>,
        for<'t> WorkspaceId: Encode<'t, DB> + Type<DB>,
        for<'t> &'t str: Encode<'t, DB> + Type<DB>,
    {
        q.push(" WHERE a.workspace_id = ").push_bind(f.workspace_id);
        if let Some(p) = f.platform {
            q.push(" AND a.platform = ").push_bind(p.as_str());
        }
        if let Some(h) = f.health {
            q.push(" AND ");
            push_read_health(q, f.stale_before);
            q.push(" = ").push_bind(h.as_str());
        }
    }

    /// Every account of every workspace, optionally of one platform (for `check`).
    pub async fn all_accounts(&self, platform: Option<Platform>) -> Result<Vec<Account>, StoreError> {
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new(ACCOUNT_SELECT);
            if let Some(p) = platform {
                q.push(" WHERE a.platform = ").push_bind(p.as_str());
            }
            q.push(" ORDER BY a.id");
            let rows: Vec<AccountRow> = q.build_query_as().fetch_all(pool).await?;
            Ok(rows.into_iter().map(Account::from).collect())
        })
    }

    /// One account of a workspace.
    pub async fn get_account(
        &self,
        workspace_id: WorkspaceId,
        platform: Platform,
        account_id: &AccountId,
    ) -> Result<Option<Account>, StoreError> {
        with_db!(self, |pool| {
            let sql = concat!(
                account_select!(),
                " WHERE a.workspace_id = $1 AND a.platform = $2 AND a.account_id = $3"
            );
            let row: Option<AccountRow> = sqlx::query_as(sql)
                .bind(workspace_id)
                .bind(platform.as_str())
                .bind(account_id.as_str())
                .fetch_optional(pool)
                .await?;
            Ok(row.map(Account::from))
        })
    }

    /// Deletes an account and returns the credentials it had, in one transaction
    /// that locks it first (SQLite: `BEGIN IMMEDIATE`; PostgreSQL: the row): of several concurrent deletions exactly one gets them (and revokes them
    /// at the platform); the others get `None` (the account is gone).
    pub async fn take_account(&self, account_ref: AccountRef) -> Result<Option<SealedCredentials>, StoreError> {
        retrying(|| self.take_account_once(account_ref)).await
    }

    async fn take_account_once(&self, account_ref: AccountRef) -> Result<Option<SealedCredentials>, StoreError> {
        with_db!(self, |pool| {
            // SQLite: the write lock from the start. PostgreSQL: the account's row lock, so
            // that the other deletions wait, then find it gone. NO KEY UPDATE, not UPDATE: a
            // batch of results that holds this account's health row still takes its KEY
            // SHARE (the history row's foreign key) and commits, instead of deadlocking.
            let (mut tx, sql) = if self.is_shared() {
                (
                    pool.begin().await?,
                    "SELECT workspace_id FROM accounts WHERE id = $1 FOR NO KEY UPDATE",
                )
            } else {
                (
                    pool.begin_with("BEGIN IMMEDIATE").await?,
                    "SELECT workspace_id FROM accounts WHERE id = $1",
                )
            };
            let workspace: Option<WorkspaceId> = sqlx::query_scalar(sql)
                .bind(account_ref)
                .fetch_optional(&mut *tx)
                .await?;
            let creds: Option<SealedCredentials> =
                sqlx::query_as("SELECT access_token, refresh_token FROM credentials WHERE account_ref = $1")
                    .bind(account_ref)
                    .fetch_optional(&mut *tx)
                    .await?;
            for sql in [
                "DELETE FROM credentials WHERE account_ref = $1",
                "DELETE FROM account_health WHERE account_ref = $1",
            ] {
                sqlx::query(sql).bind(account_ref).execute(&mut *tx).await?;
            }
            let deleted = sqlx::query("DELETE FROM accounts WHERE id = $1")
                .bind(account_ref)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            bump_generations!(tx, workspace);
            tx.commit().await?;
            Ok(creds.filter(|_| deleted))
        })
    }

    /// How many other accounts on `platforms` share the Meta user `platform_user_id` (whose
    /// grant a revocation would remove for all of them): in workspace `workspace`, and in
    /// every other workspace together.
    pub async fn accounts_sharing_user(
        &self,
        platform_user_id: &str,
        platforms: &[Platform],
        except: AccountRef,
        workspace: WorkspaceId,
    ) -> Result<(i64, i64), StoreError> {
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new("SELECT COALESCE(SUM(CASE WHEN a.workspace_id = ");
            q.push_bind(workspace)
                .push(" THEN 1 ELSE 0 END), 0), COUNT(*) FROM account_health h JOIN accounts a ON a.id = h.account_ref")
                .push(" WHERE h.account_ref <> ")
                .push_bind(except)
                .push(" AND h.platform_user_id = ")
                .push_bind(platform_user_id);
            q.push(" AND h.platform IN (");
            let mut sep = q.separated(", ");
            for p in platforms {
                sep.push_bind(p.as_str());
            }
            q.push(")");
            let (mine, all): (i64, i64) = q.build_query_as().fetch_one(pool).await?;
            Ok((mine, all - mine))
        })
    }

    /// The TikTok accounts, but `except`, that are the TikTok user `open_id` (compared
    /// without dashes, by the user a check learned or else the account ID): in workspace
    /// `workspace`, and in every other workspace together.
    pub async fn accounts_sharing_open_id(
        &self,
        open_id: &str,
        except: AccountRef,
        workspace: WorkspaceId,
    ) -> Result<(i64, i64), StoreError> {
        with_db!(self, |pool| {
            let (mine, all): (i64, i64) = sqlx::query_as(
                "SELECT COALESCE(SUM(CASE WHEN a.workspace_id = $1 THEN 1 ELSE 0 END), 0), COUNT(*) \
                 FROM account_health h JOIN accounts a ON a.id = h.account_ref \
                 WHERE h.account_ref <> $2 AND h.platform = 'tiktok' \
                 AND REPLACE(COALESCE(h.platform_user_id, a.account_id), '-', '') = $3",
            )
            .bind(workspace)
            .bind(except)
            .bind(open_id)
            .fetch_one(pool)
            .await?;
            Ok((mine, all - mine))
        })
    }

    /// Up to `limit` accounts on `platforms`, but `except`, whose platform user is not known
    /// yet (never checked with an answer that names it).
    pub async fn accounts_without_platform_user(
        &self,
        platforms: &[Platform],
        except: AccountRef,
        limit: i64,
    ) -> Result<Vec<AccountRef>, StoreError> {
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new(
                "SELECT h.account_ref FROM account_health h WHERE h.platform_user_id IS NULL AND h.account_ref <> ",
            );
            q.push_bind(except).push(" AND h.platform IN (");
            let mut sep = q.separated(", ");
            for p in platforms {
                sep.push_bind(p.as_str());
            }
            q.push(") ORDER BY h.account_ref LIMIT ").push_bind(limit);
            Ok(q.build_query_scalar().fetch_all(pool).await?)
        })
    }

    /// Records when an account's refresh token expires (given at registration).
    pub async fn set_refresh_expiry(&self, account_ref: AccountRef, at: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("UPDATE accounts SET refresh_expires_at = $1 WHERE id = $2")
                .bind(at)
                .bind(account_ref)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Records the platform user behind an account's token.
    pub async fn set_platform_user(&self, account_ref: AccountRef, user: &str) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("UPDATE account_health SET platform_user_id = $1 WHERE account_ref = $2")
                .bind(user)
                .bind(account_ref)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Makes every account due at `at` (benchmarks: a second sweep over the same accounts).
    pub async fn reschedule_all(&self, at: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("UPDATE account_health SET next_check_at = $1")
                .bind(at)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// What the per-account reconnect series need, for every account (or only `only`).
    pub async fn reconnect_rows(&self, only: Option<AccountRef>) -> Result<Vec<ReconnectRow>, StoreError> {
        with_db!(self, |pool| {
            #[derive(FromRow)]
            struct Row {
                platform: Platform,
                account_id: String,
                workspace: String,
                needs_reconnect: bool,
                token_expires_at: Option<i64>,
                refresh_expires_at: Option<i64>,
                data_access_expires_at: Option<i64>,
                refresh_failures: i64,
                has_refresh_token: bool,
                custody: Custody,
                instagram_login: Option<InstagramLogin>,
                superseded: bool,
            }
            let rows: Vec<Row> = sqlx::query_as(
                "SELECT a.platform, a.account_id, w.name AS workspace, h.needs_reconnect, a.token_expires_at, \
                 a.refresh_expires_at, h.data_access_expires_at, h.refresh_failures, \
                 c.refresh_token IS NOT NULL AS has_refresh_token, a.custody, a.instagram_login, \
                 h.open_alerts LIKE '%refresh_superseded%' AS superseded FROM accounts a \
                 JOIN workspaces w ON w.id = a.workspace_id \
                 JOIN account_health h ON h.account_ref = a.id JOIN credentials c ON c.account_ref = a.id \
                 WHERE CAST($1 AS BIGINT) IS NULL OR a.id = $1",
            )
            .bind(only)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|r| ReconnectRow {
                    platform: r.platform,
                    account_id: r.account_id,
                    workspace: r.workspace,
                    needs_reconnect: r.needs_reconnect,
                    token_expires_at: r.token_expires_at,
                    refresh_expires_at: r.refresh_expires_at,
                    data_access_expires_at: r.data_access_expires_at,
                    // A refresh token used elsewhere: the access token's expiry is the deadline.
                    refresh_failing: r.refresh_failures > 0 || r.superseded,
                    has_refresh_token: r.has_refresh_token,
                    custody: r.custody,
                    instagram_login: r.instagram_login,
                })
                .collect())
        })
    }

    /// One account by row ID.
    pub async fn account_by_ref(&self, account_ref: AccountRef) -> Result<Option<Account>, StoreError> {
        with_db!(self, |pool| {
            let sql = concat!(account_select!(), " WHERE a.id = $1");
            let row: Option<AccountRow> = sqlx::query_as(sql).bind(account_ref).fetch_optional(pool).await?;
            Ok(row.map(Account::from))
        })
    }

    /// Registers many accounts in one transaction (benchmarks and imports).
    pub async fn insert_accounts(&self, accounts: &[NewAccount]) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            for a in accounts {
                insert_account_rows!(self, tx, a);
            }
            bump_generations!(tx, accounts.iter().map(|a| a.workspace_id));
            tx.commit().await?;
            Ok(())
        })
    }
}
