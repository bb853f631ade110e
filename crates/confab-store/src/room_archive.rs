//! The archives of group chat rooms (XEP-0313 §6 "MUC Archives"): every message a room
//! passed on to its occupants, once, with a stable id (the XEP-0359 stanza-id the room put
//! on it), paged like an account's archive (`ArchiveQuery`, `ArchivePage`).

use crate::archive::{ArchivePage, ArchiveQuery};
use crate::Result;
use async_trait::async_trait;

/// One message of a room's archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomMessage {
    /// The archive's id for it (the stanza-id), unique within the room's archive.
    pub id: String,
    /// The sender's nick when it was sent (what a `with` filter matches).
    pub nick: String,
    /// The sender's real bare JID (shown to those who may see real JIDs).
    pub jid: String,
    /// When the room archived it, in Unix microseconds.
    pub stamp: i64,
    /// The message as the room passed it on (serialized XML, jabber:client, no `to`).
    pub stanza: String,
}

/// Rooms are named by their service domain (`conference.example.org`) and node (`room`).
/// One room's messages are appended one at a time, in the room's order (the MUC module
/// queues them under the room's lock for one writing task), so the archive's order is the
/// room's.
#[async_trait]
pub trait RoomArchiveStore: Send + Sync {
    async fn append_room_message(&self, service: &str, room: &str, msg: &RoomMessage)
        -> Result<()>;
    /// A page of the room's archive (`query.with` is a nick, `query.sender` a real bare
    /// JID); `None` when `after` or `before` names an id that is not in this archive.
    async fn query_room_archive(
        &self,
        service: &str,
        room: &str,
        query: &ArchiveQuery,
    ) -> Result<Option<ArchivePage<RoomMessage>>>;
    /// The message with this id, if it is in the room's archive.
    async fn room_message(
        &self,
        service: &str,
        room: &str,
        id: &str,
    ) -> Result<Option<RoomMessage>>;
    /// Replaces the stored stanza of message `id` (a moderated message becomes a
    /// tombstone); false if there is no such message.
    async fn replace_room_message(
        &self,
        service: &str,
        room: &str,
        id: &str,
        stanza: &str,
    ) -> Result<bool>;
    /// Deletes the room's whole archive; returns how many messages went.
    async fn delete_room_archive(&self, service: &str, room: &str) -> Result<u64>;
    /// Deletes messages of every room archived before `stamp` (Unix microseconds), at most
    /// `limit` of them per call (retention; the caller repeats while it deletes).
    async fn expire_room_archives(&self, stamp: i64, limit: usize) -> Result<u64>;
    /// Every (service, room) with an archive, sorted (export).
    async fn room_archives(&self) -> Result<Vec<(String, String)>>;
}
