//! X: `/2/users/me`, token refresh, revoke, and the authorization code flow with PKCE
//! (a consent page, the code exchange).

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
    // An app-only bearer token (OAuth 2.0 client credentials; they begin with a run of A's)
    // is refused on a user-context endpoint ("Authentication overview"; X's problem type
    // unsupported-authentication).
    if token.starts_with("AAAAAAAAAAAAAAAAAAAA") {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"title": "Unsupported Authentication", "status": 403,
                "type": "https://api.x.com/2/problems/unsupported-authentication",
                "detail": "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context]."})),
        )
            .into_response();
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
    if f.get("grant_type").map(String::as_str) == Some("authorization_code") {
        return exchange_code(&s, &f);
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
    if f.get("token_type_hint").map(String::as_str) == Some("refresh_token")
        && s.lock()
            .tweaks
            .get(&Platform::Twitter)
            .is_some_and(|t| t.refresh_revoke_down)
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
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

/// `GET /i/oauth2/authorize`: X's authorization dialog. The simulated person types the user
/// ID to sign in as and presses Allow or Cancel. A request X would refuse (another client,
/// no PKCE S256 challenge, no `response_type=code`) gets an error page.
pub(super) async fn authorize(Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != TWITTER_CLIENT_ID
        || get("response_type") != "code"
        || get("code_challenge_method") != "S256"
        || get("code_challenge").is_empty()
        || get("redirect_uri").is_empty()
    {
        return (
            StatusCode::BAD_REQUEST,
            "Something went wrong: this app cannot be authorized.",
        )
            .into_response();
    }
    let hidden: String = ["redirect_uri", "state", "code_challenge", "scope"]
        .iter()
        .map(|k| {
            format!(
                "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                consent::esc(&get(k))
            )
        })
        .collect();
    let page = format!(
        "<!doctype html><html><head><title>Authorize app (simulated X)</title></head><body>\
         <h1>An app wants to access your X account</h1><p>It asks for: {}</p>\
         <form method=\"post\" action=\"/twitter/i/oauth2/authorize\">{hidden}\
         <label>Sign in as user ID <input name=\"user_id\" value=\"4242\"></label>\
         <button name=\"action\" value=\"allow\">Authorize app</button>\
         <button name=\"action\" value=\"cancel\">Cancel</button></form></body></html>",
        consent::esc(&get("scope"))
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// `POST /i/oauth2/authorize`: the person's answer; back to the app's `redirect_uri` with a
/// single-use `code` (or `error=access_denied`) and the `state`.
pub(super) async fn consent(State(s): S, Form(f): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let Ok(mut back) = reqwest::Url::parse(&get("redirect_uri")) else {
        return (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response();
    };
    if get("action") == "allow" {
        let code = random_token("code-");
        s.lock().codes.insert(
            code.clone(),
            consent::GrantedCode {
                platform: Platform::Twitter,
                redirect_uri: get("redirect_uri"),
                challenge: get("code_challenge"),
                user_id: get("user_id"),
                scopes: get("scope")
                    .split(' ')
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect(),
                person: consent::Person::default(),
            },
        );
        back.query_pairs_mut()
            .append_pair("state", &get("state"))
            .append_pair("code", &code);
    } else {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &get("state"));
    }
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

/// The `authorization_code` grant: the code once, with the same `redirect_uri`, and a
/// `code_verifier` whose SHA-256 (base64url) is the challenge (RFC 7636 section 4.6).
fn exchange_code(s: &Shared, f: &HashMap<String, String>) -> Response {
    use sha2::Digest;
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut g = s.lock();
    // Single-use: gone once presented, whatever comes of it.
    let Some(granted) = g.codes.remove(&get("code")).filter(|c| c.platform == Platform::Twitter) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Value passed for the authorization code was invalid.",
        );
    };
    let challenge =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
    if granted.redirect_uri != get("redirect_uri") || granted.challenge != challenge {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Value passed for the authorization code was invalid.",
        );
    }
    let spec = TokenSpec {
        with_refresh: true,
        ..TokenSpec::valid(Platform::Twitter, &granted.user_id)
    };
    let issued = issue_in(&mut g, Platform::Twitter, spec);
    let t = g.tokens.get(&issued.access_token).cloned();
    Json(json!({
        "token_type": "bearer", "expires_in": TWITTER_ACCESS_TTL, "access_token": issued.access_token,
        "scope": t.map(|t| t.scopes.join(" ")).unwrap_or_default(), "refresh_token": issued.refresh_token
    }))
    .into_response()
}
