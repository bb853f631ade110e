//! Small documents kept per account (vCard, private XML, last activity, block list, ...) or
//! per served domain (invite tokens, ...): Prosody's `open_store` in one trait. Each module
//! picks its own `kind`, so modules never see each other's data.

use crate::Result;
use async_trait::async_trait;

/// One per-account document to write (`DataStore::set_account_data_batch`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountDataWrite {
    pub domain: String,
    pub username: String,
    pub kind: String,
    pub key: String,
    pub value: String,
}

#[async_trait]
pub trait DataStore: Send + Sync {
    async fn get_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
    ) -> Result<Option<String>>;
    async fn set_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
        value: &str,
    ) -> Result<()>;
    /// Writes many documents at once (one transaction where the backend has them); those
    /// of accounts that do not exist are skipped, not an error. Returns how many were
    /// written.
    async fn set_account_data_batch(&self, items: &[AccountDataWrite]) -> Result<usize> {
        let mut written = 0;
        for w in items {
            match self
                .set_account_data(&w.domain, &w.username, &w.kind, &w.key, &w.value)
                .await
            {
                Ok(()) => written += 1,
                Err(crate::StoreError::NoAccount) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Writes a document that need not be durable at once (last activity, the last
    /// presence): a store that writes behind (`WriteBehind`) keeps it in memory and writes it
    /// with others in one batch shortly after; reads see it at once either way. Elsewhere
    /// the same as `set_account_data`.
    async fn set_account_data_lazily(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
        value: &str,
    ) -> Result<()> {
        self.set_account_data(domain, username, kind, key, value)
            .await
    }

    /// Writes whatever is held back (`set_account_data_lazily`) now.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Drops what is held back for an account (it was deleted, or is created anew): a late
    /// write of its old sessions must not reach a new account of the same name.
    fn forget_held(&self, _domain: &str, _username: &str) {}

    /// Returns false if there was nothing to delete.
    async fn delete_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
        key: &str,
    ) -> Result<bool>;
    /// All (key, value) pairs of this kind for the account, sorted by key.
    async fn list_account_data(
        &self,
        domain: &str,
        username: &str,
        kind: &str,
    ) -> Result<Vec<(String, String)>>;

    /// Every document of the account as (kind, key, value), sorted by kind and key: what an
    /// export carries, whichever module wrote it.
    async fn all_account_data(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Vec<(String, String, String)>>;

    async fn get_host_data(&self, domain: &str, kind: &str, key: &str) -> Result<Option<String>>;
    async fn set_host_data(&self, domain: &str, kind: &str, key: &str, value: &str) -> Result<()>;
    async fn delete_host_data(&self, domain: &str, kind: &str, key: &str) -> Result<bool>;
    async fn list_host_data(&self, domain: &str, kind: &str) -> Result<Vec<(String, String)>>;
    /// Every domain that holds per-domain documents (served domains and the service domains
    /// of modules, such as `conference.example.org`), sorted.
    async fn host_data_domains(&self) -> Result<Vec<String>>;
    /// Every document of the domain as (kind, key, value), sorted by kind and key.
    async fn all_host_data(&self, domain: &str) -> Result<Vec<(String, String, String)>>;
}
