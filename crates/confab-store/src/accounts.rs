//! Accounts and their authentication secrets.

use crate::Result;
use async_trait::async_trait;
use confab_proto::sasl::ScramCredentials;

/// Accounts per domain. Passwords are never stored: only salted SCRAM keys (one set per
/// hash, so SCRAM-SHA-1 and SCRAM-SHA-256 both work and PLAIN can be verified).
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account; `StoreError::Conflict` if it exists.
    async fn create_account(
        &self,
        domain: &str,
        username: &str,
        creds: &[ScramCredentials],
    ) -> Result<()>;
    /// The stored SCRAM credentials, or `None` if there is no such account.
    async fn credentials(
        &self,
        domain: &str,
        username: &str,
    ) -> Result<Option<Vec<ScramCredentials>>>;
    /// Replaces the credentials; returns false if there is no such account.
    async fn set_credentials(
        &self,
        domain: &str,
        username: &str,
        creds: &[ScramCredentials],
    ) -> Result<bool>;
    /// Deletes the account and everything stored for it; returns false if it did not exist.
    async fn delete_account(&self, domain: &str, username: &str) -> Result<bool>;
    async fn account_exists(&self, domain: &str, username: &str) -> Result<bool>;
    /// The account's generation: a number given at creation and never given again, so a
    /// name deleted and registered anew is a different account. `None`: no such account.
    async fn account_generation(&self, domain: &str, username: &str) -> Result<Option<i64>>;
    /// The iteration count most stored credentials use (`None` without accounts): what an
    /// unknown user's decoy SCRAM exchange shows, so it looks like a real account's.
    async fn common_iterations(&self) -> Result<Option<u32>>;
    /// Usernames of a domain, sorted.
    async fn list_accounts(&self, domain: &str) -> Result<Vec<String>>;
    /// One page of a domain's usernames, sorted, those matching `query.search` only: what a
    /// listing shows without reading every account.
    async fn account_page(&self, domain: &str, query: &AccountQuery) -> Result<Vec<String>>;
    /// How many accounts of `domain` match `search` (all with `None`).
    async fn count_accounts(&self, domain: &str, search: Option<&AccountSearch>) -> Result<u64>;
}

/// Which usernames a listing wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountSearch {
    /// Usernames containing this text.
    Contains(String),
    /// Usernames ending with this text (the part before `@` of a search for `alice@exa`).
    EndsWith(String),
}

impl AccountSearch {
    /// The SQL `LIKE` pattern, with `!` as the escape character (the same in every
    /// backend, unlike `\`, which MySQL's string literals would eat).
    pub fn like_pattern(&self) -> String {
        let (text, suffix_only) = match self {
            AccountSearch::Contains(t) => (t, false),
            AccountSearch::EndsWith(t) => (t, true),
        };
        let mut p = String::with_capacity(text.len() + 2);
        p.push('%');
        for c in text.chars() {
            if matches!(c, '!' | '%' | '_') {
                p.push('!');
            }
            p.push(c);
        }
        if !suffix_only {
            p.push('%');
        }
        p
    }
}

/// One page of an account listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccountQuery {
    pub search: Option<AccountSearch>,
    /// Accounts skipped (sorted by username).
    pub offset: u64,
    /// Most accounts returned.
    pub limit: u32,
}
