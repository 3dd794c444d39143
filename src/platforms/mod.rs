//! Platform adapters: one file per platform behind [`PlatformApi`], plus the HTTP plumbing
//! they share. Adapters map each platform's documented answers into [`CheckOutcome`],
//! [`RefreshOutcome`] and [`RevokeOutcome`]; they never log or return a token.

pub mod connect;
pub mod facebook;
mod valid;

pub use valid::ValidToken;
pub mod graph;
pub mod instagram;
mod oauth2;
pub mod threads;
pub mod tiktok;
pub mod twitter;

use std::time::Duration;

use reqwest::header::HeaderMap;
use secrecy::SecretString;

use crate::config::{Config, ConfigError, InstagramLogin, read_secret_file};
use crate::domain::{Platform, UnixTime};

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    /// The platform accepted the token.
    Valid(ValidToken),
    /// The platform says the token is dead.
    Invalid {
        /// Why, as far as the platform says.
        reason: InvalidReason,
        /// The platform's own words (no token in them), for `lastError`.
        detail: String,
    },
    /// The token works but lacks a permission the check itself needs.
    PermissionDenied {
        /// The platform's own words.
        detail: String,
    },
    /// No usable answer: keep the last known state and retry later.
    Transient(Transient),
    /// The daemon's own configuration is wrong (e.g. the platform rejected the app secret):
    /// never the account's fault.
    Misconfigured(String),
    /// This account's token was issued to another app than the one configured (Graph
    /// `debug_token` code 100 "App_id in the input_token did not match the Viewing App"):
    /// a configuration problem of this account, not of the daemon and not a dead token.
    OtherApp(String),
}

/// A token's expiry as a platform reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Never expires (Graph `expires_at: 0`).
    Never,
    /// Expires at this time.
    At(UnixTime),
}

/// Why a token is dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidReason {
    /// Past its expiry.
    Expired,
    /// Revoked by the user or through the API.
    Revoked,
    /// The user removed the app.
    AppRemoved,
    /// The user changed their password.
    PasswordChanged,
    /// Facebook checkpoint: the user must log in on facebook.com.
    Checkpointed,
    /// The user has not confirmed their account.
    UnconfirmedUser,
    /// The user lost their role on the Page.
    LostPageRole,
    /// The refresh token itself was rejected by the token endpoint.
    RefreshRejected,
    /// The token works but belongs to another account than the one registered.
    WrongAccount,
    /// Invalid for another or unstated reason.
    Invalid,
}

/// A failure that says nothing about the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Transient {
    /// What kind of failure.
    pub kind: TransientKind,
    /// When the platform says to come back (Unix seconds), if it says; always within
    /// [`MAX_WAIT`] of the answer.
    pub retry_at: Option<UnixTime>,
    /// Words safe to show.
    pub detail: String,
    /// What a throttle applies to (only meaningful for [`TransientKind::RateLimited`]).
    pub scope: ThrottleScope,
}

/// What a platform's throttle covers: the whole app (every account of the platform waits)
/// or only this account's token or Page (only this account waits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThrottleScope {
    /// The app's own quota (TikTok per-app limits, Graph code 4, `X-App-Usage`).
    #[default]
    App,
    /// This account's token, user or Page (X per-user-token limits, Graph Page BUC limits).
    Account,
}

/// The longest a platform may make us wait with one answer.
pub const MAX_WAIT: i64 = 24 * 3_600;

/// `now + secs`, with `secs` clamped to `[0, MAX_WAIT]` (a platform's wait can be absurd or
/// negative; it must never park an account or a lane for years, or overflow).
pub fn wait_until(now: UnixTime, secs: i64) -> UnixTime {
    now.saturating_add(secs.clamp(0, MAX_WAIT))
}

/// An absolute time a platform named as the end of a wait, clamped to `[now, now + MAX_WAIT]`.
pub fn clamp_wait_at(now: UnixTime, at: i64) -> UnixTime {
    at.clamp(now, now.saturating_add(MAX_WAIT))
}

/// An expiry `now + secs` from a lifetime in seconds (`expires_in`), clamped to
/// `[0, max_lifetime]`: the platform's documented lifetime times two.
pub fn expiry_in(now: UnixTime, secs: i64, max_lifetime: i64) -> UnixTime {
    now.saturating_add(secs.clamp(0, max_lifetime))
}

/// Latest absolute time accepted from a platform (9999-12-31T23:59:59Z): later values are
/// nonsense and are clamped so that formatting and arithmetic stay defined.
pub const MAX_TIMESTAMP: UnixTime = 253_402_300_799;

/// An absolute time from a platform, clamped to `[0, MAX_TIMESTAMP]`.
pub fn clamp_timestamp(t: i64) -> UnixTime {
    t.clamp(0, MAX_TIMESTAMP)
}

/// Kinds of transient failure, also the `transient_error` causes in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientKind {
    /// No answer within the timeout.
    Timeout,
    /// Could not connect.
    Unreachable,
    /// Throttled by the platform.
    RateLimited,
    /// A 5xx or a documented temporary error.
    ServerError,
    /// An answer that is not what the platform documents.
    Malformed,
}

impl Transient {
    /// A transient failure without a retry time, of app scope.
    pub fn new(kind: TransientKind, detail: impl Into<String>) -> Self {
        Transient {
            kind,
            retry_at: None,
            detail: detail.into(),
            scope: ThrottleScope::App,
        }
    }

    /// Whether this is a throttle (a deferral, not a failure).
    pub fn is_throttle(&self) -> bool {
        self.kind == TransientKind::RateLimited
    }
}

/// New tokens from a refresh.
#[derive(Debug)]
pub struct NewTokens {
    /// The new access token.
    pub access_token: SecretString,
    /// The new refresh token, if the platform rotated it (never an empty one).
    pub refresh_token: Option<SecretString>,
    /// Access token expiry.
    pub expires_at: Option<UnixTime>,
    /// Refresh token expiry.
    pub refresh_expires_at: Option<UnixTime>,
    /// Scopes, if the platform returned them.
    pub scopes: Option<Vec<String>>,
}

/// What a refresh did.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// New tokens: seal and commit them before anything else.
    Refreshed(NewTokens),
    /// The platform documents this answer as final: the account must be reconnected.
    Fatal(String),
    /// Try again later.
    Transient(Transient),
    /// This platform or account cannot be refreshed (no refresh token, not supported).
    NotSupported(String),
    /// The daemon's configuration is wrong (client credentials rejected or missing).
    Misconfigured(String),
}

/// What a revoke did.
#[derive(Debug, PartialEq)]
pub enum RevokeOutcome {
    /// The platform confirmed the token is revoked (or already dead).
    Revoked,
    /// The platform has no revoke API, or the daemon lacks what it needs to call it.
    NotSupported(String),
    /// The platform could not be reached or refused; the reason says which.
    Failed(String),
}

/// What an adapter needs to know about the account it acts on.
pub struct TokenContext<'a> {
    /// The account ID as registered.
    pub account_id: &'a str,
    /// The access token.
    pub access_token: &'a SecretString,
    /// The refresh token, if stored.
    pub refresh_token: Option<&'a SecretString>,
    /// The platform user ID found by an earlier check (Facebook revocation needs it).
    pub platform_user_id: Option<&'a str>,
    /// The access token's stored expiry, when known (TikTok revocation refreshes an expired one).
    pub expires_at: Option<UnixTime>,
    /// Instagram: the login the account was connected with; `None`: the configured one.
    pub instagram_login: Option<InstagramLogin>,
}

/// The three operations every platform offers in its own way.
pub trait PlatformApi {
    /// Is the token valid, when does it expire, what does it carry.
    fn check(&self, t: &TokenContext<'_>) -> impl Future<Output = CheckOutcome> + Send;
    /// Renew the token where the platform allows it.
    fn refresh(&self, t: &TokenContext<'_>) -> impl Future<Output = RefreshOutcome> + Send;
    /// Revoke the token at the platform.
    fn revoke(&self, t: &TokenContext<'_>) -> impl Future<Output = RevokeOutcome> + Send;
}

/// The shared HTTP client and response-size limit.
#[derive(Clone, Debug)]
pub struct Http {
    client: reqwest::Client,
    max_bytes: usize,
    token_timeout: Duration,
}

/// A platform's answer, read in full (up to the size limit).
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON, or a `Malformed` transient naming the platform.
    pub fn json(&self, platform: Platform) -> Result<serde_json::Value, Transient> {
        serde_json::from_slice(&self.body).map_err(|_| {
            Transient::new(
                TransientKind::Malformed,
                format!(
                    "{} answered HTTP {} with a body that is not JSON",
                    platform.display_name(),
                    self.status
                ),
            )
        })
    }

    /// When to come back, from `Retry-After` (seconds or HTTP date) or X's `x-rate-limit-reset`.
    pub fn retry_at(&self, now: UnixTime) -> Option<UnixTime> {
        let h = |name: &str| self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        if let Some(v) = h("retry-after") {
            if let Ok(secs) = v.parse::<i64>() {
                return Some(wait_until(now, secs));
            }
            if let Ok(t) = httpdate_parse(v) {
                return Some(clamp_wait_at(now, t));
            }
        }
        h("x-rate-limit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .map(|t| clamp_wait_at(now, t))
    }
}

fn httpdate_parse(v: &str) -> Result<UnixTime, ()> {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(v, &fmt)
        .map(|d| d.assume_utc().unix_timestamp())
        .map_err(|_| ())
}

impl Http {
    /// Builds the one client: rustls, timeouts from config, no redirects (a redirect could
    /// carry a token to another host).
    pub fn new(config: &Config) -> Result<Http, ConfigError> {
        crate::crypto::install_tls_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(config.http.connect_timeout.0)
            .timeout(config.http.request_timeout.0)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("socialsyncer/", env!("CARGO_PKG_VERSION")))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ConfigError(format!("http: cannot build the HTTP client: {e}")))?;
        Ok(Http {
            client,
            max_bytes: config.http.max_response_bytes,
            token_timeout: config.http.token_request_timeout.0.max(config.http.request_timeout.0),
        })
    }

    /// The underlying client, for building requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends a request to a token endpoint (refresh, revoke) with the longer
    /// `http.token_request_timeout`. A refresh of a rotating refresh token (TikTok, X) is
    /// the one call whose answer must not be lost: the platform invalidates the old refresh
    /// token as soon as it issues the new one, so a reply dropped by a short timeout after
    /// the platform rotated leaves us holding a dead refresh token and the account must be
    /// reconnected. Waiting longer for that answer costs nothing comparable.
    pub async fn send_token(&self, platform: Platform, req: reqwest::RequestBuilder) -> Result<Reply, Transient> {
        self.send(platform, req.timeout(self.token_timeout)).await
    }

    /// Sends a request and reads the whole answer, bounded in size. Errors never carry the
    /// URL (which may hold a token in its query).
    pub async fn send(&self, platform: Platform, req: reqwest::RequestBuilder) -> Result<Reply, Transient> {
        let name = platform.display_name();
        let classify = |e: reqwest::Error| {
            let e = e.without_url();
            if e.is_timeout() {
                Transient::new(TransientKind::Timeout, format!("{name} did not answer in time"))
            } else if e.is_connect() {
                Transient::new(TransientKind::Unreachable, format!("{name} could not be reached"))
            } else {
                Transient::new(TransientKind::Unreachable, format!("{name} request failed: {e}"))
            }
        };
        let mut resp = req.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > self.max_bytes {
                return Err(Transient::new(
                    TransientKind::Malformed,
                    format!("{name} sent an answer larger than {} bytes", self.max_bytes),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, headers, body })
    }
}

/// A transient failure for an HTTP status a platform answered without a usable body.
pub fn status_transient(platform: Platform, reply: &Reply, now: UnixTime) -> Transient {
    let name = platform.display_name();
    let (kind, detail) = match reply.status {
        429 => (
            TransientKind::RateLimited,
            format!("{name} is rate limiting requests (HTTP 429)"),
        ),
        s if s >= 500 => (TransientKind::ServerError, format!("{name} answered HTTP {s}")),
        s => (
            TransientKind::Malformed,
            format!("{name} answered HTTP {s} with an unexpected body"),
        ),
    };
    Transient {
        kind,
        retry_at: reply.retry_at(now),
        detail,
        scope: ThrottleScope::App,
    }
}

/// All adapters, built once from the config.
#[derive(Debug)]
pub struct Platforms {
    facebook: facebook::Facebook,
    instagram: instagram::Instagram,
    threads: threads::Threads,
    tiktok: tiktok::Tiktok,
    twitter: twitter::Twitter,
}

impl Platforms {
    /// Builds every adapter; reads the secret files the config names.
    pub fn new(config: &Config, http: Http) -> Result<Platforms, ConfigError> {
        let p = &config.platforms;
        let secret = |key: &str, path: &Option<std::path::PathBuf>| {
            path.as_deref().map(|f| read_secret_file(key, f)).transpose()
        };
        let fb_secret = secret("platforms.facebook.app_secret_file", &p.facebook.app_secret_file)?;
        let fb_app = graph::AppCredentials::new(p.facebook.app_id.clone(), fb_secret);
        let ig_login = p.instagram.login;
        // Instagram through Facebook Login calls Graph with the Facebook app: one quota.
        let fb_usage = graph::AppUsage::new(p.facebook.app_usage_pause());
        let ig_usage = if p.instagram.app_id.is_none() && p.instagram.app_secret_file.is_none() {
            fb_usage.clone()
        } else {
            graph::AppUsage::new(p.instagram.app_usage_pause())
        };
        // Instagram with Facebook Login uses the Facebook app unless it names its own.
        let ig_app = if p.instagram.app_id.is_some() || p.instagram.app_secret_file.is_some() {
            graph::AppCredentials::new(
                p.instagram.app_id.clone(),
                secret("platforms.instagram.app_secret_file", &p.instagram.app_secret_file)?,
            )
        } else {
            fb_app.clone()
        };
        // Calls made with a token are signed (appsecret_proof) where the app's secret is
        // known: the Threads app's, and the Instagram Login app's for Instagram Login tokens.
        let threads_secret = secret("platforms.threads.app_secret_file", &p.threads.app_secret_file)?;
        let login_secret = secret(
            "platforms.instagram.login_app_secret_file",
            &p.instagram.login_app_secret_file,
        )?;
        Ok(Platforms {
            facebook: facebook::Facebook::new(
                graph::Graph::new(
                    http.clone(),
                    Platform::Facebook,
                    p.facebook.base_url(Platform::Facebook, InstagramLogin::Facebook),
                    p.facebook.api_version().to_owned(),
                    fb_usage,
                ),
                fb_app,
            ),
            instagram: instagram::Instagram::new(
                // Facebook Login's host, with the Facebook app's quota unless Instagram names
                // its own app.
                graph::Graph::new(
                    http.clone(),
                    Platform::Instagram,
                    p.instagram.base_url(Platform::Instagram, InstagramLogin::Facebook),
                    p.instagram.api_version().to_owned(),
                    ig_usage,
                ),
                // Instagram Login's host, its calls signed with the Instagram Login app.
                graph::Graph::new(
                    http.clone(),
                    Platform::Instagram,
                    p.instagram.base_url(Platform::Instagram, InstagramLogin::Instagram),
                    p.instagram.api_version().to_owned(),
                    graph::AppUsage::new(p.instagram.app_usage_pause()),
                )
                .with_appsecret_proof(login_secret),
                ig_login,
                ig_app,
            ),
            threads: threads::Threads::new(
                graph::Graph::new(
                    http.clone(),
                    Platform::Threads,
                    p.threads.base_url(Platform::Threads, InstagramLogin::Facebook),
                    "v1.0".to_owned(),
                    graph::AppUsage::new(p.threads.app_usage_pause()),
                )
                .with_appsecret_proof(threads_secret),
            ),
            tiktok: tiktok::Tiktok::new(
                http.clone(),
                p.tiktok.base_url(Platform::Tiktok, InstagramLogin::Facebook),
                p.tiktok.client_key.clone(),
                secret("platforms.tiktok.client_secret_file", &p.tiktok.client_secret_file)?,
            ),
            twitter: twitter::Twitter::new(
                http,
                p.twitter.base_url(Platform::Twitter, InstagramLogin::Facebook),
                p.twitter.client_id.clone(),
                secret("platforms.twitter.client_secret_file", &p.twitter.client_secret_file)?,
            ),
        })
    }

    /// Checks a token of `platform`.
    pub async fn check(&self, platform: Platform, t: &TokenContext<'_>) -> CheckOutcome {
        match platform {
            Platform::Facebook => self.facebook.check(t).await,
            Platform::Instagram => self.instagram.check(t).await,
            Platform::Threads => self.threads.check(t).await,
            Platform::Tiktok => self.tiktok.check(t).await,
            Platform::Twitter => self.twitter.check(t).await,
        }
    }

    /// Refreshes a token of `platform`.
    pub async fn refresh(&self, platform: Platform, t: &TokenContext<'_>) -> RefreshOutcome {
        match platform {
            Platform::Facebook => self.facebook.refresh(t).await,
            Platform::Instagram => self.instagram.refresh(t).await,
            Platform::Threads => self.threads.refresh(t).await,
            Platform::Tiktok => self.tiktok.refresh(t).await,
            Platform::Twitter => self.twitter.refresh(t).await,
        }
    }

    /// Revokes a token of `platform`.
    pub async fn revoke(&self, platform: Platform, t: &TokenContext<'_>) -> RevokeOutcome {
        match platform {
            Platform::Facebook => self.facebook.revoke(t).await,
            Platform::Instagram => self.instagram.revoke(t).await,
            Platform::Threads => self.threads.revoke(t).await,
            Platform::Tiktok => self.tiktok.revoke(t).await,
            Platform::Twitter => self.twitter.revoke(t).await,
        }
    }

    /// Whether revoking a token of `platform` removes a Meta grant that every Page and
    /// Instagram account the same person connected shares (Facebook, and Instagram through
    /// Facebook Login); such accounts are matched by their stored Meta user ID.
    pub fn shares_meta_grant(&self, platform: Platform, instagram_login: Option<InstagramLogin>) -> bool {
        match platform {
            Platform::Facebook => true,
            Platform::Instagram => self.instagram.login(instagram_login) == InstagramLogin::Facebook,
            _ => false,
        }
    }

    /// The Meta user whose grant a revocation of this token would remove (see
    /// [`Platforms::shares_meta_grant`]); `Err` is the revocation's outcome when it cannot
    /// be known (or the grant is already gone).
    pub async fn meta_user(&self, platform: Platform, t: &TokenContext<'_>) -> Result<String, RevokeOutcome> {
        match platform {
            Platform::Instagram => self.instagram.meta_user(t).await,
            _ => self.facebook.meta_user(t).await,
        }
    }

    /// Whether an account of `platform` (an Instagram account with the login it was
    /// registered with) can be refreshed at all.
    pub fn can_refresh(&self, platform: Platform, instagram_login: Option<InstagramLogin>) -> bool {
        match platform {
            Platform::Facebook => false,
            Platform::Instagram => self.instagram.login(instagram_login) == InstagramLogin::Instagram,
            Platform::Threads | Platform::Tiktok | Platform::Twitter => true,
        }
    }
}

/// What `platform`'s accounts cannot get for want of app credentials, when some are missing
/// (checks that need the app, refreshes that need the client): `config check` warns when
/// such accounts are registered.
pub fn missing_app_credentials(config: &Config, platform: Platform) -> Option<String> {
    let p = &config.platforms;
    let fb_app = p.facebook.app_id.is_some() && p.facebook.app_secret_file.is_some();
    match platform {
        Platform::Facebook if !fb_app => Some(
            "platforms.facebook.app_id and app_secret_file are not both set: their checks (debug_token) cannot run"
                .into(),
        ),
        Platform::Instagram if !(fb_app || p.instagram.app_id.is_some() && p.instagram.app_secret_file.is_some()) => {
            Some(
                "no Facebook app is configured (platforms.facebook.app_id and app_secret_file): accounts of \
                 Facebook Login cannot be checked (debug_token)"
                    .into(),
            )
        }
        Platform::Tiktok if p.tiktok.client_key.is_none() || p.tiktok.client_secret_file.is_none() => Some(
            "platforms.tiktok.client_key and client_secret_file are not both set: their 2-hour access tokens cannot \
             be refreshed"
                .into(),
        ),
        Platform::Twitter if p.twitter.client_id.is_none() => {
            Some("platforms.twitter.client_id is not set: their 2-hour access tokens cannot be refreshed".into())
        }
        _ => None,
    }
}

/// Parses a scope list that may be an array or a comma/space-separated string.
pub fn scope_list(v: &serde_json::Value) -> Option<Vec<String>> {
    match v {
        serde_json::Value::Array(a) => Some(a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect()),
        serde_json::Value::String(s) => Some(
            s.split([',', ' '])
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
