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
pub mod offline;
pub mod roster;
mod sql;

pub use account_data::DataStore;
pub use accounts::AccountStore;
pub use offline::{OfflineMessage, OfflineStore};
pub use roster::{RosterItem, RosterStore, Subscription};
use std::sync::Arc;

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

    /// The pool size used when the configuration names none: SQLite has one writer at a
    /// time, so a few connections suffice; a database server serves more at once.
    pub fn default_pool_size(&self) -> u32 {
        match self {
            Backend::Sqlite { .. } => 4,
            Backend::Postgres { .. } | Backend::Mysql { .. } => 10,
        }
    }
}

impl Stores {
    /// Opens the backend with its default pool size.
    pub async fn open(backend: &Backend) -> Result<Stores> {
        Self::open_with_pool(backend, backend.default_pool_size()).await
    }

    /// Opens the database (applying its migrations) with at most `pool_size` connections.
    /// A database that cannot be reached is an error naming it, never a panic.
    pub async fn open_with_pool(backend: &Backend, pool_size: u32) -> Result<Stores> {
        let db = Arc::new(sql::SqlDb::open(backend, pool_size).await?);
        Ok(Stores {
            accounts: db.clone(),
            data: db.clone(),
            roster: db.clone(),
            offline: db,
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
