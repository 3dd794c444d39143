//! `/v1/accounts`: the answer shapes, details, register, check now, disconnect, history
//! (the two lists are in `lists`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiJson, ApiQuery, ApiState, Target, Workspace};
use crate::accounts::{self, RegistrationError, RegistrationInput};
use crate::checks;
use crate::domain::{Custody, Health, InstagramLogin, Platform, rfc3339};
use crate::platforms::{CheckOutcome, RevokeOutcome, TransientKind};
use crate::store::Account;

/// One entry of `GET /v1/accounts`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountSummary {
    /// Platform, lower-case.
    pub platform: Platform,
    /// The platform's account ID.
    pub account_id: String,
    /// Display name.
    pub username: String,
    /// RFC 3339 UTC.
    pub connected_at: String,
    /// Who refreshes the grant: `socialsyncer` or `product`.
    pub custody: Custody,
}

/// `GET /v1/accounts` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountList {
    /// The accounts.
    pub accounts: Vec<AccountSummary>,
    /// Pass as `cursor` for the next page; absent on the last page (and without `limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One entry of `GET /v1/accounts/health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountHealth {
    /// Platform.
    pub platform: Platform,
    /// Account ID.
    pub account_id: String,
    /// Display name.
    pub username: String,
    /// `healthy`, `warning`, `unhealthy` or `unknown`.
    pub health: Health,
    /// Whether the token was valid at the last check; null before the first check.
    pub token_valid: Option<bool>,
    /// Permissions the token carries.
    pub permissions: Vec<String>,
    /// What to do, in sentences.
    pub recommendations: Vec<String>,
    /// Required permissions the token lacks.
    pub missing_permissions: Vec<String>,
    /// Access token expiry, RFC 3339 UTC; null when unknown or never.
    pub token_expires_at: Option<String>,
    /// Facebook only: when the app's data access ends unless the account owner logs in to
    /// the app again, RFC 3339 UTC; null when the platform has none or it is not known yet.
    pub data_access_expires_at: Option<String>,
    /// Whether a person must reconnect the account.
    pub needs_reconnect: bool,
    /// Last check, RFC 3339 UTC; null if never checked.
    pub last_checked_at: Option<String>,
}

/// Counts by health.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct HealthSummary {
    /// All accounts listed.
    pub total: usize,
    /// Healthy ones.
    pub healthy: usize,
    /// Warnings.
    pub warning: usize,
    /// Unhealthy ones.
    pub unhealthy: usize,
    /// Unknown ones.
    pub unknown: usize,
}

/// `GET /v1/accounts/health` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthList {
    /// The accounts.
    pub accounts: Vec<AccountHealth>,
    /// Counts by health, over every account the filters select (not only this page).
    pub summary: HealthSummary,
    /// Pass as `cursor` for the next page; absent on the last page (and without `limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One account's details: its health entry plus when it was connected and its last error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountDetail {
    /// The fields of the health list.
    #[serde(flatten)]
    pub account: AccountHealth,
    /// RFC 3339 UTC.
    pub connected_at: String,
    /// Who refreshes the grant: `socialsyncer` (it refreshes; read tokens from
    /// `GET .../token`) or `product` (the product refreshes and pushes them with
    /// `PUT .../credentials`).
    pub custody: Custody,
    /// The last problem seen, if any; while the platform asks socialsyncer to wait, why and
    /// until when.
    pub last_error: Option<String>,
    /// RFC 3339 UTC: when socialsyncer checks the account next.
    pub next_check_at: String,
    /// For an account that needs a reconnect and can connect: its reconnect link (connect
    /// links on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconnect_url: Option<String>,
    /// Instagram accounts: the login the account was connected with, `instagram` or
    /// `facebook` (registered, learned by a check, or else `platforms.instagram.login`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instagram_login: Option<InstagramLogin>,
}

fn permissions_of(a: &Account) -> Vec<String> {
    a.state.permissions.clone().unwrap_or_else(|| a.scopes.clone())
}

impl From<&Account> for AccountSummary {
    fn from(a: &Account) -> Self {
        AccountSummary {
            platform: a.platform,
            account_id: a.account_id.clone(),
            username: a.username.clone(),
            connected_at: rfc3339(a.connected_at),
            custody: a.custody,
        }
    }
}

impl From<&Account> for AccountHealth {
    fn from(a: &Account) -> Self {
        AccountHealth {
            platform: a.platform,
            account_id: a.account_id.clone(),
            username: a.username.clone(),
            health: a.state.health,
            token_valid: a.state.token_valid,
            permissions: permissions_of(a),
            recommendations: a.state.recommendations.clone(),
            missing_permissions: a.state.missing_permissions.clone(),
            token_expires_at: a.token_expires_at.map(rfc3339),
            data_access_expires_at: a.state.data_access_expires_at.map(rfc3339),
            needs_reconnect: a.state.needs_reconnect,
            last_checked_at: a.last_checked_at.map(rfc3339),
        }
    }
}

impl From<&Account> for AccountDetail {
    fn from(a: &Account) -> Self {
        let mut account = AccountHealth::from(a);
        // Say why an account reads as it does when no check has said it yet.
        if a.last_checked_at.is_none() && account.recommendations.is_empty() {
            account.recommendations.push(format!(
                "Not checked yet: its first check runs at {}.",
                rfc3339(a.next_check_at)
            ));
        }
        if let Some(e) = &a.state.last_error
            && e.ends_with(crate::domain::DEFERRED_SUFFIX)
            && !account.recommendations.contains(e)
        {
            account.recommendations.push(e.clone());
        }
        AccountDetail {
            account,
            next_check_at: rfc3339(a.next_check_at),
            connected_at: rfc3339(a.connected_at),
            custody: a.custody,
            last_error: a.state.last_error.clone(),
            reconnect_url: None,
            instagram_login: None,
        }
    }
}

/// One account's details as answered: with its Instagram login, its own or the configured.
pub(super) fn detail_of(state: &ApiState, a: &Account) -> AccountDetail {
    let mut d = AccountDetail::from(a);
    if a.platform == Platform::Instagram {
        d.instagram_login = Some(a.instagram_login.unwrap_or(state.config().platforms.instagram.login));
    }
    d
}

/// The account as a reader sees it now (staleness derived at read time).
pub(super) fn seen_now(state: &ApiState, a: Account) -> Account {
    crate::health::read_view(a, state.clock.now(), state.config().health.stale_after.secs())
}

/// One account's details.
#[utoipa::path(get, path = "/v1/accounts/{platform}/{accountId}", tag = "accounts",
    params(("platform" = String, Path), ("accountId" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, body = AccountDetail),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn details(State(state): State<ApiState>, Target(a, _): Target) -> Result<Json<AccountDetail>, ApiError> {
    let a = seen_now(&state, a);
    let mut detail = detail_of(&state, &a);
    if a.state.needs_reconnect {
        detail.reconnect_url =
            crate::connect::alert_link(&state.connector, a.workspace_id, a.platform, &a.account_id).await;
    }
    Ok(Json(detail))
}

/// `POST /v1/accounts` body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisterBody {
    /// Platform.
    pub platform: String,
    /// Account ID in the platform's format.
    pub account_id: String,
    /// Display name.
    pub username: String,
    /// The OAuth access token (stored sealed; never shown again).
    #[schema(value_type = String)]
    pub access_token: SecretString,
    /// The refresh token, when the platform issued one.
    #[schema(value_type = Option<String>)]
    pub refresh_token: Option<SecretString>,
    /// Access token expiry, RFC 3339.
    pub expires_at: Option<String>,
    /// Refresh token expiry, RFC 3339 (TikTok's `refresh_expires_in`): warned about before it.
    pub refresh_expires_at: Option<String>,
    /// Scopes granted.
    pub scopes: Option<Vec<String>>,
    /// Who refreshes the grant; absent: `accounts.default_custody`.
    pub custody: Option<Custody>,
    /// Instagram only: the login the account was connected with, `instagram` (Instagram
    /// Login) or `facebook` (Facebook Login); absent: `platforms.instagram.login`.
    pub instagram_login: Option<InstagramLogin>,
}

impl From<RegistrationError> for ApiError {
    fn from(e: RegistrationError) -> Self {
        match e {
            RegistrationError::Invalid { code, message } => ApiError::bad_request(code, message),
            e @ RegistrationError::Exists(..) => ApiError::conflict(
                "account_exists",
                format!(
                    "{e}. To give it new tokens (after a reconnect), use PUT /v1/accounts/{{platform}}/{{accountId}}/credentials; \
                         nothing is revoked."
                ),
            ),
            RegistrationError::Store(e) => e.into(),
        }
    }
}

/// Register an account connected elsewhere.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = RegisterBody,
    security(("api_key" = [])),
    responses((status = 201, body = AccountDetail),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 409, description = "Already registered", body = super::error::ErrorBody),
              (status = 413, body = super::error::ErrorBody)))]
pub async fn register(
    State(state): State<ApiState>,
    ws: Workspace,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<AccountDetail>), ApiError> {
    let refresh_expires_at = super::extract::refresh_expires_at(body.refresh_expires_at.as_deref())?;
    let reg = RegistrationInput {
        platform: body.platform,
        account_id: body.account_id,
        username: body.username,
        access_token: body.access_token,
        refresh_token: body.refresh_token,
        expires_at: body.expires_at,
        scopes: body.scopes.unwrap_or_default(),
        custody: body.custody,
        instagram_login: body.instagram_login,
    }
    .validate()?;
    let id = accounts::register(&state.checker, ws.0, &reg).await;
    let e = crate::store::NewAuditEvent {
        workspace_id: ws.0,
        key_prefix: &ws.1.0,
        action: "account.register",
        account: Some((reg.platform, reg.account_id.as_str())),
        result: if id.is_ok() { "ok" } else { "refused" },
    };
    if let Err(err) = state.store.record_audit(&e, state.clock.now()).await {
        tracing::warn!(error = %err, "could not record the registration in the audit trail");
    }
    let id = id?;
    if let Some(t) = refresh_expires_at {
        state.store.set_refresh_expiry(id, t).await?;
    }
    // A DELETE of the same account may win the race from here on: that is a conflict
    // with this registration, not an account that never was.
    let deleted = || {
        ApiError::conflict(
            "account_deleted",
            "The account was deleted while it was being registered; register it again if that was not meant.",
        )
    };
    let a = state.store.account_by_ref(id).await?.ok_or_else(deleted)?;
    // The first check goes through the platform's gate like a check-now: not while the
    // platform asks to wait, and within the on-demand share of its budget. Without a turn,
    // or with a platform that is down, the registration stands and the health stays unknown
    // until the next sweep.
    let turn = match state.gates.held_until(a.platform, state.clock.now()) {
        Some(_) => None,
        None => state.gates.reserve_on_demand(a.platform, ON_DEMAND_WAIT).ok(),
    };
    let a = match turn {
        Some((share, turn)) => {
            share.wait().await;
            turn.wait().await;
            match checks::check_and_record(&state.checker, a).await {
                Ok((a, _)) => a,
                Err(crate::store::StoreError::NotFound) => return Err(deleted()),
                Err(e) => return Err(e.into()),
            }
        }
        None => a,
    };
    Ok((StatusCode::CREATED, Json(detail_of(&state, &seen_now(&state, a)))))
}

/// The longest a check made on request waits for its turn at the platform's gate.
const ON_DEMAND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Check one account now and answer its fresh health.
#[utoipa::path(post, path = "/v1/accounts/{platform}/{accountId}/check", tag = "accounts",
    params(("platform" = String, Path), ("accountId" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, description = "The fresh health", body = AccountDetail),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody),
              (status = 429, description = "Checks on request are at their share of the platform's rate limit", body = super::error::ErrorBody),
              (status = 502, description = "The platform answered garbage", body = super::error::ErrorBody),
              (status = 503, description = "The platform could not be reached or is rate limiting", body = super::error::ErrorBody)))]
pub async fn check_now(
    State(state): State<ApiState>,
    Target(a, _): Target,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let now = state.clock.now();
    // Checked a moment ago: that result, without calling the platform again.
    let cooldown = state.config().health.check_now_cooldown.secs();
    if let Some(at) = a.last_checked_at
        && now - at < cooldown
    {
        let mut resp = Json(detail_of(&state, &seen_now(&state, a))).into_response();
        if let Ok(v) = (cooldown - (now - at)).max(1).to_string().parse() {
            resp.headers_mut().insert("x-check-cooldown", v);
        }
        return Ok(resp);
    }
    // The same pacing and throttle gates as sweeps: a platform that asked to wait is not
    // called, and check-nows never outrun the platform's rate.
    let gate = state.gates.get(a.platform);
    if let Some(until) = gate.blocked(now) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "platform_unavailable",
            format!(
                "{} asked to wait until {}; the last known health is kept. Try again later.",
                a.platform.display_name(),
                crate::domain::rfc3339(until)
            ),
        )
        .retry_after((until - now).max(1).unsigned_abs()));
    }
    // A turn within the check-now share of the platform's budget, at most 2 s away; else
    // 429. A caller that goes away gives its turn back.
    let (share, turn) = state
        .gates
        .reserve_on_demand(a.platform, ON_DEMAND_WAIT)
        .map_err(|wait| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "platform_busy",
                format!(
                    "Checks of {} on request are at their share of its rate limit (health.check_now_share); retry in {} s.",
                    a.platform.display_name(),
                    wait.as_secs().max(1)
                ),
            )
            .retry_after(wait.as_secs().max(1))
        })?;
    share.wait().await;
    turn.wait().await;
    let (fresh, outcome) = checks::check_and_record(&state.checker, a).await?;
    if let CheckOutcome::Transient(t) = &outcome
        && t.is_throttle()
        && t.scope == crate::platforms::ThrottleScope::App
    {
        state
            .gates
            .get(fresh.platform)
            .block_until(t.retry_at.unwrap_or(now + checks::DEFAULT_THROTTLE_WAIT));
    }
    match outcome {
        CheckOutcome::Transient(t) => {
            let status = if t.kind == TransientKind::Malformed {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let err = ApiError::upstream(
                status,
                format!("{}; the last known health is kept. Try again later.", t.detail),
            );
            Ok(match t.retry_at {
                Some(at) => err.retry_after((at - state.clock.now()).max(1).unsigned_abs()),
                None => err,
            }
            .into_response())
        }
        CheckOutcome::Misconfigured(m) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "daemon_misconfigured",
            format!("The account could not be checked because of the daemon's configuration: {m}"),
        )),
        _ => Ok(Json(AccountDetail::from(&seen_now(&state, fresh))).into_response()),
    }
}

/// `DELETE` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// Always true: the stored credentials are gone.
    pub deleted: bool,
    /// Whether the platform confirmed the token is revoked.
    pub revoked: bool,
    /// Why the token was not revoked, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Disconnect an account: revoke its token at the platform, then delete its credentials.
#[utoipa::path(delete, path = "/v1/accounts/{platform}/{accountId}", tag = "accounts",
    params(("platform" = String, Path), ("accountId" = String, Path)),
    security(("api_key" = [])),
    responses((status = 200, description = "Deleted; `revoked` says whether the platform revoked the token", body = Deleted),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn disconnect(State(state): State<ApiState>, Target(a, key): Target) -> Result<Json<Deleted>, ApiError> {
    let outcome = accounts::disconnect(&state.checker, &a).await;
    super::audit::audit(&state, &a, &key, "account.delete", &outcome).await;
    let outcome = outcome?;
    let (revoked, reason) = match outcome {
        RevokeOutcome::Revoked => (true, None),
        RevokeOutcome::NotSupported(r) | RevokeOutcome::Failed(r) => (false, Some(r)),
    };
    Ok(Json(Deleted {
        deleted: true,
        revoked,
        reason,
    }))
}

/// Query of the history route.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// How many entries, newest first (1 to 1000, default 100).
    pub limit: Option<i64>,
}

/// One history entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryItem {
    /// RFC 3339 UTC.
    pub at: String,
    /// `check`, `refresh` or `refresh_failed`.
    pub event: String,
    /// For checks: `ok`, `invalid` or `transient_error`.
    pub outcome: Option<String>,
    /// Health after the event.
    pub health: Health,
    /// Whether the health changed with this event.
    pub changed: bool,
    /// What happened.
    pub detail: Option<String>,
}

/// `GET .../history` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryList {
    /// Entries, newest first.
    pub history: Vec<HistoryItem>,
}

/// When did this account break? Checks, refreshes and health changes, newest first.
#[utoipa::path(get, path = "/v1/accounts/{platform}/{accountId}/history", tag = "accounts",
    params(("platform" = String, Path), ("accountId" = String, Path), HistoryQuery),
    security(("api_key" = [])),
    responses((status = 200, body = HistoryList),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 404, body = super::error::ErrorBody)))]
pub async fn history(
    State(state): State<ApiState>,
    Target(a, _): Target,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be between 1 and 1000.",
        ));
    }
    let rows = state.store.history(a.id, limit).await?;
    Ok(Json(HistoryList {
        history: rows
            .into_iter()
            .map(|r| HistoryItem {
                at: rfc3339(r.at),
                event: r.event.as_str().to_owned(),
                outcome: r.outcome.map(|o| o.as_str().to_owned()),
                health: r.health,
                changed: r.changed,
                detail: r.detail,
            })
            .collect(),
    }))
}
