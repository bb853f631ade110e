//! XEP-0054 vcard-temp (fetch anyone's vCard, publish one's own) and XEP-0153 avatars (the
//! photo's hash announced in presence, contacts' hash changes surfaced). Like
//! XMPPFramework's `XMPPvCardTempModule` and `XMPPvCardAvatarModule`.

use crate::client::{iq, Client};
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::payloads::vcard::{VCardUpdate, NS, UPDATE_NS};
use confab_proto::{BareJid, Element, IqType, Jid, Stanza, StanzaErrorCondition, StanzaKind};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

pub use confab_proto::payloads::vcard::{Photo, VCard};

/// Most contacts whose avatar hash is remembered (to report changes only); beyond it the
/// table is cleared and changes are reported again.
const MAX_KNOWN_HASHES: usize = 10_000;

/// What the vCard module saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VCardEvent {
    /// A contact's avatar changed (XEP-0153): fetch their vCard for the new photo.
    AvatarChanged {
        /// Whose: a contact's resource, or a room occupant.
        from: Jid,
        /// The SHA-1 of the new photo (hex); `None`: they have no photo now.
        hash: Option<String>,
    },
}

#[derive(Default)]
struct State {
    /// Our own photo's hash, once known (fetched or published).
    own: Option<VCardUpdate>,
    known: HashMap<String, Option<String>>,
}

/// The vCard module. Keep an `Arc<VCards>` to fetch and publish, and for its events.
pub struct VCards {
    state: Mutex<State>,
    events: broadcast::Sender<VCardEvent>,
}

impl std::fmt::Debug for VCards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VCards")
            .field("own", &self.lock().own)
            .finish_non_exhaustive()
    }
}

impl VCards {
    /// A vCard module, ready for [`crate::Config::module`].
    pub fn new() -> Arc<VCards> {
        let (events, _) = broadcast::channel(256);
        Arc::new(VCards {
            state: Mutex::new(State::default()),
            events,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain values: still usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Avatar events from now on.
    pub fn events(&self) -> broadcast::Receiver<VCardEvent> {
        self.events.subscribe()
    }

    /// Fetches the vCard of `whose` (this account's when `None`); `None` when there is none
    /// (`item-not-found`, or an empty vCard). A malformed one is [`Error::Protocol`].
    pub async fn fetch(
        &self,
        client: &Client,
        whose: Option<&BareJid>,
    ) -> Result<Option<VCard>, Error> {
        let to = whose.map(|w| Jid::from(w.clone()));
        let reply = match client
            .request(iq(IqType::Get, to.as_ref(), Element::new("vCard", NS)))
            .await
        {
            Ok(r) => r,
            Err(Error::Stanza { error, .. })
                if error.condition == StanzaErrorCondition::ItemNotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let card = match reply.get_child("vCard", NS) {
            Some(v) if v.elements().next().is_some() => {
                VCard::try_from(v).map_err(|e| Error::Protocol(format!("vCard: {e}")))?
            }
            _ => {
                if whose.is_none() {
                    self.lock().own = Some(VCardUpdate::NoPhoto);
                }
                return Ok(None);
            }
        };
        if whose.is_none() {
            self.lock().own = Some(own_update(&card));
        }
        Ok(Some(card))
    }

    /// Publishes this account's vCard (replacing the old one). Announce the new avatar
    /// afterwards with [`VCards::presence_update`] in the next presence (see
    /// [`crate::Presence::set_extensions`]).
    pub async fn publish(&self, client: &Client, card: &VCard) -> Result<(), Error> {
        client
            .request(iq(IqType::Set, None, card.clone().into()))
            .await?;
        self.lock().own = Some(own_update(card));
        Ok(())
    }

    /// The XEP-0153 element for this account's presence: the photo's hash, no photo, or
    /// "not ready" (an empty `<x/>`) until the own vCard was fetched or published.
    pub fn presence_update(&self) -> Element {
        self.lock()
            .own
            .clone()
            .unwrap_or(VCardUpdate::NotReady)
            .into()
    }

    fn observe(&self, stanza: &Stanza, own: &BareJid) {
        let Some(x) = stanza.el.get_child("x", UPDATE_NS) else {
            return;
        };
        let Some(from) = stanza.from.clone() else {
            return;
        };
        if from.to_bare() == *own {
            return;
        }
        let hash = match VCardUpdate::try_from(x) {
            Ok(VCardUpdate::Photo(h)) => Some(h),
            Ok(VCardUpdate::NoPhoto) => None,
            // "Not ready" says nothing about the photo.
            Ok(VCardUpdate::NotReady) | Err(_) => return,
        };
        let changed = {
            let mut s = self.lock();
            // Keyed by the full JID: each occupant of a room shares the room's bare JID.
            if s.known.len() >= MAX_KNOWN_HASHES && !s.known.contains_key(from.as_str()) {
                s.known.clear();
            }
            s.known.insert(from.to_string(), hash.clone()).as_ref() != Some(&hash)
        };
        if changed {
            let _ = self.events.send(VCardEvent::AvatarChanged { from, hash });
        }
    }
}

fn own_update(card: &VCard) -> VCardUpdate {
    match card.photo_hash() {
        Some(h) => VCardUpdate::Photo(h),
        None => VCardUpdate::NoPhoto,
    }
}

#[async_trait::async_trait]
impl Module for VCards {
    fn name(&self) -> &'static str {
        "vcard"
    }

    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled {
        if stanza.kind == StanzaKind::Presence && stanza.type_attr().is_none() {
            let own = ctx.jid().to_bare();
            self.observe(stanza, &own);
        }
        Handled::Pass
    }
}
