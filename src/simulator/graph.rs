//! The Graph API of Facebook, Instagram and Threads: `debug_token`, `/me`, refresh, revoke.

use super::*;

pub(super) fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut e = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"});
    if let Some(s) = subcode {
        e["error_subcode"] = json!(s);
    }
    (status, Json(json!({ "error": e }))).into_response()
}

/// The Graph (code, subcode, message) for a token that does not work, or `None` if it does.
pub(super) fn graph_failure(t: Option<&SimToken>, now: UnixTime) -> Option<(i64, Option<i64>, &'static str)> {
    let Some(t) = t else {
        return Some((190, None, "Invalid OAuth access token - Cannot parse access token"));
    };
    match t.state {
        TokenState::Revoked => Some((
            190,
            Some(458),
            "Error validating access token: The user has not authorized application.",
        )),
        TokenState::PasswordChanged => Some((
            190,
            Some(460),
            "Error validating access token: The session has been invalidated because the user changed their password.",
        )),
        TokenState::Checkpointed => Some((
            190,
            Some(459),
            "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.",
        )),
        TokenState::LostPageRole => Some((
            190,
            Some(492),
            "Error validating access token: The user does not have a role on the Page.",
        )),
        TokenState::CheckpointedOnCalls => Some((
            190,
            Some(459),
            "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.",
        )),
        TokenState::Valid if t.expires_at.is_some_and(|e| e <= now) => {
            Some((190, Some(463), "Error validating access token: Session has expired."))
        }
        TokenState::Valid => None,
    }
}

pub(super) async fn debug_token(State(s): S, p: Platform, Query(q): Q) -> Response {
    let input = q.get("input_token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, p, Some(&input)).await {
        return r;
    }
    if q.get("access_token").map(String::as_str) != Some(&format!("{APP_ID}|{APP_SECRET}")) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "Invalid OAuth access token signature.",
        );
    }
    let now = domain::now();
    let g = s.lock();
    let tweaks = g.tweaks.get(&p).cloned().unwrap_or_default();
    if tweaks.app_token_refused {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "(#100) You must provide an app access token, or a user access token that is an owner or developer of the app",
        );
    }
    if tweaks.app_in_development {
        return Json(json!({"data": []})).into_response();
    }
    let t = g.tokens.get(&input).filter(|t| t.platform == p);
    // Introspection does not see a checkpoint that only calls made with the token hit.
    let shown = t.map(|t| {
        let mut t = t.clone();
        if t.state == TokenState::CheckpointedOnCalls {
            t.state = TokenState::Valid;
        }
        t
    });
    // An Instagram Login token is not one graph.facebook.com can parse.
    let t = shown.as_ref().filter(|t| !t.instagram_login_only);
    if t.is_some_and(|t| t.app_id.is_some()) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "(#100) The App_id in the input_token did not match the Viewing App",
        );
    }
    let mut data = json!({"app_id": APP_ID, "type": "USER", "application": "socialsyncer simulator"});
    if let Some(t) = t {
        // A Page token names the person who granted it in user_id and the Page in profile_id.
        match &t.admin_id {
            Some(admin) => {
                data["type"] = json!("PAGE");
                data["user_id"] = json!(admin);
                if p == Platform::Facebook {
                    data["profile_id"] = json!(t.user_id);
                }
            }
            None => data["user_id"] = json!(t.user_id),
        }
        data["issued_at"] = json!(t.issued_at);
        data["expires_at"] = json!(t.expires_at.unwrap_or(0));
        data["data_access_expires_at"] = json!(t.data_access_expires_at.unwrap_or(0));
        data["scopes"] = json!(t.scopes);
        if let Some(gs) = consent::granular_scopes(&g, &input, &t.scopes) {
            data["granular_scopes"] = gs;
        }
    }
    match graph_failure(t, now) {
        None => data["is_valid"] = json!(true),
        Some((code, subcode, message)) => {
            data["is_valid"] = json!(false);
            let mut e = json!({"code": code, "message": message});
            if let Some(sc) = subcode {
                e["subcode"] = json!(sc);
            }
            data["error"] = e;
        }
    }
    Json(json!({ "data": data })).into_response()
}

/// Graph's `appsecret_proof` ("Securing Requests"): a proof given is checked against the
/// app's secret (`HMAC-SHA256(secret, token)`, hex); one missing is refused when the app
/// requires it.
fn proof_refusal(g: &Inner, p: Platform, token: &str, q: &HashMap<String, String>) -> Option<Response> {
    use hmac::Mac;
    let secret = match p {
        Platform::Threads => consent::THREADS_APP_SECRET,
        Platform::Instagram => consent::INSTAGRAM_LOGIN_APP_SECRET,
        _ => APP_SECRET,
    };
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(token.as_bytes());
    let want = hex::encode(mac.finalize().into_bytes());
    match q.get("appsecret_proof") {
        Some(given) if *given != want => Some(graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "Invalid appsecret_proof provided in the API argument",
        )),
        None if g.tweaks.get(&p).is_some_and(|t| t.require_appsecret_proof) => Some(graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "API calls from the server require an appsecret_proof argument",
        )),
        _ => None,
    }
}

pub(super) async fn graph_me(State(s): S, p: Platform, Query(q): Q) -> Response {
    let token = q.get("access_token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, p, Some(&token)).await {
        return r;
    }
    let g = s.lock();
    if let Some(r) = proof_refusal(&g, p, &token, &q) {
        return r;
    }
    let t = g.tokens.get(&token).filter(|t| t.platform == p);
    // Instagram Login and Threads answer /me with a revoked token as 100/33.
    if matches!(p, Platform::Threads | Platform::Instagram) && t.is_some_and(|t| t.state == TokenState::Revoked) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "Unsupported get request. Object with ID 'me' does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
        );
    }
    if let Some((code, sub, msg)) = graph_failure(t, domain::now()) {
        return graph_error(StatusCode::BAD_REQUEST, code, sub, msg);
    }
    let t = t.expect("checked above");
    let fields = q.get("fields").map(String::as_str).unwrap_or("id");
    let mut out = serde_json::Map::new();
    // Instagram Login's `id` is the app-scoped ID (v24.0 on), `user_id` the professional
    // account's ("IG User" /me reference): two numbers for one account.
    let id = if p == Platform::Instagram {
        format!("9{}", t.user_id)
    } else {
        t.user_id.clone()
    };
    for f in fields.split(',') {
        match f {
            "id" => {
                out.insert(f.to_owned(), json!(id));
            }
            "user_id" => {
                out.insert(f.to_owned(), json!(t.user_id));
            }
            "username" => {
                out.insert(f.to_owned(), json!(t.username));
            }
            _ => {}
        }
    }
    out.entry("id").or_insert_with(|| json!(id));
    Json(Value::Object(out)).into_response()
}

/// `GET /{ver}/{object-id}?fields=id` with a Page (or Instagram) token: the object, when
/// the token may read it; the token's own failure otherwise (a checkpoint shows here).
pub(super) async fn graph_object(
    State(s): S,
    p: Platform,
    Path((_ver, object)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let token = q.get("access_token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, p, Some(&token)).await {
        return r;
    }
    let g = s.lock();
    let t = g.tokens.get(&token).filter(|t| t.platform == p);
    if let Some((code, sub, msg)) = graph_failure(t, domain::now()) {
        return graph_error(StatusCode::BAD_REQUEST, code, sub, msg);
    }
    if t.is_some_and(|t| t.user_id != object) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "Unsupported get request. Object does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
        );
    }
    Json(json!({ "id": object })).into_response()
}

pub(super) async fn graph_refresh(State(s): S, p: Platform, Query(q): Q) -> Response {
    let token = q.get("access_token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, p, Some(&token)).await {
        return r;
    }
    let want = match p {
        Platform::Instagram => "ig_refresh_token",
        _ => "th_refresh_token",
    };
    if q.get("grant_type").map(String::as_str) != Some(want) {
        return graph_error(StatusCode::BAD_REQUEST, 100, None, "Unsupported grant_type");
    }
    let now = domain::now();
    let mut g = s.lock();
    if let Some(r) = proof_refusal(&g, p, &token, &q) {
        return r;
    }
    let t = g.tokens.get(&token).filter(|t| t.platform == p).cloned();
    if let Some((code, sub, msg)) = graph_failure(t.as_ref(), now) {
        return graph_error(StatusCode::BAD_REQUEST, code, sub, msg);
    }
    let t = t.expect("checked above");
    if now - t.issued_at < 86_400 {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "The access token must be at least 24 hours old to be refreshed.",
        );
    }
    let fresh = random_token(token_prefix(p));
    let expires_in = g.tweaks.get(&p).and_then(|t| t.expires_in).unwrap_or(60 * 86_400);
    s.refreshes[idx(p)].fetch_add(1, Ordering::Relaxed);
    g.tokens.insert(
        fresh.clone(),
        SimToken {
            expires_at: Some(now.saturating_add(expires_in)),
            issued_at: now,
            calls: 0,
            last_call: 0,
            ..t
        },
    );
    Json(json!({"access_token": fresh, "token_type": "bearer", "expires_in": expires_in})).into_response()
}

/// `DELETE /{user-id}/permissions`: takes a user token of that person or the app token
/// (`APP_ID|APP_SECRET`), and removes the app for the person: every Page and Instagram token
/// they granted dies with it. A Page token is refused, as Graph does.
pub(super) async fn graph_revoke(
    State(s): S,
    p: Platform,
    Path((_ver, user)): Path<(String, String)>,
    Query(q): Q,
) -> Response {
    let token = q.get("access_token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, p, Some(&token)).await {
        return r;
    }
    let mut g = s.lock();
    let app_token = token == format!("{APP_ID}|{APP_SECRET}");
    if !app_token {
        let t = g.tokens.get(&token).filter(|t| t.platform == p);
        if let Some((code, sub, msg)) = graph_failure(t, domain::now()) {
            return graph_error(StatusCode::BAD_REQUEST, code, sub, msg);
        }
        let t = t.expect("checked above");
        if t.admin_id.is_some() {
            return graph_error(
                StatusCode::BAD_REQUEST,
                200,
                None,
                "(#200) A user access token or an app access token is required to remove permissions.",
            );
        }
        if t.user_id != user {
            return graph_error(StatusCode::BAD_REQUEST, 200, None, "Permissions error");
        }
    }
    for t in g.tokens.values_mut().filter(|t| {
        matches!(t.platform, Platform::Facebook | Platform::Instagram)
            && (t.admin_id.as_deref() == Some(user.as_str()) || (t.admin_id.is_none() && t.user_id == user))
    }) {
        t.state = TokenState::Revoked;
    }
    Json(json!({"success": true})).into_response()
}
