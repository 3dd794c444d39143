//! X: `/2/users/me`, token refresh, revoke.

use super::*;

/// A confidential client authenticates with Basic auth; a public client (no secret) sends
/// its `client_id` in the body and no Authorization header.
pub(super) fn twitter_client_ok(h: &HeaderMap, f: &HashMap<String, String>) -> bool {
    match h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(auth) => {
            let want = base64::engine::general_purpose::STANDARD
                .encode(format!("{TWITTER_CLIENT_ID}:{TWITTER_CLIENT_SECRET}"));
            auth == format!("Basic {want}")
        }
        None => f.get("client_id").map(String::as_str) == Some(TWITTER_CLIENT_ID),
    }
}

pub(super) async fn twitter_me(State(s): S, h: HeaderMap) -> Response {
    let token = bearer(&h);
    if let Some(r) = preflight(&s, Platform::Twitter, Some(&token)).await {
        return r;
    }
    let g = s.lock();
    let Some(t) = live(&g, Platform::Twitter, &token, domain::now()) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"})),
        )
            .into_response();
    };
    if !t.scopes.iter().any(|s| s == "users.read") {
        return (
            StatusCode::FORBIDDEN,
            Json(
                json!({"title": "Forbidden", "type": "about:blank",
                "status": 403, "detail": "You are not permitted to perform this action: the token lacks the users.read scope."}),
            ),
        )
            .into_response();
    }
    Json(json!({"data": {"id": t.user_id, "name": t.username, "username": t.username}})).into_response()
}

pub(super) async fn twitter_token(State(s): S, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    s.token_calls[idx(Platform::Twitter)].fetch_add(1, Ordering::Relaxed);
    if let Some(r) = preflight(&s, Platform::Twitter, None).await {
        return r;
    }
    if let Some(r) = token_endpoint_down(&s, Platform::Twitter) {
        return r;
    }
    if !twitter_client_ok(&h, &f) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Missing valid authorization header",
        );
    }
    if f.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Value passed for the grant type was invalid.",
        );
    }
    let refresh = f.get("refresh_token").cloned().unwrap_or_default();
    let mut g = s.lock();
    let expires_in = g
        .tweaks
        .get(&Platform::Twitter)
        .and_then(|t| t.expires_in)
        .unwrap_or(TWITTER_ACCESS_TTL);
    match rotate(&mut g, Platform::Twitter, &refresh, expires_in) {
        Some((access, new_refresh, t)) => {
            s.refreshes[idx(Platform::Twitter)].fetch_add(1, Ordering::Relaxed);
            Json(json!({
                "token_type": "bearer", "expires_in": expires_in, "access_token": access,
                "scope": t.scopes.join(" "), "refresh_token": new_refresh
            }))
            .into_response()
        }
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Value passed for the token was invalid.",
        ),
    }
}

pub(super) async fn twitter_revoke(State(s): S, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
    let token = f.get("token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, Platform::Twitter, Some(&token)).await {
        return r;
    }
    if !twitter_client_ok(&h, &f) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized_client",
            "Missing valid authorization header",
        );
    }
    let mut g = s.lock();
    if let Some(t) = g.tokens.get_mut(&token) {
        t.state = TokenState::Revoked;
    }
    g.refresh.retain(|r, a| *a != token && *r != token);
    Json(json!({"revoked": true})).into_response()
}
