//! XEP-0054 vcard-temp (`<vCard xmlns='vcard-temp'>`) and XEP-0153 avatar hashes in
//! presence (`<x xmlns='vcard-temp:x:update'>`).
//!
//! A vCard has dozens of optional fields; the ones servers read (full name, nickname,
//! photo) are typed, and every other child is kept as it is.

use super::{expect, PayloadError};
use crate::xml::Element;
use base64::Engine as _;
use sha1::{Digest, Sha1};

pub const NS: &str = "vcard-temp";
pub const UPDATE_NS: &str = "vcard-temp:x:update";

/// `<PHOTO/>`: an image, inline (`BINVAL`) or by reference (`EXTVAL`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Photo {
    /// `<TYPE/>`, the image's media type.
    pub mime_type: Option<String>,
    /// The decoded `<BINVAL/>`; `None` when absent or empty.
    pub data: Option<Vec<u8>>,
    /// `<EXTVAL/>`, a URI.
    pub extval: Option<String>,
}

impl Photo {
    /// The XEP-0153 hash of the image: hex SHA-1 of the decoded data.
    pub fn hash(&self) -> Option<String> {
        let data = self.data.as_ref()?;
        Some(
            Sha1::digest(data)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}

impl TryFrom<&Element> for Photo {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "PHOTO", NS)?;
        let data = match el.get_child("BINVAL", NS) {
            None => None,
            Some(b) => {
                // BINVAL is often wrapped over several lines.
                let text: String = b
                    .text_content()
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect();
                if text.is_empty() {
                    None
                } else {
                    Some(
                        base64::engine::general_purpose::STANDARD
                            .decode(text)
                            .map_err(|_| PayloadError::BadRequest("PHOTO/BINVAL is not base64"))?,
                    )
                }
            }
        };
        Ok(Photo {
            mime_type: el.get_child("TYPE", NS).map(Element::text_content),
            data,
            extval: el.get_child("EXTVAL", NS).map(Element::text_content),
        })
    }
}

impl From<Photo> for Element {
    fn from(p: Photo) -> Element {
        let mut e = Element::new("PHOTO", NS);
        if let Some(t) = p.mime_type {
            e.push_child(super::text_element("TYPE", NS, t));
        }
        if let Some(d) = p.data {
            let b64 = base64::engine::general_purpose::STANDARD.encode(d);
            e.push_child(Element::new("BINVAL", NS).text(b64));
        }
        if let Some(x) = p.extval {
            e.push_child(super::text_element("EXTVAL", NS, x));
        }
        e
    }
}

/// A vCard: a request (empty) or someone's card.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VCard {
    /// `<FN/>`.
    pub full_name: Option<String>,
    /// `<NICKNAME/>`.
    pub nickname: Option<String>,
    /// The first `<PHOTO/>`.
    pub photo: Option<Photo>,
    /// Every other child, in order (written after the typed ones).
    pub others: Vec<Element>,
}

impl VCard {
    /// The XEP-0153 hash of the photo, if the card has an inline one.
    pub fn photo_hash(&self) -> Option<String> {
        self.photo.as_ref().and_then(Photo::hash)
    }
}

impl TryFrom<&Element> for VCard {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "vCard", NS)?;
        let mut v = VCard::default();
        for c in el.elements() {
            if c.is("FN", NS) && v.full_name.is_none() {
                v.full_name = Some(c.text_content());
            } else if c.is("NICKNAME", NS) && v.nickname.is_none() {
                v.nickname = Some(c.text_content());
            } else if c.is("PHOTO", NS) && v.photo.is_none() {
                v.photo = Some(Photo::try_from(c)?);
            } else {
                v.others.push(c.clone());
            }
        }
        Ok(v)
    }
}

impl From<VCard> for Element {
    fn from(v: VCard) -> Element {
        let mut e = Element::new("vCard", NS);
        if let Some(f) = v.full_name {
            e.push_child(super::text_element("FN", NS, f));
        }
        if let Some(n) = v.nickname {
            e.push_child(super::text_element("NICKNAME", NS, n));
        }
        if let Some(p) = v.photo {
            e.push_child(p.into());
        }
        for o in v.others {
            e.push_child(o);
        }
        e
    }
}

/// XEP-0153 §4.1: what a presence says about the sender's avatar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VCardUpdate {
    /// `<x/>` without `<photo/>`: the client is not yet ready to advertise an avatar.
    NotReady,
    /// An empty `<photo/>`: no avatar.
    NoPhoto,
    /// The hex SHA-1 of the avatar.
    Photo(String),
}

impl VCardUpdate {
    /// From a stored hash, empty meaning no avatar.
    pub fn from_hash(hash: &str) -> Self {
        if hash.is_empty() {
            VCardUpdate::NoPhoto
        } else {
            VCardUpdate::Photo(hash.to_string())
        }
    }
}

impl TryFrom<&Element> for VCardUpdate {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "x", UPDATE_NS)?;
        Ok(
            match el.get_child("photo", UPDATE_NS).map(Element::text_content) {
                None => VCardUpdate::NotReady,
                Some(h) if h.trim().is_empty() => VCardUpdate::NoPhoto,
                Some(h) => VCardUpdate::Photo(h.trim().to_string()),
            },
        )
    }
}

impl From<VCardUpdate> for Element {
    fn from(u: VCardUpdate) -> Element {
        let x = Element::new("x", UPDATE_NS);
        match u {
            VCardUpdate::NotReady => x,
            VCardUpdate::NoPhoto => x.child(Element::new("photo", UPDATE_NS)),
            VCardUpdate::Photo(h) => x.child(Element::new("photo", UPDATE_NS).text(h)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{child, payload, same};

    #[test]
    fn xep_0054_examples() {
        // Example 1 (and 4: the empty card).
        let q = payload("<iq from='stpeter@jabber.org/roundabout' id='v1' type='get'><vCard xmlns='vcard-temp'/></iq>");
        assert_eq!(VCard::try_from(&q), Ok(VCard::default()));
        assert_eq!(Element::from(VCard::default()), q);
        // Example 2, shortened.
        let r = payload(
            "<iq id='v1' to='stpeter@jabber.org/roundabout' type='result'>
               <vCard xmlns='vcard-temp'>
                 <FN>Peter Saint-Andre</FN>
                 <N>
                   <FAMILY>Saint-Andre</FAMILY>
                   <GIVEN>Peter</GIVEN>
                   <MIDDLE/>
                 </N>
                 <NICKNAME>stpeter</NICKNAME>
                 <URL>http://www.xmpp.org/xsf/people/stpeter.shtml</URL>
                 <BDAY>1966-08-06</BDAY>
                 <JABBERID>stpeter@jabber.org</JABBERID>
               </vCard>
             </iq>",
        );
        let v = VCard::try_from(&r).expect("parses");
        assert_eq!(v.full_name.as_deref(), Some("Peter Saint-Andre"));
        assert_eq!(v.nickname.as_deref(), Some("stpeter"));
        assert_eq!(v.photo, None);
        assert_eq!(v.others.len(), 4);
        // The typed fields come first when written back; the order of vCard fields is free.
        assert_eq!(VCard::try_from(&Element::from(v.clone())), Ok(v));
    }

    #[test]
    fn xep_0153_examples() {
        // Example 1 carries a placeholder, which is not base64.
        let bad = payload(
            "<iq from='juliet@capulet.com' type='set' id='vc1'>
               <vCard xmlns='vcard-temp'>
                 <BDAY>1476-06-09</BDAY>
                 <NICKNAME/>
                 <PHOTO>
                   <TYPE>image/jpeg</TYPE>
                   <BINVAL>
                     Base64-encoded-avatar-file-here!
                   </BINVAL>
                 </PHOTO>
               </vCard>
             </iq>",
        );
        assert_eq!(
            VCard::try_from(&bad).map_err(|e| e.condition().as_str()),
            Err("bad-request")
        );
        // The same with real data ("abc", the FIPS 180 SHA-1 test vector), wrapped.
        let mut good = bad.clone();
        if let Some(b) = good
            .get_child_mut("PHOTO", NS)
            .and_then(|p| p.get_child_mut("BINVAL", NS))
        {
            b.children = vec![crate::xml::Node::Text("\n YW\n Jj\n".into())];
        }
        let v = VCard::try_from(&good).expect("parses");
        let photo = v.photo.clone().expect("photo");
        assert_eq!(photo.mime_type.as_deref(), Some("image/jpeg"));
        assert_eq!(photo.data.as_deref(), Some(&b"abc"[..]));
        assert_eq!(
            v.photo_hash().as_deref(),
            Some("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(VCard::try_from(&Element::from(v.clone())), Ok(v));
        // Example 3.
        let x = child(
            "<presence from='juliet@capulet.com/balcony'>
               <x xmlns='vcard-temp:x:update'>
                 <photo>01b87fcd030b72895ff8e88db57ec525450f000d</photo>
               </x>
             </presence>",
            "x",
        );
        let u = VCardUpdate::try_from(&x).expect("parses");
        assert_eq!(
            u,
            VCardUpdate::Photo("01b87fcd030b72895ff8e88db57ec525450f000d".into())
        );
        assert!(same(&Element::from(u), &x));
        let none = Element::new("x", UPDATE_NS).child(Element::new("photo", UPDATE_NS));
        assert_eq!(VCardUpdate::try_from(&none), Ok(VCardUpdate::NoPhoto));
        assert_eq!(Element::from(VCardUpdate::from_hash("")), none);
        assert_eq!(
            VCardUpdate::try_from(&Element::new("x", UPDATE_NS)),
            Ok(VCardUpdate::NotReady)
        );
    }

    #[test]
    fn empty_binval_is_no_photo() {
        let v = Element::new("vCard", NS)
            .child(Element::new("PHOTO", NS).child(Element::new("BINVAL", NS).text(" \n")));
        assert_eq!(VCard::try_from(&v).map(|v| v.photo_hash()), Ok(None));
    }
}
