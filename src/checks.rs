//! One check of one account: open its tokens, refresh them when due (committing the new
//! ones before anything else), ask the platform, assess, and build the health update. Used
//! by the API's "check now", the `check` command and the scheduler.

use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::accounts::seal_context;
use crate::alerts::{self, AlertPolicy};
use crate::app::{AppState, Area};
use crate::domain::{self, Platform, UnixTime};
use crate::health::{self, Policy, Timing};
use crate::platforms::{
    CheckOutcome, InvalidReason, RefreshOutcome, ThrottleScope, TokenContext, Transient, TransientKind,
};
use crate::store::{Account, HealthUpdate, SealedCredentials, StoreError, TokenReplacement};

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

/// Whether accounts of `platform` get their tokens refreshed automatically.
fn auto_refresh(state: &AppState, platform: Platform) -> bool {
    state.platforms.can_refresh(platform) && state.config().platforms.get(platform).auto_refresh()
}

/// The one predicate for "this account's token is renewed automatically", by platform and
/// whether a refresh token is stored (TikTok and X need one; Instagram Login and Threads
/// refresh the access token itself).
pub fn renewed_automatically(state: &AppState, platform: Platform, has_refresh_token: bool) -> bool {
    auto_refresh(state, platform) && (has_refresh_token || matches!(platform, Platform::Instagram | Platform::Threads))
}

/// When the access token enters its refresh window.
fn refresh_at(state: &AppState, a: &Account) -> Option<UnixTime> {
    let exp = a.token_expires_at?;
    let mut at = exp - state.config().platforms.get(a.platform).refresh_before(a.platform);
    // Long-lived Graph tokens can be refreshed only once they are a day old.
    if matches!(a.platform, Platform::Instagram | Platform::Threads) {
        at = at.max(a.token_issued_at + 86_400);
    }
    Some(at)
}

fn alert_policy(state: &AppState, auto_refresh: bool) -> AlertPolicy {
    AlertPolicy {
        thresholds: state.alert_thresholds.clone(),
        unreachable_after: state.config().alerts.unreachable_after,
        auto_refresh,
    }
}

/// The assessment policy for accounts of `platform`.
pub fn policy(state: &AppState, platform: Platform) -> Policy {
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
    state: &AppState,
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
    }
}

/// How long a refresh lease lasts: longer than the slowest token-endpoint call, so that
/// it never runs out under a live holder, yet frees an account whose holder crashed.
fn lease_ttl(state: &AppState) -> i64 {
    let http = &state.config().http;
    let token_timeout = http.token_request_timeout.0.max(http.request_timeout.0);
    i64::try_from(token_timeout.as_secs()).unwrap_or(600).saturating_add(30)
}

/// Refreshes the account's tokens under its refresh lease, then seals and commits the new
/// ones before returning.
///
/// TikTok and X rotate refresh tokens on every use: two refreshers racing with the same
/// refresh token burn it (the loser's `invalid_grant` would mark a healthy account for
/// reconnection). So a refresh takes a lease stored in the database (it holds across the
/// daemon, a `check` process and several daemons; it expires if its holder crashes); a
/// second refresher waits for it, then re-reads the stored tokens and uses those if they
/// changed instead of refreshing again. If the commit fails the refresh is not reported
/// done (the error is returned): nothing else may act on tokens that are not durable.
///
/// The refresh and the commit of its result run in a task of their own (tracked by
/// `state.refreshes`), which the caller awaits: a caller that goes away (a client hanging
/// up, a request timeout, a sweep stopped by SIGTERM) never drops tokens the platform has
/// already rotated. On shutdown the daemon waits for these tasks.
async fn refresh_and_commit(state: &AppState, a: &Account, tokens: &Tokens) -> Result<Refresh, StoreError> {
    let (state, a, tokens) = (state.clone(), a.clone(), tokens.clone());
    let handle = state
        .refreshes
        .clone()
        .spawn(async move { refresh_owned(&state, &a, &tokens).await });
    match handle.await {
        Ok(r) => r,
        // Only a panic ends the task early; the lease guard has released the lease.
        Err(e) => Err(StoreError::Task(format!("a refresh task failed: {e}"))),
    }
}

/// A refresh lease held: released when dropped, on every path (a panic included), by a
/// task of its own when it was not released explicitly.
struct LeaseGuard {
    store: crate::store::Store,
    account: crate::domain::AccountRef,
    holder: String,
    released: bool,
}

impl LeaseGuard {
    async fn release(mut self) {
        self.released = true;
        if let Err(e) = self.store.release_refresh_lease(self.account, &self.holder).await {
            // The lease expires on its own.
            tracing::warn!(error = %e, "could not release the refresh lease");
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (store, account, holder) = (self.store.clone(), self.account, std::mem::take(&mut self.holder));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store.release_refresh_lease(account, &holder).await;
            });
        }
    }
}

async fn refresh_owned(state: &AppState, a: &Account, tokens: &Tokens) -> Result<Refresh, StoreError> {
    let holder = {
        let mut b = [0u8; 12];
        rand::fill(&mut b);
        hex::encode(b)
    };
    let ttl = lease_ttl(state);
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(ttl.unsigned_abs());
    let mut waited = false;
    while !state.store.try_refresh_lease(a.id, &holder, ttl).await? {
        if std::time::Instant::now() >= give_up {
            tracing::warn!(platform = %a.platform, account = %a.account_id, "another refresh of this account is still running; not refreshing");
            return Ok(Refresh::Skipped);
        }
        waited = true;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let lease = LeaseGuard {
        store: state.store.clone(),
        account: a.id,
        holder,
        released: false,
    };
    let result = refresh_leased(state, a, tokens, waited).await;
    lease.release().await;
    result
}

/// The refresh itself, with the lease held.
#[tracing::instrument(name = "refresh", skip_all, fields(platform = %a.platform, account = %a.account_id))]
async fn refresh_leased(state: &AppState, a: &Account, tokens: &Tokens, waited: bool) -> Result<Refresh, StoreError> {
    // Another refresher may have committed new tokens since ours were read.
    let Some(stored) = open_tokens(state, a, None).await? else {
        return Ok(Refresh::Failed(
            "the stored token cannot be opened with the current token key".into(),
        ));
    };
    // Someone refreshed since this check read the account (its tokens may already be the
    // new ones, read after that refresh committed): nothing to do.
    let now_stored = state.store.account_by_ref(a.id).await?.ok_or(StoreError::NotFound)?;
    let refreshed_since =
        (now_stored.token_issued_at, now_stored.token_expires_at) != (a.token_issued_at, a.token_expires_at);
    if !stored.same_as(tokens) || refreshed_since {
        tracing::debug!(platform = %a.platform, account = %a.account_id, waited, "tokens were refreshed meanwhile");
        return Ok(Refresh::Done(stored));
    }
    match state.platforms.refresh(a.platform, &context(a, &stored)).await {
        RefreshOutcome::Refreshed(n) => {
            let ctx = seal_context(a.workspace_id, a.platform, &a.account_id);
            let replacement = TokenReplacement {
                account_ref: a.id,
                workspace_id: a.workspace_id,
                access_token: state.sealer.seal(&ctx, &n.access_token),
                refresh_token: n.refresh_token.as_ref().map(|r| state.sealer.seal(&ctx, r)),
                expires_at: n.expires_at,
                refresh_expires_at: n.refresh_expires_at,
                scopes: n.scopes,
                at: domain::now(),
                health: a.state.health,
            };
            match state.store.replace_tokens(&replacement).await {
                Ok(()) => {}
                Err(StoreError::NotFound) => {
                    // The account was deleted while its refresh ran: the new grant must not
                    // be left alive at the platform with nobody holding it.
                    let minted = Tokens {
                        access: n.access_token,
                        refresh: n.refresh_token.or_else(|| stored.refresh.clone()),
                    };
                    let outcome = state.platforms.revoke(a.platform, &context(a, &minted)).await;
                    tracing::info!(
                        platform = %a.platform,
                        account = %a.account_id,
                        revoked = matches!(outcome, crate::platforms::RevokeOutcome::Revoked),
                        "the account was deleted during its refresh; the new tokens were revoked"
                    );
                    return Err(StoreError::NotFound);
                }
                Err(e) => {
                    tracing::error!(
                        platform = %a.platform,
                        account = %a.account_id,
                        error = %e,
                        "the platform issued new tokens but they could not be stored"
                    );
                    return Err(e);
                }
            }
            state.problems.set(a.platform, Area::Refresh, None);
            tracing::info!(platform = %a.platform, account = %a.account_id, "token refreshed");
            Ok(Refresh::Done(Tokens {
                access: n.access_token,
                // A platform that did not rotate keeps the stored refresh token valid.
                refresh: n.refresh_token.or_else(|| stored.refresh.clone()),
            }))
        }
        RefreshOutcome::Fatal(d) => {
            // Before calling it final: if the stored tokens changed, someone else refreshed
            // (outside the lease, e.g. an older binary) and the account is fine.
            match open_tokens(state, a, None).await? {
                Some(now_stored) if !now_stored.same_as(&stored) => Ok(Refresh::Done(now_stored)),
                _ => Ok(Refresh::Fatal(d)),
            }
        }
        RefreshOutcome::Transient(t) if t.is_throttle() => Ok(Refresh::Throttled(t)),
        RefreshOutcome::Transient(t) => Ok(Refresh::Failed(t.detail)),
        RefreshOutcome::Misconfigured(m) => {
            tracing::error!(platform = %a.platform, account = %a.account_id, problem = %m, "configuration problem");
            state.problems.set(a.platform, Area::Refresh, Some(m.clone()));
            Ok(Refresh::Misconfigured(m))
        }
        RefreshOutcome::NotSupported(_) => Ok(Refresh::Skipped),
    }
}

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

async fn ask(state: &AppState, a: &Account, tokens: &Tokens) -> CheckOutcome {
    let outcome = state.platforms.check(a.platform, &context(a, tokens)).await;
    // The token must belong to the account it is registered as.
    if let CheckOutcome::Valid(v) = &outcome
        && let Some(owner) = &v.owner_id
        && owner != &a.account_id
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
pub async fn check(state: &AppState, account: Account) -> Result<Checked, StoreError> {
    check_with(state, account, None).await
}

/// As [`check`], with the sealed credentials already read (sweeps read them with the page).
/// Counts the check and its duration in the metrics.
pub async fn check_with(
    state: &AppState,
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
    state: &AppState,
    account: Account,
    credentials: Option<SealedCredentials>,
) -> Result<Checked, StoreError> {
    // No span per check (a sweep makes thousands): the events below name the account.
    let Some(mut tokens) = open_tokens(state, &account, credentials).await? else {
        let o = CheckOutcome::Misconfigured(
            "the stored token cannot be opened with the current token key (security.token_key_file)".into(),
        );
        state.problems.observe(account.platform, &o);
        return Ok(assess(state, account.clone(), &account, o, None, false));
    };
    let now = state.clock.now();
    let refreshable = renewed_automatically(state, account.platform, tokens.refresh.is_some());
    let deferral = |t: Transient| {
        assess(
            state,
            account.clone(),
            &account,
            CheckOutcome::Transient(t),
            None,
            refreshable,
        )
    };
    let mut done = Attempts::default();
    let tried_refresh = refreshable && refresh_at(state, &account).is_some_and(|at| at <= now);
    if tried_refresh && let Some(t) = done.absorb(refresh_and_commit(state, &account, &tokens).await?, &mut tokens) {
        return Ok(deferral(t));
    }
    let mut outcome = match &done.fatal {
        Some(d) => CheckOutcome::Invalid {
            reason: InvalidReason::RefreshRejected,
            detail: format!("the refresh token was rejected: {d}"),
        },
        None => ask(state, &account, &tokens).await,
    };
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
        state
            .store
            .record_refresh_failure(account.id, domain::now(), account.state.health, e)
            .await?;
    }
    // After a refresh the stored expiry and scopes changed: assess against them.
    let current = if refreshed {
        state
            .store
            .account_by_ref(account.id)
            .await?
            .ok_or(StoreError::NotFound)?
    } else {
        account.clone()
    };
    Ok(assess(state, account, &current, outcome, refresh_error, refreshable))
}

/// Assesses an outcome into a health update for `current` (the account as stored now;
/// `before` is as it was when the check started). The caller records what the outcome says
/// about the daemon's configuration (`Problems::observe`).
fn assess(
    state: &AppState,
    before: Account,
    current: &Account,
    outcome: CheckOutcome,
    refresh_error: Option<String>,
    refreshable: bool,
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
            update: HealthUpdate::deferral(current, now, retry_at),
            account: before,
            outcome,
            deferred: true,
        };
    }
    let mut p = policy(state, current.platform);
    p.auto_refresh = refreshable && refresh_error.is_none();
    let a = health::assess(&outcome, current, &p, now, refresh_error.as_deref());
    // Counted while refreshes keep failing; a successful refresh resets it in the store
    // (and `current` is then re-read).
    let refresh_failures = current.refresh_failures + i64::from(refresh_error.is_some());
    let timing = Timing {
        check_interval: state.config().health.check_interval.secs(),
        failures: if a.answered { 0 } else { current.consecutive_failures },
        refresh_failures: if refresh_error.is_some() { refresh_failures } else { 0 },
        refresh_at: if refreshable {
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
    let derived = alerts::derive(
        current,
        &outcome,
        &a,
        refresh_error.as_deref(),
        &alert_policy(state, p.auto_refresh),
        now,
    );
    tracing::debug!(
        platform = %current.platform,
        account = %current.account_id,
        outcome = health::outcome_label(&outcome),
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

/// The result of not asking the platform at all (it told us to wait until `retry_at`):
/// the account keeps everything but its next check time.
pub fn deferred(account: Account, retry_at: UnixTime, detail: String) -> Checked {
    let outcome = CheckOutcome::Transient(Transient {
        kind: TransientKind::RateLimited,
        retry_at: Some(retry_at),
        detail,
        scope: ThrottleScope::App,
    });
    Checked {
        update: HealthUpdate::deferral(&account, domain::now(), retry_at),
        account,
        outcome,
        deferred: true,
    }
}

/// Checks one account and writes the result at once; returns the fresh account.
pub async fn check_and_record(state: &AppState, account: Account) -> Result<(Account, CheckOutcome), StoreError> {
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
    state: &AppState,
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
                return Ok(crate::scheduler::gate_deferral(account, until));
            }
            let c = check(&state, account).await?;
            crate::scheduler::note_throttle(&state, &c);
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
