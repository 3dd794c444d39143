//! `socialsyncer bench sweep`: a sweep of N accounts against simulated platforms with a fixed
//! latency, measured against its lower bound N*L/C; and a bulk write of N results. `bench api`
//! is in `api`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::SecretString;

use crate::accounts::seal_context;
use crate::app::AppState;
use crate::config::Config;
use crate::domain::{self, AccountId, Health, Platform};
use crate::platforms::TokenContext;
use crate::scheduler;
use crate::simulator::{Simulator, TokenSpec};
use crate::store::{HealthUpdate, NewAccount};

mod api;
mod cluster;
mod command;
mod conns;
mod daemon;
mod fleet;
mod history;
mod idle;
mod load;
mod scale;
mod soak;
mod status;

pub use api::{ApiBench, api};
pub use command::{BenchCommand, run};
pub use conns::conns;
pub use fleet::ScaleBench;
pub use scale::scale;

/// Parameters of the sweep benchmark.
#[derive(Debug, Clone)]
pub struct SweepBench {
    /// Accounts.
    pub accounts: usize,
    /// Latency injected into every simulated answer.
    pub latency: Duration,
    /// Checks in flight (per daemon).
    pub concurrency: usize,
    /// A PostgreSQL database to run on (empty: it must hold no workspace) instead of a
    /// temporary SQLite file.
    pub database: Option<String>,
    /// Daemons sweeping the same database at once in the last run (PostgreSQL).
    pub daemons: usize,
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) this process has used so far, from `/proc/self/stat`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// Runs the benchmark and prints its numbers.
pub async fn sweep(b: SweepBench) -> anyhow::Result<()> {
    // The simulated platforms run on a thread of their own, apart from the daemon's runtime.
    let sim = Simulator::start_in_thread()?;
    for p in Platform::ALL {
        sim.set_latency(p, b.latency);
    }
    let dir = tempfile::Builder::new().prefix("socialsyncer-bench-").tempdir()?;
    let url = match &b.database {
        Some(url) => url.clone(),
        None => format!("sqlite://{}/bench.db", dir.path().display()),
    };
    let key = dir.path().join("token.key");
    crate::crypto::Sealer::load_or_create(&key)?;
    let mut toml = format!(
        "[database]\nurl = \"{url}\"\n[security]\ntoken_key_file = \"{}\"\n\
         [schedule]\ncron = \"\"\nconcurrency = {}\nbatch_size = 2000\n\
         [http]\nrequest_timeout = \"60s\"\n{}",
        key.display(),
        b.concurrency,
        sim.config_toml(dir.path())?
    );
    // No pacing and no refreshes: the benchmark measures the sweep machinery itself.
    for p in Platform::ALL {
        toml = toml.replace(
            &format!("[platforms.{p}]\n"),
            &format!("[platforms.{p}]\nrate_limit = 0\nauto_refresh = false\n"),
        );
    }
    let config = Config::from_toml(&toml)?;
    let state = AppState::build(config).await?;
    if b.daemons > 1 && !state.store.is_shared() {
        bail!("--daemons above 1 needs a PostgreSQL --database (one daemon per SQLite file)");
    }
    if state.store.workspace_id("bench").await?.is_some() || state.store.sealed_count().await? > 0 {
        bail!(
            "the benchmark database {} already holds accounts; give it an empty database",
            crate::config::redact_url(&url)
        );
    }
    let ws = state.store.ensure_workspace("bench", domain::now()).await?;

    eprintln!("preparing {} accounts ...", b.accounts);
    let setup = Instant::now();
    let now = domain::now();
    let mut batch = Vec::with_capacity(10_000);
    let mut tokens = Vec::with_capacity(b.accounts);
    for i in 0..b.accounts {
        let (account, token) = bench_account(&state, &sim, i, ws, now)?;
        batch.push(account);
        tokens.push(token);
        if batch.len() == 10_000 {
            state.store.insert_accounts(&batch).await?;
            batch.clear();
        }
    }
    state.store.insert_accounts(&batch).await?;
    eprintln!("prepared in {:.1}s; sweeping ...", setup.elapsed().as_secs_f64());

    let bound = b.accounts as f64 * b.latency.as_secs_f64() / b.concurrency as f64;
    out!(
        "sweep benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    out!("  database            {}", state.store.backend_name());
    out!("  accounts N          {}", b.accounts);
    out!("  latency L           {} ms", b.latency.as_millis());
    out!("  concurrency C       {}", b.concurrency);
    out!("  lower bound N*L/C   {bound:.3} s");
    // The first sweep assesses every account for the first time (every row changes); the
    // second, with every account due again, is the steady state of a running daemon.
    let mut steady = None;
    for (name, what) in [
        ("first sweep", "every account new"),
        ("repeat sweep", "same accounts, all due again"),
    ] {
        if name == "repeat sweep" {
            state.store.reschedule_all(domain::now()).await?;
        }
        let checks_before = state.metrics.check_time_totals();
        let cpu_before = cpu_time();
        let report = {
            let state = state.clone();
            tokio::spawn(
                async move { scheduler::sweep(&state.sweeper, &tokio_util::sync::CancellationToken::new()).await },
            )
            .await??
        };
        let cpu = cpu_before.zip(cpu_time()).map(|(a, b)| b.saturating_sub(a));
        let secs = report.duration.as_secs_f64();
        let checks_after = state.metrics.check_time_totals();
        out!("  {name} ({what})");
        out!(
            "    checked           {} (ok {}, invalid {}, transient {}, deferred {})",
            report.checked,
            report.ok,
            report.invalid,
            report.transient,
            report.deferred
        );
        out!("    sweep time        {secs:.3} s");
        out!("    ratio             {:.3}", secs / bound);
        out!("    checks per second {:.0}", report.checked as f64 / secs);
        let timed = checks_after.0 - checks_before.0;
        if timed > 0 {
            out!(
                "    mean check time   {:.2} ms (request, answer and assessment)",
                (checks_after.1 - checks_before.1) * 1e3 / timed as f64
            );
        }
        if let Some(cpu) = cpu {
            out!(
                "    CPU time          {:.2} s, {:.0} µs per check (daemon and simulator)",
                cpu.as_secs_f64(),
                cpu.as_secs_f64() * 1e6 / report.checked.max(1) as f64
            );
        }
        out!(
            "    store write time  {:.3} s, overlapping the checks ({} results)",
            report.write_time.as_secs_f64(),
            report.checked
        );
        steady = Some(report);
    }

    // Several daemons on the database, each with its own concurrency, sweeping at once (as
    // their crons fire together): throughput against one daemon's repeat sweep.
    if b.daemons > 1 {
        let mut states = vec![state.clone()];
        for _ in 1..b.daemons {
            states.push(AppState::build(Config::from_toml(&toml)?).await?);
        }
        // One daemon's figure is the repeat sweep just above.
        let one = steady.context("the repeat sweep ran")?;
        state.store.reschedule_all(domain::now()).await?;
        let started = Instant::now();
        let mut runs = tokio::task::JoinSet::new();
        for s in &states {
            let s = s.clone();
            runs.spawn(async move { scheduler::sweep(&s.sweeper, &tokio_util::sync::CancellationToken::new()).await });
        }
        let mut checked = Vec::new();
        while let Some(r) = runs.join_next().await {
            checked.push(r??.checked);
        }
        let secs = started.elapsed().as_secs_f64();
        let one_rate = one.checked as f64 / one.duration.as_secs_f64();
        let many_rate = checked.iter().sum::<usize>() as f64 / secs;
        out!(
            "  {} daemons at once (each C={}, same accounts, all due again)",
            b.daemons,
            b.concurrency
        );
        out!(
            "    checked           {} ({:?} by daemon)",
            checked.iter().sum::<usize>(),
            checked
        );
        out!(
            "    sweep time        {secs:.3} s (one daemon, the repeat sweep: {:.3} s)",
            one.duration.as_secs_f64()
        );
        out!(
            "    throughput        {many_rate:.0} checks/s against {one_rate:.0} for one daemon: ratio {:.2}",
            many_rate / one_rate
        );
        for s in states.iter().skip(1) {
            s.store.close().await;
        }
    }

    // The floor: the same checks straight through the platform adapters, nothing read,
    // assessed or stored. What the sweep adds on this machine is the difference.
    let cpu_before = cpu_time();
    let floor = {
        let (state, tokens) = (state.clone(), std::sync::Arc::new(tokens));
        tokio::spawn(async move { adapter_floor(&state, tokens, b.concurrency).await }).await??
    };
    out!(
        "  adapter floor       {:.3} s, ratio {:.3} (the same checks through the adapters alone: no database, no assessment)",
        floor.as_secs_f64(),
        floor.as_secs_f64() / bound
    );
    if let Some(cpu) = cpu_before.zip(cpu_time()).map(|(a, z)| z.saturating_sub(a)) {
        out!(
            "    CPU time          {:.2} s, {:.0} µs per check (adapters and simulator)",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / b.accounts.max(1) as f64
        );
    }

    // Bulk writes of N results in one transaction each: once with every assessment changed
    // (all columns written), once unchanged (the steady state).
    let accounts = state.store.all_accounts(None).await?;
    for unchanged in [false, true] {
        let updates: Vec<HealthUpdate> = accounts.iter().map(|a| bulk_update(a, unchanged)).collect();
        let t = Instant::now();
        state.store.record_checks(&updates).await?;
        out!(
            "  bulk write          {:.3} s for {} results in one transaction ({})",
            t.elapsed().as_secs_f64(),
            updates.len(),
            if unchanged {
                "assessments unchanged"
            } else {
                "every assessment changed"
            }
        );
    }
    if let Some(m) = peak_rss_mib() {
        out!("  peak memory         {m:.0} MiB (VmHWM, simulator included)");
    }
    state.store.close().await;
    drop(sim);
    Ok(())
}

/// One result for the bulk write: the account's stored assessment again (`unchanged`), or a
/// different one (a warning with a recommendation), so that every column is written.
fn bulk_update(a: &crate::store::Account, unchanged: bool) -> HealthUpdate {
    let now = domain::now();
    // The stored assessment again, answered: a deferral's content as a real check's result.
    let mut u = HealthUpdate {
        answered: true,
        outcome: crate::domain::CheckLabel::Ok,
        unchanged,
        deferred: false,
        ..HealthUpdate::deferral(a, now, now + 21_600, String::new())
    };
    u.state.last_error = a.state.last_error.clone();
    if !unchanged {
        u.state.health = Health::Warning;
        u.state.recommendations = vec!["The access token expires in 5 days: reconnect the account before then.".into()];
        u.state.last_error = Some("bench: a changed assessment".into());
    }
    u
}

/// Checks every token through the platform adapters with `concurrency` in flight, and nothing
/// else; returns the wall time.
async fn adapter_floor(
    state: &AppState,
    tokens: std::sync::Arc<Vec<(Platform, String, SecretString)>>,
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let tracker = tokio_util::task::TaskTracker::new();
    let started = Instant::now();
    for i in 0..tokens.len() {
        let permit = permits.clone().acquire_owned().await?;
        let (state, tokens) = (state.clone(), tokens.clone());
        tracker.spawn(async move {
            let (platform, account_id, token) = &tokens[i];
            let t = TokenContext {
                account_id,
                access_token: token,
                refresh_token: None,
                platform_user_id: None,
                expires_at: None,
                instagram_login: None,
            };
            let _ = state.platforms.check(*platform, &t).await;
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(started.elapsed())
}

/// A key with every scope for `workspace` (created when missing): the workspace and the
/// key's secret, for the benchmarks' clients.
async fn workspace_key(state: &AppState, workspace: &str) -> anyhow::Result<(crate::domain::WorkspaceId, String)> {
    let ws = state.store.ensure_workspace(workspace, domain::now()).await?;
    let k = crate::crypto::generate_api_key();
    state
        .store
        .insert_api_key(ws, &k.prefix, &k.hash, domain::now(), &crate::domain::KeyScope::ALL)
        .await?;
    Ok((ws, secrecy::ExposeSecret::expose_secret(&k.secret).to_owned()))
}

/// The benchmarks' `i`th account, in workspace `ws`: the five platforms by turns, an ID of
/// the platform's shape, and a valid token `sim` issued, sealed for the store; with the
/// token in the clear (for the adapter floor).
fn bench_account(
    state: &AppState,
    sim: &Simulator,
    i: usize,
    ws: crate::domain::WorkspaceId,
    now: domain::UnixTime,
) -> anyhow::Result<(NewAccount, (Platform, String, SecretString))> {
    let p = Platform::ALL[i % Platform::ALL.len()];
    let id = if p == Platform::Tiktok {
        format!("open-{i}")
    } else {
        format!("{}", 10_000_000 + i)
    };
    let issued = sim.issue(p, TokenSpec::valid(p, &id));
    let token = SecretString::from(issued.access_token);
    let account = NewAccount {
        custody: crate::domain::Custody::Socialsyncer,
        instagram_login: None,
        workspace_id: ws,
        platform: p,
        account_id: AccountId::parse(p, &id).context("generated ID")?,
        username: format!("account{i}"),
        access_token: state.sealer.seal(&seal_context(ws, p, &id), &token),
        refresh_token: None,
        token_expires_at: issued.expires_at,
        scopes: crate::simulator::default_scopes(p),
        connected_at: now,
    };
    Ok((account, (p, id, token)))
}
