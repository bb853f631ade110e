//! Small documents kept per account (vCard, private XML, last activity, block list, ...) or
//! per served domain (invite tokens, ...): Prosody's `open_store` in one trait. Each module
//! picks its own `kind`, so modules never see each other's data.

use crate::Result;
use async_trait::async_trait;

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
