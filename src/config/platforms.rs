//! `[platforms.*]`: where each platform is, its app credentials, pacing and refresh.

use super::*;

/// `[platforms]`: one table per platform.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformsConfig {
    /// `[platforms.instagram]`
    pub instagram: PlatformConfig,
    /// `[platforms.facebook]`
    pub facebook: PlatformConfig,
    /// `[platforms.threads]`
    pub threads: PlatformConfig,
    /// `[platforms.tiktok]`
    pub tiktok: PlatformConfig,
    /// `[platforms.twitter]` (or `[platforms.x]`)
    #[serde(alias = "x")]
    pub twitter: PlatformConfig,
}

impl PlatformsConfig {
    /// The table of one platform.
    pub fn get(&self, p: Platform) -> &PlatformConfig {
        match p {
            Platform::Instagram => &self.instagram,
            Platform::Facebook => &self.facebook,
            Platform::Threads => &self.threads,
            Platform::Tiktok => &self.tiktok,
            Platform::Twitter => &self.twitter,
        }
    }

    /// The table of one platform, to change.
    pub fn get_mut(&mut self, p: Platform) -> &mut PlatformConfig {
        match p {
            Platform::Instagram => &mut self.instagram,
            Platform::Facebook => &mut self.facebook,
            Platform::Threads => &mut self.threads,
            Platform::Tiktok => &mut self.tiktok,
            Platform::Twitter => &mut self.twitter,
        }
    }
}

/// How often X's identity endpoint is read when refreshes already prove the grant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityCheck {
    /// Once a day (365 user reads a year: $3.65 an account at X's $0.010 a user read).
    #[default]
    Daily,
    /// Once a week (52 a year: $0.52 an account).
    Weekly,
    /// Never while refreshes succeed (a token that stops refreshing is read as before).
    Never,
}

/// One platform's table. Keys a platform has no use for are ignored by its adapter.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// API host, e.g. `https://graph.facebook.com`; tests point it at loopback.
    pub base_url: Option<String>,
    /// Graph API version path segment (facebook, instagram), e.g. `v24.0`.
    pub api_version: Option<String>,
    /// Instagram only: the login of accounts registered without `instagramLogin`:
    /// `facebook` (default) or `instagram`.
    pub login: InstagramLogin,
    /// Facebook app ID (facebook; instagram with Facebook Login uses facebook's).
    pub app_id: Option<String>,
    /// File holding the Facebook app secret.
    pub app_secret_file: Option<PathBuf>,
    /// TikTok client key.
    pub client_key: Option<String>,
    /// X (Twitter) OAuth 2.0 client ID.
    pub client_id: Option<String>,
    /// File holding the TikTok or X client secret (or the Instagram app secret).
    pub client_secret_file: Option<PathBuf>,
    /// X only: how often a check reads the identity (`GET /2/users/me`, billed as a user
    /// read) when a successful refresh has already proven the grant: `daily` (default),
    /// `weekly` or `never`.
    pub identity_check: Option<IdentityCheck>,
    /// Facebook only: revoke a Meta grant when its last connected account is deleted
    /// (default off: a revocation removes the app from every Page and Instagram account the
    /// person connected).
    pub revoke_grant: Option<bool>,
    /// Instagram only: the Instagram Login app's ID, for connect links with Instagram Login
    /// (`app_id` stays the Facebook Login side).
    pub login_app_id: Option<String>,
    /// Instagram only: the file holding the Instagram Login app's secret.
    pub login_app_secret_file: Option<PathBuf>,
    /// Instagram only: Instagram Login's API host (default `https://graph.instagram.com`,
    /// or `base_url` where only that is set); `base_url` is then Facebook Login's.
    pub login_base_url: Option<String>,
    /// Permissions an account needs for publishing; a missing one makes it unhealthy.
    pub required_permissions: Option<Vec<String>>,
    /// Checks per second sent to this platform during sweeps; 0 means no limit (default 20,
    /// TikTok 8: under its 600 user-info calls a minute per app).
    pub rate_limit: Option<f64>,
    /// The platform's authorization page for connect links (default: the documented one;
    /// see `src/platforms/README.md`).
    pub authorize_url: Option<String>,
    /// The scopes a connect link asks for (default: what checks and refreshes need).
    pub connect_scopes: Option<Vec<String>>,
    /// Refresh tokens automatically where the platform allows it (default true).
    pub auto_refresh: Option<bool>,
    /// How long before the access token expires it is refreshed (default 14 days for 60-day
    /// Instagram and Threads tokens, 1 hour for TikTok, 45 minutes for X).
    pub refresh_before: Option<HumanDuration>,
    /// Graph platforms (facebook, instagram, threads): how long to stop calling the platform
    /// once `X-App-Usage` reports the app's shared quota above 90 % (default 10 minutes).
    pub app_usage_pause: Option<HumanDuration>,
}

impl PlatformConfig {
    /// The configured base URL or the platform's real host, without a trailing slash.
    pub fn base_url(&self, p: Platform, login: InstagramLogin) -> String {
        let default = match (p, login) {
            (Platform::Instagram, InstagramLogin::Instagram) => "https://graph.instagram.com",
            (Platform::Facebook | Platform::Instagram, _) => "https://graph.facebook.com",
            (Platform::Threads, _) => "https://graph.threads.net",
            (Platform::Tiktok, _) => "https://open.tiktokapis.com",
            (Platform::Twitter, _) => "https://api.x.com",
        };
        let set = match (p, login) {
            (Platform::Instagram, InstagramLogin::Instagram) => self.login_base_url.as_ref().or(self.base_url.as_ref()),
            _ => self.base_url.as_ref(),
        };
        set.map(String::as_str)
            .unwrap_or(default)
            .trim_end_matches('/')
            .to_owned()
    }

    /// Checks per second during sweeps, under each platform's published limits
    /// (TikTok's user info allows 600 a minute per app). `None`: unlimited.
    pub fn rate_limit(&self, p: Platform) -> Option<f64> {
        let r = self.rate_limit.unwrap_or(match p {
            Platform::Tiktok => 8.0,
            _ => 20.0,
        });
        (r > 0.0).then_some(r)
    }

    /// The pause after `X-App-Usage` above 90 %, in seconds.
    pub fn app_usage_pause(&self) -> i64 {
        self.app_usage_pause.map(HumanDuration::secs).unwrap_or(600)
    }

    /// Whether automatic refresh is on.
    pub fn auto_refresh(&self) -> bool {
        self.auto_refresh.unwrap_or(true)
    }

    /// The refresh window: 14 days for 60-day Instagram and Threads tokens, an hour for
    /// TikTok and 45 minutes for X, whose access tokens live 2 hours.
    pub fn refresh_before(&self, p: Platform) -> i64 {
        self.refresh_before.map(HumanDuration::secs).unwrap_or(match p {
            Platform::Tiktok => 3_600,
            Platform::Twitter => 45 * 60,
            _ => 14 * 86_400,
        })
    }

    /// The Graph API version, default `v24.0`: the newest whose behaviour the simulator covers
    /// (Instagram Login's `/me` answers an app-scoped `id` beside `user_id` from v24.0).
    pub fn api_version(&self) -> &str {
        self.api_version.as_deref().unwrap_or("v24.0")
    }

    /// The permissions required for publishing, configured or the platform's defaults.
    pub fn required_permissions(&self, p: Platform, login: InstagramLogin) -> Vec<String> {
        if let Some(r) = &self.required_permissions {
            return r.clone();
        }
        let d: &[&str] = match (p, login) {
            (Platform::Facebook, _) => &["pages_manage_posts", "pages_read_engagement"],
            (Platform::Instagram, InstagramLogin::Facebook) => &["instagram_basic", "instagram_content_publish"],
            (Platform::Instagram, InstagramLogin::Instagram) => {
                &["instagram_business_basic", "instagram_business_content_publish"]
            }
            (Platform::Threads, _) => &["threads_basic", "threads_content_publish"],
            (Platform::Tiktok, _) => &["user.info.basic", "video.publish"],
            (Platform::Twitter, _) => &["tweet.read", "tweet.write", "users.read"],
        };
        d.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// Graph API versions and the day each stops working ("Graph API changelog: Versions",
/// developers.facebook.com/docs/graph-api/changelog/versions; the dates Meta has set).
const GRAPH_SUNSETS: &[(&str, &str)] = &[
    ("v18.0", "2026-01-26"),
    ("v19.0", "2026-05-21"),
    ("v20.0", "2026-09-24"),
    ("v21.0", "2027-01-21"),
    ("v22.0", "2027-05-20"),
    ("v23.0", "2027-10-08"),
    ("v24.0", "2028-02-18"),
    ("v25.0", "2028-07-29"),
];

/// What `config check` says of a configured Graph API version at `now`: `Err` once it has
/// expired, `Ok(Some(warning))` within 90 days of its expiry, `Ok(None)` otherwise (or when
/// Meta has set no date for it).
pub fn graph_version_advice(key: &str, version: &str, now: crate::domain::UnixTime) -> Result<Option<String>, String> {
    let Some((_, day)) = GRAPH_SUNSETS.iter().find(|(v, _)| *v == version) else {
        return Ok(None);
    };
    let Ok(at) = crate::domain::parse_rfc3339(&format!("{day}T00:00:00Z")) else {
        return Ok(None);
    };
    let days = (at - now).div_euclid(86_400);
    if at <= now {
        Err(format!(
            "{key}: Graph API {version} expired on {day}; Meta answers such calls with the oldest version \
             still available. Set v24.0 or newer"
        ))
    } else if days <= 90 {
        Ok(Some(format!(
            "{key}: Graph API {version} expires on {day}, in {days} days. Move to v24.0 or newer before then"
        )))
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod graph_version_tests {
    use super::*;

    #[test]
    fn a_graph_version_is_warned_about_90_days_before_it_expires() {
        let day = |s: &str| crate::domain::parse_rfc3339(&format!("{s}T00:00:00Z")).unwrap();
        let k = "platforms.facebook.api_version";
        assert!(graph_version_advice(k, "v20.0", day("2026-12-02")).is_err(), "expired");
        let w = graph_version_advice(k, "v21.0", day("2026-12-02")).unwrap().unwrap();
        assert!(w.contains("expires on 2027-01-21, in 50 days"), "{w}");
        assert_eq!(graph_version_advice(k, "v24.0", day("2026-12-02")), Ok(None));
        assert_eq!(
            graph_version_advice(k, "v26.0", day("2026-12-02")),
            Ok(None),
            "no date set"
        );
    }
}
