//! X (Twitter) API v2: `/2/users/me` liveness, OAuth 2.0 refresh (rotating) and revoke.

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{
    CheckOutcome, Http, InvalidReason, NewTokens, PlatformApi, RefreshOutcome, Reply, RevokeOutcome, TokenContext,
    Transient, TransientKind, ValidToken, scope_list, status_transient,
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

impl PlatformApi for Twitter {
    async fn check(&self, t: &TokenContext<'_>) -> CheckOutcome {
        let url = format!("{}/2/users/me", self.base);
        let req = self.http.client().get(url).bearer_auth(t.access_token.expose_secret());
        let now = domain::now();
        let reply = match self.http.send(P, req).await {
            Ok(r) => r,
            Err(tr) => return CheckOutcome::Transient(tr),
        };
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
            403 => CheckOutcome::PermissionDenied {
                detail: problem(&reply),
            },
            _ => CheckOutcome::Transient(status_transient(P, &reply, now)),
        }
    }

    async fn refresh(&self, t: &TokenContext<'_>) -> RefreshOutcome {
        let Some(refresh) = t.refresh_token else {
            return RefreshOutcome::NotSupported(
                "no refresh token is stored for this account (was offline.access granted?)".into(),
            );
        };
        if self.client_id.is_none() {
            return RefreshOutcome::Misconfigured("X refresh needs platforms.twitter.client_id".into());
        }
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh.expose_secret().to_owned()),
        ];
        let req = self.authed(
            self.http.client().post(format!("{}/2/oauth2/token", self.base)),
            &mut form,
        );
        let now = domain::now();
        let reply = match self.http.send(P, req.form(&form)).await {
            Ok(r) => r,
            Err(tr) => return RefreshOutcome::Transient(tr),
        };
        let v = reply.json(P).ok();
        if reply.status == 200
            && let Some(v) = &v
            && let Some(access) = v.get("access_token").and_then(Value::as_str).filter(|s| !s.is_empty())
        {
            return RefreshOutcome::Refreshed(NewTokens {
                access_token: SecretString::from(access.to_owned()),
                refresh_token: v
                    .get("refresh_token")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_owned())),
                expires_at: v.get("expires_in").and_then(Value::as_i64).map(|s| now + s),
                refresh_expires_at: None,
                scopes: v.get("scope").and_then(scope_list),
            });
        }
        let code = v
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        match (reply.status, code) {
            (_, "invalid_grant") => RefreshOutcome::Fatal(problem(&reply)),
            (401, _) | (_, "invalid_client" | "unauthorized_client") => RefreshOutcome::Misconfigured(format!(
                "X rejected the client credentials ({}): check platforms.twitter.client_id and client_secret_file",
                problem(&reply)
            )),
            (400, _) => RefreshOutcome::Transient(Transient::new(TransientKind::ServerError, problem(&reply))),
            _ => RefreshOutcome::Transient(status_transient(P, &reply, now)),
        }
    }

    async fn revoke(&self, t: &TokenContext<'_>) -> RevokeOutcome {
        if self.client_id.is_none() {
            return RevokeOutcome::NotSupported("X revocation needs platforms.twitter.client_id".into());
        }
        let mut form = vec![
            ("token", t.access_token.expose_secret().to_owned()),
            ("token_type_hint", "access_token".to_owned()),
        ];
        let req = self.authed(
            self.http.client().post(format!("{}/2/oauth2/revoke", self.base)),
            &mut form,
        );
        match self.http.send(P, req.form(&form)).await {
            Err(tr) => RevokeOutcome::Failed(tr.detail),
            Ok(reply) if reply.status == 200 => RevokeOutcome::Revoked,
            Ok(reply) => RevokeOutcome::Failed(problem(&reply)),
        }
    }
}
