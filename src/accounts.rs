//! Registering and removing accounts: the steps shared by the HTTP API and the CLI.

use secrecy::{ExposeSecret, SecretString};

use crate::checks::Checker;
use crate::domain::{self, AccountId, Custody, InstagramLogin, Platform, UnixTime};
use crate::domain::{AccountRef, WorkspaceId};
use crate::platforms::{RevokeOutcome, TokenContext};
use crate::store::{Account, NewAccount, StoreError};

mod revoke;

/// A registration request as it arrives, before validation.
#[derive(Debug)]
pub struct RegistrationInput {
    /// Platform name.
    pub platform: String,
    /// Platform account ID.
    pub account_id: String,
    /// Display name.
    pub username: String,
    /// Access token.
    pub access_token: SecretString,
    /// Refresh token, if any.
    pub refresh_token: Option<SecretString>,
    /// Access token expiry, RFC 3339.
    pub expires_at: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Who refreshes its grant; `None`: `accounts.default_custody`.
    pub custody: Option<Custody>,
    /// Instagram only: the login it was connected with; `None`: `platforms.instagram.login`.
    pub instagram_login: Option<InstagramLogin>,
}

/// Why a registration was refused; each maps to a 400 or a 409.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    /// Bad input; `code` is the API error code.
    #[error("{message}")]
    Invalid {
        /// API error code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The account is already registered in this workspace.
    #[error("{0} account {1} is already registered in this workspace")]
    Exists(Platform, String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

fn invalid(code: &'static str, message: impl Into<String>) -> RegistrationError {
    RegistrationError::Invalid {
        code,
        message: message.into(),
    }
}

/// Checks the shape of a token without ever echoing it.
fn check_token(field: &str, code: &'static str, t: &SecretString) -> Result<(), RegistrationError> {
    let s = t.expose_secret();
    if s.is_empty() {
        return Err(invalid(code, format!("{field} must not be empty.")));
    }
    if s.len() > 4096 {
        return Err(invalid(code, format!("{field} is longer than 4096 characters.")));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            code,
            format!("{field} must be printable ASCII without spaces (was it pasted with a line break?)."),
        ));
    }
    Ok(())
}

/// A validated registration.
#[derive(Debug)]
pub struct Registration {
    /// Platform.
    pub platform: Platform,
    /// Account ID.
    pub account_id: AccountId,
    /// Display name.
    pub username: String,
    /// Access token.
    pub access_token: SecretString,
    /// Refresh token.
    pub refresh_token: Option<SecretString>,
    /// Access token expiry.
    pub expires_at: Option<UnixTime>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Who refreshes its grant; `None`: `accounts.default_custody`.
    pub custody: Option<Custody>,
    /// Instagram only: the login it was connected with; `None`: `platforms.instagram.login`.
    pub instagram_login: Option<InstagramLogin>,
}

impl RegistrationInput {
    /// Validates every field, with a message that says what is expected.
    pub fn validate(self) -> Result<Registration, RegistrationError> {
        let platform: Platform = self
            .platform
            .parse()
            .map_err(|e: domain::UnknownPlatform| invalid("unknown_platform", e.to_string()))?;
        if self.instagram_login.is_some() && platform != Platform::Instagram {
            return Err(invalid(
                "invalid_instagram_login",
                "instagramLogin applies to Instagram accounts only.",
            ));
        }
        let account_id =
            AccountId::parse(platform, &self.account_id).map_err(|e| invalid("invalid_account_id", e.to_string()))?;
        // Bidi controls and line or paragraph separators are dropped: they would reorder or
        // break the text a username is shown in (a chat card, an email, a log line).
        let username: String = self.username.chars().filter(|c| !is_layout_control(*c)).collect();
        let username = username.trim().to_owned();
        if username.is_empty() || username.chars().count() > 256 || username.chars().any(char::is_control) {
            return Err(invalid(
                "invalid_username",
                "username must be 1 to 256 characters without control characters.",
            ));
        }
        check_token("accessToken", "invalid_access_token", &self.access_token)?;
        if let Some(r) = &self.refresh_token {
            check_token("refreshToken", "invalid_refresh_token", r)?;
        }
        let expires_at = self
            .expires_at
            .as_deref()
            .map(domain::parse_rfc3339)
            .transpose()
            .map_err(|m| invalid("invalid_expires_at", format!("expiresAt: {m}")))?;
        if self.scopes.len() > MAX_SCOPES {
            return Err(invalid(
                "invalid_scopes",
                format!("scopes: at most {MAX_SCOPES} entries."),
            ));
        }
        let mut scopes = Vec::with_capacity(self.scopes.len());
        for s in self.scopes {
            let s = s.trim().to_owned();
            let ok = !s.is_empty()
                && s.len() <= MAX_SCOPE_LEN
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-' | b'/'));
            if !ok {
                return Err(invalid(
                    "invalid_scopes",
                    format!(
                        "scope '{}' is not valid: at most {MAX_SCOPE_LEN} letters, digits, '.', '_', ':', '-' or '/'.",
                        domain::truncate_for_message(&s)
                    ),
                ));
            }
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        Ok(Registration {
            platform,
            account_id,
            username,
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            expires_at,
            scopes,
            custody: self.custody,
            instagram_login: self.instagram_login,
        })
    }
}

/// Scopes an account may list at most, and the longest scope: what one account adds to
/// every list that shows it is bounded.
pub const MAX_SCOPES: usize = 50;
/// See [`MAX_SCOPES`].
pub const MAX_SCOPE_LEN: usize = 100;

/// Characters that change how text around them is laid out: the bidi embeddings, overrides,
/// isolates and marks, and the line and paragraph separators.
fn is_layout_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
}

pub use crate::crypto::seal_context;

/// Seals the tokens and stores the account with `unknown` health. Returns the row ID.
pub async fn register(
    state: &Checker,
    workspace_id: WorkspaceId,
    reg: &Registration,
) -> Result<AccountRef, RegistrationError> {
    let ctx = seal_context(workspace_id, reg.platform, reg.account_id.as_str());
    let new = NewAccount {
        workspace_id,
        platform: reg.platform,
        account_id: reg.account_id.clone(),
        username: reg.username.clone(),
        access_token: state.sealer.seal(&ctx, &reg.access_token),
        refresh_token: reg.refresh_token.as_ref().map(|t| state.sealer.seal(&ctx, t)),
        token_expires_at: reg.expires_at,
        scopes: reg.scopes.clone(),
        connected_at: state.clock.now(),
        custody: reg.custody.unwrap_or(state.config().accounts.default_custody),
        instagram_login: reg.instagram_login,
    };
    match state.store.insert_account(&new).await {
        Ok(id) => Ok(id),
        Err(StoreError::Conflict) => Err(RegistrationError::Exists(reg.platform, reg.account_id.to_string())),
        Err(e) => Err(RegistrationError::Store(e)),
    }
}

/// Revokes the account's token at its platform, then deletes the account and its
/// credentials whatever the platform said. Returns what the revocation did.
///
/// A grant shared by other connected accounts is left in place (see `revoke.rs`: a Meta
/// grant, revoked only with `platforms.facebook.revoke_grant`, and a TikTok grant, which
/// disconnects the app from that TikTok user everywhere); the answer says why.
///
/// The account is deleted first, in one transaction that also takes its credentials: of
/// several concurrent `DELETE`s exactly one revokes, the others find it gone (`NotFound`).
pub async fn disconnect(state: &Checker, account: &Account) -> Result<RevokeOutcome, StoreError> {
    let sealed = state
        .store
        .take_account(account.id)
        .await?
        .ok_or(StoreError::NotFound)?;
    let ctx = seal_context(account.workspace_id, account.platform, &account.account_id);
    let revoke = match state.sealer.open(&ctx, &sealed.access_token) {
        Ok(access) => {
            let refresh = sealed
                .refresh_token
                .as_deref()
                .and_then(|r| state.sealer.open(&ctx, r).ok());
            let t = TokenContext {
                account_id: &account.account_id,
                access_token: &access,
                refresh_token: refresh.as_ref(),
                platform_user_id: account.state.platform_user_id.as_deref(),
                expires_at: account.token_expires_at,
                instagram_login: account.instagram_login,
            };
            revoke::revoke(state, account, t).await?
        }
        Err(_) => RevokeOutcome::Failed("the stored token cannot be opened with the current token key".into()),
    };
    match &revoke {
        RevokeOutcome::Revoked => {
            tracing::info!(platform = %account.platform, account = %account.account_id, "token revoked and account deleted")
        }
        RevokeOutcome::NotSupported(r) | RevokeOutcome::Failed(r) => tracing::warn!(
            platform = %account.platform,
            account = %account.account_id,
            reason = %r,
            "account deleted; the token was not revoked at the platform"
        ),
    }
    Ok(revoke)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> RegistrationInput {
        RegistrationInput {
            platform: "twitter".into(),
            account_id: "1234567890".into(),
            username: " @mybusiness ".into(),
            access_token: SecretString::from("tok-1".to_owned()),
            refresh_token: None,
            expires_at: Some("2026-12-01T00:00:00Z".into()),
            scopes: vec!["tweet.read".into(), "tweet.read".into()],
            custody: None,
            instagram_login: None,
        }
    }

    #[test]
    fn an_instagram_login_is_refused_for_other_platforms() {
        let i = RegistrationInput {
            instagram_login: Some(InstagramLogin::Instagram),
            ..input()
        };
        assert!(
            matches!(
                i.validate(),
                Err(RegistrationError::Invalid {
                    code: "invalid_instagram_login",
                    ..
                })
            ),
            "an X account has no Instagram login"
        );
        let i = RegistrationInput {
            platform: "instagram".into(),
            account_id: "17841400000000001".into(),
            instagram_login: Some(InstagramLogin::Instagram),
            ..input()
        };
        assert_eq!(i.validate().unwrap().instagram_login, Some(InstagramLogin::Instagram));
    }

    #[test]
    fn valid_input_is_normalised() {
        let r = input().validate().unwrap();
        assert_eq!(r.username, "@mybusiness");
        assert_eq!(r.scopes, vec!["tweet.read"]);
        assert!(r.expires_at.is_some());
    }

    #[test]
    fn bidi_controls_and_separators_are_stripped_from_usernames_and_limits_hold() {
        let mut i = input();
        i.username = "ev\u{202E}il\u{2028}name\u{2066}".into();
        i.scopes = (0..50).map(|n| format!("{n}{}", "s".repeat(98))).collect();
        let r = i.validate().unwrap();
        assert_eq!(r.username, "evilname");
        assert_eq!(r.scopes.len(), 50, "50 scopes of 100 characters are taken");
    }

    #[test]
    fn token_errors_never_echo_the_token() {
        let mut i = input();
        i.access_token = SecretString::from("secret value\n".to_owned());
        let e = i.validate().unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn each_field_is_checked() {
        type Case = (fn(&mut RegistrationInput), &'static str);
        let cases: Vec<Case> = vec![
            (|i| i.platform = "myspace".into(), "unknown_platform"),
            (|i| i.account_id = "abc".into(), "invalid_account_id"),
            (|i| i.username = "  ".into(), "invalid_username"),
            (
                |i| i.access_token = SecretString::from(String::new()),
                "invalid_access_token",
            ),
            (
                |i| i.refresh_token = Some(SecretString::from("a b".to_owned())),
                "invalid_refresh_token",
            ),
            (|i| i.expires_at = Some("tomorrow".into()), "invalid_expires_at"),
            (|i| i.scopes = vec!["bad scope".into()], "invalid_scopes"),
            (
                |i| i.scopes = (0..51).map(|n| format!("s{n}")).collect(),
                "invalid_scopes",
            ),
            (|i| i.scopes = vec!["s".repeat(101)], "invalid_scopes"),
            (|i| i.username = "\u{202E}\u{2028}".into(), "invalid_username"),
        ];
        for (mutate, code) in cases {
            let mut i = input();
            mutate(&mut i);
            match i.validate() {
                Err(RegistrationError::Invalid { code: c, .. }) => assert_eq!(c, code),
                other => panic!("expected {code}, got {other:?}"),
            }
        }
    }
}
