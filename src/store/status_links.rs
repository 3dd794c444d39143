//! Share links of a workspace's status page and badges, stored hashed.

use super::*;

/// A share link as listed: never the token.
#[derive(Debug, Clone, FromRow)]
pub struct StatusLinkInfo {
    /// The token's first characters.
    pub prefix: String,
    /// When it was made.
    pub created_at: UnixTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<UnixTime>,
}

impl Store {
    /// Stores a new share link of `workspace_id`.
    pub async fn insert_status_link(
        &self,
        workspace_id: WorkspaceId,
        prefix: &str,
        hash: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("INSERT INTO status_links (workspace_id, prefix, hash, created_at) VALUES ($1, $2, $3, $4)")
                .bind(workspace_id)
                .bind(prefix)
                .bind(hash)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// A workspace's share links, newest first.
    pub async fn status_links(&self, workspace_id: WorkspaceId) -> Result<Vec<StatusLinkInfo>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT prefix, created_at, revoked_at FROM status_links WHERE workspace_id = $1 ORDER BY id DESC",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Revokes the workspace's active share links with `prefix`; how many.
    pub async fn revoke_status_link(
        &self,
        workspace_id: WorkspaceId,
        prefix: &str,
        now: UnixTime,
    ) -> Result<u64, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query(
                "UPDATE status_links SET revoked_at = $1 WHERE workspace_id = $2 AND prefix = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(workspace_id)
            .bind(prefix)
            .execute(pool)
            .await?
            .rows_affected())
        })
    }

    /// The workspace an active share link with this hash shows.
    pub async fn status_link_workspace(&self, hash: &str) -> Result<Option<WorkspaceId>, StoreError> {
        with_db!(self, |pool| {
            Ok(
                sqlx::query_scalar("SELECT workspace_id FROM status_links WHERE hash = $1 AND revoked_at IS NULL")
                    .bind(hash)
                    .fetch_optional(pool)
                    .await?,
            )
        })
    }
}
