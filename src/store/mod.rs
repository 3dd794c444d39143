//! Every SQL statement of the project, one file per aggregate: `workspaces` (and keys and
//! recipients), `accounts`, `credentials`, `checks` (what sweeps read and write), `history`,
//! `alerts` (the outbox); `types` holds the rows. The transaction that records a batch of
//! checks calls into `history` and `alerts` inside itself.
//!
//! This module is the backend seam: callers see [`Store`] and its row types, never a pool or
//! a driver type. Two backends sit behind it, SQLite (one file, one daemon) and PostgreSQL
//! (several daemons sharing the work), chosen by the URL's scheme. SQL is kept portable
//! (`$N` placeholders, `RETURNING`, BIGINT Unix seconds, `VALUES` columns named `columnN`,
//! JSON lists as TEXT): a method's body is written once and compiled for each backend by
//! [`with_db!`]; only the statements that must differ (SQLite's one-JSON-value pages,
//! PostgreSQL's `FOR UPDATE SKIP LOCKED` claims, locking) match on the backend.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Database, Encode, FromRow, PgPool, QueryBuilder, SqlitePool, Type};

use crate::domain::{
    AccountId, AccountRef, AlertKind, CheckLabel, Custody, Health, HistoryEvent, InstagramLogin, Platform, UnixTime,
    WebhookFormat, WorkspaceId,
};

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
    /// The database's token key changed under this process (`rotate-token-key` ran): it
    /// seals with a key the database no longer names, and refuses to.
    #[error(
        "the token key was rotated while this daemon ran: it refuses to seal with the old key; restart it with the new key file"
    )]
    KeyChanged,
    /// A task doing the work failed (it panicked).
    #[error("internal error: {0}")]
    Task(String),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// Whether `e` is a deadlock or a serialization failure: PostgreSQL rolled the transaction
/// back, and running it again is the remedy.
fn retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Db(sqlx::Error::Database(d)) if matches!(d.code().as_deref(), Some("40P01" | "40001")))
}

/// Runs the transaction `f` makes, again (up to three times more, after a short pause) when
/// the database rolled it back for a deadlock: the rows are locked in one order everywhere
/// (health, then account), and this covers what no order can (a peer's statement locking
/// rows of a whole workspace).
async fn retrying<T, Fut>(mut f: impl FnMut() -> Fut) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Err(e) if retryable(&e) && attempt < 3 => {
                attempt += 1;
                tracing::debug!(attempt, error = %e, "a transaction met a deadlock; running it again");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt))).await;
            }
            r => return r,
        }
    }
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
    backend: Backend,
    /// The fingerprint of the token key this process seals with, once bound
    /// ([`Store::bind_token_key`]): every write of sealed data checks, in its transaction,
    /// that the database still names that key.
    key: Arc<std::sync::OnceLock<String>>,
}

/// The database behind a [`Store`]. Callers never see it.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool and the type `Db` to its sqlx
/// database: the body is compiled once per backend, so one statement serves both.
macro_rules! with_db {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => {
                #[allow(dead_code)]
                type Db = sqlx::Sqlite;
                $body
            }
            Backend::Postgres($pool) => {
                #[allow(dead_code)]
                type Db = sqlx::Postgres;
                $body
            }
        }
    };
}

/// Pushes the health as read now ([`crate::health::READ_HEALTH_SQL`]) with `stale_before` bound.
fn push_read_health<DB: Database>(q: &mut QueryBuilder<DB>, stale_before: UnixTime)
where
    for<'t> UnixTime: Encode<'t, DB> + Type<DB>,
{
    let (head, tail) = crate::health::READ_HEALTH_SQL
        .split_once("$stale_before")
        .unwrap_or((crate::health::READ_HEALTH_SQL, ""));
    q.push(head).push_bind(stale_before).push(tail);
}

/// Inside a transaction `$tx` that writes sealed data, after the write (which on
/// PostgreSQL waits for a `rotate-token-key` holding the tables): fails with
/// [`StoreError::KeyChanged`] if the database no longer names the key this process seals with.
macro_rules! check_token_key {
    ($store:expr, $tx:expr) => {
        if let Some(fp) = $store.key.get() {
            let stored: Option<String> = sqlx::query_scalar("SELECT fingerprint FROM token_key WHERE id = 1")
                .fetch_optional(&mut *$tx)
                .await?;
            if stored.as_deref().is_some_and(|s| s != fp.as_str()) {
                return Err(StoreError::KeyChanged);
            }
        }
    };
}

/// Bumps the generation of each of `$workspaces` (duplicates are bumped once, in order, so
/// that concurrent transactions never wait on each other in a cycle) inside the transaction
/// `$tx`: every write to a workspace's accounts or their health does this in its own
/// transaction.
macro_rules! bump_generations {
    ($tx:expr, $workspaces:expr) => {{
        let mut ws: Vec<WorkspaceId> = $workspaces.into_iter().collect();
        ws.sort_unstable();
        ws.dedup();
        for w in ws {
            sqlx::query(
                "INSERT INTO workspace_generations (workspace_id, generation) VALUES ($1, 1) \
                 ON CONFLICT (workspace_id) DO UPDATE SET generation = workspace_generations.generation + 1",
            )
            .bind(w)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

#[macro_use]
mod types;
#[macro_use]
mod alerts;
#[macro_use]
pub(crate) mod history;
mod accounts;
mod audit;
pub use audit::{AuditEvent, NewAuditEvent};
mod checks;
mod connect;
pub use connect::ConnectSession;
mod copy;
mod counts;
mod events;
mod status;
mod status_links;
pub use events::{EventFilter, EventRow};
pub use history::{PRUNE_HOLD, Pruned};
pub use status::{StatusOverview, WorkspaceCounts};
pub use status_links::StatusLinkInfo;
mod credentials;
mod instances;
pub use instances::LIVE_WITHIN;
mod webhooks;
mod workspaces;

pub use crate::domain::PendingAlert;
pub use crate::domain::{Account, HealthState};
pub use types::*;
pub use webhooks::{NewWebhook, ReceiverStatus, WebhookRow};

impl Store {
    /// The generation of a workspace's accounts and health: it changes with every write to
    /// them, by this process or any other on the database.
    pub async fn generation(&self, workspace_id: WorkspaceId) -> Result<i64, StoreError> {
        with_db!(self, |pool| Ok(sqlx::query_scalar(
            "SELECT generation FROM workspace_generations WHERE workspace_id = $1"
        )
        .bind(workspace_id)
        .fetch_optional(pool)
        .await?
        .unwrap_or(0)))
    }

    /// Opens (creating if needed) the SQLite file with WAL, `synchronous=NORMAL`, a busy
    /// timeout and foreign keys on.
    pub async fn open_sqlite(path: &Path, busy_timeout: Duration, max_connections: u32) -> Result<Store, StoreError> {
        let d = crate::config::DatabaseConfig::default();
        Store::open_sqlite_with(
            path,
            busy_timeout,
            max_connections,
            d.sqlite_cache_mib,
            d.sqlite_memory_mib,
        )
        .await
    }

    /// [`Store::open_sqlite`] with a page cache of `cache_mib` MiB a connection, and SQLite's
    /// memory in the whole process bounded near `memory_mib` MiB (0: unbounded).
    pub async fn open_sqlite_with(
        path: &Path,
        busy_timeout: Duration,
        max_connections: u32,
        cache_mib: u32,
        memory_mib: u32,
    ) -> Result<Store, StoreError> {
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
            // A sweep touches every row: each connection keeps `cache_mib` of it
            // (`database.sqlite_cache_mib`); the rest comes from the OS's file cache.
            .pragma("cache_size", format!("-{}", u64::from(cache_mib.max(1)) * 1024))
            .pragma("temp_store", "MEMORY")
            // All connections' caches and statements together: near this, caches reuse
            // their pages instead of growing (`database.sqlite_memory_mib`; the limit is
            // SQLite's, for the process, and each connection sets the same one). At 100,000
            // accounts 32 MiB took 23-31 MiB off the sweep's peak RSS, and at a million the
            // default of 16 took 26 MiB more (bench scale).
            .pragma("soft_heap_limit", (u64::from(memory_mib) << 20).to_string())
            // Rows cross from SQLite's thread in larger runs: a sweep's page of due accounts
            // (thousands of rows) then costs a few thread wake-ups instead of one per 50 rows.
            .row_buffer_size(1024);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(opts)
            .await?;
        Ok(Store {
            backend: Backend::Sqlite(pool),
            key: Arc::default(),
        })
    }

    /// Connects to a PostgreSQL database (`postgres://` URL; `password`, when given, replaces
    /// any password in it).
    pub async fn open_postgres(
        url: &str,
        password: Option<&str>,
        acquire_timeout: Duration,
        max_connections: u32,
    ) -> Result<Store, StoreError> {
        let mut opts: PgConnectOptions = url.parse()?;
        if let Some(p) = password {
            opts = opts.password(p);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(opts.application_name("socialsyncer"))
            .await?;
        Ok(Store {
            backend: Backend::Postgres(pool),
            key: Arc::default(),
        })
    }

    /// `"sqlite"` or `"postgres"`, for messages.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Whether several daemons may share this database (PostgreSQL): sweeps and deliveries
    /// then claim their work.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Applies pending migrations (each backend has its own; PostgreSQL's migrator holds an
    /// advisory lock, so daemons starting together apply them once).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(p) => sqlx::migrate!("./migrations/sqlite").run(p).await?,
            Backend::Postgres(p) => sqlx::migrate!("./migrations/postgres").run(p).await?,
        }
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        with_db!(self, |pool| pool.close().await)
    }

    /// Binds this process to the token key whose fingerprint is `fingerprint`: the database
    /// records it if it names no key yet; a database that names another key is refused
    /// ([`StoreError::KeyChanged`]). From then on every write of sealed data checks it.
    pub async fn bind_token_key(&self, fingerprint: &str) -> Result<(), StoreError> {
        let stored = self.token_key_fingerprint_or(fingerprint).await?;
        if stored != fingerprint {
            return Err(StoreError::KeyChanged);
        }
        let _ = self.key.set(fingerprint.to_owned());
        Ok(())
    }

    /// The fingerprint the database names, recording `fingerprint` if it names none.
    pub async fn token_key_fingerprint_or(&self, fingerprint: &str) -> Result<String, StoreError> {
        with_db!(self, |pool| {
            sqlx::query("INSERT INTO token_key (id, fingerprint) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
                .bind(fingerprint)
                .execute(pool)
                .await?;
            Ok(sqlx::query_scalar("SELECT fingerprint FROM token_key WHERE id = 1")
                .fetch_one(pool)
                .await?)
        })
    }

    /// Whether the database still names the key this process bound (true when none is bound).
    pub async fn token_key_current(&self) -> Result<bool, StoreError> {
        let Some(fp) = self.key.get() else { return Ok(true) };
        with_db!(self, |pool| {
            let stored: Option<String> = sqlx::query_scalar("SELECT fingerprint FROM token_key WHERE id = 1")
                .fetch_optional(pool)
                .await?;
            Ok(stored.is_none_or(|s| s == *fp))
        })
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        with_db!(self, |pool| sqlx::query("SELECT 1").execute(pool).await.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database error with an SQLSTATE, as PostgreSQL reports one.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "sqlstate {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn failure(code: &'static str) -> StoreError {
        StoreError::Db(sqlx::Error::Database(Box::new(Coded(code))))
    }

    #[tokio::test]
    async fn a_deadlocked_transaction_runs_again_and_other_errors_do_not() {
        let mut runs = 0;
        let r = retrying(|| {
            runs += 1;
            let n = runs;
            async move { if n < 3 { Err(failure("40P01")) } else { Ok(n) } }
        })
        .await;
        assert_eq!(r.unwrap(), 3, "two deadlocks, then it went through");
        let mut runs = 0;
        let r: Result<(), _> = retrying(|| {
            runs += 1;
            async { Err(failure("23505")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(runs, 1, "a unique violation is not retried");
        let mut runs = 0;
        let r: Result<(), _> = retrying(|| {
            runs += 1;
            async { Err(failure("40001")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(runs, 4, "at most three more runs");
    }

    /// Issue 27: SQLite's memory is bounded for the process (`database.sqlite_memory_mib`),
    /// and each connection asks for its page cache. Every store of this test process is
    /// opened with the defaults, so the process-wide limit read back is theirs.
    #[tokio::test]
    async fn a_sqlite_connection_bounds_the_memory_of_all_of_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("m.db"), Duration::from_secs(5), 2)
            .await
            .unwrap();
        let Backend::Sqlite(pool) = &store.backend else {
            unreachable!()
        };
        let d = crate::config::DatabaseConfig::default();
        let limit: i64 = sqlx::query_scalar("PRAGMA soft_heap_limit")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(limit, i64::from(d.sqlite_memory_mib) << 20);
        assert_eq!(d.sqlite_memory_mib, 16);
        let cache: i64 = sqlx::query_scalar("PRAGMA cache_size").fetch_one(pool).await.unwrap();
        assert_eq!(
            cache,
            -i64::from(d.sqlite_cache_mib) * 1024,
            "a negative cache_size is in KiB"
        );
    }
}
