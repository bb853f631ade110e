//! Which account and server: the options every command shares, turned into the SDK's
//! [`Config`]. The password never comes from the command line (it would show in `ps` and
//! shell history): a file, `CONFAB_PASSWORD`, or a prompt.

use clap::Args;
use confab_client::{BareJid, CertVerification, ClientOptions, Config};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Account and connection options.
#[derive(Args, Clone, Debug)]
pub struct AccountArgs {
    /// The account, user@domain.
    #[arg(long, env = "CONFAB_JID", global = true)]
    pub jid: Option<String>,
    /// Read the password from this file (its first line); else `CONFAB_PASSWORD`, else a prompt.
    #[arg(long, global = true)]
    pub password_file: Option<PathBuf>,
    /// Connect to HOST:PORT instead of looking the domain's server up in DNS (SRV records).
    #[arg(long, env = "CONFAB_SERVER", global = true)]
    pub server: Option<String>,
    /// Trust exactly this certificate (PEM or DER), e.g. a self-signed confabd's
    /// `data/tls/cert.pem`, instead of the system's trusted roots.
    #[arg(long, env = "CONFAB_TRUST_CERT", global = true)]
    pub trust_cert: Option<PathBuf>,
    /// The resource to bind (the server picks one when absent).
    #[arg(long, global = true)]
    pub resource: Option<String>,
}

/// The account and its password, resolved.
pub struct Account {
    /// The bare JID.
    pub jid: BareJid,
    password: String,
}

impl AccountArgs {
    /// The account from `--jid`/`CONFAB_JID` and its password from the file, the
    /// environment or (on a terminal) a prompt.
    pub fn account(&self) -> Result<Account, String> {
        let jid = self
            .jid
            .as_deref()
            .ok_or("no account: give --jid USER@DOMAIN or set CONFAB_JID")?;
        let jid = BareJid::new(jid).map_err(|e| format!("--jid {jid}: {e}"))?;
        if jid.node().is_none() {
            return Err(format!("--jid {jid}: the account needs a user part"));
        }
        let password = self.password(&jid)?;
        Ok(Account { jid, password })
    }

    fn password(&self, jid: &BareJid) -> Result<String, String> {
        if let Some(path) = &self.password_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--password-file {}: {e}", path.display()))?;
            let line = text.lines().next().unwrap_or_default();
            if line.is_empty() {
                return Err(format!("--password-file {}: empty", path.display()));
            }
            return Ok(line.to_string());
        }
        if let Ok(p) = std::env::var("CONFAB_PASSWORD") {
            if !p.is_empty() {
                return Ok(p);
            }
        }
        rpassword::prompt_password(format!("password for {jid}: ")).map_err(|e| {
            format!("no password (--password-file, CONFAB_PASSWORD or a terminal to ask on): {e}")
        })
    }

    /// The SDK configuration for `account`.
    pub fn config(&self, account: &Account) -> Result<Config, String> {
        let user = account
            .jid
            .node()
            .map(|n| n.to_string())
            .unwrap_or_default();
        let domain = account.jid.domain().to_string();
        let mut config = match &self.server {
            Some(server) => {
                let addr = resolve(server)?;
                Config::new(ClientOptions::new(addr, &domain, &user, &account.password))
            }
            // The domain's SRV records (RFC 6120 §3.2), else its own address.
            None => Config::for_domain(&domain, &user, &account.password),
        };
        config.options.resource = self.resource.clone();
        if let Some(path) = &self.trust_cert {
            config.options.verify = CertVerification::Roots(vec![read_cert(path)?]);
        }
        Ok(config)
    }
}

/// HOST:PORT as a socket address (a name is looked up once, the first address used).
fn resolve(server: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    server
        .to_socket_addrs()
        .map_err(|e| format!("--server {server}: {e}"))?
        .next()
        .ok_or_else(|| format!("--server {server}: no address"))
}

/// The DER of the first certificate in a PEM file, or the file itself when it is DER.
fn read_cert(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("--trust-cert {}: {e}", path.display()))?;
    if bytes.starts_with(b"-----BEGIN") || bytes.iter().take(64).all(|b| b.is_ascii()) {
        let cert = CertificateDer::from_pem_slice(&bytes)
            .map_err(|e| format!("--trust-cert {}: {e}", path.display()))?;
        return Ok(cert.to_vec());
    }
    Ok(bytes)
}
