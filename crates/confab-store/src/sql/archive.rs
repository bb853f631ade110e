//! The message archive: append, page by (account, id), delete, expire.

use super::dialect::{Dialect, Lock};
use super::{retry, SqlDb};
use crate::archive::{ArchivePage, ArchiveQuery, ArchiveStore, ArchivedMessage, MAX_PAGE};
use crate::{Result, StoreError};
use async_trait::async_trait;
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

    /// The row id of the archive's message `sid`, if it is in this account's archive.
    async fn archive_row(&self, domain: &str, username: &str, sid: &str) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT id FROM archive WHERE {} AND sid = ?",
            self.archive_account()
        );
        Ok(self
            .query_scalar(&sql)
            .bind(domain)
            .bind(username)
            .bind(sid)
            .fetch_optional(&self.pool)
            .await?)
    }
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
        let after = match q.after.as_deref() {
            None => None,
            Some(sid) => match self.archive_row(domain, username, sid).await? {
                Some(id) => Some(id),
                None => return Ok(None),
            },
        };
        let backwards = q.before.is_some();
        let before = match q.before.as_deref() {
            None | Some("") => None,
            Some(sid) => match self.archive_row(domain, username, sid).await? {
                Some(id) => Some(id),
                None => return Ok(None),
            },
        };
        let max = q.max.min(MAX_PAGE);
        let mut sql = format!(
            "SELECT sid, with_full, stamp, stanza FROM archive WHERE {}",
            self.archive_account()
        );
        // The conditions and their binds, in the same order.
        let with_full = q.with.as_deref().filter(|w| w.contains('/'));
        let with_bare = q.with.as_deref().filter(|w| !w.contains('/'));
        if with_full.is_some() {
            // The bare condition too, so the (account, with, id) index serves it.
            sql.push_str(&format!(
                " AND {} AND with_full = ?",
                self.archive_with_bare()
            ));
        }
        if with_bare.is_some() {
            sql.push_str(&format!(" AND {}", self.archive_with_bare()));
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
        let mut query = self.query(&sql).bind(domain).bind(username);
        if let Some(w) = with_full {
            query = query.bind(bare_of(w).to_string()).bind(w.to_string());
        }
        if let Some(w) = with_bare {
            query = query.bind(w.to_string());
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
            .into_iter()
            .take(max)
            .map(|r| {
                Ok(ArchivedMessage {
                    id: r.try_get("sid")?,
                    with: r.try_get("with_full")?,
                    stamp: r.try_get("stamp")?,
                    stanza: r.try_get("stanza")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if backwards {
            items.reverse();
        }
        Ok(Some(ArchivePage { items, complete }))
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
