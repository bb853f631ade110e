//! Accounts in SQLite.

use super::{now, SqliteDb};
use crate::accounts::AccountStore;
use crate::{Result, StoreError};
use async_trait::async_trait;
use confab_proto::sasl::{ScramCredentials, ScramHash};
use sqlx::Row;

pub(super) const MIGRATIONS: &[(&str, &str)] = &[
    (
        "accounts-1",
        "CREATE TABLE accounts (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (domain, username)
    );
    CREATE TABLE account_credentials (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        hash TEXT NOT NULL,
        iterations INTEGER NOT NULL,
        salt BLOB NOT NULL,
        stored_key BLOB NOT NULL,
        server_key BLOB NOT NULL,
        PRIMARY KEY (domain, username, hash),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );",
    ),
    // AUTOINCREMENT never hands out a number twice, even after the highest row is gone;
    // the table keeps only its latest row.
    (
        "accounts-2-generation",
        "ALTER TABLE accounts ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE account_generations (id INTEGER PRIMARY KEY AUTOINCREMENT);",
    ),
];

fn hash_name(h: ScramHash) -> &'static str {
    match h {
        ScramHash::Sha1 => "SHA-1",
        ScramHash::Sha256 => "SHA-256",
    }
}

async fn insert_credentials(
    tx: &mut sqlx::SqliteConnection,
    domain: &str,
    username: &str,
    creds: &[ScramCredentials],
) -> Result<()> {
    for c in creds {
        sqlx::query(
            "INSERT INTO account_credentials (domain, username, hash, iterations, salt, stored_key, server_key)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(domain)
        .bind(username)
        .bind(hash_name(c.hash))
        .bind(i64::from(c.iterations))
        .bind(&c.salt)
        .bind(&c.stored_key)
        .bind(&c.server_key)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl AccountStore for SqliteDb {
    async fn create_account(
        &self,
        domain: &str,
        username: &str,
        creds: &[ScramCredentials],
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO accounts (domain, username, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(domain)
        .bind(username)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::Conflict);
        }
        let generation = sqlx::query("INSERT INTO account_generations DEFAULT VALUES")
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        sqlx::query("DELETE FROM account_generations WHERE id < ?")
            .bind(generation)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE accounts SET generation = ? WHERE domain = ? AND username = ?")
            .bind(generation)
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        insert_credentials(&mut tx, domain, username, creds).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn credentials(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Option<Vec<ScramCredentials>>> {
        if !self.account_exists(domain, username).await? {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT hash, iterations, salt, stored_key, server_key FROM account_credentials
             WHERE domain = ? AND username = ?",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let hash = match r.try_get::<String, _>("hash")?.as_str() {
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
        let mut tx = self.write_tx().await?;
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM accounts WHERE domain = ? AND username = ?")
                .bind(domain)
                .bind(username)
                .fetch_optional(&mut *tx)
                .await?;
        if exists.is_none() {
            return Ok(false);
        }
        sqlx::query("DELETE FROM account_credentials WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?;
        insert_credentials(&mut tx, domain, username, creds).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_account(&self, domain: &str, username: &str) -> Result<bool> {
        // Every other feature's table references accounts with ON DELETE CASCADE, so this
        // one statement removes all of the account's data atomically.
        let r = sqlx::query("DELETE FROM accounts WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn account_exists(&self, domain: &str, username: &str) -> Result<bool> {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM accounts WHERE domain = ? AND username = ?")
                .bind(domain)
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        Ok(exists.is_some())
    }

    async fn account_generation(&self, domain: &str, username: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT generation FROM accounts WHERE domain = ? AND username = ?")
                .bind(domain)
                .bind(username)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn common_iterations(&self) -> Result<Option<u32>> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT iterations FROM account_credentials GROUP BY iterations
             ORDER BY COUNT(*) DESC, iterations DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        n.map(|n| u32::try_from(n).map_err(|_| StoreError::Corrupt("iteration count".into())))
            .transpose()
    }

    async fn list_accounts(&self, domain: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT username FROM accounts WHERE domain = ? ORDER BY username")
                .bind(domain)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
