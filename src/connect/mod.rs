//! Connect links: a session that sends a person's browser through a platform's consent and
//! back, and what comes of the callback (a new account in socialsyncer's custody, or new
//! tokens for the account a reconnect is pinned to). The flows follow each platform's
//! documentation (`crate::platforms::connect` talks to the platforms; `src/platforms/README.md`
//! cites each step). When one consent grants several accounts (Facebook Pages, Instagram
//! accounts through Facebook Login), the person chooses them on socialsyncer's own page
//! ([`choose`]). What comes of a flow is stored in `accounts.rs`.

use std::sync::Arc;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest;

use crate::checks::Checker;
use crate::config::Config;
use crate::domain::{self, AccountId, Platform, UnixTime, WorkspaceId};
use crate::live::Live;
use crate::platforms::connect::{Apps, Exchanged, connectable};
use crate::store::{ConnectSession, StoreError};

mod accounts;

pub use accounts::{Choice, alert_link, choose, held};

/// What connect links need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Connector {
    /// Registers and checks accounts, and replaces their tokens.
    pub checker: Checker,
    /// The configuration (`connect.*`, each platform's `authorize_url`, `connect_scopes`).
    pub config: Live<Arc<Config>>,
    /// The platforms' app credentials and their code exchanges.
    pub apps: Arc<Apps>,
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
    connectable(&config, platform).map_err(ConnectError::NotConnectable)?;
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
    let mut can = Vec::new();
    let mut cannot = Vec::new();
    for p in Platform::ALL {
        match crate::platforms::connect::missing_keys(config, p) {
            None => can.push(p.display_name().to_owned()),
            Some(keys) => cannot.push(format!("{} ({keys})", p.display_name())),
        }
    }
    let list = |v: &[String]| if v.is_empty() { "none".to_owned() } else { v.join(", ") };
    notes.push(format!(
        "connect: links at {public}/connect/; can connect: {}; cannot: {}",
        list(&can),
        list(&cannot)
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
    let url = crate::platforms::connect::authorize_url(
        &config,
        s.platform,
        &callback_url(&config, s.platform),
        id,
        &challenge(verifier.expose_secret()),
    );
    match url {
        Ok(u) => Ok(Some(u)),
        Err(e) => {
            tracing::warn!(platform = %s.platform, error = %e, "a connect link cannot go to the platform");
            Ok(None)
        }
    }
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
    /// The consent granted several accounts: the person chooses on socialsyncer's page.
    Choose(Choice),
    /// Failed, nothing stored: to the session's `redirectUrl` with `status=error&error=code`
    /// when there is one, else a page that says what happened.
    Failed {
        /// Where the browser goes, when the session is known.
        redirect: Option<String>,
        /// The error code.
        code: &'static str,
    },
}

pub(crate) fn with_query(base: &str, pairs: &[(&str, &str)]) -> Option<String> {
    let mut u = reqwest::Url::parse(base).ok()?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Some(u.to_string())
}

pub(crate) fn failed(redirect: Option<&str>, code: &'static str) -> Outcome {
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
    let id = &s.id;
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
    let exchanged = match c
        .apps
        .exchange(platform, &code, &callback_url(&config, platform), &verifier)
        .await
    {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(%platform, error = %e, "a connect link's code exchange failed");
            return Ok(failed(back, "exchange_failed"));
        }
    };
    let granted = match exchanged {
        Exchanged::One { tokens, account_id } => match accounts::identify(c, platform, tokens, account_id).await {
            Some(g) => vec![g],
            None => return Ok(failed(back, "exchange_failed")),
        },
        Exchanged::Many(list) => list,
    };
    let mut granted: Vec<_> = granted
        .into_iter()
        .filter(|g| AccountId::parse(platform, &g.account_id).is_ok())
        .collect();
    if let Some(pinned) = &s.account_id {
        // A reconnect takes the pinned account's tokens and nothing else the consent granted.
        granted.retain(|g| &g.account_id == pinned);
        if granted.is_empty() {
            return Ok(failed(back, "wrong_account"));
        }
    }
    match granted.len() {
        0 => Ok(failed(back, "no_accounts")),
        1 => accounts::store_chosen(c, s, granted).await,
        _ => accounts::hold(c, s, granted).await,
    }
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
