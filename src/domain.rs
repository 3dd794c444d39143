//! Validated domain types: platforms, account IDs, health states, workspace names and timestamps.
//!
//! Strings from the outside (HTTP, CLI) are parsed into these once, at the edge, so the rest
//! of the code never re-checks them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A social platform socialsyncer knows how to check.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum Platform {
    /// Instagram (Graph API, through Facebook Login or Instagram Login).
    Instagram,
    /// Facebook Pages (Graph API).
    Facebook,
    /// Threads (graph.threads.net).
    Threads,
    /// TikTok (open.tiktokapis.com v2).
    Tiktok,
    /// X, formerly Twitter (API v2); `x` is accepted for it wherever a platform is named.
    #[serde(alias = "x")]
    Twitter,
}

impl Platform {
    /// Every platform, in a stable order.
    pub const ALL: [Platform; 5] = [
        Platform::Instagram,
        Platform::Facebook,
        Platform::Threads,
        Platform::Tiktok,
        Platform::Twitter,
    ];

    /// The lower-case name used in URLs, JSON, config and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Instagram => "instagram",
            Platform::Facebook => "facebook",
            Platform::Threads => "threads",
            Platform::Tiktok => "tiktok",
            Platform::Twitter => "twitter",
        }
    }

    /// The human name used in recommendations and emails.
    pub fn display_name(self) -> &'static str {
        match self {
            Platform::Instagram => "Instagram",
            Platform::Facebook => "Facebook",
            Platform::Threads => "Threads",
            Platform::Tiktok => "TikTok",
            Platform::Twitter => "X (Twitter)",
        }
    }

    /// What an account ID of this platform looks like, for error messages.
    pub fn account_id_format(self) -> &'static str {
        match self {
            Platform::Instagram => "an Instagram user ID: digits only, no leading zero, e.g. 17841400123456789",
            Platform::Facebook => "a Facebook Page ID: digits only, no leading zero, e.g. 111222333444555",
            Platform::Threads => "a Threads user ID: digits only, no leading zero",
            Platform::Tiktok => "a TikTok open ID: letters, digits, '-' and '_'",
            Platform::Twitter => "a Twitter user ID: digits only, no leading zero, e.g. 1234567890",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no known platform.
#[derive(Debug, thiserror::Error)]
#[error("unknown platform '{0}': expected one of instagram, facebook, threads, tiktok, twitter (or x)")]
pub struct UnknownPlatform(pub String);

impl FromStr for Platform {
    type Err = UnknownPlatform;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "x" {
            return Ok(Platform::Twitter);
        }
        Platform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPlatform(truncate_for_message(s)))
    }
}

/// A platform's account ID, validated against that platform's format.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(String);

/// The error for an account ID that does not fit its platform's format.
#[derive(Debug, thiserror::Error)]
#[error("invalid account ID '{id}' for {platform}: expected {}", platform.account_id_format())]
pub struct InvalidAccountId {
    /// The platform whose format was not met.
    pub platform: Platform,
    /// The offending value, shortened for display.
    pub id: String,
}

/// The longest account ID accepted (Snowflakes are 20 digits; TikTok open IDs are UUID-like).
const MAX_ACCOUNT_ID_LEN: usize = 128;

impl AccountId {
    /// Validates `id` against the format of `platform`.
    pub fn parse(platform: Platform, id: &str) -> Result<Self, InvalidAccountId> {
        let ok = !id.is_empty()
            && id.len() <= MAX_ACCOUNT_ID_LEN
            && match platform {
                Platform::Tiktok => id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                // Numeric IDs are numbers: "0123" would name a second row for the account
                // "123" that the platform knows.
                _ => id.bytes().all(|b| b.is_ascii_digit()) && (id == "0" || !id.starts_with('0')),
            };
        if ok {
            Ok(AccountId(id.to_owned()))
        } else {
            Err(InvalidAccountId {
                platform,
                id: truncate_for_message(id),
            })
        }
    }

    /// The ID as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The health of one account, as served by the API and counted in metrics.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum Health {
    /// The token works and carries every required permission.
    Healthy,
    /// The token works but needs attention soon (expiry, a missing permission, a failed refresh).
    Warning,
    /// The token is dead or cannot publish: the account must be reconnected.
    Unhealthy,
    /// Never checked, or the platform has not answered for too long.
    Unknown,
}

impl Health {
    /// Every state, in the order of the API summary.
    pub const ALL: [Health; 4] = [Health::Healthy, Health::Warning, Health::Unhealthy, Health::Unknown];

    /// How urgent an alert of this health is, most urgent highest: a dead token before a
    /// platform that stopped answering, before a warning.
    pub fn severity(self) -> u8 {
        match self {
            Health::Unhealthy => 3,
            Health::Unknown => 2,
            Health::Warning => 1,
            Health::Healthy => 0,
        }
    }

    /// The lower-case name used in JSON, SQL and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Warning => "warning",
            Health::Unhealthy => "unhealthy",
            Health::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that names no health state.
#[derive(Debug, thiserror::Error)]
#[error("unknown health '{0}': expected one of healthy, warning, unhealthy, unknown")]
pub struct UnknownHealth(pub String);

impl FromStr for Health {
    type Err = UnknownHealth;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Health::ALL
            .into_iter()
            .find(|h| h.as_str() == s)
            .ok_or_else(|| UnknownHealth(truncate_for_message(s)))
    }
}

/// A workspace name: 1 to 64 characters of letters, digits, `.`, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceName(String);

/// The error for an invalid workspace name.
#[derive(Debug, thiserror::Error)]
#[error("invalid workspace name '{0}': use 1 to 64 letters, digits, '.', '_' or '-'")]
pub struct InvalidWorkspaceName(pub String);

impl FromStr for WorkspaceName {
    type Err = InvalidWorkspaceName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(WorkspaceName(s.to_owned()))
        } else {
            Err(InvalidWorkspaceName(truncate_for_message(s)))
        }
    }
}

impl WorkspaceName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Seconds since the Unix epoch, UTC: how every timestamp is stored.
pub type UnixTime = i64;

/// The current time in Unix seconds.
pub fn now() -> UnixTime {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// Formats Unix seconds as RFC 3339 UTC with a `Z` suffix, e.g. `2026-01-15T10:00:00Z`.
pub fn rfc3339(t: UnixTime) -> String {
    let Some(d) = OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .filter(|d| (0..=9999).contains(&d.year()))
    else {
        return "1970-01-01T00:00:00Z".to_owned();
    };
    // Written digit by digit: `time`'s formatter cost a third of a 1,000-account list build.
    let mut b = *b"0000-00-00T00:00:00Z";
    let put = |b: &mut [u8; 20], at: usize, v: u32, width: usize| {
        let mut v = v;
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut b, 0, d.year() as u32, 4);
    put(&mut b, 5, u8::from(d.month()).into(), 2);
    put(&mut b, 8, d.day().into(), 2);
    put(&mut b, 11, d.hour().into(), 2);
    put(&mut b, 14, d.minute().into(), 2);
    put(&mut b, 17, d.second().into(), 2);
    String::from_utf8_lossy(&b).into_owned()
}

/// Parses an RFC 3339 timestamp (any offset) into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Result<UnixTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|d| d.unix_timestamp())
        .map_err(|_| {
            format!(
                "'{}' is not an RFC 3339 timestamp such as 2026-01-15T10:00:00Z",
                truncate_for_message(s)
            )
        })
}

/// Shortens user input before echoing it in an error message, so a huge value cannot
/// flood a log line or a response.
pub fn truncate_for_message(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

/// A workspace's row ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct WorkspaceId(pub i64);

/// An account's row ID (not the platform's account ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct AccountRef(pub i64);

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for AccountRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the checks concluded about an account, as stored and shown. One type for the
/// assessment of a check, the stored account and the update that writes it, so that "did
/// anything change" is one comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthState {
    /// Health.
    pub health: Health,
    /// Whether the token was valid at the last check; `None` before the first answer.
    pub token_valid: Option<bool>,
    /// A person must reconnect the account.
    pub needs_reconnect: bool,
    /// Permissions the token carries (`None`: never known).
    pub permissions: Option<Vec<String>>,
    /// Required permissions the token lacks.
    pub missing_permissions: Vec<String>,
    /// What a person should do, in sentences.
    pub recommendations: Vec<String>,
    /// Facebook: when the app's data access ends.
    pub data_access_expires_at: Option<UnixTime>,
    /// The platform's user ID behind the token (a Meta revoke needs it).
    pub platform_user_id: Option<String>,
    /// The problem seen, in words safe to show.
    pub last_error: Option<String>,
}

/// An account with its current health, as the API and the scheduler see it.
#[derive(Debug, Clone)]
pub struct Account {
    /// Internal row ID.
    pub id: AccountRef,
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Platform.
    pub platform: Platform,
    /// Platform account ID.
    pub account_id: String,
    /// Display name.
    pub username: String,
    /// Registration time.
    pub connected_at: UnixTime,
    /// Who refreshes its grant.
    pub custody: Custody,
    /// Instagram: the login it was connected with; `None`: `platforms.instagram.login`.
    pub instagram_login: Option<InstagramLogin>,
    /// Scopes stored at registration or last refresh.
    pub scopes: Vec<String>,
    /// Access token expiry, when known.
    pub token_expires_at: Option<UnixTime>,
    /// Refresh token expiry, when known.
    pub refresh_expires_at: Option<UnixTime>,
    /// When the current access token was issued (registration or last refresh).
    pub token_issued_at: UnixTime,
    /// What the checks concluded.
    pub state: HealthState,
    /// Last check attempt.
    pub last_checked_at: Option<UnixTime>,
    /// Last check that got an answer from the platform.
    pub last_success_at: Option<UnixTime>,
    /// Transient failures in a row.
    pub consecutive_failures: i64,
    /// When the scheduler checks it next.
    pub next_check_at: UnixTime,
    /// Failed automatic refreshes in a row.
    pub refresh_failures: i64,
    /// Why the last automatic refresh failed, while it keeps failing.
    pub last_refresh_error: Option<String>,
    /// Problem kinds alerted in the current episode.
    pub open_alerts: Vec<AlertKind>,
    /// Alert episode (a recovery starts the next).
    pub alert_episode: i64,
}

mod access;
mod alert;
pub use access::{Custody, InstagramLogin, KeyScope};
pub use alert::{AlertKind, PendingAlert, WebhookFormat};

/// What a history row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// A check (its `outcome` says what the platform answered).
    Check,
    /// New tokens committed by an automatic refresh.
    Refresh,
    /// Tokens pushed in (`PUT .../credentials`, `accounts import --replace`).
    TokensReplaced,
    /// An automatic refresh that failed.
    RefreshFailed,
    /// A check the platform asked to wait for (a rate limit, a pause): one row when the
    /// deferral starts, not one per postponed check.
    Deferred,
}

/// How the explanation of a deferral ends (`lastError` while an account waits for its
/// platform), by which the first deferral of a run is told from the ones that follow.
pub const DEFERRED_SUFFIX: &str = "; socialsyncer checks it then.";

impl HistoryEvent {
    /// `check`, `refresh` or `refresh_failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryEvent::Check => "check",
            HistoryEvent::Refresh => "refresh",
            HistoryEvent::TokensReplaced => "tokens_replaced",
            HistoryEvent::RefreshFailed => "refresh_failed",
            HistoryEvent::Deferred => "deferred",
        }
    }
}

/// What a check came to, in three words: the `outcome` of a history row and the `outcome`
/// label of `socialsyncer_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "TEXT", rename_all = "snake_case")]
pub enum CheckLabel {
    /// The platform answered with a valid token.
    Ok,
    /// The token is dead or lacks a permission.
    Invalid,
    /// No usable answer.
    TransientError,
}

impl CheckLabel {
    /// `ok`, `invalid` or `transient_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckLabel::Ok => "ok",
            CheckLabel::Invalid => "invalid",
            CheckLabel::TransientError => "transient_error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_round_trip() {
        for p in Platform::ALL {
            assert_eq!(p.as_str().parse::<Platform>().unwrap(), p);
        }
        assert!("Instagram".parse::<Platform>().is_err());
        assert!("linkedin".parse::<Platform>().is_err());
    }

    #[test]
    fn account_ids_follow_their_platform() {
        assert!(AccountId::parse(Platform::Instagram, "17841400123456789").is_ok());
        assert!(AccountId::parse(Platform::Twitter, "12a").is_err());
        assert!(AccountId::parse(Platform::Facebook, "").is_err());
        assert!(AccountId::parse(Platform::Tiktok, "723f24d7-e717_40f8").is_ok());
        assert!(AccountId::parse(Platform::Tiktok, "a b").is_err());
        assert!(AccountId::parse(Platform::Threads, &"1".repeat(129)).is_err());
        let e = AccountId::parse(Platform::Twitter, "abc").unwrap_err();
        assert!(e.to_string().contains("digits only"), "{e}");
    }

    #[test]
    fn timestamps_are_utc_with_z() {
        assert_eq!(rfc3339(1_768_471_200), "2026-01-15T10:00:00Z");
        assert_eq!(parse_rfc3339("2026-01-15T11:00:00+01:00").unwrap(), 1_768_471_200);
        assert!(parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn timestamps_match_the_time_crate() {
        let mut t: i64 = -62_167_219_200; // 0000-01-01
        while t < 253_402_300_800 {
            let expected = OffsetDateTime::from_unix_timestamp(t)
                .unwrap()
                .format(&Rfc3339)
                .unwrap();
            assert_eq!(rfc3339(t), expected);
            t += 7_777_777;
        }
        assert_eq!(
            rfc3339(253_402_300_800),
            "1970-01-01T00:00:00Z",
            "year 10000 is not RFC 3339"
        );
        assert_eq!(rfc3339(i64::MAX), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn long_input_is_shortened() {
        let s = "x".repeat(1000);
        assert!(truncate_for_message(&s).chars().count() <= 65);
    }

    #[test]
    fn workspace_names() {
        assert!("acme-prod".parse::<WorkspaceName>().is_ok());
        assert!("".parse::<WorkspaceName>().is_err());
        assert!("a b".parse::<WorkspaceName>().is_err());
    }
}
