//! Idle memory after a burst (issue 27 item 3): a daemon started as by hand (no allocator
//! setting in its environment) takes 10,000 registrations through the API, each checked
//! against the simulated platforms, then idles; its RSS is read.

use super::*;

/// Registrations made.
pub(super) const REGISTRATIONS: usize = 10_000;

/// The issue's bound on the idle RSS, 15 MB, in MiB (what the kernel's kB are).
const GOAL_MIB: f64 = 15e6 / 1_048_576.0;

/// What the run measured.
pub(super) struct Idle {
    /// RSS before the registrations, MiB.
    pub before: Option<f64>,
    /// Of `before`: anonymous memory and file pages, MiB.
    pub before_anon: Option<f64>,
    pub before_file: Option<f64>,
    /// RSS a few seconds after them, MiB.
    pub after: Option<f64>,
    /// Of `after`: anonymous memory (heap, stacks), MiB.
    pub anon: Option<f64>,
    /// Of `after`: file pages (mostly the binary's own code), MiB.
    pub file: Option<f64>,
    /// How long the registrations took.
    pub took: Duration,
    /// After a longer idle, when asked for.
    pub later: Option<Later>,
}

/// The RSS read again after a longer idle.
pub(super) struct Later {
    /// Seconds after the registrations.
    pub secs: u64,
    /// RSS, anonymous memory and file pages, MiB.
    pub rss: Option<f64>,
    pub anon: Option<f64>,
    pub file: Option<f64>,
}

/// Runs it, with `clients` registering at once; with `idle_s`, also reads the RSS that many
/// seconds after the registrations.
pub(super) async fn after_registrations(clients: usize, idle_s: Option<u64>) -> anyhow::Result<Idle> {
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
    let (before_anon, before_file) = (
        super::daemon::status_mib(&pid, "RssAnon:"),
        super::daemon::status_mib(&pid, "RssFile:"),
    );
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
    let mut later = None;
    if let Some(s) = idle_s.filter(|s| *s > 5) {
        eprintln!("idling {s} s ...");
        tokio::time::sleep(Duration::from_secs(s - 5)).await;
        later = Some(Later {
            secs: s,
            rss: super::daemon::rss_of(&pid),
            anon: super::daemon::status_mib(&pid, "RssAnon:"),
            file: super::daemon::status_mib(&pid, "RssFile:"),
        });
    }
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    if tokio::time::timeout(Duration::from_secs(15), daemon.wait())
        .await
        .is_err()
    {
        daemon.kill().await?;
    }
    Ok(Idle {
        before,
        before_anon,
        before_file,
        after,
        anon,
        file,
        took,
        later,
    })
}

/// `bench idle`: the registrations alone, and the RSS after `idle_s` seconds of idling.
pub async fn idle(clients: usize, idle_s: u64) -> anyhow::Result<()> {
    eprintln!("registering {REGISTRATIONS} accounts through the API of a daemon started by hand ...");
    let i = after_registrations(clients, Some(idle_s)).await?;
    let mib = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.1}"));
    let line = |when: String, rss: Option<f64>, anon: Option<f64>, file: Option<f64>| {
        println!(
            "  RSS {when:<19} {} MiB (goal 15 MB, {GOAL_MIB:.1} MiB: {}), {} MiB anonymous, {} MiB file pages",
            mib(rss),
            rss.map_or("?".to_string(), |v| format!("{:.2}x", v / GOAL_MIB)),
            mib(anon),
            mib(file)
        )
    };
    println!("bench idle: {REGISTRATIONS} registrations through the API, {clients} clients, a daemon started by hand");
    println!("  registrations took      {:.1} s", i.took.as_secs_f64());
    // Before any registration: what the daemon holds as soon as it serves (its code, the
    // C library, the runtime's threads), the floor under every later reading.
    println!(
        "  RSS before              {} MiB ({} the goal before any registration: the floor), {} MiB anonymous, {} MiB file pages",
        mib(i.before),
        i.before.map_or("?".to_string(), |v| format!("{:.2}x", v / GOAL_MIB)),
        mib(i.before_anon),
        mib(i.before_file)
    );
    line("5 s after".into(), i.after, i.anon, i.file);
    if let Some(l) = i.later {
        line(format!("{} s after", l.secs), l.rss, l.anon, l.file);
    }
    Ok(())
}
