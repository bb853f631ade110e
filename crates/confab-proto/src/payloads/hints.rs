//! XEP-0334 Message Processing Hints.

use super::PayloadError;
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:hints";

/// One processing hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hint {
    NoPermanentStore,
    NoStore,
    NoCopy,
    Store,
}

impl Hint {
    pub const ALL: [Hint; 4] = [
        Hint::NoPermanentStore,
        Hint::NoStore,
        Hint::NoCopy,
        Hint::Store,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Hint::NoPermanentStore => "no-permanent-store",
            Hint::NoStore => "no-store",
            Hint::NoCopy => "no-copy",
            Hint::Store => "store",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.as_str() == s)
    }

    /// Every hint a message carries, in order; unknown hints are ignored.
    pub fn of_message(message: &Element) -> Vec<Hint> {
        message
            .elements()
            .filter_map(|e| Hint::try_from(e).ok())
            .collect()
    }
}

impl TryFrom<&Element> for Hint {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if el.ns != NS {
            return Err(PayloadError::UnexpectedElement {
                name: "store",
                ns: NS,
            });
        }
        Hint::from_name(&el.name).ok_or(PayloadError::Invalid("hint"))
    }
}

impl From<Hint> for Element {
    fn from(h: Hint) -> Element {
        Element::new(h.as_str(), NS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::xml;

    #[test]
    fn xep_0334_example_1() {
        let m = xml(r#"<message
              from='romeo@montague.lit/laptop'
              to='juliet@capulet.lit/laptop'>
              <body>V unir avtug'f pybnx gb uvqr zr sebz gurve fvtug</body>
              <no-copy xmlns="urn:xmpp:hints"/>
              <no-store xmlns="urn:xmpp:hints"/>
            </message>"#);
        assert_eq!(Hint::of_message(&m), vec![Hint::NoCopy, Hint::NoStore]);
        for h in Hint::ALL {
            assert_eq!(Hint::try_from(&Element::from(h)), Ok(h));
        }
        assert!(Hint::try_from(&Element::new("forever", NS)).is_err());
    }
}
