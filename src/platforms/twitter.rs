//! X (Twitter) API v2: `/2/users/me` liveness, OAuth 2.0 refresh (rotating) and revoke.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{
    CheckOutcome, Http, InvalidReason, PlatformApi, RefreshOutcome, Reply, RevokeOutcome, ThrottleScope, TokenContext,
    Transient, TransientKind, ValidToken, oauth2, status_transient,
};
use crate::domain::{self, Platform};

const P: Platform = Platform::Twitter;

/// The X adapter.
pub struct Twitter {
    http: Http,
    base: String,
    client_id: Option<String>,
    client_secret: Option<SecretString>,
}

impl std::fmt::Debug for Twitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Twitter")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The words of an X error body: `{title, detail}` problems or OAuth `{error, error_description}`.
fn problem(reply: &Reply) -> String {
    let v = reply.json(P).unwrap_or_default();
    let text = v
        .get("detail")
        .or_else(|| v.get("error_description"))
        .or_else(|| v.get("title"))
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .map(domain::truncate_for_message)
        .unwrap_or_default();
    if text.is_empty() {
        format!("X answered HTTP {}", reply.status)
    } else {
        format!("X answered HTTP {}: {text}", reply.status)
    }
}

impl Twitter {
    /// From the host and the OAuth 2.0 client ID and (for confidential clients) secret.
    pub fn new(http: Http, base: String, client_id: Option<String>, client_secret: Option<SecretString>) -> Self {
        Twitter {
            http,
            base,
            client_id,
            client_secret,
        }
    }

    /// Confidential clients authenticate with Basic auth; public clients send `client_id`.
    fn authed(&self, req: reqwest::RequestBuilder, form: &mut Vec<(&'static str, String)>) -> reqwest::RequestBuilder {
        match (&self.client_id, &self.client_secret) {
            (Some(id), Some(secret)) => req.basic_auth(id, Some(secret.expose_secret())),
            (Some(id), None) => {
                form.push(("client_id", id.clone()));
                req
            }
            _ => req,
        }
    }
}

/// Longest access-token lifetime accepted: X documents 2 hours, times two.
const MAX_ACCESS_LIFETIME: i64 = 2 * 7_200;
/// X's token answer names no refresh-token lifetime.
pub(super) const LIFETIMES: oauth2::Lifetimes = oauth2::Lifetimes {
    access: MAX_ACCESS_LIFETIME,
    refresh: None,
};

/// The problem type of an X error body (`https://api.x.com/2/problems/<name>`), its last
/// path segment, lower-cased.
fn problem_type(reply: &Reply) -> String {
    let v = reply.json(P).unwrap_or_default();
    v.get("type")
        .and_then(Value::as_str)
        .and_then(|t| t.rsplit('/').next())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// An answer that refuses the app itself, not this user's token ("Response codes and
/// errors"): 403 client-forbidden, client-not-enrolled or unsupported-authentication, 402
/// (no credits left), 429 usage-capped (the monthly cap). `None` for anything else.
fn app_refusal(reply: &Reply) -> Option<String> {
    let kind = problem_type(reply);
    let title = reply
        .json(P)
        .ok()
        .and_then(|v| v.get("title").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let what = match (reply.status, kind.as_str()) {
        (402, _) => "the app has no X API credits left",
        (403, "client-forbidden") => "the app is not allowed to use this endpoint (client-forbidden)",
        (403, "client-not-enrolled") => "the app is not enrolled in a project with access (client-not-enrolled)",
        (403, "unsupported-authentication") => {
            "the app authenticates in a way this endpoint does not accept (unsupported-authentication)"
        }
        (429, "usage-capped") => "the app has reached its monthly usage cap (usage-capped)",
        (429, _) if title.eq_ignore_ascii_case("UsageCapExceeded") => "the app has reached its monthly usage cap",
        _ => return None,
    };
    Some(format!(
        "X refused the app, not the account: {what} ({}); check the app in the X developer portal (platforms.twitter.client_id)",
        problem(reply)
    ))
}

impl Twitter {
    /// `POST /2/oauth2/revoke` for one token; `Ok(())` when X confirmed.
    async fn revoke_one(&self, token: &str, hint: &str) -> Result<(), String> {
        let mut form = vec![("token", token.to_owned()), ("token_type_hint", hint.to_owned())];
        let req = self.authed(
            self.http.client().post(format!("{}/2/oauth2/revoke", self.base)),
            &mut form,
        );
        match self.http.send_token(P, req.form(&form)).await {
            Err(tr) => Err(tr.detail),
            Ok(reply) if reply.status == 200 => Ok(()),
            Ok(reply) => Err(problem(&reply)),
        }
    }
}

impl PlatformApi for Twitter {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        let url = format!("{}/2/users/me", self.base);
        let req = self.http.client().get(url).bearer_auth(t.access_token.expose_secret());
        let now = domain::now();
        let reply = match self.http.send(P, req).await {
            Ok(r) => r,
            Err(tr) => return CheckOutcome::Transient(tr),
        };
        // On /2/users/me this names the account's token, not the app: it is not an OAuth 2.0
        // user token (an app-only bearer token, or an OAuth 1.0a one, was registered).
        if reply.status == 403 && problem_type(&reply) == "unsupported-authentication" {
            return CheckOutcome::Invalid {
                reason: InvalidReason::Invalid,
                detail: format!(
                    "this account's token is not an OAuth 2.0 user token, which /2/users/me requires ({})",
                    problem(&reply)
                ),
            };
        }
        if let Some(m) = app_refusal(&reply) {
            return CheckOutcome::Misconfigured(m);
        }
        match reply.status {
            200 => {
                let v = match reply.json(P) {
                    Ok(v) => v,
                    Err(tr) => return CheckOutcome::Transient(tr),
                };
                let data = &v["data"];
                match data.get("id").and_then(Value::as_str) {
                    Some(id) => CheckOutcome::Valid(ValidToken {
                        user_id: Some(id.to_owned()),
                        owner_id: Some(id.to_owned()),
                        username: data.get("username").and_then(Value::as_str).map(str::to_owned),
                        ..ValidToken::default()
                    }),
                    None => CheckOutcome::Transient(Transient::new(
                        TransientKind::Malformed,
                        "X answered /2/users/me without data.id",
                    )),
                }
            }
            401 => CheckOutcome::Invalid {
                reason: InvalidReason::Invalid,
                detail: problem(&reply),
            },
            // A 403 that is not an app refusal names this user's token or scope.
            403 => CheckOutcome::PermissionDenied {
                detail: problem(&reply),
            },
            // GET /2/users/me is limited per user token: only this account waits.
            429 => CheckOutcome::Transient(Transient {
                scope: ThrottleScope::Account,
                ..status_transient(P, &reply, now)
            }),
            _ => CheckOutcome::Transient(status_transient(P, &reply, now)),
        }
    }

    async fn refresh(&self, t: &TokenContext<'_>) -> RefreshOutcome {
        let Some(refresh) = t.refresh_token else {
            return RefreshOutcome::NotSupported(
                "X issues a refresh token only when the offline.access scope is granted, and none is stored for \
                 this account, so its 2-hour access token cannot be renewed automatically: reconnect it with \
                 offline.access"
                    .into(),
            );
        };
        if self.client_id.is_none() {
            return RefreshOutcome::Misconfigured("X refresh needs platforms.twitter.client_id".into());
        }
        let mut form = oauth2::refresh_form(&[], refresh);
        let req = self.authed(
            self.http.client().post(format!("{}/2/oauth2/token", self.base)),
            &mut form,
        );
        let now = domain::now();
        let reply = match self.http.send_token(P, req.form(&form)).await {
            Ok(r) => r,
            Err(tr) => return RefreshOutcome::Transient(tr),
        };
        let v = reply.json(P).ok();
        if reply.status == 200
            && let Some(t) = v.as_ref().and_then(|v| oauth2::tokens(v, now, LIFETIMES))
        {
            return RefreshOutcome::Refreshed(t);
        }
        if let Some(m) = app_refusal(&reply) {
            return RefreshOutcome::Misconfigured(m);
        }
        let (code, description) = oauth2::error(v.as_ref());
        let description = description.to_ascii_lowercase();
        match (reply.status, code.as_str()) {
            (_, "invalid_grant") => RefreshOutcome::Fatal(problem(&reply)),
            // X answers a used, revoked or unknown refresh token with 400 invalid_request
            // "Value passed for the token was invalid."
            (400, "invalid_request") if description.contains("token was invalid") => {
                RefreshOutcome::Fatal(problem(&reply))
            }
            (401, _) | (_, "invalid_client" | "unauthorized_client") => RefreshOutcome::Misconfigured(format!(
                "X rejected the client credentials ({}): check platforms.twitter.client_id and client_secret_file",
                problem(&reply)
            )),
            (400, _) => RefreshOutcome::Transient(Transient::new(TransientKind::ServerError, problem(&reply))),
            _ => RefreshOutcome::Transient(status_transient(P, &reply, now)),
        }
    }

    /// Revokes the refresh token (which keeps the grant alive) and the access token: the
    /// revoke endpoint takes one token at a time. `Revoked` only when both went.
    async fn revoke(&self, t: &TokenContext<'_>) -> RevokeOutcome {
        if self.client_id.is_none() {
            return RevokeOutcome::NotSupported("X revocation needs platforms.twitter.client_id".into());
        }
        // The access token is revoked even when the refresh token's revocation failed: one
        // token fewer that works.
        let refresh = match t.refresh_token {
            Some(r) => self.revoke_one(r.expose_secret(), "refresh_token").await,
            None => Ok(()),
        };
        let access = self.revoke_one(t.access_token.expose_secret(), "access_token").await;
        match (refresh, access) {
            (Ok(()), Ok(())) => RevokeOutcome::Revoked,
            (Err(e), Ok(())) => RevokeOutcome::Failed(format!(
                "the access token was revoked but the refresh token could not be ({e}), so the grant may live on"
            )),
            (Ok(()), Err(e)) => RevokeOutcome::Failed(format!("the access token could not be revoked: {e}")),
            (Err(r), Err(a)) => RevokeOutcome::Failed(format!(
                "neither the refresh token ({r}) nor the access token ({a}) could be revoked"
            )),
        }
    }
}
