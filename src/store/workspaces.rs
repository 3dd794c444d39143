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
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("INSERT INTO api_keys (workspace_id, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4)")
                .bind(workspace_id)
                .bind(prefix)
                .bind(hash)
                .bind(now)
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
                "SELECT k.prefix, w.name AS workspace, k.created_at, k.revoked_at \
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

    /// The workspace of an active key, comparing hashes in constant time.
    pub async fn authenticate(&self, key: &str) -> Result<Option<WorkspaceId>, StoreError> {
        with_db!(self, |pool| {
            if !crypto::looks_like_api_key(key) {
                return Ok(None);
            }
            let hash = crypto::hash_api_key(key);
            let candidates: Vec<(WorkspaceId, String)> =
                sqlx::query_as("SELECT workspace_id, key_hash FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL")
                    .bind(&key[..crypto::KEY_PREFIX_LEN])
                    .fetch_all(pool)
                    .await?;
            let mut found = None;
            for (ws, stored) in candidates {
                if crypto::hashes_equal(&stored, &hash) {
                    found = Some(ws);
                }
            }
            Ok(found)
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

    /// Replaces a workspace's alert recipients.
    pub async fn set_recipients(&self, workspace_id: WorkspaceId, emails: &[String]) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM workspace_recipients WHERE workspace_id = $1")
                .bind(workspace_id)
                .execute(&mut *tx)
                .await?;
            for e in emails {
                sqlx::query(
                    "INSERT INTO workspace_recipients (workspace_id, email) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(workspace_id)
                .bind(e)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }
}
