//! Storage for Confab: one trait per kind of data, and their SQL implementation.
//!
//! Callers hold `Arc<dyn ...Store>` trait objects, so PostgreSQL and MySQL/MariaDB backends
//! slot in beside SQLite without reshaping any caller. SQL that differs between databases is
//! kept in `sql/<backend>.rs`-style places (today: `sqlite.rs` and its migrations).
//!
//! **Architecture invariant:** the store knows accounts and their data, never sessions or
//! connections.

pub mod account_data;
mod accounts;
pub mod offline;
pub mod roster;
pub mod sqlite;

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
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
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
#[derive(Clone, Debug)]
pub enum Backend {
    /// An embedded SQLite database file (created if missing), WAL mode.
    Sqlite { path: std::path::PathBuf },
}

impl Stores {
    pub async fn open(backend: &Backend) -> Result<Stores> {
        match backend {
            Backend::Sqlite { path } => {
                let db = Arc::new(sqlite::SqliteDb::open(path).await?);
                Ok(Stores {
                    accounts: db.clone(),
                    data: db.clone(),
                    roster: db.clone(),
                    offline: db,
                })
            }
        }
    }
}
