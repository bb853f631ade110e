//! SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`.

use super::{saslprep, SaslFailure};

/// A parsed PLAIN message.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// Requested authorization identity; `None` when empty. Not prepared:
    /// the caller checks it as a JID and decides whether it is allowed.
    pub authzid: Option<String>,
    /// Authentication identity, SASLprep'd, never empty.
    pub authcid: String,
    /// Password as sent (never empty); `ScramCredentials::verify_password`
    /// applies SASLprep itself so both mechanisms prepare it the same way.
    pub password: String,
}

// Keep passwords out of logs.
impl std::fmt::Debug for PlainRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainRequest")
            .field("authzid", &self.authzid)
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parse the decoded PLAIN initial response.
pub fn parse_plain(data: &[u8]) -> Result<PlainRequest, SaslFailure> {
    let mut parts = data.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslFailure::MalformedRequest);
    };
    let utf8 = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| SaslFailure::MalformedRequest)
    };
    let authzid = utf8(authzid)?;
    let authcid = saslprep(&utf8(authcid)?)?;
    let password = utf8(password)?;
    if authcid.is_empty() || password.is_empty() {
        return Err(SaslFailure::MalformedRequest);
    }
    Ok(PlainRequest {
        authzid: (!authzid.is_empty()).then_some(authzid),
        authcid,
        password,
    })
}

/// Build a PLAIN initial response (client side and tests).
pub fn encode_plain(authzid: Option<&str>, authcid: &str, password: &str) -> Vec<u8> {
    let authzid = authzid.unwrap_or("");
    let mut out = Vec::with_capacity(
        authzid
            .len()
            .saturating_add(authcid.len())
            .saturating_add(password.len())
            .saturating_add(2),
    );
    out.extend_from_slice(authzid.as_bytes());
    out.push(0);
    out.extend_from_slice(authcid.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m = encode_plain(Some("admin@example.org"), "juliet", "r0m30");
        assert_eq!(m, b"admin@example.org\0juliet\0r0m30");
        let r = parse_plain(&m).unwrap();
        assert_eq!(r.authzid.as_deref(), Some("admin@example.org"));
        assert_eq!(r.authcid, "juliet");
        assert_eq!(r.password, "r0m30");

        let r = parse_plain(&encode_plain(None, "juliet", "pw")).unwrap();
        assert_eq!(r.authzid, None);
    }

    #[test]
    fn authcid_is_prepared_password_is_not() {
        let r = parse_plain("\0I\u{00AD}X\0p\u{00AD}w".as_bytes()).unwrap();
        assert_eq!(r.authcid, "IX");
        assert_eq!(r.password, "p\u{00AD}w");
    }

    #[test]
    fn malformed() {
        let bad: &[&[u8]] = &[
            b"",
            b"\0",
            b"\0\0",
            b"user",
            b"\0user",
            b"\0user\0",
            b"\0\0pw",
            b"a\0b\0c\0",
            b"a\0b\0c\0d",
            b"\0\xff\0pw",
            b"\0user\0\xc3",
            b"\xfe\0user\0pw",
            b"\0\x07\0pw",
            "\0\u{00AD}\0pw".as_bytes(),
        ];
        for b in bad {
            assert_eq!(parse_plain(b), Err(SaslFailure::MalformedRequest), "{b:?}");
        }
        let dbg = format!("{:?}", parse_plain(b"\0u\0secret").unwrap());
        assert!(!dbg.contains("secret"));
    }
}
