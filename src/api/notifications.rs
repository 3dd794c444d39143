//! `/v1/notifications`: the workspace's own alert recipients (added to `email.to`) and its
//! webhooks, and a test message to all of them.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::{ApiError, ApiJson, Workspace};
use crate::domain::WorkspaceId;
use crate::domain::truncate_for_message;

/// The recipients of a workspace's alerts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Notifications {
    /// Email addresses (at most 20).
    pub emails: Vec<String>,
    /// In an answer: the addresses of `emails` that wait for confirmation
    /// (`notify.confirm_addresses`); they get a confirmation code and no alert until the
    /// workspace confirms them. Ignored in a request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<String>,
    /// Webhooks (at most 10). Absent in a request: the stored ones stay as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<Vec<Webhook>>,
    /// In an answer: what keeps these recipients from getting alerts on this daemon (email
    /// addresses while `email.smtp_url` is not set). Ignored in a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// The warning for email recipients on a daemon that sends no email.
pub(super) const NO_SMTP: &str = "email.smtp_url is not set on this daemon: these addresses get no email until the \
     operator sets it (webhooks still work)";

/// One webhook receiver.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Webhook {
    /// Where to POST: `https://` (a public address).
    pub url: String,
    /// `json` (default), `slack`, `discord` or `teams`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Event types to send (`account.token_expiring`, `account.needs_reconnect`, ...); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// In a request: the signing secret to use (at most 200 characters, at least 32 random bytes); absent, a new one is
    /// made for a new URL and the stored one is kept for a known URL. In an answer: the secret,
    /// only in the answer to the PUT that set it (it is never shown again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// In an answer: the receiver answered 410 Gone and gets nothing until it is set again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// In an answer: why it is disabled, or since when its deliveries fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A plain address check: one `@`, a dot in the domain, no spaces or angle brackets.
fn valid_email(e: &str) -> bool {
    let Some((local, domain)) = e.split_once('@') else {
        return false;
    };
    e.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && e.chars()
            .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | ',' | ';' | '"' | '(' | ')'))
        && e.parse::<lettre::message::Mailbox>().is_ok()
}

/// The workspace's alert recipients.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("api_key" = [])),
    responses((status = 200, body = Notifications), (status = 401, body = super::error::ErrorBody)))]
pub async fn show(State(state): State<ApiState>, ws: Workspace) -> Result<Json<Notifications>, ApiError> {
    Ok(Json(Notifications {
        emails: state.store.recipients(ws.0).await?,
        unconfirmed: state.store.unconfirmed_recipients(ws.0).await?,
        webhooks: Some(stored_webhooks(&state, ws.0).await?),
        warning: None,
    }))
}

/// The workspace's webhooks as shown: never their secrets.
async fn stored_webhooks(state: &ApiState, workspace_id: WorkspaceId) -> Result<Vec<Webhook>, ApiError> {
    let statuses = state.store.receiver_statuses().await?;
    Ok(state
        .store
        .webhooks(workspace_id)
        .await?
        .into_iter()
        .map(|w| {
            let st = statuses.iter().find(|s| s.receiver == format!("webhook:{}", w.id));
            let status = st.and_then(|s| match (&s.disabled_reason, s.failing_since) {
                (Some(r), _) => Some(format!("disabled: {r}")),
                (None, Some(t)) => Some(format!("failing since {}", crate::domain::rfc3339(t))),
                _ => None,
            });
            Webhook {
                url: w.url,
                format: Some(w.format.as_str().to_owned()),
                events: w.events.map(|e| e.0),
                secret: None,
                disabled: st.is_some_and(|s| s.disabled_at.is_some()),
                status,
            }
        })
        .collect())
}

/// Replace the workspace's alert recipients.
#[utoipa::path(put, path = "/v1/notifications", tag = "notifications", request_body = Notifications,
    security(("api_key" = [])),
    responses((status = 200, body = Notifications), (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody)))]
pub async fn replace(
    State(state): State<ApiState>,
    ws: Workspace,
    ApiJson(body): ApiJson<Notifications>,
) -> Result<Json<Notifications>, ApiError> {
    if body.emails.len() > 20 {
        return Err(ApiError::bad_request("invalid_emails", "At most 20 addresses."));
    }
    let mut emails = Vec::new();
    for e in body.emails {
        let e = e.trim().to_owned();
        if !valid_email(&e) {
            return Err(ApiError::bad_request(
                "invalid_emails",
                format!(
                    "'{}' is not an email address like ops@example.com.",
                    truncate_for_message(&e)
                ),
            ));
        }
        if !emails.contains(&e) {
            emails.push(e);
        }
    }
    let shown = match body.webhooks {
        Some(hooks) => Some(set_webhooks(&state, ws.0, hooks).await?),
        None => None,
    };
    let confirm = state.config().notify.confirm_addresses;
    state.store.set_recipients(ws.0, &emails, confirm).await?;
    if confirm {
        // Their confirmation codes go out with the next delivery round.
        state.outbox.alerts_due.notify_one();
    }
    let webhooks = match shown {
        // The stored ones, with the secrets this request set (shown this once).
        Some(secrets) => Some(
            stored_webhooks(&state, ws.0)
                .await?
                .into_iter()
                .map(|mut w| {
                    w.secret = secrets.iter().find(|(u, _)| *u == w.url).map(|(_, s)| s.clone());
                    w
                })
                .collect(),
        ),
        None => Some(stored_webhooks(&state, ws.0).await?),
    };
    let warning = (!emails.is_empty() && state.config().email.smtp_url.is_none()).then(|| NO_SMTP.to_owned());
    Ok(Json(Notifications {
        emails,
        unconfirmed: state.store.unconfirmed_recipients(ws.0).await?,
        webhooks,
        warning,
    }))
}

fn invalid_webhook(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_webhook", message)
}

/// Validates and stores `hooks`; returns the secrets set by this request, by URL.
async fn set_webhooks(
    state: &ApiState,
    workspace_id: WorkspaceId,
    hooks: Vec<Webhook>,
) -> Result<Vec<(String, String)>, ApiError> {
    use crate::alerts::webhook::{Format, event_types, new_secret, secret_context, validate_url};
    use secrecy::ExposeSecret;
    if hooks.len() > 10 {
        return Err(invalid_webhook("At most 10 webhooks."));
    }
    let stored: Vec<String> = state
        .store
        .webhooks(workspace_id)
        .await?
        .into_iter()
        .map(|w| w.url)
        .collect();
    let notify = &state.config().notify;
    let mut rows = Vec::new();
    let mut secrets = Vec::new();
    for h in hooks {
        let url = validate_url(&h.url, notify).map_err(invalid_webhook)?.to_string();
        if rows.iter().any(|r: &crate::store::NewWebhook| r.url == url) {
            return Err(invalid_webhook("A webhook URL is listed twice."));
        }
        let format = Format::parse(h.format.as_deref().unwrap_or("json")).map_err(invalid_webhook)?;
        let known = event_types();
        if let Some(bad) = h.events.iter().flatten().find(|e| !known.contains(&e.as_str())) {
            return Err(invalid_webhook(format!(
                "'{}' is not an event type: use {}.",
                truncate_for_message(bad),
                known.join(", ")
            )));
        }
        let secret = match h.secret {
            Some(s)
                if s.chars().count() > 200
                    || s.chars().any(|c| !c.is_ascii_graphic())
                    || !crate::alerts::webhook::strong_enough(&s) =>
            {
                return Err(invalid_webhook(
                    "A webhook secret is at most 200 printable ASCII characters, without spaces, and holds at least \
                     32 random bytes (e.g. 64 hex digits or 43 base64 characters); leave it out to get one made.",
                ));
            }
            Some(s) => Some(secrecy::SecretString::from(s)),
            None if stored.contains(&url) => None,
            None => Some(new_secret()),
        };
        let sealed = secret
            .as_ref()
            .map(|s| state.sealer.seal(&secret_context(workspace_id, &url), s));
        if let Some(s) = &secret {
            secrets.push((url.clone(), s.expose_secret().to_owned()));
        }
        rows.push(crate::store::NewWebhook {
            url,
            format,
            events: h.events,
            secret: sealed,
        });
    }
    state.store.set_webhooks(workspace_id, &rows, state.clock.now()).await?;
    Ok(secrets)
}

/// One event as a `json` webhook receives it (one POST per event), signed in the header
/// `socialsyncer-signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` with the receiver's
/// secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookEvent {
    /// The event's stable key: the same event delivered twice has the same `id`.
    pub id: String,
    /// `account.token_expiring`, `account.needs_reconnect`, `account.permissions_missing`,
    /// `account.refresh_failed`, `account.platform_unreachable`,
    /// `account.data_access_expiring`, `account.recovered`, or `test`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The finer alert kind (`expiring_3days`, `token_invalid`, ...).
    pub kind: String,
    /// When the event was raised, RFC 3339 UTC.
    pub occurred_at: String,
    /// The workspace's name.
    pub workspace: String,
    /// The account.
    pub account: WebhookAccount,
    /// The account's health: `healthy`, `warning`, `unhealthy` or `unknown`.
    pub health: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub recommendations: Vec<String>,
    /// Expiry warnings: when the account must be reconnected by, RFC 3339 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconnect_by: Option<String>,
}

/// The account an event is about.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAccount {
    /// Platform, lower-case.
    pub platform: String,
    /// The platform's account ID.
    pub account_id: String,
    /// Display name.
    pub username: String,
}

/// What one receiver answered to the test message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestResult {
    /// The receiver: an email address, or a webhook's scheme and host.
    pub receiver: String,
    /// `delivered`, or what went wrong.
    pub result: String,
}

/// The answers to a test message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TestResults {
    /// One per receiver.
    pub results: Vec<TestResult>,
}

/// Send a test message to every receiver of the workspace.
#[utoipa::path(post, path = "/v1/notifications/test", tag = "notifications", security(("api_key" = [])),
    responses((status = 200, body = TestResults), (status = 401, body = super::error::ErrorBody),
              (status = 429, description = "A test was sent less than a minute ago", body = super::error::ErrorBody)))]
pub async fn test(State(state): State<ApiState>, ws: Workspace) -> Result<Json<TestResults>, ApiError> {
    if !state.store.take_test_slot(ws.0).await? {
        return Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "test_too_soon",
            "A test message goes out at most once a minute per workspace; retry in a minute.",
        )
        .retry_after(60));
    }
    let results = crate::alerts::test_message(&state.outbox, ws.0, false)
        .await?
        .into_iter()
        .map(|(receiver, result)| TestResult { receiver, result })
        .collect();
    Ok(Json(TestResults { results }))
}

/// A confirmation code, as the address got it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// The address, as set in `emails`.
    pub email: String,
    /// The code the confirmation message gave.
    pub code: String,
}

/// Confirm an address (`notify.confirm_addresses`) with the code it was sent.
#[utoipa::path(post, path = "/v1/notifications/confirm", tag = "notifications", request_body = Confirmation,
    security(("api_key" = [])),
    responses((status = 200, body = Notifications),
              (status = 400, description = "Not an address waiting for confirmation, or a wrong code", body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody)))]
pub async fn confirm(
    State(state): State<ApiState>,
    ws: Workspace,
    ApiJson(body): ApiJson<Confirmation>,
) -> Result<Json<Notifications>, ApiError> {
    let wrong = || {
        ApiError::bad_request(
            "invalid_confirmation",
            "That address does not wait for confirmation, or the code is not the one it was sent.",
        )
    };
    let email = body.email.trim();
    let stored = state.store.confirmation_code(ws.0, email).await?.ok_or_else(wrong)?;
    if !crate::crypto::hashes_equal(&stored, &crate::alerts::confirmation_hash(body.code.trim())) {
        return Err(wrong());
    }
    state.store.confirm_recipient(ws.0, email).await?;
    show(State(state), ws).await
}
