//! The HTTP API: routing, authentication, extractors that answer in the API's error format.

pub mod accounts;
mod audit;
pub mod cache;
pub mod connect;
pub mod custody;
pub mod docs;
pub mod error;
pub mod events;
pub mod extract;
pub mod html;
pub mod limit;
pub mod lists;
pub mod notifications;
pub mod openapi;
pub mod status;
pub mod status_html;
pub mod status_page;
pub mod timeline;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use std::sync::Arc;

use axum::extract::State;

use crate::cluster::Instance;
use crate::problems::Problems;
use crate::store::Store;
pub use error::ApiError;
pub use extract::{ApiJson, ApiPath, ApiQuery, ClientAddr, Target, Workspace};

/// What the HTTP handlers need; each takes the pieces it uses (axum's `FromRef`). Cheap to
/// clone. Built by `app.rs`.
#[derive(Clone, Debug, axum::extract::FromRef)]
pub struct ApiState {
    /// The database.
    pub store: crate::store::Store,
    /// Seals registered tokens and opens list cursors.
    pub sealer: crate::crypto::Sealer,
    /// The time answers and staleness go by.
    pub clock: crate::clock::Clock,
    /// Per-platform pacing (check-now turns).
    pub gates: std::sync::Arc<crate::pacing::Gates>,
    /// This daemon (`/healthz`).
    pub instance: std::sync::Arc<crate::cluster::Instance>,
    /// Prometheus metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The daemon's configuration problems.
    pub problems: std::sync::Arc<crate::problems::Problems>,
    /// Registration, check-now and disconnect.
    pub checker: crate::checks::Checker,
    /// Recipients, confirmations and test messages.
    pub outbox: crate::alerts::Outbox,
    /// The per-key and per-address request limits.
    pub key_limiter: std::sync::Arc<limit::KeyLimiter>,
    /// Serialized list answers, per workspace and query.
    pub list_cache: std::sync::Arc<cache::ListCache>,
    /// The configuration (`server.*`, `health.*`, `notify.*` are read).
    pub config: crate::live::Live<std::sync::Arc<crate::config::Config>>,
    /// Connect links.
    pub connector: crate::connect::Connector,
}

impl ApiState {
    /// The configuration in force now.
    pub fn config(&self) -> std::sync::Arc<crate::config::Config> {
        self.config.get()
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
pub async fn healthz(
    State(config): State<crate::live::Live<Arc<crate::config::Config>>>,
    State(store): State<Store>,
    State(problems): State<Arc<Problems>>,
    State(instance): State<Arc<Instance>>,
    State(clock): State<crate::clock::Clock>,
) -> impl IntoResponse {
    let database = store.ping().await;
    // Aggregates only: nothing here names a workspace or a tenant's receiver (`/healthz`
    // needs no key). The details are on the metrics listener (`/problems`).
    let waiting = problems.notes_count("email:");
    let cadence = problems.notes_with_prefix("cadence:");
    let mut problems = problems.platform_problems();
    problems.extend(cadence);
    if waiting > 0 {
        problems.push(format!(
            "notify: alerts of {waiting} workspace(s) wait for a recipient (see /problems on the metrics listener)"
        ));
    }
    if config.get().email.smtp_url.is_none() {
        let n = store.workspaces_with_recipients().await.unwrap_or_default();
        if n > 0 {
            problems.push(format!(
                "notify: {n} workspace(s) have email recipients but email.smtp_url is not set: no email is sent"
            ));
        }
    }
    let skew = instance.skew.load(std::sync::atomic::Ordering::Relaxed);
    if skew != 0 {
        problems.push(format!(
            "clock: this host's clock differs from the database's by {skew} s; fix its time (NTP)"
        ));
    }
    let (disabled, failing) = receiver_trouble(&store, clock.now()).await;
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
            instance_id: instance.id.clone(),
            peers: instance.peers(),
            backend: store.backend_name().into(),
            clock_skew_seconds: (skew != 0).then_some(skew),
            version: env!("CARGO_PKG_VERSION").into(),
        }),
    )
}

/// Receivers disabled (410 Gone) and receivers whose deliveries have failed for a day.
async fn receiver_trouble(store: &Store, now: crate::domain::UnixTime) -> (usize, usize) {
    let troubles = receiver_troubles(store, now).await;
    let disabled = troubles.iter().filter(|t| t.disabled).count();
    (disabled, troubles.len() - disabled)
}

/// A receiver disabled (410 Gone), or whose deliveries have failed for a day.
struct ReceiverTrouble {
    disabled: bool,
    line: String,
}

async fn receiver_troubles(store: &Store, now: crate::domain::UnixTime) -> Vec<ReceiverTrouble> {
    let day_ago = now - 86_400;
    let Ok(statuses) = store.receiver_statuses().await else {
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
pub async fn problems(
    State(store): State<Store>,
    State(problems): State<Arc<Problems>>,
    State(clock): State<crate::clock::Clock>,
) -> impl IntoResponse {
    let mut lines = problems.list();
    lines.extend(receiver_troubles(&store, clock.now()).await.into_iter().map(|t| t.line));
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
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> Result<axum::response::Response, ApiError> {
    state.metrics.set_configuration_problems(&state.problems.counts());
    let text = state
        .metrics
        .render(
            &state.store,
            state.config().health.stale_after.secs(),
            state.config().metrics.per_account,
            state.config().metrics.per_account_limit,
            state.clock.now(),
            |p, login, has_refresh, custody| crate::checks::renewed(&state.checker, p, login, has_refresh, custody),
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
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/problems", get(problems))
        .route("/status", get(status_page::operator))
        .fallback(not_found)
        .with_state(state)
}

/// The whole router with its state.
pub fn router(state: ApiState) -> Router {
    let limit = state.config().server.max_body_bytes;
    let mut router = Router::new().route("/healthz", get(healthz));
    if state.config().server.metrics_listen.trim().is_empty() {
        router = router
            .route("/metrics", get(metrics))
            .route("/problems", get(problems))
            .route("/status", get(status_page::operator));
    }
    router
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/docs", get(docs::serve))
        .route("/v1/accounts", get(lists::list).post(accounts::register))
        .route("/v1/accounts/health", get(lists::health))
        .route(
            "/v1/accounts/{platform}/{account_id}",
            get(accounts::details)
                .delete(accounts::disconnect)
                .patch(custody::patch),
        )
        .route("/v1/accounts/{platform}/{account_id}/token", get(custody::token))
        .route(
            "/v1/accounts/{platform}/{account_id}/credentials",
            axum::routing::put(custody::credentials),
        )
        .route("/v1/audit", get(custody::audit_list))
        .route("/v1/events", get(events::events))
        .route("/v1/status-links", get(status::list).post(status::create))
        .route("/v1/status-links/{prefix}", axum::routing::delete(status::revoke))
        .route("/status/{token}", get(status_page::workspace))
        .route("/status/{token}/badge.svg", get(status::workspace_badge))
        .route("/status/{token}/{platform}/{account_id}", get(status_page::account))
        .route(
            "/status/{token}/{platform}/{account_id}/badge.svg",
            get(status::account_badge),
        )
        .route("/v1/connect", post(connect::start))
        .route("/v1/accounts/{platform}/{account_id}/check", post(accounts::check_now))
        .route("/v1/accounts/{platform}/{account_id}/history", get(accounts::history))
        .route("/v1/accounts/{platform}/{account_id}/timeline", get(timeline::timeline))
        .route(
            "/v1/notifications",
            get(notifications::show).put(notifications::replace),
        )
        .route("/v1/notifications/test", post(notifications::test))
        .route("/v1/notifications/confirm", post(notifications::confirm))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            extract::anonymous_limit,
        ))
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
