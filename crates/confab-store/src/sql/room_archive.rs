//! The rooms' archives: append, page by (room, id) with the account archive's pager,
//! replace one message (moderation), delete a room's.

use super::archive::{Indexes, Scope};
use super::dialect::Dialect;
use super::{retry, SqlDb};
use crate::archive::{ArchivePage, ArchiveQuery};
use crate::room_archive::{RoomArchiveStore, RoomMessage};
use crate::{Result, StoreError};
use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

const COLUMNS: &str = "sid, nick, jid, stamp, stanza";

fn room_message(r: &AnyRow) -> Result<RoomMessage> {
    Ok(RoomMessage {
        id: r.try_get("sid")?,
        nick: r.try_get("nick")?,
        jid: r.try_get("jid")?,
        stamp: r.try_get("stamp")?,
        stanza: r.try_get("stanza")?,
    })
}

impl SqlDb {
    /// One room's rows; in MySQL through the hash its indexes are built on.
    fn room_scope<'a>(&self, service: &'a str, room: &'a str) -> Scope<'a> {
        Scope {
            table: "room_archive",
            owner: match self.dialect {
                Dialect::Mysql => "room_key = UNHEX(SHA2(CONCAT_WS(X'00', ?, ?), 256))",
                _ => "service = ? AND room = ?",
            },
            keys: [service, room],
            // Appended with the time of the moment, not raised: time filters stay plain
            // conditions.
            ordered_stamps: false,
            indexes: (self.dialect == Dialect::Mysql).then_some(Indexes {
                by_id: "room_archive_by_room",
                by_sid: "room_archive_by_sid",
                by_stamp: None,
                by_filter: None,
            }),
        }
    }
}

#[async_trait]
impl RoomArchiveStore for SqlDb {
    async fn append_room_message(
        &self,
        service: &str,
        room: &str,
        msg: &RoomMessage,
    ) -> Result<()> {
        retry!(self
            .query(
                "INSERT INTO room_archive (service, room, sid, nick, jid, stamp, stanza)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(service)
            .bind(room)
            .bind(msg.id.as_str())
            .bind(msg.nick.as_str())
            .bind(msg.jid.as_str())
            .bind(msg.stamp)
            .bind(msg.stanza.as_str())
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(())
    }

    async fn query_room_archive(
        &self,
        service: &str,
        room: &str,
        q: &ArchiveQuery,
    ) -> Result<Option<ArchivePage<RoomMessage>>> {
        let nicks = q.with.iter().map(|nick| ("nick = ?", nick));
        let senders = q.sender.iter().map(|jid| ("jid = ?", jid));
        let filters: Vec<(String, Vec<String>)> = nicks
            .chain(senders)
            .map(|(cond, v)| (cond.to_string(), vec![v.clone()]))
            .collect();
        let scope = self.room_scope(service, room);
        self.archive_page(&scope, COLUMNS, &filters, q, room_message)
            .await
    }

    async fn room_message(
        &self,
        service: &str,
        room: &str,
        id: &str,
    ) -> Result<Option<RoomMessage>> {
        let scope = self.room_scope(service, room);
        let sql = format!(
            "SELECT {COLUMNS} FROM room_archive WHERE {} AND sid = ?",
            scope.owner
        );
        let row = self
            .query(&sql)
            .bind(service)
            .bind(room)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(room_message).transpose()
    }

    async fn replace_room_message(
        &self,
        service: &str,
        room: &str,
        id: &str,
        stanza: &str,
    ) -> Result<bool> {
        // By row id: MySQL counts only changed rows as affected, so the count cannot say
        // whether the message exists.
        let scope = self.room_scope(service, room);
        let Some(row) = self.archive_row(&scope, id).await? else {
            return Ok(false);
        };
        retry!(self
            .query("UPDATE room_archive SET stanza = ? WHERE id = ?")
            .bind(stanza)
            .bind(row)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(true)
    }

    async fn delete_room_archive(&self, service: &str, room: &str) -> Result<u64> {
        let scope = self.room_scope(service, room);
        let sql = format!("DELETE FROM room_archive WHERE {}", scope.owner);
        let r = retry!(self
            .query(&sql)
            .bind(service)
            .bind(room)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from))?;
        Ok(r.rows_affected())
    }

    async fn expire_room_archives(&self, stamp: i64, limit: usize) -> Result<u64> {
        // Oldest first, by `room_archive_by_stamp`: a batch reads what it deletes, and a
        // sweep with nothing to delete reads one index entry, not the whole table.
        self.expire_rows("room_archive", "stamp", stamp, limit)
            .await
    }

    async fn room_archives(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(self.dialect.sql(
            "SELECT DISTINCT service, room FROM room_archive ORDER BY service, room",
        )))
        .fetch_all(&self.pool)
        .await?)
    }
}
