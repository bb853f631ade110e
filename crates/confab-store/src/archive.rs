//! The message archive of accounts (XEP-0313 MAM): every message an account sent or
//! received, with a stable id, paged with XEP-0059 result sets.

use crate::Result;
use async_trait::async_trait;

/// Most items one query returns, whatever the caller asks: a page is held in memory.
pub const MAX_PAGE: usize = 100;

/// One archived message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedMessage {
    /// The archive's id for it (XEP-0359 stanza-id), unique within the account's archive.
    pub id: String,
    /// The other party: the recipient of a sent message, the sender of a received one
    /// (a full or bare JID as it was addressed).
    pub with: String,
    /// When the server archived it, in Unix microseconds (time filters need sub-second
    /// order).
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
    /// Page size, capped at `MAX_PAGE`.
    pub max: usize,
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
            start: request.start,
            end: request.end,
            after: request.set.after.clone(),
            before: request.set.before.clone(),
            max: request.page_size(max_page),
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
}

impl<T> Default for ArchivePage<T> {
    fn default() -> Self {
        ArchivePage {
            items: Vec::new(),
            complete: false,
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
    /// A page of the account's archive; `None` when `after` or `before` names an id that is
    /// not in this archive (XEP-0313: item-not-found).
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
}
