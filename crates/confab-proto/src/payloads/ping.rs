//! XEP-0199 XMPP Ping: `<ping xmlns='urn:xmpp:ping'/>`.

use super::{expect, PayloadError};
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:ping";

/// A ping request (the result is an empty IQ result).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ping;

impl TryFrom<&Element> for Ping {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "ping", NS)?;
        Ok(Ping)
    }
}

impl From<Ping> for Element {
    fn from(_: Ping) -> Element {
        Element::new("ping", NS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same};

    #[test]
    fn xep_0199_example_1() {
        let p = payload(
            "<iq from='capulet.lit' to='juliet@capulet.lit/balcony' id='s2c1' type='get'>
               <ping xmlns='urn:xmpp:ping'/>
             </iq>",
        );
        assert_eq!(Ping::try_from(&p), Ok(Ping));
        assert!(same(&Element::from(Ping), &p));
        assert!(Ping::try_from(&Element::new("ping", "urn:xmpp:pong")).is_err());
    }
}
