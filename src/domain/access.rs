//! Who holds an account's grant ([`Custody`]) and what an API key may do ([`KeyScope`]).

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::truncate_for_message;

/// Who refreshes an account's grant. TikTok and X refresh tokens are single-use: two
/// parties refreshing the same grant kill each other's copy, so exactly one does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum Custody {
    /// socialsyncer refreshes the tokens and the product reads them from it.
    #[default]
    Socialsyncer,
    /// The publishing product refreshes; socialsyncer never calls a token endpoint for the
    /// account and learns new tokens when the product pushes them.
    Product,
}

impl Custody {
    /// `socialsyncer` or `product`.
    pub fn as_str(self) -> &'static str {
        match self {
            Custody::Socialsyncer => "socialsyncer",
            Custody::Product => "product",
        }
    }
}

impl FromStr for Custody {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "socialsyncer" => Ok(Custody::Socialsyncer),
            "product" => Ok(Custody::Product),
            other => Err(format!(
                "'{}' is not a custody: use socialsyncer or product",
                truncate_for_message(other)
            )),
        }
    }
}

/// How an Instagram account was connected, which decides the host its token works on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum InstagramLogin {
    /// Facebook Login: Graph tokens, checked with `debug_token` on graph.facebook.com.
    #[default]
    Facebook,
    /// Instagram Login: graph.instagram.com tokens, refreshable.
    Instagram,
}

impl InstagramLogin {
    /// `facebook` or `instagram`.
    pub fn as_str(self) -> &'static str {
        match self {
            InstagramLogin::Facebook => "facebook",
            InstagramLogin::Instagram => "instagram",
        }
    }

    /// The other login.
    pub fn other(self) -> InstagramLogin {
        match self {
            InstagramLogin::Facebook => InstagramLogin::Instagram,
            InstagramLogin::Instagram => InstagramLogin::Facebook,
        }
    }
}

impl FromStr for InstagramLogin {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "facebook" => Ok(InstagramLogin::Facebook),
            "instagram" => Ok(InstagramLogin::Instagram),
            other => Err(format!(
                "'{}' is not an Instagram login: use instagram (Instagram Login) or facebook (Facebook Login)",
                truncate_for_message(other)
            )),
        }
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyScope {
    /// The GET routes.
    Read,
    /// Register, replace, delete, check now, notifications.
    Manage,
    /// Read an account's tokens.
    Tokens,
}

impl KeyScope {
    /// Every scope.
    pub const ALL: [KeyScope; 3] = [KeyScope::Read, KeyScope::Manage, KeyScope::Tokens];

    /// `read`, `manage` or `tokens`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Read => "read",
            KeyScope::Manage => "manage",
            KeyScope::Tokens => "tokens",
        }
    }

    /// A comma-separated list (`read,manage`), each scope once, in order.
    pub fn parse_list(s: &str) -> Result<Vec<KeyScope>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = KeyScope::ALL.into_iter().find(|k| k.as_str() == part).ok_or_else(|| {
                format!(
                    "'{}' is not a key scope: use read, manage or tokens",
                    truncate_for_message(part)
                )
            })?;
            if !out.contains(&scope) {
                out.push(scope);
            }
        }
        if out.is_empty() {
            return Err("a key needs at least one scope: read, manage or tokens".into());
        }
        out.sort();
        Ok(out)
    }

    /// The list as stored and shown: `read,manage`.
    pub fn join(scopes: &[KeyScope]) -> String {
        scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_sorted_once_each_and_refuse_the_unknown() {
        assert_eq!(
            KeyScope::parse_list("tokens, read,read").unwrap(),
            [KeyScope::Read, KeyScope::Tokens]
        );
        assert_eq!(KeyScope::join(&[KeyScope::Read, KeyScope::Manage]), "read,manage");
        assert!(KeyScope::parse_list("read,admin").unwrap_err().contains("admin"));
        assert!(KeyScope::parse_list(" , ").is_err());
        assert_eq!("product".parse::<Custody>(), Ok(Custody::Product));
        assert!("Product".parse::<Custody>().is_err());
    }
}
