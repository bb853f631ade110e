//! XEP-0202 Entity Time: `<time xmlns='urn:xmpp:time'>` with `<tzo/>` and `<utc/>`.

use super::{child_text, expect, PayloadError};
use crate::datetime::{format_datetime, parse_datetime};
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:time";

/// A request: `<time xmlns='urn:xmpp:time'/>`; children are ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeQuery;

impl TryFrom<&Element> for TimeQuery {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "time", NS)?;
        Ok(TimeQuery)
    }
}

impl From<TimeQuery> for Element {
    fn from(_: TimeQuery) -> Element {
        Element::new("time", NS)
    }
}

/// An answer: the entity's offset from UTC and the current time in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntityTime {
    /// Offset from UTC in seconds (`-06:00` is -21600).
    pub tzo: i32,
    /// Unix seconds (fractions are dropped).
    pub utc: i64,
}

fn parse_tzo(s: &str) -> Option<i32> {
    let s = s.trim();
    if s == "Z" {
        return Some(0);
    }
    let b = s.as_bytes();
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if b.len() != 6 || b.get(3) != Some(&b':') {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (h, m) = (digits(1..3)?, digits(4..6)?);
    (h <= 23 && m <= 59).then_some(sign * (h * 3600 + m * 60))
}

fn format_tzo(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, (a / 60) % 60)
}

impl TryFrom<&Element> for EntityTime {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "time", NS)?;
        let tzo = child_text(el, "tzo", NS).ok_or(PayloadError::MissingChild {
            element: "time",
            child: "tzo",
        })?;
        let utc = child_text(el, "utc", NS).ok_or(PayloadError::MissingChild {
            element: "time",
            child: "utc",
        })?;
        Ok(EntityTime {
            tzo: parse_tzo(&tzo).ok_or(PayloadError::Invalid("tzo"))?,
            utc: parse_datetime(utc.trim())
                .filter(|s| super::writable_datetime(*s))
                .ok_or(PayloadError::Invalid("utc"))?,
        })
    }
}

impl From<EntityTime> for Element {
    fn from(t: EntityTime) -> Element {
        Element::new("time", NS)
            .child(Element::new("tzo", NS).text(format_tzo(t.tzo)))
            .child(Element::new("utc", NS).text(format_datetime(t.utc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same};

    #[test]
    fn xep_0202_examples() {
        let q = payload(
            "<iq type='get' from='romeo@montague.net/orchard'
                 to='juliet@capulet.com/balcony' id='time_1'>
               <time xmlns='urn:xmpp:time'/>
             </iq>",
        );
        assert_eq!(TimeQuery::try_from(&q), Ok(TimeQuery));
        assert_eq!(Element::from(TimeQuery), q);
        let r = payload(
            "<iq type='result' from='juliet@capulet.com/balcony'
                 to='romeo@montague.net/orchard' id='time_1'>
               <time xmlns='urn:xmpp:time'>
                 <tzo>-06:00</tzo>
                 <utc>2006-12-19T17:58:35Z</utc>
               </time>
             </iq>",
        );
        let t = EntityTime::try_from(&r).expect("parses");
        assert_eq!(t.tzo, -6 * 3600);
        assert_eq!(format_datetime(t.utc), "2006-12-19T17:58:35Z");
        assert!(same(&Element::from(t), &r));
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_tzo("Z"), Some(0));
        assert_eq!(parse_tzo("+05:30"), Some(19800));
        assert_eq!(format_tzo(19800), "+05:30");
        assert_eq!(format_tzo(0), "+00:00");
        for bad in ["", "05:30", "+5:30", "+05:3x", "+24:00", "+0é:00", "-"] {
            assert_eq!(parse_tzo(bad), None, "{bad}");
        }
        assert!(EntityTime::try_from(&Element::new("time", NS)).is_err());
    }
}
