//! `GET /v1/openapi.json`: the OpenAPI 3 description, generated from the handlers and types.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{accounts, lists};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "socialsyncer", description = "Health of connected social media accounts"),
    servers((url = "http://127.0.0.1:8080", description = "The default server.listen; the daemon serves wherever it is configured")),
    paths(
        lists::list,
        lists::health,
        accounts::details,
        accounts::register,
        accounts::check_now,
        accounts::history,
        super::timeline::timeline,
        super::events::events,
        super::status::create,
        super::status::list,
        super::status::revoke,
        super::status::workspace_badge,
        super::status::account_badge,
        super::status_page::workspace,
        super::status_page::account,
        accounts::disconnect,
        super::custody::token,
        super::custody::credentials,
        super::custody::patch,
        super::custody::audit_list,
        super::connect::start,
        super::healthz,
        super::notifications::show,
        super::notifications::replace,
        super::notifications::test,
        super::notifications::confirm,
        super::metrics,
    ),
    components(schemas(super::notifications::WebhookEvent)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_...")
                    .build(),
            ),
        );
    }
}

/// The description as served: the generated one, with what the handlers' annotations do not
/// say (see [`enrich`]). Built once per process.
pub fn document() -> &'static Value {
    static DOC: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
        let mut v = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        enrich(&mut v);
        v
    });
    &DOC
}

/// Serves the description: built and serialized once per process (it never changes while
/// the daemon runs), so that a flood of requests for it costs a copy each, not a build.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOC: std::sync::LazyLock<axum::body::Bytes> =
        std::sync::LazyLock::new(|| serde_json::to_vec(document()).unwrap_or_default().into());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], DOC.clone()).into_response()
}

fn error_body(description: &str) -> Value {
    json!({"description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
}

/// What every route's annotations would repeat: the enums of `platform` and `health`
/// parameters; the 403 and 429 answers of every keyed route (429 with `Retry-After`); the
/// `ETag` and 304 of the cached lists; examples for the three core routes.
fn enrich(doc: &mut Value) {
    let platforms = json!(["instagram", "facebook", "threads", "tiktok", "twitter", "x"]);
    let healths = json!(["healthy", "warning", "unhealthy", "unknown"]);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, op) in item.iter_mut() {
            for p in op
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let values = match p.get("name").and_then(Value::as_str) {
                    Some("platform") => &platforms,
                    Some("health") => &healths,
                    _ => continue,
                };
                p["schema"] = json!({"type": "string", "enum": values});
            }
            let keyed = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().any(|r| r.get("api_key").is_some()));
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            if keyed {
                responses
                    .entry("403")
                    .or_insert_with(|| error_body("The key lacks the scope this route needs (read, manage or tokens)"));
                let mut limited = error_body("Too many requests from this key or address: wait as Retry-After says");
                limited["headers"] = json!({"Retry-After": {"description": "Seconds to wait before trying again",
                    "schema": {"type": "integer", "minimum": 1}}});
                responses.insert("429".into(), limited);
            }
            if method == "get" && matches!(path.as_str(), "/v1/accounts" | "/v1/accounts/health") {
                let etag = json!({"ETag": {"description": "The answer's version: send it back in If-None-Match",
                    "schema": {"type": "string"}}});
                if let Some(ok) = responses.get_mut("200") {
                    ok["headers"] = etag.clone();
                }
                responses.insert(
                    "304".into(),
                    json!({"description": "Not modified: If-None-Match named the current ETag", "headers": etag}),
                );
            }
            if let Some(example) = example(method, path)
                && let Some(ok) = responses.get_mut("200")
                && let Some(content) = ok.pointer_mut("/content/application~1json")
            {
                content["example"] = example;
            }
        }
    }
}

/// The answer examples of the three core routes.
fn example(method: &str, path: &str) -> Option<Value> {
    let health = json!({"platform": "instagram", "accountId": "17841400123456789", "username": "mybusiness",
        "health": "warning", "tokenValid": true,
        "permissions": ["instagram_basic", "instagram_content_publish"],
        "recommendations": ["Token expires in 5 days, on 2027-01-15 09:30 UTC. Consider reconnecting."],
        "missingPermissions": [], "tokenExpiresAt": "2027-01-15T09:30:00Z",
        "dataAccessExpiresAt": "2027-03-01T00:00:00Z", "needsReconnect": false,
        "lastCheckedAt": "2027-01-10T09:30:00Z"});
    match (method, path) {
        ("get", "/v1/accounts") => Some(json!({"accounts": [
            {"platform": "instagram", "accountId": "17841400123456789", "username": "mybusiness",
             "connectedAt": "2026-11-02T10:00:00Z", "custody": "socialsyncer"},
            {"platform": "twitter", "accountId": "1234567890", "username": "@mybusiness",
             "connectedAt": "2026-11-02T10:05:00Z", "custody": "product"}]})),
        ("get", "/v1/accounts/health") => Some(json!({"accounts": [health],
            "summary": {"total": 1, "healthy": 0, "warning": 1, "unhealthy": 0, "unknown": 0}})),
        ("get", "/v1/accounts/{platform}/{accountId}") => {
            let mut d = health;
            d["connectedAt"] = json!("2026-11-02T10:00:00Z");
            d["custody"] = json!("socialsyncer");
            d["lastError"] = Value::Null;
            d["nextCheckAt"] = json!("2027-01-10T15:30:00Z");
            d["instagramLogin"] = json!("facebook");
            Some(d)
        }
        _ => None,
    }
}
