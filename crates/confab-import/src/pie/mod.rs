//! XEP-0227 export and import.
//!
//! The document is standard where the XEP and the RFCs have a form for the data: SCRAM
//! credentials (`urn:xmpp:pie:0#scram`), the roster (`jabber:iq:roster`, with `ask` and
//! `approved`), pending subscription requests (`<presence type='subscribe'/>`), the vCard,
//! private XML, offline messages and the message archive (`urn:xmpp:pie:0#mam`), the block
//! list (`urn:xmpp:blocking`). What has no standard form is written in Confab's own namespace
//! (`urn:confab:pie:0`), which other servers ignore as the XEP asks: the documents other
//! modules keep (`<data kind= key=>`: last activity, MAM preferences, the rooms of the
//! group chat service and their affiliations, invitations), the rooms' archives
//! (`<room-archive/>`), and the few states a roster item can have that RFC 6121 does not
//! show (an item only a pending request created, with something else set).

mod export;
mod import;
mod reader;

pub use export::{export, ExportError, ExportSummary};
pub use import::{import, import_stream, ImportError, ImportOptions, ImportReport, MAX_IGNORED};
pub use reader::Limits;

/// The XEP-0227 namespace.
pub const NS: &str = "urn:xmpp:pie:0";
/// SCRAM credentials of a user.
pub const NS_SCRAM: &str = "urn:xmpp:pie:0#scram";
/// A user's message archive.
pub const NS_MAM: &str = "urn:xmpp:pie:0#mam";
/// Confab's extensions: what XEP-0227 has no element for.
pub const NS_CONFAB: &str = "urn:confab:pie:0";
/// XInclude, which splits a document into files (XEP-0227 §6).
pub const NS_XINCLUDE: &str = "http://www.w3.org/2001/XInclude";

const NS_ROSTER: &str = "jabber:iq:roster";
const NS_PRIVATE: &str = "jabber:iq:private";
const NS_VCARD: &str = "vcard-temp";
const NS_BLOCKING: &str = "urn:xmpp:blocking";
const NS_MAM2: &str = "urn:xmpp:mam:2";
const NS_FORWARD: &str = "urn:xmpp:forward:0";
const NS_DELAY: &str = "urn:xmpp:delay";
/// What the delay stamp of an exported offline message says (the XEP's example).
const OFFLINE_DELAY_TEXT: &str = "Offline Storage";

/// An XEP-0082 stamp with microseconds when there are any (archive stamps keep them).
fn format_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let s = confab_proto::datetime::format_datetime(secs);
    if frac == 0 {
        return s;
    }
    format!("{}.{frac:06}Z", s.trim_end_matches('Z'))
}

/// Parses an XEP-0082 stamp to Unix microseconds (fractions beyond six digits dropped).
fn parse_micros(s: &str) -> Option<i64> {
    let secs = confab_proto::datetime::parse_datetime(s)?;
    let frac = match s.get(19..).and_then(|r| r.strip_prefix('.')) {
        Some(r) => {
            let digits: String = r.chars().take_while(|c| c.is_ascii_digit()).collect();
            let mut six: String = digits.chars().take(6).collect();
            while six.len() < 6 {
                six.push('0');
            }
            six.parse::<i64>().ok()?
        }
        None => 0,
    };
    secs.checked_mul(1_000_000)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_keep_microseconds() {
        for micros in [0, 1_000_000, 1_764_518_400_123_456, 1_764_518_400_000_001] {
            assert_eq!(
                parse_micros(&format_micros(micros)),
                Some(micros),
                "{micros}"
            );
        }
        assert_eq!(format_micros(1_000_000), "1970-01-01T00:00:01Z");
        assert_eq!(parse_micros("1970-01-01T00:00:01.5Z"), Some(1_500_000));
        assert_eq!(
            parse_micros("1970-01-01T00:00:01.1234567Z"),
            Some(1_123_456)
        );
        assert_eq!(parse_micros("yesterday"), None);
    }
}
