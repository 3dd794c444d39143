//! Idle memory after a burst (issue 27 item 3): a daemon started as by hand (no allocator
//! setting in its environment) takes 10,000 registrations through the API, each checked
//! against the simulated platforms, then idles; its RSS is read.

use super::*;

/// Registrations made.
pub(super) const REGISTRATIONS: usize = 10_000;

/// What the run measured.
pub(super) struct Idle {
    /// RSS before the registrations, MiB.
    pub before: Option<f64>,
    /// RSS a few seconds after them, MiB.
    pub after: Option<f64>,
    /// Of `after`: anonymous memory (heap, stacks), MiB.
    pub anon: Option<f64>,
    /// Of `after`: file pages (mostly the binary's own code), MiB.
    pub file: Option<f64>,
    /// How long the registrations took.
    pub took: Duration,
}

/// Runs it, with `clients` registering at once.
pub(super) async fn after_registrations(clients: usize) -> anyhow::Result<Idle> {
    let sim = Simulator::start().await?;
    let dir = tempfile::Builder::new().prefix("socialsyncer-bench-idle-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"\"\nkey_rate_limit = 0\naddress_rate_limit = 0\n\
         [database]\nurl = \"sqlite://{}/idle.db\"\n[schedule]\ncron = \"\"\n[log]\nlevel = \"warn\"\n{}",
        dir.path().display(),
        sim.config_toml(dir.path())?
    );
    let config_path = dir.path().join("idle.toml");
    std::fs::write(&config_path, &toml)?;
    let key = {
        let state = AppState::build(Config::from_toml(&toml)?).await?;
        let (_, key) = super::workspace_key(&state, "idle").await?;
        state.store.close().await;
        key
    };
    let (mut daemon, pid) = super::daemon::spawn_daemon(dir.path(), &config_path, port).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = super::daemon::rss_of(&pid);
    let started = Instant::now();
    let http = reqwest::Client::new();
    let sim = std::sync::Arc::new(sim);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, sim, next, key) = (http.clone(), sim.clone(), next.clone(), key.clone());
        let url = format!("http://127.0.0.1:{port}/v1/accounts");
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= REGISTRATIONS {
                    return anyhow::Ok(());
                }
                let id = format!("{}", 30_000_000 + i);
                let issued = sim.issue(Platform::Threads, TokenSpec::valid(Platform::Threads, &id));
                let mut body = serde_json::json!({"platform": "threads", "accountId": id,
                    "username": format!("account{i}"), "accessToken": issued.access_token,
                    "scopes": crate::simulator::default_scopes(Platform::Threads)});
                if let Some(e) = issued.expires_at {
                    body["expiresAt"] = serde_json::json!(domain::rfc3339(e));
                }
                let r = http.post(&url).bearer_auth(&key).json(&body).send().await?;
                anyhow::ensure!(r.status().as_u16() == 201, "a registration answered {}", r.status());
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = super::daemon::rss_of(&pid);
    let (anon, file) = (
        super::daemon::status_mib(&pid, "RssAnon:"),
        super::daemon::status_mib(&pid, "RssFile:"),
    );
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    if tokio::time::timeout(Duration::from_secs(15), daemon.wait())
        .await
        .is_err()
    {
        daemon.kill().await?;
    }
    Ok(Idle {
        before,
        after,
        anon,
        file,
        took,
    })
}
