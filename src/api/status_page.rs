//! The status pages (issue 26): a workspace's at `GET /status/{token}` (its counts, the
//! accounts that need a person with what to do, every account with a 90-day bar, the last
//! check and the daemon's problems), one account's at `/status/{token}/{platform}/{accountId}`
//! (a 90-day band, incidents, token expiries and reconnect deadline, the last day's checks),
//! and the operator's at `/status` on the metrics listener (every workspace's counts).
//!
//! Server-rendered HTML (see `status_html`) without JavaScript under the strict policy of
//! `html`. A page is built once per change of its workspace (the lists' generation) and
//! cached like the lists, for at most a minute (the daemon's problems and the time in words
//! change without a write). A cached page costs one query (the share link and the
//! generation together), and none when the same link was looked up less than a second ago:
//! a page may be a second behind a change another process made (a revocation here is seen
//! at once).

use std::fmt::Write;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::cache::Cached;
use super::status_html::{self, AccountPage, DAYS, Line, WorkspacePage};
use super::{ApiError, ApiPath, ApiState, html};
use crate::domain::{Account, AccountId, Health, Platform, UnixTime, WorkspaceId};
use crate::health::timeline::{self, Day, Transition};

/// Accounts a page lists.
pub const PER_PAGE: i64 = 100;
/// Accounts shown with what to do at the top of the first page.
const PEOPLE: i64 = 50;
/// The longest a built page is served, in seconds.
const CACHE_FOR: i64 = 60;

/// An HTML page of one message, with the pages' headers.
fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let mut r = html::message(status, title, "bad", text);
    html::page_headers(&mut r);
    r
}

fn gone() -> Response {
    message(
        StatusCode::NOT_FOUND,
        "No such status page",
        "This status link does not exist or was revoked. Ask the workspace for a new one.",
    )
}

fn failed(e: impl Into<ApiError>) -> Response {
    let e: ApiError = e.into();
    tracing::debug!(status = %e.status(), "a status page could not be built");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Status unavailable",
        "socialsyncer could not read its database just now; try again in a minute.",
    )
}

/// The workspace a share token opens and its generation, and the token's hash; or the 404.
async fn opened(state: &ApiState, token: &str) -> Result<(WorkspaceId, i64, String), Response> {
    if !crate::crypto::looks_like_share_token(token) {
        return Err(gone());
    }
    let hash = crate::crypto::hash_api_key(token);
    // Read less than a second ago: served without a query (see `ListCache::recent`).
    if let Some((ws, generation)) = state.list_cache.recent(&hash) {
        return Ok((WorkspaceId(ws), generation, hash));
    }
    match state.store.status_link_generation(&hash).await {
        Ok(Some((ws, generation))) => {
            state.list_cache.remember(&hash, ws.0, generation);
            Ok((ws, generation, hash))
        }
        Ok(None) => Err(gone()),
        Err(e) => Err(failed(e)),
    }
}

/// The cached page answered as HTML (or 304), never stored by a shared cache.
fn respond(cached: &Cached, headers: &HeaderMap) -> Response {
    let mut r = cached.respond(headers);
    html::page_headers(&mut r);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    r
}

/// How long a page built now may be served: a minute at most, and not past the moment one
/// of its accounts turns stale.
fn valid_until(now: UnixTime, next_stale_at: Option<UnixTime>, stale_after: i64) -> UnixTime {
    let stale = next_stale_at.map_or(UnixTime::MAX, |t| t.saturating_add(stale_after).saturating_add(1));
    (now + CACHE_FOR).min(stale)
}

/// `?page=N` (1-based), the only query a workspace's page takes; `None` for any other.
fn page_of(query: Option<&str>) -> Option<i64> {
    let mut page = 1;
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("page", n)) => page = n.parse::<i64>().ok().filter(|n| (1..=1_000_000).contains(n))?,
            _ => return None,
        }
    }
    Some(page)
}

/// The state an account was in when a window began at `start`: the first change in it says
/// where it came from; with none, it was in the state it is in now.
fn start_state(transitions: &[Transition], start: UnixTime, stored: Day) -> Day {
    transitions
        .iter()
        .find(|t| t.at > start)
        .map_or(stored, |t| timeline::day_of(t.from_health, false))
}

/// An account's line: its cells and availability over 90 days, from its transitions of
/// the window. `stored` is its stored health (the transitions' last word); `a` is as read now.
fn line(a: Account, stored: Health, transitions: &[Transition], now: UnixTime) -> Line {
    let window = now - DAYS as i64 * 86_400;
    let stored = timeline::day_of(stored, a.state.needs_reconnect);
    let start = start_state(transitions, window, stored);
    let current = timeline::day_of(a.state.health, a.state.needs_reconnect);
    let cells = timeline::daily(DAYS, now, a.connected_at, start, transitions, current);
    let from = window.max(a.connected_at);
    let at_start = transitions.iter().rev().find(|t| t.at <= from).map_or_else(
        || start_state(transitions, from, stored),
        |t| timeline::day_of(t.to_health, false),
    );
    let availability = timeline::availability(DAYS as i64, now, a.connected_at, health_of(at_start), transitions);
    Line {
        account: a,
        cells,
        availability,
        reconnect_url: None,
    }
}

/// The health a cell state stands for (for availability: only healthy or not matters).
fn health_of(d: Day) -> Health {
    match d {
        Day::Before | Day::NoData => Health::Unknown,
        Day::Healthy => Health::Healthy,
        Day::Warning => Health::Warning,
        Day::Incident => Health::Unhealthy,
    }
}

/// Lines for `accounts` (as stored), read now, with their transitions of the last 90 days.
async fn lines(state: &ApiState, accounts: Vec<Account>, now: UnixTime) -> Result<Vec<Line>, ApiError> {
    let refs: Vec<_> = accounts.iter().map(|a| a.id).collect();
    let since = now - DAYS as i64 * 86_400;
    let mut by_account: std::collections::HashMap<_, Vec<Transition>> = std::collections::HashMap::new();
    for (r, t) in state.store.transitions_of(&refs, since).await? {
        by_account.entry(r).or_default().push(t);
    }
    let stale_after = state.config().health.stale_after.secs();
    Ok(accounts
        .into_iter()
        .map(|a| {
            let ts = by_account.remove(&a.id).unwrap_or_default();
            let stored = a.state.health;
            line(crate::health::read_view(a, now, stale_after), stored, &ts, now)
        })
        .collect())
}

/// The daemon's problems a workspace should know of: the platforms' (the daemon's own
/// configuration) and its own alerts' (waiting for a recipient or for the hourly cap).
fn problems_for(state: &ApiState, workspace: &str) -> Vec<String> {
    let mut out = state.problems.platform_problems();
    out.extend(
        state
            .problems
            .notes_for(&[&format!("email:{workspace}"), &format!("email-cap:{workspace}")]),
    );
    out
}

async fn build_workspace(
    state: &ApiState,
    ws: WorkspaceId,
    token: &str,
    page: i64,
    generation: i64,
    now: UnixTime,
) -> Result<Result<Cached, Response>, ApiError> {
    let stale_after = state.config().health.stale_after.secs();
    let stale_before = now - stale_after;
    let overview = state.store.status_overview(ws, stale_before).await?;
    let total: i64 = overview.counts.iter().map(|(_, n)| n).sum();
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    if page > pages {
        return Ok(Err(message(
            StatusCode::NOT_FOUND,
            "No such page",
            &format!("This workspace's accounts fill {pages} page(s)."),
        )));
    }
    let accounts = state
        .store
        .status_accounts(ws, stale_before, (page - 1) * PER_PAGE, PER_PAGE)
        .await?;
    let lines = lines(state, accounts, now).await?;
    let mut people = Vec::new();
    if page == 1 && overview.needs_person > 0 {
        let first = state
            .store
            .status_accounts(ws, stale_before, 0, overview.needs_person.min(PEOPLE))
            .await?;
        for a in first {
            let a = crate::health::read_view(a, now, stale_after);
            let reconnect_url = if a.state.needs_reconnect {
                crate::connect::alert_link(&state.connector, ws, a.platform, &a.account_id).await
            } else {
                None
            };
            people.push(Line {
                cells: Vec::new(),
                availability: timeline::availability(0, now, now, Health::Unknown, &[]),
                reconnect_url,
                account: a,
            });
        }
    }
    let problems = problems_for(state, &overview.name);
    let html = status_html::workspace(&WorkspacePage {
        overview: &overview,
        people: &people,
        lines: &lines,
        page,
        pages,
        per_page: PER_PAGE,
        problems: &problems,
        token,
        now,
    });
    Ok(Ok(Cached::new(
        generation,
        Some(valid_until(now, overview.next_stale_at, stale_after)),
        vec![html.into()],
    )
    .with_content_type("text/html; charset=utf-8")))
}

/// A workspace's status page.
#[utoipa::path(get, path = "/status/{token}", tag = "status", operation_id = "workspace_status_page",
    params(("token" = String, Path), ("page" = Option<i64>, Query, description = "1-based page of 100 accounts")),
    security(()),
    responses((status = 200, description = "The workspace's status page (HTML)", content_type = "text/html"),
              (status = 304, description = "Unchanged since the ETag given"),
              (status = 404, description = "No such share link (unknown or revoked), or no such page")))]
pub async fn workspace(
    State(state): State<ApiState>,
    ApiPath(token): ApiPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(page) = page_of(query.as_deref()) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Not a page",
            "This page takes one query parameter, page, a whole number from 1.",
        );
    };
    let (ws, generation, hash) = match opened(&state, &token).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let now = state.clock.now();
    // The token is in the page's links: one entry per link (by its hash), never the token.
    let key = format!("status|{ws}|{}|{page}", &hash[..16]);
    let mut refused = None;
    let built = state
        .list_cache
        .get_or_build(ws.0, key, generation, now, || async {
            match build_workspace(&state, ws, &token, page, generation, now).await? {
                Ok(c) => Ok(c),
                Err(r) => {
                    refused = Some(r);
                    Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such page"))
                }
            }
        })
        .await;
    match (built, refused) {
        (Ok(c), _) => respond(&c, &headers),
        (Err(_), Some(r)) => r,
        (Err(e), None) => failed(e),
    }
}

/// One account's status page.
#[utoipa::path(get, path = "/status/{token}/{platform}/{accountId}", tag = "status", operation_id = "account_status_page",
    params(("token" = String, Path), ("platform" = String, Path), ("accountId" = String, Path)),
    security(()),
    responses((status = 200, description = "The account's status page (HTML)", content_type = "text/html"),
              (status = 304, description = "Unchanged since the ETag given"),
              (status = 404, description = "No such share link, or no such account in its workspace")))]
pub async fn account(
    State(state): State<ApiState>,
    ApiPath((token, platform, account_id)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let (ws, generation, hash) = match opened(&state, &token).await {
        Ok(o) => o,
        Err(r) => return r,
    };
    let missing = || {
        message(
            StatusCode::NOT_FOUND,
            "No such account",
            "This workspace has no such account; it may have been disconnected.",
        )
    };
    let Ok(platform) = platform.parse::<Platform>() else {
        return missing();
    };
    let Ok(id) = AccountId::parse(platform, &account_id) else {
        return missing();
    };
    let now = state.clock.now();
    let key = format!("status|{ws}|{}|{platform}|{id}", &hash[..16]);
    let mut absent = false;
    let built = state
        .list_cache
        .get_or_build(ws.0, key, generation, now, || async {
            let Some(a) = state.store.get_account(ws, platform, &id).await? else {
                absent = true;
                return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such account"));
            };
            build_account(&state, a, &token, generation, now).await
        })
        .await;
    match built {
        Ok(c) => respond(&c, &headers),
        Err(_) if absent => missing(),
        Err(e) => failed(e),
    }
}

/// Checks of the last day shown at most.
const CHECKS_SHOWN: i64 = 200;

async fn build_account(
    state: &ApiState,
    a: Account,
    token: &str,
    generation: i64,
    now: UnixTime,
) -> Result<Cached, ApiError> {
    let stale_after = state.config().health.stale_after.secs();
    let window = now - DAYS as i64 * 86_400;
    let transitions = state.store.transitions(a.id, window).await?;
    let stored = timeline::day_of(a.state.health, a.state.needs_reconnect);
    let a = crate::health::read_view(a, now, stale_after);
    let from = window.max(a.connected_at);
    let spans = timeline::spans(from, now, start_state(&transitions, from, stored), &transitions);
    let before = state
        .store
        .health_before(a.id, window)
        .await?
        .unwrap_or(Health::Unknown);
    let availability = super::timeline::windows(now, a.connected_at, before, &transitions);
    let mut checks = state.store.history(a.id, CHECKS_SHOWN).await?;
    checks.retain(|c| c.at > now - 86_400);
    let row = state.store.reconnect_rows(Some(a.id)).await?.into_iter().next();
    let reconnect_by = row.and_then(|r| {
        crate::health::reconnect_deadline(
            crate::checks::renewed(
                &state.checker,
                r.platform,
                r.instagram_login,
                r.has_refresh_token,
                r.custody,
            ),
            r.token_expires_at,
            r.refresh_expires_at,
            r.data_access_expires_at,
            r.refresh_failing,
        )
    });
    let reconnect_url = if a.state.needs_reconnect {
        crate::connect::alert_link(&state.connector, a.workspace_id, a.platform, &a.account_id).await
    } else {
        None
    };
    let next_stale = a.last_success_at.filter(|_| a.state.health != Health::Unknown);
    let html = status_html::account(&AccountPage {
        account: &a,
        spans: &spans,
        incidents: &timeline::incidents(&transitions),
        availability: &availability,
        checks: &checks,
        reconnect_by,
        reconnect_url,
        token,
        now,
    });
    Ok(Cached::new(
        generation,
        Some(valid_until(now, next_stale, stale_after)),
        vec![html.into()],
    )
    .with_content_type("text/html; charset=utf-8"))
}

/// The operator's page on the metrics listener: every workspace's counts and the daemon's
/// problems in full.
pub async fn operator(State(state): State<ApiState>) -> Response {
    let now = state.clock.now();
    let stale_before = now - state.config().health.stale_after.secs();
    match state.store.workspace_counts(stale_before).await {
        Ok(rows) => {
            let mut r = (StatusCode::OK, operator_html(&rows, &state.problems.list(), now)).into_response();
            html::page_headers(&mut r);
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => failed(e),
    }
}

/// The operator's page: every workspace's counts.
fn operator_html(rows: &[crate::store::WorkspaceCounts], problems: &[String], now: UnixTime) -> String {
    let total: i64 = rows.iter().map(|r| r.total).sum();
    let bad: i64 = rows.iter().map(|r| r.unhealthy.max(r.needs_person)).sum();
    let (title, class) = if bad > 0 {
        (format!("{bad} accounts need attention"), "bad")
    } else {
        (format!("{total} accounts in {} workspaces", rows.len()), "ok")
    };
    let mut body = String::from("<h2>socialsyncer itself</h2>");
    if problems.is_empty() {
        body.push_str("<p class=\"healthy\">No problems.</p>");
    } else {
        body.push_str("<ul>");
        for p in problems {
            let _ = write!(body, "<li class=\"warning\">{}</li>", html::esc(p));
        }
        body.push_str("</ul>");
    }
    body.push_str(
        "<h2>Workspaces</h2><table class=\"workspaces\"><thead><tr><th>Workspace</th><th>Accounts</th>\
         <th>Healthy</th><th>Warning</th><th>Unhealthy</th><th>Unknown</th><th>Need a person</th><th>Last check</th>\
         </tr></thead><tbody>",
    );
    for r in rows {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"healthy\">{}</td><td class=\"warning\">{}</td>\
             <td class=\"unhealthy\">{}</td><td class=\"unknown\">{}</td><td class=\"person\">{}</td><td>{}</td></tr>",
            html::esc(&r.name),
            r.total,
            r.healthy,
            r.warning,
            r.unhealthy,
            r.unknown,
            r.needs_person,
            r.last_checked_at.map_or_else(|| "none yet".into(), status_html::when)
        );
    }
    let _ = write!(
        body,
        "</tbody></table><p class=\"muted\"><small>As of {}.</small></p>",
        status_html::when(now)
    );
    html::html_page(&title, class, "wide", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_query_takes_only_a_page_number() {
        assert_eq!(page_of(None), Some(1));
        assert_eq!(page_of(Some("page=3")), Some(3));
        for bad in ["page=0", "page=x", "page=-1", "limit=5", "page"] {
            assert!(page_of(Some(bad)).is_none(), "{bad}");
        }
    }
}
