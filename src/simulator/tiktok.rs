//! TikTok: user info, token refresh, revoke.

use super::*;

pub(super) fn tiktok_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"data": {}, "error": {"code": code, "message": message, "log_id": "20261127sim"}})),
    )
        .into_response()
}

pub(super) async fn tiktok_user_info(State(s): S, h: HeaderMap, Query(q): Q) -> Response {
    let token = bearer(&h);
    if let Some(r) = preflight(&s, Platform::Tiktok, Some(&token)).await {
        return r;
    }
    let g = s.lock();
    let Some(t) = live(&g, Platform::Tiktok, &token, domain::now()) else {
        return tiktok_error(
            StatusCode::UNAUTHORIZED,
            "access_token_invalid",
            "The access token is invalid or not found in the request.",
        );
    };
    if !t.scopes.iter().any(|s| s == "user.info.basic") {
        return tiktok_error(
            StatusCode::UNAUTHORIZED,
            "scope_not_authorized",
            "The user did not authorize the scope required for completing this request.",
        );
    }
    let mut user = serde_json::Map::new();
    for f in q.get("fields").map(String::as_str).unwrap_or_default().split(',') {
        match f {
            "open_id" => user.insert(f.into(), json!(t.user_id)),
            "union_id" => user.insert(f.into(), json!(format!("u-{}", t.user_id))),
            "display_name" => user.insert(f.into(), json!(t.username)),
            _ => None,
        };
    }
    Json(json!({"data": {"user": user}, "error": {"code": "ok", "message": "", "log_id": "20261127sim"}}))
        .into_response()
}

pub(super) async fn tiktok_token(State(s): S, Form(f): Form<HashMap<String, String>>) -> Response {
    s.token_calls[idx(Platform::Tiktok)].fetch_add(1, Ordering::Relaxed);
    if let Some(r) = preflight(&s, Platform::Tiktok, None).await {
        return r;
    }
    if let Some(r) = token_endpoint_down(&s, Platform::Tiktok) {
        return r;
    }
    if f.get("client_key").map(String::as_str) != Some(TIKTOK_CLIENT_KEY)
        || f.get("client_secret").map(String::as_str) != Some(TIKTOK_CLIENT_SECRET)
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client key or secret is incorrect.",
        );
    }
    if f.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return consent::tiktok_code(&s, &f);
    }
    if f.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Unsupported grant_type.");
    }
    let refresh = f.get("refresh_token").cloned().unwrap_or_default();
    // A refresh token another TikTok app (client key) was issued: the simulator's tokens of
    // other clients begin "rt-other-" ("OAuth error handling": invalid_grant).
    if refresh.starts_with("rt-other-") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Refresh token was issued to another client.",
        );
    }
    let mut g = s.lock();
    let tweaks = g.tweaks.get(&Platform::Tiktok).cloned().unwrap_or_default();
    let expires_in = tweaks.expires_in.unwrap_or(TIKTOK_ACCESS_TTL);
    let refresh_expires_in = tweaks.refresh_expires_in.unwrap_or(TIKTOK_REFRESH_TTL);
    match rotate(&mut g, Platform::Tiktok, &refresh, expires_in) {
        Some((access, new_refresh, t)) => {
            s.refreshes[idx(Platform::Tiktok)].fetch_add(1, Ordering::Relaxed);
            Json(json!({
                "access_token": access, "expires_in": expires_in, "open_id": t.user_id,
                "refresh_expires_in": refresh_expires_in, "refresh_token": new_refresh,
                "scope": t.scopes.join(","), "token_type": "Bearer"
            }))
            .into_response()
        }
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Refresh token is invalid or expired.",
        ),
    }
}

pub(super) async fn tiktok_revoke(State(s): S, Form(f): Form<HashMap<String, String>>) -> Response {
    let token = f.get("token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, Platform::Tiktok, Some(&token)).await {
        return r;
    }
    if f.get("client_key").map(String::as_str) != Some(TIKTOK_CLIENT_KEY)
        || f.get("client_secret").map(String::as_str) != Some(TIKTOK_CLIENT_SECRET)
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client key or secret is incorrect.",
        );
    }
    let mut g = s.lock();
    // Revocation takes a live access token.
    if live(&g, Platform::Tiktok, &token, domain::now()).is_none() {
        return tiktok_error(
            StatusCode::UNAUTHORIZED,
            "access_token_invalid",
            "The access token is invalid or not found in the request.",
        );
    }
    if let Some(t) = g.tokens.get_mut(&token) {
        t.state = TokenState::Revoked;
    }
    g.refresh.retain(|_, a| *a != token);
    Json(json!({"data": {}, "error": {"code": "ok", "message": "", "log_id": "20261127sim"}})).into_response()
}
