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

/// Deletes an account on a running server (in-band removal, admin console): every session
/// of it ends with `<not-authorized/>` (XEP-0077 §3.2), every module's `account_deleted`
/// runs while the account's data still exists (so e.g. subscriptions can be cancelled), then
/// the account and, by cascade, all its stored data go. The CLI, which runs without a
/// server, uses `delete` instead.
pub async fn delete_account_live(
    ctx: &crate::ServerCtx,
    jid: &BareJid,
) -> Result<(), AccountError> {
    let (d, u) = parts(jid);
    if u.is_empty() || !ctx.stores.accounts.account_exists(d, u).await? {
        return Err(AccountError::NotFound);
    }
    end_sessions(ctx, jid);
    let listeners = ctx.registry.lifecycle_listeners().to_vec();
    for l in listeners {
        l.account_deleted(ctx, jid).await;
    }
    delete(&ctx.stores, jid).await?;
    // A login that completed meanwhile must not outlive the account.
    end_sessions(ctx, jid);
    Ok(())
}

fn end_sessions(ctx: &crate::ServerCtx, jid: &BareJid) {
    ctx.router.end_unbound(jid);
    for s in ctx.router.sessions_of(jid) {
        s.close(confab_proto::error::StreamError::with_text(
            confab_proto::error::StreamErrorCondition::NotAuthorized,
            "the account was deleted",
        ));
    }
}
