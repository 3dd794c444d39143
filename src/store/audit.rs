//! The audit trail: who read, pushed, registered, deleted or changed the custody of which
//! account's tokens, and what came of it. Never a token.

use super::*;

/// One audited action.
#[derive(Debug, Clone, FromRow)]
pub struct AuditEvent {
    /// Row ID (newest first; the cursor continues below it).
    pub id: i64,
    /// When.
    pub at: UnixTime,
    /// The prefix of the API key that acted (`cli` for the command line).
    pub key_prefix: String,
    /// `token.read`, `tokens.replace`, `custody.change`, `account.register`, `account.delete`.
    pub action: String,
    /// The account's platform.
    pub platform: Option<String>,
    /// The account's ID.
    pub account_id: Option<String>,
    /// `ok`, or the error code it was refused with.
    pub result: String,
}

/// An action to record.
#[derive(Debug, Clone)]
pub struct NewAuditEvent<'a> {
    /// The workspace acted on.
    pub workspace_id: WorkspaceId,
    /// The key's prefix (`cli` for the command line).
    pub key_prefix: &'a str,
    /// What was done.
    pub action: &'a str,
    /// The account, when one was named.
    pub account: Option<(Platform, &'a str)>,
    /// `ok` or an error code.
    pub result: &'a str,
}

impl Store {
    /// Records an action.
    pub async fn record_audit(&self, e: &NewAuditEvent<'_>, at: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO audit_events (workspace_id, at, key_prefix, action, platform, account_id, result) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(e.workspace_id)
            .bind(at)
            .bind(e.key_prefix)
            .bind(e.action)
            .bind(e.account.map(|(p, _)| p.as_str()))
            .bind(e.account.map(|(_, id)| id))
            .bind(e.result)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// A workspace's audit events, newest first, below row `before` (the cursor), at most
    /// `limit`.
    pub async fn audit_page(
        &self,
        workspace_id: WorkspaceId,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, at, key_prefix, action, platform, account_id, result FROM audit_events \
                 WHERE workspace_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(workspace_id)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }
}
