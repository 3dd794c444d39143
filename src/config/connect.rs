//! `[connect]`: connect links, served on a listener of their own.

use serde::{Deserialize, Serialize};

use super::HumanDuration;

/// `[connect]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectConfig {
    /// The address people's browsers reach the connect listener at
    /// (`https://connect.example.com`); connect links and the platforms' callbacks
    /// (`{public_url}/connect/callback/{platform}`) are built on it. Empty: connecting is off.
    pub public_url: String,
    /// Where the `/connect/*` routes are served (`0.0.0.0:8443`); empty: not served.
    pub listen: String,
    /// Where a connect session may send the browser back to: a `redirectUrl` must start with
    /// one of these.
    pub allowed_redirects: Vec<String>,
    /// How long a connect link is valid.
    pub session_ttl: HumanDuration,
    /// How long the reconnect link in an alert is valid.
    pub link_ttl: HumanDuration,
    /// Requests a second per client address on the connect listener.
    pub rate_limit: f64,
    /// Requests in a burst per client address.
    pub rate_burst: f64,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            public_url: String::new(),
            listen: String::new(),
            allowed_redirects: Vec::new(),
            session_ttl: HumanDuration(std::time::Duration::from_secs(3600)),
            link_ttl: HumanDuration(std::time::Duration::from_secs(7 * 86_400)),
            rate_limit: 10.0,
            rate_burst: 30.0,
        }
    }
}

impl ConnectConfig {
    /// The public URL without a trailing slash, when connecting is on.
    pub fn public_url(&self) -> Option<&str> {
        let u = self.public_url.trim().trim_end_matches('/');
        (!u.is_empty()).then_some(u)
    }
}
