//! What a check does differently for the custody of the grant: a `product`-custody account
//! whose access token expired waits for pushed tokens without asking the platform, and a
//! refresh token used elsewhere while the access token still works is a warning with a
//! deadline, not a reconnect.

use super::*;
use crate::domain::{AlertKind, Custody, Health, InstagramLogin};

/// A `product`-custody account whose access token has expired and that got no newer one:
/// the platform is not called with it. The account reads `unknown` and says which tokens it
/// waits for; no alert goes out.
pub(super) fn awaiting_tokens(state: &Checker, account: Account, now: UnixTime) -> Checked {
    let expired = account.token_expires_at.map(domain::rfc3339).unwrap_or_default();
    let message = format!(
        "Waiting for new tokens from the product (custody: product): the access token expired at {expired}. \
         Push the current tokens with PUT /v1/accounts/{}/{}/credentials.",
        account.platform, account.account_id
    );
    let mut update = HealthUpdate::deferral(
        &account,
        now,
        now + state.config().health.check_interval.secs(),
        message.clone(),
    );
    update.state.health = Health::Unknown;
    update.state.token_valid = None;
    update.state.needs_reconnect = false;
    update.state.last_error = Some(message.clone());
    update.deferred = false;
    update.unchanged = update.same_content(&account);
    Checked {
        account,
        outcome: CheckOutcome::Transient(Transient::new(TransientKind::ServerError, message)),
        update,
        deferred: false,
    }
}

/// Whether socialsyncer itself refreshes this account: its custody, and the platform's and
/// configuration's say (see [`renewed_automatically`]). A refresh token found used elsewhere
/// (an open `refresh_superseded`) is not tried again until new tokens come.
pub(super) fn refreshes_itself(state: &Checker, a: &Account, has_refresh_token: bool) -> bool {
    a.custody == Custody::Socialsyncer
        && !a.open_alerts.contains(&AlertKind::RefreshSuperseded)
        && renewed_automatically(state, a.platform, a.instagram_login, has_refresh_token)
}

/// Whether anyone renews the access token before it expires: socialsyncer (see
/// [`refreshes_itself`]) or, in `product` custody, the product (when the platform renews at
/// all). Expiry alerts then name the refresh token's deadline, not the access token's.
pub(super) fn renewed_by_someone(state: &Checker, a: &Account, has_refresh_token: bool) -> bool {
    renewed(state, a.platform, a.instagram_login, has_refresh_token, a.custody)
}

/// The refresh was refused as fatal, but the access token still answered: another party
/// used the refresh token. The account works until its access token expires: a warning that
/// names that deadline (this) and one `refresh_superseded` alert ([`superseded_alert`]),
/// never a reconnect before it.
pub(super) fn mark_superseded(current: &Account, a: &mut health::Assessment) {
    let (_, message) = superseded_words(current, a);
    if a.state.health == Health::Healthy {
        a.state.health = Health::Warning;
    }
    a.state.needs_reconnect = false;
    a.state.last_error = Some(message);
}

/// The deadline's words and the message of a superseded refresh token.
fn superseded_words(current: &Account, a: &health::Assessment) -> (String, String) {
    let deadline = a.token_expires_at.or(current.token_expires_at);
    let until = deadline.map_or_else(|| "its access token expires".to_owned(), domain::rfc3339);
    let message = format!(
        "The refresh token was used elsewhere. This account works until {until}; push the current tokens \
         (PUT /v1/accounts/{}/{}/credentials) or reconnect before then.",
        current.platform, current.account_id
    );
    (until, message)
}

/// The alert of a superseded refresh token (once an episode), and no reconnect alert.
pub(super) fn superseded_alert(
    current: &Account,
    a: &health::Assessment,
    derived: &mut alerts::Derived,
    now: UnixTime,
) {
    let deadline = a.token_expires_at.or(current.token_expires_at);
    let (until, message) = superseded_words(current, a);
    let kind = AlertKind::RefreshSuperseded;
    // The superseded refresh is not a failure of the account: no reconnect alert now.
    derived.alerts.retain(|e| {
        !matches!(
            e.kind,
            AlertKind::TokenInvalid | AlertKind::TokenExpired | AlertKind::RefreshFailed
        )
    });
    derived.open.retain(|k| {
        !matches!(
            k,
            AlertKind::TokenInvalid | AlertKind::TokenExpired | AlertKind::RefreshFailed
        )
    });
    if derived.open.contains(&kind) {
        return;
    }
    derived.alerts.push(crate::domain::PendingAlert {
        reconnect_url: None,
        id: 0,
        workspace: String::new(),
        attempts: 0,
        reconnect_by: deadline,
        workspace_id: current.workspace_id,
        account_ref: current.id,
        dedup_key: format!("{}:{}:{}:{kind}", current.id, current.token_issued_at, derived.episode),
        kind: kind.clone(),
        severity: Health::Warning,
        platform: current.platform,
        account_id: current.account_id.clone(),
        username: current.username.clone(),
        problem: message,
        action: format!("Push the current tokens or reconnect the account before {until}."),
        created_at: now,
    });
    derived.open.push(kind);
}

/// An access token handed to the product (`GET .../token`).
#[derive(Debug)]
pub struct HandedToken {
    /// The access token.
    pub access_token: SecretString,
    /// Its expiry, when known.
    pub expires_at: Option<UnixTime>,
    /// The scopes granted.
    pub scopes: Vec<String>,
}

/// Why no token was handed out.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The product refreshes this account: it holds the tokens, not socialsyncer.
    #[error("the account is in the product's custody")]
    ProductCustody,
    /// The stored token has expired and could not be refreshed now.
    #[error("{0}")]
    Unavailable(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The account's access token for the product, refreshed first (under the account's
/// lease, so that any number of readers and daemons cause one refresh) when it expires
/// within `min_validity` seconds.
pub async fn hand_out(state: &Checker, a: &Account, min_validity: i64) -> Result<HandedToken, TokenError> {
    if a.custody == Custody::Product {
        return Err(TokenError::ProductCustody);
    }
    let now = state.clock.now();
    let Some(tokens) = open_tokens(state, a, None).await? else {
        return Err(TokenError::Unavailable(
            "the stored token cannot be opened with the current token key".into(),
        ));
    };
    let due = a.token_expires_at.is_some_and(|e| e <= now + min_validity);
    if !due || !refreshes_itself(state, a, tokens.refresh.is_some()) {
        return Ok(HandedToken {
            access_token: tokens.access,
            expires_at: a.token_expires_at,
            scopes: a.scopes.clone(),
        });
    }
    let failure = match refresh_and_commit(state, a, &tokens).await? {
        Refresh::Done(_) | Refresh::Skipped => None,
        Refresh::Fatal(d) => Some(format!("the refresh token was rejected: {d}")),
        Refresh::Failed(d) | Refresh::Misconfigured(d) => Some(d),
        Refresh::Throttled(t) => Some(t.detail),
    };
    // What is stored now: this refresh's tokens, or those another refresher committed.
    let fresh = state.store.account_by_ref(a.id).await?.ok_or(StoreError::NotFound)?;
    let Some(stored) = open_tokens(state, &fresh, None).await? else {
        return Err(TokenError::Unavailable(
            "the stored token cannot be opened with the current token key".into(),
        ));
    };
    if let Some(why) = failure
        && fresh.token_expires_at.is_some_and(|e| e <= now)
    {
        return Err(TokenError::Unavailable(format!(
            "the access token has expired and could not be refreshed: {why}"
        )));
    }
    Ok(HandedToken {
        access_token: stored.access,
        expires_at: fresh.token_expires_at,
        scopes: fresh.scopes,
    })
}

/// Tokens the product pushes (`PUT .../credentials`, `accounts import --replace`).
#[derive(Debug)]
pub struct PushedTokens {
    /// The new access token.
    pub access_token: SecretString,
    /// What becomes of the stored refresh token.
    pub refresh: RefreshChange,
    /// The access token's expiry, when known.
    pub expires_at: Option<UnixTime>,
    /// The refresh token's expiry, when known.
    pub refresh_expires_at: Option<UnixTime>,
    /// The scopes granted (`None`: keep).
    pub scopes: Option<Vec<String>>,
}

/// What a push does to the stored refresh token.
#[derive(Debug)]
pub enum RefreshChange {
    /// Absent from the body: the stored one stays.
    Keep,
    /// `null`: removed.
    Remove,
    /// A new one.
    Set(SecretString),
}

/// Why pushed tokens were refused (nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The token belongs to another account.
    #[error("{0}")]
    WrongAccount(String),
    /// The platform refused the token.
    #[error("{0}")]
    Rejected(String),
    /// The platform could not be asked now.
    #[error("{0}")]
    Unverified(String),
    /// Another writer of the account's tokens did not finish in time.
    #[error("another refresh or push of this account's tokens is still running; try again")]
    Busy,
    /// The database failed (or the account is gone).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Replaces the account's tokens with pushed ones, revoking nothing: they are checked at the
/// platform first (they must belong to this account), written under the account's refresh
/// lease (a refresh in flight cannot overwrite them), and the account is re-assessed at once.
/// Returns the account as stored after the re-assessment.
pub async fn push_tokens(state: &Checker, a: &Account, new: PushedTokens) -> Result<Account, PushError> {
    let ctx = TokenContext {
        account_id: &a.account_id,
        access_token: &new.access_token,
        refresh_token: None,
        platform_user_id: a.state.platform_user_id.as_deref(),
        expires_at: new.expires_at,
        instagram_login: a.instagram_login,
    };
    match state.platforms.check(a.platform, &ctx).await {
        CheckOutcome::Valid(v) => {
            if v.belongs_to(a.platform, &a.account_id) == Some(false)
                && let Some(owner) = v.owner_id
            {
                return Err(PushError::WrongAccount(format!(
                    "These tokens belong to another {} account (ID {}), not {}; nothing was changed.",
                    a.platform.display_name(),
                    domain::truncate_for_message(&owner),
                    a.account_id
                )));
            }
        }
        CheckOutcome::Invalid { detail, .. } | CheckOutcome::PermissionDenied { detail } => {
            return Err(PushError::Rejected(format!(
                "{} did not accept the access token ({detail}); nothing was changed.",
                a.platform.display_name()
            )));
        }
        CheckOutcome::Transient(t) => {
            return Err(PushError::Unverified(format!(
                "{} could not be asked whether the token is this account's ({}); nothing was changed, try again.",
                a.platform.display_name(),
                t.detail
            )));
        }
        CheckOutcome::Misconfigured(m) | CheckOutcome::OtherApp(m) => {
            return Err(PushError::Unverified(format!(
                "the token could not be checked: {m}; nothing was changed."
            )));
        }
    }
    let Some((lease, _)) = take_lease(state, a).await? else {
        return Err(PushError::Busy);
    };
    let ctx = seal_context(a.workspace_id, a.platform, &a.account_id);
    let (refresh_token, remove_refresh) = match &new.refresh {
        RefreshChange::Keep => (None, false),
        RefreshChange::Remove => (None, true),
        RefreshChange::Set(r) => (Some(state.sealer.seal(&ctx, r)), false),
    };
    let replacement = TokenReplacement {
        account_ref: a.id,
        workspace_id: a.workspace_id,
        access_token: state.sealer.seal(&ctx, &new.access_token),
        refresh_token,
        expires_at: new.expires_at,
        refresh_expires_at: new.refresh_expires_at,
        scopes: new.scopes,
        at: state.clock.now(),
        health: a.state.health,
        pushed: Some(crate::store::Pushed { remove_refresh }),
    };
    let stored = state.store.replace_tokens(&replacement).await;
    lease.release().await;
    stored?;
    tracing::info!(platform = %a.platform, account = %a.account_id, "new tokens pushed");
    let mut fresh = state.store.account_by_ref(a.id).await?.ok_or(StoreError::NotFound)?;
    // New tokens end a superseded refresh token's warning: they are assessed afresh.
    fresh.open_alerts.retain(|k| *k != AlertKind::RefreshSuperseded);
    let (fresh, _) = check_and_record(state, fresh).await?;
    Ok(fresh)
}

/// Whether accounts of `platform` (Instagram: with this login) get their tokens refreshed
/// automatically.
pub(super) fn auto_refresh(state: &Checker, platform: Platform, instagram_login: Option<InstagramLogin>) -> bool {
    state.platforms.can_refresh(platform, instagram_login) && state.config().platforms.get(platform).auto_refresh()
}

/// The one predicate for "this account's token is renewed automatically", by platform and
/// whether a refresh token is stored (TikTok and X need one; Instagram Login and Threads
/// refresh the access token itself).
pub fn renewed_automatically(
    state: &Checker,
    platform: Platform,
    instagram_login: Option<InstagramLogin>,
    has_refresh_token: bool,
) -> bool {
    auto_refresh(state, platform, instagram_login)
        && (has_refresh_token || matches!(platform, Platform::Instagram | Platform::Threads))
}

/// Whether anyone renews an account's access token before it expires (socialsyncer, or in
/// `product` custody the product): the reconnect deadline is then the refresh token's.
pub fn renewed(
    state: &Checker,
    platform: Platform,
    instagram_login: Option<InstagramLogin>,
    has_refresh_token: bool,
    custody: crate::domain::Custody,
) -> bool {
    match custody {
        crate::domain::Custody::Socialsyncer => {
            renewed_automatically(state, platform, instagram_login, has_refresh_token)
        }
        crate::domain::Custody::Product => {
            has_refresh_token
                || platform == Platform::Threads
                || state.platforms.can_refresh(platform, instagram_login) && platform == Platform::Instagram
        }
    }
}
