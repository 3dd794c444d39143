//! What the status pages read: a share link with its workspace's generation (one query per
//! cached page), a workspace's overview, its accounts worst first, their transitions, and
//! every workspace's counts for the operator's page.

use super::*;
use crate::health::timeline::Transition;

/// A workspace's figures for the top of its status page.
#[derive(Debug, Clone, Default)]
pub struct StatusOverview {
    /// The workspace's name.
    pub name: String,
    /// Accounts by health, as read now.
    pub counts: Vec<(Health, i64)>,
    /// Accounts that need a person: a reconnect, or unhealthy.
    pub needs_person: i64,
    /// The last check of any of its accounts.
    pub last_checked_at: Option<UnixTime>,
    /// The next check due among them.
    pub next_check_at: Option<UnixTime>,
    /// The first moment one of its answering accounts turns stale (time alone changes the page).
    pub next_stale_at: Option<UnixTime>,
}

/// One workspace's counts on the operator's page.
#[derive(Debug, Clone, FromRow)]
pub struct WorkspaceCounts {
    /// The workspace's name.
    pub name: String,
    /// Accounts.
    pub total: i64,
    /// Healthy, as read now.
    pub healthy: i64,
    /// Warning.
    pub warning: i64,
    /// Unhealthy.
    pub unhealthy: i64,
    /// Unknown (never answered, or stale).
    pub unknown: i64,
    /// Needing a person (a reconnect).
    pub needs_person: i64,
    /// The last check of any of its accounts.
    pub last_checked_at: Option<UnixTime>,
}

#[derive(FromRow)]
struct TransitionOf {
    account_ref: AccountRef,
    #[sqlx(flatten)]
    transition: Transition,
}

/// Pushes the rank a status page lists an account by: a reconnect first, then unhealthy,
/// warning, unknown, healthy.
fn push_rank<DB: Database>(q: &mut QueryBuilder<DB>, stale_before: UnixTime)
where
    for<'t> UnixTime: Encode<'t, DB> + Type<DB>,
{
    q.push("CASE WHEN h.needs_reconnect THEN 0 ELSE (CASE ");
    push_read_health(q, stale_before);
    q.push(" WHEN 'unhealthy' THEN 1 WHEN 'warning' THEN 2 WHEN 'unknown' THEN 3 ELSE 4 END) END");
}

impl Store {
    /// The workspace an active share link with this hash shows, and that workspace's
    /// generation: what a cached page needs, in one query.
    pub async fn status_link_generation(&self, hash: &str) -> Result<Option<(WorkspaceId, i64)>, StoreError> {
        with_db!(self, |pool| {
            Ok(sqlx::query_as(
                "SELECT l.workspace_id, COALESCE(g.generation, 0) FROM status_links l \
                 LEFT JOIN workspace_generations g ON g.workspace_id = l.workspace_id \
                 WHERE l.hash = $1 AND l.revoked_at IS NULL",
            )
            .bind(hash)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// A workspace's overview, its health read as of `stale_before`.
    pub async fn status_overview(
        &self,
        workspace_id: WorkspaceId,
        stale_before: UnixTime,
    ) -> Result<StatusOverview, StoreError> {
        let filter = ListFilter {
            workspace_id,
            platform: None,
            health: None,
            stale_before,
        };
        let counts = self.health_summary(&filter).await?;
        let next_stale_at = self.next_stale_at(&filter).await?;
        let name = self.workspace_name(workspace_id).await?.unwrap_or_default();
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new("SELECT COALESCE(SUM(CASE WHEN ");
            push_rank(&mut q, stale_before);
            q.push(
                " <= 1 THEN 1 ELSE 0 END), 0), MAX(h.last_checked_at), MIN(h.next_check_at) \
                 FROM accounts a JOIN account_health h ON h.account_ref = a.id WHERE a.workspace_id = ",
            );
            q.push_bind(workspace_id);
            let (needs_person, last_checked_at, next_check_at): (i64, Option<i64>, Option<i64>) =
                q.build_query_as().fetch_one(pool).await?;
            Ok(StatusOverview {
                name,
                counts,
                needs_person,
                last_checked_at,
                next_check_at,
                next_stale_at,
            })
        })
    }

    /// `limit` of a workspace's accounts after the first `offset`, worst first (a reconnect,
    /// unhealthy, warning, unknown, healthy), then by platform and name.
    pub async fn status_accounts(
        &self,
        workspace_id: WorkspaceId,
        stale_before: UnixTime,
        offset: i64,
        limit: i64,
    ) -> Result<Vec<Account>, StoreError> {
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new(
                "SELECT a.id FROM accounts a JOIN account_health h ON h.account_ref = a.id WHERE a.workspace_id = ",
            );
            q.push_bind(workspace_id).push(" ORDER BY ");
            push_rank(&mut q, stale_before);
            q.push(", a.platform, a.username, a.id LIMIT ")
                .push_bind(limit)
                .push(" OFFSET ")
                .push_bind(offset);
            let ids: Vec<i64> = q.build_query_scalar().fetch_all(pool).await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut q = QueryBuilder::<Db>::new(ACCOUNT_SELECT);
            q.push(" WHERE a.id IN (");
            let mut list = q.separated(", ");
            for id in &ids {
                list.push_bind(*id);
            }
            q.push(")");
            let rows: Vec<AccountRow> = q.build_query_as().fetch_all(pool).await?;
            let mut accounts: Vec<Account> = rows.into_iter().map(Account::from).collect();
            accounts.sort_by_key(|a| ids.iter().position(|id| *id == a.id.0));
            Ok(accounts)
        })
    }

    /// The transitions of `accounts` at or after `since`, oldest first, with their account.
    pub async fn transitions_of(
        &self,
        accounts: &[AccountRef],
        since: UnixTime,
    ) -> Result<Vec<(AccountRef, Transition)>, StoreError> {
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new(
                "SELECT account_ref, at, from_health, to_health, needs_person, reason FROM health_transitions \
                 WHERE at >= ",
            );
            q.push_bind(since).push(" AND account_ref IN (");
            let mut list = q.separated(", ");
            for a in accounts {
                list.push_bind(*a);
            }
            q.push(") ORDER BY account_ref, at, id");
            let rows: Vec<TransitionOf> = q.build_query_as().fetch_all(pool).await?;
            Ok(rows.into_iter().map(|r| (r.account_ref, r.transition)).collect())
        })
    }

    /// Every workspace's counts, health read as of `stale_before`, by name.
    pub async fn workspace_counts(&self, stale_before: UnixTime) -> Result<Vec<WorkspaceCounts>, StoreError> {
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new("SELECT w.name, COUNT(h.account_ref) AS total");
            for (column, value) in [
                ("healthy", "healthy"),
                ("warning", "warning"),
                ("unhealthy", "unhealthy"),
                ("unknown", "unknown"),
            ] {
                q.push(", COALESCE(SUM(CASE WHEN ");
                push_read_health(&mut q, stale_before);
                q.push(format!(" = '{value}' THEN 1 ELSE 0 END), 0) AS {column}"));
            }
            q.push(
                ", COALESCE(SUM(CASE WHEN h.needs_reconnect THEN 1 ELSE 0 END), 0) AS needs_person, \
                 MAX(h.last_checked_at) AS last_checked_at FROM workspaces w \
                 LEFT JOIN accounts a ON a.workspace_id = w.id LEFT JOIN account_health h ON h.account_ref = a.id \
                 GROUP BY w.id, w.name ORDER BY w.name",
            );
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }
}
