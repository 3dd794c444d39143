//! The platforms' consent pages and code exchanges, for connect links: Facebook Login's
//! dialog (Facebook Pages, and Instagram through Facebook Login), Instagram Login, Threads
//! and TikTok's Login Kit (X's are in `twitter.rs`). Each page is a form where the simulated
//! person says who they are (at Facebook, which Pages they have and which of them they grant)
//! and presses Allow or Cancel. Each exchange refuses what the platform refuses: a reused code,
//! another `redirect_uri`, another client or secret.

use super::*;

/// The Instagram Login app the simulator accepts (a Meta app of its own).
pub const INSTAGRAM_LOGIN_APP_ID: &str = "5550001112223";
/// Its secret.
pub const INSTAGRAM_LOGIN_APP_SECRET: &str = "sim-instagram-login-secret";
/// The Threads app the simulator accepts.
pub const THREADS_APP_ID: &str = "7770001112223";
/// Its secret.
pub const THREADS_APP_SECRET: &str = "sim-threads-secret";

/// A Facebook Page a simulated person manages, with its Instagram account when it has one.
#[derive(Debug, Clone)]
pub(super) struct SimPage {
    id: String,
    name: String,
    ig: Option<String>,
}

/// What a Meta user token knows of its person: their Pages, and the ones they granted when
/// they chose (`None`: all, so `debug_token` lists no `target_ids`).
#[derive(Debug, Clone, Default)]
pub(super) struct Person {
    pages: Vec<SimPage>,
    granted: Option<Vec<String>>,
}

impl Person {
    /// A person with `pages` (ID and Instagram account) who granted `granted` of them.
    pub(super) fn new(pages: &[(&str, Option<&str>)], granted: &[&str]) -> Person {
        Person {
            pages: pages
                .iter()
                .map(|(id, ig)| SimPage {
                    id: (*id).to_owned(),
                    name: String::new(),
                    ig: ig.map(str::to_owned),
                })
                .collect(),
            granted: Some(granted.iter().map(|g| (*g).to_owned()).collect()),
        }
    }
}

/// What a consent granted, until its code is exchanged (once).
#[derive(Debug, Clone)]
pub(super) struct GrantedCode {
    pub platform: Platform,
    pub redirect_uri: String,
    /// X's PKCE challenge.
    pub challenge: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub person: Person,
}

/// Which consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialog {
    /// Facebook Login's dialog, for `Platform::Facebook` or `Platform::Instagram`.
    Meta(Platform),
    InstagramLogin,
    Threads,
    Tiktok,
}

impl Dialog {
    fn platform(self) -> Platform {
        match self {
            Dialog::Meta(p) => p,
            Dialog::InstagramLogin => Platform::Instagram,
            Dialog::Threads => Platform::Threads,
            Dialog::Tiktok => Platform::Tiktok,
        }
    }

    fn client(self) -> (&'static str, &'static str) {
        match self {
            Dialog::Meta(_) => ("client_id", APP_ID),
            Dialog::InstagramLogin => ("client_id", INSTAGRAM_LOGIN_APP_ID),
            Dialog::Threads => ("client_id", THREADS_APP_ID),
            Dialog::Tiktok => ("client_key", TIKTOK_CLIENT_KEY),
        }
    }

    /// The person who signs in by default.
    fn default_user(self) -> &'static str {
        match self {
            Dialog::Meta(_) => DEFAULT_PAGE_ADMIN,
            Dialog::InstagramLogin => "17841400000000009",
            Dialog::Threads => "3000000000000009",
            Dialog::Tiktok => "723f24d7-e717-40f8-a2b6-cb8464cd23b4",
        }
    }
}

/// `/instagram/oauth/authorize` serves both logins: the client says which.
fn instagram_dialog(q: &HashMap<String, String>) -> Dialog {
    if q.get("client_id").map(String::as_str) == Some(INSTAGRAM_LOGIN_APP_ID) {
        Dialog::InstagramLogin
    } else {
        Dialog::Meta(Platform::Instagram)
    }
}

/// `GET` of a consent page.
pub(super) async fn page(dialog: Dialog, Query(q): Q) -> Response {
    let dialog = match dialog {
        Dialog::Meta(Platform::Instagram) => instagram_dialog(&q),
        d => d,
    };
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let (client_key, client) = dialog.client();
    if get(client_key) != client || get("response_type") != "code" || get("redirect_uri").is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "Something went wrong: this app cannot be authorized (client or redirect_uri).",
        )
            .into_response();
    }
    let hidden: String = [client_key, "redirect_uri", "state", "scope"]
        .iter()
        .map(|k| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(&get(k))))
        .collect();
    let pages = match dialog {
        Dialog::Meta(Platform::Instagram) => {
            "<label>Your Pages (id:name:instagram id) <input name=\"pages\" size=\"60\" \
             value=\"2000000000000001:Acme Bakery:17841400000000001,2000000000000002:Acme Coffee:17841400000000002\"></label>\
             <label>Pages you grant (empty: all) <input name=\"granted\" value=\"\"></label>"
        }
        Dialog::Meta(_) => {
            "<label>Your Pages (id:name) <input name=\"pages\" size=\"60\" \
             value=\"2000000000000001:Acme Bakery,2000000000000002:Acme Coffee\"></label>\
             <label>Pages you grant (empty: all) <input name=\"granted\" value=\"\"></label>"
        }
        _ => "",
    };
    let html = format!(
        "<!doctype html><html><head><title>Authorize app (simulated {name})</title></head><body>\
         <h1>An app wants to access your {name} account</h1><p>It asks for: {scope}</p>\
         <form method=\"post\">{hidden}\
         <label>Sign in as user ID <input name=\"user_id\" value=\"{user}\"></label>{pages}\
         <button name=\"action\" value=\"allow\">Allow</button>\
         <button name=\"action\" value=\"cancel\">Cancel</button></form></body></html>",
        name = dialog.platform().display_name(),
        scope = esc(&get("scope")),
        user = dialog.default_user(),
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// `id:name[:instagram id]` entries, comma-separated.
fn parse_pages(s: &str) -> Vec<SimPage> {
    s.split(',')
        .filter_map(|e| {
            let mut f = e.trim().splitn(3, ':');
            let id = f.next().filter(|x| !x.is_empty())?.to_owned();
            let name = f.next().unwrap_or_default().to_owned();
            let ig = f.next().filter(|x| !x.is_empty()).map(str::to_owned);
            Some(SimPage { id, name, ig })
        })
        .collect()
}

/// `POST` of a consent page: back to `redirect_uri` with a single-use `code` and the
/// `state`, or with `error=access_denied` as each platform words it.
pub(super) async fn answer(State(s): S, dialog: Dialog, Form(f): Form<HashMap<String, String>>) -> Response {
    let dialog = match dialog {
        Dialog::Meta(Platform::Instagram) => instagram_dialog(&f),
        d => d,
    };
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let Ok(mut back) = reqwest::Url::parse(&get("redirect_uri")) else {
        return (StatusCode::BAD_REQUEST, "invalid redirect_uri").into_response();
    };
    if get("action") != "allow" {
        let mut q = back.query_pairs_mut();
        q.append_pair("error", "access_denied");
        if matches!(dialog, Dialog::Meta(_)) {
            q.append_pair("error_code", "200")
                .append_pair("error_description", "Permissions error")
                .append_pair("error_reason", "user_denied");
        }
        q.append_pair("state", &get("state"));
        drop(q);
        return (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response();
    }
    let granted = get("granted");
    let person = Person {
        pages: parse_pages(&get("pages")),
        granted: (!granted.trim().is_empty()).then(|| granted.split(',').map(|g| g.trim().to_owned()).collect()),
    };
    let code = random_token("code-");
    s.lock().codes.insert(
        code.clone(),
        GrantedCode {
            platform: dialog.platform(),
            redirect_uri: get("redirect_uri"),
            challenge: String::new(),
            user_id: get("user_id"),
            scopes: get("scope")
                .split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
            person,
        },
    );
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"));
    (StatusCode::FOUND, [(header::LOCATION, back.to_string())]).into_response()
}

/// Takes a code once (whatever comes of it): the grant when it was given for `platform`
/// and `redirect_uri`.
fn take_code(g: &mut Inner, platform: Platform, code: &str, redirect_uri: &str) -> Option<GrantedCode> {
    g.codes
        .remove(code)
        .filter(|c| c.platform == platform && c.redirect_uri == redirect_uri)
}

/// A user token for `user_id` (Meta, Instagram Login, Threads); `instagram_login`: an
/// Instagram Login token.
fn user_token(
    g: &mut Inner,
    p: Platform,
    instagram_login: bool,
    user_id: &str,
    scopes: Vec<String>,
    expires_in: i64,
    person: Person,
) -> String {
    let spec = TokenSpec {
        instagram_login_only: instagram_login,
        scopes,
        expires_in: Some(expires_in),
        issued_ago: 0,
        admin_id: None,
        with_refresh: false,
        ..TokenSpec::valid(p, user_id)
    };
    let issued = issue_in(g, p, spec);
    g.persons.insert(issued.access_token.clone(), person);
    issued.access_token
}

/// Facebook Login's `GET /{ver}/oauth/access_token`: the code for a short-lived user token
/// (client ID and secret, the same `redirect_uri`), or, with
/// `grant_type=fb_exchange_token`, a short-lived token for a long-lived one (60 days).
pub(super) async fn meta_token(State(s): S, p: Platform, Query(q): Q) -> Response {
    s.token_calls[idx(p)].fetch_add(1, Ordering::Relaxed);
    if let Some(r) = preflight(&s, p, None).await {
        return r;
    }
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != APP_ID || get("client_secret") != APP_SECRET {
        return graph_error(
            StatusCode::BAD_REQUEST,
            101,
            None,
            "Error validating application. Invalid application ID.",
        );
    }
    let mut g = s.lock();
    if get("grant_type") == "fb_exchange_token" {
        let short = get("fb_exchange_token");
        let Some(t) = live(&g, p, &short, domain::now())
            .filter(|t| t.admin_id.is_none())
            .cloned()
        else {
            return graph_error(StatusCode::BAD_REQUEST, 190, None, "Invalid OAuth access token.");
        };
        let person = g.persons.get(&short).cloned().unwrap_or_default();
        let token = user_token(&mut g, p, false, &t.user_id, t.scopes, 60 * 86_400, person);
        return Json(json!({"access_token": token, "token_type": "bearer", "expires_in": 60 * 86_400 - 56}))
            .into_response();
    }
    let Some(c) = take_code(&mut g, p, &get("code"), &get("redirect_uri")) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(36009),
            "This authorization code has been used, or was given for another redirect_uri.",
        );
    };
    let token = user_token(&mut g, p, false, &c.user_id, c.scopes, 3_600, c.person);
    Json(json!({"access_token": token, "token_type": "bearer", "expires_in": 3_600})).into_response()
}

/// `GET /{ver}/me/accounts` with a user token: the person's Pages with a Page token each
/// (and each Page's `instagram_business_account` at Instagram), `limit` at a time, paged by
/// `after`. A Page token of a long-lived user token does not expire.
pub(super) async fn me_accounts(State(s): S, p: Platform, Query(q): Q) -> Response {
    let token = q.get("access_token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, p, Some(&token)).await {
        return r;
    }
    let mut g = s.lock();
    let Some(user) = live(&g, p, &token, domain::now())
        .filter(|t| t.admin_id.is_none())
        .cloned()
    else {
        return graph_error(StatusCode::BAD_REQUEST, 190, None, "Invalid OAuth access token.");
    };
    let person = g.persons.get(&token).cloned().unwrap_or_default();
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(25).clamp(1, 100);
    let from: usize = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut data = Vec::new();
    for page in person.pages.iter().skip(from).take(limit) {
        let account = if p == Platform::Instagram {
            page.ig.clone()
        } else {
            Some(page.id.clone())
        };
        let mut entry =
            json!({"id": page.id, "name": page.name, "category": "Bakery", "tasks": ["CREATE_CONTENT", "MANAGE"]});
        if let Some(account) = account {
            let spec = TokenSpec {
                username: if p == Platform::Instagram {
                    format!("ig_{}", page.name.to_lowercase().replace(' ', "_"))
                } else {
                    page.name.clone()
                },
                scopes: user.scopes.clone(),
                expires_in: None,
                issued_ago: 0,
                admin_id: Some(user.user_id.clone()),
                with_refresh: false,
                ..TokenSpec::valid(p, &account)
            };
            let username = spec.username.clone();
            let page_token = issue_in(&mut g, p, spec).access_token;
            // A Page token's debug_token shows the grant it came from (its granular_scopes).
            g.persons.insert(page_token.clone(), person.clone());
            entry["access_token"] = json!(page_token);
            if p == Platform::Instagram {
                entry["instagram_business_account"] = json!({"id": account, "username": username});
            }
        }
        data.push(entry);
    }
    let mut out = json!({ "data": data });
    let next = from + limit;
    if next < person.pages.len() {
        out["paging"] = json!({"cursors": {"before": from.to_string(), "after": next.to_string()},
            "next": format!("https://graph.facebook.com/me/accounts?after={next}")});
    }
    Json(out).into_response()
}

/// `debug_token`'s `granular_scopes` for a user token whose person chose their Pages: the
/// `pages_*` scopes name the Pages, the `instagram_*` ones their Instagram accounts.
pub(super) fn granular_scopes(g: &Inner, token: &str, scopes: &[String]) -> Option<Value> {
    let person = g.persons.get(token)?;
    let granted = person.granted.as_ref()?;
    let chosen: Vec<&SimPage> = person.pages.iter().filter(|p| granted.contains(&p.id)).collect();
    let list: Vec<Value> = scopes
        .iter()
        .map(|s| {
            let ids: Vec<String> = if s.starts_with("instagram_") {
                chosen.iter().filter_map(|p| p.ig.clone()).collect()
            } else {
                chosen.iter().map(|p| p.id.clone()).collect()
            };
            json!({"scope": s, "target_ids": ids})
        })
        .collect();
    Some(Value::Array(list))
}

/// Instagram Login's and Threads' `POST /oauth/access_token`: the code (with the app's ID and
/// secret and the same `redirect_uri`) for a one-hour token. Instagram answers
/// `{"data": [{access_token, user_id, permissions}]}`, Threads `{access_token, user_id}`.
pub(super) async fn short_token(State(s): S, p: Platform, Form(f): Form<HashMap<String, String>>) -> Response {
    s.token_calls[idx(p)].fetch_add(1, Ordering::Relaxed);
    if let Some(r) = preflight(&s, p, None).await {
        return r;
    }
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let (id, secret) = app_of(p);
    let refused = |m: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error_type": "OAuthException", "code": 400, "error_message": m})),
        )
            .into_response()
    };
    if get("client_id") != id || get("client_secret") != secret {
        return refused("Invalid platform app");
    }
    if get("grant_type") != "authorization_code" {
        return refused("Invalid grant_type");
    }
    let mut g = s.lock();
    let Some(c) = take_code(&mut g, p, &get("code"), &get("redirect_uri")) else {
        return refused("Matching code was not found or was already used");
    };
    let permissions = c.scopes.join(",");
    let token = user_token(
        &mut g,
        p,
        p == Platform::Instagram,
        &c.user_id,
        c.scopes,
        3_600,
        Person::default(),
    );
    if p == Platform::Instagram {
        Json(json!({"data": [{"access_token": token, "user_id": c.user_id, "permissions": permissions}]}))
            .into_response()
    } else {
        Json(json!({"access_token": token, "user_id": c.user_id})).into_response()
    }
}

fn app_of(p: Platform) -> (&'static str, &'static str) {
    match p {
        Platform::Threads => (THREADS_APP_ID, THREADS_APP_SECRET),
        _ => (INSTAGRAM_LOGIN_APP_ID, INSTAGRAM_LOGIN_APP_SECRET),
    }
}

/// `GET /access_token?grant_type=ig_exchange_token|th_exchange_token&client_secret&access_token`:
/// a live short-lived token for a 60-day one.
pub(super) async fn long_token(State(s): S, p: Platform, Query(q): Q) -> Response {
    s.token_calls[idx(p)].fetch_add(1, Ordering::Relaxed);
    let token = q.get("access_token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, p, Some(&token)).await {
        return r;
    }
    let want = if p == Platform::Threads {
        "th_exchange_token"
    } else {
        "ig_exchange_token"
    };
    if q.get("grant_type").map(String::as_str) != Some(want)
        || q.get("client_secret").map(String::as_str) != Some(app_of(p).1)
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "Invalid grant_type or client_secret",
        );
    }
    let mut g = s.lock();
    let Some(t) = live(&g, p, &token, domain::now()).cloned() else {
        return graph_error(StatusCode::BAD_REQUEST, 190, None, "Invalid OAuth access token.");
    };
    let fresh = user_token(
        &mut g,
        p,
        t.instagram_login_only,
        &t.user_id,
        t.scopes,
        60 * 86_400,
        Person::default(),
    );
    Json(json!({"access_token": fresh, "token_type": "bearer", "expires_in": 60 * 86_400})).into_response()
}

/// TikTok's `authorization_code` grant at `/v2/oauth/token/` (the client was checked): the
/// code once, with the same `redirect_uri`.
pub(super) fn tiktok_code(s: &Shared, f: &HashMap<String, String>) -> Response {
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let mut g = s.lock();
    let Some(c) = take_code(&mut g, Platform::Tiktok, &get("code"), &get("redirect_uri")) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Authorization code is expired or has been used.",
        );
    };
    let spec = TokenSpec {
        scopes: c.scopes.clone(),
        issued_ago: 0,
        ..TokenSpec::valid(Platform::Tiktok, &c.user_id)
    };
    let issued = issue_in(&mut g, Platform::Tiktok, spec);
    Json(json!({
        "access_token": issued.access_token, "expires_in": TIKTOK_ACCESS_TTL, "open_id": c.user_id,
        "refresh_expires_in": TIKTOK_REFRESH_TTL, "refresh_token": issued.refresh_token,
        "scope": c.scopes.join(","), "token_type": "Bearer"
    }))
    .into_response()
}

/// HTML-escapes a value placed in a consent page.
pub(super) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
