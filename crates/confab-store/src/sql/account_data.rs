//! Per-account and per-domain documents.

use super::dialect::Lock;
use super::{now, retry, SqlDb};
use crate::account_data::{AccountDataWrite, DataStore};
use crate::{Result, StoreError};
use async_trait::async_trait;

impl SqlDb {
    async fn set_account_data_once(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        if !self
            .upsert_account_data(&mut tx, domain, username, kind, key, value)
            .await?
        {
            return Err(StoreError::NoAccount);
        }
        tx.commit().await?;
        Ok(())
    }

    /// One transaction (one commit, one sync of the log) for many documents; those of
    /// accounts that no longer exist are left out.
    async fn set_account_data_batch_once(&self, items: &[AccountDataWrite]) -> Result<usize> {
        let mut tx = self.write_tx().await?;
        let mut written = 0;
        for w in items {
            if self
                .upsert_account_data(&mut tx, &w.domain, &w.username, &w.kind, &w.key, &w.value)
                .await?
            {
                written += 1;
            }
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Upserts one document in `tx`; false (nothing written) when the account is gone.
    async fn upsert_account_data(
        &self,
        tx: &mut sqlx::AnyConnection,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
        value: &str,
    ) -> Result<bool> {
        // The account must exist (MySQL has no foreign key to refuse an orphan row), and a
        // deletion of the account running at the same time must not leave this row behind.
        if !self
            .lock_account(tx, domain, username, Lock::Exclusive)
            .await?
        {
            return Ok(false);
        }
        self.query(&self.dialect.upsert(
            "account_data",
            &[
                "domain",
                "username",
                "kind",
                "\"key\"",
                "value",
                "updated_at",
            ],
            &["domain", "username", "kind", "\"key\""],
        ))
        .bind(domain)
        .bind(username)
        .bind(kind)
        .bind(key)
        .bind(value)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        Ok(true)
    }
}

#[async_trait]
impl DataStore for SqlDb {
    async fn get_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>> {
        Ok(self
            .query_scalar(
                "SELECT value FROM account_data WHERE domain = ? AND username = ? AND kind = ? AND \"key\" = ?",
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
        retry!(
            self.set_account_data_once(domain, username, kind, key, value)
                .await
        )
    }

    async fn set_account_data_batch(&self, items: &[AccountDataWrite]) -> Result<usize> {
        if items.is_empty() {
            return Ok(0);
        }
        retry!(self.set_account_data_batch_once(items).await)
    }

    async fn delete_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
    ) -> Result<bool> {
        let r = retry!(
            self.query(
                "DELETE FROM account_data WHERE domain = ? AND username = ? AND kind = ? AND \"key\" = ?",
            )
            .bind(domain)
            .bind(username)
            .bind(kind)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from)
        )?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
    ) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(self.dialect.sql(
            "SELECT \"key\", value FROM account_data WHERE domain = ? AND username = ? AND kind = ? ORDER BY \"key\"",
        )))
        .bind(domain)
        .bind(username)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn all_account_data(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(self.dialect.sql(
            "SELECT kind, \"key\", value FROM account_data WHERE domain = ? AND username = ? ORDER BY kind, \"key\"",
        )))
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn get_host_data(&self, domain: &str, kind: &str, key: &str) -> Result<Option<String>> {
        Ok(self
            .query_scalar(
                "SELECT value FROM host_data WHERE domain = ? AND kind = ? AND \"key\" = ?",
            )
            .bind(domain)
            .bind(kind)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_host_data(&self, domain: &str, kind: &str, key: &str, value: &str) -> Result<()> {
        let sql = self.dialect.upsert(
            "host_data",
            &["domain", "kind", "\"key\"", "value", "updated_at"],
            &["domain", "kind", "\"key\""],
        );
        retry!(self
            .query(&sql)
            .bind(domain)
            .bind(kind)
            .bind(key)
            .bind(value)
            .bind(now())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(())
    }

    async fn delete_host_data(&self, domain: &str, kind: &str, key: &str) -> Result<bool> {
        let r = retry!(self
            .query("DELETE FROM host_data WHERE domain = ? AND kind = ? AND \"key\" = ?")
            .bind(domain)
            .bind(kind)
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(r.rows_affected() > 0)
    }

    async fn list_host_data(&self, domain: &str, kind: &str) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(self.dialect.sql(
            "SELECT \"key\", value FROM host_data WHERE domain = ? AND kind = ? ORDER BY \"key\"",
        )))
        .bind(domain)
        .bind(kind)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn host_data_domains(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(
            self.dialect
                .sql("SELECT DISTINCT domain FROM host_data ORDER BY domain"),
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn all_host_data(&self, domain: &str) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(self.dialect.sql(
            "SELECT kind, \"key\", value FROM host_data WHERE domain = ? ORDER BY kind, \"key\"",
        )))
        .bind(domain)
        .fetch_all(&self.pool)
        .await?)
    }
}
