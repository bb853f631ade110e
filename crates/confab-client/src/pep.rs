//! What this SDK publishes and follows over PEP (XEP-0163): user nicknames (XEP-0172) and
//! user avatars (XEP-0084: the image in the data node, its description in the metadata
//! node, contacts notified of the metadata only).
//!
//! Publish with [`PubSub::publish_nick`] / [`PubSub::publish_avatar`]; to hear contacts'
//! changes call [`PubSub::notify`] with [`NICK_NS`] and [`AVATAR_METADATA_NS`] and turn
//! [`crate::PubSubEvent`]s into [`PepEvent`]s with [`PepEvent::from_pubsub`].

use crate::client::Client;
use crate::error::Error;
use crate::pubsub::{ItemsQuery, PubSub, PubSubError, PubSubEvent};
use base64::Engine as _;
use confab_proto::{BareJid, Element, Jid};
use sha1::{Digest, Sha1};

/// XEP-0172's namespace, also its PEP node.
pub const NICK_NS: &str = "http://jabber.org/protocol/nick";
/// XEP-0084's data node (the image, base64).
pub const AVATAR_DATA_NS: &str = "urn:xmpp:avatar:data";
/// XEP-0084's metadata node (what contacts are notified of).
pub const AVATAR_METADATA_NS: &str = "urn:xmpp:avatar:metadata";

/// Largest avatar image [`PubSub::publish_avatar`] sends (XEP-0084 §7 recommends small
/// images; servers limit stanza sizes, often to 256 KiB after base64).
pub const MAX_AVATAR_BYTES: usize = 128 * 1024;

/// One `<info/>` of avatar metadata (XEP-0084 §4.2.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvatarInfo {
    /// The hex SHA-1 of the image, also the item id of its data.
    pub id: String,
    /// The image's size in bytes.
    pub bytes: u64,
    /// Its media type, e.g. `image/png`.
    pub mime_type: String,
    /// Width in pixels, if known.
    pub width: Option<u16>,
    /// Height in pixels, if known.
    pub height: Option<u16>,
    /// Where to fetch it instead of the data node, if anywhere.
    pub url: Option<String>,
}

impl AvatarInfo {
    fn to_element(&self) -> Element {
        let mut e = Element::new("info", AVATAR_METADATA_NS)
            .attr("id", self.id.as_str())
            .attr("bytes", self.bytes.to_string())
            .attr("type", self.mime_type.as_str());
        if let Some(w) = self.width {
            e.set_attr("width", w.to_string());
        }
        if let Some(h) = self.height {
            e.set_attr("height", h.to_string());
        }
        if let Some(u) = &self.url {
            e.set_attr("url", u.as_str());
        }
        e
    }

    fn from_element(e: &Element) -> Option<AvatarInfo> {
        Some(AvatarInfo {
            id: e.get_attr("id")?.to_string(),
            bytes: e.get_attr("bytes")?.trim().parse().ok()?,
            mime_type: e.get_attr("type")?.to_string(),
            width: e.get_attr("width").and_then(|w| w.trim().parse().ok()),
            height: e.get_attr("height").and_then(|h| h.trim().parse().ok()),
            url: e.get_attr("url").map(str::to_string),
        })
    }
}

/// A contact's nickname or avatar changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PepEvent {
    /// Their nickname (`None`: they removed it).
    Nick {
        /// Whose.
        from: BareJid,
        /// The new nickname.
        nick: Option<String>,
    },
    /// Their avatar (`None`: they disabled it, XEP-0084 §4.4). Fetch the image with
    /// [`PubSub::fetch_avatar`] unless the application has it (same `id`).
    Avatar {
        /// Whose.
        from: BareJid,
        /// The first (PNG, if offered) description of the new avatar.
        info: Option<AvatarInfo>,
    },
}

impl PepEvent {
    /// The nickname or avatar change a pubsub notification says, if it is one. Only
    /// notifications from a bare JID count: PEP services are accounts, so a full JID is
    /// some client pretending.
    pub fn from_pubsub(event: &PubSubEvent) -> Option<PepEvent> {
        let (from, node, payload) = match event {
            PubSubEvent::Items { from, node, items } => {
                (from, node, items.last().and_then(|i| i.payload.as_ref()))
            }
            PubSubEvent::Retracted { from, node, .. }
            | PubSubEvent::Purged { from, node }
            | PubSubEvent::Deleted { from, node } => (from, node, None),
        };
        if from.resource().is_some() {
            return None;
        }
        let from = from.to_bare();
        match node.as_str() {
            NICK_NS => Some(PepEvent::Nick {
                from,
                nick: payload
                    .filter(|p| p.is("nick", NICK_NS))
                    .map(Element::text_content)
                    .filter(|n| !n.is_empty()),
            }),
            AVATAR_METADATA_NS => {
                let infos: Vec<AvatarInfo> = payload
                    .filter(|p| p.is("metadata", AVATAR_METADATA_NS))
                    .map(|m| {
                        m.elements()
                            .filter(|e| e.is("info", AVATAR_METADATA_NS))
                            .filter_map(AvatarInfo::from_element)
                            .collect()
                    })
                    .unwrap_or_default();
                let info = infos
                    .iter()
                    .find(|i| i.mime_type == "image/png")
                    .or(infos.first())
                    .cloned();
                Some(PepEvent::Avatar { from, info })
            }
            _ => None,
        }
    }
}

fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn pep_service(whose: &BareJid, client: &Client) -> Option<Jid> {
    // Own PEP: leave `to` out (XEP-0163 §7.1.1); a contact's: their bare JID.
    (client.jid().to_bare() != *whose).then(|| Jid::from(whose.clone()))
}

impl PubSub {
    /// Publishes this account's nickname (XEP-0172 §4.3) to its PEP node.
    pub async fn publish_nick(&self, client: &Client, nick: &str) -> Result<(), PubSubError> {
        let payload = Element::new("nick", NICK_NS).text(nick);
        self.publish(client, None, NICK_NS, Some("current"), payload, &[])
            .await?;
        Ok(())
    }

    /// The nickname `whose` published, if any (`None` also when their node is absent).
    pub async fn fetch_nick(
        &self,
        client: &Client,
        whose: &BareJid,
    ) -> Result<Option<String>, PubSubError> {
        let service = pep_service(whose, client);
        match self
            .items(client, service.as_ref(), NICK_NS, &ItemsQuery::Max(1))
            .await
        {
            Ok(items) => Ok(items
                .last()
                .and_then(|i| i.payload.as_ref())
                .filter(|p| p.is("nick", NICK_NS))
                .map(Element::text_content)),
            Err(PubSubError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Publishes an avatar (XEP-0084 §4.1, §4.2): the image to the data node, then its
    /// description to the metadata node, which notifies contacts. At most
    /// [`MAX_AVATAR_BYTES`].
    pub async fn publish_avatar(
        &self,
        client: &Client,
        image: &[u8],
        mime_type: &str,
        width: Option<u16>,
        height: Option<u16>,
    ) -> Result<AvatarInfo, PubSubError> {
        if image.len() > MAX_AVATAR_BYTES {
            return Err(PubSubError::Client(Error::InvalidRequest(
                "avatar larger than MAX_AVATAR_BYTES",
            )));
        }
        let info = AvatarInfo {
            id: sha1_hex(image),
            bytes: image.len() as u64,
            mime_type: mime_type.to_string(),
            width,
            height,
            url: None,
        };
        let data = Element::new("data", AVATAR_DATA_NS)
            .text(base64::engine::general_purpose::STANDARD.encode(image));
        self.publish(client, None, AVATAR_DATA_NS, Some(&info.id), data, &[])
            .await?;
        let metadata = Element::new("metadata", AVATAR_METADATA_NS).child(info.to_element());
        self.publish(
            client,
            None,
            AVATAR_METADATA_NS,
            Some(&info.id),
            metadata,
            &[],
        )
        .await?;
        Ok(info)
    }

    /// Tells contacts this account shows no avatar any more (XEP-0084 §4.4: empty
    /// metadata).
    pub async fn disable_avatar(&self, client: &Client) -> Result<(), PubSubError> {
        let metadata = Element::new("metadata", AVATAR_METADATA_NS);
        self.publish(
            client,
            None,
            AVATAR_METADATA_NS,
            Some("current"),
            metadata,
            &[],
        )
        .await?;
        Ok(())
    }

    /// Fetches the image `id` of `whose` avatar from their data node and checks it is the
    /// one named (its SHA-1); `None` when they have no such item.
    pub async fn fetch_avatar(
        &self,
        client: &Client,
        whose: &BareJid,
        id: &str,
    ) -> Result<Option<Vec<u8>>, PubSubError> {
        let service = pep_service(whose, client);
        let items = match self
            .items(
                client,
                service.as_ref(),
                AVATAR_DATA_NS,
                &ItemsQuery::Ids(vec![id.to_string()]),
            )
            .await
        {
            Ok(items) => items,
            Err(PubSubError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(data) = items
            .iter()
            .find(|i| i.id.as_deref() == Some(id))
            .and_then(|i| i.payload.as_ref())
            .filter(|p| p.is("data", AVATAR_DATA_NS))
        else {
            return Ok(None);
        };
        let text: String = data
            .text_content()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let image = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| Error::Protocol(format!("avatar data: {e}")))?;
        if sha1_hex(&image) != id.to_ascii_lowercase() {
            return Err(Error::Protocol("avatar data does not match its id".into()).into());
        }
        Ok(Some(image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pubsub::Item;

    fn items(from: &str, node: &str, payload: Element) -> PubSubEvent {
        PubSubEvent::Items {
            from: Jid::new(from).expect("jid"),
            node: node.into(),
            items: vec![Item {
                id: Some("x".into()),
                publisher: None,
                payload: Some(payload),
            }],
        }
    }

    #[test]
    fn nick_and_avatar_events() {
        let nick = items(
            "juliet@capulet.lit",
            NICK_NS,
            Element::new("nick", NICK_NS).text("Jules"),
        );
        assert_eq!(
            PepEvent::from_pubsub(&nick),
            Some(PepEvent::Nick {
                from: BareJid::new("juliet@capulet.lit").expect("jid"),
                nick: Some("Jules".into())
            })
        );
        // From a full JID: not a PEP service.
        let forged = items(
            "juliet@capulet.lit/balcony",
            NICK_NS,
            Element::new("nick", NICK_NS).text("x"),
        );
        assert_eq!(PepEvent::from_pubsub(&forged), None);
        let info = AvatarInfo {
            id: sha1_hex(b"png"),
            bytes: 3,
            mime_type: "image/png".into(),
            width: Some(64),
            height: Some(64),
            url: None,
        };
        let meta = Element::new("metadata", AVATAR_METADATA_NS).child(info.to_element());
        assert_eq!(
            PepEvent::from_pubsub(&items("juliet@capulet.lit", AVATAR_METADATA_NS, meta)),
            Some(PepEvent::Avatar {
                from: BareJid::new("juliet@capulet.lit").expect("jid"),
                info: Some(info)
            })
        );
        let empty = Element::new("metadata", AVATAR_METADATA_NS);
        assert!(matches!(
            PepEvent::from_pubsub(&items("juliet@capulet.lit", AVATAR_METADATA_NS, empty)),
            Some(PepEvent::Avatar { info: None, .. })
        ));
    }
}
