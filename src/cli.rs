//! The command line: `serve`, `migrate`, `keys`, `accounts import`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{self, AppState};
use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::domain::{self, WorkspaceName};
use crate::domain::{Health, Platform};
#[cfg(feature = "simulator")]
use crate::{bench, demo};
use crate::{checks, server, telemetry};

mod accounts_cli;
mod database;
mod rotate;
use database::{config_check, copy_database};
use rotate::rotate_token_key;

/// socialsyncer: keeps watch over the OAuth tokens of connected social media accounts.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Config file [default: $SOCIALSYNCER_CONFIG, then config/socialsyncer.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: migrations, scheduler, HTTP listener (stops cleanly on SIGTERM/SIGINT).
    Serve,
    /// Apply database migrations and exit; with --from and --to, copy a SQLite database
    /// into an empty PostgreSQL one instead.
    Migrate {
        /// The SQLite database to copy (`sqlite://PATH`); needs --to.
        #[arg(long, value_name = "URL", requires = "to")]
        from: Option<String>,
        /// The PostgreSQL database to copy into (`postgres://...`, empty; its password may
        /// come from `database.password_file`); needs --from.
        #[arg(long, value_name = "URL", requires = "from")]
        to: Option<String>,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Check every account now, print a table, exit 1 if any account is unhealthy, 3 if no
    /// account could be checked (the platforms did not answer, or the configuration is wrong).
    ///
    /// A token key that does not open the stored tokens stops it (exit 2) before anything
    /// is written.
    /// The daemon's sweeps already check every account on schedule, so this is not needed
    /// while `serve` runs; it is for a one-off look. It uses the daemon's refresh leases and
    /// per-platform pacing, so running it beside the daemon burns no refresh token and no
    /// extra quota.
    Check {
        /// Only this platform.
        #[arg(long)]
        platform: Option<String>,
    },
    /// Benchmarks.
    #[cfg(feature = "simulator")]
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Re-seal every stored token under a new key (stop the daemon first), then point
    /// security.token_key_file at the new key.
    RotateTokenKey {
        /// The new key: 32 raw bytes or 64 hex digits (e.g. `head -c 32 /dev/urandom > new.key`).
        #[arg(long, value_name = "PATH")]
        new_key_file: PathBuf,
    },
    /// Check the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Notifications.
    #[command(subcommand)]
    Notify(NotifyCommand),
    /// Print a shell completion script: bash, zsh or fish (the .deb installs them).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `socialsyncer man | man -l -`.
    Man,
    /// Start simulated platforms and a daemon with sample accounts; print a key and URLs.
    #[cfg(feature = "simulator")]
    Demo {
        /// Address to serve on [default: 127.0.0.1:8080]
        #[arg(long)]
        listen: Option<String>,
    },
}

/// `notify` subcommands.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message to every receiver: the operator's (`email.to`, `[[notify.webhook]]`)
    /// and, with --workspace, that workspace's; print what each answered. Exit 1 if any failed.
    Test {
        /// Also that workspace's own addresses and webhooks.
        #[arg(long)]
        workspace: Option<String>,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config file and the files it names (secrets readable, the token key's
    /// length, the database reachable), then print the effective configuration with secrets
    /// redacted. Exit 0 when everything is usable, 2 otherwise.
    Check,
    /// Print every configuration key with its default, whether a reload applies it, and what
    /// it does (Markdown: docs/configuration.md).
    Reference,
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a workspace if needed and print a new API key (shown only this once).
    Create {
        /// Workspace name.
        #[arg(long)]
        workspace: String,
        /// What the key may do, comma-separated: read (the GET routes), manage (register,
        /// replace, delete, check, notifications), tokens (read tokens).
        #[arg(long, default_value = "read,manage")]
        scope: String,
    },
    /// List keys by prefix (the keys themselves are never shown again).
    List,
    /// Revoke the key with this prefix (as shown by `keys list`).
    Revoke {
        /// Key prefix, e.g. sk_1a2b3c4d.
        prefix: String,
    },
}

/// `accounts` subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Register an account; the access token is read from standard input.
    Import {
        /// Workspace (must exist: `keys create` makes it).
        #[arg(long)]
        workspace: String,
        /// Platform: instagram, facebook, threads, tiktok or twitter.
        #[arg(long)]
        platform: String,
        /// The platform's account ID.
        #[arg(long)]
        account_id: String,
        /// Display name.
        #[arg(long)]
        username: String,
        /// File holding the refresh token.
        #[arg(long, value_name = "PATH")]
        refresh_token_file: Option<PathBuf>,
        /// Access token expiry, RFC 3339 (e.g. 2026-12-31T00:00:00Z).
        #[arg(long)]
        expires_at: Option<String>,
        /// Granted scopes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Who refreshes the grant: socialsyncer or product (default: accounts.default_custody).
        #[arg(long)]
        custody: Option<String>,
        /// Instagram only: the login the account was connected with, instagram (Instagram
        /// Login) or facebook (Facebook Login) (default: platforms.instagram.login).
        #[arg(long)]
        instagram_login: Option<String>,
        /// Give an account already registered new tokens (after a reconnect): they are checked
        /// at the platform, must be this account's, and nothing is revoked. Without
        /// --refresh-token-file the stored refresh token stays.
        #[arg(long)]
        replace: bool,
    },
}

/// Runs the CLI; the binary's whole `main`.
/// The command line, parsed; `demo --help` lists only what the demo takes (it refuses
/// the global `--config`).
fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let mut cmd = Cli::command();
    if cfg!(feature = "simulator") && std::env::args().nth(1).as_deref() == Some("demo") {
        cmd = cmd.mut_arg("config", |a| a.hide(true));
    }
    let matches = cmd.get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

pub fn main() -> ExitCode {
    crate::crypto::install_tls_provider();
    let cli = parse();
    // What only prints the command line's own shape needs no configuration.
    let printed = match &cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "socialsyncer", &mut buf);
            Some(buf)
        }
        Command::Config(ConfigCommand::Reference) => Some(crate::config::reference().into_bytes()),
        Command::Man => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .map(|()| buf)
                .ok()
        }
        _ => None,
    };
    if let Some(text) = printed {
        use std::io::Write;
        // A reader that stops early (`| head`) is not an error.
        return match std::io::stdout().write_all(&text) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => ExitCode::FAILURE,
            _ => ExitCode::SUCCESS,
        };
    }
    #[cfg(feature = "simulator")]
    if let Command::Demo { .. } = cli.command {
        // The demo runs on a throwaway configuration of its own: a --config would be
        // silently ignored, so it is refused.
        if cli.config.is_some() {
            eprintln!(
                "socialsyncer: demo runs on its own throwaway configuration and database; --config does not apply to it"
            );
            return ExitCode::from(2);
        }
        telemetry::init(crate::config::LogFormat::Compact, "info");
        return match tokio::runtime::Runtime::new() {
            Ok(rt) => match rt.block_on(run(cli.command, Config::default())) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("socialsyncer: {e:#}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("socialsyncer: cannot start the async runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let (path, explicit) = match (&cli.config, std::env::var_os("SOCIALSYNCER_CONFIG")) {
        (Some(p), _) => (p.clone(), true),
        (None, Some(p)) => (PathBuf::from(p), true),
        (None, None) => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let config = match Config::load(&path, explicit) {
        Ok(c) => c,
        Err(ConfigError(msg)) => {
            eprintln!("socialsyncer: configuration error in {}: {msg}", path.display());
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log.format, &config.log.level);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("socialsyncer: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_from(cli.command, config, Some((path, explicit)))) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<app::UsageError>().is_some() => {
            eprintln!("socialsyncer: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("socialsyncer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The line every admin command starts with, so that nobody wonders which database it used.
fn say_database(config: &Config) -> anyhow::Result<()> {
    eprintln!("database: {}", app::database_label(config));
    Ok(())
}

/// Runs one command with a loaded config.
pub async fn run(command: Command, config: Config) -> anyhow::Result<ExitCode> {
    run_from(command, config, None).await
}

/// As [`run`]; `source` is the config file and whether it was named (for SIGHUP reloads).
pub async fn run_from(command: Command, config: Config, source: Option<(PathBuf, bool)>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => {
            let state = AppState::build(config).await?;
            if let Some((path, explicit)) = source {
                state.set_config_source(path, explicit);
            }
            // SQLite: held while the daemon runs (one daemon per file; admin commands that
            // must not run beside it check it). PostgreSQL: daemons share the database, and
            // their heartbeats say who runs.
            let lock = if state.store.is_shared() {
                None
            } else {
                Some(app::DaemonLock::acquire(
                    &state.config(),
                    "a second daemon on one SQLite database is refused (several daemons need PostgreSQL)",
                )?)
            };
            if let Some(l) = &lock {
                tracing::debug!(lock = %l.file().display(), "holding the daemon lock");
            }
            server::run(state).await?;
            drop(lock);
        }
        Command::Migrate {
            from: Some(from),
            to: Some(to),
        } => copy_database(&config, &from, &to).await?,
        Command::Migrate { .. } => {
            say_database(&config)?;
            let store = app::open_store(&config, app::Create::Yes).await?;
            store.close().await;
            eprintln!("migrations applied");
        }
        Command::Keys(k) => accounts_cli::keys(k, &config).await?,
        Command::Config(ConfigCommand::Check) => return config_check(&config, source).await,
        Command::Check { platform } => return check(config, platform).await,
        Command::Notify(NotifyCommand::Test { workspace }) => return notify_test(config, workspace).await,
        #[cfg(feature = "simulator")]
        Command::Demo { listen } => demo::run(listen).await?,
        Command::RotateTokenKey { new_key_file } => rotate_token_key(&config, &new_key_file).await?,
        #[cfg(feature = "simulator")]
        Command::Bench(b) => bench::run(b).await?,
        Command::Accounts(cmd) => accounts_cli::run(cmd, config).await?,
        Command::Completions { .. } | Command::Man | Command::Config(ConfigCommand::Reference) => {}
    }
    Ok(ExitCode::SUCCESS)
}

async fn notify_test(config: Config, workspace: Option<String>) -> anyhow::Result<ExitCode> {
    say_database(&config)?;
    let state = AppState::build_with(config, app::Create::No).await?;
    let ws = match &workspace {
        Some(name) => {
            let name: WorkspaceName = name.parse()?;
            state
                .store
                .workspace_id(name.as_str())
                .await?
                .ok_or_else(|| app::UsageError(format!("no workspace named {}", name.as_str())))?
        }
        // No workspace has this ID: the operator's receivers only.
        None => crate::domain::WorkspaceId(-1),
    };
    match &workspace {
        Some(name) => out!("receivers of workspace {name} (its own, then the operator's):"),
        None => out!("the operator's receivers (email.to and [[notify.webhook]], for every workspace):"),
    }
    let results = crate::alerts::test_message(&state.outbox, ws, true).await?;
    if results.is_empty() {
        out!("no receivers: set email.to or [[notify.webhook]], or a workspace's via PUT /v1/notifications");
        return Ok(ExitCode::from(1));
    }
    let mut failed = false;
    for (receiver, result) in &results {
        failed |= !result.starts_with("delivered");
        out!("{receiver}\t{result}");
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn check(config: Config, platform: Option<String>) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let platform: Option<Platform> = platform.as_deref().map(str::parse).transpose()?;
    say_database(&config)?;
    let state = AppState::build_with(config, app::Create::No).await?;
    let accounts = state.store.all_accounts(platform).await?;
    let total = accounts.len();
    let progress = std::io::stderr().is_terminal() && total > 50;
    let mut done = 0usize;
    let started = std::time::Instant::now();
    let mut last_print = started;
    let checked = checks::check_all(&state.checker, accounts, state.config().schedule.concurrency, |_| {
        done += 1;
        if progress && (last_print.elapsed().as_millis() >= 250 || done == total) {
            last_print = std::time::Instant::now();
            eprint!(
                "\rchecked {done}/{total} accounts ({:.0}s)",
                started.elapsed().as_secs_f64()
            );
        }
    })
    .await?;
    if progress {
        eprintln!();
    }
    for chunk in checked.chunks(500) {
        let updates: Vec<_> = chunk.iter().map(|c| c.update.clone()).collect();
        state.store.record_checks(&updates).await?;
    }
    let mut rows: Vec<_> = checked.iter().collect();
    rows.sort_by(|a, b| (a.account.platform, &a.account.account_id).cmp(&(b.account.platform, &b.account.account_id)));
    out!(
        "{:<10} {:<38} {:<24} {:<10} {:<21} RECOMMENDATION",
        "PLATFORM",
        "ACCOUNT",
        "USERNAME",
        "HEALTH",
        "EXPIRES"
    );
    let mut unhealthy = 0;
    for c in &rows {
        let u = &c.update;
        if u.state.health == Health::Unhealthy {
            unhealthy += 1;
        }
        let expires = u.token_expires_at.map(domain::rfc3339).unwrap_or_else(|| "-".into());
        let rec = u.state.recommendations.first().cloned().unwrap_or_default();
        out!(
            "{:<10} {:<38} {:<24} {:<10} {:<21} {rec}",
            c.account.platform.as_str(),
            c.account.account_id,
            domain::truncate_for_message(&c.account.username)
                .chars()
                .take(24)
                .collect::<String>(),
            u.state.health.as_str(),
            expires
        );
    }
    eprintln!(
        "{} account(s) checked in {:.1}s, {unhealthy} unhealthy",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    state.store.close().await;
    // A platform that did not answer, or the daemon's own configuration, left every
    // account as it was: the run checked nothing.
    let answered = rows.iter().filter(|c| c.update.answered).count();
    if !rows.is_empty() && answered == 0 {
        eprintln!(
            "none of the {} account(s) could be checked: the platforms did not answer or the configuration is \
             wrong (see RECOMMENDATION, and `socialsyncer config check`); their health is unchanged",
            rows.len()
        );
        return Ok(ExitCode::from(3));
    }
    Ok(if unhealthy > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
