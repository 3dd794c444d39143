//! What a platform's answer says of a token that works: its expiry, permissions, whose it is.

use super::Expiry;
use crate::domain::{InstagramLogin, Platform, UnixTime};

/// What a valid token carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidToken {
    /// Expiry as introspected from the platform; `None` when the platform does not say.
    pub expires: Option<Expiry>,
    /// Facebook's data-access expiry.
    pub data_access_expires_at: Option<UnixTime>,
    /// Permissions as introspected; `None` when the platform cannot tell (stored scopes apply).
    pub permissions: Option<Vec<String>>,
    /// The platform user ID behind the token (for a Meta Page token: the person who granted
    /// it, whose grant `DELETE /{user-id}/permissions` would remove).
    pub user_id: Option<String>,
    /// The ID the token must belong to: it must equal the registered account ID (`/me` id,
    /// `debug_token` `profile_id` of a Page token, TikTok `open_id`, X `data.id`). `None`
    /// when the platform's answer does not name the account (Instagram through Facebook Login).
    pub owner_id: Option<String>,
    /// The username, when the platform returns one.
    pub username: Option<String>,
    /// `debug_token`'s `granular_scopes` that name their targets: each scope with the Pages
    /// or Instagram accounts it was granted for ("current Pages only").
    pub scope_targets: Vec<(String, Vec<String>)>,
    /// Other IDs the answer gives the same account (Instagram Login's `/me` answers `id`, the
    /// app-scoped ID, and `user_id`, the professional account's): products store either.
    pub other_ids: Vec<String>,
    /// Instagram: the login the token turned out to work with, when not the account's own
    /// (the check corrects the stored one).
    pub instagram_login: Option<InstagramLogin>,
}

impl ValidToken {
    /// Takes out of `permissions` each of `scopes` whose grant names its targets without
    /// `account_id`: the person granted it for other Pages or Instagram accounts only, so for
    /// this account it is missing.
    pub fn narrow_to(&mut self, account_id: &str, scopes: &[&str]) {
        let not_here: Vec<&str> = self
            .scope_targets
            .iter()
            .filter(|(s, ids)| scopes.contains(&s.as_str()) && !ids.is_empty() && !ids.iter().any(|i| i == account_id))
            .map(|(s, _)| s.as_str())
            .collect();
        if let Some(p) = &mut self.permissions {
            p.retain(|s| !not_here.contains(&s.as_str()));
        }
    }

    /// Whether the token belongs to `account_id`: the owner ID or one of the other IDs the
    /// answer named, TikTok's `open_id` compared without its dashes (products store it both
    /// ways). `None` when the answer names no account.
    pub fn belongs_to(&self, platform: Platform, account_id: &str) -> Option<bool> {
        let owner = self.owner_id.as_ref()?;
        let norm = |s: &str| {
            if platform == Platform::Tiktok {
                s.replace('-', "")
            } else {
                s.to_owned()
            }
        };
        let want = norm(account_id);
        Some(std::iter::once(owner).chain(&self.other_ids).any(|id| norm(id) == want))
    }
}
