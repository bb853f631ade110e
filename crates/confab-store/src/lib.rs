//! Storage for Confab: one trait per kind of data, and their SQL implementation.
//!
//! Callers hold `Arc<dyn ...Store>` trait objects. One SQL layer (`sql/`) implements them for
//! SQLite, PostgreSQL and MySQL/MariaDB: the statements are written once, what differs between
//! the databases is in `sql/dialect.rs` (statements) and `sql/schema.rs` (tables, one migration
//! list per backend).
//!
//! **Architecture invariant:** the store knows accounts and their data, never sessions or
//! connections.

pub mod account_data;
mod accounts;
pub mod archive;
pub mod offline;
pub mod room_archive;
pub mod roster;
mod sql;
pub mod write_behind;

pub use account_data::{AccountDataWrite, DataStore};
pub use accounts::{AccountQuery, AccountSearch, AccountStore};
pub use archive::{ArchivePage, ArchiveQuery, ArchiveStore, ArchivedMessage};
pub use offline::{OfflineMessage, OfflineStore};
pub use room_archive::{RoomArchiveStore, RoomMessage};
pub use roster::{RosterItem, RosterStore, Subscription};
use std::sync::Arc;
pub use write_behind::WriteBehind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("already exists")]
    Conflict,
    #[error("database: {0}")]
    Database(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// A write to the data of an account that does not exist.
    #[error("no such account")]
    NoAccount,
    /// The database gave up on the transaction (a deadlock, a serialization failure, a
    /// busy database) after it was tried again a few times; nothing was written.
    #[error("database busy: {0}")]
    Busy(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if sql::is_transient(&e) {
            StoreError::Busy(e.to_string())
        } else {
            StoreError::Database(e.to_string())
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Every store the server uses, opened from one configuration.
#[derive(Clone)]
pub struct Stores {
    pub accounts: Arc<dyn AccountStore>,
    pub data: Arc<dyn DataStore>,
    pub roster: Arc<dyn RosterStore>,
    pub offline: Arc<dyn OfflineStore>,
    pub archive: Arc<dyn ArchiveStore>,
    pub room_archive: Arc<dyn RoomArchiveStore>,
}

/// Which database to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite database file (created if missing), WAL mode.
    Sqlite { path: std::path::PathBuf },
    /// A PostgreSQL database: `postgres://user:password@host:port/database`.
    Postgres { url: String },
    /// A MySQL or MariaDB database: `mysql://user:password@host:port/database`.
    Mysql { url: String },
}

impl Backend {
    /// The backend a storage URL names: `sqlite://path` (or `sqlite:path`), `postgres://…`
    /// (`postgresql://…`), `mysql://…` (`mariadb://…`).
    pub fn from_url(url: &str) -> std::result::Result<Backend, String> {
        if let Some(rest) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if rest.is_empty() || rest.contains('?') {
                return Err(format!(
                    "'{url}': a SQLite URL is sqlite://PATH (no parameters)"
                ));
            }
            return Ok(Backend::Sqlite { path: rest.into() });
        }
        let scheme = url.split_once("://").map(|(s, _)| s);
        match scheme {
            Some("postgres" | "postgresql") => Ok(Backend::Postgres { url: url.into() }),
            Some("mysql" | "mariadb") => Ok(Backend::Mysql { url: url.into() }),
            _ => Err(
                "the storage URL must start with sqlite://, postgres:// or mysql://".to_string(),
            ),
        }
    }

    /// The kind of database, for messages: `SQLite`, `PostgreSQL` or `MySQL/MariaDB`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite { .. } => "SQLite",
            Backend::Postgres { .. } => "PostgreSQL",
            Backend::Mysql { .. } => "MySQL/MariaDB",
        }
    }

    /// The URL to show an operator: the password, in the user part or a `password`
    /// parameter, replaced by `***` (so it is clear one is set, never what it is).
    pub fn display_url(&self) -> String {
        match self {
            Backend::Sqlite { path } => format!("sqlite://{}", path.display()),
            Backend::Postgres { url } | Backend::Mysql { url } => redact_url(url),
        }
    }

    /// The pool size used when the configuration names none: SQLite has one writer at a
    /// time, so a few connections suffice; a database server serves more at once.
    pub fn default_pool_size(&self) -> u32 {
        match self {
            Backend::Sqlite { .. } => 4,
            Backend::Postgres { .. } | Backend::Mysql { .. } => 10,
        }
    }
}

/// `url` with the password of its user part and of a `password=` parameter replaced by `***`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    // The last `@` ends the user part: a password may itself contain `@` when not encoded.
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_string(),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// How the pool of connections behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections open at once.
    pub size: u32,
    /// How long a request waits for a connection (including opening a new one) before it
    /// fails. Bounded, so that while the database is unreachable a request gets an error
    /// reply rather than hanging.
    pub acquire_timeout: std::time::Duration,
}

impl PoolOptions {
    /// The default for a backend: its default pool size, a 10 s acquire timeout.
    pub fn for_backend(backend: &Backend) -> PoolOptions {
        PoolOptions {
            size: backend.default_pool_size(),
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// The default `PoolOptions::acquire_timeout`.
pub const DEFAULT_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The migrations of a database: those recorded as applied, and those this version of
/// Confab would apply (in order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: Vec<String>,
    pub pending: Vec<&'static str>,
}

/// What `confabd migrate --dry-run` reports: the migrations the database has and lacks.
/// Changes nothing (a SQLite file that does not exist yet is not created).
pub async fn migration_status(backend: &Backend) -> Result<MigrationStatus> {
    sql::migration_status(backend).await
}

/// Applies the migrations the database lacks (as the server does at start); returns their
/// names, in the order applied.
pub async fn migrate(backend: &Backend) -> Result<Vec<&'static str>> {
    sql::migrate_backend(backend).await
}

impl Stores {
    /// Opens the backend with its default pool options.
    pub async fn open(backend: &Backend) -> Result<Stores> {
        Self::open_with(backend, &PoolOptions::for_backend(backend)).await
    }

    /// Opens the database with at most `pool_size` connections.
    pub async fn open_with_pool(backend: &Backend, pool_size: u32) -> Result<Stores> {
        let options = PoolOptions {
            size: pool_size,
            ..PoolOptions::for_backend(backend)
        };
        Self::open_with(backend, &options).await
    }

    /// Opens the database (applying its migrations) with these pool options. A database
    /// that cannot be reached is an error naming it, never a panic.
    pub async fn open_with(backend: &Backend, pool: &PoolOptions) -> Result<Stores> {
        let db = Arc::new(sql::SqlDb::open(backend, pool).await?);
        Ok(Stores {
            accounts: db.clone(),
            data: db.clone(),
            roster: db.clone(),
            offline: db.clone(),
            archive: db.clone(),
            room_archive: db,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Backend;

    #[test]
    fn storage_urls() {
        assert_eq!(
            Backend::from_url("sqlite:///var/lib/confab/confab.db"),
            Ok(Backend::Sqlite {
                path: "/var/lib/confab/confab.db".into()
            })
        );
        assert_eq!(
            Backend::from_url("sqlite://data/c.db"),
            Ok(Backend::Sqlite {
                path: "data/c.db".into()
            })
        );
        assert!(matches!(
            Backend::from_url("postgresql://u@h/db"),
            Ok(Backend::Postgres { .. })
        ));
        assert!(matches!(
            Backend::from_url("mariadb://u@h/db"),
            Ok(Backend::Mysql { .. })
        ));
        for (url, shown) in [
            (
                "postgres://confab:s3cret@db:5432/confab",
                "postgres://confab:***@db:5432/confab",
            ),
            ("mysql://root@127.0.0.1/x", "mysql://root@127.0.0.1/x"),
            (
                "postgres://u:p@ss@h/db?sslmode=require&password=pw",
                "postgres://u:***@h/db?sslmode=require&password=***",
            ),
            ("postgres://h", "postgres://h"),
        ] {
            let backend = Backend::from_url(url).expect(url);
            assert_eq!(backend.display_url(), shown);
        }
        for bad in [
            "",
            "oracle://x",
            "sqlite://",
            "/tmp/x.db",
            "sqlite://x?mode=ro",
        ] {
            assert!(Backend::from_url(bad).is_err(), "{bad}");
        }
    }
}
