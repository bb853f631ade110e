//! XEP-0049 Private XML Storage: `<query xmlns='jabber:iq:private'>` around one payload.

use super::{expect, PayloadError};
use crate::xml::Element;

pub const NS: &str = "jabber:iq:private";

/// The query and the stored (or requested) elements, kept as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrivateQuery {
    pub payloads: Vec<Element>,
}

/// Namespaces a stored element may not have (XEP-0049 §3: `not-acceptable`): they would
/// hide the stored data's own namespace.
pub const RESERVED: [&str; 3] = [crate::ns::CLIENT, crate::ns::SERVER, NS];

impl PrivateQuery {
    /// XEP-0049 §3: every payload needs its own namespace.
    pub fn check_namespaces(&self) -> Result<(), PayloadError> {
        if self
            .payloads
            .iter()
            .any(|p| RESERVED.contains(&p.ns.as_str()))
        {
            return Err(PayloadError::NotAcceptable(
                "private XML needs a namespace of its own",
            ));
        }
        Ok(())
    }
}

impl TryFrom<&Element> for PrivateQuery {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", NS)?;
        Ok(PrivateQuery {
            payloads: el.elements().cloned().collect(),
        })
    }
}

impl From<PrivateQuery> for Element {
    fn from(q: PrivateQuery) -> Element {
        let mut e = Element::new("query", NS);
        for p in q.payloads {
            e.push_child(p);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same};

    #[test]
    fn xep_0049_examples_1_and_2() {
        let set = payload(
            r#"<iq type="set" id="1001">
                 <query xmlns="jabber:iq:private">
                   <exodus xmlns="exodus:prefs">
                     <defaultnick>Hamlet</defaultnick>
                   </exodus>
                 </query>
               </iq>"#,
        );
        let q = PrivateQuery::try_from(&set).expect("parses");
        assert_eq!(q.check_namespaces(), Ok(()));
        let [p] = q.payloads.as_slice() else {
            panic!("one payload")
        };
        assert!(p.is("exodus", "exodus:prefs"));
        assert_eq!(
            p.get_child("defaultnick", "exodus:prefs")
                .map(Element::text_content),
            Some("Hamlet".into())
        );
        assert!(same(&Element::from(q), &set));
        let get = payload(
            r#"<iq type="get" id="1002">
                 <query xmlns="jabber:iq:private">
                   <exodus xmlns="exodus:prefs"/>
                 </query>
               </iq>"#,
        );
        let q = PrivateQuery::try_from(&get).expect("parses");
        assert_eq!(q.payloads.len(), 1);
        let own_ns = PrivateQuery {
            payloads: vec![Element::new("x", NS)],
        };
        assert!(own_ns.check_namespaces().is_err());
    }
}
