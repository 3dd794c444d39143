//! Every SQL statement of the project, one file per aggregate: `workspaces` (and keys and
//! recipients), `accounts`, `credentials`, `checks` (what sweeps read and write), `history`,
//! `alerts` (the outbox); `types` holds the rows. The transaction that records a batch of
//! checks calls into `history` and `alerts` inside itself.
//!
//! This module is the backend seam: callers see [`Store`] and its row types, never a pool or
//! a driver type, so a PostgreSQL backend is added here beside SQLite without touching them.
//! SQL is kept portable (`$N` placeholders, `RETURNING`, BIGINT Unix seconds, `VALUES`
//! columns named `columnN`) so that it can reuse most statements.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::{FromRow, QueryBuilder, Sqlite, SqlitePool};

use crate::crypto;
use crate::domain::{AccountId, AccountRef, Health, Platform, UnixTime, WorkspaceId};

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
    backend: Backend,
}

/// The database behind a [`Store`]. SQLite is the only one for now; a PostgreSQL pool joins
/// it as a second variant, and the statements that differ match on it. Callers never see it.
#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqlitePool),
}

impl Store {
    /// The SQLite pool (every statement today).
    fn pool(&self) -> &SqlitePool {
        match &self.backend {
            Backend::Sqlite(p) => p,
        }
    }
}

/// Pushes the health as read now ([`crate::health::READ_HEALTH_SQL`]) with `stale_before` bound.
fn push_read_health(q: &mut QueryBuilder<Sqlite>, stale_before: UnixTime) {
    let (head, tail) = crate::health::READ_HEALTH_SQL
        .split_once("$stale_before")
        .unwrap_or((crate::health::READ_HEALTH_SQL, ""));
    q.push(head).push_bind(stale_before).push(tail);
}

/// Bumps the generation of each of `workspaces` (duplicates are bumped once) inside `tx`:
/// every write to a workspace's accounts or their health calls this in its own transaction.
async fn bump_generations(
    tx: &mut sqlx::Transaction<'_, Sqlite>,
    workspaces: impl IntoIterator<Item = WorkspaceId>,
) -> Result<(), StoreError> {
    let mut ws: Vec<WorkspaceId> = workspaces.into_iter().collect();
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

#[macro_use]
mod types;
mod accounts;
mod alerts;
mod checks;
mod credentials;
mod history;
mod webhooks;
mod workspaces;

pub use crate::alerts::NewAlert;
pub use crate::domain::{Account, HealthState};
pub use types::*;
pub use webhooks::{NewWebhook, ReceiverStatus, WebhookRow};

impl Store {
    /// The generation of a workspace's accounts and health: it changes with every write to
    /// them, by this process or any other on the database.
    pub async fn generation(&self, workspace_id: WorkspaceId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM workspace_generations WHERE workspace_id = $1")
                .bind(workspace_id)
                .fetch_optional(self.pool())
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
        Ok(Store {
            backend: Backend::Sqlite(pool),
        })
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("./migrations").run(self.pool()).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool().close().await;
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(self.pool()).await.is_ok()
    }
}
