//! XEP-0486 MUC Avatars: a room's vCard (XEP-0054 vcard-temp), set by its owners and read by
//! whoever may see the room. The SHA-1 of each inline photo (XEP-0153) is the room's avatar
//! hash: listed in disco#info (`muc#roominfo_avatarhash`) and announced to occupants with a
//! presence from the room's bare JID (`vcard-temp:x:update`) and status 104, as Prosody's
//! `mod_vcard_muc` does. No I/O here: `room.rs` calls these, `lib.rs` stores the card.

use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::BareJid;
use confab_proto::ns;
use confab_proto::parser::{parse_fragment, Limits};
use confab_proto::payloads::vcard::{Photo, VCard, VCardUpdate};
use confab_proto::xml::Element;
use std::sync::Arc;

pub const NS_VCARD: &str = confab_proto::payloads::vcard::NS;

/// Room for the vCard's other fields (name, description, URL …) beside its photos.
const TEXT_ALLOWANCE: usize = 16 * 1024;

/// Largest vCard accepted, as XML, when photos may hold `max_photo_bytes` decoded bytes:
/// their base64 (4/3, plus line breaks) and the other fields.
pub fn max_vcard_xml(max_photo_bytes: usize) -> usize {
    max_photo_bytes
        .saturating_mul(2)
        .saturating_add(TEXT_ALLOWANCE)
}

/// A room's vCard as set by an owner (unknown fields kept).
#[derive(Clone, Debug)]
pub struct RoomVcard {
    /// What a `get` is answered with.
    pub el: Arc<Element>,
    /// The XEP-0153 hash of each inline photo, in order: XEP-0486 §5.1 lists them all.
    pub hashes: Vec<String>,
}

impl RoomVcard {
    /// The card as stored with a persistent room.
    pub fn to_xml(&self) -> String {
        self.el.to_xml(ns::CLIENT)
    }

    /// A stored card, checked as when it was set (`None` if it no longer parses).
    pub fn from_stored(xml: &str, limits: &Limits) -> Option<RoomVcard> {
        let el = parse_fragment(xml, ns::CLIENT, limits)?;
        check(&el, usize::MAX).ok().flatten()
    }

    /// The hash presence announces: the first photo's (XEP-0153 carries one).
    pub fn hash(&self) -> Option<&str> {
        self.hashes.first().map(String::as_str)
    }
}

/// Checks a vCard an owner sets. `Ok(None)`: an empty card, which removes the room's
/// (XEP-0486 §3.2). `bad-request` for a photo that is not base64, `not-acceptable` (as for
/// an account's vCard past `[vcard] max_size`) for photos over `max_photo_bytes` decoded
/// or a card over `max_vcard_xml`.
pub fn check(el: &Element, max_photo_bytes: usize) -> Result<Option<RoomVcard>, StanzaError> {
    if !el.is("vCard", NS_VCARD) {
        return Err(StanzaError::new(StanzaErrorCondition::BadRequest));
    }
    if el.elements().next().is_none() {
        return Ok(None);
    }
    // Before anything is decoded: a card far over the limit costs no more work.
    if max_photo_bytes != usize::MAX && el.to_xml(ns::CLIENT).len() > max_vcard_xml(max_photo_bytes)
    {
        return Err(too_big(max_photo_bytes));
    }
    // Validates the typed fields the way an account's card is validated.
    VCard::try_from(el).map_err(|e| e.to_stanza_error())?;
    let mut hashes = Vec::new();
    let mut total = 0usize;
    for p in el.elements().filter(|c| c.is("PHOTO", NS_VCARD)) {
        let photo = Photo::try_from(p).map_err(|e| e.to_stanza_error())?;
        total = total.saturating_add(photo.data.as_ref().map_or(0, Vec::len));
        if total > max_photo_bytes {
            return Err(too_big(max_photo_bytes));
        }
        if let Some(h) = photo.hash() {
            if !hashes.contains(&h) {
                hashes.push(h);
            }
        }
    }
    Ok(Some(RoomVcard {
        el: Arc::new(el.clone()),
        hashes,
    }))
}

fn too_big(max: usize) -> StanzaError {
    StanzaError::with_text(
        StanzaErrorCondition::NotAcceptable,
        format!("the room's avatar may have at most {max} bytes"),
    )
}

/// The answer to a `get`: the card, or an empty one when the room has none (XEP-0054
/// §3.1 allows it; the `vcard` module answers the same for accounts).
pub fn reply(card: Option<&RoomVcard>) -> Element {
    match card {
        Some(c) => (*c.el).clone(),
        None => VCard::default().into(),
    }
}

/// The presence from the room's bare JID with its avatar hash (XEP-0486 §6.2, XEP-0153):
/// an empty `<photo/>` once the avatar is removed.
pub fn update_presence(room: &BareJid, hash: Option<&str>) -> Element {
    Element::new("presence", ns::CLIENT)
        .attr("from", room.as_str())
        .child(VCardUpdate::from_hash(hash.unwrap_or_default()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(binvals: &[&str]) -> Element {
        let mut v = Element::new("vCard", NS_VCARD);
        for b in binvals {
            v.push_child(
                Element::new("PHOTO", NS_VCARD)
                    .child(Element::new("TYPE", NS_VCARD).text("image/png"))
                    .child(Element::new("BINVAL", NS_VCARD).text(*b)),
            );
        }
        v
    }

    #[test]
    fn hashes_limits_and_removal() {
        // SHA-1 of "abc" and of "abcd" (base64 "YWJj", "YWJjZA==").
        let c = check(&card(&["YWJj", "YWJjZA=="]), 100)
            .expect("valid")
            .expect("a card");
        assert_eq!(
            c.hashes,
            [
                "a9993e364706816aba3e25717850c26c9cd0d89d",
                "81fe8bfe87576c3ecb22426f8e57847382917acf"
            ]
        );
        assert_eq!(c.hash(), Some("a9993e364706816aba3e25717850c26c9cd0d89d"));
        // 3 + 4 decoded bytes: over a limit of 6, whichever photo passes it.
        let e = check(&card(&["YWJj", "YWJjZA=="]), 6).expect_err("too big");
        assert_eq!(e.condition, StanzaErrorCondition::NotAcceptable);
        let e = check(&card(&["!!"]), 100).expect_err("not base64");
        assert_eq!(e.condition, StanzaErrorCondition::BadRequest);
        assert!(check(&Element::new("vCard", NS_VCARD), 100)
            .expect("empty")
            .is_none());
        // Stored and read back: the same hashes.
        let back =
            RoomVcard::from_stored(&c.to_xml(), &Limits::default()).expect("stored card reads");
        assert_eq!(back.hashes, c.hashes);
        let p = update_presence(&BareJid::new("r@muc.example").expect("jid"), None);
        assert!(p.to_xml(ns::CLIENT).contains("<photo"), "{p}");
    }
}
