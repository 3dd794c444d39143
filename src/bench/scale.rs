//! `socialsyncer bench scale` (issue 27): N accounts over the five platforms and 100
//! workspaces on one daemon in its own process (`serve`, as by hand), against simulated
//! platforms with latency L. Import, start, a first and a repeat sweep (each against the
//! adapter floor measured in the same run), the API's latency during a third sweep, the
//! daemon's peak memory and CPU per check, a metrics scrape, and how long a sweep of each
//! platform's share takes at the default rate limits; then 30 simulated days of history and
//! their pruning (`history`).

use super::daemon::{rss_of, sample_resident, spawn_daemon, status_mib};
use super::fleet::{EVERY_2_S, ScaleBench, Seeded, SqliteFleet, WORKSPACES, seed, sqlite_fleet};
use super::*;

/// The issue's bound on the sweep's peak RSS, 200 MB, in MiB (what the kernel's kB are).
const GOAL_RSS_MIB: f64 = 200e6 / 1_048_576.0;

/// CPU time (user + system) process `pid` has used.
fn cpu_of(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// CPU time used by the daemon and by this process (the simulator, the API's readers)
/// between two moments.
#[derive(Debug, Clone, Copy)]
struct Cpus {
    daemon: Duration,
    bench: Duration,
}

/// A start for [`Cpus`].
struct CpusFrom {
    daemon: Option<Duration>,
    bench: Option<Duration>,
}

impl CpusFrom {
    fn now(pid: &str) -> CpusFrom {
        CpusFrom {
            daemon: cpu_of(pid),
            bench: cpu_of("self"),
        }
    }

    fn until_now(self, pid: &str) -> Option<Cpus> {
        Some(Cpus {
            daemon: cpu_of(pid)?.checked_sub(self.daemon?)?,
            bench: cpu_of("self")?.checked_sub(self.bench?)?,
        })
    }
}

/// What a sweep's "sweep finished" line says.
#[derive(Debug, Clone, Copy)]
struct Swept {
    checked: u64,
    ms: u64,
    /// The time its results took to be written (the writer's busy time).
    write_ms: u64,
}

/// The `n`th "sweep finished" line of the daemon's JSON log, once written.
fn sweep_line(log: &std::path::Path, n: usize) -> Option<Swept> {
    let text = std::fs::read_to_string(log).ok()?;
    let v = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "sweep finished")
        .nth(n)?;
    Some(Swept {
        checked: v["checked"].as_u64()?,
        ms: v["duration_ms"].as_u64()?,
        write_ms: v["write_ms"].as_u64()?,
    })
}

/// Makes every account due now, from outside, as time would.
async fn all_due(db: &std::path::Path) -> anyhow::Result<()> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await?;
    sqlx::query("UPDATE account_health SET next_check_at = $1")
        .bind(domain::now())
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Waits for the `n`th sweep to finish (at most `limit`).
async fn sweep_done(log: &std::path::Path, n: usize, limit: Duration) -> anyhow::Result<Swept> {
    let started = Instant::now();
    loop {
        if let Some(r) = sweep_line(log, n) {
            return Ok(r);
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "sweep {} did not finish within {limit:?}",
            n + 1
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// Runs it and prints its figures.
pub async fn scale(b: ScaleBench) -> anyhow::Result<()> {
    let SqliteFleet {
        sim,
        dir,
        db,
        port,
        config_path,
        state,
    } = sqlite_fleet(&b, "scale", EVERY_2_S, "").await?;
    let Seeded {
        api_key,
        tokens,
        issue_time,
        write_time,
    } = seed(&state, &sim, b.accounts).await?;
    eprintln!("the adapter floor: every token checked in this process, no store ...");
    let tokens = std::sync::Arc::new(tokens);
    let floor = super::adapter_floor(&state, tokens.clone(), b.concurrency).await?;
    let probe = tokens[0].clone();
    drop(tokens);
    state.store.close().await;
    let db_bytes = [db.clone(), dir.path().join("scale.db-wal")]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum::<u64>();

    eprintln!("starting the daemon; it sweeps every 2 s ...");
    let started = Instant::now();
    let (mut daemon, pid) = spawn_daemon(dir.path(), &config_path, port).await?;
    let start_time = started.elapsed();
    let cpu_first = CpusFrom::now(&pid);
    let start_rss = rss_of(&pid);
    let log = dir.path().join("daemon.log");
    let limit = Duration::from_secs(3_600);
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = sample_resident(pid.clone(), Some(dir.path().join("scale.db-wal")), sampling.clone());
    let first = sweep_done(&log, 0, limit).await?;
    let cpu_first = cpu_first.until_now(&pid);

    // Every account due again, from outside (as time would make them): the repeat sweep,
    // alone (the sweep's goal), then a third with 16 clients reading the API meanwhile (the
    // API's goal). The readers read as fast as they are answered: on 2 cores their CPU is
    // taken from the sweep's, so the sweep is measured without them.
    all_due(&db).await?;
    let cpu_repeat = CpusFrom::now(&pid);
    let repeat = sweep_done(&log, 1, limit).await?;
    let cpu_repeat = cpu_repeat.until_now(&pid);
    all_due(&db).await?;
    let cpu_read = CpusFrom::now(&pid);
    let base = format!("http://127.0.0.1:{port}");
    let done = tokio_util::sync::CancellationToken::new();
    let mut readers = tokio::task::JoinSet::new();
    for c in 0..b.clients {
        let (done, key, base) = (done.clone(), api_key.clone(), base.clone());
        let detail = format!("{base}/v1/accounts/{}/{}", probe.0, probe.1);
        readers.spawn(async move {
            let http = reqwest::Client::new();
            let (mut list, mut one) = (Vec::new(), Vec::new());
            while !done.is_cancelled() {
                let (url, into) = if c % 2 == 0 {
                    (format!("{base}/v1/accounts/health?limit=100"), &mut list)
                } else {
                    (detail.clone(), &mut one)
                };
                let t = Instant::now();
                let r = http.get(&url).bearer_auth(&key).send().await?;
                let ok = r.status().is_success();
                r.bytes().await?;
                anyhow::ensure!(ok, "{url} failed during the sweep");
                into.push(t.elapsed());
            }
            anyhow::Ok((list, one))
        });
    }
    let read = sweep_done(&log, 2, limit).await;
    done.cancel();
    let (mut list, mut one) = (Vec::new(), Vec::new());
    while let Some(r) = readers.join_next().await {
        let (l, o) = r??;
        list.extend(l);
        one.extend(o);
    }
    let read = read?;
    let cpu_read = cpu_read.until_now(&pid);
    let peak = status_mib(&pid, "VmHWM:");
    sampling.cancel();
    let sampled = sampler.await?;
    list.sort();
    one.sort();

    let http = reqwest::Client::new();
    let t = Instant::now();
    let metrics = http.get(format!("{base}/metrics")).send().await?.bytes().await?;
    let scrape = t.elapsed();
    let per_account = String::from_utf8_lossy(&metrics)
        .lines()
        .any(|l| l == "socialsyncer_per_account_series_enabled 1");

    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    if tokio::time::timeout(Duration::from_secs(30), daemon.wait())
        .await
        .is_err()
    {
        daemon.kill().await?;
    }

    let n = b.accounts as f64;
    let floor_s = floor.as_secs_f64();
    out!(
        "socialsyncer bench scale ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    out!(
        "  accounts N          {} over {WORKSPACES} workspaces and the 5 platforms; L = {} ms, C = {}",
        b.accounts,
        b.latency.as_millis(),
        b.concurrency
    );
    out!(
        "  import              {:.1} s through the store ({:.1} s of it the simulator issuing the tokens and their sealing), {:.0} bytes an account on disk",
        write_time.as_secs_f64() + issue_time.as_secs_f64(),
        issue_time.as_secs_f64(),
        db_bytes as f64 / n
    );
    out!(
        "  start               serving in {:.2} s, RSS {:.1} MiB",
        start_time.as_secs_f64(),
        start_rss.unwrap_or_default()
    );
    out!("  adapter floor       {floor_s:.2} s (every token checked with C in flight, no store)");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    // (name, what follows its ratio, whether the readers read during it, ...)
    for (name, note, reading, Swept { checked, ms, write_ms }, cpu) in [
        ("first sweep ", "", false, first, cpu_first),
        ("repeat sweep", " (goal 1.15x)", false, repeat, cpu_repeat),
        (
            "with readers",
            ", the API read by its clients meanwhile",
            true,
            read,
            cpu_read,
        ),
    ] {
        let s = ms as f64 / 1e3;
        out!(
            "  {name}        {checked} checked in {s:.2} s: {:.2}x the floor{note}",
            s / floor_s
        );
        // What the CPUs allowed: the sweep cannot end before the CPU time it and the
        // simulator used, spread over every core, has passed. (The CPU is read from before
        // the sweep's start to a moment after its end, when neither process works much.)
        if let Some(Cpus { daemon, bench }) = cpu {
            let (d, b) = (daemon.as_secs_f64(), bench.as_secs_f64());
            out!(
                "                      CPU: the daemon {d:.1} s ({:.0} µs a check{}), the simulator{} {b:.1} s: \
                 {:.2} s on {cores:.0} cores ({:.2}x the floor, the least this CPU time allows), the cores {:.0}% busy",
                d * 1e6 / checked.max(1) as f64,
                if reading { ", the API's answers included" } else { "" },
                if reading { " and the readers" } else { "" },
                (d + b) / cores,
                (d + b) / cores / floor_s,
                (d + b) / (cores * s) * 100.0
            );
        }
        // The one writer: when it is busy nearly the whole sweep, the results wait for it.
        out!(
            "                      writes: {:.2} s in transactions ({:.0}% of the sweep)",
            write_ms as f64 / 1e3,
            write_ms as f64 / ms.max(1) as f64 * 100.0
        );
    }
    out!(
        "  API during the sweep GET /v1/accounts/health?limit=100: p50 {:.1} ms, p99 {:.1} ms ({} requests); \
         one account: p50 {:.1} ms, p99 {:.1} ms ({}); goal p99 50 ms: {:.2}x",
        percentile(&list, 0.5),
        percentile(&list, 0.99),
        list.len(),
        percentile(&one, 0.5),
        percentile(&one, 0.99),
        one.len(),
        percentile(&list, 0.99).max(percentile(&one, 0.99)) / 50.0
    );
    out!(
        "  memory              peak RSS {:.1} MiB (goal under 200 MB, {:.1} MiB: {:.2}x); the largest sample {:.1} MiB: {:.1} anonymous, \
         {:.1} file pages, {:.1} shared (SQLite's WAL index); the WAL at most {:.1} MiB",
        peak.unwrap_or_default(),
        GOAL_RSS_MIB,
        peak.unwrap_or_default() / GOAL_RSS_MIB,
        sampled.total(),
        sampled.anon,
        sampled.file,
        sampled.shmem,
        sampled.wal as f64 / 1_048_576.0
    );
    out!(
        "  /metrics            {:.0} ms, {} bytes, per-account series {}",
        scrape.as_secs_f64() * 1e3,
        metrics.len(),
        if per_account {
            "on"
        } else {
            "off (over metrics.per_account_limit)"
        }
    );
    // At the shipped rate limits, a full sweep of each platform's share takes this long,
    // against the re-check period the health policy asks for.
    let defaults = crate::config::Config::default();
    let period = defaults.health.check_interval.secs() as f64;
    for p in Platform::ALL {
        let share = n / Platform::ALL.len() as f64;
        if let Some(rate) = defaults.platforms.get(p).rate_limit(p) {
            let hours = share / rate / 3_600.0;
            out!(
                "  {:<9} at {rate} checks/s (default): a sweep of its {share:.0} accounts takes {hours:.1} h; \
                 health.check_interval is {:.0} h: {}",
                p.as_str(),
                period / 3_600.0,
                if hours * 3_600.0 <= period {
                    "reachable"
                } else {
                    "NOT reachable"
                }
            );
        }
    }
    if b.history_days > 0 {
        eprintln!("writing {} days of history ...", b.history_days);
        super::history::history(&db, b.history_days).await?;
    }
    Ok(())
}
