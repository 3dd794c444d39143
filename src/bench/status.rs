//! The status page's part of `bench api` (issue 26): 400 days of transitions for the
//! largest workspace and what they take on disk, the page of that workspace rendered
//! uncached, and served from cache beside nginx serving the same bytes.

use super::load::throughput;
use super::*;
use crate::domain::UnixTime;

/// Days of transitions made, and the days between two changes of one account.
const DAYS: i64 = 400;
const EVERY: i64 = 7;

/// What seeding the transitions measured.
pub(super) struct Seeded {
    pub rows: i64,
    pub bytes: i64,
    pub took: Duration,
}

/// Bytes the SQLite file at `db` holds in use (pages in use times the page size).
async fn used_bytes(pool: &sqlx::SqlitePool) -> anyhow::Result<i64> {
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
    let pages: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(pool).await?;
    let free: i64 = sqlx::query_scalar("PRAGMA freelist_count").fetch_one(pool).await?;
    let size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(pool).await?;
    Ok((pages - free) * size)
}

/// A change every 7 days for 400 days for each account of `workspace` (healthy, warning,
/// healthy, unhealthy needing a person, ... with reasons of the length the checks write),
/// written as the daemon writes them, into the file at `db` (no daemon running).
pub(super) async fn seed_transitions(db: &std::path::Path, workspace: &str, now: UnixTime) -> anyhow::Result<Seeded> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await?;
    let before = used_bytes(&pool).await?;
    let started = Instant::now();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $1) \
         INSERT INTO health_transitions (account_ref, workspace_id, at, from_health, to_health, needs_person, reason) \
         SELECT a.id, a.workspace_id, $2 + n.i * $3 + a.id % 86400, \
         CASE n.i % 4 WHEN 0 THEN 'healthy' WHEN 1 THEN 'warning' WHEN 2 THEN 'healthy' ELSE 'unhealthy' END, \
         CASE n.i % 4 WHEN 0 THEN 'warning' WHEN 1 THEN 'healthy' WHEN 2 THEN 'unhealthy' ELSE 'healthy' END, \
         n.i % 4 = 2, \
         CASE n.i % 4 WHEN 0 THEN 'The token expires in 3 days, on 2026-12-05 17:51 UTC: socialsyncer renews it first.' \
         WHEN 2 THEN 'Token is no longer valid (expired or revoked): reconnect the account.' ELSE '' END \
         FROM accounts a JOIN workspaces w ON w.id = a.workspace_id, n WHERE w.name = $4",
    )
    .bind(DAYS / EVERY)
    .bind(now - DAYS * 86_400)
    .bind(EVERY * 86_400)
    .bind(workspace)
    .execute(&pool)
    .await?;
    let took = started.elapsed();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM health_transitions")
        .fetch_one(&pool)
        .await?;
    let bytes = used_bytes(&pool).await? - before;
    pool.close().await;
    Ok(Seeded { rows, bytes, took })
}

/// What the status page measured.
pub(super) struct Served {
    /// Each uncached render over HTTP (pages 1 to 20, or to the last, each built once), sorted.
    pub uncached: Vec<Duration>,
    /// The body of the first page.
    pub bytes: usize,
    /// Cached requests a second.
    pub cached: f64,
    /// 304s a second (`If-None-Match`).
    pub not_modified: f64,
    /// nginx serving the same bytes, requests a second, when nginx is installed.
    pub nginx: Option<f64>,
}

/// The workspace page behind `token` on `base`: uncached renders, then cached throughput
/// beside nginx (its own process, one worker, as the lists were compared) serving the same bytes from `dir`.
pub(super) async fn serve(
    base: &str,
    token: &str,
    clients: usize,
    duration: Duration,
    dir: &std::path::Path,
) -> anyhow::Result<Served> {
    let http = reqwest::Client::new();
    let url = format!("{base}/status/{token}");
    let mut uncached = Vec::new();
    for page in 1..=20 {
        let started = Instant::now();
        let r = http.get(format!("{url}?page={page}")).send().await?;
        // A workspace of fewer than 20 pages of accounts ends early (past its last page: 404).
        if page > 1 && r.status() == reqwest::StatusCode::NOT_FOUND {
            break;
        }
        anyhow::ensure!(r.status().is_success(), "the status page answered {}", r.status());
        r.bytes().await?;
        uncached.push(started.elapsed());
    }
    uncached.sort();
    let first = http.get(&url).send().await?;
    let etag = first
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("no ETag")?;
    let body = first.bytes().await?;
    let cached = throughput(&url, "", None, clients, duration).await?;
    let not_modified = throughput(&url, "", Some(&etag), clients, duration).await?;
    let nginx = match nginx(dir, &body).await? {
        Some((mut child, port)) => {
            let rate = throughput(
                &format!("http://127.0.0.1:{port}/page.html"),
                "",
                None,
                clients,
                duration,
            )
            .await;
            let _ = child.kill().await;
            Some(rate?)
        }
        None => None,
    };
    Ok(Served {
        uncached,
        bytes: body.len(),
        cached,
        not_modified,
        nginx,
    })
}

/// nginx serving `body` as `/page.html` on a free port, when it is installed.
async fn nginx(dir: &std::path::Path, body: &[u8]) -> anyhow::Result<Option<(tokio::process::Child, u16)>> {
    let Some(bin) = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        return Ok(None);
    };
    let root = dir.join("nginx");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("page.html"), body)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let conf = root.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1; daemon off; pid {r}/nginx.pid; error_log {r}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; sendfile on; keepalive_requests 100000;\n\
             server {{ listen 127.0.0.1:{port}; root {r}; default_type text/html; }} }}\n",
            r = root.display()
        ),
    )?;
    let child = tokio::process::Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "nginx did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Some((child, port)))
}
