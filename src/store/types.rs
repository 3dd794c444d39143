//! The rows the store reads and writes, and the column lists shared by its queries.

use super::*;

/// An API key as listed: never the key itself.
#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyInfo {
    /// The first characters of the key.
    pub prefix: String,
    /// The workspace it belongs to.
    pub workspace: String,
    /// When it was created.
    pub created_at: UnixTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<UnixTime>,
    /// What it may do: `read,manage`.
    pub scopes: String,
}

/// An account to register, with its tokens already sealed.
#[derive(Debug)]
pub struct NewAccount {
    /// Owning workspace.
    pub workspace_id: WorkspaceId,
    /// Platform.
    pub platform: Platform,
    /// Platform account ID.
    pub account_id: AccountId,
    /// Display name.
    pub username: String,
    /// Sealed access token.
    pub access_token: Vec<u8>,
    /// Sealed refresh token, when the platform issued one.
    pub refresh_token: Option<Vec<u8>>,
    /// Access token expiry.
    pub token_expires_at: Option<UnixTime>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// Registration time.
    pub connected_at: UnixTime,
    /// Who refreshes its grant.
    pub custody: Custody,
    /// Instagram: the login it was connected with (`None`: the configured one).
    pub instagram_login: Option<InstagramLogin>,
}

#[derive(FromRow, serde::Deserialize)]
pub(super) struct AccountRow {
    pub(super) id: AccountRef,
    pub(super) workspace_id: WorkspaceId,
    pub(super) platform: Platform,
    pub(super) account_id: String,
    pub(super) username: String,
    pub(super) connected_at: i64,
    pub(super) custody: Custody,
    pub(super) instagram_login: Option<InstagramLogin>,
    pub(super) scopes: JsonList,
    pub(super) token_expires_at: Option<i64>,
    pub(super) refresh_expires_at: Option<i64>,
    pub(super) token_issued_at: i64,
    pub(super) health: Health,
    #[serde(deserialize_with = "json_bool::option")]
    pub(super) token_valid: Option<bool>,
    #[serde(deserialize_with = "json_bool::plain")]
    pub(super) needs_reconnect: bool,
    pub(super) permissions: Option<JsonList>,
    pub(super) missing_permissions: JsonList,
    pub(super) recommendations: JsonList,
    pub(super) data_access_expires_at: Option<i64>,
    pub(super) platform_user_id: Option<String>,
    pub(super) last_error: Option<String>,
    pub(super) last_checked_at: Option<i64>,
    pub(super) last_success_at: Option<i64>,
    pub(super) consecutive_failures: i64,
    pub(super) next_check_at: i64,
    pub(super) refresh_failures: i64,
    pub(super) last_refresh_error: Option<String>,
    pub(super) open_alerts: JsonList,
    pub(super) alert_episode: i64,
}

/// Rows per multi-row UPDATE (17 parameters each, under SQLite's 32,766 limit).
pub(super) const UPDATE_CHUNK: usize = 1000;

/// Alerts per multi-row INSERT (11 parameters each).
pub(super) const ALERT_CHUNK: usize = 1000;

/// Rows that SQLite handed over as one JSON array (`json_group_array`).
pub(super) fn from_json_rows<T: serde::de::DeserializeOwned>(json: &str) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Db(sqlx::Error::Decode(format!("rows as JSON: {e}").into())))
}

/// A list of strings stored as a JSON text (scopes, permissions, alert kinds). Read as a
/// string and parsed here, so that both backends store the same TEXT (PostgreSQL's JSON type
/// would need casts in every shared statement); within a page read as one JSON value it
/// is the nested list itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct JsonList(pub Vec<String>);

impl<DB: Database> Type<DB> for JsonList
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database> sqlx::Decode<'r, DB> for JsonList
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <String as sqlx::Decode<'r, DB>>::decode(value)?;
        Ok(JsonList(serde_json::from_str(&text)?))
    }
}

/// SQLite's JSON has no booleans: a boolean column reads as 0 or 1.
mod json_bool {
    use serde::{Deserialize, Deserializer};

    pub fn plain<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(i64::deserialize(d)? != 0)
    }

    pub fn option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        Ok(Option::<i64>::deserialize(d)?.map(|v| v != 0))
    }
}

pub(super) fn to_json<T: serde::Serialize>(v: &[T]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

impl From<AccountRow> for Account {
    fn from(r: AccountRow) -> Self {
        Account {
            platform: r.platform,

            id: r.id,
            workspace_id: r.workspace_id,
            custody: r.custody,
            instagram_login: r.instagram_login,
            scopes: r.scopes.0,

            account_id: r.account_id,
            username: r.username,
            connected_at: r.connected_at,
            token_expires_at: r.token_expires_at,
            refresh_expires_at: r.refresh_expires_at,
            token_issued_at: r.token_issued_at,
            state: HealthState {
                health: r.health,
                token_valid: r.token_valid,
                needs_reconnect: r.needs_reconnect,
                permissions: r.permissions.map(|p| p.0),
                missing_permissions: r.missing_permissions.0,
                recommendations: r.recommendations.0,
                data_access_expires_at: r.data_access_expires_at,
                platform_user_id: r.platform_user_id,
                last_error: r.last_error,
            },
            last_checked_at: r.last_checked_at,
            last_success_at: r.last_success_at,
            consecutive_failures: r.consecutive_failures,
            next_check_at: r.next_check_at,
            refresh_failures: r.refresh_failures,
            last_refresh_error: r.last_refresh_error,
            // Kinds this version does not know (left by another) are dropped from the episode.
            open_alerts: r.open_alerts.0.iter().filter_map(|k| k.parse().ok()).collect(),
            alert_episode: r.alert_episode,
        }
    }
}

/// The columns of an [`AccountRow`], in its field order; `$list!` wraps each JSON list column
/// (`plain` as it is, `as_json` as JSON so that it nests in [`Store::list_page`]'s rows).
macro_rules! account_columns {
    ($list:ident) => {
        concat!(
            "a.id, a.workspace_id, a.platform, a.account_id, a.username, a.connected_at, a.custody, \
             a.instagram_login, ",
            $list!("a.scopes"),
            ", a.token_expires_at, a.refresh_expires_at, a.token_issued_at, \
             h.health, h.token_valid, h.needs_reconnect, ",
            $list!("h.permissions"),
            ", ",
            $list!("h.missing_permissions"),
            ", ",
            $list!("h.recommendations"),
            ", h.data_access_expires_at, h.platform_user_id, h.last_error, h.last_checked_at, \
             h.last_success_at, h.consecutive_failures, h.next_check_at, h.refresh_failures, \
             h.last_refresh_error, ",
            $list!("h.open_alerts"),
            ", h.alert_episode"
        )
    };
}

macro_rules! plain {
    ($c:literal) => {
        $c
    };
}

macro_rules! as_json {
    ($c:literal) => {
        concat!("json(", $c, ")")
    };
}

/// `SELECT` of [`AccountRow`]s, to which a `WHERE` can be appended at compile time (a
/// literal: sqlx takes only audited or literal SQL).
macro_rules! account_select {
    () => {
        concat!(
            "SELECT ",
            account_columns!(plain),
            " FROM accounts a JOIN account_health h ON h.account_ref = a.id"
        )
    };
}

pub(super) const ACCOUNT_SELECT: &str = account_select!();

/// Re-sealed credentials: account row, access token, refresh token.
pub type Resealed = (i64, Vec<u8>, Option<Vec<u8>>);

/// One account's sealed credentials and what binds them, for re-sealing.
#[derive(Debug, FromRow)]
pub struct SealedRow {
    /// Account row.
    pub id: i64,
    /// Workspace.
    pub workspace_id: WorkspaceId,
    /// Platform.
    pub platform: Platform,
    /// Account ID.
    pub account_id: String,
    /// Sealed access token.
    pub access_token: Vec<u8>,
    /// Sealed refresh token.
    pub refresh_token: Option<Vec<u8>>,
}

/// Sealed credentials of one account.
#[derive(Debug, Clone, FromRow)]
pub struct SealedCredentials {
    /// Sealed access token.
    pub access_token: Vec<u8>,
    /// Sealed refresh token.
    pub refresh_token: Option<Vec<u8>>,
}

/// Who claims the work a query hands out, and until when (several daemons on one
/// PostgreSQL database; SQLite ignores claims).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// The claimant: unique to this daemon (and this sweep or delivery run).
    pub holder: &'a str,
    /// Now, by the daemon's clock: what is due (checks, alert retries) is judged by it.
    pub now: UnixTime,
    /// Seconds the claim holds if it is not released. Claims start and end on the
    /// database's clock (`unixepoch()`), which every daemon shares, whatever its own.
    pub lease: i64,
}

/// A page of due accounts with their sealed credentials.
#[derive(Debug, Default)]
pub struct DuePage {
    /// The accounts, in due order.
    pub accounts: Vec<(Account, SealedCredentials)>,
    /// How many of them were claimed by a peer whose claim expired unreleased.
    pub taken_over: u64,
}

/// Which accounts a list shows.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// Only this platform.
    pub platform: Option<Platform>,
    /// Only this health, as read now.
    pub health: Option<Health>,
    /// Accounts whose last answer is older than this read `unknown`.
    pub stale_before: UnixTime,
}

/// One account as the reconnect series see it.
#[derive(Debug, Clone)]
pub struct ReconnectRow {
    /// Platform.
    pub platform: Platform,
    /// Platform account ID.
    pub account_id: String,
    /// Workspace name.
    pub workspace: String,
    /// Whether a person must reconnect it now.
    pub needs_reconnect: bool,
    /// Access token expiry.
    pub token_expires_at: Option<UnixTime>,
    /// Refresh token expiry.
    pub refresh_expires_at: Option<UnixTime>,
    /// Facebook data-access expiry.
    pub data_access_expires_at: Option<UnixTime>,
    /// Automatic refreshes are failing.
    pub refresh_failing: bool,
    /// A refresh token is stored.
    pub has_refresh_token: bool,
    /// Who refreshes its grant.
    pub custody: Custody,
    /// Instagram: the login it was connected with (`None`: the configured one).
    pub instagram_login: Option<InstagramLogin>,
}

/// The result of one check, to be written as the account's current health.
#[derive(Debug, Clone)]
pub struct HealthUpdate {
    /// Internal account row ID.
    pub account_ref: AccountRef,
    /// Its workspace (whose cached answers the update invalidates).
    pub workspace_id: WorkspaceId,
    /// The state to store.
    pub state: HealthState,
    /// Access token expiry (`None`: never or unknown).
    pub token_expires_at: Option<UnixTime>,
    /// When the check ran.
    pub checked_at: UnixTime,
    /// Whether the platform answered (not a transient failure).
    pub answered: bool,
    /// Next scheduled check.
    pub next_check_at: UnixTime,
    /// The `outcome` label of the check (`ok`, `invalid`, `transient_error`).
    pub outcome: CheckLabel,
    /// The health before this check (history marks changes).
    pub previous_health: Health,
    /// Whether a person had to act before this check (a change of it is a transition too).
    pub previous_needs_reconnect: bool,
    /// The access token expiry before this check (the row is only touched when it changes).
    pub previous_token_expires_at: Option<UnixTime>,
    /// Failed automatic refreshes in a row, after this check.
    pub refresh_failures: i64,
    /// Why the last automatic refresh failed, while it keeps failing.
    pub last_refresh_error: Option<String>,
    /// Alert events this check raised (stored in the same transaction).
    pub alerts: Vec<PendingAlert>,
    /// Problem kinds alerted in the current episode, after this check.
    pub open_alerts: Vec<AlertKind>,
    /// Alert episode after this check.
    pub alert_episode: i64,
    /// Everything but the check's time and the next check's is as stored: only those are
    /// written (see [`HealthUpdate::same_content`]).
    pub unchanged: bool,
    /// The platform was not asked or asked us to wait (a throttle): only `next_check_at`
    /// is written; no history row, no failure counted.
    pub deferred: bool,
}

impl HealthUpdate {
    /// A deferral of `a` to `next_check_at`: everything else stays as stored.
    ///
    /// `why` becomes the account's `lastError`. `unchanged` is false for the first deferral
    /// of a run (the account's last error was not a deferral's): that one writes a
    /// `deferred` history row.
    pub fn deferral(a: &Account, now: UnixTime, next_check_at: UnixTime, why: String) -> HealthUpdate {
        let first = !a
            .state
            .last_error
            .as_deref()
            .is_some_and(|e| e.ends_with(crate::domain::DEFERRED_SUFFIX));
        HealthUpdate {
            account_ref: a.id,
            workspace_id: a.workspace_id,
            state: HealthState {
                last_error: Some(why),
                ..a.state.clone()
            },
            token_expires_at: a.token_expires_at,
            checked_at: now,
            answered: false,
            next_check_at,
            outcome: CheckLabel::TransientError,
            previous_health: a.state.health,
            previous_needs_reconnect: a.state.needs_reconnect,
            previous_token_expires_at: a.token_expires_at,
            refresh_failures: a.refresh_failures,
            last_refresh_error: a.last_refresh_error.clone(),
            alerts: Vec::new(),
            open_alerts: a.open_alerts.clone(),
            alert_episode: a.alert_episode,
            unchanged: !first,
            deferred: true,
        }
    }

    /// Whether this update stores the same assessment `a` already holds (the common case in
    /// a sweep: a healthy account stays healthy). Such an update writes only the check's
    /// bookkeeping (checked at, success or failure, next check) and its history row.
    pub fn same_content(&self, a: &Account) -> bool {
        self.state == a.state
            && self.refresh_failures == a.refresh_failures
            && self.last_refresh_error == a.last_refresh_error
            && self.open_alerts == a.open_alerts
            && self.alert_episode == a.alert_episode
    }
}

/// New tokens from a refresh, sealed, replacing the stored ones.
#[derive(Debug)]
pub struct TokenReplacement {
    /// Internal account row ID.
    pub account_ref: AccountRef,
    /// Its workspace (whose cached answers the replacement invalidates).
    pub workspace_id: WorkspaceId,
    /// Sealed new access token.
    pub access_token: Vec<u8>,
    /// Sealed new refresh token; `None` keeps the stored one (never replaced by nothing).
    pub refresh_token: Option<Vec<u8>>,
    /// New access token expiry (`None`: unknown, keep the stored one).
    pub expires_at: Option<UnixTime>,
    /// New refresh token expiry (`None`: keep).
    pub refresh_expires_at: Option<UnixTime>,
    /// New scopes (`None`: keep).
    pub scopes: Option<Vec<String>>,
    /// When the refresh happened.
    pub at: UnixTime,
    /// The account's health, for the history row.
    pub health: Health,
    /// Tokens pushed by the product (`PUT .../credentials`), not issued by a refresh: the
    /// expiries are taken as given (absent: unknown), and the refresh token may be removed.
    pub pushed: Option<Pushed>,
}

/// How pushed tokens replace the stored ones.
#[derive(Debug, Clone, Copy)]
pub struct Pushed {
    /// `"refreshToken": null`: the stored refresh token is removed.
    pub remove_refresh: bool,
}

/// One row of an account's history.
#[derive(Debug, Clone, FromRow)]
pub struct HistoryEntry {
    /// When.
    pub at: UnixTime,
    /// What the row records.
    pub event: HistoryEvent,
    /// For checks: what the check came to.
    pub outcome: Option<CheckLabel>,
    /// Health after the event.
    pub health: Health,
    /// Whether the health changed.
    pub changed: bool,
    /// What happened, in words safe to show.
    pub detail: Option<String>,
}
