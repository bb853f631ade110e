//! The message archive of accounts (XEP-0313 MAM): every message an account sent or
//! received, with a stable id, paged with XEP-0059 result sets.

use crate::Result;
use async_trait::async_trait;

/// Most items one query returns, whatever the caller asks: a page is held in memory.
pub const MAX_PAGE: usize = 100;

/// Most messages `append_archive_batch` writes in one transaction.
pub const MAX_BATCH: usize = 10_000;

/// One archived message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The archive's id for it (XEP-0359 stanza-id), unique within the account's archive.
    pub id: String,
    /// The other party: the recipient of a sent message, the sender of a received one
    /// (a full or bare JID as it was addressed).
    pub with: String,
    /// When the server archived it, in Unix microseconds (time filters need sub-second
    /// order). Within an account, stamps never decrease in archive order: the store
    /// raises a stamp that is older than the account's newest (a clock stepping back), so
    /// time filters can be answered from the index.
    pub stamp: i64,
    /// The message as it was routed (serialized XML, jabber:client).
    pub stanza: String,
}

/// What to return from an account's archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only messages with this JID: a bare JID matches every resource of it, a full JID
    /// only itself (XEP-0313 §4.1.1). In a room's archive: the sender's nick.
    pub with: Option<String>,
    /// A room's archive only: messages whose sender's real bare JID is this (XEP-0313 §6,
    /// `with` naming a real JID, for those who may see real JIDs). Account archives
    /// ignore it.
    pub sender: Option<String>,
    /// Only messages archived at or after this time (Unix microseconds).
    pub start: Option<i64>,
    /// Only messages archived at or before this time (Unix microseconds).
    pub end: Option<i64>,
    /// Only messages after the one with this id.
    pub after: Option<String>,
    /// Only messages before the one with this id; `Some("")` (an empty `<before/>`) asks
    /// for the last page. When set, the page is the newest of the range rather than the
    /// oldest.
    pub before: Option<String>,
    /// Only messages after the one with this id (XEP-0313 `after-id`): a bound of the
    /// range, unlike `after`, which pages through it.
    pub after_id: Option<String>,
    /// Only messages before the one with this id (XEP-0313 `before-id`); the page is still
    /// the oldest of the range.
    pub before_id: Option<String>,
    /// Only these messages (XEP-0313 `ids`); empty means no such filter.
    pub ids: Vec<String>,
    /// Page size, capped at `MAX_PAGE`.
    pub max: usize,
    /// Also count the whole range and the position of the page's first item in it
    /// (XEP-0059 `<count/>` and `<first index/>`): costs a scan of the range.
    pub count: bool,
}

impl ArchiveQuery {
    /// The query a client's MAM request asks for; `with` as the archive matches it (a JID
    /// for an account's, a nick for a room's), pages at most `max_page`.
    pub fn from_request(
        request: &confab_proto::payloads::mam::Query,
        with: Option<String>,
        max_page: usize,
    ) -> ArchiveQuery {
        ArchiveQuery {
            with,
            sender: None,
            start: request.start,
            end: request.end,
            after: request.set.after.clone(),
            before: request.set.before.clone(),
            after_id: request.after_id.clone(),
            before_id: request.before_id.clone(),
            ids: request.ids.clone(),
            max: request.page_size(max_page),
            // XEP-0059 §2.7: `<max>0</max>` asks for the count alone.
            count: request.set.max == Some(0),
        }
    }
}

/// A page of results, always oldest first (of an account's archive, or of a room's:
/// `ArchivePage<RoomMessage>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivePage<T = ArchivedMessage> {
    pub items: Vec<T>,
    /// Whether the page reaches the end of the range in the direction of paging (the
    /// newest matching message going forwards, the oldest with `before`).
    pub complete: bool,
    /// With `ArchiveQuery::count`: how many messages the range holds...
    pub count: Option<u64>,
    /// ...and how many of them come before the page's first item.
    pub first_index: Option<u64>,
}

impl<T> Default for ArchivePage<T> {
    fn default() -> Self {
        ArchivePage {
            items: Vec::new(),
            complete: false,
            count: None,
            first_index: None,
        }
    }
}

#[async_trait]
pub trait ArchiveStore: Send + Sync {
    /// Appends a message to the account's archive (`StoreError::NoAccount` if there is no
    /// such account).
    async fn append_archive(
        &self,
        domain: &str,
        username: &str,
        msg: &ArchivedMessage,
    ) -> Result<()>;
    /// Appends messages of any accounts in order (the server's archive writer gathers them
    /// from many conversations), in transactions of up to `MAX_BATCH`; messages of accounts
    /// that do not exist (deleted meanwhile) are left out. Returns how many were written.
    async fn append_archive_many(&self, rows: &[(String, String, ArchivedMessage)]) -> Result<u64>;
    /// Appends messages in order (imports, moving in from another server), in
    /// transactions of up to `MAX_BATCH`: a failure leaves the earlier batches written.
    /// Import into an empty archive, oldest first: stamps older than the archive's newest
    /// are raised to it (stamps never decrease within an account).
    async fn append_archive_batch(
        &self,
        domain: &str,
        username: &str,
        msgs: &[ArchivedMessage],
    ) -> Result<()>;
    /// Refreshes the database's statistics of the archive, so the planner sees a large
    /// import at once (PostgreSQL otherwise plans with the empty table's until autovacuum
    /// analyzes it: seconds per page instead of well under one millisecond).
    async fn refresh_archive_statistics(&self) -> Result<()>;
    /// A page of the account's archive; `None` when any id the query names (`after`,
    /// `before`, `after_id`, `before_id`, `ids`) is not in this archive (XEP-0313:
    /// item-not-found).
    async fn query_archive(
        &self,
        domain: &str,
        username: &str,
        query: &ArchiveQuery,
    ) -> Result<Option<ArchivePage>>;
    /// Deletes the account's whole archive; returns how many messages went.
    async fn delete_archive(&self, domain: &str, username: &str) -> Result<u64>;
    /// Deletes messages archived before `stamp` (Unix microseconds) in every account, at
    /// most `limit` of them per call (retention; the caller repeats while it deletes).
    async fn expire_archive(&self, stamp: i64, limit: usize) -> Result<u64>;
    /// Deletes the account's oldest messages beyond the newest `keep`, at most `limit` of
    /// them per call (a per-account cap; the caller repeats while it deletes).
    async fn trim_archive(
        &self,
        domain: &str,
        username: &str,
        keep: u64,
        limit: usize,
    ) -> Result<u64>;
}
