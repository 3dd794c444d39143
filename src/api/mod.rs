//! The HTTP API: routing, authentication, extractors that answer in the API's error format.

pub mod accounts;
pub mod cache;
pub mod error;
pub mod limit;
pub mod lists;
pub mod notifications;
pub mod openapi;

use axum::extract::{FromRequest, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
pub use error::ApiError;

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
fn limit_address(state: &AppState, extensions: &axum::http::Extensions) -> Result<(), ApiError> {
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
async fn anonymous_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
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

/// The workspace a request acts for, from its `Authorization: Bearer sk_...` header.
#[derive(Debug, Clone, Copy)]
pub struct Workspace(pub crate::domain::WorkspaceId);

impl FromRequestParts<AppState> for Workspace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
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
        match state.store.authenticate(key).await? {
            Some(ws) => {
                let server = &state.config().server;
                state
                    .key_limiter
                    .check(key, server.key_rate_limit, server.key_burst)
                    .map_err(ApiError::rate_limited)?;
                Ok(Workspace(ws))
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

/// `GET /healthz` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// `ok` or `degraded`.
    pub status: String,
    /// Whether the database answers.
    pub database: bool,
    /// Configuration problems found at run time (e.g. a platform rejecting the app credentials).
    pub problems: Vec<String>,
    /// The daemon version.
    pub version: String,
    /// This daemon's name among those sharing its database (host, process, random part).
    #[serde(rename = "instanceId")]
    pub instance_id: String,
    /// Live daemons sharing the database, this one included (always 1 on SQLite).
    pub peers: i64,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// Seconds this host's clock is ahead of the database's (negative: behind), when they
    /// differ by more than 5 s (several daemons on PostgreSQL); absent otherwise.
    #[serde(rename = "clockSkewSeconds", skip_serializing_if = "Option::is_none")]
    pub clock_skew_seconds: Option<i64>,
}

/// The daemon's own liveness.
#[utoipa::path(get, path = "/healthz", tag = "daemon", security(()),
    responses((status = 200, description = "The daemon is up", body = Liveness),
              (status = 503, description = "The database does not answer", body = Liveness)))]
pub async fn healthz(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let database = state.store.ping().await;
    // Aggregates only: nothing here names a workspace or a tenant's receiver (`/healthz`
    // needs no key). The details are on the metrics listener (`/problems`).
    let mut problems = state.problems.platform_problems();
    let waiting = state.problems.notes_count("email:");
    if waiting > 0 {
        problems.push(format!(
            "notify: alerts of {waiting} workspace(s) wait for a recipient (see /problems on the metrics listener)"
        ));
    }
    let skew = state.instance.skew.load(std::sync::atomic::Ordering::Relaxed);
    if skew != 0 {
        problems.push(format!(
            "clock: this host's clock differs from the database's by {skew} s; fix its time (NTP)"
        ));
    }
    let (disabled, failing) = receiver_trouble(&state).await;
    if disabled > 0 {
        problems.push(format!(
            "notify: {disabled} receiver(s) are disabled (see /problems on the metrics listener)"
        ));
    }
    if failing > 0 {
        problems.push(format!(
            "notify: deliveries to {failing} receiver(s) have failed for a day (see /problems on the metrics listener)"
        ));
    }
    let status = if database && problems.is_empty() {
        "ok"
    } else {
        "degraded"
    };
    let code = if database {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Liveness {
            status: status.into(),
            database,
            problems,
            instance_id: state.instance.id.clone(),
            peers: state.instance.peers(),
            backend: state.store.backend_name().into(),
            clock_skew_seconds: (skew != 0).then_some(skew),
            version: env!("CARGO_PKG_VERSION").into(),
        }),
    )
}

/// Receivers disabled (410 Gone) and receivers whose deliveries have failed for a day.
async fn receiver_trouble(state: &AppState) -> (usize, usize) {
    let troubles = receiver_troubles(state).await;
    let disabled = troubles.iter().filter(|t| t.disabled).count();
    (disabled, troubles.len() - disabled)
}

/// A receiver disabled (410 Gone), or whose deliveries have failed for a day.
struct ReceiverTrouble {
    disabled: bool,
    line: String,
}

async fn receiver_troubles(state: &AppState) -> Vec<ReceiverTrouble> {
    let day_ago = state.clock.now() - 86_400;
    let Ok(statuses) = state.store.receiver_statuses().await else {
        return Vec::new();
    };
    statuses
        .into_iter()
        .filter_map(
            |s| match (&s.disabled_reason, s.failing_since.filter(|t| *t <= day_ago)) {
                (Some(r), _) => Some(ReceiverTrouble {
                    disabled: true,
                    line: format!("notify: receiver {} is disabled: {r}", s.receiver),
                }),
                (None, Some(t)) => Some(ReceiverTrouble {
                    disabled: false,
                    line: format!(
                        "notify: deliveries to receiver {} have failed since {}",
                        s.receiver,
                        crate::domain::rfc3339(t)
                    ),
                }),
                (None, None) => None,
            },
        )
        .collect()
}

/// The daemon's problems in full, naming workspaces and receivers: on the metrics listener
/// only (the operator's), one per line.
pub async fn problems(axum::extract::State(state): axum::extract::State<AppState>) -> impl IntoResponse {
    let mut lines = state.problems.list();
    lines.extend(receiver_troubles(&state).await.into_iter().map(|t| t.line));
    let mut text = lines.join("\n");
    text.push('\n');
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
}

/// Prometheus text exposition, served on `server.metrics_listen` (default
/// `127.0.0.1:9464`), or on the API listener when that is empty.
#[utoipa::path(get, path = "/metrics", tag = "daemon", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain"),
              (status = 404, description = "Metrics are served on server.metrics_listen, not here", body = error::ErrorBody)))]
pub async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Result<axum::response::Response, ApiError> {
    state.metrics.set_configuration_problems(&state.problems.counts());
    let text = state
        .metrics
        .render(
            &state.store,
            state.config().health.stale_after.secs(),
            state.config().metrics.per_account,
            state.clock.now(),
            |p, has_refresh| crate::checks::renewed_automatically(&state, p, has_refresh),
        )
        .await
        .map_err(ApiError::internal)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "No such route. See GET /v1/openapi.json.",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not take that method. See GET /v1/openapi.json.",
    )
}

/// The metrics listener's router (`server.metrics_listen`): `/metrics` and `/problems`.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/problems", get(problems))
        .fallback(not_found)
        .with_state(state)
}

/// The whole router with its state.
pub fn router(state: AppState) -> Router {
    let limit = state.config().server.max_body_bytes;
    let mut router = Router::new().route("/healthz", get(healthz));
    if state.config().server.metrics_listen.trim().is_empty() {
        router = router.route("/metrics", get(metrics)).route("/problems", get(problems));
    }
    router
        .route("/v1/openapi.json", get(openapi::serve))
        .merge(accounts::router())
        .merge(notifications::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), anonymous_limit))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal(anyhow::anyhow!("a request handler panicked")).into_response()
        }))
        // A span per request named by its matched route (never the path or query as sent,
        // which hold account IDs and could hold anything), so that what a request logs
        // carries its route; its status and latency are logged at debug level when it ends.
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(|r: &axum::http::Request<axum::body::Body>| {
                    let route = r
                        .extensions()
                        .get::<axum::extract::MatchedPath>()
                        .map_or("unmatched", axum::extract::MatchedPath::as_str);
                    tracing::info_span!("request", method = %r.method(), route)
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new()
                        .level(tracing::Level::DEBUG)
                        .latency_unit(tower_http::LatencyUnit::Millis),
                ),
        )
        .with_state(state)
}
