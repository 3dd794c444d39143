//! The two lists, `GET /v1/accounts` and `GET /v1/accounts/health`: keyset pages or every
//! account, each answer built once per change of its workspace and cached (see `cache`).

use axum::body::Bytes;
use axum::extract::State;
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiState;
use super::accounts::{AccountHealth, AccountList, AccountSummary, HealthList, HealthSummary};
use super::cache::Cached;
use super::extract::parse_platform;
use super::{ApiError, ApiQuery, Workspace};
use crate::crypto::Sealer;
use crate::domain::Health;
use crate::store::{Account, ListFilter};
use secrecy::{ExposeSecret, SecretString};

/// Query of `GET /v1/accounts`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this platform, e.g. `instagram`.
    pub platform: Option<String>,
    /// Accounts per page, 1 to 1000. Without it every account is returned (streamed).
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Query of `GET /v1/accounts/health`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HealthQuery {
    /// Only this platform.
    pub platform: Option<String>,
    /// Only this health: `healthy`, `warning`, `unhealthy` or `unknown`.
    pub health: Option<String>,
    /// Accounts per page, 1 to 1000. Without it every account is returned (streamed).
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// List connected accounts.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", params(ListQuery),
    security(("api_key" = [])),
    responses((status = 200, body = AccountList),
              (status = 400, description = "Unknown platform", body = super::error::ErrorBody),
              (status = 401, description = "Missing, unknown or revoked key", body = super::error::ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    ws: Workspace,
    headers: axum::http::HeaderMap,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::response::Response, ApiError> {
    let filter = ListFilter {
        workspace_id: ws.0,
        platform: q.platform.as_deref().map(parse_platform).transpose()?,
        health: None,
        stale_before: 0,
    };
    let query = format!("list|{}|{:?}", ws.0, filter.platform);
    let paging = Paging::parse(q.limit, q.cursor.as_deref(), &state.sealer, &query)?;
    let key = format!("{query}|{}", paging.key());
    let generation = state.store.generation(ws.0).await?;
    let now = state.clock.now();
    let cached = state
        .list_cache
        .get_or_build(ws.0.0, key, generation, now, || async {
            let body = match paging {
                Paging::Page { limit, after } => {
                    let (rows, next_cursor) = page(&state, &filter, &query, after, limit).await?;
                    vec![
                        serde_json::to_vec(&AccountList {
                            accounts: rows.iter().map(AccountSummary::from).collect(),
                            next_cursor,
                        })
                        .map_err(ApiError::internal)?
                        .into(),
                    ]
                }
                Paging::All => {
                    collect_list(&state, &filter, |a| serde_json::to_vec(&AccountSummary::from(&a)), b"}").await?
                }
            };
            // Nothing in this list changes with time alone.
            Ok::<_, ApiError>(Cached::new(generation, None, body))
        })
        .await?;
    Ok(cached.respond(&headers))
}

/// `limit` and `cursor` of a list.
enum Paging {
    /// One page of `limit` after the account with ID `after`.
    Page { limit: i64, after: Option<i64> },
    /// Everything, streamed.
    All,
}

impl Paging {
    /// The part of a cache key that this paging makes.
    fn key(&self) -> String {
        match self {
            Paging::Page { limit, after } => format!("{limit}@{after:?}"),
            Paging::All => "all".into(),
        }
    }

    /// `query` names the route, the workspace and the filter: a cursor is valid only for the
    /// query it was given for.
    fn parse(limit: Option<i64>, cursor: Option<&str>, sealer: &Sealer, query: &str) -> Result<Paging, ApiError> {
        let after = cursor.map(|c| decode_cursor(sealer, query, c)).transpose()?;
        match limit {
            Some(l) if !(1..=1000).contains(&l) => Err(ApiError::bad_request(
                "invalid_limit",
                format!("limit must be between 1 and 1000, not {l}"),
            )),
            Some(limit) => Ok(Paging::Page { limit, after }),
            None if after.is_some() => Ok(Paging::Page { limit: 1000, after }),
            None => Ok(Paging::All),
        }
    }
}

/// A cursor names the last account of a page, sealed (AES-GCM under the daemon's token key)
/// and bound to the query it continues: opaque (no row ID shows) and authenticated (a
/// cursor this API did not give, or gave for another workspace or filter, does not open).
pub(super) fn encode_cursor(sealer: &Sealer, query: &str, id: i64) -> String {
    encode_position(sealer, query, &id.to_string())
}

/// As [`encode_cursor`], for a position that is more than a row ID (the events feed's).
pub(super) fn encode_position(sealer: &Sealer, query: &str, position: &str) -> String {
    use base64::Engine;
    let sealed = sealer.seal(&cursor_context(query), &SecretString::from(position.to_owned()));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
}

fn cursor_context(query: &str) -> String {
    format!("cursor|{query}")
}

/// Longest cursor taken (the ones given are about 60 characters).
const MAX_CURSOR: usize = 128;

pub(super) fn decode_cursor(sealer: &Sealer, query: &str, c: &str) -> Result<i64, ApiError> {
    decode_position(sealer, query, c)?.parse().map_err(|_| invalid_cursor())
}

fn invalid_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        "cursor is not a nextCursor this API gave for this query; start again without it",
    )
}

/// As [`decode_cursor`], for a position that is more than a row ID.
pub(super) fn decode_position(sealer: &Sealer, query: &str, c: &str) -> Result<String, ApiError> {
    use base64::Engine;
    let c = c.trim();
    (c.len() <= MAX_CURSOR)
        .then(|| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok())
        .flatten()
        .and_then(|b| sealer.open(&cursor_context(query), &b).ok())
        .map(|s| s.expose_secret().to_owned())
        .ok_or_else(invalid_cursor)
}

/// One page (`limit` rows after `after`) and the cursor of the next, if there is one.
async fn page(
    state: &ApiState,
    filter: &ListFilter,
    query: &str,
    after: Option<i64>,
    limit: i64,
) -> Result<(Vec<Account>, Option<String>), ApiError> {
    let mut rows = state.store.list_page(filter, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|a| encode_cursor(&state.sealer, query, a.id.0))
    } else {
        None
    };
    let (now, stale_after) = (state.clock.now(), state.config().health.stale_after.secs());
    Ok((
        rows.into_iter()
            .map(|a| crate::health::read_view(a, now, stale_after))
            .collect(),
        next,
    ))
}

/// Accounts read per step of a full list: what a build holds besides the body.
const LIST_STEP: i64 = 500;

/// A full list, read page by page, in one piece a page: `{"accounts":[` ... `]` then
/// `trailer` (which closes the object). `entry` serializes one account (as read now).
async fn collect_list(
    state: &ApiState,
    filter: &ListFilter,
    entry: impl Fn(Account) -> serde_json::Result<Vec<u8>>,
    trailer: &[u8],
) -> Result<Vec<Bytes>, ApiError> {
    let (now, stale_after) = (state.clock.now(), state.config().health.stale_after.secs());
    let mut pieces = Vec::new();
    let mut piece = b"{\"accounts\":[".to_vec();
    let mut after = None;
    let mut first = true;
    loop {
        let rows = state.store.list_page(filter, after, LIST_STEP).await?;
        let full = rows.len() as i64 == LIST_STEP;
        after = rows.last().map(|a| a.id.0);
        for a in rows {
            if !first {
                piece.push(b',');
            }
            first = false;
            piece.extend_from_slice(&entry(crate::health::read_view(a, now, stale_after)).map_err(ApiError::internal)?);
        }
        if !full {
            break;
        }
        pieces.push(Bytes::from(std::mem::take(&mut piece)));
    }
    piece.push(b']');
    piece.extend_from_slice(trailer);
    pieces.push(Bytes::from(piece));
    Ok(pieces)
}

/// Health of the connected accounts, with counts.
#[utoipa::path(get, path = "/v1/accounts/health", tag = "accounts", params(HealthQuery),
    security(("api_key" = [])),
    responses((status = 200, body = HealthList),
              (status = 400, description = "Unknown platform or health", body = super::error::ErrorBody),
              (status = 401, body = super::error::ErrorBody)))]
pub async fn health(
    State(state): State<ApiState>,
    ws: Workspace,
    headers: axum::http::HeaderMap,
    ApiQuery(q): ApiQuery<HealthQuery>,
) -> Result<axum::response::Response, ApiError> {
    let health = q
        .health
        .as_deref()
        .map(|h| {
            h.parse::<Health>()
                .map_err(|e| ApiError::bad_request("unknown_health", e.to_string()))
        })
        .transpose()?;
    let now = state.clock.now();
    let stale_after = state.config().health.stale_after.secs();
    let filter = ListFilter {
        workspace_id: ws.0,
        platform: q.platform.as_deref().map(parse_platform).transpose()?,
        health,
        stale_before: now - stale_after,
    };
    let query = format!("health|{}|{:?}|{:?}", ws.0, filter.platform, filter.health);
    let paging = Paging::parse(q.limit, q.cursor.as_deref(), &state.sealer, &query)?;
    let key = format!("{query}|{}|{stale_after}", paging.key());
    let generation = state.store.generation(ws.0).await?;
    // The counts and the moment the answer turns stale cover the whole filtered set: one
    // count per change, not one per page of a walk through the list.
    let (summary, valid_until) = {
        let key = format!(
            "summary|{}|{:?}|{:?}|{stale_after}",
            ws.0, filter.platform, filter.health
        );
        let cached = state
            .list_cache
            .get_or_build(ws.0.0, key, generation, now, || async {
                let summary = count(&state, &filter).await?;
                // Valid until the first of the workspace's answering accounts turns stale.
                let valid_until = state
                    .store
                    .next_stale_at(&filter)
                    .await?
                    .map(|t| t.saturating_add(stale_after).saturating_add(1));
                let json = serde_json::to_vec(&(&summary, valid_until)).map_err(ApiError::internal)?;
                Ok::<_, ApiError>(Cached::new(generation, valid_until, vec![json.into()]))
            })
            .await?;
        serde_json::from_slice::<(HealthSummary, Option<i64>)>(&cached.body_bytes()).map_err(ApiError::internal)?
    };
    let cached = state
        .list_cache
        .get_or_build(ws.0.0, key, generation, now, || async {
            let body = match paging {
                Paging::Page { limit, after } => {
                    let (rows, next_cursor) = page(&state, &filter, &query, after, limit).await?;
                    vec![
                        serde_json::to_vec(&HealthList {
                            accounts: rows.iter().map(AccountHealth::from).collect(),
                            summary,
                            next_cursor,
                        })
                        .map_err(ApiError::internal)?
                        .into(),
                    ]
                }
                Paging::All => {
                    let mut trailer = b",\"summary\":".to_vec();
                    trailer.extend_from_slice(&serde_json::to_vec(&summary).map_err(ApiError::internal)?);
                    trailer.push(b'}');
                    collect_list(
                        &state,
                        &filter,
                        |a| serde_json::to_vec(&AccountHealth::from(&a)),
                        &trailer,
                    )
                    .await?
                }
            };
            Ok::<_, ApiError>(Cached::new(generation, valid_until, body))
        })
        .await?;
    Ok(cached.respond(&headers))
}

/// How many of the filtered accounts are in each health, as read now.
async fn count(state: &ApiState, filter: &ListFilter) -> Result<HealthSummary, ApiError> {
    let mut summary = HealthSummary::default();
    for (h, n) in state.store.health_summary(filter).await? {
        let n = usize::try_from(n).unwrap_or(0);
        summary.total += n;
        *match h {
            Health::Healthy => &mut summary.healthy,
            Health::Warning => &mut summary.warning,
            Health::Unhealthy => &mut summary.unhealthy,
            Health::Unknown => &mut summary.unknown,
        } += n;
    }
    Ok(summary)
}
