//! TLS certificates: the configured ones, or a self-signed one generated on first start so
//! a zero-configuration server still encrypts every stream.

use crate::config::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// The server's TLS setup, shared by all listeners.
#[derive(Clone)]
pub struct TlsState {
    /// For STARTTLS on 5222.
    pub starttls: TlsAcceptor,
    /// For direct TLS on 5223 (ALPN `xmpp-client`, XEP-0368).
    pub direct: TlsAcceptor,
    /// For HTTPS on `[http] tls_port` (ALPN `http/1.1`: the listener speaks HTTP/1.1, which
    /// WebSocket upgrades need anyway).
    pub https: TlsAcceptor,
    /// The leaf certificate (DER), for tls-server-end-point channel binding.
    pub leaf_der: Arc<Vec<u8>>,
    pub cert_path: PathBuf,
}

pub fn default_paths(cfg: &Config) -> (PathBuf, PathBuf) {
    let dir = cfg.server.data_dir.join("tls");
    (
        cfg.tls.cert.clone().unwrap_or_else(|| dir.join("cert.pem")),
        cfg.tls.key.clone().unwrap_or_else(|| dir.join("key.pem")),
    )
}

/// Loads the configured certificate, or generates a self-signed one for the served domains
/// when none is configured and none was generated before.
pub fn load_or_generate(cfg: &Config) -> Result<TlsState, String> {
    let (cert_path, key_path) = default_paths(cfg);
    let configured = cfg.tls.cert.is_some() || cfg.tls.key.is_some();
    if !configured && !cert_path.exists() {
        generate_self_signed(&cfg.server.domains, &cert_path, &key_path)?;
        tracing::warn!(
            path = %cert_path.display(),
            "generated a self-signed certificate; clients will ask to trust it (set [tls] cert/key for a real one)"
        );
    }
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("{}: {e}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| format!("{}: no certificate found", cert_path.display()))?
        .as_ref()
        .to_vec();
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let provider = confab_stream::tls::provider();
    let build = |alpn: Option<&[u8]>| -> Result<TlsAcceptor, String> {
        let mut c = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(|e| format!("certificate/key: {e}"))?;
        if let Some(alpn) = alpn {
            c.alpn_protocols = vec![alpn.to_vec()];
        }
        Ok(TlsAcceptor::from(Arc::new(c)))
    };
    Ok(TlsState {
        starttls: build(None)?,
        direct: build(Some(b"xmpp-client"))?,
        https: build(Some(b"http/1.1"))?,
        leaf_der: Arc::new(leaf),
        cert_path,
    })
}

fn generate_self_signed(domains: &[String], cert: &Path, key: &Path) -> Result<(), String> {
    let ck = rcgen::generate_simple_self_signed(domains.to_vec()).map_err(|e| e.to_string())?;
    for p in [cert, key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    std::fs::write(cert, ck.cert.pem()).map_err(|e| format!("{}: {e}", cert.display()))?;
    write_private(key, ck.signing_key.serialize_pem().as_bytes())
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(data)
        .map_err(|e| format!("{}: {e}", path.display()))
}
