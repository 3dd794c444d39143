//! `GET /v1/openapi.json`: the OpenAPI 3 description, generated from the handlers and types.

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

/// Serves the description: built and serialized once per process (it never changes while
/// the daemon runs), so that a flood of requests for it costs a copy each, not a build.
pub async fn serve() -> axum::response::Response {
    use axum::response::IntoResponse;
    static DOC: std::sync::LazyLock<axum::body::Bytes> =
        std::sync::LazyLock::new(|| serde_json::to_vec(&ApiDoc::openapi()).unwrap_or_default().into());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], DOC.clone()).into_response()
}
