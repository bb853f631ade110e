//! Rosters in SQLite: items, their groups, and a version counter per roster.

use super::SqliteDb;
use crate::roster::{RosterItem, RosterStore, Subscription};
use crate::{Result, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

pub(super) const MIGRATIONS: &[(&str, &str)] = &[(
    "roster-1",
    "CREATE TABLE roster_items (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        jid TEXT NOT NULL,
        name TEXT,
        subscription TEXT NOT NULL,
        ask INTEGER NOT NULL,
        pending_in TEXT,
        approved INTEGER NOT NULL,
        in_roster INTEGER NOT NULL,
        PRIMARY KEY (domain, username, jid),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );
    CREATE TABLE roster_groups (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        jid TEXT NOT NULL,
        grp TEXT NOT NULL,
        PRIMARY KEY (domain, username, jid, grp),
        FOREIGN KEY (domain, username, jid) REFERENCES roster_items (domain, username, jid) ON DELETE CASCADE
    );
    CREATE TABLE roster_versions (
        domain TEXT NOT NULL,
        username TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (domain, username),
        FOREIGN KEY (domain, username) REFERENCES accounts (domain, username) ON DELETE CASCADE
    );",
)];

fn item_from_row(r: &SqliteRow) -> Result<RosterItem> {
    let sub: String = r.try_get("subscription")?;
    Ok(RosterItem {
        jid: r.try_get("jid")?,
        name: r.try_get("name")?,
        subscription: Subscription::from_name(&sub)
            .ok_or_else(|| StoreError::Corrupt(format!("subscription '{sub}'")))?,
        ask: r.try_get::<i64, _>("ask")? != 0,
        pending_in: r.try_get("pending_in")?,
        approved: r.try_get::<i64, _>("approved")? != 0,
        in_roster: r.try_get::<i64, _>("in_roster")? != 0,
        groups: Vec::new(),
    })
}

async fn bump_version(tx: &mut SqliteConnection, domain: &str, username: &str) -> Result<u64> {
    let v: i64 = sqlx::query_scalar(
        "INSERT INTO roster_versions (domain, username, version) VALUES (?, ?, 1)
         ON CONFLICT (domain, username) DO UPDATE SET version = version + 1
         RETURNING version",
    )
    .bind(domain)
    .bind(username)
    .fetch_one(&mut *tx)
    .await?;
    Ok(u64::try_from(v).unwrap_or(0))
}

async fn load_groups(
    conn: &mut SqliteConnection,
    domain: &str,
    username: &str,
    items: &mut [RosterItem],
) -> Result<()> {
    let rows = sqlx::query(
        "SELECT jid, grp FROM roster_groups WHERE domain = ? AND username = ? ORDER BY grp",
    )
    .bind(domain)
    .bind(username)
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let jid: String = r.try_get("jid")?;
        let grp: String = r.try_get("grp")?;
        if let Some(i) = items.iter_mut().find(|i| i.jid == jid) {
            i.groups.push(grp);
        }
    }
    Ok(())
}

#[async_trait]
impl RosterStore for SqliteDb {
    async fn roster(&self, domain: &str, username: &str) -> Result<(u64, Vec<RosterItem>)> {
        // One read transaction: version and items are consistent with each other.
        let mut tx = self.pool.begin().await?;
        let version: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM roster_versions WHERE domain = ? AND username = ?",
        )
        .bind(domain)
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?;
        let rows = sqlx::query(
            "SELECT * FROM roster_items WHERE domain = ? AND username = ? ORDER BY jid",
        )
        .bind(domain)
        .bind(username)
        .fetch_all(&mut *tx)
        .await?;
        let mut items = rows.iter().map(item_from_row).collect::<Result<Vec<_>>>()?;
        load_groups(&mut tx, domain, username, &mut items).await?;
        tx.commit().await?;
        Ok((
            version.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
            items,
        ))
    }

    async fn roster_item(
        &self,
        domain: &str,
        username: &str,
        jid: &str,
    ) -> Result<Option<RosterItem>> {
        let mut conn = self.pool.acquire().await?;
        let row =
            sqlx::query("SELECT * FROM roster_items WHERE domain = ? AND username = ? AND jid = ?")
                .bind(domain)
                .bind(username)
                .bind(jid)
                .fetch_optional(&mut *conn)
                .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut item = item_from_row(&row)?;
        item.groups = sqlx::query_scalar(
            "SELECT grp FROM roster_groups WHERE domain = ? AND username = ? AND jid = ? ORDER BY grp",
        )
        .bind(domain)
        .bind(username)
        .bind(jid)
        .fetch_all(&mut *conn)
        .await?;
        Ok(Some(item))
    }

    async fn put_roster_item(
        &self,
        domain: &str,
        username: &str,
        item: &RosterItem,
    ) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO roster_items (domain, username, jid, name, subscription, ask, pending_in, approved, in_roster)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (domain, username, jid) DO UPDATE SET name = excluded.name,
               subscription = excluded.subscription, ask = excluded.ask, pending_in = excluded.pending_in,
               approved = excluded.approved, in_roster = excluded.in_roster",
        )
        .bind(domain)
        .bind(username)
        .bind(&item.jid)
        .bind(&item.name)
        .bind(item.subscription.as_str())
        .bind(i64::from(item.ask))
        .bind(&item.pending_in)
        .bind(i64::from(item.approved))
        .bind(i64::from(item.in_roster))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM roster_groups WHERE domain = ? AND username = ? AND jid = ?")
            .bind(domain)
            .bind(username)
            .bind(&item.jid)
            .execute(&mut *tx)
            .await?;
        for g in &item.groups {
            sqlx::query(
                "INSERT OR IGNORE INTO roster_groups (domain, username, jid, grp) VALUES (?, ?, ?, ?)",
            )
            .bind(domain)
            .bind(username)
            .bind(&item.jid)
            .bind(g)
            .execute(&mut *tx)
            .await?;
        }
        let v = bump_version(&mut tx, domain, username).await?;
        tx.commit().await?;
        Ok(v)
    }

    async fn delete_roster_item(
        &self,
        domain: &str,
        username: &str,
        jid: &str,
    ) -> Result<Option<u64>> {
        let mut tx = self.write_tx().await?;
        let r =
            sqlx::query("DELETE FROM roster_items WHERE domain = ? AND username = ? AND jid = ?")
                .bind(domain)
                .bind(username)
                .bind(jid)
                .execute(&mut *tx)
                .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let v = bump_version(&mut tx, domain, username).await?;
        tx.commit().await?;
        Ok(Some(v))
    }

    async fn roster_version(&self, domain: &str, username: &str) -> Result<u64> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT version FROM roster_versions WHERE domain = ? AND username = ?",
        )
        .bind(domain)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0))
    }
}
