//! Per-account and per-domain documents in SQLite.

use super::{now, SqliteDb};
use crate::account_data::DataStore;
use crate::Result;
use async_trait::async_trait;

pub(super) const MIGRATIONS: &[(&str, &str)] = &[(
    "account-data-1",
    "CREATE TABLE account_data (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (domain, username, kind, key),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE TABLE host_data (
        domain TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (domain, kind, key)
    );",
)];

#[async_trait]
impl DataStore for SqliteDb {
    async fn get_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM account_data WHERE domain = ? AND username = ? AND kind = ? AND key = ?",
        )
        .bind(domain)
        .bind(username)
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn set_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO account_data (domain, username, kind, key, value, updated_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (domain, username, kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(domain)
        .bind(username)
        .bind(kind)
        .bind(key)
        .bind(value)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM account_data WHERE domain = ? AND username = ? AND kind = ? AND key = ?",
        )
        .bind(domain)
        .bind(username)
        .bind(kind)
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT key, value FROM account_data WHERE domain = ? AND username = ? AND kind = ? ORDER BY key",
        )
        .bind(domain)
        .bind(username)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn get_host_data(&self, domain: &str, kind: &str, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM host_data WHERE domain = ? AND kind = ? AND key = ?",
        )
        .bind(domain)
        .bind(kind)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn set_host_data(&self, domain: &str, kind: &str, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO host_data (domain, kind, key, value, updated_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (domain, kind, key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(domain)
        .bind(kind)
        .bind(key)
        .bind(value)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_host_data(&self, domain: &str, kind: &str, key: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM host_data WHERE domain = ? AND kind = ? AND key = ?")
            .bind(domain)
            .bind(kind)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_host_data(&self, domain: &str, kind: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT key, value FROM host_data WHERE domain = ? AND kind = ? ORDER BY key",
        )
        .bind(domain)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?)
    }
}
