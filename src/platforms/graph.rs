//! The Graph API family (Facebook, Instagram, Threads): error codes, `debug_token`, `/me`,
//! long-lived token refresh and permission revocation.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{
    CheckOutcome, Expiry, Http, InvalidReason, NewTokens, RefreshOutcome, Reply, RevokeOutcome, TokenContext,
    Transient, TransientKind, ValidToken, scope_list, status_transient,
};
use crate::domain::{self, Platform, UnixTime};

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

/// A Graph API host and version for one platform.
#[derive(Debug, Clone)]
pub struct Graph {
    http: Http,
    platform: Platform,
    base: String,
    version: String,
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
        Some(466) => InvalidReason::Revoked,
        _ => InvalidReason::Invalid,
    }
}

/// Minutes until a Business Use Case throttle lifts, from `X-Business-Use-Case-Usage`.
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
    (minutes > 0).then_some(now + minutes * 60)
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
    let transient = |kind| {
        CheckOutcome::Transient(Transient {
            kind,
            retry_at: buc_retry_at(reply, now).or_else(|| reply.retry_at(now)),
            detail: detail.clone(),
        })
    };
    match e.code {
        190 | 102 | 101 if about_app_token => CheckOutcome::Misconfigured(format!(
            "{} rejected the app credentials ({detail}): check platforms.{}.app_id and app_secret_file",
            platform.display_name(),
            platform.as_str()
        )),
        3 => CheckOutcome::Misconfigured(format!("the app lacks a capability this call needs ({detail})")),
        190 | 102 => CheckOutcome::Invalid {
            reason: invalid_reason(e.subcode),
            detail,
        },
        10 | 200..=299 => CheckOutcome::PermissionDenied { detail },
        4 | 17 | 32 | 341 | 613 | 80_000..=80_099 => transient(TransientKind::RateLimited),
        _ => transient(TransientKind::ServerError),
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
    /// A Graph API at `base` (no trailing slash) with version path segment `version`.
    pub fn new(http: Http, platform: Platform, base: String, version: String) -> Self {
        Graph {
            http,
            platform,
            base,
            version,
        }
    }

    /// The platform this Graph host serves.
    pub fn platform(&self) -> Platform {
        self.platform
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
        let reply = match self.http.send(p, req).await {
            Ok(r) => r,
            Err(t) => return CheckOutcome::Transient(t),
        };
        if reply.status != 200 {
            return failed(p, &reply, now, true);
        }
        let v = match reply.json(p) {
            Ok(v) => v,
            Err(t) => return CheckOutcome::Transient(t),
        };
        parse_debug_token(p, &v, now)
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
            .query(&[("fields", fields), ("access_token", t.access_token.expose_secret())]);
        let now = domain::now();
        let reply = match self.http.send(p, req).await {
            Ok(r) => r,
            Err(t) => return CheckOutcome::Transient(t),
        };
        if reply.status != 200 {
            return failed(p, &reply, now, false);
        }
        let v = match reply.json(p) {
            Ok(v) => v,
            Err(t) => return CheckOutcome::Transient(t),
        };
        if let Some(e) = v.get("error").and_then(GraphError::from_value) {
            return classify(p, &e, &reply, now, false);
        }
        let Some(user_id) = v.get(id_field).or_else(|| v.get("id")).and_then(as_id) else {
            return CheckOutcome::Transient(Transient::new(
                TransientKind::Malformed,
                format!("{} answered /me without an ID", p.display_name()),
            ));
        };
        CheckOutcome::Valid(ValidToken {
            user_id: Some(user_id),
            username: v.get("username").and_then(Value::as_str).map(str::to_owned),
            ..ValidToken::default()
        })
    }

    /// `GET {base}/refresh_access_token?grant_type=G&access_token=T` (Instagram Login,
    /// Threads): a new long-lived token.
    pub async fn refresh_long_lived(&self, grant_type: &str, t: &TokenContext<'_>) -> RefreshOutcome {
        let p = self.platform;
        let url = format!("{}/refresh_access_token", self.base);
        let req = self.http.client().get(url).query(&[
            ("grant_type", grant_type),
            ("access_token", t.access_token.expose_secret()),
        ]);
        let now = domain::now();
        let reply = match self.http.send(p, req).await {
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
                expires_at: v.get("expires_in").and_then(as_i64).map(|s| now + s),
                refresh_expires_at: None,
                scopes: None,
            });
        }
        match failed(p, &reply, now, false) {
            CheckOutcome::Invalid { detail, .. } => RefreshOutcome::Fatal(detail),
            CheckOutcome::Misconfigured(m) => RefreshOutcome::Misconfigured(m),
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

    /// `DELETE {base}/{ver}/{user_id}/permissions?access_token=T`: de-authorises the app.
    pub async fn revoke_permissions(&self, user_id: &str, t: &TokenContext<'_>) -> RevokeOutcome {
        let p = self.platform;
        let url = format!("{}/{}/{}/permissions", self.base, self.version, user_id);
        let req = self
            .http
            .client()
            .delete(url)
            .query(&[("access_token", t.access_token.expose_secret())]);
        let now = domain::now();
        let reply = match self.http.send(p, req).await {
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
        match failed(p, &reply, now, false) {
            // The token is already dead: nothing left to revoke.
            CheckOutcome::Invalid { .. } => RevokeOutcome::Revoked,
            CheckOutcome::Transient(t) => RevokeOutcome::Failed(t.detail),
            CheckOutcome::PermissionDenied { detail } | CheckOutcome::Misconfigured(detail) => {
                RevokeOutcome::Failed(detail)
            }
            CheckOutcome::Valid(_) => RevokeOutcome::Failed(format!("{} refused the revocation", p.display_name())),
        }
    }
}

/// Reads a `debug_token` answer.
pub fn parse_debug_token(p: Platform, v: &Value, now: UnixTime) -> CheckOutcome {
    let malformed = |what: &str| {
        CheckOutcome::Transient(Transient::new(
            TransientKind::Malformed,
            format!("{} debug_token answer {what}", p.display_name()),
        ))
    };
    let Some(data) = v.get("data").filter(|d| d.is_object()) else {
        return malformed("has no data object");
    };
    let Some(is_valid) = data.get("is_valid").and_then(Value::as_bool) else {
        return malformed("has no is_valid");
    };
    let expires_at = data.get("expires_at").and_then(as_i64);
    if !is_valid {
        if let Some(e) = data.get("error").and_then(GraphError::from_value) {
            let reason = match e.code {
                190 | 102 => invalid_reason(e.subcode),
                _ => InvalidReason::Invalid,
            };
            let reason = if reason == InvalidReason::Invalid && expires_at.is_some_and(|t| t > 0 && t <= now) {
                InvalidReason::Expired
            } else {
                reason
            };
            return CheckOutcome::Invalid {
                reason,
                detail: e.describe(p),
            };
        }
        let reason = if expires_at.is_some_and(|t| t > 0 && t <= now) {
            InvalidReason::Expired
        } else {
            InvalidReason::Invalid
        };
        return CheckOutcome::Invalid {
            reason,
            detail: format!("{} reports the token as not valid", p.display_name()),
        };
    }
    let permissions = data.get("scopes").and_then(scope_list).unwrap_or_default();
    CheckOutcome::Valid(ValidToken {
        expires: expires_at.map(|t| if t == 0 { Expiry::Never } else { Expiry::At(t) }),
        data_access_expires_at: data.get("data_access_expires_at").and_then(as_i64).filter(|t| *t > 0),
        permissions: Some(permissions),
        user_id: data.get("user_id").and_then(as_id),
        username: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_token_valid_page_token() {
        let v = json!({"data":{"app_id":"1","type":"PAGE","application":"x","is_valid":true,"issued_at":1,
            "expires_at":0,"data_access_expires_at":1900000000,"scopes":["pages_manage_posts"],"user_id":"55"}});
        match parse_debug_token(Platform::Facebook, &v, 1_800_000_000) {
            CheckOutcome::Valid(t) => {
                assert_eq!(t.expires, Some(Expiry::Never));
                assert_eq!(t.data_access_expires_at, Some(1_900_000_000));
                assert_eq!(t.user_id.as_deref(), Some("55"));
                assert_eq!(t.permissions.unwrap(), vec!["pages_manage_posts"]);
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn debug_token_invalid_subcodes() {
        for (sub, reason) in [
            (460, InvalidReason::PasswordChanged),
            (458, InvalidReason::AppRemoved),
            (463, InvalidReason::Expired),
            (492, InvalidReason::LostPageRole),
            (459, InvalidReason::Checkpointed),
        ] {
            let v = json!({"data":{"is_valid":false,"error":{"code":190,"subcode":sub,"message":"m"}}});
            match parse_debug_token(Platform::Facebook, &v, 0) {
                CheckOutcome::Invalid { reason: r, .. } => assert_eq!(r, reason),
                o => panic!("{o:?}"),
            }
        }
        let v = json!({"data":{"is_valid":false,"expires_at":10}});
        assert!(matches!(
            parse_debug_token(Platform::Facebook, &v, 20),
            CheckOutcome::Invalid {
                reason: InvalidReason::Expired,
                ..
            }
        ));
        assert!(matches!(
            parse_debug_token(Platform::Facebook, &json!({"data":{}}), 0),
            CheckOutcome::Transient(_)
        ));
        assert!(matches!(
            parse_debug_token(Platform::Facebook, &json!([1]), 0),
            CheckOutcome::Transient(_)
        ));
    }

    fn reply(headers: &[(&str, &str)]) -> Reply {
        let mut h = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Reply {
            status: 400,
            headers: h,
            body: vec![],
        }
    }

    #[test]
    fn error_codes() {
        let e = |code, subcode| GraphError {
            code,
            subcode,
            message: String::new(),
        };
        let r = reply(&[]);
        assert!(matches!(
            classify(Platform::Facebook, &e(190, None), &r, 0, true),
            CheckOutcome::Misconfigured(_)
        ));
        assert!(matches!(
            classify(Platform::Threads, &e(190, Some(460)), &r, 0, false),
            CheckOutcome::Invalid {
                reason: InvalidReason::PasswordChanged,
                ..
            }
        ));
        assert!(matches!(
            classify(Platform::Threads, &e(200, None), &r, 0, false),
            CheckOutcome::PermissionDenied { .. }
        ));
        for code in [1, 2, 368, 999] {
            assert!(matches!(
                classify(Platform::Threads, &e(code, None), &r, 0, false),
                CheckOutcome::Transient(Transient {
                    kind: TransientKind::ServerError,
                    ..
                })
            ));
        }
        let r = reply(&[(
            "x-business-use-case-usage",
            r#"{"123":[{"type":"pages","call_count":100,"estimated_time_to_regain_access":5}]}"#,
        )]);
        match classify(Platform::Facebook, &e(80001, None), &r, 1000, false) {
            CheckOutcome::Transient(t) => {
                assert_eq!(t.kind, TransientKind::RateLimited);
                assert_eq!(t.retry_at, Some(1300));
            }
            o => panic!("{o:?}"),
        }
        for code in [4, 17, 32, 613] {
            assert!(matches!(
                classify(Platform::Instagram, &e(code, None), &reply(&[]), 0, false),
                CheckOutcome::Transient(Transient {
                    kind: TransientKind::RateLimited,
                    ..
                })
            ));
        }
    }
}
