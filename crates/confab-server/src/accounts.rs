//! Account administration shared by the CLI, registration and the admin console: every
//! password becomes salted SCRAM-SHA-1 and SCRAM-SHA-256 keys before it is stored.

use confab_proto::jid::BareJid;
use confab_proto::sasl::{ScramCredentials, ScramHash};
use confab_store::{StoreError, Stores};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("'{0}' is not a valid account address (user@domain)")]
    InvalidJid(String),
    #[error("{0} is not a domain served here")]
    UnknownDomain(String),
    #[error("the account already exists")]
    Exists,
    #[error("no such account")]
    NotFound,
    #[error("the password is not acceptable (empty or not valid SASLprep)")]
    BadPassword,
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// Parses `user@domain`, normalised, and checks the domain is served.
pub fn parse_account(s: &str, domains: &[String]) -> Result<BareJid, AccountError> {
    let jid = BareJid::new(s).map_err(|_| AccountError::InvalidJid(s.to_string()))?;
    if jid.node().is_none() {
        return Err(AccountError::InvalidJid(s.to_string()));
    }
    if !domains.iter().any(|d| d == jid.domain().as_str()) {
        return Err(AccountError::UnknownDomain(jid.domain().to_string()));
    }
    Ok(jid)
}

pub fn make_credentials(
    password: &str,
    iterations: u32,
) -> Result<Vec<ScramCredentials>, AccountError> {
    if password.is_empty() {
        return Err(AccountError::BadPassword);
    }
    [ScramHash::Sha1, ScramHash::Sha256]
        .into_iter()
        .map(|h| {
            ScramCredentials::new_random(h, password, iterations)
                .map_err(|_| AccountError::BadPassword)
        })
        .collect()
}

fn parts(jid: &BareJid) -> (&str, &str) {
    (
        jid.domain().as_str(),
        jid.node().map(|n| n.as_str()).unwrap_or_default(),
    )
}

pub async fn create(
    stores: &Stores,
    jid: &BareJid,
    password: &str,
    iterations: u32,
) -> Result<(), AccountError> {
    let creds = make_credentials(password, iterations)?;
    let (d, u) = parts(jid);
    match stores.accounts.create_account(d, u, &creds).await {
        Err(StoreError::Conflict) => Err(AccountError::Exists),
        other => Ok(other?),
    }
}

pub async fn set_password(
    stores: &Stores,
    jid: &BareJid,
    password: &str,
    iterations: u32,
) -> Result<(), AccountError> {
    let creds = make_credentials(password, iterations)?;
    let (d, u) = parts(jid);
    if stores.accounts.set_credentials(d, u, &creds).await? {
        Ok(())
    } else {
        Err(AccountError::NotFound)
    }
}

pub async fn delete(stores: &Stores, jid: &BareJid) -> Result<(), AccountError> {
    let (d, u) = parts(jid);
    if stores.accounts.delete_account(d, u).await? {
        Ok(())
    } else {
        Err(AccountError::NotFound)
    }
}
