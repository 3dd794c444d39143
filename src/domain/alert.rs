//! Alert events: what one is about ([`AlertKind`]) and the event itself ([`PendingAlert`]),
//! from the check that raises it to the channel that delivers it.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::{AccountRef, Health, Platform, UnixTime, WorkspaceId};

/// What an alert event is about. Stored, counted (the `kind` label) and sent under its name:
/// `token_expired`, `token_invalid`, `permissions_missing`, `refresh_failed`,
/// `platform_unreachable`, `data_access_expired`, `recovered`, and `expiring_<label>` /
/// `data_access_expiring_<label>` for each configured expiry threshold (`7days`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// The access token has expired.
    TokenExpired,
    /// The access token no longer works (revoked, password changed, ...).
    TokenInvalid,
    /// Permissions the account needs are missing or were refused.
    PermissionsMissing,
    /// Automatic refreshes fail.
    RefreshFailed,
    /// The platform has not answered for several checks in a row.
    PlatformUnreachable,
    /// Facebook's data access for the app has expired.
    DataAccessExpired,
    /// The account is healthy again (closes the episode).
    Recovered,
    /// A refresh was refused because another party used the refresh token, while the access
    /// token still works: the account works until that token expires.
    RefreshSuperseded,
    /// A connect link reconnected the account.
    Reconnected,
    /// New tokens were committed by a refresh (no token in the event; webhooks that list
    /// `account.tokens_refreshed` only).
    TokensRefreshed,
    /// The access token crossed the expiry threshold with this label.
    Expiring(String),
    /// Facebook's data access crossed the expiry threshold with this label.
    DataAccessExpiring(String),
}

impl AlertKind {
    const PLAIN: [(AlertKind, &'static str); 10] = [
        (AlertKind::TokenExpired, "token_expired"),
        (AlertKind::TokenInvalid, "token_invalid"),
        (AlertKind::PermissionsMissing, "permissions_missing"),
        (AlertKind::RefreshFailed, "refresh_failed"),
        (AlertKind::PlatformUnreachable, "platform_unreachable"),
        (AlertKind::DataAccessExpired, "data_access_expired"),
        (AlertKind::Recovered, "recovered"),
        (AlertKind::RefreshSuperseded, "refresh_superseded"),
        (AlertKind::TokensRefreshed, "tokens_refreshed"),
        (AlertKind::Reconnected, "reconnected"),
    ];

    /// Every kind that has no threshold label.
    pub fn plain() -> impl Iterator<Item = AlertKind> {
        AlertKind::PLAIN.into_iter().map(|(k, _)| k)
    }

    /// Whether the event asks a person to act on the account (and so carries a reconnect
    /// link when connecting is on): it needs a reconnect, lacks permissions, its token
    /// expires and nothing renews it, or its refresh token was used elsewhere.
    pub fn needs_person(&self) -> bool {
        matches!(
            self,
            AlertKind::TokenExpired
                | AlertKind::TokenInvalid
                | AlertKind::DataAccessExpired
                | AlertKind::PermissionsMissing
                | AlertKind::Expiring(_)
                | AlertKind::DataAccessExpiring(_)
                | AlertKind::RefreshSuperseded
        )
    }

    /// Whether only receivers that name this kind's event type get it (never email, never a
    /// receiver that takes every type).
    pub fn opt_in(&self) -> bool {
        matches!(self, AlertKind::TokensRefreshed)
    }

    /// The public event type (webhooks, and the `events` a receiver asks for).
    pub fn event_type(&self) -> &'static str {
        match self {
            AlertKind::Expiring(_) => "account.token_expiring",
            AlertKind::DataAccessExpiring(_) => "account.data_access_expiring",
            AlertKind::TokenExpired | AlertKind::TokenInvalid | AlertKind::DataAccessExpired => {
                "account.needs_reconnect"
            }
            AlertKind::PermissionsMissing => "account.permissions_missing",
            AlertKind::RefreshFailed => "account.refresh_failed",
            AlertKind::PlatformUnreachable => "account.platform_unreachable",
            AlertKind::Recovered => "account.recovered",
            AlertKind::RefreshSuperseded => "account.refresh_superseded",
            AlertKind::TokensRefreshed => "account.tokens_refreshed",
            AlertKind::Reconnected => "account.reconnected",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertKind::Expiring(label) => write!(f, "expiring_{label}"),
            AlertKind::DataAccessExpiring(label) => write!(f, "data_access_expiring_{label}"),
            plain => {
                let name = AlertKind::PLAIN.iter().find(|(k, _)| k == plain).map_or("", |(_, n)| n);
                f.write_str(name)
            }
        }
    }
}

impl FromStr for AlertKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some((k, _)) = AlertKind::PLAIN.iter().find(|(_, n)| *n == s) {
            return Ok(k.clone());
        }
        // `data_access_expiring_` first: it does not start with `expiring_`, but keep the
        // longer prefix ahead of the shorter one all the same.
        if let Some(label) = s.strip_prefix("data_access_expiring_").filter(|l| !l.is_empty()) {
            return Ok(AlertKind::DataAccessExpiring(label.to_owned()));
        }
        if let Some(label) = s.strip_prefix("expiring_").filter(|l| !l.is_empty()) {
            return Ok(AlertKind::Expiring(label.to_owned()));
        }
        Err(format!("'{s}' is not an alert kind"))
    }
}

/// Serialized as its name (stored lists of open kinds, API answers).
impl Serialize for AlertKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<DB: sqlx::Database> sqlx::Type<DB> for AlertKind
where
    String: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for AlertKind
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<String as sqlx::Decode<'r, DB>>::decode(value)?.parse()?)
    }
}

/// An alert event: raised by a check (then `id` is 0, `workspace` empty, `attempts` 0 and
/// `reconnect_by` unset until it is stored) and read back from the outbox for delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PendingAlert {
    /// Outbox row (0 until stored).
    pub id: i64,
    /// Workspace to notify.
    pub workspace_id: WorkspaceId,
    /// Workspace name (read with the row).
    pub workspace: String,
    /// The account concerned.
    pub account_ref: AccountRef,
    /// What it is about.
    pub kind: AlertKind,
    /// Severity (a health state).
    pub severity: Health,
    /// Platform.
    pub platform: Platform,
    /// Account ID.
    pub account_id: String,
    /// Display name.
    pub username: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub action: String,
    /// Failed attempts so far.
    pub attempts: i64,
    /// The event's stable key (unique per account, token, episode and kind).
    pub dedup_key: String,
    /// When it was raised.
    pub created_at: UnixTime,
    /// For an expiry warning: the time by which the account must be reconnected.
    pub reconnect_by: Option<UnixTime>,
    /// A connect link pinned to the account, made when the event is delivered (never stored
    /// with the event).
    #[sqlx(skip)]
    pub reconnect_url: Option<String>,
}

impl PendingAlert {
    /// The account as every channel names it: "X (Twitter) @shop (1234)", its username and
    /// its ID.
    pub fn who(&self) -> String {
        format!(
            "{} {} ({})",
            self.platform.display_name(),
            self.username,
            self.account_id
        )
    }
}

/// How a receiver wants its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "TEXT", rename_all = "lowercase")]
pub enum WebhookFormat {
    /// One signed POST per event, in socialsyncer's event format.
    Json,
    /// One message per workspace per round, in Slack's incoming-webhook shape.
    Slack,
    /// The same, in Discord's webhook shape.
    Discord,
    /// The same, as a Microsoft Teams (Workflows) Adaptive Card message.
    Teams,
}

impl WebhookFormat {
    /// Parses `json`, `slack`, `discord` or `teams`.
    pub fn parse(s: &str) -> Result<WebhookFormat, String> {
        match s {
            "json" => Ok(WebhookFormat::Json),
            "slack" => Ok(WebhookFormat::Slack),
            "discord" => Ok(WebhookFormat::Discord),
            "teams" => Ok(WebhookFormat::Teams),
            other => Err(format!(
                "'{}' is not a webhook format: use json, slack, discord or teams",
                super::truncate_for_message(other)
            )),
        }
    }

    /// The lower-case name (also the `channel` label of the failure counter).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookFormat::Json => "json",
            WebhookFormat::Slack => "slack",
            WebhookFormat::Discord => "discord",
            WebhookFormat::Teams => "teams",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_kinds_round_trip_through_their_names() {
        let mut kinds: Vec<AlertKind> = AlertKind::plain().collect();
        kinds.push(AlertKind::Expiring("7days".into()));
        kinds.push(AlertKind::DataAccessExpiring("1day".into()));
        for k in kinds {
            assert_eq!(k.to_string().parse::<AlertKind>(), Ok(k.clone()), "{k}");
        }
        assert_eq!(
            "data_access_expiring_3days".parse(),
            Ok(AlertKind::DataAccessExpiring("3days".into()))
        );
        assert!("expiring_".parse::<AlertKind>().is_err());
        assert!("something_else".parse::<AlertKind>().is_err());
    }
}
