//! XEP-0092 Software Version: `<query xmlns='jabber:iq:version'>` with name, version, os.

use super::{child_text, expect, text_element, PayloadError};
use crate::xml::Element;

pub const NS: &str = "jabber:iq:version";

/// A request (all fields absent) or an answer (name and version required).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SoftwareVersion {
    pub name: Option<String>,
    pub version: Option<String>,
    pub os: Option<String>,
}

impl SoftwareVersion {
    /// An answer without the operating system.
    pub fn answer(name: &str, version: &str) -> Self {
        SoftwareVersion {
            name: Some(name.to_string()),
            version: Some(version.to_string()),
            os: None,
        }
    }
}

impl TryFrom<&Element> for SoftwareVersion {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", NS)?;
        Ok(SoftwareVersion {
            name: child_text(el, "name", NS),
            version: child_text(el, "version", NS),
            os: child_text(el, "os", NS),
        })
    }
}

impl From<SoftwareVersion> for Element {
    fn from(v: SoftwareVersion) -> Element {
        let mut e = Element::new("query", NS);
        for (name, value) in [("name", v.name), ("version", v.version), ("os", v.os)] {
            if let Some(value) = value {
                e.push_child(text_element(name, NS, value));
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same};

    #[test]
    fn xep_0092_examples() {
        let q = payload(
            "<iq type='get' from='romeo@montague.net/orchard'
                 to='juliet@capulet.com/balcony' id='version_1'>
               <query xmlns='jabber:iq:version'/>
             </iq>",
        );
        assert_eq!(
            SoftwareVersion::try_from(&q),
            Ok(SoftwareVersion::default())
        );
        assert_eq!(Element::from(SoftwareVersion::default()), q);
        let r = payload(
            "<iq type='result' to='romeo@montague.net/orchard'
                 from='juliet@capulet.com/balcony' id='version_1'>
               <query xmlns='jabber:iq:version'>
                 <name>Exodus</name>
                 <version>0.7.0.4</version>
                 <os>Windows-XP 5.01.2600</os>
               </query>
             </iq>",
        );
        let v = SoftwareVersion {
            os: Some("Windows-XP 5.01.2600".into()),
            ..SoftwareVersion::answer("Exodus", "0.7.0.4")
        };
        assert_eq!(SoftwareVersion::try_from(&r).as_ref(), Ok(&v));
        assert!(same(&Element::from(v), &r));
    }
}
