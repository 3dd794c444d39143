//! The one error type of the HTTP layer and its JSON body.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::truncate_for_message;
use crate::store::StoreError;

/// `{"error":{"code","message"}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The code and message of an error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `invalid_account_id`.
    pub code: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// An error answered to an API client. Internal causes are logged, never shown.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for the `Retry-After` header (429 and 503 answers).
    retry_after: Option<u64>,
}

impl ApiError {
    /// 400: the client sent something invalid.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no key, or an unknown or revoked one.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 404: no such account in this workspace (or in any: the answer is the same).
    pub fn account_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "account_not_found",
            "No such account in this workspace. List accounts with GET /v1/accounts.",
        )
    }

    /// 409: the account is already registered.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 502/503: the platform could not be reached for a call that needs it.
    pub fn upstream(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, "platform_unavailable", message)
    }

    /// 500: logs the cause chain and answers a generic message.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        let err = err.into();
        tracing::error!(error = format!("{err:#}"), "internal error while answering a request");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side; it has been logged. Try again later.",
        )
    }

    /// Any status with a code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Answers `Retry-After: secs` too (at least 1).
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 429: this API key sent more requests than `server.key_rate_limit` allows.
    pub fn rate_limited(retry_after: u64) -> Self {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "This API key sends requests faster than the daemon allows (server.key_rate_limit); retry in {} s.",
                retry_after.max(1)
            ),
        )
        .retry_after(retry_after)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::account_not_found(),
            StoreError::Conflict => ApiError::conflict("conflict", "That resource already exists."),
            StoreError::KeyChanged => {
                tracing::error!("{}", StoreError::KeyChanged);
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "token_key_rotated",
                    "The daemon's token key was rotated while it ran; it stores no new token until it restarts with the new key.",
                )
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "The request body is too large.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::bad_request(
                "invalid_json",
                "Send the body as JSON with the header Content-Type: application/json.",
            ),
            _ => ApiError::bad_request(
                "invalid_json",
                format!(
                    "The body is not valid JSON for this request: {}",
                    shorten(&r.body_text())
                ),
            ),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad_request(
            "invalid_query",
            format!("Invalid query string: {}", shorten(&r.body_text())),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::bad_request("invalid_path", format!("Invalid path: {}", shorten(&r.body_text())))
    }
}

/// Bounds a framework message before it goes back to a client.
fn shorten(s: &str) -> String {
    let s = s
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(s);
    if s.len() > 300 {
        truncate_for_message(s)
    } else {
        s.to_owned()
    }
}
