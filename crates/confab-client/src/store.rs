//! Optional local storage in SQLite (cargo feature `storage`), XMPPFramework's Core Data
//! storage counterpart: the roster with its version, so the next login asks only for what
//! changed (RFC 6121 §2.6), and messages — one-to-one and group chat — with the archive ids
//! (XEP-0313/XEP-0359) that let [`LocalStore::catch_up`] resume after the last message it
//! stored, never storing one twice.
//!
//! One file may hold several accounts: every row is keyed by the account's bare JID.

use crate::client::Client;
use crate::mam::{ArchivedMessage, Mam, MamQuery};
use crate::roster::Roster;
use confab_proto::payloads::roster::{RosterItem, RosterQuery};
use confab_proto::{BareJid, Element, Limits};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const SID_NS: &str = "urn:xmpp:sid:0";

/// Why the local store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not an SQLite database, or is damaged.
    #[error("the local store is corrupt or not a database: {0}")]
    Corrupt(String),
    /// Another process holds the database locked for longer than the busy timeout.
    #[error("the local store is locked by another process: {0}")]
    Locked(String),
    /// The file cannot be opened or created (permissions, missing directory…).
    #[error("cannot open the local store: {0}")]
    Open(String),
    /// Any other database error.
    #[error("local store: {0}")]
    Database(String),
    /// Catching up with the archive failed on the client's side.
    #[error(transparent)]
    Client(#[from] crate::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) => {
                // SQLite's primary result code is the low byte of the extended one.
                let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
                match code {
                    5 | 6 => StoreError::Locked(e.to_string()),
                    11 | 26 => StoreError::Corrupt(e.to_string()),
                    14 => StoreError::Open(e.to_string()),
                    _ => StoreError::Database(e.to_string()),
                }
            }
            sqlx::Error::Io(_) => StoreError::Open(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// Which kind of conversation a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConversationKind {
    /// One-to-one.
    Chat,
    /// A group chat room.
    GroupChat,
}

impl ConversationKind {
    fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Chat => "chat",
            ConversationKind::GroupChat => "groupchat",
        }
    }
}

/// A message as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its position in the store (grows with each message stored); page backwards with it.
    pub seq: i64,
    /// The contact's bare JID, or the room's.
    pub conversation: String,
    /// One-to-one or group chat.
    pub kind: ConversationKind,
    /// Its id in the archive that holds it (the account's, or the room's), if known.
    pub archive_id: Option<String>,
    /// The sender's id (origin-id, else the `id` attribute), if any.
    pub message_id: Option<String>,
    /// Who sent it: a bare or full JID, an occupant's room JID in group chat.
    pub from: String,
    /// Sent by this account.
    pub outgoing: bool,
    /// The text.
    pub body: Option<String>,
    /// When it was sent (Unix seconds), if known.
    pub stamp: Option<i64>,
}

/// What [`LocalStore::store_message`] stores; `seq` is assigned.
pub type NewMessage = StoredMessage;

/// Options of [`LocalStore::open_with`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long to wait for another process's lock before [`StoreError::Locked`].
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            busy_timeout: Duration::from_secs(2),
        }
    }
}

/// The local SQLite store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LocalStore {
    pool: SqlitePool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS roster (
    account TEXT PRIMARY KEY NOT NULL,
    ver TEXT,
    query TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    conversation TEXT NOT NULL,
    kind TEXT NOT NULL,
    archive TEXT NOT NULL,
    archive_id TEXT,
    message_id TEXT,
    from_jid TEXT NOT NULL,
    outgoing INTEGER NOT NULL,
    body TEXT,
    stamp INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_archive_id
    ON messages (account, archive, archive_id);
CREATE INDEX IF NOT EXISTS messages_sender_id
    ON messages (account, conversation, from_jid, message_id);
CREATE INDEX IF NOT EXISTS messages_conversation
    ON messages (account, conversation, seq);
CREATE TABLE IF NOT EXISTS archive_sync (
    account TEXT NOT NULL,
    archive TEXT NOT NULL,
    last_id TEXT NOT NULL,
    PRIMARY KEY (account, archive)
);
PRAGMA user_version = 1;
";

/// Most pages [`LocalStore::catch_up`] fetches in one call (bounds a first sync of a
/// huge archive; call again to go on).
pub const MAX_CATCH_UP_PAGES: usize = 100;

impl LocalStore {
    /// Opens (creating it if absent) the store at `path`, with default options.
    pub async fn open(path: &Path) -> Result<LocalStore, StoreError> {
        Self::open_with(path, &StoreOptions::default()).await
    }

    /// Opens (creating it if absent) the store at `path`. A file that is not an SQLite
    /// database is [`StoreError::Corrupt`]; one another process keeps locked is
    /// [`StoreError::Locked`] after `busy_timeout`.
    pub async fn open_with(path: &Path, options: &StoreOptions) -> Result<LocalStore, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(options.busy_timeout);
        // One connection: the client writes rarely, and SQLite serializes writers anyway.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.busy_timeout + Duration::from_secs(5))
            .connect_with(connect)
            .await?;
        let store = LocalStore { pool };
        // A write right away (in one immediate transaction), so a damaged or locked file
        // is reported here rather than at the first message.
        let mut conn = store.pool.acquire().await?;
        sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        if let Err(e) = sqlx::raw_sql(SCHEMA).execute(&mut *conn).await {
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            return Err(e.into());
        }
        sqlx::raw_sql("COMMIT").execute(&mut *conn).await?;
        drop(conn);
        Ok(store)
    }

    /// Closes the database (waits for the connection to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The stored roster of `account`: its version and items (none stored: `None`, empty).
    pub async fn load_roster(
        &self,
        account: &BareJid,
    ) -> Result<(Option<String>, Vec<RosterItem>), StoreError> {
        let row = sqlx::query("SELECT query FROM roster WHERE account = ?")
            .bind(account.as_str())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok((None, Vec::new()));
        };
        let xml: String = row.try_get("query")?;
        let el = confab_proto::parser::parse_fragment(
            &xml,
            confab_proto::ns::CLIENT,
            &Limits::default(),
        )
        .ok_or_else(|| StoreError::Corrupt("stored roster is not XML".into()))?;
        let q = RosterQuery::try_from(&el)
            .map_err(|e| StoreError::Corrupt(format!("stored roster: {e}")))?;
        Ok((q.ver, q.items))
    }

    /// Replaces the stored roster of `account`.
    pub async fn save_roster(
        &self,
        account: &BareJid,
        ver: Option<&str>,
        items: Vec<RosterItem>,
    ) -> Result<(), StoreError> {
        let q: Element = RosterQuery {
            ver: ver.map(str::to_string),
            items,
        }
        .into();
        sqlx::query(
            "INSERT INTO roster (account, ver, query) VALUES (?, ?, ?) \
             ON CONFLICT (account) DO UPDATE SET ver = excluded.ver, query = excluded.query",
        )
        .bind(account.as_str())
        .bind(ver)
        .bind(q.to_xml(confab_proto::ns::CLIENT))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A roster module primed with `account`'s stored roster (so the next
    /// [`Roster::fetch`] asks only for changes when the server offers versioning).
    pub async fn roster(&self, account: &BareJid) -> Result<Arc<Roster>, StoreError> {
        let (ver, items) = self.load_roster(account).await?;
        Ok(Roster::with_cache(ver, items))
    }

    /// Saves `roster` (version and items) for `account` now.
    pub async fn save_roster_of(
        &self,
        account: &BareJid,
        roster: &Roster,
    ) -> Result<(), StoreError> {
        self.save_roster(account, roster.version().as_deref(), roster.items())
            .await
    }

    /// Keeps `account`'s stored roster up to date: saves it after each change the roster
    /// module reports, until the module is dropped. Failures are logged.
    pub fn keep_roster(
        &self,
        account: BareJid,
        roster: &Arc<Roster>,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        let mut changes = roster.changes();
        let weak = Arc::downgrade(roster);
        tokio::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
                let Some(roster) = weak.upgrade() else { return };
                if let Err(e) = store.save_roster_of(&account, &roster).await {
                    tracing::warn!(error = %e, "saving the roster locally failed");
                }
            }
        })
    }

    /// Stores a message unless it is stored already: the same archive id in the same
    /// archive, or the same sender's id from the same sender in the same conversation
    /// (then the archive id is filled in if it was missing). `archive` names whose archive
    /// `archive_id` is from: `None` the account's own, else the room's bare JID. Returns
    /// whether it was new.
    pub async fn store_message(
        &self,
        account: &BareJid,
        archive: Option<&BareJid>,
        m: &NewMessage,
    ) -> Result<bool, StoreError> {
        let archive = archive.map(|a| a.to_string()).unwrap_or_default();
        let mut tx = self.pool.begin().await?;
        if let Some(id) = &m.archive_id {
            let known = sqlx::query(
                "SELECT 1 FROM messages WHERE account = ? AND archive = ? AND archive_id = ?",
            )
            .bind(account.as_str())
            .bind(&archive)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if known.is_some() {
                return Ok(false);
            }
        }
        if let Some(mid) = &m.message_id {
            let same = sqlx::query(
                "SELECT seq, archive_id FROM messages \
                 WHERE account = ? AND conversation = ? AND from_jid = ? AND message_id = ?",
            )
            .bind(account.as_str())
            .bind(&m.conversation)
            .bind(&m.from)
            .bind(mid)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = same {
                let had: Option<String> = row.try_get("archive_id")?;
                if had.is_none() && m.archive_id.is_some() {
                    let seq: i64 = row.try_get("seq")?;
                    sqlx::query("UPDATE messages SET archive_id = ?, archive = ? WHERE seq = ?")
                        .bind(&m.archive_id)
                        .bind(&archive)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                return Ok(false);
            }
        }
        sqlx::query(
            "INSERT INTO messages (account, conversation, kind, archive, archive_id, message_id, \
             from_jid, outgoing, body, stamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(account.as_str())
        .bind(&m.conversation)
        .bind(m.kind.as_str())
        .bind(&archive)
        .bind(&m.archive_id)
        .bind(&m.message_id)
        .bind(&m.from)
        .bind(m.outgoing)
        .bind(&m.body)
        .bind(m.stamp)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Up to `limit` messages of a conversation before `before` (a [`StoredMessage::seq`];
    /// `None`: the newest), oldest first.
    pub async fn messages(
        &self,
        account: &BareJid,
        conversation: &BareJid,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, conversation, kind, archive_id, message_id, from_jid, outgoing, body, stamp \
             FROM messages WHERE account = ? AND conversation = ? AND seq < ? \
             ORDER BY seq DESC LIMIT ?",
        )
        .bind(account.as_str())
        .bind(conversation.as_str())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| -> Result<StoredMessage, sqlx::Error> {
                let kind: String = r.try_get("kind")?;
                Ok(StoredMessage {
                    seq: r.try_get("seq")?,
                    conversation: r.try_get("conversation")?,
                    kind: if kind == "groupchat" {
                        ConversationKind::GroupChat
                    } else {
                        ConversationKind::Chat
                    },
                    archive_id: r.try_get("archive_id")?,
                    message_id: r.try_get("message_id")?,
                    from: r.try_get("from_jid")?,
                    outgoing: r.try_get("outgoing")?,
                    body: r.try_get("body")?,
                    stamp: r.try_get("stamp")?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// The id of the last archived message a catch-up stored from this archive (`None`:
    /// the account's own).
    pub async fn last_archive_id(
        &self,
        account: &BareJid,
        archive: Option<&BareJid>,
    ) -> Result<Option<String>, StoreError> {
        let archive = archive.map(|a| a.to_string()).unwrap_or_default();
        let row = sqlx::query("SELECT last_id FROM archive_sync WHERE account = ? AND archive = ?")
            .bind(account.as_str())
            .bind(archive)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("last_id")?),
            None => None,
        })
    }

    async fn set_last_archive_id(
        &self,
        account: &BareJid,
        archive: Option<&BareJid>,
        id: &str,
    ) -> Result<(), StoreError> {
        let archive = archive.map(|a| a.to_string()).unwrap_or_default();
        sqlx::query(
            "INSERT INTO archive_sync (account, archive, last_id) VALUES (?, ?, ?) \
             ON CONFLICT (account, archive) DO UPDATE SET last_id = excluded.last_id",
        )
        .bind(account.as_str())
        .bind(archive)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Fetches from the server archive (`archive` `None`: the account's, else a room's)
    /// everything after the last message a previous catch-up stored, `page_size` at a
    /// time (at most [`MAX_CATCH_UP_PAGES`] pages), and stores the messages with a body.
    /// Returns how many were new.
    pub async fn catch_up(
        &self,
        client: &Client,
        mam: &Mam,
        archive: Option<&BareJid>,
        page_size: usize,
    ) -> Result<usize, StoreError> {
        let account = client.jid().to_bare();
        let mut q = MamQuery {
            max: Some(page_size.max(1)),
            after: self.last_archive_id(&account, archive).await?,
            ..MamQuery::default()
        };
        let mut stored = 0;
        for _ in 0..MAX_CATCH_UP_PAGES {
            let page = mam.query(client, archive, &q).await?;
            for m in &page.messages {
                if let Some(new) = from_archive(&account, archive, m) {
                    if self.store_message(&account, archive, &new).await? {
                        stored += 1;
                    }
                }
            }
            if let Some(last) = &page.last {
                self.set_last_archive_id(&account, archive, last).await?;
            }
            match q.next_page(&page) {
                Some(next) if !page.complete && !page.messages.is_empty() => q = next,
                _ => break,
            }
        }
        Ok(stored)
    }
}

/// The sender's id of a message: its XEP-0359 origin-id, else its `id` attribute.
pub fn message_id_of(message: &Element) -> Option<String> {
    message
        .get_child("origin-id", SID_NS)
        .and_then(|o| o.get_attr("id"))
        .or_else(|| message.get_attr("id"))
        .map(str::to_string)
}

/// What to store of an archived message; `None` without a body or addresses.
pub fn from_archive(
    account: &BareJid,
    room: Option<&BareJid>,
    m: &ArchivedMessage,
) -> Option<NewMessage> {
    let body = m.body.clone()?;
    let from = m.from.clone()?;
    let (conversation, kind, outgoing) = match room {
        Some(r) => (r.to_string(), ConversationKind::GroupChat, false),
        None => {
            let outgoing = from.to_bare() == *account;
            let peer = if outgoing {
                m.to.clone()?.to_bare()
            } else {
                from.to_bare()
            };
            (peer.to_string(), ConversationKind::Chat, outgoing)
        }
    };
    Some(StoredMessage {
        seq: 0,
        conversation,
        kind,
        archive_id: Some(m.archive_id.clone()),
        message_id: message_id_of(&m.message),
        from: if room.is_some() {
            from.to_string()
        } else {
            from.to_bare().to_string()
        },
        outgoing,
        body: Some(body),
        stamp: m.stamp,
    })
}
