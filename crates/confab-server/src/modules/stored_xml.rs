//! Stored XML documents (vCards, private XML): serialized with their own namespace and
//! parsed back with the same limits as a stanza from the network.

use confab_proto::ns;
use confab_proto::parser::{Limits, StreamEvent, StreamParser};
use confab_proto::xml::Element;

/// Serializes an element for storage.
pub fn to_stored(e: &Element) -> String {
    e.to_xml(ns::CLIENT)
}

/// Parses a stored element; `None` (logged) if the stored text is not one element.
pub fn from_stored(text: &str, limits: Limits) -> Option<Element> {
    let mut p = StreamParser::new(limits);
    let doc = format!(
        "<stream:stream xmlns='{}' xmlns:stream='{}'>{text}",
        ns::CLIENT,
        ns::STREAM
    );
    let mut buf = doc.as_bytes();
    loop {
        match p.next_event(&mut buf) {
            Ok(Some(StreamEvent::Header(_))) => continue,
            Ok(Some(StreamEvent::Element(e))) => return Some(e),
            Ok(Some(StreamEvent::Close)) | Ok(None) | Err(_) => {
                tracing::error!("stored XML document is not a single element");
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let e = Element::new("vCard", "vcard-temp")
            .child(Element::new("FN", "vcard-temp").text("A & <b>"))
            .child(Element::new("x", "urn:other").attr("a", "'\""));
        let s = to_stored(&e);
        assert_eq!(from_stored(&s, Limits::default()), Some(e));
        assert_eq!(from_stored("not xml", Limits::default()), None);
        assert_eq!(from_stored("", Limits::default()), None);
    }
}
