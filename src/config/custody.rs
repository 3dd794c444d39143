//! `[accounts]` and `[tokens]`: who refreshes a new account's grant, and how fresh a token
//! handed out must be.

use serde::{Deserialize, Serialize};

use super::HumanDuration;
use crate::domain::Custody;

/// `[accounts]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// The custody of an account registered without one: `socialsyncer` (it refreshes and
    /// hands tokens out) or `product` (the publishing product refreshes and pushes them).
    pub default_custody: Custody,
}

/// `[tokens]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// `GET .../token` refreshes first when the access token expires within this.
    pub min_validity: HumanDuration,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            min_validity: HumanDuration(std::time::Duration::from_secs(300)),
        }
    }
}
