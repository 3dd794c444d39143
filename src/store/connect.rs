//! Connect sessions: created by `POST /v1/connect`, taken once by the platform's callback.

use super::*;

/// A connect session as stored.
#[derive(Debug, Clone, FromRow)]
pub struct ConnectSession {
    /// The random ID (the link's last segment and the OAuth `state`).
    pub id: String,
    /// The workspace the account joins.
    pub workspace_id: WorkspaceId,
    /// The platform.
    pub platform: Platform,
    /// The account a reconnect is pinned to.
    pub account_id: Option<String>,
    /// The sealed PKCE verifier.
    pub verifier: Vec<u8>,
    /// Where the browser goes back to.
    pub redirect_url: String,
    /// When it stops being valid.
    pub expires_at: UnixTime,
    /// When the callback took it.
    pub used_at: Option<UnixTime>,
    /// An alert's reconnect link: a failed attempt gives it back.
    pub retry: bool,
}

impl Store {
    /// Stores a new session.
    pub async fn create_connect_session(&self, s: &ConnectSession, now: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO connect_sessions (id, workspace_id, platform, account_id, verifier, redirect_url, \
                 created_at, expires_at, retry) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&s.id)
            .bind(s.workspace_id)
            .bind(s.platform.as_str())
            .bind(&s.account_id)
            .bind(&s.verifier)
            .bind(&s.redirect_url)
            .bind(now)
            .bind(s.expires_at)
            .bind(s.retry)
            .execute(pool)
            .await?;
            // Old sessions go, a day after they expired.
            sqlx::query("DELETE FROM connect_sessions WHERE expires_at < $1")
                .bind(now - 86_400)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// A session by ID, whatever its state.
    pub async fn connect_session(&self, id: &str) -> Result<Option<ConnectSession>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, workspace_id, platform, account_id, verifier, redirect_url, expires_at, used_at, retry \
                 FROM connect_sessions WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// The ID of an account's reconnect link that still works, if there is one.
    pub async fn live_reconnect_link(
        &self,
        workspace_id: WorkspaceId,
        platform: Platform,
        account_id: &str,
        now: UnixTime,
    ) -> Result<Option<String>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar(
                "SELECT id FROM connect_sessions WHERE workspace_id = $1 AND platform = $2 AND account_id = $3 \
                 AND retry AND used_at IS NULL AND expires_at > $4 ORDER BY expires_at DESC LIMIT 1",
            )
            .bind(workspace_id)
            .bind(platform.as_str())
            .bind(account_id)
            .bind(now)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Gives back a session taken by a callback that failed (an alert's reconnect link is
    /// used only by a success).
    pub async fn give_back_connect_session(&self, id: &str) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("UPDATE connect_sessions SET used_at = NULL WHERE id = $1 AND retry")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Takes the session for its callback: true for exactly one caller, while it is unused
    /// and unexpired.
    pub async fn take_connect_session(&self, id: &str, now: UnixTime) -> Result<bool, StoreError> {
        with_db!(self, |pool| {
            let n = sqlx::query(
                "UPDATE connect_sessions SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND expires_at > $2",
            )
            .bind(id)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected();
            Ok(n == 1)
        })
    }

    /// Holds the sealed accounts a consent granted until the person chooses among them.
    pub async fn hold_connect_grant(&self, id: &str, sealed: &[u8]) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query("UPDATE connect_sessions SET granted = $2 WHERE id = $1")
                .bind(id)
                .bind(sealed)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The sealed accounts a session holds for a choice, while it is unexpired.
    pub async fn connect_grant(&self, id: &str, now: UnixTime) -> Result<Option<Vec<u8>>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_scalar::<_, Option<Vec<u8>>>(
                "SELECT granted FROM connect_sessions WHERE id = $1 AND expires_at > $2",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(pool)
            .await?
            .flatten())
        })
    }

    /// Takes the held accounts for the choice: true for exactly one caller (the same
    /// `sealed` it read), and the tokens are gone from the row.
    pub async fn take_connect_grant(&self, id: &str, sealed: &[u8]) -> Result<bool, StoreError> {
        with_db!(self, |pool| {
            let n = sqlx::query("UPDATE connect_sessions SET granted = NULL WHERE id = $1 AND granted = $2")
                .bind(id)
                .bind(sealed)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(n == 1)
        })
    }
}
