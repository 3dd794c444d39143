//! The Graph API family (Facebook, Instagram, Threads): error codes, `debug_token`, `/me`,
//! long-lived token refresh and permission revocation.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{
    CheckOutcome, Http, InvalidReason, NewTokens, RefreshOutcome, Reply, RevokeOutcome, ThrottleScope, TokenContext,
    Transient, TransientKind, ValidToken, expiry_in, status_transient, wait_until,
};
use crate::domain::{self, Platform, UnixTime};
pub use crate::pacing::{APP_USAGE_LIMIT, AppUsage};

/// Longest lifetime accepted for a long-lived Graph token: 60 days documented, times two.
const MAX_LONG_LIVED: i64 = 2 * 60 * 86_400;

/// The highest of the three percentages in `X-App-Usage`, clamped to 0..=1000.
pub(super) fn app_usage_percent(reply: &Reply) -> Option<i64> {
    let raw = reply.headers.get("x-app-usage")?.to_str().ok()?;
    let v: Value = serde_json::from_str(raw).ok()?;
    ["call_count", "total_cputime", "total_time"]
        .iter()
        .filter_map(|k| v.get(*k).and_then(as_i64))
        .max()
        .map(|p| p.clamp(0, 1000))
}

/// A Facebook app's ID and secret, for `debug_token`'s app access token.
#[derive(Clone)]
pub struct AppCredentials {
    id: Option<String>,
    secret: Option<SecretString>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl AppCredentials {
    /// From the config (either may be missing; checks then report a configuration error).
    pub fn new(id: Option<String>, secret: Option<SecretString>) -> Self {
        AppCredentials { id, secret }
    }

    /// `APP_ID|APP_SECRET`, or `None` when either is missing.
    fn app_token(&self) -> Option<String> {
        Some(format!(
            "{}|{}",
            self.id.as_deref()?,
            self.secret.as_ref()?.expose_secret()
        ))
    }
}

/// A Graph API host and version for one platform, with the app quota it shares.
#[derive(Debug, Clone)]
pub struct Graph {
    http: Http,
    platform: Platform,
    base: String,
    version: String,
    usage: Arc<AppUsage>,
    /// The app secret that signs calls made with a token (`appsecret_proof`), when known.
    proof: Option<SecretString>,
}

/// A Graph `error` object.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphError {
    /// `code`.
    pub code: i64,
    /// `error_subcode` (or `subcode` inside `debug_token` data).
    pub subcode: Option<i64>,
    /// `message`.
    pub message: String,
}

impl GraphError {
    /// Reads an error object (`{code, error_subcode|subcode, message}`).
    pub fn from_value(v: &Value) -> Option<GraphError> {
        let code = as_i64(v.get("code")?)?;
        let subcode = v.get("error_subcode").or_else(|| v.get("subcode")).and_then(as_i64);
        let message = v
            .get("message")
            .and_then(Value::as_str)
            .map(domain::truncate_for_message)
            .unwrap_or_default();
        Some(GraphError { code, subcode, message })
    }

    fn describe(&self, platform: Platform) -> String {
        let sub = self.subcode.map(|s| format!("/{s}")).unwrap_or_default();
        if self.message.is_empty() {
            format!("{} error {}{sub}", platform.display_name(), self.code)
        } else {
            format!("{} error {}{sub}: {}", platform.display_name(), self.code, self.message)
        }
    }
}

/// Graph numbers arrive as numbers or as numeric strings.
fn as_i64(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn as_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The reason behind a dead token, from Graph code 190's subcodes.
pub fn invalid_reason(subcode: Option<i64>) -> InvalidReason {
    match subcode {
        Some(458) => InvalidReason::AppRemoved,
        Some(459) => InvalidReason::Checkpointed,
        Some(460) => InvalidReason::PasswordChanged,
        Some(463) => InvalidReason::Expired,
        Some(464) => InvalidReason::UnconfirmedUser,
        Some(492) => InvalidReason::LostPageRole,
        // 467 "invalid access token" and anything unstated: no claim about who revoked it.
        _ => InvalidReason::Invalid,
    }
}

/// Minutes until a Business Use Case throttle lifts, from `X-Business-Use-Case-Usage`
/// (clamped: an absurd value waits at most a day).
fn buc_retry_at(reply: &Reply, now: UnixTime) -> Option<UnixTime> {
    let raw = reply.headers.get("x-business-use-case-usage")?.to_str().ok()?;
    let v: Value = serde_json::from_str(raw).ok()?;
    let minutes = v
        .as_object()?
        .values()
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|e| e.get("estimated_time_to_regain_access").and_then(as_i64))
        .max()?;
    (minutes > 0).then(|| wait_until(now, minutes.saturating_mul(60)))
}

/// Whether a Graph error says the token was issued to another app (`debug_token` code 100:
/// "The App_id in the input_token did not match the Viewing App").
fn other_app(e: &GraphError) -> bool {
    e.code == 100 && e.message.to_ascii_lowercase().contains("did not match the view")
}

/// The words for a token of another app.
fn other_app_detail(platform: Platform) -> String {
    format!(
        "{} error 100: the token was issued to another Meta app (the App_id in the input_token did not match the Viewing App)",
        platform.display_name()
    )
}

/// Classifies a Graph error. `about_app_token`: the call authenticated with the app's own
/// token (`debug_token`), so code 190 means the daemon's app ID or secret is wrong.
pub fn classify(
    platform: Platform,
    e: &GraphError,
    reply: &Reply,
    now: UnixTime,
    about_app_token: bool,
) -> CheckOutcome {
    let detail = e.describe(platform);
    let transient = |kind, scope| {
        CheckOutcome::Transient(Transient {
            kind,
            retry_at: buc_retry_at(reply, now).or_else(|| reply.retry_at(now)),
            detail: detail.clone(),
            scope,
        })
    };
    match e.code {
        100 if about_app_token && other_app(e) => CheckOutcome::OtherApp(other_app_detail(platform)),
        190 | 102 | 101 if about_app_token => CheckOutcome::Misconfigured(format!(
            "{} rejected the app credentials ({detail}): check platforms.{}.app_id and app_secret_file",
            platform.display_name(),
            platform.as_str()
        )),
        3 => CheckOutcome::Misconfigured(format!("the app lacks a capability this call needs ({detail})")),
        // "Invalid appsecret_proof provided in the API argument", or "API calls from the
        // server require an appsecret_proof argument": the daemon's app secret, never the
        // account.
        100 if e.message.to_ascii_lowercase().contains("appsecret_proof") => CheckOutcome::Misconfigured(format!(
            "{} refused the call's appsecret_proof ({detail}): check the app secret file of platforms.{}",
            platform.display_name(),
            platform.as_str()
        )),
        // 190 in any form is a dead token (its subcode says why).
        190 | 102 => CheckOutcome::Invalid {
            reason: invalid_reason(e.subcode),
            detail,
        },
        // Instagram Login and Threads report a revoked token on /me as 100/33 ("the
        // requested resource does not exist"); plain 100 stays transient.
        100 if e.subcode == Some(33) => CheckOutcome::Invalid {
            reason: InvalidReason::Invalid,
            detail,
        },
        10 | 200..=299 => CheckOutcome::PermissionDenied { detail },
        // The app's own quota (code 4, 341) and the generic 613 pause the whole platform;
        // a user (17), Page (32) or business-use-case (80xxx, per Page) limit only the account.
        4 | 341 | 613 => transient(TransientKind::RateLimited, ThrottleScope::App),
        17 | 32 | 80_000..=80_099 => transient(TransientKind::RateLimited, ThrottleScope::Account),
        _ => transient(TransientKind::ServerError, ThrottleScope::App),
    }
}

/// A top-level `debug_token` error is about the call (the app token, the app's mode, a
/// parameter), never about the account's token, whose verdict sits inside `data`: it is
/// `Misconfigured`, except a rate limit, Graph's own temporary codes 1 and 2, and the
/// "did not match the Viewing App" case (the account's token belongs to another app).
fn about_the_call(platform: Platform, e: &GraphError, reply: &Reply, now: UnixTime) -> CheckOutcome {
    match e.code {
        4 | 17 | 32 | 341 | 613 | 80_000..=80_099 | 1 | 2 => classify(platform, e, reply, now, true),
        100 if other_app(e) => classify(platform, e, reply, now, true),
        _ => CheckOutcome::Misconfigured(format!(
            "{} refused the debug_token call itself ({}): check platforms.{}.app_id and app_secret_file \
             and that the app is live",
            platform.display_name(),
            e.describe(platform),
            platform.as_str()
        )),
    }
}

/// Turns a non-success Graph answer into an outcome: an `error` object if there is one,
/// else a transient for the status.
fn failed(platform: Platform, reply: &Reply, now: UnixTime, about_app_token: bool) -> CheckOutcome {
    if let Ok(v) = reply.json(platform)
        && let Some(e) = v.get("error").and_then(GraphError::from_value)
    {
        return classify(platform, &e, reply, now, about_app_token);
    }
    CheckOutcome::Transient(status_transient(platform, reply, now))
}

impl Graph {
    /// A Graph API at `base` (no trailing slash) with version path segment `version`,
    /// accounting the app's quota in `usage` (shared by the platforms of one app).
    pub fn new(http: Http, platform: Platform, base: String, version: String, usage: Arc<AppUsage>) -> Self {
        Graph {
            http,
            platform,
            base,
            version,
            usage,
            proof: None,
        }
    }

    /// Signs every call made with a token with `appsecret_proof` (Graph "Securing
    /// Requests": `HMAC-SHA256(app_secret, access_token)`, hex), which an app that "requires
    /// App Secret" insists on and any other accepts.
    pub fn with_appsecret_proof(mut self, secret: Option<SecretString>) -> Self {
        self.proof = secret;
        self
    }

    /// The `appsecret_proof` of `token`, when a secret is configured.
    fn proof_of(&self, token: &SecretString) -> Option<(&'static str, String)> {
        use hmac::Mac;
        let secret = self.proof.as_ref()?;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes()).ok()?;
        mac.update(token.expose_secret().as_bytes());
        Some(("appsecret_proof", hex::encode(mac.finalize().into_bytes())))
    }

    /// The platform this Graph host serves.
    pub fn platform(&self) -> Platform {
        self.platform
    }

    /// The app quota tracker.
    pub fn usage(&self) -> &AppUsage {
        &self.usage
    }

    /// A throttle answer while the app's quota is paused, without calling the platform.
    fn paused(&self, now: UnixTime) -> Option<Transient> {
        let until = self.usage.paused(now)?;
        Some(Transient {
            kind: TransientKind::RateLimited,
            retry_at: Some(until),
            detail: format!(
                "the app's {} quota was above {APP_USAGE_LIMIT}% (X-App-Usage); socialsyncer pauses its calls until {}",
                self.platform.display_name(),
                domain::rfc3339(until)
            ),
            scope: ThrottleScope::App,
        })
    }

    /// Sends a request unless the app quota is paused, and reads `X-App-Usage` from the answer.
    async fn send(&self, req: reqwest::RequestBuilder, token_endpoint: bool) -> Result<Reply, Transient> {
        let now = domain::now();
        if let Some(t) = self.paused(now) {
            return Err(t);
        }
        let reply = if token_endpoint {
            self.http.send_token(self.platform, req).await?
        } else {
            self.http.send(self.platform, req).await?
        };
        self.usage.observe(app_usage_percent(&reply), now);
        // Code 4 (the app's own limit) pauses every call of the app, not only this account's.
        if let Ok(v) = reply.json(self.platform)
            && let Some(e) = v.get("error").and_then(GraphError::from_value)
            && matches!(e.code, 4 | 341)
        {
            let until = buc_retry_at(&reply, now)
                .or_else(|| reply.retry_at(now))
                .unwrap_or_else(|| wait_until(now, self.usage.pause()));
            self.usage.pause_until(until);
        }
        Ok(reply)
    }

    /// An app-wide throttle answer that named no time waits for the pause it started.
    fn with_pause(&self, o: CheckOutcome, now: UnixTime) -> CheckOutcome {
        match o {
            CheckOutcome::Transient(mut t)
                if t.kind == TransientKind::RateLimited && t.scope == ThrottleScope::App && t.retry_at.is_none() =>
            {
                t.retry_at = self.usage.paused(now);
                CheckOutcome::Transient(t)
            }
            o => o,
        }
    }

    /// `GET {base}/{ver}/debug_token?input_token=T&access_token=APP_ID|APP_SECRET`.
    pub async fn debug_token(&self, app: &AppCredentials, t: &TokenContext<'_>) -> CheckOutcome {
        let p = self.platform;
        let Some(app_token) = app.app_token() else {
            return CheckOutcome::Misconfigured(format!(
                "{} checks need the app ID and secret: set platforms.facebook.app_id and app_secret_file",
                p.display_name()
            ));
        };
        let url = format!("{}/{}/debug_token", self.base, self.version);
        let req = self.http.client().get(url).query(&[
            ("input_token", t.access_token.expose_secret()),
            ("access_token", &app_token),
        ]);
        let now = domain::now();
        let reply = match self.send(req, false).await {
            Ok(r) => r,
            Err(t) => return CheckOutcome::Transient(t),
        };
        if let Ok(v) = reply.json(p)
            && let Some(e) = v.get("error").and_then(GraphError::from_value)
        {
            return self.with_pause(about_the_call(p, &e, &reply, now), now);
        }
        if reply.status != 200 {
            return self.with_pause(failed(p, &reply, now, true), now);
        }
        let v = match reply.json(p) {
            Ok(v) => v,
            Err(t) => return CheckOutcome::Transient(t),
        };
        // An app in development mode (or without access to inspect tokens) answers an empty
        // list: nothing about the account.
        if v.get("data").and_then(Value::as_array).is_some_and(|d| d.is_empty()) {
            return CheckOutcome::Misconfigured(format!(
                "{} answered debug_token with no data ({{\"data\":[]}}): the app cannot inspect tokens; \
                 check that platforms.{}.app_id is the app the accounts were connected with and that it is live",
                p.display_name(),
                p.as_str()
            ));
        }
        parse_debug_token(p, &v, now, app.id.as_deref())
    }

    /// `GET {base}/{ver}/me?fields=...&access_token=T`: liveness for tokens without
    /// introspection (Threads, Instagram Login). `id_field` names the user ID field.
    pub async fn me(&self, t: &TokenContext<'_>, fields: &str, id_field: &str) -> CheckOutcome {
        let p = self.platform;
        let url = format!("{}/{}/me", self.base, self.version);
        let req = self
            .http
            .client()
            .get(url)
            .query(&[("fields", fields), ("access_token", t.access_token.expose_secret())])
            .query(&self.proof_of(t.access_token).into_iter().collect::<Vec<_>>());
        let now = domain::now();
        let reply = match self.send(req, false).await {
            Ok(r) => r,
            Err(t) => return CheckOutcome::Transient(t),
        };
        if reply.status != 200 {
            return self.with_pause(failed(p, &reply, now, false), now);
        }
        let v = match reply.json(p) {
            Ok(v) => v,
            Err(t) => return CheckOutcome::Transient(t),
        };
        if let Some(e) = v.get("error").and_then(GraphError::from_value) {
            return self.with_pause(classify(p, &e, &reply, now, false), now);
        }
        let Some(user_id) = v.get(id_field).or_else(|| v.get("id")).and_then(as_id) else {
            return CheckOutcome::Transient(Transient::new(
                TransientKind::Malformed,
                format!("{} answered /me without an ID", p.display_name()),
            ));
        };
        // Instagram Login names the account twice: `user_id` (the professional account) and
        // `id` (app-scoped from v24.0): either may be the one a product stored.
        let other_ids = v
            .get("id")
            .and_then(as_id)
            .filter(|id| id != &user_id)
            .into_iter()
            .collect();
        CheckOutcome::Valid(ValidToken {
            owner_id: Some(user_id.clone()),
            user_id: Some(user_id),
            username: v.get("username").and_then(Value::as_str).map(str::to_owned),
            other_ids,
            ..ValidToken::default()
        })
    }

    /// `GET {base}/{ver}/{id}?fields=id` with the account's own token: one cheap call that
    /// a checkpoint (459) or a lost role makes fail, where `debug_token` only introspects.
    /// A per-Page (Business Use Case) call: its throttles hold only this account. `None`
    /// when the token reads its object.
    pub async fn read_object(&self, t: &TokenContext<'_>) -> Option<CheckOutcome> {
        let p = self.platform;
        // While the app's quota is paused, debug_token's verdict stands alone.
        if self.paused(domain::now()).is_some() {
            return None;
        }
        let url = format!("{}/{}/{}", self.base, self.version, t.account_id);
        let req = self
            .http
            .client()
            .get(url)
            .query(&[("fields", "id"), ("access_token", t.access_token.expose_secret())])
            .query(&self.proof_of(t.access_token).into_iter().collect::<Vec<_>>());
        let now = domain::now();
        let reply = match self.send(req, false).await {
            Ok(r) => r,
            Err(tr) => return Some(CheckOutcome::Transient(tr)),
        };
        if reply.status == 200 {
            return None;
        }
        Some(self.with_pause(failed(p, &reply, now, false), now))
    }

    /// `GET {base}/refresh_access_token?grant_type=G&access_token=T` (Instagram Login,
    /// Threads): a new long-lived token.
    pub async fn refresh_long_lived(&self, grant_type: &str, t: &TokenContext<'_>) -> RefreshOutcome {
        let p = self.platform;
        let url = format!("{}/refresh_access_token", self.base);
        let req = self
            .http
            .client()
            .get(url)
            .query(&[
                ("grant_type", grant_type),
                ("access_token", t.access_token.expose_secret()),
            ])
            .query(&self.proof_of(t.access_token).into_iter().collect::<Vec<_>>());
        let now = domain::now();
        let reply = match self.send(req, true).await {
            Ok(r) => r,
            Err(t) => return RefreshOutcome::Transient(t),
        };
        let v = reply.json(p);
        if reply.status == 200
            && let Ok(v) = &v
            && let Some(token) = v.get("access_token").and_then(Value::as_str).filter(|s| !s.is_empty())
        {
            return RefreshOutcome::Refreshed(NewTokens {
                access_token: SecretString::from(token.to_owned()),
                refresh_token: None,
                expires_at: v
                    .get("expires_in")
                    .and_then(as_i64)
                    .map(|s| expiry_in(now, s, MAX_LONG_LIVED)),
                refresh_expires_at: None,
                scopes: None,
            });
        }
        match self.with_pause(failed(p, &reply, now, false), now) {
            CheckOutcome::Invalid { detail, .. } => RefreshOutcome::Fatal(detail),
            CheckOutcome::Misconfigured(m) | CheckOutcome::OtherApp(m) => RefreshOutcome::Misconfigured(m),
            CheckOutcome::Transient(t) => RefreshOutcome::Transient(t),
            // A 200 without a token, or an error we do not treat as final.
            other => RefreshOutcome::Transient(Transient::new(
                TransientKind::Malformed,
                match other {
                    CheckOutcome::PermissionDenied { detail } => detail,
                    _ => format!("{} answered the refresh without a token", p.display_name()),
                },
            )),
        }
    }

    /// `DELETE {base}/{ver}/{user_id}/permissions?access_token=APP_ID|APP_SECRET`: removes the
    /// app for that person, with every Page and Instagram account they granted. Graph
    /// requires a user or app token here ("User permissions" reference); socialsyncer uses
    /// the app token, never a Page token.
    pub async fn revoke_permissions(&self, user_id: &str, app: &AppCredentials) -> RevokeOutcome {
        let p = self.platform;
        let Some(app_token) = app.app_token() else {
            return RevokeOutcome::NotSupported(format!(
                "{} revocation needs the app ID and secret (platforms.facebook.app_id and app_secret_file)",
                p.display_name()
            ));
        };
        let url = format!("{}/{}/{}/permissions", self.base, self.version, user_id);
        let req = self.http.client().delete(url).query(&[("access_token", &app_token)]);
        let now = domain::now();
        let reply = match self.send(req, true).await {
            Ok(r) => r,
            Err(t) => return RevokeOutcome::Failed(t.detail),
        };
        if reply.status == 200 {
            let ok = match reply.json(p) {
                Ok(Value::Bool(b)) => b,
                Ok(v) => v.get("success").and_then(Value::as_bool).unwrap_or(false),
                Err(_) => false,
            };
            return if ok {
                RevokeOutcome::Revoked
            } else {
                RevokeOutcome::Failed(format!("{} did not confirm the revocation", p.display_name()))
            };
        }
        match failed(p, &reply, now, true) {
            CheckOutcome::Transient(t) => RevokeOutcome::Failed(t.detail),
            CheckOutcome::Invalid { detail, .. }
            | CheckOutcome::PermissionDenied { detail }
            | CheckOutcome::Misconfigured(detail)
            | CheckOutcome::OtherApp(detail) => RevokeOutcome::Failed(detail),
            CheckOutcome::Valid(_) => RevokeOutcome::Failed(format!("{} refused the revocation", p.display_name())),
        }
    }
}

mod debug;

pub use debug::parse_debug_token;

#[cfg(test)]
mod tests;
