//! Counts of accounts by health, as read now: a workspace's (the health list's summary, the
//! status page), the moment its first account turns stale, and the whole database's (the
//! `socialsyncer_accounts` gauge). Each walks the index `account_health_by_workspace`
//! (workspace, platform, stored health, last answer) in its order: no account's row is read
//! and nothing is sorted. At a million accounts a workspace's 10,000 rows lie on as many
//! pages of the table: a count joined through them took 25-33 ms, against 3 ms from the index.

use super::*;

/// One group of accounts that share a platform and a stored health.
#[derive(sqlx::FromRow)]
struct Group {
    platform: Platform,
    health: Health,
    /// Accounts in the group.
    accounts: i64,
    /// Of those, the ones whose last answer is older than `stale_before`: they read `unknown`.
    stale: i64,
    /// The oldest last answer that is not stale yet.
    oldest_fresh: Option<UnixTime>,
}

impl Group {
    /// The group as read now: (health, accounts), and its stale ones as `unknown`.
    fn read(&self) -> [(Health, i64); 2] {
        [(self.health, self.accounts - self.stale), (Health::Unknown, self.stale)]
    }
}

/// The groups (platform, stored health) of a workspace (with `f.platform`, of that
/// platform), or of every workspace, in the index's order: SQLite then counts as it walks
/// the index and sorts nothing (a sort of a million rows held 100 MiB of memory after the
/// daemon's start). `f.health` is not applied here.
fn push_groups<DB: Database>(q: &mut QueryBuilder<DB>, stale_before: UnixTime, f: Option<&ListFilter>)
where
    for<'t> UnixTime: Encode<'t, DB> + Type<DB>,
    for<'t> WorkspaceId: Encode<'t, DB> + Type<DB>,
    for<'t> &'t str: Encode<'t, DB> + Type<DB>,
{
    // The same rule as crate::health::READ_HEALTH_SQL: an answer older than stale_before reads
    // `unknown` (a NULL last answer is never stale).
    q.push("SELECT h.platform, h.health, COUNT(*) AS accounts, COUNT(CASE WHEN h.last_success_at < ")
        .push_bind(stale_before)
        .push(" THEN 1 END) AS stale, MIN(CASE WHEN h.last_success_at >= ")
        .push_bind(stale_before)
        .push(" THEN h.last_success_at END) AS oldest_fresh FROM account_health h");
    match f {
        Some(f) => {
            q.push(" WHERE h.workspace_id = ").push_bind(f.workspace_id);
            if let Some(p) = f.platform {
                q.push(" AND h.platform = ").push_bind(p.as_str());
            }
            q.push(" GROUP BY h.platform, h.health");
        }
        None => {
            q.push(" GROUP BY h.workspace_id, h.platform, h.health");
        }
    }
}

impl Store {
    async fn groups(&self, stale_before: UnixTime, f: Option<&ListFilter>) -> Result<Vec<Group>, StoreError> {
        with_db!(self, |pool| {
            let mut q = QueryBuilder::<Db>::new("");
            push_groups(&mut q, stale_before, f);
            Ok(q.build_query_as().fetch_all(pool).await?)
        })
    }

    /// How many of the filtered accounts are in each health, as read now.
    pub async fn health_summary(&self, f: &ListFilter) -> Result<Vec<(Health, i64)>, StoreError> {
        let mut counts: Vec<(Health, i64)> = Vec::new();
        for g in self.groups(f.stale_before, Some(f)).await? {
            for (h, n) in g.read() {
                if n > 0 && f.health.is_none_or(|only| only == h) {
                    match counts.iter_mut().find(|(c, _)| *c == h) {
                        Some((_, total)) => *total += n,
                        None => counts.push((h, n)),
                    }
                }
            }
        }
        Ok(counts)
    }

    /// The oldest last answer among the accounts of the filter's workspace and platform that
    /// do not read `unknown` yet: the first to turn stale (whatever the health filter, since
    /// an account turning stale joins the `unknown` list).
    pub async fn next_stale_at(&self, f: &ListFilter) -> Result<Option<UnixTime>, StoreError> {
        let groups = self.groups(f.stale_before, Some(f)).await?;
        Ok(groups
            .iter()
            .filter(|g| g.health != Health::Unknown)
            .filter_map(|g| g.oldest_fresh)
            .min())
    }

    /// Accounts by platform and health, for the `socialsyncer_accounts` gauge.
    pub async fn health_counts(&self, stale_before: UnixTime) -> Result<Vec<(Platform, Health, i64)>, StoreError> {
        let mut counts: Vec<(Platform, Health, i64)> = Vec::new();
        for g in self.groups(stale_before, None).await? {
            for (h, n) in g.read() {
                if n > 0 {
                    match counts.iter_mut().find(|(p, c, _)| *p == g.platform && *c == h) {
                        Some((_, _, total)) => *total += n,
                        None => counts.push((g.platform, h, n)),
                    }
                }
            }
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for the statement `push` writes: one line a step.
    async fn plan(pool: &sqlx::SqlitePool, push: impl FnOnce(&mut QueryBuilder<sqlx::Sqlite>)) -> Vec<String> {
        let mut q = QueryBuilder::<sqlx::Sqlite>::new("EXPLAIN QUERY PLAN ");
        push(&mut q);
        let rows: Vec<(i64, i64, i64, String)> = q.build_query_as().fetch_all(pool).await.unwrap();
        rows.into_iter().map(|r| r.3).collect()
    }

    #[tokio::test]
    async fn the_counts_walk_the_workspace_index_and_read_no_row_of_an_account_and_sort_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("c.db"), Duration::from_secs(5), 1)
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let Backend::Sqlite(pool) = &store.backend else {
            unreachable!()
        };
        let mut f = ListFilter {
            workspace_id: WorkspaceId(1),
            platform: None,
            health: Some(Health::Warning),
            stale_before: 100,
        };
        let mut plans = vec![
            plan(pool, |q| push_groups(q, 100, Some(&f))).await,
            plan(pool, |q| push_groups(q, 100, None)).await,
        ];
        f.platform = Some(Platform::Tiktok);
        plans.push(plan(pool, |q| push_groups(q, 100, Some(&f))).await);
        for p in plans {
            let reads: Vec<&String> = p
                .iter()
                .filter(|l| l.starts_with("SCAN") || l.starts_with("SEARCH"))
                .collect();
            assert!(!reads.is_empty(), "{p:?}");
            for l in reads {
                assert!(
                    l.contains("USING COVERING INDEX account_health_by_workspace"),
                    "a count reads more than the index: {p:?}"
                );
            }
            assert!(!p.iter().any(|l| l.contains("TEMP B-TREE")), "a count sorts: {p:?}");
        }
    }
}
