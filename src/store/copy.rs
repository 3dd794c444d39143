//! Copying a whole database into an empty one of the other backend (`socialsyncer migrate
//! --from sqlite://... --to postgres://...`): every table, rows as they are (IDs kept, so
//! sealed tokens, whose sealing binds the workspace ID, open with the same key).

use super::*;

/// The tables to copy, parents before children. Heartbeats, refresh leases and platform
/// holds belong to running daemons and are not copied.
const TABLES: [&str; 15] = [
    "workspaces",
    "api_keys",
    "accounts",
    "credentials",
    "account_health",
    "health_history",
    "health_transitions",
    "alert_outbox",
    "alert_deliveries",
    "workspace_recipients",
    "workspace_generations",
    "webhooks",
    "receiver_status",
    "workspace_limits",
    "status_links",
];

/// Rows per INSERT (PostgreSQL takes at most 65,535 parameters a statement).
const COPY_CHUNK: usize = 500;

/// A column's value, read from SQLite by the target column's type.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(Option<bool>),
}

impl Store {
    /// Copies every row of this SQLite database into `target`, an empty PostgreSQL database
    /// with its migrations applied, in one transaction on the target: all or nothing.
    /// `progress` is told each table and its row count. Returns the rows copied.
    pub async fn copy_into(&self, target: &Store, mut progress: impl FnMut(&str, usize)) -> Result<usize, StoreError> {
        use sqlx::Row;
        let (Backend::Sqlite(from), Backend::Postgres(to)) = (&self.backend, &target.backend) else {
            return Err(StoreError::Db(sqlx::Error::Configuration(
                "copies go from a SQLite database to a PostgreSQL one".into(),
            )));
        };
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspaces")
            .fetch_one(to)
            .await?;
        if existing > 0 {
            return Err(StoreError::Conflict);
        }
        let mut tx = to.begin().await?;
        let mut total = 0;
        for table in TABLES {
            // The target's columns and types decide how each SQLite value is read.
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await?;
            let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
            let select = format!("SELECT {} FROM {table}", names.join(", "));
            let rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch_all(from).await?;
            progress(table, rows.len());
            for chunk in rows.chunks(COPY_CHUNK) {
                let mut values = Vec::with_capacity(chunk.len());
                for row in chunk {
                    let mut v = Vec::with_capacity(columns.len());
                    for (i, (_, ty)) in columns.iter().enumerate() {
                        v.push(match ty.as_str() {
                            "bigint" | "integer" => Value::Int(row.try_get(i)?),
                            "bytea" => Value::Bytes(row.try_get(i)?),
                            "boolean" => Value::Bool(row.try_get(i)?),
                            _ => Value::Text(row.try_get(i)?),
                        });
                    }
                    values.push(v);
                }
                let mut q = QueryBuilder::<sqlx::Postgres>::new(format!("INSERT INTO {table} ({}) ", names.join(", ")));
                q.push_values(values, |mut b, row| {
                    for v in row {
                        match v {
                            Value::Int(x) => b.push_bind(x),
                            Value::Text(x) => b.push_bind(x),
                            Value::Bytes(x) => b.push_bind(x),
                            Value::Bool(x) => b.push_bind(x),
                        };
                    }
                });
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            total += rows.len();
            // Identity columns continue after the copied IDs.
            if names.contains(&"id") {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                )))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(total)
    }
}
