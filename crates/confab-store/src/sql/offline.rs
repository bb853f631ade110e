//! Offline messages, with the per-account quota.

use super::dialect::Lock;
use super::{retry, SqlDb};
use crate::offline::{OfflineMessage, OfflineStore};
use crate::{Result, StoreError};
use async_trait::async_trait;
use sqlx::Row;

impl SqlDb {
    async fn push_offline_once(
        &self,
        domain: &str,
        username: &str,
        stanza: &str,
        stamp: i64,
        quota: usize,
    ) -> Result<bool> {
        // Count and insert under the account's lock, so concurrent senders queue and cannot
        // overshoot the quota; it also keeps ids increasing in commit order per account,
        // which paging by `id > after` relies on.
        let mut tx = self.write_tx().await?;
        if !self
            .lock_account(&mut tx, domain, username, Lock::Exclusive)
            .await?
        {
            return Err(StoreError::NoAccount);
        }
        let count: i64 = self
            .query_scalar("SELECT COUNT(*) FROM offline_messages WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .fetch_one(&mut *tx)
            .await?;
        if usize::try_from(count).unwrap_or(usize::MAX) >= quota {
            return Ok(false);
        }
        self.query(
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
}

#[async_trait]
impl OfflineStore for SqlDb {
    async fn push_offline(
        &self,
        domain: &str,
        username: &str,
        stanza: &str,
        stamp: i64,
        quota: usize,
    ) -> Result<bool> {
        retry!(
            self.push_offline_once(domain, username, stanza, stamp, quota)
                .await
        )
    }

    async fn offline_page(
        &self,
        domain: &str,
        username: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OfflineMessage>> {
        let rows = self
            .query(
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
        let r = retry!(self
            .query("DELETE FROM offline_messages WHERE domain = ? AND username = ? AND id <= ?")
            .bind(domain)
            .bind(username)
            .bind(up_to_id)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(r.rows_affected())
    }

    async fn offline_count(&self, domain: &str, username: &str) -> Result<u64> {
        let n: i64 = self
            .query_scalar("SELECT COUNT(*) FROM offline_messages WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .fetch_one(&self.pool)
            .await?;
        u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("offline count {n}")))
    }
}
