//! Workspaces, their API keys and their alert recipients.

use super::*;

impl Store {
    /// The ID of workspace `name`, creating it if needed.
    pub async fn ensure_workspace(&self, name: &str, now: UnixTime) -> Result<WorkspaceId, StoreError> {
        with_db!(self, |pool| {
            sqlx::query("INSERT INTO workspaces (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(now)
                .execute(pool)
                .await?;
            self.workspace_id(name).await?.ok_or(StoreError::NotFound)
        })
    }

    /// The ID of workspace `name`, if it exists.
    pub async fn workspace_id(&self, name: &str) -> Result<Option<WorkspaceId>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT id FROM workspaces WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Stores a new key's prefix and hash.
    pub async fn insert_api_key(
        &self,
        workspace_id: WorkspaceId,
        prefix: &str,
        hash: &str,
        now: UnixTime,
        scopes: &[crate::domain::KeyScope],
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO api_keys (workspace_id, prefix, key_hash, created_at, scopes) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(workspace_id)
            .bind(prefix)
            .bind(hash)
            .bind(now)
            .bind(crate::domain::KeyScope::join(scopes))
            .execute(pool)
            .await
            .map_err(conflict_or)?;
            Ok(())
        })
    }

    /// Every key, newest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT k.prefix, w.name AS workspace, k.created_at, k.revoked_at, k.scopes \
                 FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id ORDER BY k.created_at DESC, k.id DESC",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Revokes the active keys whose prefix is exactly `prefix`; returns how many.
    pub async fn revoke_api_keys(&self, prefix: &str, now: UnixTime) -> Result<u64, StoreError> {
        with_db!(self, |pool| {
            let r = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE prefix = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(prefix)
                .execute(pool)
                .await?;
            Ok(r.rows_affected())
        })
    }

    /// The live API keys whose prefix is `prefix`: their workspaces, stored hashes (the
    /// caller compares them; see `api::extract`) and scopes (`read,manage`).
    pub async fn api_keys_with_prefix(&self, prefix: &str) -> Result<Vec<(WorkspaceId, String, String)>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT workspace_id, key_hash, scopes FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL",
            )
            .bind(prefix)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The name of workspace `id`, if it exists.
    pub async fn workspace_name(&self, id: WorkspaceId) -> Result<Option<String>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar("SELECT name FROM workspaces WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// How many workspaces have email recipients of their own.
    pub async fn workspaces_with_recipients(&self) -> Result<i64, StoreError> {
        with_db!(self, |pool| {
            Ok(
                sqlx::query_scalar("SELECT COUNT(DISTINCT workspace_id) FROM workspace_recipients")
                    .fetch_one(pool)
                    .await?,
            )
        })
    }

    /// A workspace's own alert recipients.
    pub async fn recipients(&self, workspace_id: WorkspaceId) -> Result<Vec<String>, StoreError> {
        with_db!(self, |pool| {
            Ok(
                sqlx::query_scalar("SELECT email FROM workspace_recipients WHERE workspace_id = $1 ORDER BY email")
                    .bind(workspace_id)
                    .fetch_all(pool)
                    .await?,
            )
        })
    }

    /// Replaces a workspace's alert recipients. Addresses it had keep their confirmation;
    /// new ones are confirmed at once unless `confirm` (`notify.confirm_addresses`).
    pub async fn set_recipients(
        &self,
        workspace_id: WorkspaceId,
        emails: &[String],
        confirm: bool,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            let old: Vec<String> = sqlx::query_scalar("SELECT email FROM workspace_recipients WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_all(&mut *tx)
                .await?;
            for gone in old.iter().filter(|o| !emails.contains(o)) {
                sqlx::query("DELETE FROM workspace_recipients WHERE workspace_id = $1 AND email = $2")
                    .bind(workspace_id)
                    .bind(gone)
                    .execute(&mut *tx)
                    .await?;
            }
            for e in emails {
                sqlx::query(
                    "INSERT INTO workspace_recipients (workspace_id, email, confirmed) VALUES ($1, $2, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(workspace_id)
                .bind(e)
                .bind(!confirm)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// A workspace's confirmed alert recipients (every one, when confirmation is off).
    pub async fn confirmed_recipients(&self, workspace_id: WorkspaceId) -> Result<Vec<String>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT email FROM workspace_recipients WHERE workspace_id = $1 AND confirmed ORDER BY email",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// A workspace's addresses that wait for confirmation.
    pub async fn unconfirmed_recipients(&self, workspace_id: WorkspaceId) -> Result<Vec<String>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT email FROM workspace_recipients WHERE workspace_id = $1 AND NOT confirmed ORDER BY email",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Addresses whose confirmation code has not been sent yet: (workspace, its name, email).
    pub async fn confirmations_to_send(&self) -> Result<Vec<(WorkspaceId, String, String)>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT r.workspace_id, w.name, r.email FROM workspace_recipients r \
                 JOIN workspaces w ON w.id = r.workspace_id \
                 WHERE NOT r.confirmed AND r.confirm_sent_at IS NULL ORDER BY r.workspace_id, r.email LIMIT 1000",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Records that the confirmation code whose hash is `code_hash` was sent to `email`.
    pub async fn confirmation_sent(
        &self,
        workspace_id: WorkspaceId,
        email: &str,
        code_hash: &str,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "UPDATE workspace_recipients SET confirm_code = $3, confirm_sent_at = unixepoch() \
                 WHERE workspace_id = $1 AND email = $2 AND NOT confirmed",
            )
            .bind(workspace_id)
            .bind(email)
            .bind(code_hash)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The hash of the confirmation code sent to `email`, if it waits for one.
    pub async fn confirmation_code(
        &self,
        workspace_id: WorkspaceId,
        email: &str,
    ) -> Result<Option<String>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar::<_, Option<String>>(
                "SELECT confirm_code FROM workspace_recipients WHERE workspace_id = $1 AND email = $2 AND NOT confirmed",
            )
            .bind(workspace_id)
            .bind(email)
            .fetch_optional(pool)
            .await?
            .flatten())
        })
    }

    /// Marks `email` confirmed.
    pub async fn confirm_recipient(&self, workspace_id: WorkspaceId, email: &str) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "UPDATE workspace_recipients SET confirmed = TRUE, confirm_code = NULL WHERE workspace_id = $1 AND email = $2",
            )
            .bind(workspace_id)
            .bind(email)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Takes the workspace's test-message slot: true at most once a minute (the database's
    /// clock).
    pub async fn take_test_slot(&self, workspace_id: WorkspaceId) -> Result<bool, StoreError> {
        with_db!(self, |pool| {
            let r = sqlx::query(
                "INSERT INTO workspace_limits (workspace_id, test_at) VALUES ($1, unixepoch()) \
                 ON CONFLICT (workspace_id) DO UPDATE SET test_at = unixepoch() \
                 WHERE workspace_limits.test_at IS NULL OR workspace_limits.test_at <= unixepoch() - 60",
            )
            .bind(workspace_id)
            .execute(pool)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }

    /// Takes one email from the workspace's hourly budget of `per_hour` (a fixed window that
    /// starts with its first email, on the database's clock). False when it is spent.
    pub async fn take_email(&self, workspace_id: WorkspaceId, per_hour: u32) -> Result<bool, StoreError> {
        with_db!(self, |pool| {
            let r = sqlx::query(
                "INSERT INTO workspace_limits (workspace_id, email_window, emails_sent) VALUES ($1, unixepoch(), 1) \
                 ON CONFLICT (workspace_id) DO UPDATE SET \
                   emails_sent = CASE WHEN workspace_limits.email_window <= unixepoch() - 3600 THEN 1 \
                                      ELSE workspace_limits.emails_sent + 1 END, \
                   email_window = CASE WHEN workspace_limits.email_window <= unixepoch() - 3600 THEN unixepoch() \
                                       ELSE workspace_limits.email_window END \
                 WHERE workspace_limits.email_window <= unixepoch() - 3600 OR workspace_limits.emails_sent < $2",
            )
            .bind(workspace_id)
            .bind(i64::from(per_hour))
            .execute(pool)
            .await?;
            Ok(r.rows_affected() == 1)
        })
    }
}
