//! SASL for XMPP (RFC 6120 §6): SCRAM (RFC 5802, RFC 7677) with channel
//! binding (RFC 5929 `tls-server-end-point`, RFC 9266 `tls-exporter`) and
//! PLAIN (RFC 4616). Pure state machines, no I/O: the caller moves bytes
//! (already base64-decoded from the XML) in and out.

pub mod plain;
pub mod scram;

use std::fmt;

pub use plain::{encode_plain, parse_plain, PlainRequest};
pub use scram::{ClientFirst, ScramClient, ScramCredentials, ScramHash, ScramServer};

/// SASL mechanisms this crate implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha256Plus,
    ScramSha1Plus,
    ScramSha256,
    ScramSha1,
    Plain,
}

impl Mechanism {
    /// Strongest first, the order to advertise and to prefer in.
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA-registered mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Exact, case-sensitive match: SASL mechanism names are upper case
    /// (RFC 4422 §3.1), so anything else is not a name we offered.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == s)
    }

    /// Whether the mechanism uses channel binding.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }

    /// The SCRAM hash, `None` for PLAIN.
    pub fn hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha256Plus | Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha1Plus | Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::Plain => None,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SASL failure conditions of RFC 6120 §6.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SaslFailure {
    #[error("aborted")]
    Aborted,
    #[error("account-disabled")]
    AccountDisabled,
    #[error("credentials-expired")]
    CredentialsExpired,
    #[error("encryption-required")]
    EncryptionRequired,
    #[error("incorrect-encoding")]
    IncorrectEncoding,
    #[error("invalid-authzid")]
    InvalidAuthzid,
    #[error("invalid-mechanism")]
    InvalidMechanism,
    #[error("malformed-request")]
    MalformedRequest,
    #[error("mechanism-too-weak")]
    MechanismTooWeak,
    #[error("not-authorized")]
    NotAuthorized,
    #[error("temporary-auth-failure")]
    TemporaryAuthFailure,
}

impl SaslFailure {
    /// Element name of the condition inside `<failure/>`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SaslFailure::Aborted => "aborted",
            SaslFailure::AccountDisabled => "account-disabled",
            SaslFailure::CredentialsExpired => "credentials-expired",
            SaslFailure::EncryptionRequired => "encryption-required",
            SaslFailure::IncorrectEncoding => "incorrect-encoding",
            SaslFailure::InvalidAuthzid => "invalid-authzid",
            SaslFailure::InvalidMechanism => "invalid-mechanism",
            SaslFailure::MalformedRequest => "malformed-request",
            SaslFailure::MechanismTooWeak => "mechanism-too-weak",
            SaslFailure::NotAuthorized => "not-authorized",
            SaslFailure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

/// Channel-binding types we support (RFC 9266, RFC 5929).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelBindingType {
    /// RFC 9266; the one to use with TLS 1.3.
    TlsExporter,
    /// RFC 5929; works with TLS 1.2 and 1.3 given the server certificate.
    TlsServerEndPoint,
}

impl ChannelBindingType {
    /// Name as used in the GS2 header `p=` and in XEP-0440.
    pub fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    /// Exact match on the registered name.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "tls-exporter" => Some(ChannelBindingType::TlsExporter),
            "tls-server-end-point" => Some(ChannelBindingType::TlsServerEndPoint),
            _ => None,
        }
    }
}

/// What the server's TLS layer can provide for this connection.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChannelBindingData {
    /// RFC 9266: 32 bytes of TLS exporter output for label "EXPORTER-Channel-Binding".
    pub tls_exporter: Option<Vec<u8>>,
    /// RFC 5929: hash of the server's certificate.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl ChannelBindingData {
    /// Binding data for `ty`, if the TLS layer provided it (empty counts as absent).
    pub fn get(&self, ty: ChannelBindingType) -> Option<&[u8]> {
        let data = match ty {
            ChannelBindingType::TlsExporter => self.tls_exporter.as_deref(),
            ChannelBindingType::TlsServerEndPoint => self.tls_server_end_point.as_deref(),
        };
        data.filter(|d| !d.is_empty())
    }

    /// Whether any binding is available, i.e. whether -PLUS may be offered.
    pub fn any(&self) -> bool {
        self.get(ChannelBindingType::TlsExporter).is_some()
            || self.get(ChannelBindingType::TlsServerEndPoint).is_some()
    }
}

// Binding data is secret-ish key material: show only presence in logs.
impl fmt::Debug for ChannelBindingData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelBindingData")
            .field("tls_exporter", &self.tls_exporter.as_ref().map(Vec::len))
            .field(
                "tls_server_end_point",
                &self.tls_server_end_point.as_ref().map(Vec::len),
            )
            .finish()
    }
}

/// SASLprep (RFC 4013) for stored strings: unassigned code points are refused too.
pub fn saslprep(s: &str) -> Result<String, SaslFailure> {
    stringprep::saslprep(s)
        .map(|c| c.into_owned())
        .map_err(|_| SaslFailure::MalformedRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanism_names_round_trip() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(m.hash().is_none(), m == Mechanism::Plain);
        }
        assert_eq!(Mechanism::from_name("scram-sha-1"), None);
        assert_eq!(Mechanism::from_name(""), None);
        assert!(Mechanism::ScramSha1Plus.is_plus());
        assert!(!Mechanism::ScramSha256.is_plus());
        assert_eq!(Mechanism::ALL[0], Mechanism::ScramSha256Plus);
    }

    #[test]
    fn failure_names() {
        assert_eq!(SaslFailure::NotAuthorized.as_str(), "not-authorized");
        assert_eq!(
            SaslFailure::TemporaryAuthFailure.to_string(),
            "temporary-auth-failure"
        );
    }

    #[test]
    fn cb_types() {
        for t in [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ] {
            assert_eq!(ChannelBindingType::from_name(t.name()), Some(t));
        }
        assert_eq!(ChannelBindingType::from_name("tls-unique"), None);
        let d = ChannelBindingData {
            tls_exporter: Some(vec![]),
            tls_server_end_point: None,
        };
        assert!(!d.any());
    }

    #[test]
    fn saslprep_basics() {
        assert_eq!(saslprep("user").as_deref(), Ok("user"));
        // RFC 4013 §3 examples.
        assert_eq!(saslprep("I\u{00AD}X").as_deref(), Ok("IX"));
        assert_eq!(saslprep("\u{00AA}").as_deref(), Ok("a"));
        assert_eq!(saslprep("\u{2168}").as_deref(), Ok("IX"));
        assert_eq!(saslprep("\u{0007}"), Err(SaslFailure::MalformedRequest));
        assert_eq!(
            saslprep("\u{0627}\u{0031}"),
            Err(SaslFailure::MalformedRequest)
        );
    }
}
