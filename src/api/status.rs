//! Share links of a workspace's health (`POST /v1/status-links`, `GET`, `DELETE
//! /v1/status-links/{prefix}`): a random read-only token, stored hashed and shown once, that
//! opens the workspace's badges (`GET /status/{token}/badge.svg`, one account's at
//! `/status/{token}/{platform}/{accountId}/badge.svg`; `?style=shields` answers a shields.io
//! endpoint's JSON). An unknown or revoked token answers 404, and a token shows only its own
//! workspace.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiPath, ApiQuery, ApiState, Workspace};
use crate::domain::{AccountId, Health, Platform, WorkspaceId, rfc3339};
use crate::store::ListFilter;

/// A share link, as made (the token shown this once) or listed (never the token).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusLink {
    /// The token: only in the answer that made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The token's first characters: `DELETE /v1/status-links/{prefix}` revokes it.
    pub prefix: String,
    /// The workspace badge, relative to this server (with the token: only when made).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub badge_url: Option<String>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC, when revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// `GET /v1/status-links` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusLinks {
    /// The workspace's share links, newest first.
    pub links: Vec<StatusLink>,
}

/// Make a read-only share link of the workspace's status.
#[utoipa::path(post, path = "/v1/status-links", tag = "status", operation_id = "create_status_link", security(("api_key" = [])),
    responses((status = 201, body = StatusLink), (status = 401, body = super::error::ErrorBody)))]
pub async fn create(State(state): State<ApiState>, ws: Workspace) -> Result<(StatusCode, Json<StatusLink>), ApiError> {
    let t = crate::crypto::generate_share_token();
    let now = state.clock.now();
    state.store.insert_status_link(ws.0, &t.prefix, &t.hash, now).await?;
    use secrecy::ExposeSecret;
    let token = t.secret.expose_secret().to_owned();
    Ok((
        StatusCode::CREATED,
        Json(StatusLink {
            badge_url: Some(format!("/status/{token}/badge.svg")),
            token: Some(token),
            prefix: t.prefix,
            created_at: rfc3339(now),
            revoked_at: None,
        }),
    ))
}

/// The workspace's share links (never their tokens).
#[utoipa::path(get, path = "/v1/status-links", tag = "status", operation_id = "list_status_links", security(("api_key" = [])),
    responses((status = 200, body = StatusLinks), (status = 401, body = super::error::ErrorBody)))]
pub async fn list(State(state): State<ApiState>, ws: Workspace) -> Result<Json<StatusLinks>, ApiError> {
    let links = state
        .store
        .status_links(ws.0)
        .await?
        .into_iter()
        .map(|l| StatusLink {
            token: None,
            prefix: l.prefix,
            badge_url: None,
            created_at: rfc3339(l.created_at),
            revoked_at: l.revoked_at.map(rfc3339),
        })
        .collect();
    Ok(Json(StatusLinks { links }))
}

/// Revoke a share link: its pages and badges answer 404 from now on.
#[utoipa::path(delete, path = "/v1/status-links/{prefix}", tag = "status", operation_id = "revoke_status_link",
    params(("prefix" = String, Path)), security(("api_key" = [])),
    responses((status = 204), (status = 401, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn revoke(
    State(state): State<ApiState>,
    ws: Workspace,
    ApiPath(prefix): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    match state
        .store
        .revoke_status_link(ws.0, prefix.trim(), state.clock.now())
        .await?
    {
        0 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "No active share link of this workspace has that prefix; GET /v1/status-links lists them.",
        )),
        _ => {
            // Its pages are not served from a remembered lookup any more.
            state.list_cache.forget_recent();
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// `?style=`: `shields` for a shields.io endpoint's JSON; the SVG otherwise.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct BadgeQuery {
    /// `shields`: `{"schemaVersion": 1, "label", "message", "color"}` for
    /// `https://img.shields.io/endpoint?url=...`.
    pub style: Option<String>,
}

/// The workspace a share token opens, or 404.
async fn opened(state: &ApiState, token: &str) -> Result<WorkspaceId, Response> {
    let gone = || (StatusCode::NOT_FOUND, "no such status link\n").into_response();
    if !crate::crypto::looks_like_share_token(token) {
        return Err(gone());
    }
    match state
        .store
        .status_link_workspace(&crate::crypto::hash_api_key(token))
        .await
    {
        Ok(Some(ws)) => Ok(ws),
        Ok(None) => Err(gone()),
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// A badge's message and colour for a workspace's counts.
fn summary(counts: &[(Health, i64)]) -> (String, &'static str) {
    let n = |h: Health| counts.iter().filter(|(c, _)| *c == h).map(|(_, n)| n).sum::<i64>();
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    match (n(Health::Unhealthy), n(Health::Warning), n(Health::Healthy)) {
        (0, 0, _) if total == 0 => ("no accounts".into(), "lightgrey"),
        (u, _, _) if u > 0 => (format!("{u} unhealthy"), "red"),
        (_, w, _) if w > 0 => (format!("{w} warning"), "orange"),
        (_, _, h) if h == total => (format!("{h} healthy"), "brightgreen"),
        (_, _, h) => (format!("{h} healthy, {} unknown", total - h), "lightgrey"),
    }
}

fn colour(health: Health) -> &'static str {
    match health {
        Health::Healthy => "brightgreen",
        Health::Warning => "orange",
        Health::Unhealthy => "red",
        Health::Unknown => "lightgrey",
    }
}

/// The badge as SVG (shields' flat style) or as a shields.io endpoint's JSON.
fn badge(label: &str, message: &str, colour: &str, style: Option<&str>) -> Response {
    if style == Some("shields") {
        return Json(serde_json::json!({"schemaVersion": 1, "label": label, "message": message, "color": colour}))
            .into_response();
    }
    let fill = match colour {
        "brightgreen" => "#4c1",
        "orange" => "#fe7d37",
        "red" => "#e05d44",
        _ => "#9f9f9f",
    };
    let width = |s: &str| 10 + 7 * s.chars().count();
    let (lw, mw) = (width(label), width(message));
    let (l, m) = (super::html::esc(label), super::html::esc(message));
    let svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" aria-label=\"{l}: {m}\">\
         <title>{l}: {m}</title><rect width=\"{lw}\" height=\"20\" fill=\"#555\"/>\
         <rect x=\"{lw}\" width=\"{mw}\" height=\"20\" fill=\"{fill}\"/>\
         <g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,DejaVu Sans,sans-serif\" font-size=\"11\">\
         <text x=\"{lx}\" y=\"14\">{l}</text><text x=\"{mx}\" y=\"14\">{m}</text></g></svg>",
        w = lw + mw,
        lx = lw / 2,
        mx = lw + mw / 2,
    );
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'none'"),
        ],
        svg,
    )
        .into_response()
}

/// The workspace's badge: its accounts by health, worst first.
#[utoipa::path(get, path = "/status/{token}/badge.svg", tag = "status", operation_id = "workspace_badge",
    params(("token" = String, Path), BadgeQuery), security(()),
    responses((status = 200, description = "An SVG badge, or shields.io JSON with style=shields", content_type = "image/svg+xml"),
              (status = 404, description = "No such share link (unknown or revoked)")))]
pub async fn workspace_badge(
    State(state): State<ApiState>,
    ApiPath(token): ApiPath<String>,
    ApiQuery(q): ApiQuery<BadgeQuery>,
) -> Response {
    let ws = match opened(&state, &token).await {
        Ok(ws) => ws,
        Err(r) => return r,
    };
    let filter = ListFilter {
        workspace_id: ws,
        platform: None,
        health: None,
        stale_before: state.clock.now() - state.config().health.stale_after.secs(),
    };
    match state.store.health_summary(&filter).await {
        Ok(counts) => {
            let (message, colour) = summary(&counts);
            badge("accounts", &message, colour, q.style.as_deref())
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// One account's badge: its health.
#[utoipa::path(get, path = "/status/{token}/{platform}/{accountId}/badge.svg", tag = "status", operation_id = "account_badge",
    params(("token" = String, Path), ("platform" = String, Path), ("accountId" = String, Path), BadgeQuery),
    security(()),
    responses((status = 200, description = "An SVG badge, or shields.io JSON with style=shields", content_type = "image/svg+xml"),
              (status = 404, description = "No such share link, or no such account in its workspace")))]
pub async fn account_badge(
    State(state): State<ApiState>,
    ApiPath((token, platform, account_id)): ApiPath<(String, String, String)>,
    ApiQuery(q): ApiQuery<BadgeQuery>,
) -> Response {
    let ws = match opened(&state, &token).await {
        Ok(ws) => ws,
        Err(r) => return r,
    };
    let missing = || (StatusCode::NOT_FOUND, "no such account\n").into_response();
    let Ok(platform) = platform.parse::<Platform>() else {
        return missing();
    };
    let Ok(id) = AccountId::parse(platform, &account_id) else {
        return missing();
    };
    match state.store.get_account(ws, platform, &id).await {
        Ok(Some(a)) => {
            let a = super::accounts::seen_now(&state, a);
            let label = format!("{} {}", platform.display_name(), a.username);
            badge(
                &label,
                a.state.health.as_str(),
                colour(a.state.health),
                q.style.as_deref(),
            )
        }
        Ok(None) => missing(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
