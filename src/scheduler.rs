//! Sweeps: on each cron tick, check the accounts whose `next_check_at` is due, with bounded
//! concurrency and a per-platform pace, writing results in batched transactions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::instrument::WithSubscriber;

use crate::checks::{self, Checked, Checker};
use crate::domain::{self, Platform, UnixTime};
use crate::platforms::CheckOutcome;
use crate::store::{Claim, StoreError};

/// Results written per transaction.
const WRITE_BATCH: usize = 1000;
/// Accounts in a lane's first page: small, so that checks start without waiting for a large read.
const FIRST_PAGE: i64 = 256;
/// Longest a result waits in the write buffer.
const WRITE_EVERY: Duration = Duration::from_millis(200);

pub use crate::pacing::{Gate, Gates};

/// What sweeps need: the checker, and what pages, claims, paces and reports them. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Sweeper {
    /// Checks one account.
    pub checker: Checker,
    /// The database.
    pub store: crate::store::Store,
    /// The time sweeps go by.
    pub clock: crate::clock::Clock,
    /// The configuration (`schedule.*`, `health.history_retention` are read).
    pub config: crate::live::Live<Arc<crate::config::Config>>,
    /// Per-platform pacing.
    pub gates: Arc<Gates>,
    /// Names this daemon's claims.
    pub instance: Arc<crate::cluster::Instance>,
    /// The sweep's figures.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Wakes the alert delivery after a sweep.
    pub alerts_due: Arc<tokio::sync::Notify>,
    /// One sweep at a time, across cron ticks and a scheduler replaced by a reload.
    pub sweep_busy: Arc<tokio::sync::Mutex<()>>,
    /// Where the sweeps run (shutdown waits for the one in progress).
    pub tasks: crate::tasks::Tasks,
}

impl Sweeper {
    /// The configuration in force now.
    pub fn config(&self) -> Arc<crate::config::Config> {
        self.config.get()
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
    /// Wall time of the sweep's checks and writes (pruning after them not included).
    pub duration: Duration,
    /// Time spent in database writes.
    pub write_time: Duration,
    /// Transactions the results were written in.
    pub batches: usize,
    /// History and transition rows pruned after the checks, in statements that each held
    /// the writer at most `pruned.longest_hold`.
    pub pruned: crate::store::Pruned,
}

/// Runs one sweep over the accounts due now. Stops taking new accounts when `cancel` fires;
/// checks in flight finish and every result is written before this returns.
///
/// Each platform is a lane of its own: it pages through its due accounts, waits for its pace
/// and then for one of the `schedule.concurrency` permits, and only then starts the check, so
/// a paced or throttled platform never holds up the others and no more than `concurrency`
/// checks exist at once.
#[tracing::instrument(name = "sweep", skip_all, fields(started_at = domain::now()))]
pub async fn sweep(state: &Sweeper, cancel: &CancellationToken) -> Result<SweepReport, SweepError> {
    let started = Instant::now();
    let due_by = state.clock.now();
    let cfg = &state.config().schedule;
    let (tx, rx) = mpsc::channel::<Checked>(cfg.concurrency + WRITE_BATCH);
    // Every task of the sweep logs to the subscriber the sweep was started under.
    let writer = tokio::spawn(write_results(state.clone(), rx).with_current_subscriber());
    let permits = Arc::new(Semaphore::new(cfg.concurrency));
    let checks = TaskTracker::new();
    let mut lanes = JoinSet::new();
    let holder: Arc<str> = state.instance.claimant("sweep").into();
    for platform in Platform::ALL {
        let lane = Lane {
            state: state.clone(),
            platform,
            due_by,
            permits: permits.clone(),
            checks: checks.clone(),
            tx: tx.clone(),
            cancel: cancel.clone(),
            holder: holder.clone(),
        };
        lanes.spawn(lane.run().with_current_subscriber());
    }
    drop(tx);
    let mut failure = None;
    while let Some(done) = lanes.join_next().await {
        let result = done.map_err(SweepError::from).and_then(|r| r);
        if let Err(e) = result {
            failure.get_or_insert(e);
        }
    }
    checks.close();
    checks.wait().await;
    let written = writer.await;
    // Accounts claimed but not checked (a stop, a failure) go back to the peers at once.
    if let Err(e) = state.store.release_claims(&holder).await {
        tracing::warn!(error = %e, "could not release this sweep's claims; they expire on their own");
    }
    let mut report = written??;
    if let Some(e) = failure {
        return Err(e);
    }
    report.duration = started.elapsed();
    let cutoff = state.clock.now() - state.config().health.history_retention.secs();
    report.pruned = state.store.prune_history(cutoff).await?;
    let kept = state.clock.now() - state.config().health.transitions_retention.secs();
    report.pruned += state.store.prune_transitions(kept).await?;
    state.metrics.sweep_finished(state.clock.now());
    state.alerts_due.notify_one();
    Ok(report)
}

/// Why a sweep stopped short.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// One of the sweep's own tasks panicked.
    #[error("a sweep task stopped: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// One platform's part of a sweep.
struct Lane {
    state: Sweeper,
    platform: Platform,
    due_by: UnixTime,
    permits: Arc<Semaphore>,
    checks: TaskTracker,
    tx: mpsc::Sender<Checked>,
    cancel: CancellationToken,
    /// Who claims this sweep's accounts (shared database).
    holder: Arc<str>,
}

impl Lane {
    #[tracing::instrument(name = "lane", skip_all, fields(platform = %self.platform))]
    async fn run(self) -> Result<(), SweepError> {
        let gate = self.state.gates.get(self.platform);
        // Shared by the lane's checks (a `Checker` is 1.1 KB; a task holds a pointer to it).
        let checker = Arc::new(self.state.checker.clone());
        let (pages_tx, mut pages) = mpsc::channel(1);
        let (state, platform, due_by, holder) = (self.state.clone(), self.platform, self.due_by, self.holder.clone());
        let reader = tokio::spawn(
            async move { read_pages(state, platform, due_by, &holder, pages_tx).await }.with_current_subscriber(),
        );
        while let Some(page) = pages.recv().await {
            if self.cancel.is_cancelled() {
                break;
            }
            for (account, credentials) in page {
                let permit = tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Ok(()),
                    permit = async {
                        gate.pace().await;
                        self.permits.clone().acquire_owned().await
                    } => permit,
                };
                let Ok(permit) = permit else { return Ok(()) };
                // Checked after waiting: the platform may have asked to back off meanwhile.
                if let Some(until) = gate.blocked(self.state.clock.now()) {
                    drop(permit);
                    let now = self.state.clock.now();
                    let _ = self.tx.send(checks::gate_deferral(account, until, now)).await;
                    continue;
                }
                let (checker, tx) = (checker.clone(), self.tx.clone());
                // A check runs in its lane's span (no span of its own: one per check cost
                // measurable time in a sweep of 100,000). Its task holds what the check
                // needs and no more: a thousand of them are in flight (6.8 KB each).
                self.checks.spawn(WithSubscriber::with_current_subscriber(
                    tracing::Instrument::in_current_span(async move {
                        match checks::check_with(&checker, account, Some(credentials)).await {
                            Ok(c) => {
                                checks::note_throttle(&checker, &c);
                                // The permit is held until the writer has the result: a slow
                                // database slows the sweep instead of piling up results.
                                let _ = tx.send(c).await;
                            }
                            Err(e) => tracing::error!(error = %e, "a check could not be completed"),
                        }
                        drop(permit);
                    }),
                ));
            }
        }
        drop(pages);
        Ok(reader.await??)
    }
}

/// Reads `platform`'s due accounts page by page, one page ahead of the lane. The first pages
/// are small so that checks start at once; later ones grow to `schedule.batch_size`.
async fn read_pages(
    state: Sweeper,
    platform: Platform,
    due_by: UnixTime,
    holder: &str,
    pages: mpsc::Sender<Vec<(crate::store::Account, crate::store::SealedCredentials)>>,
) -> Result<(), StoreError> {
    let mut batch = state.config().schedule.batch_size.max(1) as i64;
    if state.store.is_shared() {
        // Several daemons: a lane claims only about what it can start soon, so that the
        // daemons divide a round between them instead of the first one claiming it ahead.
        batch = batch.min(FIRST_PAGE.max(state.config().schedule.concurrency as i64));
    }
    let mut limit = FIRST_PAGE.min(batch);
    let mut cursor = None;
    let lease = state.config().schedule.claim_lease.0.as_secs() as i64;
    loop {
        // A page is claimed (shared database) until its checks are written: the lease
        // covers this page and the one still being checked ahead of it.
        let claim = Claim {
            holder,
            now: state.clock.now(),
            lease,
        };
        let page = state
            .store
            .due_accounts(platform, due_by, cursor, limit, &claim)
            .await?;
        if page.taken_over > 0 {
            tracing::warn!(%platform, accounts = page.taken_over, "took over accounts whose claim expired or whose daemon stopped beating (a peer died mid-sweep)");
            state.metrics.claims_expired(page.taken_over);
        }
        let page = page.accounts;
        let Some((last, _)) = page.last() else { return Ok(()) };
        cursor = Some((last.next_check_at, last.id.0));
        let full = page.len() as i64 == limit;
        if pages.send(page).await.is_err() || !full {
            return Ok(());
        }
        limit = (limit * 4).min(batch);
    }
}

/// Collects results and hands them to [`flush_batches`] a batch at a time (while one batch
/// is written the next one fills); counts outcomes.
async fn write_results(state: Sweeper, mut rx: mpsc::Receiver<Checked>) -> Result<SweepReport, SweepError> {
    let mut report = SweepReport::default();
    let (batches, batch_rx) = mpsc::channel(1);
    let flusher = tokio::spawn(flush_batches(state, batch_rx).with_current_subscriber());
    let mut buf = Vec::with_capacity(WRITE_BATCH);
    // A batch is written when it is full or when its first result is WRITE_EVERY old, so a
    // slow (paced) sweep commits its results as it goes instead of at its end.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let next = match due {
            Some(at) => tokio::time::timeout_at(at, rx.recv()).await,
            None => Ok(rx.recv().await),
        };
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
                due.get_or_insert_with(|| tokio::time::Instant::now() + WRITE_EVERY);
                if buf.len() >= WRITE_BATCH {
                    let full = std::mem::replace(&mut buf, Vec::with_capacity(WRITE_BATCH));
                    due = None;
                    let _ = batches.send(full).await;
                }
            }
            Ok(None) => break,
            Err(_) => {
                due = None;
                let _ = batches.send(std::mem::take(&mut buf)).await;
            }
        }
    }
    if !buf.is_empty() {
        let _ = batches.send(buf).await;
    }
    drop(batches);
    let (write_time, batches, first_error) = flusher.await?;
    report.write_time = write_time;
    report.batches = batches;
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(report),
    }
}

/// Writes batches of results, each in one transaction. A locked database delays the write
/// (busy timeout); a failed one is retried once before the batch is given up: its accounts
/// stay due and are checked again. Returns the time spent writing, the batches and the
/// first error.
async fn flush_batches(
    state: Sweeper,
    mut batches: mpsc::Receiver<Vec<crate::store::HealthUpdate>>,
) -> (Duration, usize, Option<StoreError>) {
    let mut write_time = Duration::ZERO;
    let mut first_error = None;
    let mut written = 0;
    while let Some(batch) = batches.recv().await {
        written += 1;
        let t = Instant::now();
        let mut result = state.store.record_checks(&batch).await;
        if result.is_err() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            result = state.store.record_checks(&batch).await;
        }
        write_time += t.elapsed();
        if let Err(e) = result {
            tracing::error!(error = %e, accounts = batch.len(), "could not write check results");
            first_error.get_or_insert(e);
        }
    }
    (write_time, written, first_error)
}

/// After a sweep: whether each platform's accounts can still be swept within
/// `health.check_interval` at its rate limit (`/healthz` says so when not).
pub async fn note_cadence(state: &Sweeper) {
    if let Ok(counts) = state.store.health_counts(0).await {
        let by_platform: Vec<_> = counts.into_iter().map(|(p, _, n)| (p, n)).collect();
        state.checker.problems.set_cadence(&state.config(), &by_platform);
    }
}

/// The one line a sweep logs when it ends: INFO with its figures when it checked
/// anything, DEBUG when nothing was due, ERROR when it failed.
pub fn log_sweep(result: Result<SweepReport, SweepError>) {
    match result {
        Ok(r) if r.checked > 0 => tracing::info!(
            checked = r.checked,
            ok = r.ok,
            invalid = r.invalid,
            transient_error = r.transient,
            deferred = r.deferred,
            duration_ms = r.duration.as_millis() as u64,
            write_ms = r.write_time.as_millis() as u64,
            pruned = r.pruned.rows,
            prune_statements = r.pruned.statements,
            prune_longest_hold_ms = r.pruned.longest_hold.as_millis() as u64,
            "sweep finished"
        ),
        Ok(r) => tracing::debug!(pruned = r.pruned.rows, "sweep found nothing due"),
        Err(e) => tracing::error!(error = %e, "sweep failed"),
    }
}

/// The runtime scheduled sweeps run on, apart from the one serving the API: as many worker
/// threads as the machine has CPUs, started at the first sweep and kept for the process's
/// life. The operating system then shares the CPUs between the API's threads and the
/// sweep's, where one runtime would queue a request behind every check that is ready.
fn sweep_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("sweep")
            .enable_all()
            .build()
            .expect("the sweep runtime starts")
    })
}

/// Runs sweeps on the cron schedule until shutdown, each a task of `state.tasks` (shutdown
/// waits for the one in progress). Returns `None` when `schedule.cron` is empty (sweeps
/// disabled).
pub async fn start(state: Sweeper, cancel: CancellationToken) -> anyhow::Result<Option<JobScheduler>> {
    Ok(start_with_next(state, cancel).await?.map(|(s, _)| s))
}

/// As [`start`], with when the first sweep runs (Unix seconds), when the schedule says.
pub async fn start_with_next(
    state: Sweeper,
    cancel: CancellationToken,
) -> anyhow::Result<Option<(JobScheduler, Option<i64>)>> {
    let cron = state.config().schedule.cron.trim().to_owned();
    if cron.is_empty() {
        tracing::warn!("schedule.cron is empty: no sweeps will run");
        return Ok(None);
    }
    // Shared through the state: a scheduler replaced by a reload never runs a second sweep
    // beside one still running.
    let busy = state.sweep_busy.clone();
    let job = Job::new_async(cron.as_str(), move |_, _| {
        let (state, cancel, busy) = (state.clone(), cancel.clone(), busy.clone());
        Box::pin(async move {
            // A tick while the last sweep still runs does not start a second one.
            let Ok(guard) = busy.try_lock_owned() else {
                tracing::info!("previous sweep still running; tick skipped");
                return;
            };
            if cancel.is_cancelled() {
                return;
            }
            let tasks = state.tasks.clone();
            // The sweep and every check it spawns run on the sweep runtime: the API's
            // requests, on the main one, are then not queued behind a thousand ready checks.
            let sweeping = sweep_runtime().spawn(
                async move {
                    let _guard = guard;
                    let result = sweep(&state, &cancel).await;
                    let checked = matches!(&result, Ok(r) if r.checked > 0);
                    log_sweep(result);
                    if checked {
                        note_cadence(&state).await;
                    }
                }
                .with_current_subscriber(),
            );
            let run = tasks.spawn("sweep", true, async move {
                if let Err(e) = sweeping.await {
                    tracing::error!(error = %e, "the sweep task stopped");
                }
            });
            let _ = run.await;
        })
    })?;
    let mut sched = JobScheduler::new().await?;
    let id = sched.add(job).await?;
    sched.start().await?;
    let next = sched.next_tick_for_job(id).await.ok().flatten().map(|t| t.timestamp());
    Ok(Some((sched, next)))
}
