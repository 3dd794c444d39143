//! `GET /v1/events`: a workspace's events, newest first: its accounts' health changes
//! (`account.health_changed`) and the alert events raised for them, in the webhooks' own
//! event types and shape (`account.needs_reconnect`, `account.recovered`, ...), each with
//! when it was delivered. Keyset paging with an authenticated cursor.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::lists::{decode_position, encode_position};
use super::{ApiError, ApiQuery, ApiState, Workspace};
use crate::domain::{AccountId, AlertKind, Platform, rfc3339};
use crate::store::{EventFilter, EventRow};

/// `GET /v1/events` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Events a page (1 to 1000, default 100).
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this platform.
    pub platform: Option<String>,
    /// Only this account ID (with `platform`).
    pub account: Option<String>,
}

/// `GET /v1/events` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Events {
    /// The events, newest first. A health change: `{"id", "type": "account.health_changed",
    /// "occurredAt", "account", "health", "previousHealth", "needsPerson", "reason"}`; an
    /// alert event: the webhook event (`{"id", "type", "kind", "occurredAt", "account",
    /// "health", "problem", "recommendations"}`) with `deliveredAt` once delivered.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

fn event(r: &EventRow) -> Value {
    let account = json!({"platform": r.platform.as_str(), "accountId": r.account_id, "username": r.username});
    if r.source == 1 {
        return json!({
            "id": format!("transition:{}", r.id),
            "type": "account.health_changed",
            "occurredAt": rfc3339(r.at),
            "account": account,
            "health": r.health,
            "previousHealth": r.from_health,
            "needsPerson": r.needs_person.unwrap_or(false),
            "reason": r.detail,
        });
    }
    let kind: Option<AlertKind> = r.kind.as_deref().and_then(|k| k.parse().ok());
    let mut v = json!({
        "id": r.dedup_key,
        "type": kind.as_ref().map_or("account.alert", AlertKind::event_type),
        "kind": r.kind,
        "occurredAt": rfc3339(r.at),
        "account": account,
        "health": r.health,
        "problem": r.detail,
        "recommendations": r.action.iter().collect::<Vec<_>>(),
    });
    if let Some(t) = r.sent_at {
        v["deliveredAt"] = json!(rfc3339(t));
    }
    v
}

/// A workspace's health changes and alert events, newest first.
#[utoipa::path(get, path = "/v1/events", tag = "accounts", params(EventsQuery),
    security(("api_key" = [])),
    responses((status = 200, body = Events),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody)))]
pub async fn events(
    State(state): State<ApiState>,
    ws: Workspace,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Json<Events>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("invalid_limit", "limit must be 1 to 1000."));
    }
    let since = q
        .since
        .as_deref()
        .map(crate::domain::parse_rfc3339)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_since", format!("since: {m}")))?;
    let platform: Option<Platform> = q
        .platform
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e: crate::domain::UnknownPlatform| ApiError::bad_request("unknown_platform", e.to_string()))?;
    let account_id = match (&q.account, platform) {
        (Some(a), Some(p)) => Some(
            AccountId::parse(p, a)
                .map_err(|e| ApiError::bad_request("invalid_account_id", e.to_string()))?
                .as_str()
                .to_owned(),
        ),
        (Some(_), None) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "account needs platform: an account ID is only unique on its platform.",
            ));
        }
        (None, _) => None,
    };
    // A cursor continues only the query it was given for.
    let query = format!("events|{}|{:?}|{:?}|{:?}", (ws.0).0, since, platform, account_id);
    let before = match q.cursor.as_deref() {
        Some(c) => {
            let p = decode_position(&state.sealer, &query, c)?;
            let mut parts = p.split(':').map(str::parse::<i64>);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(at)), Some(Ok(source)), Some(Ok(id))) => Some((at, source, id)),
                _ => {
                    return Err(ApiError::bad_request(
                        "invalid_cursor",
                        "cursor is not a nextCursor this API gave",
                    ));
                }
            }
        }
        None => None,
    };
    let filter = EventFilter {
        since,
        platform,
        account_id,
    };
    let mut rows = state.store.events_page(ws.0, &filter, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = rows
        .last()
        .filter(|_| more)
        .map(|r| encode_position(&state.sealer, &query, &format!("{}:{}:{}", r.at, r.source, r.id)));
    Ok(Json(Events {
        events: rows.iter().map(event).collect(),
        next_cursor,
    }))
}
