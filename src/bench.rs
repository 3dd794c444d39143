//! `socialsyncer bench sweep`: a sweep of N accounts against simulated platforms with a fixed
//! latency, measured against its lower bound N*L/C; and a bulk write of N results.

use std::time::{Duration, Instant};

use anyhow::Context;
use secrecy::SecretString;

use crate::accounts::seal_context;
use crate::app::AppState;
use crate::config::Config;
use crate::domain::{self, AccountId, Health, Platform};
use crate::scheduler;
use crate::simulator::{Simulator, TokenSpec};
use crate::store::{HealthUpdate, NewAccount};

/// Parameters of the sweep benchmark.
#[derive(Debug, Clone, Copy)]
pub struct SweepBench {
    /// Accounts.
    pub accounts: usize,
    /// Latency injected into every simulated answer.
    pub latency: Duration,
    /// Checks in flight.
    pub concurrency: usize,
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

/// Runs the benchmark and prints its numbers.
pub async fn sweep(b: SweepBench) -> anyhow::Result<()> {
    let sim = Simulator::start().await?;
    for p in Platform::ALL {
        sim.set_latency(p, b.latency);
    }
    let dir = tempfile::Builder::new().prefix("socialsyncer-bench-").tempdir()?;
    let mut toml = format!(
        "[database]\nurl = \"sqlite://{}/bench.db\"\n[schedule]\ncron = \"\"\nconcurrency = {}\nbatch_size = 2000\n\
         [http]\nrequest_timeout = \"60s\"\n{}",
        dir.path().display(),
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
    let ws = state.store.ensure_workspace("bench", domain::now()).await?;

    eprintln!("preparing {} accounts ...", b.accounts);
    let setup = Instant::now();
    let now = domain::now();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..b.accounts {
        let p = Platform::ALL[i % Platform::ALL.len()];
        let id = if p == Platform::Tiktok {
            format!("open-{i}")
        } else {
            format!("{}", 10_000_000 + i)
        };
        let issued = sim.issue(p, TokenSpec::valid(p, &id));
        let ctx = seal_context(ws, p, &id);
        batch.push(NewAccount {
            workspace_id: ws,
            platform: p,
            account_id: AccountId::parse(p, &id).context("generated ID")?,
            username: format!("bench{i}"),
            access_token: state.sealer.seal(&ctx, &SecretString::from(issued.access_token)),
            refresh_token: None,
            token_expires_at: issued.expires_at,
            scopes: crate::simulator::default_scopes(p),
            connected_at: now,
        });
        if batch.len() == 10_000 {
            state.store.insert_accounts(&batch).await?;
            batch.clear();
        }
    }
    state.store.insert_accounts(&batch).await?;
    eprintln!("prepared in {:.1}s; sweeping ...", setup.elapsed().as_secs_f64());

    let report = scheduler::sweep(&state, &tokio_util::sync::CancellationToken::new()).await?;
    let bound = b.accounts as f64 * b.latency.as_secs_f64() / b.concurrency as f64;
    let secs = report.duration.as_secs_f64();

    // A bulk write of N results, as one sweep's worth of history and health rows.
    let accounts = state.store.all_accounts(None).await?;
    let updates: Vec<HealthUpdate> = accounts
        .iter()
        .map(|a| HealthUpdate {
            account_ref: a.id,
            health: Health::Healthy,
            token_valid: Some(true),
            needs_reconnect: false,
            permissions: Some(a.scopes.clone()),
            missing_permissions: vec![],
            recommendations: vec![],
            token_expires_at: a.token_expires_at,
            data_access_expires_at: a.data_access_expires_at,
            platform_user_id: a.platform_user_id.clone(),
            last_error: None,
            checked_at: domain::now(),
            answered: true,
            next_check_at: domain::now() + 21_600,
            outcome: "ok",
            previous_health: a.health,
            previous_token_expires_at: a.token_expires_at,
            refresh_failures: 0,
            last_refresh_error: None,
            alerts: vec![],
            open_alerts: vec![],
            alert_episode: 0,
        })
        .collect();
    let t = Instant::now();
    state.store.record_checks(&updates).await?;
    let bulk = t.elapsed().as_secs_f64();

    println!(
        "sweep benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  accounts N          {}", b.accounts);
    println!("  latency L           {} ms", b.latency.as_millis());
    println!("  concurrency C       {}", b.concurrency);
    println!(
        "  checked             {} (ok {}, invalid {}, transient {}, deferred {})",
        report.checked, report.ok, report.invalid, report.transient, report.deferred
    );
    println!("  sweep time          {secs:.3} s");
    println!("  lower bound N*L/C   {bound:.3} s");
    println!("  ratio               {:.3}", secs / bound);
    println!("  checks per second   {:.0}", report.checked as f64 / secs);
    println!(
        "  store write time    {:.3} s during the sweep ({} results)",
        report.write_time.as_secs_f64(),
        report.checked
    );
    println!(
        "  bulk write          {:.3} s for {} results in one transaction",
        bulk,
        updates.len()
    );
    if let Some(m) = peak_rss_mib() {
        println!("  peak memory         {m:.0} MiB (VmHWM, simulator included)");
    }
    state.store.close().await;
    drop(sim);
    Ok(())
}
