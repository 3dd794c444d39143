//! socialsyncer: watches the OAuth tokens of connected social media accounts, records their
//! health in SQLite (or PostgreSQL, for several daemons), serves it over HTTP and warns people
//! before a token dies.
#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

/// `println!` for command output that never panics: a closed standard output (as in
/// `socialsyncer demo | head`) makes the write fail, and the output is simply dropped.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod accounts; // registration steps shared by the API and the CLI
pub mod alerts; // alert events and their email delivery
pub mod api; // HTTP routes, authentication, error format
pub mod app; // shared state and start-up
#[cfg(feature = "simulator")]
pub mod bench; // `socialsyncer bench sweep` and `bench api`
pub mod checks; // one check of one account, and many in parallel
pub mod cli; // command-line commands
pub mod clock; // the daemon's clock (tests move it)
pub mod cluster; // several daemons on one PostgreSQL database: heartbeats, shared budgets
pub mod config; // typed configuration
pub mod connect; // connect links: sessions and the OAuth callbacks
pub mod crypto; // API key hashing and token sealing
#[cfg(feature = "simulator")]
pub mod demo; // `socialsyncer demo`: simulated platforms and sample accounts
pub mod domain; // validated domain types
pub mod health; // pure health assessment
pub mod live; // values a reload replaces (watch channels)
pub mod metrics; // Prometheus metrics
pub mod pacing; // per-platform pacing gates, throttle holds and on-demand turns
pub mod platforms; // one adapter per platform behind one trait
pub mod problems; // the daemon's own configuration problems
pub mod scheduler; // cron-driven sweeps with bounded concurrency
pub mod server; // the daemon's listener and shutdown
#[cfg(feature = "simulator")]
pub mod simulator; // simulated platforms on loopback for tests, demo and benchmarks
pub mod store; // every SQL statement
pub mod systemd; // READY, WATCHDOG and STOPPING notifications
pub mod tasks; // every background task, named, through one tracker
pub mod telemetry; // tracing setup
