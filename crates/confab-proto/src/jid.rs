//! JIDs (RFC 7622 address format).
//!
//! We reuse the `jid` crate: it parses the `node@domain/resource` syntax, enforces the
//! 1023-byte part limits and normalises with stringprep (nodeprep, nameprep/IDNA,
//! resourceprep), which is what deployed servers (Prosody, ejabberd) compare with, so
//! addresses match across the federation.

pub use ::jid::{BareJid, Error as JidError, FullJid, Jid};

/// Parses and normalises a JID, returning `None` if it is invalid.
pub fn parse(s: &str) -> Option<Jid> {
    Jid::new(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_width() {
        let j = Jid::new("Juliet@Example.COM/Balcony").expect("valid");
        assert_eq!(j.as_str(), "juliet@example.com/Balcony");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "@example.com",
            "user@",
            "user@example.com/",
            "a@b@c",
            "user@exa mple.com",
        ] {
            assert!(Jid::new(bad).is_err(), "{bad:?} should be rejected");
        }
        let long_node = format!("{}@example.com", "a".repeat(1024));
        assert!(Jid::new(&long_node).is_err());
    }
}
