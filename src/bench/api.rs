//! `socialsyncer bench api`: the HTTP API of a daemon in its own process.

use super::daemon::{rss_of, spawn_daemon};
use super::load::throughput;
use super::*;

/// Parameters of the API benchmark.
#[derive(Debug, Clone, Copy)]
pub struct ApiBench {
    /// Accounts per workspace.
    pub accounts: usize,
    /// Workspaces.
    pub workspaces: usize,
    /// Concurrent clients for the throughput runs.
    pub clients: usize,
    /// Length of each throughput run.
    pub duration: Duration,
    /// Leave the daemon serving until Ctrl-C.
    pub keep: bool,
}

/// The build of one workspace's first 1,000 accounts without HTTP, as the handler makes it:
/// the store read, then their serialization as read now. The median of 50 builds and of
/// their reads, and the body's size.
pub(super) async fn build_stages(state: &AppState, workspace: &str) -> anyhow::Result<(Duration, Duration, usize)> {
    let filter = crate::store::ListFilter {
        workspace_id: state.store.workspace_id(workspace).await?.context("no workspace")?,
        platform: None,
        health: None,
        stale_before: domain::now() - state.config().health.stale_after.secs(),
    };
    let (mut reads, mut builds, mut bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..50 {
        let started = Instant::now();
        let rows = state.store.list_page(&filter, None, 1000).await?;
        reads.push(started.elapsed());
        let (now, stale) = (domain::now(), state.config().health.stale_after.secs());
        let views: Vec<_> = rows
            .into_iter()
            .map(|a| crate::api::accounts::AccountHealth::from(&crate::health::read_view(a, now, stale)))
            .collect();
        bytes = serde_json::to_vec(&views)?.len();
        builds.push(started.elapsed());
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    Ok((median(&mut builds), median(&mut reads), bytes))
}

/// What 20 concurrent cold full lists of one workspace did.
pub(super) struct Concurrent {
    /// The highest RSS seen during them, above the RSS before them, in MiB.
    rss_rise: f64,
    /// The slowest answer of a small workspace's list requested meanwhile.
    small_slowest: Duration,
    /// The small workspace's requests answered meanwhile.
    small_requests: usize,
    /// How long the 20 took together.
    took: Duration,
}

/// 20 concurrent full lists of `url` with `key` (none cached yet) while another workspace
/// (`small_key`) reads its own list in a loop; the RSS of the daemon `pid` is sampled every
/// 5 ms.
pub(super) async fn concurrent_lists(url: &str, key: &str, small_key: &str, pid: &str) -> anyhow::Result<Concurrent> {
    let before = rss_of(pid).unwrap_or(0.0);
    let http = reqwest::Client::builder().pool_max_idle_per_host(32).build()?;
    let done = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let (done, pid) = (done.clone(), pid.to_owned());
        tokio::spawn(async move {
            let mut peak = 0f64;
            while !done.is_cancelled() {
                peak = peak.max(rss_of(&pid).unwrap_or(0.0));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak.max(rss_of(&pid).unwrap_or(0.0))
        })
    };
    let small = {
        let (done, http, url, key) = (done.clone(), http.clone(), url.to_owned(), small_key.to_owned());
        tokio::spawn(async move {
            let (mut slowest, mut n) = (Duration::ZERO, 0);
            while !done.is_cancelled() {
                let started = Instant::now();
                http.get(&url).bearer_auth(&key).send().await?.bytes().await?;
                slowest = slowest.max(started.elapsed());
                n += 1;
            }
            anyhow::Ok((slowest, n))
        })
    };
    let started = Instant::now();
    let mut lists = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (http, url, key) = (http.clone(), url.to_owned(), key.to_owned());
        lists.spawn(async move {
            let mut r = http.get(&url).bearer_auth(&key).send().await?;
            let mut n = 0;
            while let Some(chunk) = r.chunk().await? {
                n += chunk.len();
            }
            anyhow::Ok(n)
        });
    }
    while let Some(r) = lists.join_next().await {
        r??;
    }
    let took = started.elapsed();
    done.cancel();
    let peak = sampler.await?;
    let (small_slowest, small_requests) = small.await??;
    Ok(Concurrent {
        rss_rise: peak - before,
        small_slowest,
        small_requests,
        took,
    })
}

/// The API benchmark: W workspaces of N accounts (and a small one) served by a daemon
/// (`socialsyncer serve`, its own process, so that its memory is its own); prints the
/// uncached build of a full list, cached and 304 throughput, concurrent cold full lists, a
/// paginated walk and the daemon's memory.
pub async fn api(b: ApiBench) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("socialsyncer-bench-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"\"\nkey_rate_limit = 0\naddress_rate_limit = 0\n\
         [database]\nurl = \"sqlite://{}/bench.db\"\n[schedule]\ncron = \"\"\n[log]\nlevel = \"warn\"\n",
        dir.path().display()
    );
    let config_path = dir.path().join("bench.toml");
    std::fs::write(&config_path, &toml)?;
    let state = AppState::build(Config::from_toml(&toml)?).await?;
    eprintln!("preparing {} workspaces of {} accounts ...", b.workspaces, b.accounts);
    let mut keys = Vec::new();
    // W workspaces of N accounts, then a small one of 12 that is read while a large one is.
    let sizes = std::iter::repeat_n(b.accounts, b.workspaces).chain([12]);
    for (w, size) in sizes.enumerate() {
        let ws = state.store.ensure_workspace(&format!("ws{w}"), domain::now()).await?;
        let k = crate::crypto::generate_api_key();
        state
            .store
            .insert_api_key(ws, &k.prefix, &k.hash, domain::now(), &crate::domain::KeyScope::ALL)
            .await?;
        keys.push(secrecy::ExposeSecret::expose_secret(&k.secret).to_owned());
        let accounts: Vec<NewAccount> = (0..size)
            .map(|i| {
                let id = format!("{}", 10_000_000 + i);
                NewAccount {
                    custody: crate::domain::Custody::Socialsyncer,
                    instagram_login: None,
                    workspace_id: ws,
                    platform: Platform::Threads,
                    account_id: AccountId::parse(Platform::Threads, &id).expect("digits"),
                    username: format!("account{i}"),
                    access_token: state.sealer.seal(
                        &seal_context(ws, Platform::Threads, &id),
                        &SecretString::from(format!("THQVbench{i}")),
                    ),
                    refresh_token: None,
                    token_expires_at: Some(domain::now() + 50 * 86_400),
                    scopes: crate::simulator::default_scopes(Platform::Threads),
                    connected_at: domain::now(),
                }
            })
            .collect();
        for chunk in accounts.chunks(5_000) {
            state.store.insert_accounts(chunk).await?;
        }
    }
    // The last large workspace: its accounts come last in ID order.
    let last = b.workspaces - 1;
    let (build, read, mut bytes) = build_stages(&state, &format!("ws{last}")).await?;
    // Its status page (issue 26), with 400 days of transitions.
    let share = crate::crypto::generate_share_token();
    let last_ws = state
        .store
        .workspace_id(&format!("ws{last}"))
        .await?
        .context("the last workspace")?;
    state
        .store
        .insert_status_link(last_ws, &share.prefix, &share.hash, domain::now())
        .await?;
    state.store.close().await;
    eprintln!("writing 400 days of transitions for ws{last} ...");
    let seeded =
        super::status::seed_transitions(&dir.path().join("bench.db"), &format!("ws{last}"), domain::now()).await?;

    eprintln!("starting the daemon ...");
    let (mut daemon, pid) = spawn_daemon(dir.path(), &config_path, port).await?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_of(&pid);
    let key = &keys[last];
    let full = format!("{base}/v1/accounts/health");
    let concurrent = concurrent_lists(&full, key, &keys[b.workspaces], &pid).await?;

    // Uncached builds: each request asks for another page size (1,000 down to 981), so none
    // is cached (cursors are sealed: a made-up one is refused).
    let rounds = 20;
    let started = Instant::now();
    for i in 0..rounds {
        let r = http
            .get(format!("{full}?limit={}", 1000 - i))
            .bearer_auth(key)
            .send()
            .await?;
        bytes = r.bytes().await?.len();
    }
    let uncached = started.elapsed() / rounds;
    let first = http.get(&full).bearer_auth(key).send().await?;
    let etag = first
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .context("no ETag")?;
    let full_bytes = first.bytes().await?.len();
    let cached = throughput(&full, key, None, b.clients, b.duration).await?;
    let not_modified = throughput(&full, key, Some(&etag), b.clients, b.duration).await?;
    let loaded = rss_of(&pid);

    // One key asking for 1,000 distinct pages (each page size its own cache entry), then
    // 1,000 forged cursors (issue 20): the cache keeps to server.list_cache_bytes (64 MiB),
    // the key's workspace to a quarter of it, and a forged cursor builds nothing.
    let before_distinct = rss_of(&pid);
    for limit in 1..=1000 {
        http.get(format!("{full}?limit={limit}"))
            .bearer_auth(key)
            .send()
            .await?
            .bytes()
            .await?;
    }
    let after_distinct = rss_of(&pid);
    let mut refused = 0;
    for i in 0..1000 {
        use base64::Engine;
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("a{i}"));
        let r = http
            .get(format!("{full}?cursor={forged}"))
            .bearer_auth(key)
            .send()
            .await?;
        if r.status() == reqwest::StatusCode::BAD_REQUEST {
            refused += 1;
        }
    }
    let after_forged = rss_of(&pid);

    // A paginated walk of the whole workspace, 100 at a time.
    let started = Instant::now();
    let (mut cursor, mut pages) = (None::<String>, 0);
    loop {
        let url = match &cursor {
            Some(c) => format!("{full}?limit=100&cursor={c}"),
            None => format!("{full}?limit=100"),
        };
        let v: serde_json::Value = http.get(url).bearer_auth(key).send().await?.json().await?;
        pages += 1;
        match v["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let walk = started.elapsed();
    let status = super::status::serve(
        &base,
        secrecy::ExposeSecret::expose_secret(&share.secret),
        b.clients,
        b.duration,
        dir.path(),
    )
    .await?;

    out!("socialsyncer bench api");
    out!("  workspaces x accounts   {} x {}", b.workspaces, b.accounts);
    out!("  full list body          {full_bytes} bytes ({bytes} bytes a page of about 1000)");
    out!(
        "  uncached page of 1000   {:.2} ms a request (HTTP included)",
        uncached.as_secs_f64() * 1e3
    );
    out!(
        "  uncached build of 1000  {:.2} ms (median of 50; store read {:.2} ms), bound 2 ms: {:.2}x",
        build.as_secs_f64() * 1e3,
        read.as_secs_f64() * 1e3,
        build.as_secs_f64() / 2e-3
    );
    out!(
        "  cached full list        {cached:.0} requests/s ({} clients)",
        b.clients
    );
    out!("  304 (If-None-Match)     {not_modified:.0} requests/s");
    out!(
        "  20 concurrent cold full lists in {:.0} ms: RSS rose {:.1} MiB (bound 64: {:.2}x); \
         a 12-account workspace meanwhile: {} requests, slowest {:.1} ms (bound 100: {:.2}x)",
        concurrent.took.as_secs_f64() * 1e3,
        concurrent.rss_rise,
        concurrent.rss_rise / 64.0,
        concurrent.small_requests,
        concurrent.small_slowest.as_secs_f64() * 1e3,
        concurrent.small_slowest.as_secs_f64() / 0.1
    );
    out!(
        "  paginated walk          {pages} pages of 100 in {:.1} ms",
        walk.as_secs_f64() * 1e3
    );
    if let (Some(b0), Some(d), Some(f)) = (before_distinct, after_distinct, after_forged) {
        out!(
            "  1,000 distinct pages    RSS {b0:.1} -> {d:.1} MiB (+{:.1}; bound: the cache's 64 MiB + 16 = 80: {:.2}x)",
            d - b0,
            (d - b0) / 80.0
        );
        out!("  1,000 forged cursors    {refused} refused with 400, RSS {d:.1} -> {f:.1} MiB");
    }
    out!(
        "  transitions             {} rows (400 days, a change a week, {} accounts): {:.1} MiB, {:.0} bytes a row \
         (written in {:.1} s)",
        seeded.rows,
        b.accounts,
        seeded.bytes as f64 / (1 << 20) as f64,
        seeded.bytes as f64 / seeded.rows.max(1) as f64,
        seeded.took.as_secs_f64()
    );
    let median = status.uncached[status.uncached.len() / 2];
    out!(
        "  status page uncached    median {:.1} ms, slowest {:.1} ms of {} pages of up to 100 accounts (HTTP included), \
         bound 50 ms: {:.2}x",
        median.as_secs_f64() * 1e3,
        status.uncached.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        status.uncached.len(),
        median.as_secs_f64() / 0.05
    );
    out!("  status page 304         {:.0} requests/s", status.not_modified);
    match status.nginx {
        Some(n) => out!(
            "  status page cached      {:.0} requests/s ({} bytes), nginx the same bytes {n:.0} requests/s: {:.2}x nginx \
             (goal at least 0.5x)",
            status.cached,
            status.bytes,
            status.cached / n
        ),
        None => out!(
            "  status page cached      {:.0} requests/s ({} bytes); nginx is not installed here, so no comparison \
             (apt-get install nginx-light)",
            status.cached,
            status.bytes
        ),
    }
    if let (Some(i), Some(l)) = (idle, loaded) {
        out!(
            "  daemon RSS              {i:.1} MiB idle (bound 15: {:.2}x), {l:.1} MiB after the runs",
            i / 15.0
        );
    }
    eprintln!(
        "registering {} accounts through the API of a daemon started by hand ...",
        super::idle::REGISTRATIONS
    );
    let idle_after = super::idle::after_registrations(b.clients, None).await?;
    if let (Some(before), Some(after)) = (idle_after.before, idle_after.after) {
        out!(
            "  idle after {} registrations through the API (started by hand, in {:.1} s): RSS {before:.1} -> {after:.1} MiB \
             (bound 15: {:.2}x), of which {:.1} MiB anonymous and {:.1} MiB file pages (the binary's code)",
            super::idle::REGISTRATIONS,
            idle_after.took.as_secs_f64(),
            after / 15.0,
            idle_after.anon.unwrap_or_default(),
            idle_after.file.unwrap_or_default()
        );
    }
    if b.keep {
        let body = dir.path().join("health.json");
        std::fs::write(&body, http.get(&full).bearer_auth(key).send().await?.bytes().await?)?;
        out!("the daemon serves {full} (Authorization: Bearer {key})");
        out!("the same body is in {}; Ctrl-C stops both", body.display());
        tokio::signal::ctrl_c().await?;
    }
    // SIGTERM, as systemd stops it.
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    if tokio::time::timeout(Duration::from_secs(15), daemon.wait())
        .await
        .is_err()
    {
        daemon.kill().await?;
        anyhow::bail!("the daemon did not stop within 15 s of SIGTERM");
    }
    Ok(())
}
