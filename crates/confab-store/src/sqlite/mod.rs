//! The embedded SQLite backend (WAL journal, full sync: an acknowledged write survives a
//! crash or kill -9). One file per kind of data, each with its own named migrations.

mod account_data;
mod accounts;
mod offline;
mod roster;

use crate::{Result, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::time::Duration;

/// Every feature's migrations, in order. Names are never reused or edited once released:
/// a schema change is a new entry.
fn migrations() -> Vec<(&'static str, &'static str)> {
    [
        accounts::MIGRATIONS,
        account_data::MIGRATIONS,
        roster::MIGRATIONS,
        offline::MIGRATIONS,
    ]
    .concat()
}

pub struct SqliteDb {
    pool: SqlitePool,
}

impl SqliteDb {
    pub async fn open(path: &Path) -> Result<SqliteDb> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Database(format!("{}: {e}", dir.display())))?;
            }
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        let db = SqliteDb { pool };
        db.migrate().await?;
        Ok(db)
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A transaction that takes the write lock at once. A deferred one that reads first
    /// fails with "database is locked" when another connection wrote in between (the
    /// busy timeout does not apply to that upgrade), so every read-then-write uses this.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (name, sql) in migrations() {
            let mut tx = self.write_tx().await?;
            let done: Option<String> =
                sqlx::query_scalar("SELECT name FROM schema_migrations WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)")
                .bind(name)
                .bind(now())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(migration = name, "applied storage migration");
        }
        Ok(())
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
