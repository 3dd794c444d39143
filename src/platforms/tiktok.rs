//! TikTok (open.tiktokapis.com v2): `/v2/user/info/` liveness, rotating refresh tokens,
//! `/v2/oauth/revoke/`.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{
    CheckOutcome, Http, InvalidReason, PlatformApi, RefreshOutcome, RevokeOutcome, ThrottleScope, TokenContext,
    Transient, TransientKind, ValidToken, oauth2, status_transient,
};
use crate::domain::{self, Platform};

const P: Platform = Platform::Tiktok;

/// The TikTok adapter.
pub struct Tiktok {
    http: Http,
    base: String,
    client_key: Option<String>,
    client_secret: Option<SecretString>,
}

impl std::fmt::Debug for Tiktok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiktok")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl Tiktok {
    /// From the host and the app's client key and secret.
    pub fn new(http: Http, base: String, client_key: Option<String>, client_secret: Option<SecretString>) -> Self {
        Tiktok {
            http,
            base,
            client_key,
            client_secret,
        }
    }

    fn client(&self) -> Option<(&str, &str)> {
        Some((
            self.client_key.as_deref()?,
            self.client_secret.as_ref()?.expose_secret(),
        ))
    }
}

fn error_of(v: &Value) -> Option<(String, String)> {
    let e = v.get("error")?;
    // API errors: {"error":{"code":"...","message":"..."}}; OAuth errors: {"error":"...","error_description":"..."}.
    if let Some(code) = e.get("code").and_then(Value::as_str) {
        let msg = e.get("message").and_then(Value::as_str).unwrap_or_default();
        return Some((code.to_owned(), domain::truncate_for_message(msg)));
    }
    let code = e.as_str()?;
    let msg = v.get("error_description").and_then(Value::as_str).unwrap_or_default();
    Some((code.to_owned(), domain::truncate_for_message(msg)))
}

fn describe(code: &str, msg: &str) -> String {
    if msg.is_empty() {
        format!("TikTok error {code}")
    } else {
        format!("TikTok error {code}: {msg}")
    }
}

/// Longest access-token lifetime accepted: TikTok documents 24 hours in its token answer
/// examples and 2 hours in "Manage user access tokens"; the larger, times two.
const MAX_ACCESS_LIFETIME: i64 = 2 * 86_400;
/// Longest refresh-token lifetime accepted: 365 days (the most TikTok has documented), times two.
const MAX_REFRESH_LIFETIME: i64 = 2 * 365 * 86_400;
pub(super) const LIFETIMES: oauth2::Lifetimes = oauth2::Lifetimes {
    access: MAX_ACCESS_LIFETIME,
    refresh: Some(MAX_REFRESH_LIFETIME),
};

impl Tiktok {
    /// `POST /v2/oauth/revoke/` with one access token; `Ok(())` when TikTok confirmed.
    async fn revoke_access(&self, key: &str, secret: &str, access: &str) -> Result<(), (Option<String>, String)> {
        let url = format!("{}/v2/oauth/revoke/", self.base);
        let req =
            self.http
                .client()
                .post(url)
                .form(&[("client_key", key), ("client_secret", secret), ("token", access)]);
        match self.http.send_token(P, req).await {
            Err(tr) => Err((None, tr.detail)),
            Ok(reply) => match reply.json(P).ok().as_ref().and_then(error_of) {
                Some((code, msg)) if code != "ok" => Err((Some(code.clone()), describe(&code, &msg))),
                _ if reply.status == 200 => Ok(()),
                _ => Err((None, status_transient(P, &reply, domain::now()).detail)),
            },
        }
    }
}

impl PlatformApi for Tiktok {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        let url = format!("{}/v2/user/info/", self.base);
        let req = self
            .http
            .client()
            .get(url)
            .query(&[("fields", "open_id,union_id,display_name")])
            .bearer_auth(t.access_token.expose_secret());
        let now = domain::now();
        let reply = match self.http.send(P, req).await {
            Ok(r) => r,
            Err(tr) => return CheckOutcome::Transient(tr),
        };
        let Some((code, msg)) = reply.json(P).ok().as_ref().and_then(error_of) else {
            return CheckOutcome::Transient(status_transient(P, &reply, now));
        };
        let detail = describe(&code, &msg);
        match code.as_str() {
            "ok" if reply.status == 200 => {
                let v = reply.json(P).unwrap_or_default();
                let user = &v["data"]["user"];
                match user.get("open_id").and_then(Value::as_str) {
                    Some(id) => CheckOutcome::Valid(ValidToken {
                        user_id: Some(id.to_owned()),
                        owner_id: Some(id.to_owned()),
                        username: user.get("display_name").and_then(Value::as_str).map(str::to_owned),
                        ..ValidToken::default()
                    }),
                    None => CheckOutcome::Transient(Transient::new(
                        TransientKind::Malformed,
                        "TikTok answered user info without an open_id",
                    )),
                }
            }
            "access_token_invalid" => CheckOutcome::Invalid {
                reason: InvalidReason::Invalid,
                detail,
            },
            "scope_not_authorized" | "scope_permission_missed" => CheckOutcome::PermissionDenied { detail },
            // TikTok's rate limits are per app and endpoint ("Rate limits").
            "rate_limit_exceeded" => CheckOutcome::Transient(Transient {
                kind: TransientKind::RateLimited,
                retry_at: reply.retry_at(now),
                detail,
                scope: ThrottleScope::App,
            }),
            _ => CheckOutcome::Transient(Transient {
                kind: if reply.status >= 500 || code == "internal_error" {
                    TransientKind::ServerError
                } else {
                    TransientKind::Malformed
                },
                retry_at: reply.retry_at(now),
                detail,
                scope: ThrottleScope::App,
            }),
        }
    }

    async fn refresh(&self, t: &TokenContext<'_>) -> RefreshOutcome {
        let Some(refresh) = t.refresh_token else {
            return RefreshOutcome::NotSupported("no refresh token is stored for this account".into());
        };
        let Some((key, secret)) = self.client() else {
            return RefreshOutcome::Misconfigured(
                "TikTok refresh needs platforms.tiktok.client_key and client_secret_file".into(),
            );
        };
        let url = format!("{}/v2/oauth/token/", self.base);
        let client = [("client_key", key.to_owned()), ("client_secret", secret.to_owned())];
        let req = self
            .http
            .client()
            .post(url)
            .form(&oauth2::refresh_form(&client, refresh));
        let now = domain::now();
        let reply = match self.http.send_token(P, req).await {
            Ok(r) => r,
            Err(tr) => return RefreshOutcome::Transient(tr),
        };
        let v = reply.json(P).ok();
        if reply.status == 200
            && let Some(t) = v.as_ref().and_then(|v| oauth2::tokens(v, now, LIFETIMES))
        {
            return RefreshOutcome::Refreshed(t);
        }
        let misconfigured = |d: String| {
            RefreshOutcome::Misconfigured(format!(
                "TikTok rejected the client credentials ({d}): check platforms.tiktok.client_key and client_secret_file"
            ))
        };
        match v.as_ref().and_then(error_of) {
            // "Refresh token was issued to another client": the account was connected through
            // another TikTok app (as Meta's "did not match the Viewing App"); not a dead grant.
            Some((code, msg)) if code == "invalid_grant" && msg.to_ascii_lowercase().contains("another client") => {
                RefreshOutcome::Misconfigured(format!(
                    "this account was connected through another TikTok app than platforms.tiktok.client_key ({}): \
                     reconnect it through the configured app, or configure the app it was connected through",
                    describe(&code, &msg)
                ))
            }
            Some((code, msg)) if code == "invalid_grant" => RefreshOutcome::Fatal(describe(&code, &msg)),
            Some((code, msg)) if code == "invalid_client" || code == "unauthorized_client" => {
                misconfigured(describe(&code, &msg))
            }
            Some((code, msg)) if code == "rate_limit_exceeded" || reply.status == 429 => {
                RefreshOutcome::Transient(Transient {
                    kind: TransientKind::RateLimited,
                    retry_at: reply.retry_at(now),
                    detail: describe(&code, &msg),
                    scope: ThrottleScope::App,
                })
            }
            _ if reply.status == 401 => misconfigured(format!("HTTP {}", reply.status)),
            Some((code, msg)) if code != "ok" => RefreshOutcome::Transient(Transient {
                kind: TransientKind::ServerError,
                retry_at: reply.retry_at(now),
                detail: describe(&code, &msg),
                scope: ThrottleScope::App,
            }),
            _ => RefreshOutcome::Transient(status_transient(P, &reply, now)),
        }
    }

    /// Revocation takes the access token, which lives only hours: an expired one is
    /// refreshed first (also when TikTok answers that it is invalid), then revoked.
    async fn revoke(&self, t: &TokenContext<'_>) -> RevokeOutcome {
        let Some((key, secret)) = self.client() else {
            return RevokeOutcome::NotSupported(
                "TikTok revocation needs platforms.tiktok.client_key and client_secret_file".into(),
            );
        };
        let refresh_first = t.expires_at.is_some_and(|e| e <= domain::now() + 60);
        let mut fresh: Option<SecretString> = None;
        if refresh_first {
            match self.refresh(t).await {
                RefreshOutcome::Refreshed(n) => fresh = Some(n.access_token),
                RefreshOutcome::Fatal(d) => {
                    return RevokeOutcome::Failed(format!(
                        "the access token has expired and the refresh token was rejected ({d}); the grant may already be gone"
                    ));
                }
                RefreshOutcome::Transient(tr) => return RevokeOutcome::Failed(tr.detail),
                RefreshOutcome::NotSupported(d) | RefreshOutcome::Misconfigured(d) => {
                    return RevokeOutcome::Failed(format!("the access token has expired and cannot be renewed: {d}"));
                }
            }
        }
        let access = fresh.as_ref().unwrap_or(t.access_token);
        match self.revoke_access(key, secret, access.expose_secret()).await {
            Ok(()) => RevokeOutcome::Revoked,
            Err((Some(code), _)) if code == "access_token_invalid" && fresh.is_none() && t.refresh_token.is_some() => {
                match self.refresh(t).await {
                    RefreshOutcome::Refreshed(n) => {
                        match self.revoke_access(key, secret, n.access_token.expose_secret()).await {
                            Ok(()) => RevokeOutcome::Revoked,
                            Err((_, d)) => RevokeOutcome::Failed(d),
                        }
                    }
                    RefreshOutcome::Fatal(d) => RevokeOutcome::Failed(format!(
                        "the access token no longer works and the refresh token was rejected ({d}); the grant may already be gone"
                    )),
                    RefreshOutcome::Transient(tr) => RevokeOutcome::Failed(tr.detail),
                    RefreshOutcome::NotSupported(d) | RefreshOutcome::Misconfigured(d) => RevokeOutcome::Failed(d),
                }
            }
            Err((_, d)) => RevokeOutcome::Failed(d),
        }
    }
}
