//! Connect links: a session that sends a person's browser through a platform's consent and
//! back, and what comes of the callback (a new account in socialsyncer's custody, or new
//! tokens for the account a reconnect is pinned to). The flows follow each platform's
//! documentation (see `src/platforms/README.md`); X's authorization code flow with PKCE is
//! built so far.

use std::sync::Arc;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

use crate::checks::{self, Checker, PushedTokens, RefreshChange};
use crate::config::Config;
use crate::domain::{self, AccountId, Custody, Platform, UnixTime, WorkspaceId};
use crate::live::Live;
use crate::platforms::{CheckOutcome, TokenContext};
use crate::store::{ConnectSession, StoreError};

/// What connect links need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Connector {
    /// Registers and checks accounts, and replaces their tokens.
    pub checker: Checker,
    /// The configuration (`connect.*`, each platform's `authorize_url`, `connect_scopes`).
    pub config: Live<Arc<Config>>,
}

/// Why a connect link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// `connect.public_url` is not set.
    #[error("connecting is off: set connect.public_url (and connect.listen) to make connect links")]
    Disabled,
    /// The `redirectUrl` is not one the operator allows.
    #[error("redirectUrl must start with one of connect.allowed_redirects")]
    BadRedirect,
    /// The platform cannot be connected (yet, or without its app credentials).
    #[error("{0}")]
    NotConnectable(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A connect link.
#[derive(Debug)]
pub struct Link {
    /// `{connect.public_url}/connect/{id}`.
    pub url: String,
    /// When it stops working.
    pub expires_at: UnixTime,
}

/// What binds a session's sealed PKCE verifier to it.
fn verifier_context(id: &str) -> String {
    format!("connect/{id}")
}

/// PKCE's S256 challenge of `verifier` (RFC 7636 section 4.2).
fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

fn random_b64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::fill(&mut b[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Makes a connect link for `platform` in workspace `ws` (pinned to account `pinned` for a
/// reconnect) that brings the browser back to `redirect_url`.
pub async fn start(
    c: &Connector,
    ws: WorkspaceId,
    platform: Platform,
    redirect_url: &str,
    pinned: Option<&AccountId>,
) -> Result<Link, ConnectError> {
    let config = c.config.get();
    let Some(public) = config.connect.public_url() else {
        return Err(ConnectError::Disabled);
    };
    let allowed = config
        .connect
        .allowed_redirects
        .iter()
        .any(|a| !a.trim().is_empty() && redirect_url.starts_with(a.trim()));
    if !allowed || redirect_url.len() > 2048 {
        return Err(ConnectError::BadRedirect);
    }
    connectable(&config, platform)?;
    let now = c.checker.clock.now();
    let expires_at = now + config.connect.session_ttl.secs();
    let pinned = pinned.map(|a| a.as_str().to_owned());
    let id = new_session(
        c,
        ws,
        platform,
        pinned,
        redirect_url.to_owned(),
        (now, expires_at),
        false,
    )
    .await?;
    Ok(Link {
        url: format!("{public}/connect/{id}"),
        expires_at,
    })
}

/// Stores a new session (a random 192-bit ID, a sealed PKCE verifier) valid from `now` to
/// `expires_at`; returns its ID.
async fn new_session(
    c: &Connector,
    ws: WorkspaceId,
    platform: Platform,
    account_id: Option<String>,
    redirect_url: String,
    (now, expires_at): (UnixTime, UnixTime),
    retry: bool,
) -> Result<String, StoreError> {
    let id = random_b64(24);
    let verifier = SecretString::from(random_b64(32));
    let session = ConnectSession {
        id: id.clone(),
        workspace_id: ws,
        platform,
        account_id,
        verifier: c.checker.sealer.seal(&verifier_context(&id), &verifier),
        redirect_url,
        expires_at,
        used_at: None,
        retry,
    };
    c.checker.store.create_connect_session(&session, now).await?;
    Ok(id)
}

/// Whether `platform` can be connected with this configuration.
fn connectable(config: &Config, platform: Platform) -> Result<(), ConnectError> {
    match platform {
        Platform::Twitter if config.platforms.twitter.client_id.is_some() => Ok(()),
        Platform::Twitter => Err(ConnectError::NotConnectable(
            "connecting X needs platforms.twitter.client_id".into(),
        )),
        p => Err(ConnectError::NotConnectable(format!(
            "connecting {} accounts through socialsyncer is not built yet; register them with POST /v1/accounts",
            p.display_name()
        ))),
    }
}

/// `config check`'s view of `[connect]`: problems with it, and which platforms can connect.
pub fn check_config(config: &Config, notes: &mut Vec<String>, problems: &mut Vec<String>) {
    let c = &config.connect;
    let Some(public) = c.public_url() else {
        notes.push("connect: off (connect.public_url is not set)".into());
        return;
    };
    let http = |u: &str| {
        reqwest::Url::parse(u)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
    };
    if http(public).is_none() {
        problems.push(format!(
            "connect.public_url: '{}' is not an http(s) URL",
            domain::truncate_for_message(public)
        ));
    }
    if c.listen.trim().is_empty() {
        problems.push("connect.listen: empty, so nothing serves the connect links connect.public_url names".into());
    }
    if c.allowed_redirects.is_empty() {
        problems.push(
            "connect.allowed_redirects: empty, so no connect link can be made (POST /v1/connect answers 400)".into(),
        );
    }
    for r in &c.allowed_redirects {
        if http(r).is_none() {
            problems.push(format!(
                "connect.allowed_redirects: '{}' is not an http(s) URL",
                domain::truncate_for_message(r)
            ));
        }
    }
    let (can, cannot): (Vec<Platform>, Vec<Platform>) =
        Platform::ALL.into_iter().partition(|p| connectable(config, *p).is_ok());
    let names = |ps: &[Platform]| ps.iter().map(|p| p.display_name()).collect::<Vec<_>>().join(", ");
    notes.push(format!(
        "connect: links at {public}/connect/; can connect: {}; cannot: {}",
        if can.is_empty() { "none".into() } else { names(&can) },
        if cannot.is_empty() {
            "none".into()
        } else {
            names(&cannot)
        }
    ));
}

/// The platform's callback for connect links.
fn callback_url(config: &Config, platform: Platform) -> String {
    format!(
        "{}/connect/callback/{platform}",
        config.connect.public_url().unwrap_or_default()
    )
}

/// Where a connect link sends the browser: the platform's authorization page, for a session
/// that is unused and unexpired; `None` otherwise.
pub async fn authorize_url(c: &Connector, id: &str) -> Result<Option<String>, StoreError> {
    let Some(s) = c.checker.store.connect_session(id).await? else {
        return Ok(None);
    };
    if s.used_at.is_some() || s.expires_at <= c.checker.clock.now() {
        return Ok(None);
    }
    let Ok(verifier) = c.checker.sealer.open(&verifier_context(id), &s.verifier) else {
        return Ok(None);
    };
    let config = c.config.get();
    let pc = config.platforms.get(s.platform);
    let base = pc
        .authorize_url
        .clone()
        .unwrap_or_else(|| "https://x.com/i/oauth2/authorize".to_owned());
    let Ok(mut url) = reqwest::Url::parse(&base) else {
        return Ok(None);
    };
    let mut scopes = pc.connect_scopes.clone().unwrap_or_else(|| {
        let mut s = pc.required_permissions(s.platform, config.platforms.instagram.login);
        // X issues a refresh token only with offline.access.
        s.push("offline.access".into());
        s
    });
    scopes.dedup();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", pc.client_id.as_deref().unwrap_or_default())
        .append_pair("redirect_uri", &callback_url(&config, s.platform))
        .append_pair("scope", &scopes.join(" "))
        .append_pair("state", id)
        .append_pair("code_challenge", &challenge(verifier.expose_secret()))
        .append_pair("code_challenge_method", "S256");
    Ok(Some(url.to_string()))
}

/// The platform's answer as it reaches the callback.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The session ID.
    pub state: Option<String>,
    /// Set when the person refused (`access_denied`) or the platform failed.
    pub error: Option<String>,
}

/// What a callback came to.
#[derive(Debug)]
pub enum Outcome {
    /// Connected: the browser goes to this URL (`status=connected&platform&accountId`).
    Connected(String),
    /// Failed, nothing stored: to the session's `redirectUrl` with `status=error&error=code`
    /// when there is one, else a page that says what happened.
    Failed {
        /// Where the browser goes, when the session is known.
        redirect: Option<String>,
        /// The error code.
        code: &'static str,
    },
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut u = reqwest::Url::parse(base).ok()?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Some(u.to_string())
}

fn failed(redirect: Option<&str>, code: &'static str) -> Outcome {
    Outcome::Failed {
        redirect: redirect.and_then(|r| with_query(r, &[("status", "error"), ("error", code)])),
        code,
    }
}

/// The platform sent the browser back: the session is taken (once), the code exchanged, the
/// identity read, and the account registered or its tokens replaced; nothing is stored on
/// any failure.
pub async fn callback(c: &Connector, platform: Platform, cb: Callback) -> Result<Outcome, StoreError> {
    let store = &c.checker.store;
    let Some(id) = cb.state.clone().filter(|s| !s.is_empty() && s.len() <= 64) else {
        return Ok(failed(None, "invalid_state"));
    };
    let Some(s) = store.connect_session(&id).await? else {
        return Ok(failed(None, "invalid_state"));
    };
    if s.platform != platform || !store.take_connect_session(&id, c.checker.clock.now()).await? {
        return Ok(failed(Some(s.redirect_url.as_str()), "invalid_state"));
    }
    let outcome = finish(c, &s, platform, cb).await;
    // An alert's reconnect link is used only by a success: a refusal or a failed exchange
    // gives it back for another try.
    if s.retry && !matches!(outcome, Ok(Outcome::Connected(_))) {
        store.give_back_connect_session(&id).await?;
    }
    outcome
}

/// The rest of a callback, with the session taken.
async fn finish(c: &Connector, s: &ConnectSession, platform: Platform, cb: Callback) -> Result<Outcome, StoreError> {
    let (store, id) = (&c.checker.store, &s.id);
    let back = Some(s.redirect_url.as_str());
    if cb.error.is_some() {
        return Ok(failed(back, "access_denied"));
    }
    let Some(code) = cb.code.filter(|c| !c.is_empty()) else {
        return Ok(failed(back, "invalid_request"));
    };
    let Ok(verifier) = c.checker.sealer.open(&verifier_context(id), &s.verifier) else {
        return Ok(failed(back, "invalid_state"));
    };
    let config = c.config.get();
    let tokens = match c
        .checker
        .platforms
        .exchange_code(platform, &code, &callback_url(&config, platform), &verifier)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(%platform, error = %e, "a connect link's code exchange failed");
            return Ok(failed(back, "exchange_failed"));
        }
    };
    // Whose tokens these are.
    let ctx = TokenContext {
        account_id: "",
        access_token: &tokens.access_token,
        refresh_token: None,
        platform_user_id: None,
        expires_at: tokens.expires_at,
    };
    let (account_id, username) = match c.checker.platforms.check(platform, &ctx).await {
        CheckOutcome::Valid(v) => match v.owner_id.or(v.user_id) {
            Some(id) => (id, v.username.unwrap_or_default()),
            None => return Ok(failed(back, "exchange_failed")),
        },
        _ => return Ok(failed(back, "exchange_failed")),
    };
    if let Some(pinned) = &s.account_id
        && pinned != &account_id
    {
        return Ok(failed(back, "wrong_account"));
    }
    let Ok(parsed) = AccountId::parse(platform, &account_id) else {
        return Ok(failed(back, "exchange_failed"));
    };
    let stored = match store.get_account(s.workspace_id, platform, &parsed).await? {
        Some(a) => {
            let pushed = PushedTokens {
                access_token: tokens.access_token,
                refresh: tokens.refresh_token.map_or(RefreshChange::Keep, RefreshChange::Set),
                expires_at: tokens.expires_at,
                refresh_expires_at: tokens.refresh_expires_at,
                scopes: tokens.scopes,
            };
            let ok = checks::push_tokens(&c.checker, &a, pushed).await.is_ok();
            if ok && s.account_id.is_some() {
                reconnected(c, &a).await;
            }
            ok
        }
        None => register(c, s.workspace_id, platform, &account_id, &username, tokens).await?,
    };
    if !stored {
        return Ok(failed(back, "exchange_failed"));
    }
    tracing::info!(%platform, account = %account_id, "account connected through a connect link");
    let to = with_query(
        &s.redirect_url,
        &[
            ("status", "connected"),
            ("platform", platform.as_str()),
            ("accountId", &account_id),
        ],
    );
    Ok(match to {
        Some(u) => Outcome::Connected(u),
        None => failed(None, "invalid_redirect"),
    })
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
    tokens: crate::platforms::NewTokens,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_s256_challenge_is_rfc_7636s() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
