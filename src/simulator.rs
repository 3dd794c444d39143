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
use rand::RngCore;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::{self, Platform, UnixTime};

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

fn random_token(prefix: &str) -> String {
    let mut b = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut b);
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

impl Simulator {
    /// Starts on `127.0.0.1:0`.
    pub async fn start() -> std::io::Result<Simulator> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: &str) -> std::io::Result<Simulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            calls: Default::default(),
            refreshes: Default::default(),
        });
        let shutdown = CancellationToken::new();
        let app = router(shared.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // No Nagle delay: an answer goes out at once, as a platform's would.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        Ok(Simulator { addr, shared, shutdown })
    }

    /// Starts on `127.0.0.1:0` in a thread of its own with a single-threaded runtime, as a
    /// platform would be: apart from the daemon's runtime. The thread ends when the simulator
    /// is dropped.
    pub fn start_in_thread() -> std::io::Result<Simulator> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new().name("simulator".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                match Simulator::start().await {
                    Ok(sim) => {
                        let stop = sim.shutdown.clone();
                        let _ = tx.send(Ok(sim));
                        stop.cancelled().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        })?;
        rx.recv().map_err(std::io::Error::other)?
    }

    /// The base URL to configure for `p`.
    pub fn base_url(&self, p: Platform) -> String {
        format!("http://{}/{}", self.addr, p.as_str())
    }

    /// The `[platforms.*]` config for a daemon using this simulator; secrets are written as
    /// files into `secrets_dir`.
    pub fn config_toml(&self, secrets_dir: &std::path::Path) -> std::io::Result<String> {
        let write = |name: &str, value: &str| -> std::io::Result<String> {
            let path = secrets_dir.join(name);
            std::fs::write(&path, value)?;
            Ok(path.display().to_string().replace('\\', "/"))
        };
        let fb = write("facebook_app_secret", APP_SECRET)?;
        let tt = write("tiktok_client_secret", TIKTOK_CLIENT_SECRET)?;
        let tw = write("twitter_client_secret", TWITTER_CLIENT_SECRET)?;
        Ok(format!(
            "[platforms.facebook]\nbase_url = \"{}\"\napp_id = \"{APP_ID}\"\napp_secret_file = \"{fb}\"\n\
             [platforms.instagram]\nbase_url = \"{}\"\n\
             [platforms.threads]\nbase_url = \"{}\"\n\
             [platforms.tiktok]\nbase_url = \"{}\"\nclient_key = \"{TIKTOK_CLIENT_KEY}\"\nclient_secret_file = \"{tt}\"\n\
             [platforms.twitter]\nbase_url = \"{}\"\nclient_id = \"{TWITTER_CLIENT_ID}\"\nclient_secret_file = \"{tw}\"\n",
            self.base_url(Platform::Facebook),
            self.base_url(Platform::Instagram),
            self.base_url(Platform::Threads),
            self.base_url(Platform::Tiktok),
            self.base_url(Platform::Twitter),
        ))
    }

    /// Issues a token.
    pub fn issue(&self, platform: Platform, spec: TokenSpec) -> Issued {
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
        };
        let mut g = self.shared.lock();
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

    /// Changes a token in place.
    pub fn update(&self, token: &str, f: impl FnOnce(&mut SimToken)) {
        if let Some(t) = self.shared.lock().tokens.get_mut(token) {
            f(t);
        }
    }

    /// A token's current record.
    pub fn token(&self, token: &str) -> Option<SimToken> {
        self.shared.lock().tokens.get(token).cloned()
    }

    /// How many access tokens of `user_id` on `p` still work (valid and unexpired).
    pub fn live_tokens(&self, p: Platform, user_id: &str) -> usize {
        let now = domain::now();
        self.shared
            .lock()
            .tokens
            .values()
            .filter(|t| {
                t.platform == p
                    && t.user_id == user_id
                    && t.state == TokenState::Valid
                    && t.expires_at.is_none_or(|e| e > now)
            })
            .count()
    }

    /// Whether a refresh token is still accepted.
    pub fn refresh_token_live(&self, token: &str) -> bool {
        self.shared.lock().refresh.contains_key(token)
    }

    /// Makes a refresh token unusable (as if it expired or was used elsewhere).
    pub fn invalidate_refresh_token(&self, token: &str) {
        self.shared.lock().refresh.remove(token);
    }

    /// Makes every request to `p` behave as `b` (e.g. the whole platform is down).
    pub fn set_platform_behavior(&self, p: Platform, b: Behavior) {
        self.shared.lock().modes.insert(p, b);
    }

    /// Adds a fixed latency to every answer of `p`.
    pub fn set_latency(&self, p: Platform, d: Duration) {
        self.shared.lock().latency.insert(p, d);
    }

    /// Sets the answer tweaks of `p`.
    pub fn set_tweaks(&self, p: Platform, t: Tweaks) {
        self.shared.lock().tweaks.insert(p, t);
    }

    /// Refreshes of `p` that issued new tokens so far.
    pub fn refreshes(&self, p: Platform) -> u64 {
        self.shared.refreshes[idx(p)].load(Ordering::Relaxed)
    }

    /// Requests served for `p` so far.
    pub fn calls(&self, p: Platform) -> u64 {
        self.shared.calls[idx(p)].load(Ordering::Relaxed)
    }
}

type S = State<Arc<Shared>>;

fn router(shared: Arc<Shared>) -> Router {
    let graph = |p: Platform| {
        Router::new()
            .route("/{ver}/debug_token", get(move |s: S, q| debug_token(s, p, q)))
            .route("/{ver}/me", get(move |s: S, q| graph_me(s, p, q)))
            .route(
                "/{ver}/{user}/permissions",
                delete(move |s: S, path, q| graph_revoke(s, p, path, q)),
            )
            .route("/refresh_access_token", get(move |s: S, q| graph_refresh(s, p, q)))
    };
    Router::new()
        .nest("/facebook", graph(Platform::Facebook))
        .nest("/instagram", graph(Platform::Instagram))
        .nest("/threads", graph(Platform::Threads))
        .route("/tiktok/v2/user/info/", get(tiktok_user_info))
        .route("/tiktok/v2/oauth/token/", post(tiktok_token))
        .route("/tiktok/v2/oauth/revoke/", post(tiktok_revoke))
        .route("/twitter/2/users/me", get(twitter_me))
        .route("/twitter/2/oauth2/token", post(twitter_token))
        .route("/twitter/2/oauth2/revoke", post(twitter_revoke))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), app_usage_header))
        .with_state(shared)
}

/// Graph answers carry the app's quota usage in `X-App-Usage` ("Rate limiting").
async fn app_usage_header(State(s): S, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let platform = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .and_then(|p| p.parse::<Platform>().ok());
    let mut response = next.run(req).await;
    let usage = platform.and_then(|p| s.lock().tweaks.get(&p).and_then(|t| t.app_usage));
    if let Some(u) = usage
        && let Ok(v) = json!({"call_count": u, "total_cputime": u, "total_time": u})
            .to_string()
            .parse()
    {
        response.headers_mut().insert("x-app-usage", v);
    }
    response
}

type Q = Query<HashMap<String, String>>;

/// Counts the call, waits the platform's latency, and answers for an unusual behaviour
/// (of the platform, or of the token) instead of the documented path.
async fn preflight(s: &Shared, p: Platform, token: Option<&str>) -> Option<Response> {
    s.calls[idx(p)].fetch_add(1, Ordering::Relaxed);
    let (latency, mode, tb) = {
        let g = s.lock();
        let tb = token.and_then(|t| g.tokens.get(t)).map(|t| t.behavior);
        (g.latency.get(&p).copied(), g.modes.get(&p).copied(), tb)
    };
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    let behavior = match (mode, tb) {
        (Some(m), _) if m != Behavior::Normal => m,
        (_, Some(b)) => b,
        _ => Behavior::Normal,
    };
    let tweaks = s.lock().tweaks.get(&p).cloned().unwrap_or_default();
    match behavior {
        Behavior::Normal => None,
        Behavior::RateLimited => Some(rate_limited(p, &tweaks)),
        Behavior::AppForbidden | Behavior::CreditsExhausted | Behavior::UsageCapped if p == Platform::Twitter => {
            let (status, title, kind, detail) = match behavior {
                Behavior::AppForbidden => (
                    StatusCode::FORBIDDEN,
                    "Client Forbidden",
                    "client-forbidden",
                    "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens \
                     from a Twitter developer App that is attached to a Project.",
                ),
                Behavior::CreditsExhausted => (
                    StatusCode::PAYMENT_REQUIRED,
                    "CreditsDepleted",
                    "credits",
                    "Your enrolled account does not have any credits to fulfill this request.",
                ),
                _ => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "UsageCapExceeded",
                    "usage-capped",
                    "Usage cap exceeded: Monthly product cap",
                ),
            };
            Some(
                (
                    status,
                    Json(json!({"title": title, "detail": detail, "status": status.as_u16(),
                        "type": format!("https://api.x.com/2/problems/{kind}")})),
                )
                    .into_response(),
            )
        }
        Behavior::AppForbidden | Behavior::CreditsExhausted | Behavior::UsageCapped => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>503 Service Temporarily Unavailable</body></html>",
            )
                .into_response(),
        ),
        Behavior::ServerError => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>503 Service Temporarily Unavailable</body></html>",
            )
                .into_response(),
        ),
        Behavior::Malformed => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"data\": {\"is_valid\": tr",
            )
                .into_response(),
        ),
        Behavior::Huge => Some((StatusCode::OK, vec![b'x'; 10 * 1024 * 1024]).into_response()),
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Some(StatusCode::GATEWAY_TIMEOUT.into_response())
        }
    }
}

fn rate_limited(p: Platform, tweaks: &Tweaks) -> Response {
    let now = domain::now();
    let mut response = rate_limited_answer(p, tweaks, now);
    if let Some(v) = tweaks.retry_after.as_deref().and_then(|v| v.parse().ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

fn rate_limited_answer(p: Platform, tweaks: &Tweaks, now: UnixTime) -> Response {
    match p {
        Platform::Facebook | Platform::Instagram => {
            let code = if p == Platform::Facebook { 80001 } else { 80002 };
            let kind = if p == Platform::Facebook { "pages" } else { "instagram" };
            let buc = json!({"1234": [{"type": kind, "call_count": 100, "total_cputime": 20,
                "total_time": 20, "estimated_time_to_regain_access": tweaks.regain_minutes.unwrap_or(2)}]});
            (
                StatusCode::BAD_REQUEST,
                [("x-business-use-case-usage", buc.to_string())],
                Json(
                    json!({"error": {"message": "There have been too many calls.", "type": "OAuthException",
                    "code": code, "fbtrace_id": "AbCdEf"}}),
                ),
            )
                .into_response()
        }
        Platform::Threads => (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"message": "Application request limit reached", "type": "OAuthException",
                "code": 4, "fbtrace_id": "AbCdEf"}}),
            ),
        )
            .into_response(),
        Platform::Tiktok => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"data": {}, "error": {"code": "rate_limit_exceeded",
                "message": "API rate limit exceeded.", "log_id": "20261127sim"}})),
        )
            .into_response(),
        Platform::Twitter => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("x-rate-limit-limit", "75".to_owned()),
                ("x-rate-limit-remaining", "0".to_owned()),
                (
                    "x-rate-limit-reset",
                    tweaks
                        .rate_limit_reset
                        .clone()
                        .unwrap_or_else(|| (now + 120).to_string()),
                ),
            ],
            Json(
                json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                "status": 429}),
            ),
        )
            .into_response(),
    }
}

fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut e = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEf"});
    if let Some(s) = subcode {
        e["error_subcode"] = json!(s);
    }
    (status, Json(json!({ "error": e }))).into_response()
}

/// The Graph (code, subcode, message) for a token that does not work, or `None` if it does.
fn graph_failure(t: Option<&SimToken>, now: UnixTime) -> Option<(i64, Option<i64>, &'static str)> {
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
        TokenState::Valid if t.expires_at.is_some_and(|e| e <= now) => {
            Some((190, Some(463), "Error validating access token: Session has expired."))
        }
        TokenState::Valid => None,
    }
}

async fn debug_token(State(s): S, p: Platform, Query(q): Q) -> Response {
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
    let t = g.tokens.get(&input).filter(|t| t.platform == p);
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

async fn graph_me(State(s): S, p: Platform, Query(q): Q) -> Response {
    let token = q.get("access_token").cloned().unwrap_or_default();
    if let Some(r) = preflight(&s, p, Some(&token)).await {
        return r;
    }
    let g = s.lock();
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
    for f in fields.split(',') {
        match f {
            "id" | "user_id" => {
                out.insert(f.to_owned(), json!(t.user_id));
            }
            "username" => {
                out.insert(f.to_owned(), json!(t.username));
            }
            _ => {}
        }
    }
    out.entry("id").or_insert_with(|| json!(t.user_id));
    Json(Value::Object(out)).into_response()
}

async fn graph_refresh(State(s): S, p: Platform, Query(q): Q) -> Response {
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
            ..t
        },
    );
    Json(json!({"access_token": fresh, "token_type": "bearer", "expires_in": expires_in})).into_response()
}

/// `DELETE /{user-id}/permissions`: takes a user token of that person or the app token
/// (`APP_ID|APP_SECRET`), and removes the app for the person: every Page and Instagram token
/// they granted dies with it. A Page token is refused, as Graph does.
async fn graph_revoke(State(s): S, p: Platform, Path((_ver, user)): Path<(String, String)>, Query(q): Q) -> Response {
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

fn tiktok_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"data": {}, "error": {"code": code, "message": message, "log_id": "20261127sim"}})),
    )
        .into_response()
}

async fn tiktok_user_info(State(s): S, h: HeaderMap, Query(q): Q) -> Response {
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

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description, "log_id": "20261127sim"})),
    )
        .into_response()
}

/// Rotates a refresh token: the old one stops working, a new pair is issued.
fn rotate(g: &mut Inner, p: Platform, refresh: &str, access_ttl: i64) -> Option<(String, String, SimToken)> {
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
            ..t.clone()
        },
    );
    g.refresh.insert(new_refresh.clone(), access.clone());
    Some((access, new_refresh, t))
}

async fn tiktok_token(State(s): S, Form(f): Form<HashMap<String, String>>) -> Response {
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
    if f.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Unsupported grant_type.");
    }
    let refresh = f.get("refresh_token").cloned().unwrap_or_default();
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

async fn tiktok_revoke(State(s): S, Form(f): Form<HashMap<String, String>>) -> Response {
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

/// A confidential client authenticates with Basic auth; a public client (no secret) sends
/// its `client_id` in the body and no Authorization header.
fn twitter_client_ok(h: &HeaderMap, f: &HashMap<String, String>) -> bool {
    match h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        Some(auth) => {
            let want = base64::engine::general_purpose::STANDARD
                .encode(format!("{TWITTER_CLIENT_ID}:{TWITTER_CLIENT_SECRET}"));
            auth == format!("Basic {want}")
        }
        None => f.get("client_id").map(String::as_str) == Some(TWITTER_CLIENT_ID),
    }
}

async fn twitter_me(State(s): S, h: HeaderMap) -> Response {
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

async fn twitter_token(State(s): S, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
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

async fn twitter_revoke(State(s): S, h: HeaderMap, Form(f): Form<HashMap<String, String>>) -> Response {
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
