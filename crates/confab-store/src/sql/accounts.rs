//! Accounts and their SCRAM credentials.

use super::dialect::Lock;
use super::{now, retry, SqlDb};
use crate::accounts::{AccountQuery, AccountSearch, AccountStore};
use crate::{Result, StoreError};
use async_trait::async_trait;
use confab_proto::sasl::{ScramCredentials, ScramHash};
use sqlx::{AnyConnection, Row};

/// Every table holding an account's data, children before parents. Deleting an account
/// deletes its rows from each, in one transaction: MySQL tables have no foreign keys to
/// cascade (see schema.rs). A feature's new table is added here.
const ACCOUNT_TABLES: &[&str] = &[
    "roster_groups",
    "roster_items",
    "roster_versions",
    "offline_messages",
    "archive",
    "account_data",
    "account_credentials",
    "accounts",
];

fn hash_name(h: ScramHash) -> &'static str {
    match h {
        ScramHash::Sha1 => "SHA-1",
        ScramHash::Sha256 => "SHA-256",
    }
}

impl SqlDb {
    async fn insert_credentials(
        &self,
        tx: &mut AnyConnection,
        domain: &str,
        username: &str,
        creds: &[ScramCredentials],
    ) -> Result<()> {
        for c in creds {
            self.query(
                "INSERT INTO account_credentials (domain, username, hash, iterations, salt, stored_key, server_key)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(domain)
            .bind(username)
            .bind(hash_name(c.hash))
            .bind(i64::from(c.iterations))
            .bind(c.salt.clone())
            .bind(c.stored_key.clone())
            .bind(c.server_key.clone())
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }

    /// A number never handed out before: the identity column of `account_generations`
    /// (which keeps only its latest row).
    async fn next_generation(&self, tx: &mut AnyConnection) -> Result<i64> {
        let insert = self.dialect.insert_defaults("account_generations");
        let generation = if self.dialect.returning_id() {
            self.query_scalar::<i64>(&format!("{insert} RETURNING id"))
                .fetch_one(&mut *tx)
                .await?
        } else {
            self.query(&insert)
                .execute(&mut *tx)
                .await?
                .last_insert_id()
                .ok_or_else(|| StoreError::Database("no generation number returned".into()))?
        };
        self.query("DELETE FROM account_generations WHERE id < ?")
            .bind(generation)
            .execute(&mut *tx)
            .await?;
        Ok(generation)
    }

    async fn create_account_once(
        &self,
        domain: &str,
        username: &str,
        creds: &[ScramCredentials],
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let generation = self.next_generation(&mut tx).await?;
        let inserted = self
            .query(
                "INSERT INTO accounts (domain, username, created_at, generation) VALUES (?, ?, ?, ?)",
            )
            .bind(domain)
            .bind(username)
            .bind(now())
            .bind(generation)
            .execute(&mut *tx)
            .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::Conflict)
            }
            other => other?,
        };
        self.insert_credentials(&mut tx, domain, username, creds)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_credentials_once(
        &self,
        domain: &str,
        username: &str,
        creds: &[ScramCredentials],
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        if !self
            .lock_account(&mut tx, domain, username, Lock::Exclusive)
            .await?
        {
            return Ok(false);
        }
        self.query("DELETE FROM account_credentials WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        self.insert_credentials(&mut tx, domain, username, creds)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_account_once(&self, domain: &str, username: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        if !self
            .lock_account(&mut tx, domain, username, Lock::Exclusive)
            .await?
        {
            return Ok(false);
        }
        for table in ACCOUNT_TABLES {
            self.query(&format!(
                "DELETE FROM {table} WHERE domain = ? AND username = ?"
            ))
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

#[async_trait]
impl AccountStore for SqlDb {
    async fn create_account(
        &self,
        domain: &str,
        username: &str,
        creds: &[ScramCredentials],
    ) -> Result<()> {
        retry!(self.create_account_once(domain, username, creds).await)
    }

    async fn credentials(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Option<Vec<ScramCredentials>>> {
        // One statement (this is read at every login): the account row, for its existence,
        // with its keys, one row per hash; an account without keys still gives one row.
        let rows = self
            .query(
                "SELECT c.hash, c.iterations, c.salt, c.stored_key, c.server_key
                 FROM accounts a LEFT JOIN account_credentials c
                 ON c.domain = a.domain AND c.username = a.username
                 WHERE a.domain = ? AND a.username = ?",
            )
            .bind(domain)
            .bind(username)
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let Some(hash) = r.try_get::<Option<String>, _>("hash")? else {
                continue;
            };
            let hash = match hash.as_str() {
                "SHA-1" => ScramHash::Sha1,
                "SHA-256" => ScramHash::Sha256,
                other => return Err(StoreError::Corrupt(format!("unknown hash {other}"))),
            };
            let iterations: i64 = r.try_get("iterations")?;
            out.push(ScramCredentials {
                hash,
                iterations: u32::try_from(iterations)
                    .map_err(|_| StoreError::Corrupt("iteration count".into()))?,
                salt: r.try_get("salt")?,
                stored_key: r.try_get("stored_key")?,
                server_key: r.try_get("server_key")?,
            });
        }
        Ok(Some(out))
    }

    async fn set_credentials(
        &self,
        domain: &str,
        username: &str,
        creds: &[ScramCredentials],
    ) -> Result<bool> {
        retry!(self.set_credentials_once(domain, username, creds).await)
    }

    async fn delete_account(&self, domain: &str, username: &str) -> Result<bool> {
        retry!(self.delete_account_once(domain, username).await)
    }

    async fn account_exists(&self, domain: &str, username: &str) -> Result<bool> {
        let exists: Option<i64> = self
            .query_scalar("SELECT 1 FROM accounts WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(exists.is_some())
    }

    async fn account_generation(&self, domain: &str, username: &str) -> Result<Option<i64>> {
        Ok(self
            .query_scalar("SELECT generation FROM accounts WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn common_iterations(&self) -> Result<Option<u32>> {
        let n: Option<i64> = self
            .query_scalar(
                "SELECT iterations FROM account_credentials GROUP BY iterations
                 ORDER BY COUNT(*) DESC, iterations DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await?;
        n.map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt("iteration count".into())))
            .transpose()
    }

    async fn list_accounts(&self, domain: &str) -> Result<Vec<String>> {
        Ok(self
            .query_scalar("SELECT username FROM accounts WHERE domain = ? ORDER BY username")
            .bind(domain)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn account_page(&self, domain: &str, query: &AccountQuery) -> Result<Vec<String>> {
        // Offsets beyond i64 find nothing anyway.
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let limit = i64::from(query.limit);
        Ok(match &query.search {
            None => {
                self.query_scalar(
                    "SELECT username FROM accounts WHERE domain = ?
                     ORDER BY username LIMIT ? OFFSET ?",
                )
                .bind(domain)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?
            }
            Some(search) => {
                self.query_scalar(
                    "SELECT username FROM accounts WHERE domain = ? AND username LIKE ? ESCAPE '!'
                     ORDER BY username LIMIT ? OFFSET ?",
                )
                .bind(domain)
                .bind(search.like_pattern())
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await?
            }
        })
    }

    async fn count_accounts(&self, domain: &str, search: Option<&AccountSearch>) -> Result<u64> {
        let n: i64 = match search {
            None => {
                self.query_scalar("SELECT COUNT(*) FROM accounts WHERE domain = ?")
                    .bind(domain)
                    .fetch_one(&self.pool)
                    .await?
            }
            Some(search) => {
                self.query_scalar(
                    "SELECT COUNT(*) FROM accounts WHERE domain = ? AND username LIKE ? ESCAPE '!'",
                )
                .bind(domain)
                .bind(search.like_pattern())
                .fetch_one(&self.pool)
                .await?
            }
        };
        u64::try_from(n).map_err(|_| StoreError::Corrupt("account count".into()))
    }
}
