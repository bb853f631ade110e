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
    /// At most `limit` stored messages with an id above `after_id`, in the order they were
    /// accepted (delivery reads page by page, so memory stays bounded).
    async fn offline_page(
        &self,
        domain: &str,
        username: &str,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<OfflineMessage>>;
    /// All stored messages, in order (administration and tests).
    async fn offline_messages(&self, domain: &str, username: &str) -> Result<Vec<OfflineMessage>> {
        self.offline_page(domain, username, i64::MIN, usize::MAX)
            .await
    }
    /// Deletes the messages up to and including `id` (after they were handed to a session).
    async fn delete_offline(&self, domain: &str, username: &str, up_to_id: i64) -> Result<u64>;
    async fn offline_count(&self, domain: &str, username: &str) -> Result<u64>;
}
