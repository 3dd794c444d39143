//! One check of one account: open its tokens, ask the platform, assess, and build the
//! health update. Used by the API's "check now", the `check` command and the scheduler.

use std::sync::Arc;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::accounts::seal_context;
use crate::app::AppState;
use crate::domain::{self, Platform};
use crate::health::{self, Policy};
use crate::platforms::{CheckOutcome, TokenContext};
use crate::store::{Account, HealthUpdate, StoreError};

/// A finished check, not yet written.
#[derive(Debug)]
pub struct Checked {
    /// The account as it was before the check.
    pub account: Account,
    /// What the platform said.
    pub outcome: CheckOutcome,
    /// What to write.
    pub update: HealthUpdate,
}

/// The assessment policy for accounts of `platform`.
pub fn policy(state: &AppState, platform: Platform) -> Policy {
    let c = &state.config;
    let pc = c.platforms.get(platform);
    Policy {
        warn_before: c.health.warn_before.secs(),
        required_permissions: pc.required_permissions(platform, c.platforms.instagram.login),
        auto_refresh: false,
        stale_after: c.health.stale_after.secs(),
    }
}

/// Checks one account against its platform; writes nothing.
pub async fn check(state: &AppState, account: Account) -> Result<Checked, StoreError> {
    let span =
        tracing::info_span!("check", platform = %account.platform, account = %account.account_id);
    async move {
        let sealed = state.store.credentials(account.id).await?;
        let ctx = seal_context(account.workspace_id, account.platform, &account.account_id);
        let opened = state.sealer.open(&ctx, &sealed.access_token).and_then(|access| {
            let refresh = sealed.refresh_token.as_deref().map(|r| state.sealer.open(&ctx, r)).transpose()?;
            Ok((access, refresh))
        });
        let outcome = match &opened {
            Ok((access, refresh)) => {
                let t = TokenContext {
                    account_id: &account.account_id,
                    access_token: access,
                    refresh_token: refresh.as_ref(),
                    platform_user_id: account.platform_user_id.as_deref(),
                };
                state.platforms.check(account.platform, &t).await
            }
            Err(_) => CheckOutcome::Misconfigured(
                "the stored token cannot be opened with the current token key (security.token_key_file)".into(),
            ),
        };
        state.problems.observe(account.platform, &outcome);
        let now = domain::now();
        let a = health::assess(&outcome, &account, &policy(state, account.platform), now);
        let failures = if a.answered { 0 } else { account.consecutive_failures };
        let next = health::next_check_at(
            &outcome,
            &a,
            failures,
            state.config.health.check_interval.secs(),
            now,
            rand::thread_rng().r#gen::<f64>(),
        );
        tracing::debug!(outcome = health::outcome_label(&outcome), health = %a.health, "checked");
        if let CheckOutcome::Misconfigured(m) = &outcome {
            tracing::error!(problem = %m, "configuration problem");
        }
        let update = HealthUpdate {
            account_ref: account.id,
            health: a.health,
            token_valid: a.token_valid,
            needs_reconnect: a.needs_reconnect,
            permissions: a.permissions,
            missing_permissions: a.missing_permissions,
            recommendations: a.recommendations,
            token_expires_at: a.token_expires_at,
            data_access_expires_at: a.data_access_expires_at,
            platform_user_id: a.platform_user_id,
            last_error: a.last_error,
            checked_at: now,
            answered: a.answered,
            next_check_at: next,
        };
        Ok(Checked {
            account,
            outcome,
            update,
        })
    }
    .instrument(span)
    .await
}

/// Checks one account and writes the result at once; returns the fresh account.
pub async fn check_and_record(
    state: &AppState,
    account: Account,
) -> Result<(Account, CheckOutcome), StoreError> {
    let id = account.id;
    let c = check(state, account).await?;
    state
        .store
        .record_checks(std::slice::from_ref(&c.update))
        .await?;
    let fresh = state
        .store
        .account_by_ref(id)
        .await?
        .ok_or(StoreError::NotFound)?;
    Ok((fresh, c.outcome))
}

/// Checks many accounts with at most `concurrency` in flight; `on_done` sees each result as
/// it finishes (for progress). Results come back in completion order; nothing is written.
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
            let _permit = permits.acquire_owned().await;
            check(&state, account).await
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
