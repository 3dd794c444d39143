//! The API's extractors: bodies, queries and paths whose rejections answer in the API's
//! error format, the client address, the caller's workspace (its API key checked here) and
//! the account a route names.

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use super::{ApiError, ApiState};
use crate::domain::{AccountId, KeyScope, Platform};
use crate::store::Account;

/// JSON body extractor whose rejections use [`ApiError`].
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query string extractor whose rejections use [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// Path extractor whose rejections use [`ApiError`].
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

/// The client address a request came from (set by the server for each connection).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The bucket of a client address: IPv4 addresses each, IPv6 by /64 (one host often holds a
/// whole /64).
fn address_bucket(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("addr:{v4}"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("addr:{v4}"),
            None => {
                let s = v6.segments();
                format!("addr:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Takes one request from the bucket of the client address in `extensions` (when the
/// server set one): requests without a valid key are limited per address.
fn limit_address(state: &ApiState, extensions: &axum::http::Extensions) -> Result<(), ApiError> {
    let Some(ClientAddr(ip)) = extensions.get::<ClientAddr>().copied() else {
        return Ok(());
    };
    let rate = state.config().server.address_rate_limit;
    state
        .key_limiter
        .check(&address_bucket(ip), rate, rate * 2.0)
        .map_err(|retry| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "This address sends requests without a valid API key faster than the daemon allows \
                     (server.address_rate_limit); retry in {} s.",
                    retry.max(1)
                ),
            )
            .retry_after(retry)
        })
}

/// Requests without an `Authorization` header are limited per client address.
pub(super) async fn anonymous_limit(
    axum::extract::State(state): axum::extract::State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !req.headers().contains_key(header::AUTHORIZATION)
        && let Err(e) = limit_address(&state, req.extensions())
    {
        return e.into_response();
    }
    next.run(req).await
}

/// The workspace whose live API key `key` is: the stored hashes that share its prefix are
/// compared with its hash in constant time, every one of them (no early exit).
async fn authenticate(
    store: &crate::store::Store,
    key: &str,
) -> Result<Option<(crate::domain::WorkspaceId, String)>, crate::store::StoreError> {
    if !crate::crypto::looks_like_api_key(key) {
        return Ok(None);
    }
    let hash = crate::crypto::hash_api_key(key);
    let mut found = None;
    for (ws, stored, scopes) in store
        .api_keys_with_prefix(&key[..crate::crypto::KEY_PREFIX_LEN])
        .await?
    {
        if crate::crypto::hashes_equal(&stored, &hash) {
            found = Some((ws, scopes));
        }
    }
    Ok(found)
}

/// The scope a request needs: `tokens` to read an account's token, `read` for the other
/// GET routes, `manage` for everything that changes something.
pub fn required_scope(method: &axum::http::Method, path: &str) -> KeyScope {
    if path.ends_with("/token") {
        KeyScope::Tokens
    } else if method == axum::http::Method::GET || method == axum::http::Method::HEAD {
        KeyScope::Read
    } else {
        KeyScope::Manage
    }
}

/// The workspace a request acts for, from its `Authorization: Bearer sk_...` header, with
/// the key's prefix (for the audit trail). The key must hold the scope the request needs
/// ([`required_scope`]); else 403 `insufficient_scope`.
#[derive(Debug, Clone)]
pub struct Workspace(pub crate::domain::WorkspaceId, pub KeyPrefix);

/// The prefix of the API key a request came with (never the key).
#[derive(Debug, Clone)]
pub struct KeyPrefix(pub String);

impl FromRequestParts<ApiState> for Workspace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::unauthorized(
                "missing_api_key",
                "This route needs an API key: send the header Authorization: Bearer sk_...",
            )
        })?;
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.trim_start().split_once(' '))
            // The scheme is case-insensitive (RFC 9110 section 11.1).
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "invalid_authorization",
                    "The Authorization header must be of the form: Bearer sk_...",
                )
            })?;
        match authenticate(&state.store, key).await? {
            Some((ws, scopes)) => {
                let server = &state.config().server;
                state
                    .key_limiter
                    .check(key, server.key_rate_limit, server.key_burst)
                    .map_err(ApiError::rate_limited)?;
                let need = required_scope(&parts.method, parts.uri.path());
                let held = KeyScope::parse_list(&scopes).unwrap_or_default();
                if !held.contains(&need) {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "insufficient_scope",
                        format!(
                            "This API key lacks the `{}` scope this route needs (it has: {scopes}). Create a key with it: \
                             socialsyncer keys create --workspace W --scope {}",
                            need.as_str(),
                            need.as_str()
                        ),
                    ));
                }
                let prefix = key[..crate::crypto::KEY_PREFIX_LEN].to_owned();
                Ok(Workspace(ws, KeyPrefix(prefix)))
            }
            None => {
                // Guessing keys is limited per client address.
                limit_address(state, &parts.extensions)?;
                Err(ApiError::unauthorized(
                    "invalid_api_key",
                    "The API key is unknown or has been revoked. Create one with `socialsyncer keys create`.",
                ))
            }
        }
    }
}

/// A body's `refreshExpiresAt` (RFC 3339), or a clear 400.
pub(super) fn refresh_expires_at(v: Option<&str>) -> Result<Option<crate::domain::UnixTime>, ApiError> {
    v.map(crate::domain::parse_rfc3339)
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_refresh_expires_at", format!("refreshExpiresAt: {m}")))
}

pub(super) fn parse_platform(p: &str) -> Result<Platform, ApiError> {
    p.parse()
        .map_err(|e: crate::domain::UnknownPlatform| ApiError::bad_request("unknown_platform", e.to_string()))
}

/// Validates the `{platform}/{accountId}` path.
pub fn parse_target(platform: &str, account_id: &str) -> Result<(Platform, AccountId), ApiError> {
    let p = parse_platform(platform)?;
    let id = AccountId::parse(p, account_id).map_err(|e| ApiError::bad_request("invalid_account_id", e.to_string()))?;
    Ok((p, id))
}

/// The account that a `/{platform}/{accountId}` route names, in the caller's workspace: 401
/// without a valid key, 400 for a malformed platform or ID, 404 when there is no such account.
pub struct Target(pub Account, pub KeyPrefix);

impl axum::extract::FromRequestParts<ApiState> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &ApiState) -> Result<Self, ApiError> {
        let ws = Workspace::from_request_parts(parts, state).await?;
        let ApiPath((platform, account_id)) = ApiPath::<(String, String)>::from_request_parts(parts, state).await?;
        let (p, id) = parse_target(&platform, &account_id)?;
        let account = state.store.get_account(ws.0, p, &id).await?;
        account.map(|a| Target(a, ws.1)).ok_or_else(ApiError::account_not_found)
    }
}
