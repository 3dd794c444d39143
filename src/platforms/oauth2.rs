//! What TikTok's and X's token endpoints share: both follow OAuth 2.0 (RFC 6749). A
//! refresh is the `refresh_token` grant (section 6); a successful answer carries
//! `access_token`, `expires_in`, `refresh_token` and `scope` (section 5.1; TikTok adds
//! `refresh_expires_in`); an error answer carries `error` and `error_description`
//! (section 5.2).

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{NewTokens, expiry_in, scope_list};
use crate::domain::{self, UnixTime};

/// The form of a `refresh_token` grant for `refresh`, after `client` (the client
/// credentials some platforms want in the body).
pub(super) fn refresh_form(client: &[(&'static str, String)], refresh: &SecretString) -> Vec<(&'static str, String)> {
    let mut form = client.to_vec();
    form.push(("grant_type", "refresh_token".to_owned()));
    form.push(("refresh_token", refresh.expose_secret().to_owned()));
    form
}

/// The form of an `authorization_code` grant (RFC 6749 section 4.1.3) with PKCE's
/// `code_verifier` (RFC 7636 section 4.5), after `client`.
pub(super) fn code_form(
    client: &[(&'static str, String)],
    code: &str,
    redirect_uri: &str,
    verifier: &SecretString,
) -> Vec<(&'static str, String)> {
    let mut form = client.to_vec();
    form.push(("grant_type", "authorization_code".to_owned()));
    form.push(("code", code.to_owned()));
    form.push(("redirect_uri", redirect_uri.to_owned()));
    form.push(("code_verifier", verifier.expose_secret().to_owned()));
    form
}

/// How long a platform's tokens may live at most: a lifetime above these is clamped (a
/// garbled `expires_in` must never park an account for years).
#[derive(Debug, Clone, Copy)]
pub(super) struct Lifetimes {
    /// The access token's.
    pub access: i64,
    /// The refresh token's, for a platform that says it (`refresh_expires_in`, TikTok);
    /// `None`: the field is not the platform's and is ignored.
    pub refresh: Option<i64>,
}

/// The new tokens of a successful token answer `v` received at `now`: `None` without a
/// non-empty `access_token`. An empty or missing `refresh_token` is none (the stored one
/// stays), and so is a missing lifetime.
pub(super) fn tokens(v: &Value, now: UnixTime, max: Lifetimes) -> Option<NewTokens> {
    let access = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    let secs = |k: &str, max: i64| v.get(k).and_then(Value::as_i64).map(|s| expiry_in(now, s, max));
    Some(NewTokens {
        access_token: SecretString::from(access.to_owned()),
        refresh_token: v
            .get("refresh_token")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_owned())),
        expires_at: secs("expires_in", max.access),
        refresh_expires_at: max.refresh.and_then(|m| secs("refresh_expires_in", m)),
        scopes: v.get("scope").and_then(scope_list),
    })
}

/// The `error` code and `error_description` of an error answer (either may be empty),
/// the description shortened for messages.
pub(super) fn error(v: Option<&Value>) -> (String, String) {
    let field = |k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (
        field("error"),
        domain::truncate_for_message(&field("error_description")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Lifetimes = Lifetimes {
        access: 86_400,
        refresh: Some(365 * 86_400),
    };

    #[test]
    fn a_token_answer_gives_its_tokens_and_clamped_lifetimes() {
        let v = serde_json::json!({"access_token": "a", "refresh_token": "r", "expires_in": 7200,
            "refresh_expires_in": 999_999_999, "scope": "user.info.basic,video.list", "token_type": "Bearer"});
        let t = tokens(&v, 1_000, MAX).unwrap();
        assert_eq!(t.access_token.expose_secret(), "a");
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "r");
        assert_eq!(t.expires_at, Some(8_200));
        assert_eq!(t.refresh_expires_at, Some(1_000 + 365 * 86_400));
        assert_eq!(t.scopes.unwrap().len(), 2);
    }

    #[test]
    fn an_empty_refresh_token_is_none_and_an_empty_access_token_is_no_answer() {
        let v = serde_json::json!({"access_token": "a", "refresh_token": ""});
        assert!(tokens(&v, 0, MAX).unwrap().refresh_token.is_none());
        assert!(tokens(&serde_json::json!({"access_token": ""}), 0, MAX).is_none());
        assert_eq!(
            error(Some(
                &serde_json::json!({"error": "invalid_grant", "error_description": "used"})
            )),
            ("invalid_grant".into(), "used".into())
        );
        assert_eq!(error(None), (String::new(), String::new()));
    }
}
