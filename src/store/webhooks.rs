//! Webhook receivers of workspaces, and the delivery state of every non-email receiver.

use super::*;

/// A workspace's webhook, as stored (the secret still sealed).
#[derive(Debug, Clone, FromRow)]
pub struct WebhookRow {
    /// Row ID (the receiver key is `webhook:<id>`).
    pub id: i64,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Where to POST.
    pub url: String,
    /// Message shape.
    pub format: WebhookFormat,
    /// Event types it wants; `None`: every type.
    pub events: Option<JsonList>,
    /// The sealed signing secret.
    pub secret: Vec<u8>,
}

/// A webhook to store; `secret` is `None` to keep the one stored for the same URL.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Where to POST.
    pub url: String,
    /// Message shape.
    pub format: WebhookFormat,
    /// Event types it wants; `None`: every type.
    pub events: Option<Vec<String>>,
    /// The sealed signing secret, or `None` to keep the stored one.
    pub secret: Option<Vec<u8>>,
}

/// The delivery state of a receiver.
#[derive(Debug, Clone, Default, FromRow)]
pub struct ReceiverStatus {
    /// Receiver key.
    pub receiver: String,
    /// Start of its current run of failed deliveries.
    pub failing_since: Option<UnixTime>,
    /// When it answered 410 Gone.
    pub disabled_at: Option<UnixTime>,
    /// Why it is disabled.
    pub disabled_reason: Option<String>,
}

impl Store {
    /// A workspace's webhooks, oldest first.
    pub async fn webhooks(&self, workspace_id: WorkspaceId) -> Result<Vec<WebhookRow>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT id, workspace_id, url, format, events, secret FROM webhooks WHERE workspace_id = $1 ORDER BY id",
            )
            .bind(workspace_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Replaces a workspace's webhooks: those not in `hooks` go (with their state), the
    /// others are inserted or updated; a `None` secret keeps the one stored for that URL (the
    /// caller gives a secret for every URL not stored yet).
    pub async fn set_webhooks(
        &self,
        workspace_id: WorkspaceId,
        hooks: &[NewWebhook],
        now: UnixTime,
    ) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            let mut tx = pool.begin().await?;
            let old: Vec<(i64, String)> = sqlx::query_as("SELECT id, url FROM webhooks WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_all(&mut *tx)
                .await?;
            for (id, url) in &old {
                if !hooks.iter().any(|h| &h.url == url) {
                    sqlx::query("DELETE FROM webhooks WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("DELETE FROM receiver_status WHERE receiver = $1")
                        .bind(format!("webhook:{id}"))
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for h in hooks {
                let events = h.events.as_deref().map(to_json);
                match &h.secret {
                    Some(secret) => {
                        sqlx::query(
                            "INSERT INTO webhooks (workspace_id, url, format, events, secret, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id, url) DO UPDATE SET \
                             format = excluded.format, events = excluded.events, secret = excluded.secret",
                        )
                        .bind(workspace_id)
                        .bind(&h.url)
                        .bind(h.format)
                        .bind(events)
                        .bind(secret)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        check_token_key!(self, tx);
                    }
                    None => {
                        sqlx::query(
                            "UPDATE webhooks SET format = $1, events = $2 WHERE workspace_id = $3 AND url = $4",
                        )
                        .bind(h.format)
                        .bind(events)
                        .bind(workspace_id)
                        .bind(&h.url)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                // Setting a receiver again enables it again.
                sqlx::query(
                    "UPDATE receiver_status SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL \
                     WHERE receiver = (SELECT 'webhook:' || id FROM webhooks WHERE workspace_id = $1 AND url = $2)",
                )
                .bind(workspace_id)
                .bind(&h.url)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// The state of every receiver that has one (a receiver without a row is fine).
    pub async fn receiver_statuses(&self) -> Result<Vec<ReceiverStatus>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT receiver, failing_since, disabled_at, disabled_reason FROM receiver_status ORDER BY receiver",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Records a delivery to `receiver`: `Ok` ends its run of failures, a failure starts one
    /// (or continues it).
    pub async fn receiver_result(&self, receiver: &str, ok: bool, now: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            // Both statements take both parameters (PostgreSQL refuses a parameter unused).
            let sql = if ok {
                "UPDATE receiver_status SET failing_since = NULL WHERE receiver = $1 AND $2 = $2"
            } else {
                "INSERT INTO receiver_status (receiver, failing_since) VALUES ($1, $2) \
                 ON CONFLICT (receiver) DO UPDATE SET failing_since = COALESCE(receiver_status.failing_since, $2)"
            };
            sqlx::query(sql).bind(receiver).bind(now).execute(pool).await?;
            Ok(())
        })
    }

    /// Disables `receiver` (it answered 410 Gone).
    pub async fn disable_receiver(&self, receiver: &str, reason: &str, now: UnixTime) -> Result<(), StoreError> {
        with_db!(self, |pool| {
            sqlx::query(
                "INSERT INTO receiver_status (receiver, disabled_at, disabled_reason) VALUES ($1, $2, $3) \
                 ON CONFLICT (receiver) DO UPDATE SET disabled_at = $2, disabled_reason = $3",
            )
            .bind(receiver)
            .bind(now)
            .bind(reason)
            .execute(pool)
            .await?;
            Ok(())
        })
    }
}
