//! The one SQL layer: every store trait implemented once, for SQLite, PostgreSQL and
//! MySQL/MariaDB.
//!
//! Why sqlx's `Any` driver rather than code generic over `sqlx::Database` or a query
//! builder: the statements the stores need are few and plain, and differ between the
//! databases in a handful of places (`dialect.rs`), so a builder would add a dependency and a
//! second language for little. Generic code would compile every store three times and carry
//! trait bounds on every function for no gain at run time. `Any` picks the driver from the
//! URL at run time, so each store is written and compiled once; its cost is a copy of each
//! row into driver-neutral values, small beside a round trip to the database, and a narrow
//! type set (integers, text, bytes), which is all the schema uses.
//!
//! Feature logic (the offline quota, roster versions, account deletion) lives here, above the
//! backends. The rule that makes it correct on all three: every transaction that writes an
//! account's data first locks that account's row (`lock_account`), so the writers of one
//! account queue, and read-then-write steps need no stronger isolation level than each
//! database's default. Transactions that still lose to a deadlock or a busy database are
//! run again (`retry!`).

mod account_data;
mod accounts;
mod archive;
pub(crate) mod dialect;
mod offline;
mod room_archive;
mod roster;
mod schema;

use crate::{Backend, Result, StoreError};
use dialect::{Dialect, Lock};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnectionMetadata;
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, ConnectOptions, Connection};
use std::time::Duration;

/// How long opening a database may take before the server gives up with an error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a transaction that lost to a deadlock or a busy database is tried again.
const MAX_ATTEMPTS: u32 = 5;

/// Runs a store operation (an expression awaiting a `Result`) again while it fails with
/// `StoreError::Busy`: a deadlock victim or a serialization failure did nothing, and the
/// database asks for the transaction to be repeated.
macro_rules! retry {
    ($op:expr) => {{
        let mut attempt = 1u32;
        loop {
            match $op {
                Err($crate::StoreError::Busy(_)) if attempt < $crate::sql::max_attempts() => {
                    tokio::time::sleep(std::time::Duration::from_millis(
                        5 * u64::from(attempt * attempt),
                    ))
                    .await;
                    attempt += 1;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retry;

pub(crate) fn max_attempts() -> u32 {
    MAX_ATTEMPTS
}

/// A pool of connections to one database, of any of the three kinds.
pub struct SqlDb {
    pool: AnyPool,
    dialect: Dialect,
}

/// A database's connection options, and what to call it in messages (no password).
struct Target {
    options: AnyConnectOptions,
    dialect: Dialect,
    description: String,
}

fn target(backend: &Backend) -> Result<Target> {
    match backend {
        Backend::Sqlite { path } => {
            if let Some(dir) = path.parent() {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Database(format!("{}: {e}", dir.display())))?;
                }
            }
            // Absolute, because a relative path would reach the driver as a URL's host name
            // (and host names are lower-cased).
            let path = std::path::absolute(path)
                .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
            let url = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .to_url_lossy();
            Ok(Target {
                options: AnyConnectOptions::from_url(&url)?,
                dialect: Dialect::Sqlite,
                description: format!("SQLite database {}", path.display()),
            })
        }
        Backend::Postgres { url } | Backend::Mysql { url } => {
            let dialect = match backend {
                Backend::Postgres { .. } => Dialect::Postgres,
                _ => Dialect::Mysql,
            };
            let options: AnyConnectOptions = url.parse().map_err(|e| {
                StoreError::Database(format!("storage url for {}: {e}", dialect.name()))
            })?;
            let u = &options.database_url;
            let description = format!(
                "{} at {}:{}{}",
                dialect.name(),
                u.host_str().unwrap_or("localhost"),
                u.port().map_or_else(
                    || match dialect {
                        Dialect::Postgres => "5432".to_string(),
                        _ => "3306".to_string(),
                    },
                    |p| p.to_string()
                ),
                u.path()
            );
            Ok(Target {
                options,
                dialect,
                description,
            })
        }
    }
}

/// Settings every new connection gets before it is used.
async fn prepare(conn: &mut AnyConnection, dialect: Dialect) -> sqlx::Result<()> {
    let statements: &[&'static str] = match dialect {
        // WAL and full sync: an acknowledged write survives a crash or kill -9. The busy
        // timeout lets writers queue for the write lock instead of failing. LIKE is
        // case-sensitive, as in the other two with their collations (account search).
        Dialect::Sqlite => &[
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = FULL",
            "PRAGMA foreign_keys = ON",
            "PRAGMA busy_timeout = 10000",
            "PRAGMA case_sensitive_like = ON",
        ],
        Dialect::Postgres => &[],
        // ANSI_QUOTES: identifiers in double quotes as in the other two ("key" is reserved
        // in MySQL). Strict mode: a value too long is an error, never silently truncated.
        // READ COMMITTED: no gap locks, so writers of different accounts do not deadlock
        // on neighbouring index entries (one account's writers queue on its row anyway).
        Dialect::Mysql => &[
            "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,STRICT_ALL_TABLES')",
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            "SET NAMES utf8mb4",
        ],
    };
    for s in statements {
        sqlx::query(*s).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The binary, non-padding utf8mb4 collation of this MySQL or MariaDB server.
async fn mysql_binary_collation(conn: &mut AnyConnection) -> Result<&'static str> {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    Ok(if version.contains("MariaDB") {
        "utf8mb4_nopad_bin"
    } else if major >= 8 {
        "utf8mb4_0900_bin"
    } else {
        // MySQL 5.7 has no binary collation without padding: `a` and `a ` compare equal
        // there (the unique keys, hashes of the bytes, still tell them apart).
        "utf8mb4_bin"
    })
}

/// One connection to the database, prepared, or an error that names the database (never
/// its password). Bounded by `CONNECT_TIMEOUT`, so a database that does not answer is an
/// error rather than a hang.
async fn connect_one(target: &Target) -> Result<AnyConnection> {
    let description = &target.description;
    let connect = AnyConnection::connect_with(&target.options);
    let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| {
            StoreError::Database(format!(
                "cannot connect to {description}: no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| StoreError::Database(format!("cannot connect to {description}: {e}")))?;
    prepare(&mut conn, target.dialect).await?;
    Ok(conn)
}

/// Applies the migrations the database lacks, on a connection of its own.
pub(crate) async fn migrate_backend(backend: &Backend) -> Result<Vec<&'static str>> {
    sqlx::any::install_default_drivers();
    let target = target(backend)?;
    let mut conn = connect_one(&target).await?;
    let applied = migrate(&mut conn, target.dialect).await;
    let _ = conn.close().await;
    applied
}

/// The applied and pending migrations, changing nothing.
pub(crate) async fn migration_status(backend: &Backend) -> Result<crate::MigrationStatus> {
    let all = |dialect: Dialect| schema::migrations(dialect).iter().map(|(n, _)| *n);
    // Connecting would create the file: a database that does not exist lacks everything.
    if let Backend::Sqlite { path } = backend {
        if !path.exists() {
            return Ok(crate::MigrationStatus {
                applied: Vec::new(),
                pending: all(Dialect::Sqlite).collect(),
            });
        }
    }
    sqlx::any::install_default_drivers();
    let target = target(backend)?;
    let dialect = target.dialect;
    let mut conn = connect_one(&target).await?;
    let applied = applied_migrations(&mut conn, dialect).await;
    let _ = conn.close().await;
    let applied = applied?;
    let pending = all(dialect)
        .filter(|n| !applied.iter().any(|a| a == n))
        .collect();
    Ok(crate::MigrationStatus { applied, pending })
}

/// The names recorded in `schema_migrations`, oldest first; none when the table does not
/// exist yet (a new database).
async fn applied_migrations(conn: &mut AnyConnection, dialect: Dialect) -> Result<Vec<String>> {
    let exists: i64 = sqlx::query_scalar(AssertSqlSafe(dialect.sql(dialect.table_exists())))
        .bind("schema_migrations")
        .fetch_one(&mut *conn)
        .await?;
    if exists == 0 {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT name FROM schema_migrations ORDER BY applied_at, name")
            .fetch_all(&mut *conn)
            .await?,
    )
}

impl SqlDb {
    /// Connects, applies the migrations this database lacks, and opens a pool with these
    /// options. A database that cannot be reached is an error that names it.
    pub async fn open(backend: &Backend, pool: &crate::PoolOptions) -> Result<SqlDb> {
        sqlx::any::install_default_drivers();
        let target = target(backend)?;
        // One connection first: a database that is down gives its error at once, rather
        // than after the pool's acquire timeout, and the migrations run on it.
        let mut conn = connect_one(&target).await?;
        migrate(&mut conn, target.dialect).await?;
        conn.close().await?;
        let Target {
            options,
            dialect,
            description,
        } = target;
        // The acquire timeout bounds every wait for a connection, including the pings of
        // idle connections and reconnecting after the database went away: while it is
        // down, a request fails after this long instead of hanging. Broken connections are
        // found by the ping before use and replaced, so the pool recovers by itself.
        let pool_size = pool.size.max(1);
        // SQLite's connections are a file opened in this process: nothing between here and
        // the file can break them, and the ping before each use was one more round trip to
        // the connection's thread per statement (a login makes about a dozen).
        let test_before_acquire = dialect != Dialect::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(pool_size)
            .acquire_timeout(pool.acquire_timeout)
            .test_before_acquire(test_before_acquire)
            .after_connect(move |conn: &mut AnyConnection, _: PoolConnectionMetadata| {
                Box::pin(async move { prepare(conn, dialect).await })
            })
            .connect_lazy_with(options);
        tracing::info!(database = %description, pool_size, "storage opened");
        Ok(SqlDb { pool, dialect })
    }

    /// A statement written with `?` placeholders, in this database's form.
    fn query(&self, sql: &str) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
        sqlx::query(AssertSqlSafe(self.dialect.sql(sql)))
    }

    /// Deletes up to `limit` rows of `table` stamped before `stamp`, first in `order`
    /// (the archives' expiry). Bounded batches keep each transaction (and its locks) small.
    async fn expire_rows(
        &self,
        table: &'static str,
        order: &'static str,
        stamp: i64,
        limit: usize,
    ) -> Result<u64> {
        let sql = match self.dialect {
            // MySQL takes no LIMIT in an IN subquery, but one on DELETE itself.
            Dialect::Mysql => {
                format!("DELETE FROM {table} WHERE stamp < ? ORDER BY {order} LIMIT ?")
            }
            _ => format!(
                "DELETE FROM {table} WHERE id IN
                 (SELECT id FROM {table} WHERE stamp < ? ORDER BY {order} LIMIT ?)"
            ),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let r = retry!(self
            .query(&sql)
            .bind(stamp)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(r.rows_affected())
    }

    fn query_scalar<O>(
        &self,
        sql: &str,
    ) -> sqlx::query::QueryScalar<'static, Any, O, sqlx::any::AnyArguments>
    where
        O: Send + Unpin,
        (O,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_scalar(AssertSqlSafe(self.dialect.sql(sql)))
    }

    /// A transaction that will write.
    async fn write_tx(&self) -> Result<sqlx::Transaction<'static, Any>> {
        Ok(match self.dialect.begin_write() {
            Some(begin) => self.pool.begin_with(begin).await?,
            None => self.pool.begin().await?,
        })
    }

    /// Locks the account's row until the transaction ends (see the module comment); false
    /// if there is no such account.
    async fn lock_account(
        &self,
        tx: &mut AnyConnection,
        domain: &str,
        username: &str,
        lock: Lock,
    ) -> Result<bool> {
        let sql = format!(
            "SELECT 1 FROM accounts WHERE domain = ? AND username = ?{}",
            self.dialect.lock_clause(lock)
        );
        let found: Option<i64> = self
            .query_scalar(&sql)
            .bind(domain)
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        Ok(found.is_some())
    }
}

/// Applies, in order, each migration not yet recorded in `schema_migrations`, each in its
/// own transaction with its record; returns the names applied.
async fn migrate(conn: &mut AnyConnection, dialect: Dialect) -> Result<Vec<&'static str>> {
    let collation = match dialect {
        Dialect::Mysql => mysql_binary_collation(conn).await?,
        _ => "",
    };
    let with_collation = |sql: &str| sql.replace("{bin}", collation);
    sqlx::query(AssertSqlSafe(with_collation(schema::migrations_table(
        dialect,
    ))))
    .execute(&mut *conn)
    .await?;
    let mut applied = Vec::new();
    for (name, sql) in schema::migrations(dialect) {
        let mut tx = match dialect.begin_write() {
            Some(begin) => conn.begin_with(begin).await?,
            None => conn.begin().await?,
        };
        let done: Option<String> = sqlx::query_scalar(AssertSqlSafe(
            dialect.sql("SELECT name FROM schema_migrations WHERE name = ?"),
        ))
        .bind(*name)
        .fetch_optional(&mut *tx)
        .await?;
        if done.is_some() {
            continue;
        }
        for statement in schema::statements(sql) {
            sqlx::raw_sql(AssertSqlSafe(with_collation(statement)))
                .execute(&mut *tx)
                .await
                .map_err(|e| StoreError::Database(format!("migration {name}: {e}")))?;
        }
        sqlx::query(AssertSqlSafe(dialect.sql(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
        )))
        .bind(*name)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(
            migration = name,
            backend = dialect.name(),
            "applied storage migration"
        );
        applied.push(*name);
    }
    Ok(applied)
}

/// Whether the database asks for the transaction to be run again: a deadlock victim, a
/// serialization failure (SQLSTATE 40001, 40P01), or SQLite's busy/locked.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("40001" | "40P01" | "5" | "6" | "261" | "517")
        ),
        _ => false,
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
