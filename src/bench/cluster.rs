//! `bench scale --database postgres://… --daemons D` (issue 27 item 2): the N accounts on one
//! PostgreSQL database, swept by daemons each in its own process (`serve`, as by hand). A
//! round is every account made due at once (the database's clock) and ends when none is due;
//! each round's history must hold exactly one check of every account. Rounds: one daemon
//! alone, then all D, then all D with one of them killed (SIGKILL) halfway, timing how long
//! its claims wait for a peer. Throughout, the daemons' connections are counted, and the
//! database's size is read at the end.

use std::path::PathBuf;

use sqlx::PgPool;

use super::daemon::spawn_daemon;
use super::fleet::{CLAIM_LEASE, ScaleBench, WORKSPACES, daemon_toml, free_port, seed};
use super::*;

/// One daemon process.
struct Daemon {
    child: tokio::process::Child,
    pid: String,
    log: PathBuf,
}

impl Daemon {
    /// Checks this daemon's sweeps have logged so far.
    fn checked(&self) -> u64 {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == "sweep finished")
            .filter_map(|v| v["checked"].as_u64())
            .sum()
    }

    /// The pattern its sweeps' claims match (`{host}-{pid}-{hex}/sweep/{hex}`).
    fn claims(&self) -> String {
        format!("%-{}-%/sweep/%", self.pid)
    }

    async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.pid]).status();
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// What one round measured.
struct Round {
    time: Duration,
    /// History rows of checks written in the round, and the accounts they cover.
    rows: i64,
    accounts: i64,
    /// Checks each daemon logged in the round.
    by_daemon: Vec<u64>,
    /// The most connections the daemons held at once.
    peak_connections: i64,
    /// The most parallel query workers PostgreSQL ran for them at once.
    peak_workers: i64,
}

/// The daemons' connections now (`application_name` is set by the store), and apart from
/// them the parallel query workers PostgreSQL started for their queries (a worker carries
/// its leader's `application_name`: counted with the connections, three daemons seemed to
/// hold 30 connections with pools of 8).
async fn connections(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT COUNT(*) FILTER (WHERE backend_type = 'client backend'), \
                COUNT(*) FILTER (WHERE backend_type = 'parallel worker') \
         FROM pg_stat_activity WHERE application_name = 'socialsyncer'",
    )
    .fetch_one(pool)
    .await?)
}

/// Accounts due by `due_by` and not yet checked.
async fn remaining(pool: &PgPool, due_by: i64) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM account_health WHERE next_check_at <= $1")
            .bind(due_by)
            .fetch_one(pool)
            .await?,
    )
}

/// What killing a daemon mid-round measured.
struct Kill {
    /// Claims it held when killed.
    held: i64,
    /// From the SIGKILL until no account carried one of its claims any more.
    takeover: Duration,
}

/// Runs a round: every account due now, until none is (`first`: the round the import left
/// due, under way since the daemon started). With a `victim`, it is killed (SIGKILL) once
/// half of the accounts are checked, and its claims are watched.
async fn round(
    pool: &PgPool,
    daemons: &[Daemon],
    n: i64,
    first: bool,
    victim: Option<&Daemon>,
) -> anyhow::Result<(Round, Option<Kill>)> {
    let started = Instant::now();
    let before: Vec<u64> = daemons.iter().map(Daemon::checked).collect();
    let due_by: i64 = sqlx::query_scalar("SELECT EXTRACT(EPOCH FROM now())::BIGINT")
        .fetch_one(pool)
        .await?;
    let mark = if first {
        0
    } else {
        // Every account due again now, as time would make them.
        let mark: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM health_history")
            .fetch_one(pool)
            .await?;
        sqlx::query("UPDATE account_health SET next_check_at = $1")
            .bind(due_by)
            .execute(pool)
            .await?;
        mark
    };
    let (mut peak_connections, mut peak_workers) = (0, 0);
    let (mut killed, mut kill) = (None::<(Instant, i64)>, None);
    let claims_of = async |d: &Daemon| -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM account_health WHERE claimed_by LIKE $1")
                .bind(d.claims())
                .fetch_one(pool)
                .await?,
        )
    };
    loop {
        let (conns, workers) = connections(pool).await?;
        peak_connections = peak_connections.max(conns);
        peak_workers = peak_workers.max(workers);
        let left = remaining(pool, due_by).await?;
        if let Some(v) = victim {
            if killed.is_none() && left <= n / 2 {
                let held = claims_of(v).await?;
                let _ = std::process::Command::new("kill").args(["-KILL", &v.pid]).status();
                killed = Some((Instant::now(), held));
            } else if let Some((at, held)) = killed.filter(|_| kill.is_none())
                && claims_of(v).await? == 0
            {
                kill = Some(Kill {
                    held,
                    takeover: at.elapsed(),
                });
            }
        }
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3_600),
            "a round did not finish within an hour ({left} accounts left)"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let time = started.elapsed();
    // The daemons log a sweep when it ends: give the last ones a moment; and the next round
    // starts past this one's last second.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rows, accounts): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), COUNT(DISTINCT account_ref) FROM health_history WHERE id > $1 AND event = 'check'",
    )
    .bind(mark)
    .fetch_one(pool)
    .await?;
    let round = Round {
        time,
        rows,
        accounts,
        by_daemon: daemons.iter().zip(before).map(|(d, b)| d.checked() - b).collect(),
        peak_connections,
        peak_workers,
    };
    Ok((round, kill))
}

/// Runs it and prints its figures.
pub(super) async fn cluster(b: &ScaleBench, url: &str) -> anyhow::Result<()> {
    let sim = Simulator::start_in_thread()?;
    for p in Platform::ALL {
        sim.set_latency(p, b.latency);
    }
    let dir = tempfile::Builder::new().prefix("socialsyncer-scale-").tempdir()?;
    let key_file = dir.path().join("token.key");
    crate::crypto::Sealer::load_or_create(&key_file)?;
    let mut configs = Vec::new();
    for i in 0..b.daemons {
        let port = free_port()?;
        let toml = daemon_toml(b, url, port, &key_file, &sim, dir.path())?;
        let home = dir.path().join(format!("daemon{i}"));
        std::fs::create_dir_all(&home)?;
        std::fs::write(home.join("config.toml"), &toml)?;
        configs.push((home, port));
    }
    let pool = PgPool::connect(url).await?;
    {
        let mut seed_config = Config::from_toml(&std::fs::read_to_string(configs[0].0.join("config.toml"))?)?;
        seed_config.schedule.cron = String::new();
        let state = AppState::build(seed_config).await?;
        if state.store.sealed_count().await? > 0 {
            bail!(
                "the benchmark database {} already holds accounts; give it an empty database",
                crate::config::redact_url(url)
            );
        }
        seed(&state, &sim, b.accounts).await?;
        state.store.close().await;
    }
    let start = async |i: usize| -> anyhow::Result<Daemon> {
        let (home, port) = &configs[i];
        let (child, pid) = spawn_daemon(home, &home.join("config.toml"), *port).await?;
        Ok(Daemon {
            child,
            pid,
            log: home.join("daemon.log"),
        })
    };
    let n = b.accounts as i64;

    eprintln!("one daemon: the first sweep of everything, then a round ...");
    let mut daemons = vec![start(0).await?];
    let (warm, _) = round(&pool, &daemons, n, true, None).await?;
    let (one, _) = round(&pool, &daemons, n, false, None).await?;
    eprintln!("{} daemons: a round ...", b.daemons);
    for i in 1..b.daemons {
        daemons.push(start(i).await?);
    }
    let (all, _) = round(&pool, &daemons, n, false, None).await?;
    eprintln!("{} daemons: a round with one killed halfway ...", b.daemons);
    let (killed_round, kill) = round(&pool, &daemons, n, false, daemons.get(1)).await?;
    let kill = kill.context("the killed daemon's claims were never taken over")?;
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&pool)
        .await?;
    for (i, d) in daemons.into_iter().enumerate() {
        if i != 1 {
            d.stop().await?;
        }
    }
    pool.close().await;

    let per_daemon_conns = Config::default().database.max_connections;
    out!(
        "socialsyncer bench scale on PostgreSQL ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    out!(
        "  accounts N          {} over {WORKSPACES} workspaces and the 5 platforms; L = {} ms, C = {} a daemon, claim lease {} s",
        b.accounts,
        b.latency.as_millis(),
        b.concurrency,
        CLAIM_LEASE.as_secs()
    );
    let line = |name: &str, r: &Round| {
        out!(
            "  {name:<19} {:.2} s, {:.0} checks/s; {} checks of {} accounts ({}); by daemon {:?}; at most {} connections",
            r.time.as_secs_f64(),
            n as f64 / r.time.as_secs_f64(),
            r.rows,
            r.accounts,
            if r.rows == n && r.accounts == n {
                "each exactly once"
            } else {
                "NOT exactly once"
            },
            r.by_daemon,
            r.peak_connections
        );
    };
    line("first sweep, one", &warm);
    line("round, one daemon", &one);
    line(&format!("round, {} daemons", b.daemons), &all);
    line("round, one killed", &killed_round);
    out!(
        "  throughput          {} daemons against one: {:.2}x",
        b.daemons,
        one.time.as_secs_f64() / all.time.as_secs_f64()
    );
    out!(
        "  takeover            the killed daemon held {} claims; the last was taken over and checked {:.1} s \
         after the SIGKILL (claim lease {} s: {:.2}x)",
        kill.held,
        kill.takeover.as_secs_f64(),
        CLAIM_LEASE.as_secs(),
        kill.takeover.as_secs_f64() / CLAIM_LEASE.as_secs_f64()
    );
    out!(
        "  database            {:.1} MiB ({:.0} bytes an account, history included); connections at most {} at once \
         ({} daemons, each a pool of database.max_connections = {per_daemon_conns}: {}); besides them at most {} \
         parallel query workers of PostgreSQL's",
        size as f64 / (1024.0 * 1024.0),
        size as f64 / n as f64,
        [&warm, &one, &all, &killed_round]
            .iter()
            .map(|r| r.peak_connections)
            .max()
            .unwrap_or(0),
        b.daemons,
        b.daemons as u32 * per_daemon_conns,
        [&warm, &one, &all, &killed_round]
            .iter()
            .map(|r| r.peak_workers)
            .max()
            .unwrap_or(0)
    );
    Ok(())
}
