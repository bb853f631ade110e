//! The message archive: append, page by (account, id), delete, expire. The paging is
//! shared with the rooms' archives (`room_archive.rs`): an archive is a `Scope`.

use super::dialect::{Dialect, Lock};
use super::{retry, SqlDb};
use crate::archive::{
    ArchivePage, ArchiveQuery, ArchiveStore, ArchivedMessage, MAX_BATCH, MAX_PAGE,
};

/// Rows per INSERT statement: seven binds each stay well under every backend's limit.
const APPEND_CHUNK: usize = 500;
use crate::{Result, StoreError};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashMap;

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

    /// Appends `rows` (account domain, username, message) in order, in one transaction;
    /// rows of accounts that do not exist are left out. Returns how many were written and
    /// whether any account was missing.
    async fn append_rows_once(
        &self,
        rows: &[(&str, &str, &ArchivedMessage)],
    ) -> Result<(u64, bool)> {
        // Under the accounts' locks, taken in one order (no deadlock between writers):
        // ids increase in commit order per account (paging by id relies on it) and a
        // deleted account gets no new rows.
        let mut accounts: Vec<(&str, &str)> = rows.iter().map(|(d, u, _)| (*d, *u)).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut tx = self.write_tx().await?;
        // Stamps never decrease within an account (time queries rely on it): a stamp
        // older than the account's newest, from a race between appends or a clock stepping
        // back, is raised to it.
        let mut newest: HashMap<(&str, &str), Option<i64>> = HashMap::new();
        let sql = format!(
            "SELECT MAX(stamp) FROM archive WHERE {}",
            self.archive_account()
        );
        for (d, u) in accounts {
            if !self.lock_account(&mut tx, d, u, Lock::Exclusive).await? {
                continue;
            }
            let max: Option<i64> = self
                .query_scalar(&sql)
                .bind(d)
                .bind(u)
                .fetch_one(&mut *tx)
                .await?;
            newest.insert((d, u), max);
        }
        let live: Vec<&(&str, &str, &ArchivedMessage)> = rows
            .iter()
            .filter(|(d, u, _)| newest.contains_key(&(*d, *u)))
            .collect();
        for chunk in live.chunks(APPEND_CHUNK) {
            let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
            let sql = format!(
                "INSERT INTO archive (domain, username, sid, with_bare, with_full, stamp, stanza)
                 VALUES {values}"
            );
            let mut query = self.query(&sql);
            for (d, u, msg) in chunk {
                let last = newest.entry((*d, *u)).or_default();
                let stamp = last.map_or(msg.stamp, |n| n.max(msg.stamp));
                *last = Some(stamp);
                query = query
                    .bind(*d)
                    .bind(*u)
                    .bind(msg.id.as_str())
                    .bind(bare_of(&msg.with))
                    .bind(msg.with.as_str())
                    .bind(stamp)
                    .bind(msg.stanza.as_str());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok((live.len() as u64, live.len() < rows.len()))
    }

    /// One account's messages, in one transaction; `NoAccount` if it does not exist.
    async fn append_archive_once(
        &self,
        domain: &str,
        username: &str,
        msgs: &[ArchivedMessage],
    ) -> Result<()> {
        let rows: Vec<(&str, &str, &ArchivedMessage)> =
            msgs.iter().map(|m| (domain, username, m)).collect();
        match self.append_rows_once(&rows).await? {
            (_, true) => Err(StoreError::NoAccount),
            _ => Ok(()),
        }
    }

    /// The scope of one account's archive.
    fn account_archive<'a>(&self, domain: &'a str, username: &'a str) -> Scope<'a> {
        Scope {
            table: "archive",
            owner: self.archive_account(),
            keys: [domain, username],
            ordered_stamps: true,
            indexes: (self.dialect == Dialect::Mysql).then_some(Indexes {
                by_id: "archive_by_account",
                by_sid: "archive_by_sid",
                by_stamp: Some("archive_by_account_stamp"),
                by_filter: Some("archive_by_with"),
            }),
        }
    }

    /// The row id of the message `sid` in the archive `scope`, if it is there.
    pub(super) async fn archive_row(&self, scope: &Scope<'_>, sid: &str) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE {} AND sid = ?",
            scope.from(scope.indexes.map(|i| i.by_sid)),
            scope.owner
        );
        Ok(self
            .query_scalar(&sql)
            .bind(scope.keys[0])
            .bind(scope.keys[1])
            .bind(sid)
            .fetch_optional(&self.pool)
            .await?)
    }
}

/// Which archive a query reads: its table and the condition (two binds, `keys`) selecting
/// its rows.
pub(super) struct Scope<'a> {
    pub(super) table: &'static str,
    pub(super) owner: &'static str,
    pub(super) keys: [&'a str; 2],
    /// Stamps never decrease with ids and an (owner, stamp) index exists: time filters
    /// become id bounds found on that index.
    pub(super) ordered_stamps: bool,
    /// MySQL only: the index each statement must use. MariaDB plans the bound statements
    /// (the owner is a hash of two parameters) as a scan of the owner's rows and a sort:
    /// seconds on a million rows, where the index range takes a millisecond.
    pub(super) indexes: Option<Indexes>,
}

#[derive(Clone, Copy)]
pub(super) struct Indexes {
    /// (owner, id): paging.
    pub(super) by_id: &'static str,
    /// (owner, sid): an archive id to its row.
    pub(super) by_sid: &'static str,
    /// (owner, stamp): a time to its first or last row.
    pub(super) by_stamp: Option<&'static str>,
    /// (owner, filter column, id): paging with the archive's filter (`with`).
    pub(super) by_filter: Option<&'static str>,
}

impl Scope<'_> {
    /// The index to page by: with the archive's filter when the query has one.
    fn page_index(&self, filtered: bool) -> Option<&'static str> {
        self.indexes.map(|i| match i.by_filter {
            Some(f) if filtered => f,
            _ => i.by_id,
        })
    }

    /// The table, with the index the statement must use where one is named.
    fn from(&self, index: Option<&str>) -> String {
        match index {
            Some(i) => format!("{} FORCE INDEX ({i})", self.table),
            None => self.table.to_string(),
        }
    }
}

/// A value bound to a `?` of a query being built.
enum Bind {
    Text(String),
    Int(i64),
}

/// The conditions selecting an archive range, and their binds in order.
#[derive(Default)]
struct Conditions {
    sql: String,
    binds: Vec<Bind>,
}

impl Conditions {
    fn push(&mut self, condition: &str, binds: impl IntoIterator<Item = Bind>) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
        self.binds.extend(binds);
    }

    fn bind<'q>(
        &self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
        for b in &self.binds {
            query = match b {
                Bind::Text(t) => query.bind(t.clone()),
                Bind::Int(i) => query.bind(*i),
            };
        }
        query
    }
}

/// What a query's ids and times come to: bounds on row ids (each exclusive), or nothing.
enum Range {
    Rows {
        /// The range's own bounds: `after-id`, `before-id`, the times.
        lower: Option<i64>,
        upper: Option<i64>,
        /// RSM's `after` and `before`, which page through the range.
        page_lower: Option<i64>,
        page_upper: Option<i64>,
        /// `ids`: only these rows, if any.
        only: Vec<i64>,
    },
    /// An id the query names is not in the archive.
    UnknownId,
    /// The times exclude every message.
    Empty,
}

fn raise(bound: &mut Option<i64>, to: i64) {
    *bound = Some(bound.map_or(to, |b| b.max(to)));
}

fn lower_to(bound: &mut Option<i64>, to: i64) {
    *bound = Some(bound.map_or(to, |b| b.min(to)));
}

impl SqlDb {
    /// The first (`>=`, `ASC`) or last (`<=`, `DESC`) row of the archive at or beyond
    /// `stamp`, found on the (owner, stamp) index.
    async fn row_at(
        &self,
        scope: &Scope<'_>,
        cmp: &str,
        order: &str,
        stamp: i64,
    ) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT id FROM {} WHERE {} AND stamp {cmp} ? ORDER BY stamp {order}, id {order} LIMIT 1",
            scope.from(scope.indexes.and_then(|i| i.by_stamp)),
            scope.owner
        );
        Ok(self
            .query_scalar(&sql)
            .bind(scope.keys[0])
            .bind(scope.keys[1])
            .bind(stamp)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Resolves the query's archive ids and times to row-id bounds. In an account's
    /// archive stamps never decrease with ids (the append raises them), so `start` and
    /// `end` become the first and last row in that time, found on the (account, stamp)
    /// index: a query far into a large archive does not scan its beginning.
    async fn archive_range(&self, scope: &Scope<'_>, q: &ArchiveQuery) -> Result<Range> {
        let (mut lower, mut upper, mut page_lower, mut page_upper) = (None, None, None, None);
        if let Some(sid) = q.after_id.as_deref() {
            let Some(id) = self.archive_row(scope, sid).await? else {
                return Ok(Range::UnknownId);
            };
            lower = Some(id);
        }
        if let Some(sid) = q.before_id.as_deref() {
            let Some(id) = self.archive_row(scope, sid).await? else {
                return Ok(Range::UnknownId);
            };
            upper = Some(id);
        }
        if let Some(sid) = q.after.as_deref() {
            let Some(id) = self.archive_row(scope, sid).await? else {
                return Ok(Range::UnknownId);
            };
            page_lower = Some(id);
        }
        if let Some(sid) = q.before.as_deref().filter(|b| !b.is_empty()) {
            let Some(id) = self.archive_row(scope, sid).await? else {
                return Ok(Range::UnknownId);
            };
            page_upper = Some(id);
        }
        let mut only = Vec::with_capacity(q.ids.len());
        for sid in &q.ids {
            let Some(id) = self.archive_row(scope, sid).await? else {
                return Ok(Range::UnknownId);
            };
            only.push(id);
        }
        let time = |t: Option<i64>| t.filter(|_| scope.ordered_stamps);
        if let Some(start) = time(q.start) {
            let Some(id) = self.row_at(scope, ">=", "ASC", start).await? else {
                return Ok(Range::Empty);
            };
            raise(&mut lower, id - 1);
        }
        if let Some(end) = time(q.end) {
            let Some(id) = self.row_at(scope, "<=", "DESC", end).await? else {
                return Ok(Range::Empty);
            };
            lower_to(&mut upper, id + 1);
        }
        Ok(Range::Rows {
            lower,
            upper,
            page_lower,
            page_upper,
            only,
        })
    }

    /// The conditions of the range `q` selects: the archive's own `filters` (conditions with
    /// their text binds), the times, `ids` and the row-id bounds.
    fn archive_conditions(
        filters: &[(String, Vec<String>)],
        q: &ArchiveQuery,
        only: &[i64],
        lower: Option<i64>,
        upper: Option<i64>,
    ) -> Conditions {
        let mut c = Conditions::default();
        for (cond, binds) in filters {
            c.push(cond, binds.iter().map(|b| Bind::Text(b.clone())));
        }
        // The stamps too: rows written before stamps were kept in order may lie outside
        // the id bounds' time.
        if let Some(start) = q.start {
            c.push("stamp >= ?", [Bind::Int(start)]);
        }
        if let Some(end) = q.end {
            c.push("stamp <= ?", [Bind::Int(end)]);
        }
        if !only.is_empty() {
            let marks = vec!["?"; only.len()].join(", ");
            c.push(
                &format!("id IN ({marks})"),
                only.iter().map(|id| Bind::Int(*id)),
            );
        }
        if let Some(l) = lower {
            c.push("id > ?", [Bind::Int(l)]);
        }
        if let Some(u) = upper {
            c.push("id < ?", [Bind::Int(u)]);
        }
        c
    }

    async fn archive_count(
        &self,
        scope: &Scope<'_>,
        c: &Conditions,
        below: Option<i64>,
    ) -> Result<u64> {
        // No index named: for a count MariaDB's own choice is the faster one.
        let mut sql = format!(
            "SELECT COUNT(*) FROM {} WHERE {}{}",
            scope.table, scope.owner, c.sql
        );
        if below.is_some() {
            sql.push_str(" AND id < ?");
        }
        let mut query = c.bind(self.query(&sql).bind(scope.keys[0]).bind(scope.keys[1]));
        if let Some(b) = below {
            query = query.bind(b);
        }
        let row = query.fetch_one(&self.pool).await?;
        let n: i64 = row.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One page of an archive (account or room): `columns` selected (besides the row id),
    /// `filters` (conditions with their text binds) added to the query's own bounds, rows
    /// turned into items by `item`. `None` when any id the query names is not in it.
    pub(super) async fn archive_page<T>(
        &self,
        scope: &Scope<'_>,
        columns: &str,
        filters: &[(String, Vec<String>)],
        q: &ArchiveQuery,
        item: impl Fn(&AnyRow) -> Result<T>,
    ) -> Result<Option<ArchivePage<T>>> {
        let (lower, upper, page_lower, page_upper, only) =
            match self.archive_range(scope, q).await? {
                Range::UnknownId => return Ok(None),
                Range::Empty => {
                    return Ok(Some(ArchivePage {
                        items: Vec::new(),
                        complete: true,
                        count: q.count.then_some(0),
                        first_index: None,
                    }))
                }
                Range::Rows {
                    lower,
                    upper,
                    page_lower,
                    page_upper,
                    only,
                } => (lower, upper, page_lower, page_upper, only),
            };
        let backwards = q.before.is_some();
        let max = q.max.min(MAX_PAGE);
        let mut page_lower = page_lower;
        let mut page_upper = page_upper;
        if let Some(l) = lower {
            raise(&mut page_lower, l);
        }
        if let Some(u) = upper {
            lower_to(&mut page_upper, u);
        }
        let page = Self::archive_conditions(filters, q, &only, page_lower, page_upper);
        let mut sql = format!(
            "SELECT id, {columns} FROM {} WHERE {}{}",
            scope.from(scope.page_index(!filters.is_empty())),
            scope.owner,
            page.sql
        );
        // One more than asked: whether it exists tells if the page is the last.
        sql.push_str(if backwards {
            " ORDER BY id DESC LIMIT ?"
        } else {
            " ORDER BY id ASC LIMIT ?"
        });
        let rows = page
            .bind(self.query(&sql).bind(scope.keys[0]).bind(scope.keys[1]))
            .bind(i64::try_from(max + 1).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        let complete = rows.len() <= max;
        let mut first_row: Option<i64> = None;
        let mut items = Vec::with_capacity(rows.len().min(max));
        for r in rows.iter().take(max) {
            let row_id: i64 = r.try_get("id")?;
            lower_to(&mut first_row, row_id);
            items.push(item(r)?);
        }
        if backwards {
            items.reverse();
        }
        let (count, first_index) = if q.count {
            // The range the paging moves through: the query's own bounds, not RSM's.
            let whole = Self::archive_conditions(filters, q, &only, lower, upper);
            let count = self.archive_count(scope, &whole, None).await?;
            let index = match first_row {
                Some(f) => Some(self.archive_count(scope, &whole, Some(f)).await?),
                None => None,
            };
            (Some(count), index)
        } else {
            (None, None)
        };
        Ok(Some(ArchivePage {
            items,
            complete,
            count,
            first_index,
        }))
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
        retry!(
            self.append_archive_once(domain, username, std::slice::from_ref(msg))
                .await
        )
    }

    async fn append_archive_many(&self, rows: &[(String, String, ArchivedMessage)]) -> Result<u64> {
        let mut written = 0;
        for batch in rows.chunks(MAX_BATCH) {
            let refs: Vec<(&str, &str, &ArchivedMessage)> = batch
                .iter()
                .map(|(d, u, m)| (d.as_str(), u.as_str(), m))
                .collect();
            written += retry!(self.append_rows_once(&refs).await)?.0;
        }
        Ok(written)
    }

    async fn append_archive_batch(
        &self,
        domain: &str,
        username: &str,
        msgs: &[ArchivedMessage],
    ) -> Result<()> {
        for batch in msgs.chunks(MAX_BATCH) {
            retry!(self.append_archive_once(domain, username, batch).await)?;
        }
        Ok(())
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

    async fn refresh_archive_statistics(&self) -> Result<()> {
        let sql = match self.dialect {
            Dialect::Mysql => "ANALYZE TABLE archive",
            _ => "ANALYZE archive",
        };
        // MySQL answers ANALYZE TABLE with a result set: fetched, not executed.
        self.query(sql).fetch_all(&self.pool).await?;
        Ok(())
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
        self.expire_rows("archive", "stamp", stamp, limit).await
    }

    async fn trim_archive(
        &self,
        domain: &str,
        username: &str,
        keep: u64,
        limit: usize,
    ) -> Result<u64> {
        // The newest row past the cap, then the rows up to it: two statements, as MySQL
        // cannot select from the table a DELETE deletes from.
        let sql = format!(
            "SELECT id FROM archive WHERE {} ORDER BY id DESC LIMIT 1 OFFSET ?",
            self.archive_account()
        );
        let cut: Option<i64> = self
            .query_scalar(&sql)
            .bind(domain)
            .bind(username)
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .fetch_optional(&self.pool)
            .await?;
        let Some(cut) = cut else {
            return Ok(0);
        };
        let sql = match self.dialect {
            Dialect::Mysql => format!(
                "DELETE FROM archive WHERE {} AND id <= ? ORDER BY id LIMIT ?",
                self.archive_account()
            ),
            _ => format!(
                "DELETE FROM archive WHERE id IN
                 (SELECT id FROM archive WHERE {} AND id <= ? ORDER BY id LIMIT ?)",
                self.archive_account()
            ),
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let r = retry!(self
            .query(&sql)
            .bind(domain)
            .bind(username)
            .bind(cut)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(r.rows_affected())
    }
}
