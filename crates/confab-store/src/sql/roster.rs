//! Rosters: items, their groups, and a version counter per roster.

use super::dialect::Lock;
use super::{retry, SqlDb};
use crate::roster::{RosterItem, RosterStore, Subscription};
use crate::{Result, StoreError};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::HashMap;

const ITEM_COLUMNS: &str = "jid, name, subscription, ask, pending_in, approved, in_roster";

fn item_from_row(r: &AnyRow) -> Result<RosterItem> {
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

fn version_from(v: Option<i64>) -> Result<u64> {
    v.map_or(Ok(0), |v| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("roster version {v}")))
    })
}

impl SqlDb {
    /// Counts one more change of the roster; the caller holds the account's lock, so the
    /// number read back is the one this transaction wrote.
    async fn bump_version(
        &self,
        tx: &mut AnyConnection,
        domain: &str,
        username: &str,
    ) -> Result<u64> {
        self.query(
            &self
                .dialect
                .increment("roster_versions", &["domain", "username"], "version"),
        )
        .bind(domain)
        .bind(username)
        .execute(&mut *tx)
        .await?;
        let v: i64 = self
            .query_scalar("SELECT version FROM roster_versions WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .fetch_one(&mut *tx)
            .await?;
        version_from(Some(v))
    }

    async fn read_version(
        &self,
        conn: &mut AnyConnection,
        domain: &str,
        username: &str,
    ) -> Result<u64> {
        let v: Option<i64> = self
            .query_scalar("SELECT version FROM roster_versions WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .fetch_optional(&mut *conn)
            .await?;
        version_from(v)
    }

    async fn put_roster_item_once(
        &self,
        domain: &str,
        username: &str,
        item: &RosterItem,
    ) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        if !self
            .lock_account(&mut tx, domain, username, Lock::Exclusive)
            .await?
        {
            return Err(StoreError::NoAccount);
        }
        self.query(&self.dialect.upsert(
            "roster_items",
            &[
                "domain",
                "username",
                "jid",
                "name",
                "subscription",
                "ask",
                "pending_in",
                "approved",
                "in_roster",
            ],
            &["domain", "username", "jid"],
        ))
        .bind(domain)
        .bind(username)
        .bind(item.jid.as_str())
        .bind(item.name.clone())
        .bind(item.subscription.as_str())
        .bind(i64::from(item.ask))
        .bind(item.pending_in.clone())
        .bind(i64::from(item.approved))
        .bind(i64::from(item.in_roster))
        .execute(&mut *tx)
        .await?;
        self.query("DELETE FROM roster_groups WHERE domain = ? AND username = ? AND jid = ?")
            .bind(domain)
            .bind(username)
            .bind(item.jid.as_str())
            .execute(&mut *tx)
            .await?;
        let insert_group = self.dialect.insert_or_ignore(
            "roster_groups",
            &["domain", "username", "jid", "grp"],
            &["domain", "username", "jid", "grp"],
        );
        for g in &item.groups {
            self.query(&insert_group)
                .bind(domain)
                .bind(username)
                .bind(item.jid.as_str())
                .bind(g.as_str())
                .execute(&mut *tx)
                .await?;
        }
        let v = self.bump_version(&mut tx, domain, username).await?;
        tx.commit().await?;
        Ok(v)
    }

    async fn delete_roster_item_once(
        &self,
        domain: &str,
        username: &str,
        jid: &str,
    ) -> Result<Option<u64>> {
        let mut tx = self.write_tx().await?;
        if !self
            .lock_account(&mut tx, domain, username, Lock::Exclusive)
            .await?
        {
            return Ok(None);
        }
        // Groups first: MySQL has no cascade from the item.
        self.query("DELETE FROM roster_groups WHERE domain = ? AND username = ? AND jid = ?")
            .bind(domain)
            .bind(username)
            .bind(jid)
            .execute(&mut *tx)
            .await?;
        let r = self
            .query("DELETE FROM roster_items WHERE domain = ? AND username = ? AND jid = ?")
            .bind(domain)
            .bind(username)
            .bind(jid)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let v = self.bump_version(&mut tx, domain, username).await?;
        tx.commit().await?;
        Ok(Some(v))
    }

    async fn roster_once(&self, domain: &str, username: &str) -> Result<(u64, Vec<RosterItem>)> {
        // A roster never written has no version row and, since every writer bumps the
        // version in the transaction that changes the items, no items either: one statement
        // answers it, without a transaction (most logins of new or roster-less accounts).
        {
            let mut conn = self.pool.acquire().await?;
            if self.read_version(&mut conn, domain, username).await? == 0 {
                return Ok((0, Vec::new()));
            }
        }
        // Version and items as one state: writers hold the account's row exclusively, so a
        // shared lock on it keeps them out until both are read.
        let mut tx = self.pool.begin().await?;
        self.lock_account(&mut tx, domain, username, Lock::Shared)
            .await?;
        let version = self.read_version(&mut tx, domain, username).await?;
        let rows = self
            .query(&format!(
                "SELECT {ITEM_COLUMNS} FROM roster_items WHERE domain = ? AND username = ? ORDER BY jid"
            ))
            .bind(domain)
            .bind(username)
            .fetch_all(&mut *tx)
            .await?;
        let mut items = rows.iter().map(item_from_row).collect::<Result<Vec<_>>>()?;
        let groups = self
            .query(
                "SELECT jid, grp FROM roster_groups WHERE domain = ? AND username = ? ORDER BY grp",
            )
            .bind(domain)
            .bind(username)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let index: HashMap<String, usize> = items
            .iter()
            .enumerate()
            .map(|(i, item)| (item.jid.clone(), i))
            .collect();
        for r in groups {
            let jid: String = r.try_get("jid")?;
            let grp: String = r.try_get("grp")?;
            if let Some(&i) = index.get(&jid) {
                items[i].groups.push(grp);
            }
        }
        Ok((version, items))
    }

    async fn roster_item_once(
        &self,
        domain: &str,
        username: &str,
        jid: &str,
    ) -> Result<Option<RosterItem>> {
        let mut tx = self.pool.begin().await?;
        self.lock_account(&mut tx, domain, username, Lock::Shared)
            .await?;
        let row = self
            .query(&format!(
                "SELECT {ITEM_COLUMNS} FROM roster_items WHERE domain = ? AND username = ? AND jid = ?"
            ))
            .bind(domain)
            .bind(username)
            .bind(jid)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut item = item_from_row(&row)?;
        item.groups = self
            .query_scalar(
                "SELECT grp FROM roster_groups WHERE domain = ? AND username = ? AND jid = ? ORDER BY grp",
            )
            .bind(domain)
            .bind(username)
            .bind(jid)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(item))
    }
}

#[async_trait]
impl RosterStore for SqlDb {
    async fn roster(&self, domain: &str, username: &str) -> Result<(u64, Vec<RosterItem>)> {
        retry!(self.roster_once(domain, username).await)
    }

    async fn roster_item(
        &self,
        domain: &str,
        username: &str,
        jid: &str,
    ) -> Result<Option<RosterItem>> {
        retry!(self.roster_item_once(domain, username, jid).await)
    }

    async fn put_roster_item(
        &self,
        domain: &str,
        username: &str,
        item: &RosterItem,
    ) -> Result<u64> {
        retry!(self.put_roster_item_once(domain, username, item).await)
    }

    async fn delete_roster_item(
        &self,
        domain: &str,
        username: &str,
        jid: &str,
    ) -> Result<Option<u64>> {
        retry!(self.delete_roster_item_once(domain, username, jid).await)
    }

    async fn roster_version(&self, domain: &str, username: &str) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        self.read_version(&mut conn, domain, username).await
    }
}
