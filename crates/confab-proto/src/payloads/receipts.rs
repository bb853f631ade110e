//! XEP-0184 Message Delivery Receipts.

use super::PayloadError;
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:receipts";

/// `<request/>`: the sender asks for a receipt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request;

/// `<received id='…'/>`: the receipt for the message with that id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// The id of the message received (required since version 1.1; old clients omit it).
    pub id: Option<String>,
}

impl TryFrom<&Element> for Request {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        super::expect(el, "request", NS)?;
        Ok(Request)
    }
}

impl From<Request> for Element {
    fn from(_: Request) -> Element {
        Element::new("request", NS)
    }
}

impl TryFrom<&Element> for Received {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        super::expect(el, "received", NS)?;
        Ok(Received {
            id: el.get_attr("id").map(str::to_string),
        })
    }
}

impl From<Received> for Element {
    fn from(r: Received) -> Element {
        let e = Element::new("received", NS);
        match r.id {
            Some(id) => e.attr("id", id),
            None => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{child, same};

    #[test]
    fn xep_0184_examples_3_and_4() {
        let r = child(
            "<message
              from='northumberland@shakespeare.lit/westminster'
              id='richard2-4.1.247'
              to='kingrichard@royalty.england.lit/throne'>
              <body>My lord, dispatch; read o'er these articles.</body>
              <request xmlns='urn:xmpp:receipts'/>
            </message>",
            "request",
        );
        assert_eq!(Request::try_from(&r), Ok(Request));
        assert!(same(&Element::from(Request), &r));
        let r = child(
            "<message
              from='kingrichard@royalty.england.lit/throne'
              id='bi29sg183b4v'
              to='northumberland@shakespeare.lit/westminster'>
              <received xmlns='urn:xmpp:receipts' id='richard2-4.1.247'/>
            </message>",
            "received",
        );
        let parsed = Received::try_from(&r);
        assert_eq!(
            parsed,
            Ok(Received {
                id: Some("richard2-4.1.247".into())
            })
        );
        assert!(parsed.is_ok_and(|p| same(&Element::from(p), &r)));
        assert!(Received::try_from(&Element::new("request", NS)).is_err());
    }
}
