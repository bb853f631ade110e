//! XEP-0059 Result Set Management: `<set xmlns='http://jabber.org/protocol/rsm'>`.

use super::{child_text, expect, parse_uint, text_element, PayloadError};
use crate::xml::Element;

pub const NS: &str = "http://jabber.org/protocol/rsm";

/// `<first index='…'>id</first>` of a returned page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct First {
    pub id: String,
    pub index: Option<usize>,
}

/// A request (max, after, before, index) or the description of a returned page (first,
/// last, count). `before: Some("")` (an empty `<before/>`) asks for the last page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResultSet {
    pub max: Option<usize>,
    pub after: Option<String>,
    pub before: Option<String>,
    pub index: Option<usize>,
    pub first: Option<First>,
    pub last: Option<String>,
    pub count: Option<usize>,
}

impl TryFrom<&Element> for ResultSet {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "set", NS)?;
        let num = |name: &'static str| -> Result<Option<usize>, PayloadError> {
            child_text(el, name, NS)
                .map(|t| parse_uint(&t, name))
                .transpose()
        };
        let first = match el.get_child("first", NS) {
            None => None,
            Some(f) => Some(First {
                id: f.text_content(),
                index: f
                    .get_attr("index")
                    .map(|i| parse_uint(i, "index"))
                    .transpose()?,
            }),
        };
        Ok(ResultSet {
            max: num("max")?,
            after: child_text(el, "after", NS),
            before: child_text(el, "before", NS),
            index: num("index")?,
            first,
            last: child_text(el, "last", NS),
            count: num("count")?,
        })
    }
}

impl From<ResultSet> for Element {
    fn from(s: ResultSet) -> Element {
        let mut e = Element::new("set", NS);
        if let Some(m) = s.max {
            e.push_child(text_element("max", NS, m.to_string()));
        }
        if let Some(a) = s.after {
            e.push_child(text_element("after", NS, a));
        }
        if let Some(b) = s.before {
            e.push_child(text_element("before", NS, b));
        }
        if let Some(i) = s.index {
            e.push_child(text_element("index", NS, i.to_string()));
        }
        if let Some(f) = s.first {
            let mut fe = text_element("first", NS, f.id);
            if let Some(i) = f.index {
                fe.set_attr("index", i.to_string());
            }
            e.push_child(fe);
        }
        if let Some(l) = s.last {
            e.push_child(text_element("last", NS, l));
        }
        if let Some(c) = s.count {
            e.push_child(text_element("count", NS, c.to_string()));
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same};

    fn set_of(stanza: &str) -> Element {
        payload(stanza)
            .get_child("set", NS)
            .cloned()
            .expect("has a set")
    }

    #[test]
    fn xep_0059_requests() {
        // Example 1.
        let s = set_of(
            "<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='limit1'>
               <query xmlns='jabber:iq:search'>
                 <nick>Pete</nick>
                 <set xmlns='http://jabber.org/protocol/rsm'>
                   <max>10</max>
                 </set>
               </query>
             </iq>",
        );
        let r = ResultSet::try_from(&s).expect("parses");
        assert_eq!(
            r,
            ResultSet {
                max: Some(10),
                ..ResultSet::default()
            }
        );
        assert!(same(&Element::from(r), &s));
        // Example 11: the last page.
        let s = set_of(
            "<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='page1'>
               <query xmlns='jabber:iq:search'>
                 <nick>Pete</nick>
                 <set xmlns='http://jabber.org/protocol/rsm'>
                   <max>10</max>
                   <before/>
                 </set>
               </query>
             </iq>",
        );
        let r = ResultSet::try_from(&s).expect("parses");
        assert_eq!(r.before.as_deref(), Some(""));
        assert!(same(&Element::from(r), &s));
        // Example 12: by index.
        let s = set_of(
            "<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='index10'>
               <query xmlns='jabber:iq:search'>
                 <nick>Pete</nick>
                 <set xmlns='http://jabber.org/protocol/rsm'>
                   <max>10</max>
                   <index>371</index>
                 </set>
               </query>
             </iq>",
        );
        assert_eq!(ResultSet::try_from(&s).map(|r| r.index), Ok(Some(371)));
    }

    #[test]
    fn xep_0059_pages() {
        // Example 4, without the items.
        let s = set_of(
            "<iq type='result' from='users.jabber.org' to='stpeter@jabber.org/roundabout' id='page1'>
               <query xmlns='jabber:iq:search'>
                 <set xmlns='http://jabber.org/protocol/rsm'>
                   <first index='0'>stpeter@jabber.org</first>
                   <last>peterpan@neverland.lit</last>
                   <count>800</count>
                 </set>
               </query>
             </iq>",
        );
        let r = ResultSet::try_from(&s).expect("parses");
        assert_eq!(
            r.first,
            Some(First {
                id: "stpeter@jabber.org".into(),
                index: Some(0)
            })
        );
        assert_eq!(r.last.as_deref(), Some("peterpan@neverland.lit"));
        assert_eq!(r.count, Some(800));
        assert!(same(&Element::from(r), &s));
        // Example 16: the count only.
        let s = set_of(
            "<iq type='result' from='users.jabber.org' to='stpeter@jabber.org/roundabout' id='count1'>
               <query xmlns='jabber:iq:search'>
                 <set xmlns='http://jabber.org/protocol/rsm'>
                   <count>800</count>
                 </set>
               </query>
             </iq>",
        );
        assert_eq!(
            ResultSet::try_from(&s),
            Ok(ResultSet {
                count: Some(800),
                ..ResultSet::default()
            })
        );
    }

    #[test]
    fn numbers_are_checked() {
        for bad in ["-1", "ten", "", "1e3"] {
            let s = Element::new("set", NS).child(Element::new("max", NS).text(bad));
            assert!(ResultSet::try_from(&s).is_err(), "{bad}");
        }
        let s =
            Element::new("set", NS).child(Element::new("first", NS).attr("index", "x").text("a"));
        assert!(ResultSet::try_from(&s).is_err());
    }
}
