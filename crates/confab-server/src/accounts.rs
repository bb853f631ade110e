//! Account administration shared by the CLI, registration and the admin console: every
//! password becomes salted SCRAM-SHA-1 and SCRAM-SHA-256 keys before it is stored.

use confab_proto::jid::BareJid;
use confab_proto::sasl::{saslprep, ScramCredentials, ScramHash};
use confab_store::{StoreError, Stores};

/// (domain, username) of a local account, as the stores key it.
pub fn parts(account: &BareJid) -> (&str, &str) {
    (
        account.domain().as_str(),
        account.node().map(|n| n.as_str()).unwrap_or_default(),
    )
}

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
    #[error("key derivation did not finish: {0}")]
    Derivation(String),
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

/// The password as SCRAM will use it. SASLprep (RFC 4013) maps some characters (e.g. soft
/// hyphens) to nothing, so emptiness and length must be judged on this form, not the input.
pub fn prepare_password(password: &str) -> Result<String, AccountError> {
    match saslprep(password) {
        Ok(p) if !p.is_empty() => Ok(p),
        _ => Err(AccountError::BadPassword),
    }
}

pub fn make_credentials(
    password: &str,
    iterations: u32,
) -> Result<Vec<ScramCredentials>, AccountError> {
    prepare_password(password)?;
    [ScramHash::Sha1, ScramHash::Sha256]
        .into_iter()
        .map(|h| {
            ScramCredentials::new_random(h, password, iterations)
                .map_err(|_| AccountError::BadPassword)
        })
        .collect()
}

/// `make_credentials` on the blocking pool: PBKDF2 at the configured iteration count takes
/// long enough to stall every session sharing an async worker thread.
pub async fn derive_credentials(
    password: &str,
    iterations: u32,
) -> Result<Vec<ScramCredentials>, AccountError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || make_credentials(&password, iterations))
        .await
        .map_err(|e| AccountError::Derivation(e.to_string()))?
}

pub async fn create(
    stores: &Stores,
    jid: &BareJid,
    password: &str,
    iterations: u32,
) -> Result<(), AccountError> {
    let (d, u) = parts(jid);
    // Cheap before costly: a taken name needs no keys. The insert still reports a name
    // taken meanwhile.
    if stores.accounts.account_exists(d, u).await? {
        return Err(AccountError::Exists);
    }
    let creds = derive_credentials(password, iterations).await?;
    // A late write of a deleted namesake's sessions must not land in the new account.
    stores.data.forget_held(d, u);
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
    let creds = derive_credentials(password, iterations).await?;
    let (d, u) = parts(jid);
    if stores.accounts.set_credentials(d, u, &creds).await? {
        Ok(())
    } else {
        Err(AccountError::NotFound)
    }
}

pub async fn delete(stores: &Stores, jid: &BareJid) -> Result<(), AccountError> {
    let (d, u) = parts(jid);
    // Documents its sessions left to be written behind go with it.
    stores.data.forget_held(d, u);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_judged_after_saslprep() {
        // Eight soft hyphens are not empty, but SASLprep maps them to nothing.
        let hyphens = "\u{AD}".repeat(8);
        assert!(matches!(
            make_credentials(&hyphens, 4096),
            Err(AccountError::BadPassword)
        ));
        assert!(matches!(
            prepare_password(""),
            Err(AccountError::BadPassword)
        ));
        // Prohibited output (a control character) is refused too.
        assert!(prepare_password("bad\u{7}").is_err());
        assert_eq!(
            prepare_password(&format!("ab{hyphens}c")).ok().as_deref(),
            Some("abc")
        );
        assert_eq!(
            make_credentials(&format!("x{hyphens}"), 4096)
                .map(|c| c.len())
                .ok(),
            Some(2)
        );
    }
}
