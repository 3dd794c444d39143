//! Sweeps: on each cron tick, check the accounts whose `next_check_at` is due, with bounded
//! concurrency and a per-platform pace, writing results in batched transactions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::AppState;
use crate::checks::{self, Checked};
use crate::domain::{self, Platform, UnixTime};
use crate::platforms::{CheckOutcome, Transient, TransientKind};
use crate::store::StoreError;

/// Results written per transaction.
const WRITE_BATCH: usize = 1000;
/// Longest a result waits in the write buffer.
const WRITE_EVERY: Duration = Duration::from_millis(200);

/// Spaces out the requests to one platform (at most `rate` a second, no burst), and stops
/// them for a while when the platform says it is throttling.
#[derive(Debug)]
pub struct Gate {
    interval: Option<Duration>,
    next: std::sync::Mutex<Instant>,
    blocked_until: AtomicI64,
}

impl Gate {
    fn new(rate: Option<f64>) -> Gate {
        Gate {
            interval: rate.map(|r| Duration::from_secs_f64(1.0 / r)),
            next: std::sync::Mutex::new(Instant::now()),
            blocked_until: AtomicI64::new(0),
        }
    }

    /// Waits for this request's turn.
    async fn pace(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at.into()).await;
    }

    /// The time the platform asked us to wait until, if it is still ahead.
    fn blocked(&self, now: UnixTime) -> Option<UnixTime> {
        let until = self.blocked_until.load(Ordering::Relaxed);
        (until > now).then_some(until)
    }

    fn block_until(&self, t: UnixTime) {
        self.blocked_until.fetch_max(t, Ordering::Relaxed);
    }
}

/// One [`Gate`] per platform.
#[derive(Debug)]
pub struct Gates(HashMap<Platform, Gate>);

impl Gates {
    /// From each platform's `rate_limit`.
    pub fn new(config: &crate::config::Config) -> Gates {
        Gates(
            Platform::ALL
                .into_iter()
                .map(|p| (p, Gate::new(config.platforms.get(p).rate_limit(p))))
                .collect(),
        )
    }

    fn get(&self, p: Platform) -> &Gate {
        &self.0[&p]
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone)]
pub struct SweepReport {
    /// Accounts checked (including deferred ones).
    pub checked: usize,
    /// Checks the platform answered with a valid token.
    pub ok: usize,
    /// Checks that found the token dead or lacking permission.
    pub invalid: usize,
    /// Checks without a usable answer.
    pub transient: usize,
    /// Accounts not checked because their platform asked us to wait.
    pub deferred: usize,
    /// Wall time of the sweep.
    pub duration: Duration,
    /// Time spent in database writes.
    pub write_time: Duration,
    /// History rows pruned.
    pub pruned: u64,
}

/// Runs one sweep over the accounts due now. Stops taking new accounts when `cancel` fires;
/// checks in flight finish and every result is written before this returns.
pub async fn sweep(state: &AppState, cancel: &CancellationToken) -> Result<SweepReport, StoreError> {
    let started = Instant::now();
    let due_by = domain::now();
    let cfg = &state.config.schedule;
    let (tx, rx) = mpsc::channel::<Checked>(cfg.concurrency * 2 + 16);
    let writer = tokio::spawn(write_results(state.clone(), rx));
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    let max_in_flight = (cfg.batch_size * 2).max(cfg.concurrency * 2);
    let mut set: JoinSet<()> = JoinSet::new();
    let mut cursor = None;
    let mut failure = None;
    'pages: while !cancel.is_cancelled() {
        let page = match state.store.due_accounts(due_by, cursor, cfg.batch_size as i64).await {
            Ok(p) => p,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        let Some((last, _)) = page.last() else { break };
        cursor = Some((last.next_check_at, last.id));
        for (account, credentials) in page {
            while set.len() >= max_in_flight {
                set.join_next().await;
            }
            if cancel.is_cancelled() {
                break 'pages;
            }
            let (state, tx, permits, cancel) = (state.clone(), tx.clone(), permits.clone(), cancel.clone());
            set.spawn(async move {
                let gate = state.gates.get(account.platform);
                gate.pace().await;
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                if cancel.is_cancelled() {
                    return;
                }
                // Checked after waiting: the platform may have asked to back off meanwhile.
                if let Some(until) = gate.blocked(domain::now()) {
                    let detail = format!(
                        "{} asked to wait until {}",
                        account.platform.display_name(),
                        domain::rfc3339(until)
                    );
                    let _ = tx.send(checks::deferred(&state, account, until, detail)).await;
                    return;
                }
                match checks::check_with(&state, account, Some(credentials)).await {
                    Ok(c) => {
                        if let CheckOutcome::Transient(Transient {
                            kind: TransientKind::RateLimited,
                            retry_at: Some(t),
                            ..
                        }) = &c.outcome
                        {
                            gate.block_until(*t);
                        }
                        let _ = tx.send(c).await;
                    }
                    Err(e) => tracing::error!(error = %e, "a check could not be completed"),
                }
            });
        }
    }
    while set.join_next().await.is_some() {}
    drop(tx);
    let mut report = writer
        .await
        .unwrap_or_else(|e| Err(StoreError::Db(sqlx::Error::Protocol(e.to_string()))))?;
    if let Some(e) = failure {
        return Err(e);
    }
    let cutoff = domain::now() - state.config.health.history_retention.secs();
    report.pruned = state.store.prune_history(cutoff).await?;
    report.duration = started.elapsed();
    state.metrics.sweep_finished(domain::now());
    state.alerts_due.notify_one();
    Ok(report)
}

/// Collects results and writes them in batches; counts outcomes.
async fn write_results(state: AppState, mut rx: mpsc::Receiver<Checked>) -> Result<SweepReport, StoreError> {
    let mut report = SweepReport::default();
    let mut buf = Vec::with_capacity(WRITE_BATCH);
    let mut first_error = None;
    let mut flush = async |buf: &mut Vec<crate::store::HealthUpdate>, report: &mut SweepReport| {
        if buf.is_empty() {
            return;
        }
        let t = Instant::now();
        // A locked database delays the write (busy timeout), a failed one is retried once
        // before the batch is given up: its accounts stay due and are checked again.
        let mut result = state.store.record_checks(buf).await;
        if result.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            result = state.store.record_checks(buf).await;
        }
        report.write_time += t.elapsed();
        if let Err(e) = result {
            tracing::error!(error = %e, accounts = buf.len(), "could not write check results");
            first_error.get_or_insert(e);
        }
        buf.clear();
    };
    loop {
        let next = tokio::time::timeout(WRITE_EVERY, rx.recv()).await;
        match next {
            Ok(Some(c)) => {
                report.checked += 1;
                match &c.outcome {
                    _ if c.deferred => report.deferred += 1,
                    CheckOutcome::Valid(_) => report.ok += 1,
                    CheckOutcome::Invalid { .. } | CheckOutcome::PermissionDenied { .. } => report.invalid += 1,
                    _ => report.transient += 1,
                }
                buf.push(c.update);
                if buf.len() >= WRITE_BATCH {
                    flush(&mut buf, &mut report).await;
                }
            }
            Ok(None) => break,
            Err(_) => flush(&mut buf, &mut report).await,
        }
    }
    flush(&mut buf, &mut report).await;
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Runs sweeps on the cron schedule until shutdown. `tracker` lets shutdown wait for a sweep
/// in progress. Returns `None` when `schedule.cron` is empty (sweeps disabled).
pub async fn start(
    state: AppState,
    cancel: CancellationToken,
    tracker: TaskTracker,
) -> anyhow::Result<Option<JobScheduler>> {
    let cron = state.config.schedule.cron.trim().to_owned();
    if cron.is_empty() {
        tracing::warn!("schedule.cron is empty: no sweeps will run");
        return Ok(None);
    }
    let busy = Arc::new(Mutex::new(()));
    let job = Job::new_async(cron.as_str(), move |_, _| {
        let (state, cancel, tracker, busy) = (state.clone(), cancel.clone(), tracker.clone(), busy.clone());
        Box::pin(async move {
            // A tick while the last sweep still runs does not start a second one.
            let Ok(_guard) = busy.try_lock() else {
                tracing::info!("previous sweep still running; tick skipped");
                return;
            };
            if cancel.is_cancelled() {
                return;
            }
            let run = tracker.track_future(sweep(&state, &cancel));
            match run.await {
                Ok(r) if r.checked > 0 => tracing::info!(
                    checked = r.checked,
                    ok = r.ok,
                    invalid = r.invalid,
                    transient_error = r.transient,
                    deferred = r.deferred,
                    duration_ms = r.duration.as_millis() as u64,
                    write_ms = r.write_time.as_millis() as u64,
                    pruned = r.pruned,
                    "sweep finished"
                ),
                Ok(r) => tracing::debug!(pruned = r.pruned, "sweep found nothing due"),
                Err(e) => tracing::error!(error = %e, "sweep failed"),
            }
        })
    })?;
    let sched = JobScheduler::new().await?;
    sched.add(job).await?;
    sched.start().await?;
    Ok(Some(sched))
}
