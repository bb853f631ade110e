//! Offline messages in SQLite.

use super::SqliteDb;
use crate::offline::{OfflineMessage, OfflineStore};
use crate::Result;
use async_trait::async_trait;
use sqlx::Row;

pub(super) const MIGRATIONS: &[(&str, &str)] = &[(
    "offline-1",
    "CREATE TABLE offline_messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        stanza TEXT NOT NULL,
        stamp INTEGER NOT NULL,
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE INDEX offline_messages_by_account ON offline_messages (domain, username, id);",
)];

#[async_trait]
impl OfflineStore for SqliteDb {
    async fn push_offline(
        &self,
        domain: &str,
        username: &str,
        stanza: &str,
        stamp: i64,
        quota: usize,
    ) -> Result<bool> {
        // Count and insert in one transaction so concurrent senders cannot overshoot.
        let mut tx = self.write_tx().await?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM offline_messages WHERE domain = ? AND username = ?",
        )
        .bind(domain)
        .bind(username)
        .fetch_one(&mut *tx)
        .await?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= quota {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO offline_messages (domain, username, stanza, stamp) VALUES (?, ?, ?, ?)",
        )
        .bind(domain)
        .bind(username)
        .bind(stanza)
        .bind(stamp)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn offline_page(
        &self,
        domain: &str,
        username: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OfflineMessage>> {
        let rows = sqlx::query(
            "SELECT id, stanza, stamp FROM offline_messages WHERE domain = ? AND username = ? AND id > ?
             ORDER BY id LIMIT ?",
        )
        .bind(domain)
        .bind(username)
        .bind(after_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(OfflineMessage {
                    id: r.try_get("id")?,
                    stanza: r.try_get("stanza")?,
                    stamp: r.try_get("stamp")?,
                })
            })
            .collect()
    }

    async fn delete_offline(&self, domain: &str, username: &str, up_to_id: i64) -> Result<u64> {
        let r = sqlx::query(
            "DELETE FROM offline_messages WHERE domain = ? AND username = ? AND id <= ?",
        )
        .bind(domain)
        .bind(username)
        .bind(up_to_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn offline_count(&self, domain: &str, username: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM offline_messages WHERE domain = ? AND username = ?",
        )
        .bind(domain)
        .bind(username)
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
