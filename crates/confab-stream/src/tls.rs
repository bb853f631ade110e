//! TLS helpers shared by both sides: channel-binding data for SASL -PLUS mechanisms and
//! client configurations.

use crate::transport::Transport;
use confab_proto::sasl::ChannelBindingData;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::Digest;
use std::sync::Arc;

/// RFC 9266 label for the tls-exporter channel binding.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// Channel-binding data of an established connection. `server_cert` is the leaf certificate
/// the server presented (the server knows its own; a client reads the peer's).
pub fn channel_binding_data(t: &Transport, server_cert: Option<&[u8]>) -> ChannelBindingData {
    let exporter = |r: Result<[u8; 32], rustls::Error>| r.ok().map(|b| b.to_vec());
    let (tls_exporter, peer_cert) = match t {
        Transport::Tcp(_) => return ChannelBindingData::default(),
        Transport::ServerTls(s) => {
            let conn = s.get_ref().1;
            // RFC 9266: tls-exporter is defined for TLS 1.3 only.
            let ok = conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
            let data = if ok {
                exporter(conn.export_keying_material([0u8; 32], EXPORTER_LABEL, None))
            } else {
                None
            };
            (data, None)
        }
        Transport::ClientTls(s) => {
            let conn = s.get_ref().1;
            let ok = conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3);
            let data = if ok {
                exporter(conn.export_keying_material([0u8; 32], EXPORTER_LABEL, None))
            } else {
                None
            };
            let peer = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            (data, peer)
        }
    };
    let cert = server_cert.map(<[u8]>::to_vec).or(peer_cert);
    ChannelBindingData {
        tls_exporter,
        tls_server_end_point: cert.map(|c| server_end_point_hash(&c)),
    }
}

/// RFC 5929 §4.1: hash the certificate with its signature's hash function, using SHA-256
/// when that is MD5 or SHA-1 (or unknown, e.g. Ed25519, as deployed servers do).
pub fn server_end_point_hash(cert_der: &[u8]) -> Vec<u8> {
    match signature_hash_oid(cert_der).as_deref() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        Some([42, 134, 72, 134, 247, 13, 1, 1, 12]) | Some([42, 134, 72, 206, 61, 4, 3, 3]) => {
            sha2::Sha384::digest(cert_der).to_vec()
        }
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        Some([42, 134, 72, 134, 247, 13, 1, 1, 13]) | Some([42, 134, 72, 206, 61, 4, 3, 4]) => {
            sha2::Sha512::digest(cert_der).to_vec()
        }
        _ => sha2::Sha256::digest(cert_der).to_vec(),
    }
}

/// Reads the signatureAlgorithm OID bytes of a DER certificate
/// (`SEQUENCE { tbsCertificate, SEQUENCE { OID, ... }, BIT STRING }`).
fn signature_hash_oid(der: &[u8]) -> Option<Vec<u8>> {
    fn header(b: &[u8]) -> Option<(u8, usize, usize)> {
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        if first < 0x80 {
            return Some((tag, 2, first));
        }
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        Some((tag, 2 + n, len))
    }
    let (_, h, _) = header(der)?;
    let body = der.get(h..)?;
    let (_, th, tl) = header(body)?;
    let rest = body.get(th + tl..)?;
    let (tag, ah, _) = header(rest)?;
    if tag != 0x30 {
        return None;
    }
    let alg = rest.get(ah..)?;
    let (otag, oh, ol) = header(alg)?;
    if otag != 0x06 {
        return None;
    }
    alg.get(oh..oh + ol).map(<[u8]>::to_vec)
}

/// Accepts any server certificate. Only for tests and explicitly insecure client setups
/// (e.g. a freshly installed server with its generated self-signed certificate).
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a client checks the server's certificate.
#[derive(Clone, Debug)]
pub enum CertVerification {
    /// The roots the operating system trusts (the default: what a client connecting to
    /// real servers wants).
    System,
    /// Trust exactly these DER certificates as roots.
    Roots(Vec<Vec<u8>>),
    /// Accept any certificate (tests, first contact with a self-signed server).
    Insecure,
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client TLS configuration for XMPP (ALPN `xmpp-client` for direct TLS, XEP-0368).
pub fn client_config(
    verify: &CertVerification,
    alpn: bool,
) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut cfg = match verify {
        CertVerification::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth(),
        CertVerification::System => {
            let mut store = rustls::RootCertStore::empty();
            // Certificates the system has but rustls cannot use are skipped, as browsers do.
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err(rustls::Error::General(
                    "no trusted root certificates found on this system".into(),
                ));
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
        CertVerification::Roots(roots) => {
            let mut store = rustls::RootCertStore::empty();
            for r in roots {
                store.add(CertificateDer::from(r.clone()))?;
            }
            builder.with_root_certificates(store).with_no_client_auth()
        }
    };
    if alpn {
        cfg.alpn_protocols = vec![b"xmpp-client".to_vec()];
    }
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_roots_load() {
        // Debian's ca-certificates: the default verification has roots to check against.
        assert!(client_config(&CertVerification::System, true).is_ok());
    }

    #[test]
    fn hostile_der_does_not_panic() {
        for input in [
            &b""[..],
            &[0x30],
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
            &[0x30, 0x03, 0x30, 0x01],
        ] {
            let h = server_end_point_hash(input);
            assert_eq!(h.len(), 32);
        }
    }
}
