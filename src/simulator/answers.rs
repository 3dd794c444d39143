//! What every platform answer goes through first: latency, outages, throttling, usage headers.

use super::*;

/// Graph answers carry the app's quota usage in `X-App-Usage` ("Rate limiting"); every
/// answer waits its platform's `answer_delay`, after the request was acted on.
pub(super) async fn app_usage_header(
    State(s): S,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let platform = req
        .uri()
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .and_then(|p| p.trim_end_matches("-login").parse::<Platform>().ok());
    let mut response = next.run(req).await;
    let delay = platform.and_then(|p| s.lock().tweaks.get(&p).and_then(|t| t.answer_delay));
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let usage = platform.and_then(|p| s.lock().tweaks.get(&p).and_then(|t| t.app_usage));
    if let Some(u) = usage
        && let Ok(v) = json!({"call_count": u, "total_cputime": u, "total_time": u})
            .to_string()
            .parse()
    {
        response.headers_mut().insert("x-app-usage", v);
    }
    response
}

/// Counts the call, waits the platform's latency, and answers for an unusual behaviour
/// (of the platform, or of the token) instead of the documented path.
pub(super) async fn preflight(s: &Shared, p: Platform, token: Option<&str>) -> Option<Response> {
    s.calls[idx(p)].fetch_add(1, Ordering::Relaxed);
    let seq = {
        let mut arrivals = s.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        arrivals.push(p);
        arrivals.len() as u64
    };
    let now_in_flight = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.most_in_flight.fetch_max(now_in_flight, Ordering::SeqCst);
    let (latency, mode, tb) = {
        let mut g = s.lock();
        let tb = token.and_then(|t| g.tokens.get_mut(t)).map(|t| {
            t.calls += 1;
            t.last_call = seq;
            t.behavior
        });
        (g.latency.get(&p).copied(), g.modes.get(&p).copied(), tb)
    };
    if let Some(d) = latency {
        tokio::time::sleep(d).await;
    }
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    let behavior = match (mode, tb) {
        (Some(m), _) if m != Behavior::Normal => m,
        (_, Some(b)) => b,
        _ => Behavior::Normal,
    };
    let tweaks = s.lock().tweaks.get(&p).cloned().unwrap_or_default();
    match behavior {
        Behavior::Normal => None,
        Behavior::RateLimited => Some(rate_limited(p, &tweaks)),
        Behavior::AppForbidden | Behavior::CreditsExhausted | Behavior::UsageCapped if p == Platform::Twitter => {
            let (status, title, kind, detail) = match behavior {
                Behavior::AppForbidden => (
                    StatusCode::FORBIDDEN,
                    "Client Forbidden",
                    "client-forbidden",
                    "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens \
                     from a Twitter developer App that is attached to a Project.",
                ),
                Behavior::CreditsExhausted => (
                    StatusCode::PAYMENT_REQUIRED,
                    "CreditsDepleted",
                    "credits",
                    "Your enrolled account does not have any credits to fulfill this request.",
                ),
                _ => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "UsageCapExceeded",
                    "usage-capped",
                    "Usage cap exceeded: Monthly product cap",
                ),
            };
            Some(
                (
                    status,
                    Json(json!({"title": title, "detail": detail, "status": status.as_u16(),
                        "type": format!("https://api.x.com/2/problems/{kind}")})),
                )
                    .into_response(),
            )
        }
        Behavior::AppForbidden | Behavior::CreditsExhausted | Behavior::UsageCapped => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>503 Service Temporarily Unavailable</body></html>",
            )
                .into_response(),
        ),
        Behavior::ServerError => Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>503 Service Temporarily Unavailable</body></html>",
            )
                .into_response(),
        ),
        Behavior::Malformed => Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"data\": {\"is_valid\": tr",
            )
                .into_response(),
        ),
        Behavior::Huge => Some((StatusCode::OK, vec![b'x'; 10 * 1024 * 1024]).into_response()),
        Behavior::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Some(StatusCode::GATEWAY_TIMEOUT.into_response())
        }
    }
}

pub(super) fn rate_limited(p: Platform, tweaks: &Tweaks) -> Response {
    let now = domain::now();
    let mut response = rate_limited_answer(p, tweaks, now);
    if let Some(v) = tweaks.retry_after.as_deref().and_then(|v| v.parse().ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, v);
    }
    response
}

pub(super) fn rate_limited_answer(p: Platform, tweaks: &Tweaks, now: UnixTime) -> Response {
    match p {
        Platform::Facebook | Platform::Instagram => {
            let code = if p == Platform::Facebook { 80001 } else { 80002 };
            let kind = if p == Platform::Facebook { "pages" } else { "instagram" };
            let buc = json!({"1234": [{"type": kind, "call_count": 100, "total_cputime": 20,
                "total_time": 20, "estimated_time_to_regain_access": tweaks.regain_minutes.unwrap_or(2)}]});
            (
                StatusCode::BAD_REQUEST,
                [("x-business-use-case-usage", buc.to_string())],
                Json(
                    json!({"error": {"message": "There have been too many calls.", "type": "OAuthException",
                    "code": code, "fbtrace_id": "AbCdEf"}}),
                ),
            )
                .into_response()
        }
        Platform::Threads => (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"message": "Application request limit reached", "type": "OAuthException",
                "code": 4, "fbtrace_id": "AbCdEf"}}),
            ),
        )
            .into_response(),
        Platform::Tiktok => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"data": {}, "error": {"code": "rate_limit_exceeded",
                "message": "API rate limit exceeded.", "log_id": "20261127sim"}})),
        )
            .into_response(),
        Platform::Twitter => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("x-rate-limit-limit", "75".to_owned()),
                ("x-rate-limit-remaining", "0".to_owned()),
                (
                    "x-rate-limit-reset",
                    tweaks
                        .rate_limit_reset
                        .clone()
                        .unwrap_or_else(|| (now + 120).to_string()),
                ),
            ],
            Json(
                json!({"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank",
                "status": 429}),
            ),
        )
            .into_response(),
    }
}

/// Instagram's two hosts take each other's tokens for tokens they cannot parse (see
/// `src/platforms/README.md`, "What the simulator assumes beyond the documentation"):
/// graph.facebook.com (`/instagram`, `login_host` false) an Instagram Login token,
/// graph.instagram.com (`/instagram-login`) a Facebook Login one. `debug_token`'s
/// `input_token` answers as `debug_token` does (its handler); the token a call is made with
/// is refused here.
pub(super) async fn instagram_host(
    State(s): S,
    login_host: bool,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let refused = {
        let g = s.lock();
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == "access_token")
            .any(|(_, v)| {
                g.tokens
                    .get(v.as_ref())
                    .is_some_and(|t| t.platform == Platform::Instagram && t.instagram_login_only != login_host)
            })
    };
    if refused {
        return graph_error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    next.run(req).await
}
