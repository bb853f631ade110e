//! XEP-0172 User Nickname: `<nick xmlns='http://jabber.org/protocol/nick'>…</nick>`.

use super::{expect, PayloadError};
use crate::xml::Element;

pub const NS: &str = "http://jabber.org/protocol/nick";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Nick(pub String);

impl TryFrom<&Element> for Nick {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "nick", NS)?;
        Ok(Nick(el.text_content()))
    }
}

impl From<Nick> for Element {
    fn from(n: Nick) -> Element {
        super::text_element("nick", NS, n.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::xml;

    #[test]
    fn xep_0172_example_1() {
        let e = xml("<nick xmlns='http://jabber.org/protocol/nick'>Ishmael</nick>");
        assert_eq!(Nick::try_from(&e), Ok(Nick("Ishmael".into())));
        assert_eq!(Element::from(Nick("Ishmael".into())), e);
    }
}
