//! Connect links over HTTP: `POST /v1/connect` on the API, and the `/connect/*` routes a
//! browser follows, served on `connect.listen` alone (no key; a rate limit per client
//! address; HTML answers with a strict Content-Security-Policy and no JavaScript).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::parse_platform;
use super::{ApiError, ApiJson, ApiState, ClientAddr, Workspace, html};
use crate::connect::{self, Callback, Choice, ConnectError, Connector, Outcome};
use crate::domain::{AccountId, Platform, rfc3339};

/// `POST /v1/connect` body.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectBody {
    /// The platform to connect: `facebook`, `instagram`, `threads`, `tiktok` or `twitter`.
    pub platform: String,
    /// Where the browser goes back to; must start with one of `connect.allowed_redirects`.
    pub redirect_url: String,
    /// For a reconnect: the account the consent must return (another one is refused).
    pub account_id: Option<String>,
}

/// `POST /v1/connect` answer.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectLink {
    /// socialsyncer's link, which sends the browser to the platform's consent.
    pub url: String,
    /// RFC 3339; the link is single-use and stops working then.
    pub expires_at: String,
}

impl From<ConnectError> for ApiError {
    fn from(e: ConnectError) -> Self {
        match e {
            e @ ConnectError::Disabled => ApiError::conflict("connect_disabled", e.to_string()),
            e @ ConnectError::BadRedirect => ApiError::bad_request("invalid_redirect_url", e.to_string()),
            ConnectError::NotConnectable(m) => ApiError::bad_request("platform_not_connectable", m),
            ConnectError::Store(e) => e.into(),
        }
    }
}

/// A connect link: the browser that follows it consents at the platform and comes back to
/// `redirectUrl` with `status=connected&platform=P&accountId=ID`, or `status=error&error=CODE`.
#[utoipa::path(post, path = "/v1/connect", tag = "connect", request_body = ConnectBody,
    security(("api_key" = [])),
    responses((status = 200, body = ConnectLink),
              (status = 400, body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody),
              (status = 403, body = super::error::ErrorBody),
              (status = 409, description = "Connecting is off (connect.public_url)", body = super::error::ErrorBody)))]
pub async fn start(
    State(state): State<ApiState>,
    ws: Workspace,
    ApiJson(body): ApiJson<ConnectBody>,
) -> Result<Json<ConnectLink>, ApiError> {
    let platform = parse_platform(&body.platform)?;
    let pinned = body
        .account_id
        .as_deref()
        .map(|id| AccountId::parse(platform, id))
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_account_id", e.to_string()))?;
    let link = connect::start(&state.connector, ws.0, platform, &body.redirect_url, pinned.as_ref()).await?;
    Ok(Json(ConnectLink {
        url: link.url,
        expires_at: rfc3339(link.expires_at),
    }))
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let class = if status.is_success() { "" } else { "bad" };
    html::message(status, title, class, text)
}

/// The chooser: one consent granted several accounts; the person ticks the ones to connect.
/// A form without script, posted back to `/connect/{id}/choose`.
fn chooser(public: &str, choice: &Choice) -> Response {
    let what = match choice.platform {
        Platform::Facebook => "Facebook Pages",
        _ => "Instagram accounts",
    };
    let rows: String = choice
        .accounts
        .iter()
        .map(|(id, name)| {
            let name = if name.is_empty() { id } else { name };
            format!(
                "<label class=\"row\"><input type=\"checkbox\" name=\"account\" value=\"{id}\" checked>\
                 <span>{name}</span><small>{id}</small></label>",
                id = html::esc(id),
                name = html::esc(name)
            )
        })
        .collect();
    let body = format!(
        "<p>Your consent covers these {what}. Choose the ones socialsyncer should watch; \
         the others are not stored.</p>\
         <form method=\"post\" action=\"{action}\"><fieldset><legend>{what}</legend>{rows}</fieldset>\
         <div class=\"actions\"><button type=\"submit\" name=\"action\" value=\"connect\">Connect selected</button>\
         <button type=\"submit\" name=\"action\" value=\"cancel\" class=\"secondary\">Cancel</button></div></form>",
        action = html::esc(&format!("{public}/connect/{}/choose", choice.session)),
    );
    html::document(StatusCode::OK, &format!("Choose {what}"), "", &body)
}

fn redirect(to: &str) -> Response {
    match HeaderValue::from_str(to) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            "The way back is not a valid address.",
        ),
    }
}

/// `GET /connect/{id}`: to the platform's consent.
async fn follow(State(c): State<Connector>, Path(id): Path<String>) -> Response {
    match connect::authorize_url(&c, &id).await {
        Ok(Some(url)) => redirect(&url),
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            "This link does not work",
            "The connect link is unknown, has expired or was already used. Ask for a new one.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "a connect link could not be read");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The link could not be read just now.",
            )
        }
    }
}

/// Where an outcome sends the browser: on to the product, to the chooser, or a page.
fn outcome(c: &Connector, o: Result<Outcome, crate::store::StoreError>) -> Response {
    match o {
        Ok(Outcome::Connected(to)) => redirect(&to),
        // To the chooser's own address (a reload shows it again; the code leaves the history).
        Ok(Outcome::Choose(choice)) => redirect(&format!(
            "{}/connect/{}/choose",
            c.config.get().connect.public_url().unwrap_or_default(),
            choice.session
        )),
        Ok(Outcome::Failed { redirect: Some(to), .. }) => redirect(&to),
        Ok(Outcome::Failed { redirect: None, code }) => page(
            StatusCode::BAD_REQUEST,
            "Not connected",
            &format!("Nothing was connected ({code}): the link is unknown, has expired or was already used."),
        ),
        Err(e) => {
            tracing::error!(error = %e, "a connect callback failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Not connected",
                "Nothing was connected; try the link again.",
            )
        }
    }
}

/// `GET /connect/callback/{platform}`: the platform sends the browser back here.
async fn callback(State(c): State<Connector>, Path(platform): Path<String>, Query(q): Query<Callback>) -> Response {
    let Ok(platform) = platform.parse() else {
        return page(StatusCode::NOT_FOUND, "Not connected", "No such platform.");
    };
    let o = connect::callback(&c, platform, q).await;
    outcome(&c, o)
}

/// `GET /connect/{id}/choose`: the chooser, while the session holds accounts to choose from.
async fn show_choice(State(c): State<Connector>, Path(id): Path<String>) -> Response {
    if id.len() > 64 {
        return page(StatusCode::NOT_FOUND, "Nothing to choose", "No such link.");
    }
    match connect::held(&c, &id).await {
        Ok(Some(choice)) => chooser(c.config.get().connect.public_url().unwrap_or_default(), &choice),
        Ok(None) => page(
            StatusCode::NOT_FOUND,
            "Nothing to choose",
            "The choice was already made, or the link has expired. Ask for a new one.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "a connect choice could not be read");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The choice could not be read just now.",
            )
        }
    }
}

/// `POST /connect/{id}/choose`: the chooser's form (`account` for each ticked account,
/// `action=cancel` for Cancel).
async fn choose(
    State(c): State<Connector>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Response {
    if id.len() > 64 || form.len() > 1_000 {
        return page(StatusCode::BAD_REQUEST, "Not connected", "The form is not valid.");
    }
    let accounts: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "account")
        .map(|(_, v)| v.clone())
        .collect();
    let cancel = form.iter().any(|(k, v)| k == "action" && v == "cancel");
    let o = connect::choose(&c, &id, &accounts, cancel).await;
    outcome(&c, o)
}

/// What `/connect/done` is told.
#[derive(Debug, Default, Deserialize)]
struct Done {
    status: Option<String>,
    platform: Option<String>,
    #[serde(rename = "accountId")]
    account_id: Option<String>,
    error: Option<String>,
}

/// `GET /connect/done`: socialsyncer's own page to come back to (the demo's `redirectUrl`,
/// and any operator who allows it), saying what happened.
async fn done(Query(d): Query<Done>) -> Response {
    match (d.status.as_deref(), d.platform, d.account_id, d.error) {
        (Some("connected"), Some(p), Some(id), _) => {
            let p = p.parse::<Platform>().map_or(p, |p| p.display_name().to_owned());
            html::message(
                StatusCode::OK,
                "Connected",
                "ok",
                &format!("The {p} account {id} is connected. You can close this page."),
            )
        }
        (_, _, _, Some(e)) => html::message(
            StatusCode::OK,
            "Not connected",
            "bad",
            &format!("Nothing was connected ({e})."),
        ),
        _ => html::message(StatusCode::OK, "Not connected", "bad", "Nothing was connected."),
    }
}

/// The connect listener's router: `/connect/{id}` and `/connect/callback/{platform}`, each
/// answer with a strict Content-Security-Policy, limited per client address.
pub fn router(c: Connector, limiter: std::sync::Arc<super::limit::KeyLimiter>) -> axum::Router {
    let config = c.config.clone();
    axum::Router::new()
        .route("/connect/{id}", axum::routing::get(follow))
        .route("/connect/callback/{platform}", axum::routing::get(callback))
        .route("/connect/{id}/choose", axum::routing::get(show_choice).post(choose))
        .route("/connect/done", axum::routing::get(done))
        // Browsers ask for one: nothing, rather than a 404 in their console.
        .route("/favicon.ico", axum::routing::get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { page(StatusCode::NOT_FOUND, "Not found", "No such page.") })
        .with_state(c)
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let (limiter, config) = (limiter.clone(), config.clone());
                async move {
                    if let Some(ClientAddr(ip)) = req.extensions().get::<ClientAddr>().copied() {
                        let c = config.get();
                        if limiter
                            .check(&format!("connect:{ip}"), c.connect.rate_limit, c.connect.rate_burst)
                            .is_err()
                        {
                            return page(
                                StatusCode::TOO_MANY_REQUESTS,
                                "Slow down",
                                "Too many requests; try again shortly.",
                            );
                        }
                    }
                    let mut r = next.run(req).await;
                    let h = r.headers_mut();
                    h.insert(header::CONTENT_SECURITY_POLICY, html::CSP.clone());
                    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
                    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    r
                }
            },
        ))
}
