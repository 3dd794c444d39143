//! A workspace's events, newest first: its accounts' health transitions and the alert events
//! raised for them (the `GET /v1/events` feed).

use super::*;

/// One event as read: a transition (`source` 1) or an alert event (`source` 0); the columns
/// of the other kind are null.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    /// 1: a health transition; 0: an alert event.
    pub source: i64,
    /// Its row in its table.
    pub id: i64,
    /// When it happened.
    pub at: UnixTime,
    /// Platform.
    pub platform: Platform,
    /// Account ID.
    pub account_id: String,
    /// Display name.
    pub username: String,
    /// Transition: the health before.
    pub from_health: Option<String>,
    /// Transition: the health after; alert: its severity.
    pub health: String,
    /// Transition: whether a person must act after it.
    pub needs_person: Option<bool>,
    /// Transition: what caused it; alert: the problem.
    pub detail: String,
    /// Alert: its kind.
    pub kind: Option<String>,
    /// Alert: what to do.
    pub action: Option<String>,
    /// Alert: its stable key (the webhook event's `id`).
    pub dedup_key: Option<String>,
    /// Alert: when it was delivered, once it was.
    pub sent_at: Option<UnixTime>,
}

/// Which events a page shows.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// None older than this.
    pub since: Option<UnixTime>,
    /// Only this platform.
    pub platform: Option<Platform>,
    /// Only this account ID.
    pub account_id: Option<String>,
}

impl Store {
    /// A page of `workspace_id`'s events, newest first, after `before` (the `(at, source,
    /// id)` of the last one seen), at most `limit`.
    pub async fn events_page(
        &self,
        workspace_id: WorkspaceId,
        f: &EventFilter,
        before: Option<(UnixTime, i64, i64)>,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new(
                "SELECT * FROM (SELECT CAST(1 AS BIGINT) AS source, t.id, t.at, a.platform, a.account_id, a.username, \
                 t.from_health, t.to_health AS health, t.needs_person, t.reason AS detail, \
                 CAST(NULL AS TEXT) AS kind, CAST(NULL AS TEXT) AS action, CAST(NULL AS TEXT) AS dedup_key, \
                 CAST(NULL AS BIGINT) AS sent_at \
                 FROM health_transitions t JOIN accounts a ON a.id = t.account_ref WHERE t.workspace_id = ",
            );
            q.push_bind(workspace_id);
            q.push(
                " UNION ALL SELECT CAST(0 AS BIGINT), o.id, o.created_at, o.platform, o.account_id, o.username, \
                 CAST(NULL AS TEXT), o.severity, CAST(NULL AS BOOLEAN), o.problem, o.kind, o.action, o.dedup_key, \
                 o.sent_at FROM alert_outbox o WHERE o.workspace_id = ",
            );
            q.push_bind(workspace_id);
            q.push(") e WHERE 1 = 1");
            if let Some(s) = f.since {
                q.push(" AND e.at >= ").push_bind(s);
            }
            if let Some(p) = f.platform {
                q.push(" AND e.platform = ").push_bind(p.as_str());
            }
            if let Some(id) = &f.account_id {
                q.push(" AND e.account_id = ").push_bind(id.clone());
            }
            if let Some((at, source, id)) = before {
                q.push(" AND (e.at < ")
                    .push_bind(at)
                    .push(" OR (e.at = ")
                    .push_bind(at)
                    .push(" AND (e.source < ")
                    .push_bind(source)
                    .push(" OR (e.source = ")
                    .push_bind(source)
                    .push(" AND e.id < ")
                    .push_bind(id)
                    .push("))))");
            }
            q.push(" ORDER BY e.at DESC, e.source DESC, e.id DESC LIMIT ")
                .push_bind(limit);
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }
}
