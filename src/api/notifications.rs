//! `/v1/notifications`: the workspace's own alert recipients (added to `email.to`).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiJson, Workspace};
use crate::app::AppState;
use crate::domain::truncate_for_message;

/// The routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/notifications", get(show).put(replace))
}

/// The recipients of a workspace's alert emails.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// Email addresses (at most 20).
    pub emails: Vec<String>,
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
pub async fn show(State(state): State<AppState>, ws: Workspace) -> Result<Json<Notifications>, ApiError> {
    Ok(Json(Notifications {
        emails: state.store.recipients(ws.0).await?,
    }))
}

/// Replace the workspace's alert recipients.
#[utoipa::path(put, path = "/v1/notifications", tag = "notifications", request_body = Notifications,
    security(("api_key" = [])),
    responses((status = 200, body = Notifications), (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody)))]
pub async fn replace(
    State(state): State<AppState>,
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
    state.store.set_recipients(ws.0, &emails).await?;
    Ok(Json(Notifications { emails }))
}
