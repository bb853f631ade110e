//! XEP-0012 Last Activity: `<query xmlns='jabber:iq:last' seconds='…'>status</query>`.

use super::{expect, parse_uint, PayloadError};
use crate::xml::Element;

pub const NS: &str = "jabber:iq:last";

/// A request (no seconds) or an answer: idle time, uptime, or time since logout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastActivity {
    pub seconds: Option<u64>,
    /// The status of the last unavailable presence (answers about offline users).
    pub status: Option<String>,
}

impl LastActivity {
    /// An answer: `seconds` and, unless empty, a status.
    pub fn answer(seconds: u64, status: &str) -> Self {
        LastActivity {
            seconds: Some(seconds),
            status: (!status.is_empty()).then(|| status.to_string()),
        }
    }
}

impl TryFrom<&Element> for LastActivity {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", NS)?;
        let seconds = el
            .get_attr("seconds")
            .map(|s| parse_uint(s, "seconds"))
            .transpose()?;
        let status = el.text_content();
        Ok(LastActivity {
            seconds,
            status: (!status.is_empty()).then_some(status),
        })
    }
}

impl From<LastActivity> for Element {
    fn from(l: LastActivity) -> Element {
        let mut e = Element::new("query", NS);
        if let Some(s) = l.seconds {
            e.set_attr("seconds", s.to_string());
        }
        match l.status {
            Some(s) if !s.is_empty() => e.text(s),
            _ => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::payload;

    #[test]
    fn xep_0012_examples() {
        let q = payload(
            "<iq from='romeo@montague.net/orchard' id='last1' to='juliet@capulet.com' type='get'>
               <query xmlns='jabber:iq:last'/>
             </iq>",
        );
        assert_eq!(LastActivity::try_from(&q), Ok(LastActivity::default()));
        assert_eq!(Element::from(LastActivity::default()), q);
        let r = payload(
            "<iq from='juliet@capulet.com' id='last1' to='romeo@montague.net/orchard' type='result'>
               <query xmlns='jabber:iq:last' seconds='903'/>
             </iq>",
        );
        assert_eq!(
            LastActivity::try_from(&r),
            Ok(LastActivity::answer(903, ""))
        );
        assert_eq!(Element::from(LastActivity::answer(903, "")), r);
        // Example 5.
        let r = payload(
            "<iq from='juliet@capulet.com' id='last1' to='romeo@montague.net/orchard' type='result'>
               <query xmlns='jabber:iq:last' seconds='903'>Heading Home</query>
             </iq>",
        );
        assert_eq!(
            LastActivity::try_from(&r),
            Ok(LastActivity::answer(903, "Heading Home"))
        );
        assert_eq!(Element::from(LastActivity::answer(903, "Heading Home")), r);
    }

    #[test]
    fn seconds_must_be_a_number() {
        for bad in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            let q = Element::new("query", NS).attr("seconds", bad);
            assert!(LastActivity::try_from(&q).is_err(), "{bad}");
        }
    }
}
