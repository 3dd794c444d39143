//! Every SQL statement of the project: workspaces, API keys, accounts, credentials, health.
//!
//! SQL is kept portable (`$N` placeholders, `RETURNING`, BIGINT Unix seconds) so that a
//! PostgreSQL backend can reuse it.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder, Sqlite, SqlitePool};

use crate::crypto;
use crate::domain::{AccountId, Health, Platform, UnixTime};

/// Database errors the callers can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same unique key exists.
    #[error("already exists")]
    Conflict,
    /// The row does not exist.
    #[error("not found")]
    NotFound,
    /// Anything else from the database.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn conflict_or(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Db(e),
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

/// Pushes the health as read now ([`crate::health::READ_HEALTH_SQL`]) with `stale_before` bound.
fn push_read_health(q: &mut QueryBuilder<'_, Sqlite>, stale_before: UnixTime) {
    let (head, tail) = crate::health::READ_HEALTH_SQL
        .split_once("$stale_before")
        .unwrap_or((crate::health::READ_HEALTH_SQL, ""));
    q.push(head).push_bind(stale_before).push(tail);
}

/// Bumps the generation of each of `workspaces` (duplicates are bumped once) inside `tx`:
/// every write to a workspace's accounts or their health calls this in its own transaction.
async fn bump_generations(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    workspaces: impl IntoIterator<Item = i64>,
) -> Result<(), StoreError> {
    let mut ws: Vec<i64> = workspaces.into_iter().collect();
    ws.sort_unstable();
    ws.dedup();
    for w in ws {
        sqlx::query(
            "INSERT INTO workspace_generations (workspace_id, generation) VALUES ($1, 1) \
             ON CONFLICT (workspace_id) DO UPDATE SET generation = workspace_generations.generation + 1",
        )
        .bind(w)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

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
}

/// An account to register, with its tokens already sealed.
#[derive(Debug)]
pub struct NewAccount {
    /// Owning workspace.
    pub workspace_id: i64,
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
}

/// An account with its current health, as the API and the scheduler see it.
#[derive(Debug, Clone)]
pub struct Account {
    /// Internal row ID.
    pub id: i64,
    /// Owning workspace.
    pub workspace_id: i64,
    /// Platform.
    pub platform: Platform,
    /// Platform account ID.
    pub account_id: String,
    /// Display name.
    pub username: String,
    /// Registration time.
    pub connected_at: UnixTime,
    /// Scopes stored at registration or last refresh.
    pub scopes: Vec<String>,
    /// Access token expiry, when known.
    pub token_expires_at: Option<UnixTime>,
    /// Refresh token expiry, when known.
    pub refresh_expires_at: Option<UnixTime>,
    /// When the current access token was issued (registration or last refresh).
    pub token_issued_at: UnixTime,
    /// Current health.
    pub health: Health,
    /// Whether the last check found the token valid; `None` before the first check.
    pub token_valid: Option<bool>,
    /// Whether the account must be reconnected by a person.
    pub needs_reconnect: bool,
    /// Permissions found by the last check (`None` before the first check).
    pub permissions: Option<Vec<String>>,
    /// Required permissions the token lacks.
    pub missing_permissions: Vec<String>,
    /// What a person should do.
    pub recommendations: Vec<String>,
    /// Facebook data-access expiry.
    pub data_access_expires_at: Option<UnixTime>,
    /// The platform's user ID behind the token (Facebook revocation needs it).
    pub platform_user_id: Option<String>,
    /// The last error seen, in words safe to show.
    pub last_error: Option<String>,
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
    pub open_alerts: Vec<String>,
    /// Alert episode (a recovery starts the next).
    pub alert_episode: i64,
}

#[derive(FromRow, serde::Deserialize)]
struct AccountRow {
    id: i64,
    workspace_id: i64,
    platform: String,
    account_id: String,
    username: String,
    connected_at: i64,
    scopes: Json<Vec<String>>,
    token_expires_at: Option<i64>,
    refresh_expires_at: Option<i64>,
    token_issued_at: i64,
    health: String,
    #[serde(deserialize_with = "json_bool::option")]
    token_valid: Option<bool>,
    #[serde(deserialize_with = "json_bool::plain")]
    needs_reconnect: bool,
    permissions: Option<Json<Vec<String>>>,
    missing_permissions: Json<Vec<String>>,
    recommendations: Json<Vec<String>>,
    data_access_expires_at: Option<i64>,
    platform_user_id: Option<String>,
    last_error: Option<String>,
    last_checked_at: Option<i64>,
    last_success_at: Option<i64>,
    consecutive_failures: i64,
    next_check_at: i64,
    refresh_failures: i64,
    last_refresh_error: Option<String>,
    open_alerts: Json<Vec<String>>,
    alert_episode: i64,
}

/// Rows per multi-row UPDATE (17 parameters each, under SQLite's 32,766 limit).
const UPDATE_CHUNK: usize = 1000;

/// Alerts per multi-row INSERT (11 parameters each).
const ALERT_CHUNK: usize = 1000;

/// Rows that SQLite handed over as one JSON array (`json_group_array`).
fn from_json_rows<T: serde::de::DeserializeOwned>(json: &str) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Db(sqlx::Error::Decode(format!("rows as JSON: {e}").into())))
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

fn to_json(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

impl TryFrom<AccountRow> for Account {
    type Error = StoreError;

    fn try_from(r: AccountRow) -> Result<Self, StoreError> {
        let bad = |what: &str| {
            StoreError::Db(sqlx::Error::Decode(
                format!("bad {what} in accounts row {}", r.id).into(),
            ))
        };
        Ok(Account {
            platform: Platform::from_str(&r.platform).map_err(|_| bad("platform"))?,
            health: Health::from_str(&r.health).map_err(|_| bad("health"))?,
            id: r.id,
            workspace_id: r.workspace_id,
            scopes: r.scopes.0,
            permissions: r.permissions.map(|p| p.0),
            missing_permissions: r.missing_permissions.0,
            recommendations: r.recommendations.0,
            account_id: r.account_id,
            username: r.username,
            connected_at: r.connected_at,
            token_expires_at: r.token_expires_at,
            refresh_expires_at: r.refresh_expires_at,
            token_issued_at: r.token_issued_at,
            token_valid: r.token_valid,
            needs_reconnect: r.needs_reconnect,
            data_access_expires_at: r.data_access_expires_at,
            platform_user_id: r.platform_user_id,
            last_error: r.last_error,
            last_checked_at: r.last_checked_at,
            last_success_at: r.last_success_at,
            consecutive_failures: r.consecutive_failures,
            next_check_at: r.next_check_at,
            refresh_failures: r.refresh_failures,
            last_refresh_error: r.last_refresh_error,
            open_alerts: r.open_alerts.0,
            alert_episode: r.alert_episode,
        })
    }
}

/// The columns of an [`AccountRow`], in its field order; `$list!` wraps each JSON list column
/// (`plain` as it is, `as_json` as JSON so that it nests in [`Store::list_page`]'s rows).
macro_rules! account_columns {
    ($list:ident) => {
        concat!(
            "a.id, a.workspace_id, a.platform, a.account_id, a.username, a.connected_at, ",
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

const ACCOUNT_SELECT: &str = concat!(
    "SELECT ",
    account_columns!(plain),
    " FROM accounts a JOIN account_health h ON h.account_ref = a.id"
);

/// Re-sealed credentials: account row, access token, refresh token.
pub type Resealed = (i64, Vec<u8>, Option<Vec<u8>>);

/// One account's sealed credentials and what binds them, for re-sealing.
#[derive(Debug, FromRow)]
pub struct SealedRow {
    /// Account row.
    pub id: i64,
    /// Workspace.
    pub workspace_id: i64,
    /// Platform name.
    pub platform: String,
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

/// Which accounts a list shows.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter {
    /// The workspace.
    pub workspace_id: i64,
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
}

/// The result of one check, to be written as the account's current health.
#[derive(Debug, Clone)]
pub struct HealthUpdate {
    /// Internal account row ID.
    pub account_ref: i64,
    /// Its workspace (whose cached answers the update invalidates).
    pub workspace_id: i64,
    /// New health.
    pub health: Health,
    /// Token validity (`None`: unknown).
    pub token_valid: Option<bool>,
    /// Whether a person must reconnect.
    pub needs_reconnect: bool,
    /// Known permissions (`None`: never known).
    pub permissions: Option<Vec<String>>,
    /// Missing required permissions.
    pub missing_permissions: Vec<String>,
    /// Recommendations.
    pub recommendations: Vec<String>,
    /// Access token expiry (`None`: never or unknown).
    pub token_expires_at: Option<UnixTime>,
    /// Data-access expiry learnt from the platform.
    pub data_access_expires_at: Option<UnixTime>,
    /// Platform user ID behind the token.
    pub platform_user_id: Option<String>,
    /// Error text safe to show, or `None`.
    pub last_error: Option<String>,
    /// When the check ran.
    pub checked_at: UnixTime,
    /// Whether the platform answered (not a transient failure).
    pub answered: bool,
    /// Next scheduled check.
    pub next_check_at: UnixTime,
    /// The `outcome` label of the check (`ok`, `invalid`, `transient_error`).
    pub outcome: &'static str,
    /// The health before this check (history marks changes).
    pub previous_health: Health,
    /// The access token expiry before this check (the row is only touched when it changes).
    pub previous_token_expires_at: Option<UnixTime>,
    /// Failed automatic refreshes in a row, after this check.
    pub refresh_failures: i64,
    /// Why the last automatic refresh failed, while it keeps failing.
    pub last_refresh_error: Option<String>,
    /// Alert events this check raised (stored in the same transaction).
    pub alerts: Vec<NewAlert>,
    /// Problem kinds alerted in the current episode, after this check.
    pub open_alerts: Vec<String>,
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
    pub fn deferral(a: &Account, now: UnixTime, next_check_at: UnixTime) -> HealthUpdate {
        HealthUpdate {
            account_ref: a.id,
            workspace_id: a.workspace_id,
            health: a.health,
            token_valid: a.token_valid,
            needs_reconnect: a.needs_reconnect,
            permissions: a.permissions.clone(),
            missing_permissions: a.missing_permissions.clone(),
            recommendations: a.recommendations.clone(),
            token_expires_at: a.token_expires_at,
            data_access_expires_at: a.data_access_expires_at,
            platform_user_id: a.platform_user_id.clone(),
            last_error: a.last_error.clone(),
            checked_at: now,
            answered: false,
            next_check_at,
            outcome: "transient_error",
            previous_health: a.health,
            previous_token_expires_at: a.token_expires_at,
            refresh_failures: a.refresh_failures,
            last_refresh_error: a.last_refresh_error.clone(),
            alerts: Vec::new(),
            open_alerts: a.open_alerts.clone(),
            alert_episode: a.alert_episode,
            unchanged: true,
            deferred: true,
        }
    }

    /// Whether this update stores the same assessment `a` already holds (the common case in
    /// a sweep: a healthy account stays healthy). Such an update writes only the check's
    /// bookkeeping (checked at, success or failure, next check) and its history row.
    pub fn same_content(&self, a: &Account) -> bool {
        self.health == a.health
            && self.token_valid == a.token_valid
            && self.needs_reconnect == a.needs_reconnect
            && self.permissions == a.permissions
            && self.missing_permissions == a.missing_permissions
            && self.recommendations == a.recommendations
            && self.data_access_expires_at == a.data_access_expires_at
            && self.platform_user_id == a.platform_user_id
            && self.last_error == a.last_error
            && self.refresh_failures == a.refresh_failures
            && self.last_refresh_error == a.last_refresh_error
            && self.open_alerts == a.open_alerts
            && self.alert_episode == a.alert_episode
    }
}

/// An alert event to put in the outbox.
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Workspace to notify.
    pub workspace_id: i64,
    /// The account concerned.
    pub account_ref: i64,
    /// Unique per account, token, episode and kind.
    pub dedup_key: String,
    /// `expiring_7d`, `token_invalid`, `recovered`, ...
    pub kind: String,
    /// How bad.
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
    /// When it was raised.
    pub created_at: UnixTime,
}

/// An alert waiting in the outbox.
#[derive(Debug, Clone, FromRow)]
pub struct PendingAlert {
    /// Outbox row.
    pub id: i64,
    /// Workspace to notify.
    pub workspace_id: i64,
    /// Workspace name.
    pub workspace: String,
    /// Kind.
    pub kind: String,
    /// Severity (a health state).
    pub severity: String,
    /// Platform.
    pub platform: String,
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
}

/// New tokens from a refresh, sealed, replacing the stored ones.
#[derive(Debug)]
pub struct TokenReplacement {
    /// Internal account row ID.
    pub account_ref: i64,
    /// Its workspace (whose cached answers the replacement invalidates).
    pub workspace_id: i64,
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
}

/// One row of an account's history.
#[derive(Debug, Clone, FromRow)]
pub struct HistoryEntry {
    /// When.
    pub at: UnixTime,
    /// `check`, `refresh` or `refresh_failed`.
    pub event: String,
    /// For checks: `ok`, `invalid` or `transient_error`.
    pub outcome: Option<String>,
    /// Health after the event.
    pub health: String,
    /// Whether the health changed.
    pub changed: bool,
    /// What happened, in words safe to show.
    pub detail: Option<String>,
}

impl Store {
    /// The generation of a workspace's accounts and health: it changes with every write to
    /// them, by this process or any other on the database.
    pub async fn generation(&self, workspace_id: i64) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM workspace_generations WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_optional(&self.pool)
                .await?
                .unwrap_or(0),
        )
    }

    /// Opens (creating if needed) the SQLite file with WAL, `synchronous=NORMAL`, a busy
    /// timeout and foreign keys on.
    pub async fn open_sqlite(path: &Path, busy_timeout: Duration, max_connections: u32) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true)
            // Deleted content (a deleted account's sealed tokens) is zeroed on the B-tree pages
            // that held it. FAST leaves a page freed whole as it was until it is reused (at
            // worst sealed bytes); ON also rewrites those and cost 25% on bulk writes (measured).
            .pragma("secure_delete", "FAST")
            // A sweep touches every row: keep the working set in memory (32 MiB per connection).
            .pragma("cache_size", "-32768")
            .pragma("temp_store", "MEMORY")
            // Rows cross from SQLite's thread in larger runs: a sweep's page of due accounts
            // (thousands of rows) then costs a few thread wake-ups instead of one per 50 rows.
            .row_buffer_size(1024);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(opts)
            .await?;
        Ok(Store { pool })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    // ---- workspaces and keys ----

    /// The ID of workspace `name`, creating it if needed.
    pub async fn ensure_workspace(&self, name: &str, now: UnixTime) -> Result<i64, StoreError> {
        sqlx::query("INSERT INTO workspaces (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(now)
            .execute(&self.pool)
            .await?;
        self.workspace_id(name).await?.ok_or(StoreError::NotFound)
    }

    /// The ID of workspace `name`, if it exists.
    pub async fn workspace_id(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT id FROM workspaces WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Stores a new key's prefix and hash.
    pub async fn insert_api_key(
        &self,
        workspace_id: i64,
        prefix: &str,
        hash: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (workspace_id, prefix, key_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(workspace_id)
            .bind(prefix)
            .bind(hash)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    /// Every key, newest first.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT k.prefix, w.name AS workspace, k.created_at, k.revoked_at \
             FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id ORDER BY k.created_at DESC, k.id DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes the active keys whose prefix is exactly `prefix`; returns how many.
    pub async fn revoke_api_keys(&self, prefix: &str, now: UnixTime) -> Result<u64, StoreError> {
        let r = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE prefix = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(prefix)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    /// The workspace of an active key, comparing hashes in constant time.
    pub async fn authenticate(&self, key: &str) -> Result<Option<i64>, StoreError> {
        if !crypto::looks_like_api_key(key) {
            return Ok(None);
        }
        let hash = crypto::hash_api_key(key);
        let candidates: Vec<(i64, String)> =
            sqlx::query_as("SELECT workspace_id, key_hash FROM api_keys WHERE prefix = $1 AND revoked_at IS NULL")
                .bind(&key[..crypto::KEY_PREFIX_LEN])
                .fetch_all(&self.pool)
                .await?;
        let mut found = None;
        for (ws, stored) in candidates {
            if crypto::hashes_equal(&stored, &hash) {
                found = Some(ws);
            }
        }
        Ok(found)
    }

    // ---- accounts ----

    /// Registers an account with its sealed credentials and an `unknown` health row, in one
    /// transaction. `StoreError::Conflict` if it exists in the workspace.
    pub async fn insert_account(&self, a: &NewAccount) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let id = insert_account_rows(&mut tx, a).await?;
        bump_generations(&mut tx, [a.workspace_id]).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The accounts of a workspace, optionally filtered, ordered by platform then ID.
    /// A page of a workspace's accounts in ID order after `after` (keyset paging: stable
    /// under concurrent inserts and deletes). `f.health` filters on the health as read now
    /// (see [`crate::health::read_view`]).
    pub async fn list_page(&self, f: &ListFilter, after: Option<i64>, limit: i64) -> Result<Vec<Account>, StoreError> {
        // The page leaves SQLite as one JSON array of rows, not as 27 values a row: sqlx
        // copies and hands over each value on its own, which made a page of 1,000 accounts
        // take 5.8 ms to read instead of about 1 ms (measured with `bench api`).
        let mut q = QueryBuilder::<Sqlite>::new(
            "WITH page AS (SELECT a.id FROM accounts a JOIN account_health h ON h.account_ref = a.id",
        );
        Self::push_filter(&mut q, f);
        if let Some(after) = after {
            q.push(" AND a.id > ").push_bind(after);
        }
        q.push(" ORDER BY a.id LIMIT ").push_bind(limit);
        q.push(concat!(
            ") SELECT json_group_array(json_array(",
            account_columns!(as_json),
            ")) FROM page p JOIN accounts a ON a.id = p.id \
             JOIN account_health h ON h.account_ref = a.id"
        ));
        let (json,): (String,) = q.build_query_as().fetch_one(&self.pool).await?;
        let mut rows: Vec<AccountRow> = from_json_rows(&json)?;
        // An aggregate's order is not promised: the page's order is restored here.
        rows.sort_by_key(|r| r.id);
        rows.into_iter().map(Account::try_from).collect()
    }

    /// How many of the filtered accounts are in each health, as read now.
    pub async fn health_summary(&self, f: &ListFilter) -> Result<Vec<(Health, i64)>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        push_read_health(&mut q, f.stale_before);
        q.push(" AS read_health, COUNT(*) FROM accounts a JOIN account_health h ON h.account_ref = a.id");
        Self::push_filter(&mut q, f);
        q.push(" GROUP BY 1");
        let rows: Vec<(String, i64)> = q.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(h, n)| Some((h.parse().ok()?, n)))
            .collect())
    }

    /// The oldest last answer among the accounts of the filter's workspace and platform that
    /// do not read `unknown` yet: the first to turn stale (whatever the health filter, since
    /// an account turning stale joins the `unknown` list).
    pub async fn next_stale_at(&self, f: &ListFilter) -> Result<Option<UnixTime>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT MIN(h.last_success_at) FROM accounts a JOIN account_health h ON h.account_ref = a.id \
             WHERE h.health <> 'unknown' AND h.last_success_at >= ",
        );
        q.push_bind(f.stale_before);
        q.push(" AND a.workspace_id = ").push_bind(f.workspace_id);
        if let Some(p) = f.platform {
            q.push(" AND a.platform = ").push_bind(p.as_str());
        }
        let (t,): (Option<i64>,) = q.build_query_as().fetch_one(&self.pool).await?;
        Ok(t)
    }

    fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, f: &ListFilter) {
        q.push(" WHERE a.workspace_id = ").push_bind(f.workspace_id);
        if let Some(p) = f.platform {
            q.push(" AND a.platform = ").push_bind(p.as_str());
        }
        if let Some(h) = f.health {
            q.push(" AND ");
            push_read_health(q, f.stale_before);
            q.push(" = ").push_bind(h.as_str());
        }
    }

    /// Every account of every workspace, optionally of one platform (for `check`).
    pub async fn all_accounts(&self, platform: Option<Platform>) -> Result<Vec<Account>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new(ACCOUNT_SELECT);
        if let Some(p) = platform {
            q.push(" WHERE a.platform = ").push_bind(p.as_str());
        }
        q.push(" ORDER BY a.id");
        let rows: Vec<AccountRow> = q.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(Account::try_from).collect()
    }

    /// One account of a workspace.
    pub async fn get_account(
        &self,
        workspace_id: i64,
        platform: Platform,
        account_id: &AccountId,
    ) -> Result<Option<Account>, StoreError> {
        let sql = format!("{ACCOUNT_SELECT} WHERE a.workspace_id = $1 AND a.platform = $2 AND a.account_id = $3");
        let row: Option<AccountRow> = sqlx::query_as(&sql)
            .bind(workspace_id)
            .bind(platform.as_str())
            .bind(account_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(Account::try_from).transpose()
    }

    /// The sealed credentials of an account.
    pub async fn credentials(&self, account_ref: i64) -> Result<SealedCredentials, StoreError> {
        sqlx::query_as("SELECT access_token, refresh_token FROM credentials WHERE account_ref = $1")
            .bind(account_ref)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Deletes an account and returns the credentials it had, in one `BEGIN IMMEDIATE`
    /// transaction: of several concurrent deletions exactly one gets them (and revokes them
    /// at the platform); the others get `None` (the account is gone).
    pub async fn take_account(&self, account_ref: i64) -> Result<Option<SealedCredentials>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let workspace: Option<i64> = sqlx::query_scalar("SELECT workspace_id FROM accounts WHERE id = $1")
            .bind(account_ref)
            .fetch_optional(&mut *tx)
            .await?;
        let creds: Option<SealedCredentials> =
            sqlx::query_as("SELECT access_token, refresh_token FROM credentials WHERE account_ref = $1")
                .bind(account_ref)
                .fetch_optional(&mut *tx)
                .await?;
        for sql in [
            "DELETE FROM credentials WHERE account_ref = $1",
            "DELETE FROM account_health WHERE account_ref = $1",
        ] {
            sqlx::query(sql).bind(account_ref).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(account_ref)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        bump_generations(&mut tx, workspace).await?;
        tx.commit().await?;
        Ok(creds.filter(|_| deleted))
    }

    /// Writes check results as the accounts' current health, with their history rows, all in
    /// one transaction.
    pub async fn record_checks(&self, updates: &[HealthUpdate]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // One multi-row UPDATE ... FROM (VALUES ...) per chunk instead of a statement per
        // account: a sweep's results land in a few statements. VALUES columns are named
        // column1..columnN in both SQLite and PostgreSQL. Unchanged assessments write only
        // four columns, deferrals one.
        let (deferred, checked): (Vec<&HealthUpdate>, Vec<&HealthUpdate>) = updates.iter().partition(|u| u.deferred);
        for chunk in deferred.chunks(UPDATE_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE account_health SET next_check_at = v.column2 FROM (");
            q.push_values(chunk, |mut b, u| {
                b.push_bind(u.account_ref).push_bind(u.next_check_at);
            });
            q.push(") AS v WHERE account_health.account_ref = v.column1");
            q.build().execute(&mut *tx).await?;
        }
        let (same, changed): (Vec<&HealthUpdate>, Vec<&HealthUpdate>) = checked.into_iter().partition(|u| u.unchanged);
        for chunk in same.chunks(UPDATE_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE account_health SET last_checked_at = v.column2, \
                 last_success_at = CASE WHEN v.column3 THEN v.column2 ELSE account_health.last_success_at END, \
                 consecutive_failures = CASE WHEN v.column3 THEN 0 ELSE account_health.consecutive_failures + 1 END, \
                 next_check_at = v.column4 FROM (",
            );
            q.push_values(chunk, |mut b, u| {
                b.push_bind(u.account_ref)
                    .push_bind(u.checked_at)
                    .push_bind(u.answered)
                    .push_bind(u.next_check_at);
            });
            q.push(") AS v WHERE account_health.account_ref = v.column1");
            q.build().execute(&mut *tx).await?;
        }
        for chunk in changed.chunks(UPDATE_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "UPDATE account_health SET health = v.column2, token_valid = v.column3, needs_reconnect = v.column4, \
                 permissions = v.column5, missing_permissions = v.column6, recommendations = v.column7, \
                 data_access_expires_at = v.column8, platform_user_id = v.column9, last_error = v.column10, \
                 last_checked_at = v.column11, \
                 last_success_at = CASE WHEN v.column12 THEN v.column11 ELSE account_health.last_success_at END, \
                 consecutive_failures = CASE WHEN v.column12 THEN 0 ELSE account_health.consecutive_failures + 1 END, \
                 next_check_at = v.column13, refresh_failures = v.column14, last_refresh_error = v.column15, \
                 open_alerts = v.column16, alert_episode = v.column17 FROM (",
            );
            q.push_values(chunk, |mut b, u| {
                b.push_bind(u.account_ref)
                    .push_bind(u.health.as_str())
                    .push_bind(u.token_valid)
                    .push_bind(u.needs_reconnect)
                    .push_bind(u.permissions.as_deref().map(to_json))
                    .push_bind(to_json(&u.missing_permissions))
                    .push_bind(to_json(&u.recommendations))
                    .push_bind(u.data_access_expires_at)
                    .push_bind(&u.platform_user_id)
                    .push_bind(&u.last_error)
                    .push_bind(u.checked_at)
                    .push_bind(u.answered)
                    .push_bind(u.next_check_at)
                    .push_bind(u.refresh_failures)
                    .push_bind(&u.last_refresh_error)
                    .push_bind(to_json(&u.open_alerts))
                    .push_bind(u.alert_episode);
            });
            q.push(") AS v WHERE account_health.account_ref = v.column1");
            q.build().execute(&mut *tx).await?;
        }
        let expiries: Vec<&HealthUpdate> = updates
            .iter()
            .filter(|u| u.token_expires_at != u.previous_token_expires_at)
            .collect();
        for chunk in expiries.chunks(UPDATE_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new("UPDATE accounts SET token_expires_at = v.column2 FROM (");
            q.push_values(chunk, |mut b, u| {
                b.push_bind(u.account_ref).push_bind(u.token_expires_at);
            });
            q.push(") AS v WHERE accounts.id = v.column1");
            q.build().execute(&mut *tx).await?;
        }
        // The alerts these changes raised, in the same transaction, as multi-row inserts (12
        // parameters a row); a key seen before is skipped, and an account deleted while it
        // was being checked raises nothing.
        let alerts: Vec<&NewAlert> = updates.iter().flat_map(|u| &u.alerts).collect();
        for chunk in alerts.chunks(ALERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO alert_outbox (workspace_id, account_ref, dedup_key, kind, severity, platform, account_id, \
                 username, problem, action, created_at, next_attempt_at) \
                 SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, column10, \
                 column11, column11 FROM (",
            );
            q.push_values(chunk, |mut b, a| {
                b.push_bind(a.workspace_id)
                    .push_bind(a.account_ref)
                    .push_bind(&a.dedup_key)
                    .push_bind(&a.kind)
                    .push_bind(a.severity.as_str())
                    .push_bind(a.platform.as_str())
                    .push_bind(&a.account_id)
                    .push_bind(&a.username)
                    .push_bind(&a.problem)
                    .push_bind(&a.action)
                    .push_bind(a.created_at);
            });
            q.push(") AS v WHERE v.column2 IN (SELECT id FROM accounts) ON CONFLICT (dedup_key) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }
        // History rows go in as multi-row inserts: far fewer statements for a large sweep.
        let checked: Vec<&HealthUpdate> = updates.iter().filter(|u| !u.deferred).collect();
        // Rows of accounts deleted while they were being checked are skipped (their history
        // went with them): a DELETE racing a sweep never costs the rest of the batch.
        for chunk in checked.chunks(1000) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO health_history (account_ref, at, event, outcome, health, changed, detail) \
                 SELECT column1, column2, column3, column4, column5, column6, column7 FROM (",
            );
            q.push_values(chunk, |mut b, u| {
                b.push_bind(u.account_ref)
                    .push_bind(u.checked_at)
                    .push_bind("check")
                    .push_bind(u.outcome)
                    .push_bind(u.health.as_str())
                    .push_bind(u.health != u.previous_health)
                    .push_bind(&u.last_error);
            });
            q.push(") AS v WHERE v.column1 IN (SELECT id FROM accounts)");
            q.build().execute(&mut *tx).await?;
        }
        bump_generations(&mut tx, updates.iter().map(|u| u.workspace_id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces an account's tokens after a refresh and records it, in one transaction. Once
    /// this returns, the new tokens are durable; before, nothing may report the refresh.
    pub async fn replace_tokens(&self, r: &TokenReplacement) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(
            "UPDATE credentials SET access_token = $1, refresh_token = COALESCE($2, refresh_token), updated_at = $3 \
             WHERE account_ref = $4",
        )
        .bind(&r.access_token)
        .bind(&r.refresh_token)
        .bind(r.at)
        .bind(r.account_ref)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "UPDATE accounts SET token_expires_at = COALESCE($1, token_expires_at), \
             refresh_expires_at = COALESCE($2, refresh_expires_at), token_issued_at = $3, \
             scopes = COALESCE($4, scopes) WHERE id = $5",
        )
        .bind(r.expires_at)
        .bind(r.refresh_expires_at)
        .bind(r.at)
        .bind(r.scopes.as_deref().map(to_json))
        .bind(r.account_ref)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE account_health SET refresh_failures = 0, last_refresh_error = NULL WHERE account_ref = $1")
            .bind(r.account_ref)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO health_history (account_ref, at, event, outcome, health, changed, detail) \
             VALUES ($1, $2, 'refresh', NULL, $3, FALSE, $4)",
        )
        .bind(r.account_ref)
        .bind(r.at)
        .bind(r.health.as_str())
        .bind(
            r.expires_at
                .map(|t| format!("new token expires {}", crate::domain::rfc3339(t))),
        )
        .execute(&mut *tx)
        .await?;
        bump_generations(&mut tx, [r.workspace_id]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes the refresh lease of an account for `ttl` seconds, unless another holder has
    /// one that has not expired. True when `holder` now holds it.
    pub async fn try_refresh_lease(
        &self,
        account_ref: i64,
        holder: &str,
        now: UnixTime,
        ttl: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "INSERT INTO refresh_leases (account_ref, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (account_ref) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE refresh_leases.expires_at <= $4",
        )
        .bind(account_ref)
        .bind(holder)
        .bind(now.saturating_add(ttl))
        .bind(now)
        .execute(&self.pool)
        .await;
        match r {
            Ok(r) => Ok(r.rows_affected() == 1),
            // The account was deleted meanwhile: nothing to refresh.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(StoreError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives up a refresh lease held by `holder`.
    pub async fn release_refresh_lease(&self, account_ref: i64, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM refresh_leases WHERE account_ref = $1 AND holder = $2")
            .bind(account_ref)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// How many other accounts, in any workspace, on `platforms`, share the Meta user
    /// `platform_user_id` (whose grant a revocation would remove for all of them).
    pub async fn accounts_sharing_user(
        &self,
        platform_user_id: &str,
        platforms: &[Platform],
        except: i64,
    ) -> Result<i64, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT COUNT(*) FROM account_health WHERE account_ref <> ");
        q.push_bind(except)
            .push(" AND platform_user_id = ")
            .push_bind(platform_user_id);
        q.push(" AND platform IN (");
        let mut sep = q.separated(", ");
        for p in platforms {
            sep.push_bind(p.as_str());
        }
        q.push(")");
        let (n,): (i64,) = q.build_query_as().fetch_one(&self.pool).await?;
        Ok(n)
    }

    /// Records a failed automatic refresh in the history.
    pub async fn record_refresh_failure(
        &self,
        account_ref: i64,
        at: UnixTime,
        health: Health,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO health_history (account_ref, at, event, outcome, health, changed, detail) \
             SELECT $1, $2, 'refresh_failed', NULL, $3, FALSE, $4 WHERE EXISTS (SELECT 1 FROM accounts WHERE id = $1)",
        )
        .bind(account_ref)
        .bind(at)
        .bind(health.as_str())
        .bind(detail)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An account's history, newest first.
    pub async fn history(&self, account_ref: i64, limit: i64) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT at, event, outcome, health, changed, detail FROM health_history \
             WHERE account_ref = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(account_ref)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Makes every account due at `at` (benchmarks: a second sweep over the same accounts).
    pub async fn reschedule_all(&self, at: UnixTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE account_health SET next_check_at = $1")
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes history older than `before`; returns how many rows.
    pub async fn prune_history(&self, before: UnixTime) -> Result<u64, StoreError> {
        Ok(sqlx::query("DELETE FROM health_history WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// `platform`'s accounts due for a check at `due_by`, with their sealed credentials
    /// (saving a query per account), oldest first, after `cursor` (the `(next_check_at, id)`
    /// of the last one seen), at most `limit`.
    pub async fn due_accounts(
        &self,
        platform: Platform,
        due_by: UnixTime,
        cursor: Option<(UnixTime, i64)>,
        limit: i64,
    ) -> Result<Vec<(Account, SealedCredentials)>, StoreError> {
        let (t, id) = cursor.unwrap_or((i64::MIN, i64::MIN));
        // One JSON value for the whole page, as in `list_page` (the sealed tokens in hex): a
        // sweep reads every account, and a value at a time through sqlx cost ~5 us a row.
        let sql = concat!(
            "WITH due AS (SELECT h.account_ref AS id FROM account_health h WHERE h.platform = $1 \
             AND h.next_check_at <= $2 AND (h.next_check_at, h.account_ref) > ($3, $4) \
             ORDER BY h.next_check_at, h.account_ref LIMIT $5) \
             SELECT json_group_array(json_array(json_array(",
            account_columns!(as_json),
            "), hex(c.access_token), iif(c.refresh_token IS NULL, NULL, hex(c.refresh_token)))) \
             FROM due d JOIN accounts a ON a.id = d.id JOIN account_health h ON h.account_ref = a.id \
             JOIN credentials c ON c.account_ref = a.id"
        );
        let (json,): (String,) = sqlx::query_as(sql)
            .bind(platform.as_str())
            .bind(due_by)
            .bind(t)
            .bind(id)
            .bind(limit)
            .fetch_one(&self.pool)
            .await?;
        let mut rows: Vec<(AccountRow, String, Option<String>)> = from_json_rows(&json)?;
        rows.sort_by_key(|(a, _, _)| (a.next_check_at, a.id));
        let unhex = |h: &str| hex::decode(h).map_err(|e| StoreError::Db(sqlx::Error::Decode(Box::new(e))));
        rows.into_iter()
            .map(|(a, access, refresh)| {
                let credentials = SealedCredentials {
                    access_token: unhex(&access)?,
                    refresh_token: refresh.as_deref().map(unhex).transpose()?,
                };
                Ok((Account::try_from(a)?, credentials))
            })
            .collect()
    }

    /// Accounts by platform and health, for the `socialsyncer_accounts` gauge.
    pub async fn health_counts(&self, stale_before: UnixTime) -> Result<Vec<(Platform, Health, i64)>, StoreError> {
        let mut q = QueryBuilder::<Sqlite>::new("SELECT a.platform, ");
        push_read_health(&mut q, stale_before);
        q.push(" AS health, COUNT(*) FROM accounts a JOIN account_health h ON h.account_ref = a.id GROUP BY 1, 2");
        let rows: Vec<(String, String, i64)> = q.build_query_as().fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(p, h, n)| Some((p.parse().ok()?, h.parse().ok()?, n)))
            .collect())
    }

    /// What the per-account reconnect series need, for every account.
    pub async fn reconnect_rows(&self) -> Result<Vec<ReconnectRow>, StoreError> {
        #[derive(FromRow)]
        struct Row {
            platform: String,
            account_id: String,
            workspace: String,
            needs_reconnect: bool,
            token_expires_at: Option<i64>,
            refresh_expires_at: Option<i64>,
            data_access_expires_at: Option<i64>,
            refresh_failures: i64,
            has_refresh_token: bool,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT a.platform, a.account_id, w.name AS workspace, h.needs_reconnect, a.token_expires_at, \
             a.refresh_expires_at, h.data_access_expires_at, h.refresh_failures, \
             c.refresh_token IS NOT NULL AS has_refresh_token FROM accounts a \
             JOIN workspaces w ON w.id = a.workspace_id \
             JOIN account_health h ON h.account_ref = a.id JOIN credentials c ON c.account_ref = a.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(ReconnectRow {
                    platform: r.platform.parse().ok()?,
                    account_id: r.account_id,
                    workspace: r.workspace,
                    needs_reconnect: r.needs_reconnect,
                    token_expires_at: r.token_expires_at,
                    refresh_expires_at: r.refresh_expires_at,
                    data_access_expires_at: r.data_access_expires_at,
                    refresh_failing: r.refresh_failures > 0,
                    has_refresh_token: r.has_refresh_token,
                })
            })
            .collect())
    }

    /// Alerts not delivered yet: how many, and when the oldest was raised.
    pub async fn pending_alert_stats(&self) -> Result<(i64, Option<UnixTime>), StoreError> {
        Ok(
            sqlx::query_as("SELECT COUNT(*), MIN(created_at) FROM alert_outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// When the last check of any account ran (the last sweep, after a restart).
    pub async fn last_check_at(&self) -> Result<Option<UnixTime>, StoreError> {
        Ok(sqlx::query_scalar("SELECT MAX(last_checked_at) FROM account_health")
            .fetch_one(&self.pool)
            .await?)
    }

    /// Alerts due for delivery, by workspace then age.
    pub async fn pending_alerts(&self, now: UnixTime, limit: i64) -> Result<Vec<PendingAlert>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT o.id, o.workspace_id, w.name AS workspace, o.kind, o.severity, o.platform, o.account_id, \
             o.username, o.problem, o.action, o.attempts FROM alert_outbox o JOIN workspaces w ON w.id = o.workspace_id \
             WHERE o.sent_at IS NULL AND o.next_attempt_at <= $1 ORDER BY o.workspace_id, o.id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks alerts delivered (`note` says why when they were not sent, e.g. no recipients).
    pub async fn mark_alerts_sent(&self, ids: &[i64], now: UnixTime, note: Option<&str>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query("UPDATE alert_outbox SET sent_at = $1, last_error = $2 WHERE id = $3")
                .bind(now)
                .bind(note)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a failed delivery attempt and when to try again.
    pub async fn mark_alerts_failed(&self, ids: &[i64], error: &str, retry_at: UnixTime) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query(
                "UPDATE alert_outbox SET attempts = attempts + 1, last_error = $1, next_attempt_at = $2 WHERE id = $3",
            )
            .bind(error)
            .bind(retry_at)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Alerts not yet delivered (for metrics and tests).
    pub async fn undelivered_alerts(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM alert_outbox WHERE sent_at IS NULL")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Which recipients already have which of these alerts: (alert ID, recipient).
    pub async fn alert_deliveries(&self, ids: &[i64]) -> Result<Vec<(i64, String)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<Sqlite>::new("SELECT alert_id, recipient FROM alert_deliveries WHERE alert_id IN (");
        let mut sep = q.separated(", ");
        for id in ids {
            sep.push_bind(*id);
        }
        q.push(")");
        Ok(q.build_query_as().fetch_all(&self.pool).await?)
    }

    /// Records that `recipient` has these alerts (or was given up, `note` says why).
    pub async fn record_deliveries(
        &self,
        ids: &[i64],
        recipient: &str,
        now: UnixTime,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for id in ids {
            sqlx::query(
                "INSERT INTO alert_deliveries (alert_id, recipient, delivered_at, note) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (alert_id, recipient) DO NOTHING",
            )
            .bind(id)
            .bind(recipient)
            .bind(now)
            .bind(note)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A workspace's own alert recipients.
    pub async fn recipients(&self, workspace_id: i64) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT email FROM workspace_recipients WHERE workspace_id = $1 ORDER BY email")
                .bind(workspace_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Replaces a workspace's alert recipients.
    pub async fn set_recipients(&self, workspace_id: i64, emails: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM workspace_recipients WHERE workspace_id = $1")
            .bind(workspace_id)
            .execute(&mut *tx)
            .await?;
        for e in emails {
            sqlx::query(
                "INSERT INTO workspace_recipients (workspace_id, email) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(workspace_id)
            .bind(e)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Re-seals every stored token in one `BEGIN IMMEDIATE` transaction: the rows are read
    /// and rewritten under the write lock, so a refresh cannot commit in between and be
    /// overwritten with the old tokens. `reseal` maps the rows read to their new sealed
    /// tokens; an error from it rolls everything back. Returns how many accounts were
    /// re-sealed.
    pub async fn reseal_all<E>(
        &self,
        now: UnixTime,
        reseal: impl FnOnce(Vec<SealedRow>) -> Result<Vec<Resealed>, E>,
    ) -> Result<Result<usize, E>, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<SealedRow> = sqlx::query_as(
            "SELECT a.id, a.workspace_id, a.platform, a.account_id, c.access_token, c.refresh_token \
             FROM accounts a JOIN credentials c ON c.account_ref = a.id ORDER BY a.id",
        )
        .fetch_all(&mut *tx)
        .await?;
        let resealed = match reseal(rows) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        for (id, access, refresh) in &resealed {
            sqlx::query(
                "UPDATE credentials SET access_token = $1, refresh_token = $2, updated_at = $3 WHERE account_ref = $4",
            )
            .bind(access)
            .bind(refresh)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE workspace_generations SET generation = generation + 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(resealed.len()))
    }

    /// How many accounts have sealed credentials.
    pub async fn sealed_count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM credentials")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }

    /// One account by row ID.
    pub async fn account_by_ref(&self, account_ref: i64) -> Result<Option<Account>, StoreError> {
        let sql = format!("{ACCOUNT_SELECT} WHERE a.id = $1");
        let row: Option<AccountRow> = sqlx::query_as(&sql)
            .bind(account_ref)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Account::try_from).transpose()
    }

    /// Registers many accounts in one transaction (benchmarks and imports).
    pub async fn insert_accounts(&self, accounts: &[NewAccount]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for a in accounts {
            insert_account_rows(&mut tx, a).await?;
        }
        bump_generations(&mut tx, accounts.iter().map(|a| a.workspace_id)).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// The three rows of a new account: the account, its credentials, its `unknown` health.
async fn insert_account_rows(tx: &mut sqlx::Transaction<'_, Sqlite>, a: &NewAccount) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO accounts (workspace_id, platform, account_id, username, connected_at, scopes, \
         token_expires_at, token_issued_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(a.workspace_id)
    .bind(a.platform.as_str())
    .bind(a.account_id.as_str())
    .bind(&a.username)
    .bind(a.connected_at)
    .bind(to_json(&a.scopes))
    .bind(a.token_expires_at)
    .bind(a.connected_at)
    .fetch_one(&mut **tx)
    .await
    .map_err(conflict_or)?;
    sqlx::query(
        "INSERT INTO credentials (account_ref, access_token, refresh_token, updated_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id)
    .bind(&a.access_token)
    .bind(&a.refresh_token)
    .bind(a.connected_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query("INSERT INTO account_health (account_ref, platform, next_check_at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(a.platform.as_str())
        .bind(a.connected_at)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}
