//! `bench scale`'s history figures (issue 27): `days` simulated days of checks (one per
//! account every `health.check_interval`) and transitions (a change a week per account) for
//! every account of the database, their size on disk, then the pruning of the day that has
//! just passed the retention, with a writer beside it whose longest wait is measured.

use std::path::Path;

use super::*;

/// Fills the history of every account in the SQLite file `db` and prunes a day of it.
pub(super) async fn history(db: &Path, days: u32) -> anyhow::Result<()> {
    let defaults = Config::default();
    let interval = defaults.health.check_interval.secs().max(1);
    let retention = defaults.health.history_retention.secs();
    let url = format!("sqlite://{}", db.display());
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(
            // Filling a day is a statement of N rows: not a slow statement to warn about.
            sqlx::ConnectOptions::disable_statement_logging(
                url.parse::<sqlx::sqlite::SqliteConnectOptions>()?
                    .busy_timeout(Duration::from_secs(30)),
            ),
        )
        .await?;
    let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(accounts > 0, "no accounts to give a history");
    let size = |pool: sqlx::SqlitePool| async move {
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await?;
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&pool).await?;
        let free: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(&pool).await?;
        let page: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&pool).await?;
        anyhow::Ok((pages - free) * page)
    };

    // The simulated days end now: day 0 began `days` days ago.
    let now = domain::now();
    let start = now - i64::from(days) * 86_400;
    let empty = size(pool.clone()).await?;
    let filled = Instant::now();
    let mut at = start;
    let mut day = 0;
    while at < now {
        // One check of every account in this interval, spread over it by account.
        sqlx::query(
            "INSERT INTO health_history (account_ref, at, event, outcome, health, changed) \
             SELECT id, $1 + (id % $2), 'check', 'ok', 'healthy', FALSE FROM accounts",
        )
        .bind(at)
        .bind(interval)
        .execute(&pool)
        .await?;
        at += interval;
        if (at - start) / 86_400 >= day + 5 {
            day = (at - start) / 86_400;
            eprintln!(
                "  history: day {day} of {days} written ({:.0} s)",
                filled.elapsed().as_secs_f64()
            );
        }
    }
    let with_history = size(pool.clone()).await?;
    let history_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM health_history")
        .fetch_one(&pool)
        .await?;
    let mut week = start;
    let mut healthy = true;
    while week < now {
        let (from, to) = if healthy {
            ("healthy", "warning")
        } else {
            ("warning", "healthy")
        };
        sqlx::query(
            "INSERT INTO health_transitions (account_ref, workspace_id, at, from_health, to_health, needs_person, reason) \
             SELECT id, workspace_id, $1 + (id % 604800), $2, $3, FALSE, 'The token expires in 6 days.' FROM accounts",
        )
        .bind(week)
        .bind(from)
        .bind(to)
        .execute(&pool)
        .await?;
        week += 7 * 86_400;
        healthy = !healthy;
    }
    let with_transitions = size(pool.clone()).await?;
    let transition_rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM health_transitions")
        .fetch_one(&pool)
        .await?;
    let fill_time = filled.elapsed();

    // A day later on the clock, the first day of checks is past `health.history_retention`:
    // what the next sweep prunes, with a writer measured beside it.
    let cutoff = now + 86_400 - retention;
    let store = crate::store::Store::open_sqlite(db, Duration::from_secs(30), 8).await?;
    let done = tokio_util::sync::CancellationToken::new();
    let probe = {
        let (pool, done) = (pool.clone(), done.clone());
        tokio::spawn(async move {
            let (mut writes, mut longest) = (0u64, Duration::ZERO);
            while !done.is_cancelled() {
                let t = Instant::now();
                sqlx::query("UPDATE workspace_generations SET generation = generation + 1 WHERE workspace_id = (SELECT MIN(workspace_id) FROM workspace_generations)")
                    .execute(&pool)
                    .await?;
                longest = longest.max(t.elapsed());
                writes += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            anyhow::Ok((writes, longest))
        })
    };
    let t = Instant::now();
    let mut pruned = store.prune_history(cutoff).await?;
    pruned += store
        .prune_transitions(now + 86_400 - defaults.health.transitions_retention.secs())
        .await?;
    let prune_time = t.elapsed();
    done.cancel();
    let (writes, longest_wait) = probe.await??;
    store.close().await;
    pool.close().await;

    let n = accounts as f64;
    let mib = |b: i64| b as f64 / (1024.0 * 1024.0);
    out!(
        "  history             {days} simulated days, a check every {} h and a change a week per account, written in {:.0} s",
        interval / 3_600,
        fill_time.as_secs_f64()
    );
    out!(
        "    checks            {history_rows} rows, {:.1} MiB ({:.0} bytes a row with its indexes, {:.1} KiB an account)",
        mib(with_history - empty),
        (with_history - empty) as f64 / history_rows.max(1) as f64,
        (with_history - empty) as f64 / n / 1024.0
    );
    out!(
        "    transitions       {transition_rows} rows, {:.1} MiB ({:.0} bytes a row)",
        mib(with_transitions - with_history),
        (with_transitions - with_history) as f64 / transition_rows.max(1) as f64
    );
    out!(
        "    pruning a day     {} rows in {:.2} s, {} statements, the longest held the writer {:.1} ms \
         (goal 100 ms: {:.2}x); a writer beside it: {writes} writes, the longest waited {:.1} ms ({:.2}x)",
        pruned.rows,
        prune_time.as_secs_f64(),
        pruned.statements,
        pruned.longest_hold.as_secs_f64() * 1e3,
        pruned.longest_hold.as_secs_f64() * 1e3 / 100.0,
        longest_wait.as_secs_f64() * 1e3,
        longest_wait.as_secs_f64() * 1e3 / 100.0
    );
    Ok(())
}
