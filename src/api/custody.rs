//! Custody of the grant over HTTP: tokens out (`GET .../token`), tokens in
//! (`PUT .../credentials`), the custody itself (`PATCH`), and the audit trail (`GET /v1/audit`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::accounts::AccountDetail;
use super::audit::audit;
use super::{ApiError, ApiJson, ApiQuery, ApiState, Target, Workspace};
use crate::checks::{self, PushError, PushedTokens, RefreshChange, TokenError};
use crate::domain::{Account, Custody, rfc3339};

/// `GET .../token` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenAnswer {
    /// The access token to publish with.
    pub access_token: String,
    /// Its expiry, RFC 3339; absent when the platform does not say.
    pub expires_at: Option<String>,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// Always `Bearer`.
    pub token_type: String,
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::ProductCustody => ApiError::conflict(
                "product_custody",
                "The product holds this account's tokens (custody: product): socialsyncer does not hand them out. \
                 Change the custody with PATCH /v1/accounts/{platform}/{accountId} to let socialsyncer refresh them.",
            ),
            TokenError::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "token_unavailable", m),
            TokenError::Store(e) => e.into(),
        }
    }
}

/// The account's current access token, for an account in socialsyncer's custody: refreshed
/// first when it expires within `tokens.min_validity` (once, whoever else asks at the same
/// time). Needs a key with the `tokens` scope.
#[utoipa::path(get, path = "/v1/accounts/{platform}/{accountId}/token", tag = "custody",
    params(("platform" = String, Path), ("accountId" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, description = "The token; never cached (Cache-Control: no-store)", body = TokenAnswer),
              (status = 401, body = super::error::ErrorBody),
              (status = 403, description = "The key lacks the tokens scope", body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody),
              (status = 409, description = "The account is in the product's custody", body = super::error::ErrorBody),
              (status = 503, description = "The token has expired and could not be refreshed now", body = super::error::ErrorBody)))]
pub async fn token(
    State(state): State<ApiState>,
    Target(a, key): Target,
) -> Result<axum::response::Response, ApiError> {
    let min = state.config().tokens.min_validity.secs();
    let handed = checks::hand_out(&state.checker, &a, min).await;
    audit(&state, &a, &key, "token.read", &handed).await;
    let t = handed?;
    let body = TokenAnswer {
        access_token: t.access_token.expose_secret().to_owned(),
        expires_at: t.expires_at.map(rfc3339),
        scopes: t.scopes,
        token_type: "Bearer".into(),
    };
    Ok((
        [(header::CACHE_CONTROL, "no-store"), (header::PRAGMA, "no-cache")],
        Json(body),
    )
        .into_response())
}

/// `PUT .../credentials` body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CredentialsBody {
    /// The new access token.
    #[schema(value_type = String)]
    pub access_token: SecretString,
    /// The new refresh token; absent: the stored one stays; `null`: it is removed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub refresh_token: Option<Option<SecretString>>,
    /// The access token's expiry, RFC 3339.
    pub expires_at: Option<String>,
    /// The refresh token's expiry, RFC 3339.
    pub refresh_expires_at: Option<String>,
    /// The scopes granted; absent: the stored ones stay.
    pub scopes: Option<Vec<String>>,
}

/// A field that may be absent (`None`), `null` (`Some(None)`) or a value.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<SecretString>>, D::Error> {
    Ok(Some(Option::<SecretString>::deserialize(d)?))
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::WrongAccount(m) => ApiError::conflict("wrong_account", m),
            PushError::Rejected(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "tokens_rejected", m),
            PushError::Unverified(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "platform_unavailable", m),
            e @ PushError::Busy => ApiError::conflict("refresh_in_progress", e.to_string()),
            PushError::Store(e) => e.into(),
        }
    }
}

/// Replaces an account's tokens (after a reconnect, or a refresh by the product) without
/// revoking anything. They are checked at the platform first and must belong to this account
/// (else 409 `wrong_account`, nothing changes); the account is re-assessed at once.
#[utoipa::path(put, path = "/v1/accounts/{platform}/{accountId}/credentials", tag = "custody",
    params(("platform" = String, Path), ("accountId" = String, Path)),
    request_body = CredentialsBody,
    security(("api_key" = [])),
    responses((status = 200, body = AccountDetail),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 403, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody),
              (status = 409, description = "The tokens are another account's", body = super::error::ErrorBody),
              (status = 422, description = "The platform refused the token", body = super::error::ErrorBody),
              (status = 503, description = "The platform could not be asked", body = super::error::ErrorBody)))]
pub async fn credentials(
    State(state): State<ApiState>,
    Target(a, key): Target,
    ApiJson(body): ApiJson<CredentialsBody>,
) -> Result<Json<AccountDetail>, ApiError> {
    let pushed = validate(&a, body)?;
    let result = checks::push_tokens(&state.checker, &a, pushed).await;
    audit(&state, &a, &key, "tokens.replace", &result).await;
    let fresh = result?;
    Ok(Json(super::accounts::detail_of(
        &state,
        &super::accounts::seen_now(&state, fresh),
    )))
}

/// The body checked as a registration's tokens are.
fn validate(a: &Account, body: CredentialsBody) -> Result<PushedTokens, ApiError> {
    let reg = crate::accounts::RegistrationInput {
        platform: a.platform.as_str().to_owned(),
        account_id: a.account_id.clone(),
        username: a.username.clone(),
        access_token: body.access_token,
        refresh_token: body.refresh_token.clone().flatten(),
        expires_at: body.expires_at,
        scopes: body.scopes.clone().unwrap_or_default(),
        custody: None,
        instagram_login: None,
    }
    .validate()?;
    let refresh_expires_at = super::extract::refresh_expires_at(body.refresh_expires_at.as_deref())?;
    let refresh = match body.refresh_token {
        None => RefreshChange::Keep,
        Some(None) => RefreshChange::Remove,
        Some(Some(_)) => RefreshChange::Set(reg.refresh_token.clone().unwrap_or_else(|| SecretString::from(""))),
    };
    Ok(PushedTokens {
        access_token: reg.access_token,
        refresh,
        expires_at: reg.expires_at,
        refresh_expires_at,
        scopes: body.scopes.map(|_| reg.scopes),
    })
}

/// `PATCH /v1/accounts/{platform}/{accountId}` body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchBody {
    /// Who refreshes the grant from now on.
    pub custody: Custody,
}

/// Changes who refreshes the account's grant.
#[utoipa::path(patch, path = "/v1/accounts/{platform}/{accountId}", tag = "custody",
    params(("platform" = String, Path), ("accountId" = String, Path)),
    request_body = PatchBody,
    security(("api_key" = [])),
    responses((status = 200, body = AccountDetail),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 403, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn patch(
    State(state): State<ApiState>,
    Target(a, key): Target,
    ApiJson(body): ApiJson<PatchBody>,
) -> Result<Json<AccountDetail>, ApiError> {
    let result = state.store.set_custody(a.id, a.workspace_id, body.custody).await;
    audit(&state, &a, &key, "custody.change", &result).await;
    result?;
    let fresh = state
        .store
        .account_by_ref(a.id)
        .await?
        .ok_or_else(ApiError::account_not_found)?;
    Ok(Json(super::accounts::detail_of(
        &state,
        &super::accounts::seen_now(&state, fresh),
    )))
}

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Events per page, newest first (1 to 1000, default 100).
    pub limit: Option<i64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// One audited action.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditItem {
    /// RFC 3339 UTC.
    pub at: String,
    /// The prefix of the API key that acted (`cli` for the command line).
    pub key_prefix: String,
    /// `token.read`, `tokens.replace`, `custody.change`, `account.register` or `account.delete`.
    pub action: String,
    /// The account's platform.
    pub platform: Option<String>,
    /// The account's ID.
    pub account_id: Option<String>,
    /// `ok`, or why it was refused.
    pub result: String,
}

/// `GET /v1/audit` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    /// Newest first.
    pub events: Vec<AuditItem>,
    /// Pass as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The workspace's audit trail: every token read, token replacement, custody change,
/// registration and delete, newest first. Never a token.
#[utoipa::path(get, path = "/v1/audit", tag = "custody", params(AuditQuery),
    security(("api_key" = [])),
    responses((status = 200, body = AuditList),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 403, body = super::error::ErrorBody)))]
pub async fn audit_list(
    State(state): State<ApiState>,
    ws: Workspace,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 1000.",
        ));
    }
    let context = format!("audit|{}", ws.0);
    let before = q
        .cursor
        .as_deref()
        .map(|c| super::lists::decode_cursor(&state.sealer, &context, c))
        .transpose()?;
    let rows = state.store.audit_page(ws.0, before, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let rows: Vec<_> = rows.into_iter().take(limit as usize).collect();
    let next_cursor = match (more, rows.last()) {
        (true, Some(last)) => Some(super::lists::encode_cursor(&state.sealer, &context, last.id)),
        _ => None,
    };
    Ok(Json(AuditList {
        events: rows
            .into_iter()
            .map(|r| AuditItem {
                at: rfc3339(r.at),
                key_prefix: r.key_prefix,
                action: r.action,
                platform: r.platform,
                account_id: r.account_id,
                result: r.result,
            })
            .collect(),
        next_cursor,
    }))
}
