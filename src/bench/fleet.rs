//! What `bench scale` sets up, on SQLite (`scale`) and on PostgreSQL (`cluster`) alike: its
//! parameters, the daemons' configuration, and the accounts.

use super::*;

/// Workspaces the accounts are spread over.
pub(super) const WORKSPACES: usize = 100;

/// Parameters of the scale benchmark.
#[derive(Debug, Clone)]
pub struct ScaleBench {
    /// Accounts.
    pub accounts: usize,
    /// Latency of every simulated answer.
    pub latency: Duration,
    /// Checks in flight.
    pub concurrency: usize,
    /// API clients during the sweep.
    pub clients: usize,
    /// Simulated days of history to write and prune afterwards (0: none).
    pub history_days: u32,
    /// A PostgreSQL database (empty) to run on instead of a SQLite file, with `daemons`
    /// daemons (`cluster`).
    pub database: Option<String>,
    /// Daemons sharing the PostgreSQL `database`.
    pub daemons: usize,
    /// `database.sqlite_cache_mib` for the daemon (its default when `None`).
    pub sqlite_cache_mib: Option<u32>,
    /// `database.sqlite_memory_mib` for the daemon (its default when `None`).
    pub sqlite_memory_mib: Option<u32>,
}

/// A free port on 127.0.0.1.
pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A daemon's configuration for the benchmark: database `url`, API on `port`, a sweep every
/// two seconds with `b.concurrency` checks in flight against `sim`, no pacing, no refreshes.
pub(super) fn daemon_toml(
    b: &ScaleBench,
    url: &str,
    port: u16,
    key_file: &std::path::Path,
    sim: &Simulator,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    ticking_toml(b, EVERY_2_S, url, port, key_file, sim, dir)
}

/// The benchmark daemons' sweep tick.
pub(super) const EVERY_2_S: &str = "*/2 * * * * *";

/// [`daemon_toml`] with sweeps at `cron`.
fn ticking_toml(
    b: &ScaleBench,
    cron: &str,
    url: &str,
    port: u16,
    key_file: &std::path::Path,
    sim: &Simulator,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    let mut toml = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"\"\nkey_rate_limit = 0\naddress_rate_limit = 0\n\
         [database]\nurl = \"{url}\"\n{}[security]\ntoken_key_file = \"{}\"\n\
         [schedule]\ncron = \"{cron}\"\nconcurrency = {}\nclaim_lease = \"{}s\"\n\
         [http]\nrequest_timeout = \"60s\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n{}",
        b.sqlite_cache_mib
            .map(|m| format!("sqlite_cache_mib = {m}\n"))
            .into_iter()
            .chain(b.sqlite_memory_mib.map(|m| format!("sqlite_memory_mib = {m}\n")))
            .collect::<String>(),
        key_file.display(),
        b.concurrency,
        CLAIM_LEASE.as_secs(),
        sim.config_toml(dir)?
    );
    // No pacing (the floor is the adapters' own speed) and no refreshes.
    for p in Platform::ALL {
        toml = toml.replace(
            &format!("[platforms.{p}]\n"),
            &format!("[platforms.{p}]\nrate_limit = 0\nauto_refresh = false\n"),
        );
    }
    Ok(toml)
}

/// One daemon's benchmark on a SQLite file, set up and not started yet.
pub(super) struct SqliteFleet {
    /// The simulated platforms, answering after `b.latency`.
    pub sim: Simulator,
    /// The temporary folder: the database, the token key, the configuration, the log.
    pub dir: tempfile::TempDir,
    /// The database file.
    pub db: std::path::PathBuf,
    /// The daemon's API port.
    pub port: u16,
    /// The daemon's configuration file.
    pub config_path: std::path::PathBuf,
    /// The same configuration without sweeps, for importing the accounts in this process.
    pub state: AppState,
}

/// Sets up `name`'s benchmark (`name.db`, `name.toml` in a temporary folder): the
/// simulator, the daemon's configuration with sweeps at `cron` and `extra` appended, and a
/// state to import through.
pub(super) async fn sqlite_fleet(b: &ScaleBench, name: &str, cron: &str, extra: &str) -> anyhow::Result<SqliteFleet> {
    let sim = Simulator::start_in_thread()?;
    for p in Platform::ALL {
        sim.set_latency(p, b.latency);
    }
    let dir = tempfile::Builder::new()
        .prefix(&format!("socialsyncer-{name}-"))
        .tempdir()?;
    let db = dir.path().join(format!("{name}.db"));
    let key_file = dir.path().join("token.key");
    crate::crypto::Sealer::load_or_create(&key_file)?;
    let port = free_port()?;
    let toml = ticking_toml(
        b,
        cron,
        &format!("sqlite://{}", db.display()),
        port,
        &key_file,
        &sim,
        dir.path(),
    )? + extra;
    let config_path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&config_path, &toml)?;
    let mut seed_config = Config::from_toml(&toml)?;
    seed_config.schedule.cron = String::new();
    let state = AppState::build(seed_config).await?;
    Ok(SqliteFleet {
        sim,
        dir,
        db,
        port,
        config_path,
        state,
    })
}

/// The claim lease the benchmark's daemons run with: how long a killed daemon's claims wait
/// before a peer takes them over (the shipped default is 15 minutes).
pub(super) const CLAIM_LEASE: Duration = Duration::from_secs(30);

/// What [`seed`] made.
pub(super) struct Seeded {
    /// A key of the first workspace.
    pub api_key: String,
    /// Every account's platform, ID and token.
    pub tokens: Vec<(Platform, String, SecretString)>,
    /// Time the simulator took to issue the tokens, and sealing them.
    pub issue_time: Duration,
    /// Time the store took to write the accounts.
    pub write_time: Duration,
}

/// Registers `accounts` accounts over [`WORKSPACES`] workspaces and the five platforms
/// through the store, each with a token `sim` issued, 10,000 a transaction.
pub(super) async fn seed(state: &AppState, sim: &Simulator, accounts: usize) -> anyhow::Result<Seeded> {
    eprintln!("importing {accounts} accounts into {WORKSPACES} workspaces ...");
    let (first, api_key) = super::workspace_key(state, "ws0").await?;
    let mut workspaces = vec![first];
    for w in 1..WORKSPACES {
        workspaces.push(state.store.ensure_workspace(&format!("ws{w}"), domain::now()).await?);
    }
    let now = domain::now();
    let mut tokens = Vec::with_capacity(accounts);
    let mut batch = Vec::with_capacity(10_000);
    let mut issue_time = Duration::ZERO;
    let mut write_time = Duration::ZERO;
    for i in 0..accounts {
        let t = Instant::now();
        let (account, token) = super::bench_account(state, sim, i, workspaces[i % WORKSPACES], now)?;
        issue_time += t.elapsed();
        batch.push(account);
        tokens.push(token);
        if batch.len() == 10_000 || i + 1 == accounts {
            let t = Instant::now();
            state.store.insert_accounts(&batch).await?;
            write_time += t.elapsed();
            batch.clear();
            if (i + 1) % 100_000 == 0 {
                eprintln!("  {} accounts imported", i + 1);
            }
        }
    }
    Ok(Seeded {
        api_key,
        tokens,
        issue_time,
        write_time,
    })
}
