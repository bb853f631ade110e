//! XEP-0203 Delayed Delivery: `<delay xmlns='urn:xmpp:delay' stamp='…' from='…'>reason</delay>`.

use super::{expect, jid_attr, PayloadError};
use crate::datetime::{format_datetime, parse_datetime};
use crate::jid::Jid;
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:delay";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delay {
    /// Who delayed the stanza (e.g. the server that stored it offline).
    pub from: Option<Jid>,
    /// When the stanza was originally sent, in Unix seconds (fractions are dropped).
    pub stamp: i64,
    /// Why it was delayed: the element's character data, if any.
    pub reason: Option<String>,
}

impl TryFrom<&Element> for Delay {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "delay", NS)?;
        let stamp = el.get_attr("stamp").ok_or(PayloadError::MissingAttribute {
            element: "delay",
            attr: "stamp",
        })?;
        let stamp = parse_datetime(stamp)
            .filter(|s| super::writable_datetime(*s))
            .ok_or(PayloadError::Invalid("delay stamp"))?;
        let reason = el.text_content();
        Ok(Delay {
            from: jid_attr(el, "from")?,
            stamp,
            reason: (!reason.trim().is_empty()).then_some(reason),
        })
    }
}

impl From<Delay> for Element {
    fn from(d: Delay) -> Element {
        let mut e = Element::new("delay", NS);
        if let Some(f) = d.from {
            e.set_attr("from", f.to_string());
        }
        e.set_attr("stamp", format_datetime(d.stamp));
        match d.reason {
            Some(r) if !r.is_empty() => e.text(r),
            _ => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::child;

    #[test]
    fn xep_0203_example_1() {
        let e = child(
            "<message
                from='romeo@montague.net/orchard'
                to='juliet@capulet.com'
                type='chat'>
              <body>
                O blessed, blessed night! I am afeard.
                Being in night, all this is but a dream,
                Too flattering-sweet to be substantial.
              </body>
              <delay xmlns='urn:xmpp:delay'
                 from='capulet.com'
                 stamp='2002-09-10T23:08:25Z'>
                Offline Storage
              </delay>
            </message>",
            "delay",
        );
        let d = Delay::try_from(&e).expect("parses");
        assert_eq!(d.from, Jid::new("capulet.com").ok());
        assert_eq!(format_datetime(d.stamp), "2002-09-10T23:08:25Z");
        assert_eq!(d.reason.as_deref().map(str::trim), Some("Offline Storage"));
        let back = Element::from(d.clone());
        assert_eq!(Delay::try_from(&back), Ok(d));
        assert_eq!(back.get_attr("stamp"), Some("2002-09-10T23:08:25Z"));
    }

    #[test]
    fn stamp_is_required_and_checked() {
        assert!(Delay::try_from(&Element::new("delay", NS)).is_err());
        let bad = Element::new("delay", NS).attr("stamp", "yesterday");
        assert_eq!(
            Delay::try_from(&bad),
            Err(PayloadError::Invalid("delay stamp"))
        );
        // Valid, but after year 9999 in UTC: not representable when written back.
        let late = Element::new("delay", NS).attr("stamp", "9999-12-31T23:59:59-01:00");
        assert!(Delay::try_from(&late).is_err());
    }
}
