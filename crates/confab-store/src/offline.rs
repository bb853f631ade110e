//! Messages stored for accounts that were offline (XEP-0160).

use crate::Result;
use async_trait::async_trait;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Increasing per store: the delivery order.
    pub id: i64,
    /// The stanza as it was routed (serialized XML, jabber:client).
    pub stanza: String,
    /// When the server accepted it (Unix seconds), for the XEP-0203 delay stamp.
    pub stamp: i64,
}

#[async_trait]
pub trait OfflineStore: Send + Sync {
    /// Stores a message unless the account already holds `quota` of them; returns false when
    /// the quota is reached (the caller bounces the message).
    async fn push_offline(
        &self,
        domain: &str,
        username: &str,
        stanza: &str,
        stamp: i64,
        quota: usize,
    ) -> Result<bool>;
    /// The stored messages in the order they were accepted.
    async fn offline_messages(&self, domain: &str, username: &str) -> Result<Vec<OfflineMessage>>;
    /// Deletes the messages up to and including `id` (after they were handed to a session).
    async fn delete_offline(&self, domain: &str, username: &str, up_to_id: i64) -> Result<u64>;
    async fn offline_count(&self, domain: &str, username: &str) -> Result<u64>;
}
