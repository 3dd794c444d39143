//! The `bench` subcommands and their arguments.

use anyhow::bail;
use clap::Subcommand;

use super::*;

/// `bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// One sweep of N accounts on simulated platforms with latency L and concurrency C.
    Sweep {
        /// Accounts N.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Latency L of every simulated answer, in milliseconds.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// Concurrency C (per daemon).
        #[arg(long, default_value_t = 200)]
        concurrency: usize,
        /// Run on this PostgreSQL database (postgres://..., empty) instead of a temporary
        /// SQLite file.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// With a PostgreSQL --database: also sweep with this many daemons at once and print
        /// their throughput against one daemon's.
        #[arg(long, default_value_t = 1)]
        daemons: usize,
    },
    /// The HTTP API: uncached and cached full lists, the 304 path, a paginated walk, memory.
    Api {
        /// Accounts per workspace.
        #[arg(long, default_value_t = 1_000)]
        accounts: usize,
        /// Workspaces.
        #[arg(long, default_value_t = 10)]
        workspaces: usize,
        /// Concurrent clients in the throughput runs.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds of each throughput run.
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        /// Afterwards, leave the daemon serving (for wrk and the like) until Ctrl-C, with the
        /// full list's body written beside it (for a static server to serve the same bytes).
        #[arg(long)]
        keep: bool,
    },
    /// N accounts over 100 workspaces on one daemon in its own process: import, start, a
    /// first, a repeat and a third sweep against the adapter floor, the API during the third, memory,
    /// a metrics scrape, and each platform's sweep time at the default rate limits.
    Scale {
        /// Accounts N.
        #[arg(long, default_value_t = 100_000)]
        accounts: usize,
        /// Latency L of every simulated answer, in milliseconds.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// Checks in flight C.
        #[arg(long, default_value_t = 1_000)]
        concurrency: usize,
        /// API clients reading during the third sweep.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Afterwards, simulated days of history (a check per account every
        /// health.check_interval) and the pruning of the oldest day (0: skip).
        #[arg(long, default_value_t = 30)]
        history_days: u32,
        /// Run on this PostgreSQL database (postgres://..., empty) with --daemons daemons
        /// instead of one daemon on a temporary SQLite file: rounds of one daemon and of all of
        /// them (each account checked exactly once a round), one killed mid-round, the
        /// database's connections and size.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
        /// Daemons sharing the PostgreSQL --database.
        #[arg(long, default_value_t = 3)]
        daemons: usize,
        /// The daemon's database.sqlite_cache_mib (its default when not given).
        #[arg(long, value_name = "MIB")]
        sqlite_cache_mib: Option<u32>,
        /// The daemon's database.sqlite_memory_mib (its default when not given; 0: no bound).
        #[arg(long, value_name = "MIB")]
        sqlite_memory_mib: Option<u32>,
    },
    /// 10,000 registrations through the API of a daemon started by hand, then its idle RSS
    /// (5 s after them, and after --idle-s seconds).
    Idle {
        /// Clients registering at once.
        #[arg(long, default_value_t = 16)]
        clients: usize,
        /// Seconds after the registrations at which the RSS is read again.
        #[arg(long, default_value_t = 60)]
        idle_s: u64,
    },
    /// N accounts re-checked every minute by a daemon started by hand, for --minutes: once a
    /// minute its RSS, file descriptors, threads, checks and errors, then what changed.
    Soak {
        /// Accounts N.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// How long it runs, in minutes.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
        /// Latency L of every simulated answer, in milliseconds.
        #[arg(long, default_value_t = 20)]
        latency_ms: u64,
        /// API clients, each reading the health list or one account's detail once a second.
        #[arg(long, default_value_t = 4)]
        clients: usize,
    },
    /// Connections that hold on (silent, half a request, idle, HTTP/2, never reading) at the
    /// shipped limits: how long a real request waits, and what each held connection costs.
    Conns {
        /// Connections of each kind.
        #[arg(long, default_value_t = 5_000)]
        connections: usize,
    },
}

/// Runs a `bench` subcommand.
pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Sweep {
            accounts,
            latency_ms,
            concurrency,
            database,
            daemons,
        } => {
            if accounts == 0 || concurrency == 0 || latency_ms == 0 {
                bail!("--accounts, --latency-ms and --concurrency must be at least 1");
            }
            sweep(SweepBench {
                accounts,
                latency: std::time::Duration::from_millis(latency_ms),
                concurrency,
                database,
                daemons: daemons.max(1),
            })
            .await?
        }
        BenchCommand::Api {
            accounts,
            workspaces,
            clients,
            seconds,
            keep,
        } => {
            if accounts == 0 || workspaces == 0 || clients == 0 || seconds == 0 {
                bail!("--accounts, --workspaces, --clients and --seconds must be at least 1");
            }
            api(ApiBench {
                accounts,
                workspaces,
                clients,
                duration: std::time::Duration::from_secs(seconds),
                keep,
            })
            .await?
        }
        BenchCommand::Scale {
            accounts,
            latency_ms,
            concurrency,
            clients,
            history_days,
            database,
            daemons,
            sqlite_cache_mib,
            sqlite_memory_mib,
        } => {
            if accounts == 0 || concurrency == 0 || latency_ms == 0 || clients == 0 {
                bail!("--accounts, --latency-ms, --concurrency and --clients must be at least 1");
            }
            if database.is_some() && daemons < 2 {
                bail!("--daemons must be at least 2 (one daemon's round is measured first in any case)");
            }
            if database
                .as_deref()
                .is_some_and(|u| !u.starts_with("postgres://") && !u.starts_with("postgresql://"))
            {
                bail!(
                    "--database takes a PostgreSQL URL (postgres://...); without it the bench runs on a temporary SQLite file"
                );
            }
            let b = ScaleBench {
                accounts,
                latency: std::time::Duration::from_millis(latency_ms),
                concurrency,
                clients,
                history_days,
                database,
                daemons,
                sqlite_cache_mib,
                sqlite_memory_mib,
            };
            match b.database.clone() {
                Some(url) => cluster::cluster(&b, &url).await?,
                None => scale(b).await?,
            }
        }
        BenchCommand::Idle { clients, idle_s } => {
            if clients == 0 {
                bail!("--clients must be at least 1");
            }
            idle::idle(clients, idle_s).await?
        }
        BenchCommand::Soak {
            accounts,
            minutes,
            latency_ms,
            clients,
        } => {
            if accounts == 0 || minutes == 0 || latency_ms == 0 {
                bail!("--accounts, --minutes and --latency-ms must be at least 1");
            }
            soak::soak(soak::SoakBench {
                accounts,
                minutes,
                latency: std::time::Duration::from_millis(latency_ms),
                clients,
            })
            .await?
        }
        BenchCommand::Conns { connections } => {
            if connections == 0 {
                bail!("--connections must be at least 1");
            }
            conns(connections).await?
        }
    }
    Ok(())
}
