//! One check of one account: open its tokens, refresh them when due (committing the new
//! ones before anything else), ask the platform, assess, and build the health update. Used
//! by the API's "check now", the `check` command and the scheduler.

use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::alerts::{self, AlertPolicy};
use crate::crypto::seal_context;
use crate::domain::{self, Platform, UnixTime};
use crate::health::{self, Policy, Timing};
use crate::platforms::{
    CheckOutcome, InvalidReason, RefreshOutcome, ThrottleScope, TokenContext, Transient, TransientKind,
};
use crate::problems::{Area, Problems};
use crate::store::{Account, HealthUpdate, SealedCredentials, Store, StoreError, TokenReplacement};

/// What a check needs, and nothing else: the accounts' tokens and the platforms to ask.
/// Cheap to clone. Built by `app.rs`; registration (`accounts`) uses it too.
#[derive(Clone, Debug)]
pub struct Checker {
    /// The database.
    pub store: Store,
    /// Opens and seals the stored tokens.
    pub sealer: crate::crypto::Sealer,
    /// The platform adapters.
    pub platforms: Arc<crate::platforms::Platforms>,
    /// Where a check reports the daemon's own configuration problems.
    pub problems: Arc<Problems>,
    /// Per-platform pacing and holds.
    pub gates: Arc<crate::pacing::Gates>,
    /// Counts and times checks.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The time checks go by.
    pub clock: crate::clock::Clock,
    /// Expiry alert thresholds with their labels.
    pub alert_thresholds: Arc<Vec<(i64, String)>>,
    /// Refreshes run as tasks of their own here (they outlive their caller).
    pub tasks: crate::tasks::Tasks,
    /// The configuration (`platforms.*`, `health.*`, `alerts.*`, `http.*` are read).
    pub config: crate::live::Live<Arc<crate::config::Config>>,
}

impl Checker {
    /// The configuration in force now.
    pub fn config(&self) -> Arc<crate::config::Config> {
        self.config.get()
    }
}

/// How long to wait after a throttle answer that names no time.
pub const DEFAULT_THROTTLE_WAIT: i64 = 60;

/// A finished check, not yet written.
#[derive(Debug)]
pub struct Checked {
    /// The account as it was before the check.
    pub account: Account,
    /// What the platform said.
    pub outcome: CheckOutcome,
    /// What to write.
    pub update: HealthUpdate,
    /// The platform was not asked: it had told us to wait.
    pub deferred: bool,
}

/// When the access token enters its refresh window.
fn refresh_at(state: &Checker, a: &Account) -> Option<UnixTime> {
    let Some(exp) = a.token_expires_at else {
        // A 60-day Instagram Login or Threads token registered without its expiry dies for
        // good 60 days after it was issued or last refreshed ("tokens that have not been
        // refreshed in 60 days will expire"): refresh it once it is a day old (the earliest
        // the platform allows), and the answer's expires_in says the expiry from then on.
        return matches!(a.platform, Platform::Instagram | Platform::Threads).then_some(a.token_issued_at + 86_400);
    };
    let mut at = exp - state.config().platforms.get(a.platform).refresh_before(a.platform);
    // Long-lived Graph tokens can be refreshed only once they are a day old.
    if matches!(a.platform, Platform::Instagram | Platform::Threads) {
        at = at.max(a.token_issued_at + 86_400);
    }
    Some(at)
}

fn alert_policy(state: &Checker, auto_refresh: bool) -> AlertPolicy {
    AlertPolicy {
        thresholds: state.alert_thresholds.clone(),
        unreachable_after: state.config().alerts.unreachable_after,
        auto_refresh,
    }
}

/// The assessment policy for accounts of `platform`.
pub fn policy(state: &Checker, platform: Platform) -> Policy {
    let c = state.config();
    let pc = c.platforms.get(platform);
    Policy {
        warn_before: c.health.warn_before.secs(),
        required_permissions: pc.required_permissions(platform, c.platforms.instagram.login),
        auto_refresh: false,
        stale_after: c.health.stale_after.secs(),
    }
}

#[derive(Clone)]
struct Tokens {
    access: SecretString,
    refresh: Option<SecretString>,
}

impl Tokens {
    /// Whether these are the same tokens (the stored ones changed when they differ).
    fn same_as(&self, other: &Tokens) -> bool {
        use secrecy::ExposeSecret;
        let r = |t: &Tokens| t.refresh.as_ref().map(|r| r.expose_secret().to_owned());
        self.access.expose_secret() == other.access.expose_secret() && r(self) == r(other)
    }
}

async fn open_tokens(
    state: &Checker,
    a: &Account,
    prefetched: Option<SealedCredentials>,
) -> Result<Option<Tokens>, StoreError> {
    let sealed = match prefetched {
        Some(s) => s,
        None => state.store.credentials(a.id).await?,
    };
    let ctx = seal_context(a.workspace_id, a.platform, &a.account_id);
    let opened = state.sealer.open(&ctx, &sealed.access_token).and_then(|access| {
        let refresh = sealed
            .refresh_token
            .as_deref()
            .map(|r| state.sealer.open(&ctx, r))
            .transpose()?;
        Ok(Tokens { access, refresh })
    });
    Ok(opened.ok())
}

/// The account's access token, opened; `None` when the token key cannot open it.
pub(crate) async fn access_token_of(state: &Checker, a: &Account) -> Result<Option<SecretString>, StoreError> {
    Ok(open_tokens(state, a, None).await?.map(|t| t.access))
}

/// What an attempted refresh came to.
enum Refresh {
    /// New tokens, already committed (by this refresh or by another refresher meanwhile).
    Done(Tokens),
    /// The platform refused the refresh token for good: reconnect.
    Fatal(String),
    /// Retry later.
    Failed(String),
    /// The platform is throttling: the whole check is deferred.
    Throttled(Transient),
    /// The daemon's own configuration is wrong: never the account's fault.
    Misconfigured(String),
    /// Nothing to do (not supported, or another refresher still holds the lease).
    Skipped,
}

fn context<'a>(a: &'a Account, tokens: &'a Tokens) -> TokenContext<'a> {
    TokenContext {
        account_id: &a.account_id,
        access_token: &tokens.access,
        refresh_token: tokens.refresh.as_ref(),
        platform_user_id: a.state.platform_user_id.as_deref(),
        expires_at: a.token_expires_at,
        instagram_login: a.instagram_login,
    }
}

mod advice;
mod custody;
mod deferral;
mod identity;
mod refresh;

use custody::auto_refresh;
pub use custody::{
    HandedToken, PushError, PushedTokens, RefreshChange, TokenError, hand_out, push_tokens, renewed,
    renewed_automatically,
};
use deferral::deferral_reason;
pub use deferral::deferred;
pub(crate) use deferral::gate_deferral;
use identity::{identity_due, proven_by_refresh};
use refresh::{refresh_and_commit, take_lease};

/// What the refreshes of one check came to.
#[derive(Default)]
struct Attempts {
    refreshed: bool,
    error: Option<String>,
    fatal: Option<String>,
    misconfigured: Option<String>,
}

impl Attempts {
    /// Takes in what a refresh did (new tokens replace `tokens`); a throttle is returned,
    /// and the whole check is then deferred.
    fn absorb(&mut self, r: Refresh, tokens: &mut Tokens) -> Option<Transient> {
        match r {
            Refresh::Done(t) => {
                *tokens = t;
                self.refreshed = true;
            }
            Refresh::Fatal(d) => self.fatal = Some(d),
            Refresh::Failed(d) => self.error = Some(d),
            Refresh::Throttled(t) => return Some(t),
            Refresh::Misconfigured(m) => self.misconfigured = Some(m),
            Refresh::Skipped => {}
        }
        None
    }
}

async fn ask(state: &Checker, a: &Account, tokens: &Tokens) -> CheckOutcome {
    let outcome = state.platforms.check(a.platform, &context(a, tokens)).await;
    // The token must belong to the account it is registered as.
    if let CheckOutcome::Valid(v) = &outcome
        && v.belongs_to(a.platform, &a.account_id) == Some(false)
        && let Some(owner) = &v.owner_id
    {
        return CheckOutcome::Invalid {
            reason: InvalidReason::WrongAccount,
            detail: format!(
                "This token belongs to another account (ID {})",
                domain::truncate_for_message(owner)
            ),
        };
    }
    outcome
}

/// Checks one account against its platform, refreshing its tokens first when they are in
/// their refresh window (or were just rejected and a refresh token is stored). New tokens
/// are committed at once; the health update is returned, not written.
pub async fn check(state: &Checker, account: Account) -> Result<Checked, StoreError> {
    check_with(state, account, None).await
}

/// As [`check`], with the sealed credentials already read (sweeps read them with the page).
/// Counts the check and its duration in the metrics.
pub async fn check_with(
    state: &Checker,
    account: Account,
    credentials: Option<SealedCredentials>,
) -> Result<Checked, StoreError> {
    let started = std::time::Instant::now();
    let platform = account.platform;
    let c = check_inner(state, account, credentials).await?;
    state.metrics.observe_check(platform, &c.outcome, started.elapsed());
    Ok(c)
}

async fn check_inner(
    state: &Checker,
    account: Account,
    credentials: Option<SealedCredentials>,
) -> Result<Checked, StoreError> {
    // No span per check (a sweep makes thousands): the events below name the account.
    let Some(mut tokens) = open_tokens(state, &account, credentials).await? else {
        let o = CheckOutcome::Misconfigured(
            "the stored token cannot be opened with the current token key (security.token_key_file)".into(),
        );
        state.problems.observe(account.platform, &o);
        return Ok(assess(state, account.clone(), &account, o, None, false, false));
    };
    let now = state.clock.now();
    // In product custody an expired access token is not sent to the platform: new ones
    // are pushed by the product.
    if account.custody == crate::domain::Custody::Product && account.token_expires_at.is_some_and(|e| e <= now) {
        return Ok(custody::awaiting_tokens(state, account, now));
    }
    let renewed = custody::renewed_by_someone(state, &account, tokens.refresh.is_some());
    let refreshable = custody::refreshes_itself(state, &account, tokens.refresh.is_some());
    let deferral = |t: Transient| {
        assess(
            state,
            account.clone(),
            &account,
            CheckOutcome::Transient(t),
            None,
            renewed,
            false,
        )
    };
    let mut done = Attempts::default();
    let tried_refresh = refreshable && refresh_at(state, &account).is_some_and(|at| at <= now);
    if tried_refresh && let Some(t) = done.absorb(refresh_and_commit(state, &account, &tokens).await?, &mut tokens) {
        return Ok(deferral(t));
    }
    // A refresh refused for good while the access token has not expired: ask with the access
    // token before deciding (another party may have used the refresh token). Found so
    // earlier, it stays so while the access token works, until new tokens are pushed.
    let mut superseded = account
        .open_alerts
        .contains(&crate::domain::AlertKind::RefreshSuperseded);
    let mut outcome = match &done.fatal {
        Some(d) if account.token_expires_at.is_none_or(|e| e > now) => match ask(state, &account, &tokens).await {
            o @ CheckOutcome::Valid(_) => {
                superseded = true;
                o
            }
            _ => CheckOutcome::Invalid {
                reason: InvalidReason::RefreshRejected,
                detail: format!("the refresh token was rejected: {d}"),
            },
        },
        Some(d) => CheckOutcome::Invalid {
            reason: InvalidReason::RefreshRejected,
            detail: format!("the refresh token was rejected: {d}"),
        },
        // A refresh that just succeeded proves the grant: the identity endpoint (which the
        // product's quota pays for) is read at most once an identity period.
        None if done.refreshed && !identity_due(state, &account, now) => proven_by_refresh(&account),
        None => ask(state, &account, &tokens).await,
    };
    superseded &= matches!(outcome, CheckOutcome::Valid(_));
    // A rejected access token with a stored refresh token: refresh once, then decide.
    if let CheckOutcome::Invalid { reason, .. } = &outcome
        && *reason != InvalidReason::WrongAccount
        && !tried_refresh
        && refreshable
        && tokens.refresh.is_some()
    {
        if let Some(t) = done.absorb(refresh_and_commit(state, &account, &tokens).await?, &mut tokens) {
            return Ok(deferral(t));
        }
        if done.refreshed {
            outcome = ask(state, &account, &tokens).await;
        } else if let (Some(d), CheckOutcome::Invalid { detail, .. }) = (&done.fatal, &mut outcome) {
            *detail = format!("{detail}; the refresh token was rejected too: {d}");
        }
    }
    // A token that works only with the other Instagram login: the account is of that one
    // from now on (its refreshes and revocation follow).
    if let CheckOutcome::Valid(v) = &outcome
        && let Some(login) = v.instagram_login
        && account.instagram_login != Some(login)
    {
        // The rare store calls of a check are boxed: inline, their futures (both backends'
        // queries) made every check's future 16 KB, held by each of the thousand checks a
        // sweep keeps in flight; boxed, 3.3 KB, and the box exists only when they run.
        Box::pin(state.store.set_instagram_login(account.id, account.workspace_id, login)).await?;
    }
    // The refresh failed for the daemon's own configuration: an access token that expired
    // meanwhile is the daemon's problem too, not the account's.
    // (The refresh already recorded that problem; the check itself found none to record.)
    if let Some(m) = done.misconfigured
        && matches!(outcome, CheckOutcome::Invalid { .. })
    {
        outcome = CheckOutcome::Misconfigured(format!("the token could not be refreshed: {m}"));
    } else {
        state.problems.observe(account.platform, &outcome);
    }
    let (refreshed, refresh_error) = (done.refreshed, done.error);
    if let Some(e) = &refresh_error {
        tracing::warn!(
            platform = %account.platform,
            account = %account.account_id,
            error = %e,
            "automatic refresh failed; will retry"
        );
        Box::pin(
            state
                .store
                .record_refresh_failure(account.id, state.clock.now(), account.state.health, e),
        )
        .await?;
    }
    // After a refresh the stored expiry and scopes changed: assess against them.
    let current = if refreshed {
        Box::pin(state.store.account_by_ref(account.id))
            .await?
            .ok_or(StoreError::NotFound)?
    } else {
        account.clone()
    };
    Ok(assess(
        state,
        account,
        &current,
        outcome,
        refresh_error,
        renewed,
        superseded,
    ))
}

/// Assesses an outcome into a health update for `current` (the account as stored now;
/// `before` is as it was when the check started). The caller records what the outcome says
/// about the daemon's configuration (`Problems::observe`).
fn assess(
    state: &Checker,
    before: Account,
    current: &Account,
    outcome: CheckOutcome,
    refresh_error: Option<String>,
    refreshable: bool,
    superseded: bool,
) -> Checked {
    if let CheckOutcome::Misconfigured(m) = &outcome {
        tracing::error!(platform = %current.platform, account = %current.account_id, problem = %m, "configuration problem");
    }
    let now = state.clock.now();
    // A throttle is a deferral, not a failure: the account keeps its assessment, its
    // failure count and its backoff; only the next check moves to when the platform allows.
    if let CheckOutcome::Transient(t) = &outcome
        && t.is_throttle()
    {
        let retry_at = t.retry_at.unwrap_or(now + DEFAULT_THROTTLE_WAIT).max(now + 1);
        return Checked {
            update: HealthUpdate::deferral(
                current,
                now,
                retry_at,
                deferral_reason(current.platform, t, retry_at, now),
            ),
            account: before,
            outcome,
            deferred: true,
        };
    }
    let mut p = policy(state, current.platform);
    p.auto_refresh = refreshable && refresh_error.is_none();
    let mut a = health::assess(&outcome, current, &p, now, refresh_error.as_deref());
    advice::explain(state, current, &outcome, refreshable, &mut a);
    // Counted while refreshes keep failing; a successful refresh resets it in the store
    // (and `current` is then re-read).
    let refresh_failures = current.refresh_failures + i64::from(refresh_error.is_some());
    let timing = Timing {
        check_interval: state.config().health.check_interval.secs(),
        failures: if a.answered { 0 } else { current.consecutive_failures },
        refresh_failures: if refresh_error.is_some() { refresh_failures } else { 0 },
        refresh_at: if refreshable && current.custody == crate::domain::Custody::Socialsyncer {
            // The window as it will be once this update is stored.
            refresh_at(
                state,
                &Account {
                    token_expires_at: a.token_expires_at,
                    ..current.clone()
                },
            )
        } else {
            None
        },
    };
    let next = health::next_check_at(&outcome, &a, timing, now, rand::random::<f64>());
    if superseded {
        custody::mark_superseded(current, &mut a);
    }
    let mut derived = alerts::derive(
        current,
        &outcome,
        &a,
        refresh_error.as_deref(),
        &alert_policy(state, p.auto_refresh),
        now,
    );
    if superseded {
        custody::superseded_alert(current, &a, &mut derived, now);
    }
    tracing::debug!(
        platform = %current.platform,
        account = %current.account_id,
        outcome = health::outcome_label(&outcome).as_str(),
        health = %a.state.health,
        "checked"
    );
    let update = HealthUpdate {
        account_ref: current.id,
        workspace_id: current.workspace_id,
        state: a.state,
        token_expires_at: a.token_expires_at,
        checked_at: now,
        answered: a.answered,
        next_check_at: next,
        outcome: health::outcome_label(&outcome),
        previous_health: before.state.health,
        previous_needs_reconnect: before.state.needs_reconnect,
        previous_token_expires_at: current.token_expires_at,
        refresh_failures,
        last_refresh_error: refresh_error.or_else(|| current.last_refresh_error.clone()),
        alerts: derived.alerts,
        open_alerts: derived.open,
        alert_episode: derived.episode,
        unchanged: false,
        deferred: false,
    };
    let update = HealthUpdate {
        unchanged: update.same_content(current),
        ..update
    };
    Checked {
        account: before,
        outcome,
        update,
        deferred: false,
    }
}

/// Holds a platform's gate when a check met an app-wide throttle (see [`crate::pacing::hold`]);
/// a throttle of one token or Page defers that account alone.
pub(crate) fn note_throttle(state: &Checker, c: &Checked) {
    if let CheckOutcome::Transient(Transient {
        kind: TransientKind::RateLimited,
        retry_at,
        scope: ThrottleScope::App,
        ..
    }) = &c.outcome
    {
        let now = state.clock.now();
        let until = retry_at.unwrap_or(now + DEFAULT_THROTTLE_WAIT);
        crate::pacing::hold(&state.gates, &state.store, &state.tasks, c.account.platform, until, now);
    }
}

/// Checks one account and writes the result at once; returns the fresh account.
pub async fn check_and_record(state: &Checker, account: Account) -> Result<(Account, CheckOutcome), StoreError> {
    let id = account.id;
    let c = check(state, account).await?;
    state.store.record_checks(std::slice::from_ref(&c.update)).await?;
    let fresh = state.store.account_by_ref(id).await?.ok_or(StoreError::NotFound)?;
    Ok((fresh, c.outcome))
}

/// Checks many accounts with at most `concurrency` in flight, each platform paced and
/// throttled by the same gates as sweeps; `on_done` sees each result as it finishes (for
/// progress). Results come back in completion order; nothing is written.
pub async fn check_all(
    state: &Checker,
    accounts: Vec<Account>,
    concurrency: usize,
    mut on_done: impl FnMut(&Checked),
) -> Result<Vec<Checked>, StoreError> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for account in accounts {
        let state = state.clone();
        let permits = permits.clone();
        set.spawn(async move {
            // The same pacing and throttle gates as the daemon's sweeps.
            let gate = state.gates.get(account.platform);
            gate.pace().await;
            let _permit = permits.acquire_owned().await;
            if let Some(until) = gate.blocked(state.clock.now()) {
                return Ok(gate_deferral(account, until, state.clock.now()));
            }
            let c = check(&state, account).await?;
            note_throttle(&state, &c);
            Ok(c)
        });
    }
    let mut out = Vec::new();
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(c)) => {
                on_done(&c);
                out.push(c);
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => tracing::error!(error = %e, "a check task failed"),
        }
    }
    Ok(out)
}
