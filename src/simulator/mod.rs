//! Simulated platforms on loopback: the documented endpoints and answer shapes of Facebook,
//! Instagram, Threads, TikTok and X, with tokens held in controllable states. Used by the
//! tests, `socialsyncer demo` and the benchmarks; never by a production daemon.
//!
//! Each platform is served under its own path prefix (`/facebook`, `/instagram`, ...), so one
//! listener stands in for five hosts: point `platforms.P.base_url` at [`Simulator::base_url`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::{self, Platform, UnixTime};

mod answers;
mod consent;
mod control;
mod graph;
mod tiktok;
mod twitter;

use answers::*;
pub use consent::{INSTAGRAM_LOGIN_APP_ID, INSTAGRAM_LOGIN_APP_SECRET, THREADS_APP_ID, THREADS_APP_SECRET};
use graph::*;
use tiktok::*;
use twitter::*;

/// The Facebook app the simulator accepts in `debug_token`.
pub const APP_ID: &str = "1234567890";
/// Its secret.
pub const APP_SECRET: &str = "sim-app-secret";
/// The TikTok client key the simulator accepts.
pub const TIKTOK_CLIENT_KEY: &str = "simclientkey";
/// Its secret.
pub const TIKTOK_CLIENT_SECRET: &str = "sim-tiktok-secret";
/// The X OAuth 2.0 client ID the simulator accepts.
pub const TWITTER_CLIENT_ID: &str = "sim-client-id";
/// Its secret.
pub const TWITTER_CLIENT_SECRET: &str = "sim-twitter-secret";

/// What a token is, at the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// Works (unless past its expiry).
    Valid,
    /// Revoked (Graph subcode 458: the user removed the app).
    Revoked,
    /// Invalidated by a password change (Graph subcode 460).
    PasswordChanged,
    /// Facebook checkpoint (subcode 459).
    Checkpointed,
    /// The user lost their Page role (subcode 492).
    LostPageRole,
    /// `debug_token` still says valid, but calls made with the token answer the checkpoint
    /// (190/459): introspection alone does not show it.
    CheckpointedOnCalls,
}

/// How the platform answers requests for a token (or for every token of a platform).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// As documented.
    Normal,
    /// The platform's own rate-limit answer (codes and headers).
    RateLimited,
    /// HTTP 500/503.
    ServerError,
    /// HTTP 200 with a body that is not JSON.
    Malformed,
    /// Ten megabytes of garbage.
    Huge,
    /// Never answers (within an hour).
    Hang,
    /// X: 403 `client-forbidden`, the app lacks access to the endpoint (other platforms:
    /// their app-level refusal where they have one, else as `ServerError`).
    AppForbidden,
    /// X: 402, the app's credits are exhausted.
    CreditsExhausted,
    /// X: 429 `usage-capped`, the app's monthly cap.
    UsageCapped,
}

/// One token held by the simulator.
#[derive(Debug, Clone)]
pub struct SimToken {
    /// Platform.
    pub platform: Platform,
    /// User ID behind the token.
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Expiry; `None` never expires.
    pub expires_at: Option<UnixTime>,
    /// Facebook data-access expiry.
    pub data_access_expires_at: Option<UnixTime>,
    /// When it was issued.
    pub issued_at: UnixTime,
    /// State.
    pub state: TokenState,
    /// Per-token answer behaviour.
    pub behavior: Behavior,
    /// Graph Page tokens: the person who granted the token (`debug_token` `user_id`), shared
    /// by every Page and Instagram account they connected; the Page is `user_id` here and
    /// `profile_id` in `debug_token`. `None`: the token is a user token.
    pub admin_id: Option<String>,
    /// The Meta app the token was issued to, when not the simulator's own [`APP_ID`].
    pub app_id: Option<String>,
    /// An Instagram Login token (see [`TokenSpec::instagram_login_only`]).
    pub instagram_login_only: bool,
    /// Requests made with this token so far.
    pub calls: u64,
    /// When the last of them arrived: its place among all the simulator's requests (from 1;
    /// 0: none yet).
    pub last_call: u64,
}

/// What to issue.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// User ID (the account ID for Threads, TikTok, X and Instagram Login).
    pub user_id: String,
    /// Username.
    pub username: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Seconds until expiry; `None` never expires.
    pub expires_in: Option<i64>,
    /// Seconds until data access expires (Facebook).
    pub data_access_expires_in: Option<i64>,
    /// How long ago it was issued.
    pub issued_ago: i64,
    /// State.
    pub state: TokenState,
    /// Answer behaviour.
    pub behavior: Behavior,
    /// Whether to issue a refresh token too (TikTok, X).
    pub with_refresh: bool,
    /// Graph Page tokens: the person who granted them (see [`SimToken::admin_id`]).
    pub admin_id: Option<String>,
    /// Issue the token to another Meta app (its ID) instead of [`APP_ID`].
    pub app_id: Option<String>,
    /// Instagram: an Instagram Login token, which only graph.instagram.com (`/instagram-login`)
    /// takes; false: a Facebook Login token, which only graph.facebook.com (`/instagram`)
    /// takes. Each host answers the other's tokens 190 "Cannot parse access token".
    pub instagram_login_only: bool,
}

/// The Meta user who, by default, granted every simulated Page token: one agency admin
/// connecting many Pages, as a real publishing product sees it.
pub const DEFAULT_PAGE_ADMIN: &str = "1000000000000001";

/// TikTok access-token lifetime ("Manage user access tokens": 2 hours).
pub const TIKTOK_ACCESS_TTL: i64 = 2 * 3_600;
/// TikTok refresh-token lifetime (180 days).
pub const TIKTOK_REFRESH_TTL: i64 = 180 * 86_400;
/// X access-token lifetime (2 hours).
pub const TWITTER_ACCESS_TTL: i64 = 2 * 3_600;

impl TokenSpec {
    /// A valid token for `user_id` with the platform's publishing scopes, with the platform's
    /// documented lifetime: 60 days for Graph long-lived tokens, 2 hours for TikTok and X.
    pub fn valid(platform: Platform, user_id: &str) -> TokenSpec {
        TokenSpec {
            user_id: user_id.to_owned(),
            username: format!("user{user_id}"),
            scopes: default_scopes(platform),
            expires_in: Some(match platform {
                Platform::Tiktok => TIKTOK_ACCESS_TTL,
                Platform::Twitter => TWITTER_ACCESS_TTL,
                _ => 60 * 86_400,
            }),
            data_access_expires_in: if matches!(platform, Platform::Facebook | Platform::Instagram) {
                Some(90 * 86_400)
            } else {
                None
            },
            issued_ago: 2 * 86_400,
            state: TokenState::Valid,
            behavior: Behavior::Normal,
            with_refresh: matches!(platform, Platform::Tiktok | Platform::Twitter),
            admin_id: matches!(platform, Platform::Facebook | Platform::Instagram)
                .then(|| DEFAULT_PAGE_ADMIN.to_owned()),
            app_id: None,
            instagram_login_only: false,
        }
    }
}

/// The scopes a publishing app asks for on each platform.
pub fn default_scopes(p: Platform) -> Vec<String> {
    let s: &[&str] = match p {
        Platform::Facebook => &["pages_show_list", "pages_manage_posts", "pages_read_engagement"],
        Platform::Instagram => &["instagram_basic", "instagram_content_publish", "pages_show_list"],
        Platform::Threads => &["threads_basic", "threads_content_publish"],
        Platform::Tiktok => &["user.info.basic", "video.publish"],
        Platform::Twitter => &["tweet.read", "tweet.write", "users.read", "offline.access"],
    };
    s.iter().map(|x| (*x).to_owned()).collect()
}

/// Tokens issued by [`Simulator::issue`].
#[derive(Debug, Clone)]
pub struct Issued {
    /// The access token.
    pub access_token: String,
    /// The refresh token, if one was issued.
    pub refresh_token: Option<String>,
    /// Access token expiry.
    pub expires_at: Option<UnixTime>,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, SimToken>,
    /// refresh token -> access token it was issued with
    refresh: HashMap<String, String>,
    /// refresh token -> how many times it was presented, refused uses included
    refresh_uses: HashMap<String, u64>,
    /// authorization codes given by a consent page, not exchanged yet
    codes: HashMap<String, consent::GrantedCode>,
    /// Meta user tokens -> the person's Pages and the ones they granted
    persons: HashMap<String, consent::Person>,
    modes: HashMap<Platform, Behavior>,
    latency: HashMap<Platform, Duration>,
    /// Platform-wide answer tweaks (absurd numbers, quota headers).
    tweaks: HashMap<Platform, Tweaks>,
}

/// Numbers a platform puts in its answers, overridable to test absurd values.
#[derive(Debug, Clone, Default)]
pub struct Tweaks {
    /// `Retry-After` on throttle answers (raw header text).
    pub retry_after: Option<String>,
    /// X `x-rate-limit-reset` on throttle answers (raw header text).
    pub rate_limit_reset: Option<String>,
    /// Graph `estimated_time_to_regain_access` (minutes) in `X-Business-Use-Case-Usage`.
    pub regain_minutes: Option<i64>,
    /// `expires_in` of refresh answers.
    pub expires_in: Option<i64>,
    /// `refresh_expires_in` of TikTok refresh answers.
    pub refresh_expires_in: Option<i64>,
    /// Graph `X-App-Usage` percentage (all three measures) on every answer.
    pub app_usage: Option<i64>,
    /// The token endpoint (refresh) answers 503 while checks work.
    pub token_endpoint_down: bool,
    /// Graph `debug_token`: the app is in development mode and cannot inspect live users'
    /// tokens: `{"data": []}` (observed; see "What the simulator assumes").
    pub app_in_development: bool,
    /// Graph `debug_token`: the app token is refused as not being one ("(#100) You must
    /// provide an app access token, or a user access token that is an owner or developer of
    /// the app"; debug_token reference).
    pub app_token_refused: bool,
    /// Graph (Threads, Instagram Login): the app "requires App Secret": a call made with a
    /// token without `appsecret_proof` is refused (code 100). A proof that is given is always
    /// checked ("Securing Requests").
    pub require_appsecret_proof: bool,
    /// X: revoking a refresh token answers 503 (revoking an access token still works).
    pub refresh_revoke_down: bool,
    /// How long every answer is held back after the platform acted on the request (a
    /// refresh has rotated the tokens by then): a slow network on the way back.
    pub answer_delay: Option<std::time::Duration>,
}

fn token_endpoint_down(s: &Shared, p: Platform) -> Option<Response> {
    s.lock().tweaks.get(&p).is_some_and(|t| t.token_endpoint_down).then(|| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>503 Service Temporarily Unavailable</body></html>",
        )
            .into_response()
    })
}

struct Shared {
    inner: Mutex<Inner>,
    calls: [AtomicU64; 5],
    /// Refreshes that issued new tokens.
    refreshes: [AtomicU64; 5],
    /// Calls to each token endpoint, whatever their answer (refused ones included).
    token_calls: [AtomicU64; 5],
    /// Requests being answered now (inside their latency), and the most at once.
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
    /// The platform of every request, in the order they arrived.
    arrivals: Mutex<Vec<Platform>>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn idx(p: Platform) -> usize {
    Platform::ALL.iter().position(|x| *x == p).unwrap_or(0)
}

/// A running simulator.
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Issues a token into the simulator's state (see [`Simulator::issue`]).
fn issue_in(g: &mut Inner, platform: Platform, spec: TokenSpec) -> Issued {
    let now = domain::now();
    let access = random_token(token_prefix(platform));
    let expires_at = spec.expires_in.map(|s| now + s);
    let t = SimToken {
        platform,
        user_id: spec.user_id,
        username: spec.username,
        scopes: spec.scopes,
        expires_at,
        data_access_expires_at: spec.data_access_expires_in.map(|s| now + s),
        issued_at: now - spec.issued_ago,
        state: spec.state,
        behavior: spec.behavior,
        admin_id: spec.admin_id,
        app_id: spec.app_id,
        instagram_login_only: spec.instagram_login_only,
        calls: 0,
        last_call: 0,
    };
    g.tokens.insert(access.clone(), t);
    let refresh_token = spec.with_refresh.then(|| {
        let r = random_token("rt-");
        g.refresh.insert(r.clone(), access.clone());
        r
    });
    Issued {
        access_token: access,
        refresh_token,
        expires_at,
    }
}

fn random_token(prefix: &str) -> String {
    let mut b = [0u8; 24];
    rand::fill(&mut b);
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

fn token_prefix(p: Platform) -> &'static str {
    match p {
        Platform::Facebook => "EAAG",
        Platform::Instagram => "IGQV",
        Platform::Threads => "THQV",
        Platform::Tiktok => "act.",
        Platform::Twitter => "tw-",
    }
}

type S = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;

fn router(shared: Arc<Shared>) -> Router {
    let graph = |p: Platform| {
        Router::new()
            .route("/{ver}/debug_token", get(move |s: S, q| debug_token(s, p, q)))
            .route("/{ver}/me", get(move |s: S, q| graph_me(s, p, q)))
            .route("/{ver}/{object}", get(move |s: S, path, q| graph_object(s, p, path, q)))
            .route(
                "/{ver}/{user}/permissions",
                delete(move |s: S, path, q| graph_revoke(s, p, path, q)),
            )
            .route("/refresh_access_token", get(move |s: S, q| graph_refresh(s, p, q)))
            .route(
                "/{ver}/oauth/access_token",
                get(move |s: S, q| consent::meta_token(s, p, q)),
            )
            .route("/{ver}/me/accounts", get(move |s: S, q| consent::me_accounts(s, p, q)))
            .route(
                "/oauth/access_token",
                post(move |s: S, f| consent::short_token(s, p, f)),
            )
            .route("/access_token", get(move |s: S, q| consent::long_token(s, p, q)))
    };
    let dialog = |d: consent::Dialog| get(move |q| consent::page(d, q)).post(move |s: S, f| consent::answer(s, d, f));
    Router::new()
        .nest("/facebook", graph(Platform::Facebook))
        .nest(
            "/instagram",
            graph(Platform::Instagram).layer(axum::middleware::from_fn_with_state(shared.clone(), |s, r, n| {
                instagram_host(s, false, r, n)
            })),
        )
        .nest(
            "/instagram-login",
            graph(Platform::Instagram).layer(axum::middleware::from_fn_with_state(shared.clone(), |s, r, n| {
                instagram_host(s, true, r, n)
            })),
        )
        .nest("/threads", graph(Platform::Threads))
        .route(
            "/facebook/dialog/oauth",
            dialog(consent::Dialog::Meta(Platform::Facebook)),
        )
        .route(
            "/instagram/oauth/authorize",
            dialog(consent::Dialog::Meta(Platform::Instagram)),
        )
        .route("/threads/oauth/authorize", dialog(consent::Dialog::Threads))
        .route("/tiktok/v2/auth/authorize/", dialog(consent::Dialog::Tiktok))
        .route("/tiktok/v2/user/info/", get(tiktok_user_info))
        .route("/tiktok/v2/oauth/token/", post(tiktok_token))
        .route("/tiktok/v2/oauth/revoke/", post(tiktok_revoke))
        .route("/twitter/2/users/me", get(twitter_me))
        .route("/twitter/2/oauth2/token", post(twitter_token))
        .route(
            "/twitter/i/oauth2/authorize",
            get(twitter::authorize).post(twitter::consent),
        )
        .route("/twitter/2/oauth2/revoke", post(twitter_revoke))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), app_usage_header))
        .with_state(shared)
}

fn bearer(h: &HeaderMap) -> String {
    h.get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

fn live<'a>(g: &'a Inner, p: Platform, token: &str, now: UnixTime) -> Option<&'a SimToken> {
    g.tokens
        .get(token)
        .filter(|t| t.platform == p && t.state == TokenState::Valid && t.expires_at.is_none_or(|e| e > now))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description, "log_id": "20261127sim"})),
    )
        .into_response()
}

/// Rotates a refresh token: the old one stops working, a new pair is issued.
fn rotate(g: &mut Inner, p: Platform, refresh: &str, access_ttl: i64) -> Option<(String, String, SimToken)> {
    *g.refresh_uses.entry(refresh.to_owned()).or_default() += 1;
    // Single-use: once presented it is gone, whatever comes of it.
    let old_access = g.refresh.remove(refresh)?;
    let t = g
        .tokens
        .get(&old_access)
        .filter(|t| t.platform == p && t.state == TokenState::Valid)?
        .clone();
    let now = domain::now();
    let access = random_token(token_prefix(p));
    let new_refresh = random_token("rt-");
    g.tokens.insert(
        access.clone(),
        SimToken {
            expires_at: Some(now.saturating_add(access_ttl)),
            issued_at: now,
            calls: 0,
            last_call: 0,
            ..t.clone()
        },
    );
    g.refresh.insert(new_refresh.clone(), access.clone());
    Some((access, new_refresh, t))
}
