//! The message archive: append, page by (account, id), delete, expire. The paging is
//! shared with the rooms' archives (`room_archive.rs`).

use super::dialect::{Dialect, Lock};
use super::{retry, SqlDb};
use crate::archive::{ArchivePage, ArchiveQuery, ArchiveStore, ArchivedMessage, MAX_PAGE};
use crate::{Result, StoreError};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

/// The bare part of a JID string: a resource may contain `/`, the bare part never does.
fn bare_of(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

impl SqlDb {
    /// The condition selecting one account's rows, with two binds (domain, username). In
    /// MySQL it compares the hash the indexes are built on.
    fn archive_account(&self) -> &'static str {
        match self.dialect {
            Dialect::Mysql => "account_key = UNHEX(SHA2(CONCAT_WS(X'00', ?, ?), 256))",
            _ => "domain = ? AND username = ?",
        }
    }

    /// The condition on the bare `with`, one bind.
    fn archive_with_bare(&self) -> &'static str {
        match self.dialect {
            Dialect::Mysql => "with_key = UNHEX(SHA2(?, 256))",
            _ => "with_bare = ?",
        }
    }

    async fn append_archive_once(
        &self,
        domain: &str,
        username: &str,
        msg: &ArchivedMessage,
    ) -> Result<()> {
        // Under the account's lock: ids increase in commit order per account (paging by id
        // relies on it) and a deleted account gets no new rows.
        let mut tx = self.write_tx().await?;
        if !self
            .lock_account(&mut tx, domain, username, Lock::Exclusive)
            .await?
        {
            return Err(StoreError::NoAccount);
        }
        self.query(
            "INSERT INTO archive (domain, username, sid, with_bare, with_full, stamp, stanza)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(domain)
        .bind(username)
        .bind(msg.id.as_str())
        .bind(bare_of(&msg.with))
        .bind(msg.with.as_str())
        .bind(msg.stamp)
        .bind(msg.stanza.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The scope of one account's archive.
    fn account_archive<'a>(&self, domain: &'a str, username: &'a str) -> Scope<'a> {
        Scope {
            table: "archive",
            owner: self.archive_account(),
            keys: [domain, username],
        }
    }

    /// The row id of the message `sid` in the archive `scope`, if it is there.
    pub(super) async fn archive_row(&self, scope: &Scope<'_>, sid: &str) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE {} AND sid = ?",
            scope.table, scope.owner
        );
        Ok(self
            .query_scalar(&sql)
            .bind(scope.keys[0])
            .bind(scope.keys[1])
            .bind(sid)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// One page of an archive (account or room): `columns` selected, `filters` (conditions
    /// with their text binds) added to the query's time and RSM bounds, rows turned into
    /// items by `item`. `None` when `after`/`before` names an id not in this archive.
    pub(super) async fn archive_page<T>(
        &self,
        scope: &Scope<'_>,
        columns: &str,
        filters: &[(String, Vec<String>)],
        q: &ArchiveQuery,
        item: impl Fn(&AnyRow) -> Result<T>,
    ) -> Result<Option<ArchivePage<T>>> {
        let after = match q.after.as_deref() {
            None => None,
            Some(sid) => match self.archive_row(scope, sid).await? {
                Some(id) => Some(id),
                None => return Ok(None),
            },
        };
        let backwards = q.before.is_some();
        let before = match q.before.as_deref() {
            None | Some("") => None,
            Some(sid) => match self.archive_row(scope, sid).await? {
                Some(id) => Some(id),
                None => return Ok(None),
            },
        };
        let max = q.max.min(MAX_PAGE);
        let mut sql = format!(
            "SELECT {columns} FROM {} WHERE {}",
            scope.table, scope.owner
        );
        for (cond, _) in filters {
            sql.push_str(" AND ");
            sql.push_str(cond);
        }
        if q.start.is_some() {
            sql.push_str(" AND stamp >= ?");
        }
        if q.end.is_some() {
            sql.push_str(" AND stamp <= ?");
        }
        if after.is_some() {
            sql.push_str(" AND id > ?");
        }
        if before.is_some() {
            sql.push_str(" AND id < ?");
        }
        // One more than asked: whether it exists tells if the page is the last.
        sql.push_str(if backwards {
            " ORDER BY id DESC LIMIT ?"
        } else {
            " ORDER BY id ASC LIMIT ?"
        });
        let mut query = self.query(&sql).bind(scope.keys[0]).bind(scope.keys[1]);
        for v in filters.iter().flat_map(|(_, binds)| binds) {
            query = query.bind(v.clone());
        }
        for v in [q.start, q.end, after, before].into_iter().flatten() {
            query = query.bind(v);
        }
        let rows = query
            .bind(i64::try_from(max + 1).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        let complete = rows.len() <= max;
        let mut items = rows
            .iter()
            .take(max)
            .map(item)
            .collect::<Result<Vec<_>>>()?;
        if backwards {
            items.reverse();
        }
        Ok(Some(ArchivePage { items, complete }))
    }
}

/// Which archive a query reads: its table and the condition (two binds, `keys`) selecting
/// its rows.
pub(super) struct Scope<'a> {
    pub(super) table: &'static str,
    pub(super) owner: &'static str,
    pub(super) keys: [&'a str; 2],
}

#[async_trait]
impl ArchiveStore for SqlDb {
    async fn append_archive(
        &self,
        domain: &str,
        username: &str,
        msg: &ArchivedMessage,
    ) -> Result<()> {
        retry!(self.append_archive_once(domain, username, msg).await)
    }

    async fn query_archive(
        &self,
        domain: &str,
        username: &str,
        q: &ArchiveQuery,
    ) -> Result<Option<ArchivePage>> {
        let mut filters = Vec::new();
        if let Some(w) = q.with.as_deref() {
            // A full JID: the bare condition too, so the (account, with, id) index serves it.
            let mut cond = self.archive_with_bare().to_string();
            let mut binds = vec![bare_of(w).to_string()];
            if w.contains('/') {
                cond.push_str(" AND with_full = ?");
                binds.push(w.to_string());
            }
            filters.push((cond, binds));
        }
        let scope = self.account_archive(domain, username);
        self.archive_page(&scope, "sid, with_full, stamp, stanza", &filters, q, |r| {
            Ok(ArchivedMessage {
                id: r.try_get("sid")?,
                with: r.try_get("with_full")?,
                stamp: r.try_get("stamp")?,
                stanza: r.try_get("stanza")?,
            })
        })
        .await
    }

    async fn delete_archive(&self, domain: &str, username: &str) -> Result<u64> {
        let r = retry!(self
            .query("DELETE FROM archive WHERE domain = ? AND username = ?")
            .bind(domain)
            .bind(username)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(r.rows_affected())
    }

    async fn expire_archive(&self, stamp: i64, limit: usize) -> Result<u64> {
        // Bounded batches keep each transaction (and its locks) small.
        let sql = match self.dialect {
            // MySQL takes no LIMIT in an IN subquery, but one on DELETE itself.
            Dialect::Mysql => "DELETE FROM archive WHERE stamp < ? ORDER BY stamp LIMIT ?",
            _ => {
                "DELETE FROM archive WHERE id IN
                 (SELECT id FROM archive WHERE stamp < ? ORDER BY stamp LIMIT ?)"
            }
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let r = retry!(self
            .query(sql)
            .bind(stamp)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(r.rows_affected())
    }
}
