//! `socialsyncer bench soak` (issue 27's check): N accounts re-checked every minute for an
//! hour by one daemon in its own process (`serve`, as by hand) against simulated platforms,
//! with a few API clients reading; once a minute its RSS, file descriptors, threads, the
//! checks of the last minute and every error (failed API answers, transient check outcomes,
//! warnings in its log), and at the end what changed from the first minutes to the last.

use super::daemon::{rss_of, spawn_daemon, status_mib};
use super::fleet::{ScaleBench, SqliteFleet, seed, sqlite_fleet};
use super::*;

/// Parameters of the soak.
#[derive(Debug, Clone)]
pub struct SoakBench {
    /// Accounts.
    pub accounts: usize,
    /// How long it runs.
    pub minutes: u64,
    /// Latency of every simulated answer.
    pub latency: Duration,
    /// API clients, each reading the health list and one account's detail once a second.
    pub clients: usize,
}

/// One minute's reading of the daemon.
#[derive(Debug, Clone, Default)]
struct Reading {
    rss: f64,
    anon: f64,
    fds: usize,
    threads: u64,
    /// `socialsyncer_checks_total` by outcome, since the start.
    checks: std::collections::BTreeMap<String, f64>,
    /// `socialsyncer_accounts` by health.
    health: std::collections::BTreeMap<String, f64>,
    /// The database file and its WAL, bytes.
    db: u64,
    wal: u64,
}

impl Reading {
    fn checks_total(&self) -> f64 {
        self.checks.values().sum()
    }
}

/// Open file descriptors of process `pid`.
fn fds_of(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// The samples of metric `name` in the Prometheus text `text`, summed by the value of `label`.
fn by_label(text: &str, name: &str, label: &str) -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let key = format!("{label}=\"");
    for line in text.lines().filter(|l| l.starts_with(&format!("{name}{{"))) {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some(v) = labels.split_once(&key).and_then(|(_, rest)| rest.split_once('"')) else {
            continue;
        };
        *out.entry(v.0.to_string()).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    out
}

/// The daemon's log lines at WARN or ERROR (or not JSON) from byte `from` on: how many,
/// each one's level and message, and where the log ends.
fn warnings_since(log: &std::path::Path, from: u64) -> (usize, Vec<String>, u64) {
    let Ok(text) = std::fs::read(log) else {
        return (0, Vec::new(), from);
    };
    let end = text.len() as u64;
    let new = String::from_utf8_lossy(&text[(from.min(end) as usize)..]);
    let mut count = 0;
    let mut some = Vec::new();
    for line in new.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            if !line.trim().is_empty() {
                count += 1;
                some.push(line.chars().take(200).collect());
            }
            continue;
        };
        if matches!(v["level"].as_str(), Some("WARN" | "ERROR")) {
            count += 1;
            some.push(format!(
                "{} {}",
                v["level"].as_str().unwrap_or_default(),
                v["message"].as_str().unwrap_or_default()
            ));
        }
    }
    (count, some, end)
}

/// Runs it and prints a line a minute and its summary.
pub async fn soak(b: SoakBench) -> anyhow::Result<()> {
    let fleet = ScaleBench {
        accounts: b.accounts,
        latency: b.latency,
        concurrency: crate::config::Config::default().schedule.concurrency,
        clients: b.clients,
        history_days: 0,
        database: None,
        daemons: 1,
        sqlite_cache_mib: None,
        sqlite_memory_mib: None,
    };
    // A sweep every 10 s picks up what is due; each account is due a minute (+-10%) after its
    // last check.
    let SqliteFleet {
        sim,
        dir,
        db,
        port,
        config_path,
        state,
    } = sqlite_fleet(&fleet, "soak", "*/10 * * * * *", "[health]\ncheck_interval = \"1m\"\n").await?;
    let seeded = seed(&state, &sim, b.accounts).await?;
    let probe = seeded.tokens[0].clone();
    let api_key = seeded.api_key.clone();
    drop(seeded);
    state.store.close().await;

    let (mut daemon, pid) = spawn_daemon(dir.path(), &config_path, port).await?;
    let base = format!("http://127.0.0.1:{port}");
    let log = dir.path().join("daemon.log");
    eprintln!(
        "soaking: {} accounts re-checked every minute for {} min (a line a minute) ...",
        b.accounts, b.minutes
    );

    // The readers: answers that were not a success, by what went wrong.
    let done = tokio_util::sync::CancellationToken::new();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let failed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut readers = tokio::task::JoinSet::new();
    for c in 0..b.clients {
        let (done, key, base) = (done.clone(), api_key.clone(), base.clone());
        let (answered, failed) = (answered.clone(), failed.clone());
        let urls = [
            format!("{base}/v1/accounts/health?limit=100"),
            format!("{base}/v1/accounts/{}/{}", probe.0, probe.1),
        ];
        readers.spawn(async move {
            let http = reqwest::Client::new();
            let mut i = c;
            while !done.is_cancelled() {
                let url = &urls[i % urls.len()];
                i += 1;
                match http.get(url).bearer_auth(&key).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(r) => failed
                        .lock()
                        .expect("not poisoned")
                        .push(format!("{url}: {}", r.status())),
                    Err(e) => failed.lock().expect("not poisoned").push(format!("{url}: {e}")),
                }
                tokio::select! {
                    _ = done.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }

    let http = reqwest::Client::new();
    let read = |pid: String| {
        let (http, base, db) = (http.clone(), base.clone(), db.clone());
        async move {
            let metrics = http.get(format!("{base}/metrics")).send().await?.text().await?;
            let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
            anyhow::Ok(Reading {
                rss: rss_of(&pid).unwrap_or_default(),
                anon: status_mib(&pid, "RssAnon:").unwrap_or_default(),
                fds: fds_of(&pid),
                threads: std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        s.lines()
                            .find_map(|l| l.strip_prefix("Threads:"))
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or_default(),
                checks: by_label(&metrics, "socialsyncer_checks_total", "outcome"),
                health: by_label(&metrics, "socialsyncer_accounts", "health"),
                db: size(&db),
                wal: size(&db.with_extension("db-wal")),
            })
        }
    };

    let started = Instant::now();
    let mut readings = vec![read(pid.clone()).await?];
    let mut log_at = 0;
    let mut warnings = 0;
    let mut warning_lines = std::collections::BTreeMap::<String, usize>::new();
    let mut api_failures = 0;
    let mut api_answers = 0;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    for minute in 1..=b.minutes {
        let at = started + Duration::from_secs(60 * minute);
        tokio::time::sleep_until(at.into()).await;
        if daemon.try_wait()?.is_some() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: String = tail.lines().rev().take(20).collect::<Vec<_>>().join("\n");
            bail!("the daemon exited in minute {minute}; the end of its log, newest first:\n{tail}");
        }
        let now = read(pid.clone()).await?;
        let before = readings.last().expect("a reading");
        let (w, some, end) = warnings_since(&log, log_at);
        log_at = end;
        warnings += w;
        for s in some {
            if warning_lines.len() < 10 || warning_lines.contains_key(&s) {
                *warning_lines.entry(s).or_default() += 1;
            }
        }
        let failures = std::mem::take(&mut *failed.lock().expect("not poisoned"));
        api_failures += failures.len();
        let answers = answered.swap(0, std::sync::atomic::Ordering::Relaxed);
        api_answers += answers;
        let outcome = |o: &str| now.checks.get(o).unwrap_or(&0.0) - before.checks.get(o).unwrap_or(&0.0);
        out!(
            "  min {minute:>3}  RSS {:6.1} MiB ({:.1} anonymous)  {:>3} fds  {:>2} threads  {:>6} checks ({} transient, {} invalid)  \
             API {answers} answers, {} failed  log {w} warnings  database {:.1} MiB + WAL {:.1} MiB",
            now.rss,
            now.anon,
            now.fds,
            now.threads,
            now.checks_total() - before.checks_total(),
            outcome("transient_error"),
            outcome("invalid"),
            failures.len(),
            mib(now.db),
            mib(now.wal),
        );
        for f in failures.iter().take(3) {
            out!("           a failed answer: {f}");
        }
        readings.push(now);
    }
    done.cancel();
    while readers.join_next().await.is_some() {}
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    let stopped = Instant::now();
    let exit = tokio::time::timeout(Duration::from_secs(30), daemon.wait()).await;
    let stop_s = stopped.elapsed().as_secs_f64();
    if exit.is_err() {
        daemon.kill().await?;
    }

    // From the fifth minute on (the first sweeps, the caches and the pools have filled by then).
    let settled = &readings[readings.len().min(5).saturating_sub(1)..];
    let last = readings.last().expect("a reading");
    let first = settled.first().expect("a reading");
    let range = |f: &dyn Fn(&Reading) -> f64| {
        settled
            .iter()
            .map(f)
            .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (rss_lo, rss_hi) = range(&|r| r.rss);
    let (fd_lo, fd_hi) = range(&|r| r.fds as f64);
    let (th_lo, th_hi) = range(&|r| r.threads as f64);
    let minutes = (readings.len() - 1) as f64;
    let checks = last.checks_total();
    out!(
        "socialsyncer bench soak ({} cores): {} accounts over the 5 platforms, re-checked every minute for {} min; L = {} ms, {} API clients",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        b.accounts,
        b.minutes,
        b.latency.as_millis(),
        b.clients
    );
    out!(
        "  checks              {checks:.0} in all, {:.0} a minute (the accounts: {}); {:.0} transient, {:.0} invalid",
        checks / minutes.max(1.0),
        b.accounts,
        last.checks.get("transient_error").unwrap_or(&0.0),
        last.checks.get("invalid").unwrap_or(&0.0)
    );
    out!(
        "  accounts at the end {}",
        last.health
            .iter()
            .map(|(h, n)| format!("{h} {n:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out!(
        "  RSS from minute {}   {:.1} -> {:.1} MiB (lowest {rss_lo:.1}, highest {rss_hi:.1}; anonymous {:.1} -> {:.1})",
        readings.len().min(5) - 1,
        first.rss,
        last.rss,
        first.anon,
        last.anon
    );
    out!(
        "  file descriptors    {} -> {} (lowest {fd_lo:.0}, highest {fd_hi:.0})",
        first.fds,
        last.fds
    );
    out!(
        "  threads             {} -> {} (lowest {th_lo:.0}, highest {th_hi:.0})",
        first.threads,
        last.threads
    );
    out!(
        "  database            {:.1} -> {:.1} MiB (history grows with every check), WAL at the end {:.1} MiB",
        mib(first.db),
        mib(last.db),
        mib(last.wal)
    );
    out!("  API                 {api_answers} answers, {api_failures} failed");
    out!("  daemon's log        {warnings} warnings or errors, by message (the first 10 kinds):");
    for (l, n) in &warning_lines {
        out!("                      {n} x {l}");
    }
    out!(
        "  SIGTERM             {}",
        if exit.is_ok() {
            format!("stopped in {stop_s:.2} s")
        } else {
            "did not stop within 30 s (killed)".into()
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prometheus_samples_are_summed_by_the_label_asked_for() {
        let text = "# HELP socialsyncer_checks_total x\n\
                    socialsyncer_checks_total{outcome=\"ok\",platform=\"x\"} 3\n\
                    socialsyncer_checks_total{outcome=\"ok\",platform=\"tiktok\"} 4\n\
                    socialsyncer_checks_total{outcome=\"invalid\",platform=\"x\"} 1\n\
                    socialsyncer_checks_total_other{outcome=\"ok\"} 100\n";
        let m = by_label(text, "socialsyncer_checks_total", "outcome");
        assert_eq!(m.get("ok"), Some(&7.0));
        assert_eq!(m.get("invalid"), Some(&1.0));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn warnings_are_counted_from_where_the_last_reading_ended() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("daemon.log");
        std::fs::write(
            &log,
            "{\"level\":\"INFO\",\"message\":\"sweep finished\"}\n{\"level\":\"WARN\",\"message\":\"slow\"}\n",
        )
        .unwrap();
        let (n, some, end) = warnings_since(&log, 0);
        assert_eq!((n, some, end), (1, vec!["WARN slow".to_string()], end));
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(&mut f, b"{\"level\":\"ERROR\",\"message\":\"broken\"}\nnot json\n").unwrap();
        let (n, some, _) = warnings_since(&log, end);
        assert_eq!(n, 2);
        assert_eq!(some[0], "ERROR broken");
    }
}
