//! XEP-0352 Client State Indication: while a client says it is `<inactive/>` (a phone in a
//! pocket), presence updates and standalone chat states wait, keeping only the latest
//! presence of each contact; a message with a body (any message that is not only a chat
//! state) or `<active/>` sends what waited first, in order. IQs pass without waking it. Works as a delivery filter on the
//! serialized stanzas, so holding costs other sessions nothing.

use async_trait::async_trait;
use confab_proto::error::StreamError;
use confab_proto::stanza::{Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::{FeatureStage, Module, ModuleConfig, Registry, SessionElementHandler};
use confab_server::session::{Delivery, DeliveryFilter, SessionInfo};
use confab_server::ServerCtx;
use confab_stream::WireStanza;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex, OnceLock};

pub const NS: &str = "urn:xmpp:csi:0";
const CHATSTATES_NS: &str = "http://jabber.org/protocol/chatstates";

/// `[client_state]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientStateConfig {
    /// Stanzas held for one inactive session; when more would be held, what waits is sent.
    pub max_held: usize,
}

impl Default for ClientStateConfig {
    fn default() -> Self {
        ClientStateConfig { max_held: 500 }
    }
}

impl ModuleConfig for ClientStateConfig {
    fn validate(&self) -> Result<(), String> {
        if self.max_held == 0 || self.max_held > 100_000 {
            return Err("max_held must be between 1 and 100000".into());
        }
        Ok(())
    }
}

/// The `client_state` module.
#[derive(Default)]
pub struct ClientState {
    max_held: OnceLock<usize>,
}

impl Module for ClientState {
    fn name(&self) -> &'static str {
        "client_state"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        let config: ClientStateConfig = reg.section("client_state");
        let _ = self.max_held.set(config.max_held);
        reg.stream_feature(FeatureStage::Authenticated, Element::new("csi", NS));
        reg.session_element("active", NS, self.clone());
        reg.session_element("inactive", NS, self);
    }
}

/// One session's state: whether it is inactive, and what waits.
struct Held {
    inner: Mutex<HeldInner>,
    max: usize,
}

#[derive(Default)]
struct HeldInner {
    inactive: bool,
    /// Waiting stanzas in order; a presence is keyed by its sender so a newer one from the
    /// same contact replaces it.
    queue: Vec<(Option<String>, WireStanza)>,
}

impl Held {
    fn lock(&self) -> std::sync::MutexGuard<'_, HeldInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What may wait while the client is inactive: presence (not subscription requests, which
/// a user acts on) and messages that carry only a chat state.
fn holdable(stanza: &Stanza) -> Option<Option<String>> {
    match stanza.kind {
        StanzaKind::Presence => match stanza.type_attr() {
            None | Some("unavailable") => Some(stanza.from.as_ref().map(|f| f.to_string())),
            _ => None,
        },
        StanzaKind::Message => {
            let mut children = stanza.el.elements();
            let only_chat_state = children.all(|c| *c.ns == *CHATSTATES_NS);
            (only_chat_state && stanza.el.elements().next().is_some()).then_some(None)
        }
        StanzaKind::Iq => None,
    }
}

/// Queues what waited for `session`, in order.
fn flush(session: &SessionInfo, queue: Vec<(Option<String>, WireStanza)>) {
    for (_, wire) in queue {
        session.send(wire);
    }
}

impl DeliveryFilter for Held {
    fn filter(&self, session: &SessionInfo, stanza: &Stanza, wire: &WireStanza) -> Delivery {
        // Requests and answers go at once and leave the rest waiting: their order
        // relative to presence does not matter, and a server ping must not wake a client.
        if stanza.kind == StanzaKind::Iq {
            return Delivery::Send;
        }
        let mut h = self.lock();
        if !h.inactive {
            return Delivery::Send;
        }
        match holdable(stanza) {
            Some(key) => {
                if let Some(k) = &key {
                    // The latest presence of a contact is all an inactive client needs.
                    h.queue.retain(|(q, _)| q.as_ref() != Some(k));
                }
                h.queue.push((key, wire.clone()));
                if h.queue.len() > self.max {
                    let queue = std::mem::take(&mut h.queue);
                    drop(h);
                    flush(session, queue);
                }
                Delivery::Held
            }
            None => {
                // Something that matters now: what waited goes first, to keep the order.
                let queue = std::mem::take(&mut h.queue);
                drop(h);
                flush(session, queue);
                Delivery::Send
            }
        }
    }
}

#[async_trait]
impl SessionElementHandler for ClientState {
    async fn handle(
        &self,
        _ctx: &ServerCtx,
        session: &Arc<SessionInfo>,
        el: &Element,
    ) -> Result<Vec<Element>, StreamError> {
        let max = *self
            .max_held
            .get_or_init(|| ClientStateConfig::default().max_held);
        let held = session.data_or_insert_with(|| Held {
            inner: Mutex::new(HeldInner::default()),
            max,
        });
        // Installed on first use; a session has one delivery filter.
        let _ = session.set_delivery_filter(held.clone());
        let inactive = el.name == "inactive";
        let queue = {
            let mut h = held.lock();
            h.inactive = inactive;
            if inactive {
                Vec::new()
            } else {
                std::mem::take(&mut h.queue)
            }
        };
        flush(session, queue);
        // XEP-0352 defines no answer.
        Ok(vec![])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::parser::{parse_fragment, Limits};

    fn stanza(xml: &str) -> Stanza {
        let el = parse_fragment(xml, confab_proto::ns::CLIENT, &Limits::default()).expect("xml");
        Stanza::from_element(el).expect("stanza")
    }

    #[test]
    fn presence_and_bare_chat_states_wait_messages_and_requests_do_not() {
        assert_eq!(
            holdable(&stanza("<presence from='a@b/c'/>")),
            Some(Some("a@b/c".into()))
        );
        assert!(holdable(&stanza("<presence from='a@b/c' type='unavailable'/>")).is_some());
        assert!(holdable(&stanza("<presence from='a@b' type='subscribe'/>")).is_none());
        assert!(holdable(&stanza(
            "<message><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ))
        .is_some());
        assert!(holdable(&stanza(
            "<message><body>hi</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ))
        .is_none());
        assert!(holdable(&stanza("<message/>")).is_none());
        assert!(holdable(&stanza(
            "<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .is_none());
    }

    #[test]
    fn config_is_checked() {
        assert!(ClientStateConfig::default().validate().is_ok());
        assert!(ClientStateConfig { max_held: 0 }.validate().is_err());
    }
}
