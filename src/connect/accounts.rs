//! What comes of a connect flow: the accounts a consent granted are identified, held for the
//! person's choice when there are several, and stored (a new account in socialsyncer's
//! custody, or new tokens for the account a reconnect is pinned to).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Connector, Outcome, failed, new_session, with_query};
use crate::checks::{self, PushedTokens, RefreshChange};
use crate::domain::{self, AccountId, Custody, Platform, WorkspaceId};
use crate::platforms::connect::{Granted, connectable};
use crate::platforms::{CheckOutcome, NewTokens, TokenContext};
use crate::store::{ConnectSession, StoreError};

/// Whose tokens a single-account exchange gave: a check reads the identity (and the name);
/// `None` when the platform would not say.
pub(super) async fn identify(
    c: &Connector,
    platform: Platform,
    tokens: NewTokens,
    named: Option<String>,
) -> Option<Granted> {
    let ctx = TokenContext {
        account_id: named.as_deref().unwrap_or_default(),
        access_token: &tokens.access_token,
        refresh_token: None,
        platform_user_id: None,
        expires_at: tokens.expires_at,
        instagram_login: Some(c.apps.instagram_login()),
    };
    let CheckOutcome::Valid(v) = c.checker.platforms.check(platform, &ctx).await else {
        return None;
    };
    let account_id = named.or(v.owner_id).or(v.user_id)?;
    Some(Granted {
        account_id,
        username: v.username.unwrap_or_default(),
        tokens,
    })
}

/// An account held for the person's choice (sealed in the session row, never shown).
#[derive(Serialize, Deserialize)]
struct Held {
    account_id: String,
    username: String,
    access_token: String,
    expires_at: Option<i64>,
    scopes: Option<Vec<String>>,
}

/// What the chooser page shows: the session and the accounts to pick from.
#[derive(Debug)]
pub struct Choice {
    /// The session (the form posts back to `/connect/{id}/choose`).
    pub session: String,
    /// The platform.
    pub platform: Platform,
    /// Each account's ID and name.
    pub accounts: Vec<(String, String)>,
}

fn held_context(id: &str) -> String {
    format!("connect/{id}/granted")
}

/// Holds the accounts a consent granted, sealed, until the person chooses among them.
pub(super) async fn hold(c: &Connector, s: &ConnectSession, granted: Vec<Granted>) -> Result<Outcome, StoreError> {
    let accounts = granted
        .iter()
        .map(|g| (g.account_id.clone(), g.username.clone()))
        .collect();
    let held: Vec<Held> = granted
        .into_iter()
        .map(|g| Held {
            account_id: g.account_id,
            username: g.username,
            access_token: g.tokens.access_token.expose_secret().to_owned(),
            expires_at: g.tokens.expires_at,
            scopes: g.tokens.scopes,
        })
        .collect();
    let json = SecretString::from(serde_json::to_string(&held).unwrap_or_default());
    let sealed = c.checker.sealer.seal(&held_context(&s.id), &json);
    c.checker.store.hold_connect_grant(&s.id, &sealed).await?;
    Ok(Outcome::Choose(Choice {
        session: s.id.clone(),
        platform: s.platform,
        accounts,
    }))
}

/// The accounts a session holds for the person's choice (for the chooser page, which may be
/// shown again on a reload); `None` once chosen, or when there is nothing to choose.
pub async fn held(c: &Connector, id: &str) -> Result<Option<Choice>, StoreError> {
    let store = &c.checker.store;
    let Some(s) = store.connect_session(id).await? else {
        return Ok(None);
    };
    let Some(sealed) = store.connect_grant(id, c.checker.clock.now()).await? else {
        return Ok(None);
    };
    let Ok(json) = c.checker.sealer.open(&held_context(id), &sealed) else {
        return Ok(None);
    };
    let held: Vec<Held> = serde_json::from_str(json.expose_secret()).unwrap_or_default();
    Ok(Some(Choice {
        session: s.id,
        platform: s.platform,
        accounts: held.into_iter().map(|h| (h.account_id, h.username)).collect(),
    }))
}

/// The person's choice on socialsyncer's page (`POST /connect/{id}/choose`): `accounts` are
/// the IDs they ticked; `cancel` when they pressed Cancel. The held accounts are taken once.
pub async fn choose(c: &Connector, id: &str, accounts: &[String], cancel: bool) -> Result<Outcome, StoreError> {
    let store = &c.checker.store;
    let Some(s) = store.connect_session(id).await? else {
        return Ok(failed(None, "invalid_state"));
    };
    let back = Some(s.redirect_url.as_str());
    let now = c.checker.clock.now();
    let Some(sealed) = store.connect_grant(id, now).await? else {
        return Ok(failed(back, "invalid_state"));
    };
    if !store.take_connect_grant(id, &sealed).await? {
        return Ok(failed(back, "invalid_state"));
    }
    let held: Vec<Held> = match c.checker.sealer.open(&held_context(id), &sealed) {
        Ok(json) => serde_json::from_str(json.expose_secret()).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    if cancel {
        return Ok(failed(back, "access_denied"));
    }
    let chosen: Vec<Granted> = held
        .into_iter()
        .filter(|h| accounts.contains(&h.account_id))
        .map(|h| Granted {
            account_id: h.account_id,
            username: h.username,
            tokens: NewTokens {
                access_token: SecretString::from(h.access_token),
                refresh_token: None,
                expires_at: h.expires_at,
                refresh_expires_at: None,
                scopes: h.scopes,
            },
        })
        .collect();
    if chosen.is_empty() {
        return Ok(failed(back, "no_accounts"));
    }
    store_chosen(c, &s, chosen).await
}

/// Stores each chosen account (registered, or its tokens replaced); the browser goes back
/// with `status=connected&platform=P&accountId=ID` (one `accountId` for each).
pub(super) async fn store_chosen(
    c: &Connector,
    s: &ConnectSession,
    chosen: Vec<Granted>,
) -> Result<Outcome, StoreError> {
    let platform = s.platform;
    let back = Some(s.redirect_url.as_str());
    let mut stored = Vec::new();
    for g in chosen {
        let id = g.account_id.clone();
        if store_one(c, s, g).await? {
            tracing::info!(%platform, account = %id, "account connected through a connect link");
            stored.push(id);
        }
    }
    if stored.is_empty() {
        return Ok(failed(back, "exchange_failed"));
    }
    let mut pairs = vec![("status", "connected"), ("platform", platform.as_str())];
    pairs.extend(stored.iter().map(|id| ("accountId", id.as_str())));
    Ok(match with_query(&s.redirect_url, &pairs) {
        Some(u) => Outcome::Connected(u),
        None => failed(None, "invalid_redirect"),
    })
}

/// One account: new tokens for an account the workspace has, else a new registration.
async fn store_one(c: &Connector, s: &ConnectSession, g: Granted) -> Result<bool, StoreError> {
    let Ok(parsed) = AccountId::parse(s.platform, &g.account_id) else {
        return Ok(false);
    };
    match c.checker.store.get_account(s.workspace_id, s.platform, &parsed).await? {
        Some(a) => {
            // The new tokens are of the login the link used: checked on its host, and the
            // account's from now on.
            let stored_login = a.instagram_login;
            let a = crate::domain::Account {
                instagram_login: (s.platform == Platform::Instagram).then(|| c.apps.instagram_login()),
                ..a
            };
            let t = g.tokens;
            let pushed = PushedTokens {
                access_token: t.access_token,
                refresh: t.refresh_token.map_or(RefreshChange::Keep, RefreshChange::Set),
                expires_at: t.expires_at,
                refresh_expires_at: t.refresh_expires_at,
                scopes: t.scopes,
            };
            let ok = checks::push_tokens(&c.checker, &a, pushed).await.is_ok();
            if ok
                && let Some(login) = a.instagram_login
                && stored_login != Some(login)
            {
                c.checker.store.set_instagram_login(a.id, a.workspace_id, login).await?;
            }
            if ok && s.account_id.is_some() {
                reconnected(c, &a).await;
            }
            Ok(ok)
        }
        None => register(c, s.workspace_id, s.platform, &g.account_id, &g.username, g.tokens).await,
    }
}

/// Raises `account.reconnected` for an account a reconnect link gave new tokens (its
/// `account.recovered`, when it had been unhealthy, comes from the check that followed).
async fn reconnected(c: &Connector, a: &crate::domain::Account) {
    let now = c.checker.clock.now();
    let event = crate::domain::PendingAlert {
        reconnect_url: None,
        id: 0,
        workspace: String::new(),
        attempts: 0,
        reconnect_by: None,
        workspace_id: a.workspace_id,
        account_ref: a.id,
        dedup_key: format!("{}:{now}:reconnected:{}", a.id, rand::random::<u32>()),
        kind: crate::domain::AlertKind::Reconnected,
        severity: crate::domain::Health::Healthy,
        platform: a.platform,
        account_id: a.account_id.clone(),
        username: a.username.clone(),
        problem: "The account was reconnected through its reconnect link.".into(),
        action: "Nothing to do.".into(),
        created_at: now,
    };
    if let Err(e) = c.checker.store.raise_alerts(std::slice::from_ref(&event)).await {
        tracing::warn!(error = %e, "could not raise account.reconnected");
    }
}

/// A reconnect link for an alert about `account_id` (valid `connect.link_ttl`, pinned to the
/// account, used only by a success), when connecting is on and the platform can connect.
pub async fn alert_link(c: &Connector, ws: WorkspaceId, platform: Platform, account_id: &str) -> Option<String> {
    let config = c.config.get();
    let public = config.connect.public_url()?;
    connectable(&config, platform).ok()?;
    let now = c.checker.clock.now();
    // One link an account while it works: the alerts and the account's JSON give the same.
    // (A link made now must stay usable a while: one expiring within a day is not reused.)
    if let Ok(Some(id)) = c
        .checker
        .store
        .live_reconnect_link(ws, platform, account_id, now + 86_400)
        .await
    {
        return Some(format!("{public}/connect/{id}"));
    }
    let made = new_session(
        c,
        ws,
        platform,
        Some(account_id.to_owned()),
        format!("{public}/connect/done"),
        (now, now + config.connect.link_ttl.secs()),
        true,
    )
    .await;
    match made {
        Ok(id) => Some(format!("{public}/connect/{id}")),
        Err(e) => {
            tracing::warn!(error = %e, "could not make a reconnect link; the alert goes without one");
            None
        }
    }
}

impl crate::alerts::ReconnectLinks for Connector {
    fn link<'a>(
        &'a self,
        workspace_id: WorkspaceId,
        platform: Platform,
        account_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(alert_link(self, workspace_id, platform, account_id))
    }
}

/// Registers a newly connected account in socialsyncer's custody and checks it at once.
async fn register(
    c: &Connector,
    ws: WorkspaceId,
    platform: Platform,
    account_id: &str,
    username: &str,
    tokens: NewTokens,
) -> Result<bool, StoreError> {
    let input = crate::accounts::RegistrationInput {
        platform: platform.as_str().to_owned(),
        account_id: account_id.to_owned(),
        username: if username.is_empty() {
            account_id.to_owned()
        } else {
            username.to_owned()
        },
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_at: tokens.expires_at.map(domain::rfc3339),
        scopes: tokens.scopes.unwrap_or_default(),
        custody: Some(Custody::Socialsyncer),
        // The login its tokens came from, whatever the configured default becomes.
        instagram_login: (platform == Platform::Instagram).then(|| c.apps.instagram_login()),
    };
    let Ok(reg) = input.validate() else {
        return Ok(false);
    };
    let id = match crate::accounts::register(&c.checker, ws, &reg).await {
        Ok(id) => id,
        Err(crate::accounts::RegistrationError::Store(e)) => return Err(e),
        Err(_) => return Ok(false),
    };
    if let Some(a) = c.checker.store.account_by_ref(id).await? {
        checks::check_and_record(&c.checker, a).await?;
    }
    Ok(true)
}
