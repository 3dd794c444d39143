//! A refresh under the account's lease, in a task of its own that commits what the platform
//! issued whatever becomes of its caller.

use super::*;

/// How long a refresh lease lasts: longer than the slowest token-endpoint call, so that
/// it never runs out under a live holder, yet frees an account whose holder crashed.
fn lease_ttl(state: &Checker) -> i64 {
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
/// `state.tasks` as `refresh`), which the caller awaits: a caller that goes away (a client hanging
/// up, a request timeout, a sweep stopped by SIGTERM) never drops tokens the platform has
/// already rotated. On shutdown the daemon waits for these tasks.
pub(super) async fn refresh_and_commit(state: &Checker, a: &Account, tokens: &Tokens) -> Result<Refresh, StoreError> {
    let (state, a, tokens) = (state.clone(), a.clone(), tokens.clone());
    let tasks = state.tasks.clone();
    let handle = tasks.spawn("refresh", true, async move { refresh_owned(&state, &a, &tokens).await });
    match handle.await {
        Ok(Some(r)) => r,
        // Only a panic ends the task early; the lease guard has released the lease.
        Ok(None) => Err(StoreError::Task("a refresh task failed".into())),
        Err(e) => Err(StoreError::Task(format!("a refresh task failed: {e}"))),
    }
}

/// A refresh lease held: released when dropped, on every path (a panic included), by a
/// task of its own when it was not released explicitly.
pub(crate) struct LeaseGuard {
    store: crate::store::Store,
    tasks: crate::tasks::Tasks,
    account: crate::domain::AccountRef,
    holder: String,
    released: bool,
}

impl LeaseGuard {
    /// Gives the lease back.
    pub(crate) async fn release(mut self) {
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
        if tokio::runtime::Handle::try_current().is_ok() {
            self.tasks.spawn("lease release", true, async move {
                let _ = store.release_refresh_lease(account, &holder).await;
            });
        }
    }
}

/// Takes the account's refresh lease (the one every writer of its tokens takes: a refresh,
/// a push of new tokens), waiting while another holds it, for at most the lease's own
/// length. `None`: the other holder is still at it. The guard says whether it waited.
pub(crate) async fn take_lease(state: &Checker, a: &Account) -> Result<Option<(LeaseGuard, bool)>, StoreError> {
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
            tracing::warn!(platform = %a.platform, account = %a.account_id, "another writer of this account's tokens is still running");
            return Ok(None);
        }
        waited = true;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let lease = LeaseGuard {
        store: state.store.clone(),
        tasks: state.tasks.clone(),
        account: a.id,
        holder,
        released: false,
    };
    Ok(Some((lease, waited)))
}

async fn refresh_owned(state: &Checker, a: &Account, tokens: &Tokens) -> Result<Refresh, StoreError> {
    let Some((lease, waited)) = take_lease(state, a).await? else {
        return Ok(Refresh::Skipped);
    };
    let result = refresh_leased(state, a, tokens, waited).await;
    lease.release().await;
    result
}

/// The refresh itself, with the lease held.
#[tracing::instrument(name = "refresh", skip_all, fields(platform = %a.platform, account = %a.account_id))]
async fn refresh_leased(state: &Checker, a: &Account, tokens: &Tokens, waited: bool) -> Result<Refresh, StoreError> {
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
                // The real time, as the adapter's expiry is (see `clock.rs`).
                at: domain::now(),
                health: a.state.health,
                pushed: None,
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
            tokens_refreshed(state, a, replacement.expires_at, replacement.at).await;
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

/// Raises `account.tokens_refreshed` for receivers that ask for it (products that cache
/// tokens): the account and the new expiry, never a token. A failure to raise it is logged;
/// the refresh stands.
async fn tokens_refreshed(state: &Checker, a: &Account, expires_at: Option<UnixTime>, at: UnixTime) {
    // Raised only when a receiver asks for it: most products read tokens when they publish,
    // and an outbox row per refresh would be noise.
    let kind = crate::domain::AlertKind::TokensRefreshed;
    let wanted = |events: Option<&[String]>| events.is_some_and(|e| e.iter().any(|t| t == kind.event_type()));
    let operator = state
        .config()
        .notify
        .webhook
        .iter()
        .any(|w| wanted(w.events.as_deref()));
    let tenant = match state.store.webhooks(a.workspace_id).await {
        Ok(hooks) => hooks.iter().any(|w| wanted(w.events.as_ref().map(|e| e.0.as_slice()))),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the workspace's webhooks");
            false
        }
    };
    if !operator && !tenant {
        return;
    }
    let expiry = expires_at.map_or_else(|| "unknown".to_owned(), domain::rfc3339);
    let event = crate::domain::PendingAlert {
        reconnect_url: None,
        id: 0,
        workspace: String::new(),
        attempts: 0,
        reconnect_by: expires_at,
        workspace_id: a.workspace_id,
        account_ref: a.id,
        dedup_key: format!("{}:{at}:tokens_refreshed:{}", a.id, rand::random::<u32>()),
        kind: crate::domain::AlertKind::TokensRefreshed,
        severity: a.state.health,
        platform: a.platform,
        account_id: a.account_id.clone(),
        username: a.username.clone(),
        problem: format!("New tokens were committed; the access token expires {expiry}."),
        action: "Read the current token from GET /v1/accounts/{platform}/{accountId}/token.".into(),
        created_at: at,
    };
    if let Err(e) = state.store.raise_alerts(std::slice::from_ref(&event)).await {
        tracing::warn!(error = %e, "could not raise account.tokens_refreshed");
    }
}
