//! The client's own XEP-0030 identity and features, and its XEP-0115 entity capabilities:
//! answers `disco#info` queries addressed to this client (also at the caps node
//! `node#ver`), and builds the `<c/>` element for presence. Modules add features here;
//! [`crate::PubSub::notify`] adds `NS+notify` interests (XEP-0163 §4.1), which is how a PEP
//! service learns which notifications to send.

use crate::client::{iq, Client};
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::ns::{CAPS, DISCO_INFO};
use confab_proto::payloads::caps::Caps;
use confab_proto::payloads::disco::{DiscoInfo, Identity};
use confab_proto::{Element, IqType, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

/// The XEP-0115 node naming this SDK.
pub const CAPS_NODE: &str = "https://confab.invalid/client";

/// Most features an application or module may add (each one grows every presence's hash
/// input and every disco answer).
pub const MAX_FEATURES: usize = 512;

struct State {
    identity: Identity,
    features: BTreeSet<String>,
}

/// The client's service discovery and capabilities module. Keep an `Arc<Disco>` to add
/// features and to put [`Disco::caps`] in presence ([`crate::Presence::advertise`] does it
/// for each own presence).
pub struct Disco {
    state: Mutex<State>,
}

impl std::fmt::Debug for Disco {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disco")
            .field("features", &self.lock().features)
            .finish()
    }
}

impl Disco {
    /// A disco module for a client called `name` (identity `client/pc`), offering
    /// `disco#info` and caps; ready for [`crate::Config::module`].
    pub fn new(name: &str) -> Arc<Disco> {
        let features = [DISCO_INFO, CAPS].into_iter().map(String::from).collect();
        Arc::new(Disco {
            state: Mutex::new(State {
                identity: Identity::new("client", "pc", Some(name)),
                features,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Plain values: still usable after a panic elsewhere.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Advertises a feature from now on; `false` when it was there already or
    /// [`MAX_FEATURES`] are advertised. The caps hash changes: send presence again for
    /// others to learn it.
    pub fn add_feature(&self, var: &str) -> bool {
        let mut s = self.lock();
        if s.features.len() >= MAX_FEATURES {
            return false;
        }
        s.features.insert(var.to_string())
    }

    /// Stops advertising a feature; `false` when it was not advertised.
    pub fn remove_feature(&self, var: &str) -> bool {
        self.lock().features.remove(var)
    }

    /// Whether a feature is advertised.
    pub fn has_feature(&self, var: &str) -> bool {
        self.lock().features.contains(var)
    }

    /// What a `disco#info` query to this client answers (without node).
    pub fn info(&self) -> DiscoInfo {
        let s = self.lock();
        DiscoInfo {
            node: None,
            identities: vec![s.identity.clone()],
            features: s.features.iter().cloned().collect(),
            extensions: Vec::new(),
        }
    }

    /// The current XEP-0115 verification string.
    pub fn ver(&self) -> String {
        self.caps_of(&self.info()).ver
    }

    fn caps_of(&self, info: &DiscoInfo) -> Caps {
        Caps::sha1(CAPS_NODE, &info.identities, &info.features)
    }

    /// The `<c xmlns='http://jabber.org/protocol/caps'/>` element for the next presence.
    pub fn caps(&self) -> Element {
        self.caps_of(&self.info()).into()
    }

    /// Asks `to` (a server, service, account or client) what it is and offers, at `node`
    /// if given (XEP-0030 §3.1).
    pub async fn query(client: &Client, to: &Jid, node: Option<&str>) -> Result<DiscoInfo, Error> {
        let mut q = Element::new("query", DISCO_INFO);
        if let Some(n) = node {
            q.set_attr("node", n);
        }
        let reply = client.request(iq(IqType::Get, Some(to), q)).await?;
        let q = reply
            .get_child("query", DISCO_INFO)
            .ok_or_else(|| Error::Protocol("disco#info result without <query/>".into()))?;
        DiscoInfo::try_from(q).map_err(|e| Error::Protocol(format!("disco#info: {e}")))
    }

    fn answer(&self, stanza: &Stanza, query: &Element) -> Element {
        let mut info = self.info();
        match query.get_attr("node") {
            None => {}
            // XEP-0115 §6.2: the caps node answers like the entity itself, naming the node.
            Some(n) if n == format!("{CAPS_NODE}#{}", self.caps_of(&info).ver) => {
                info.node = Some(n.to_string());
            }
            Some(_) => {
                let err = StanzaError::new(StanzaErrorCondition::ItemNotFound);
                if let Some(reply) = stanza.error_reply(&err) {
                    return reply.el;
                }
            }
        }
        stanza.iq_result(Some(info.into())).el
    }
}

#[async_trait::async_trait]
impl Module for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled {
        if stanza.kind != StanzaKind::Iq || stanza.iq_type() != Some(IqType::Get) {
            return Handled::Pass;
        }
        match stanza.iq_payload() {
            Some(q) if q.is("query", DISCO_INFO) => {
                ctx.send(self.answer(stanza, q));
                Handled::Consumed
            }
            _ => Handled::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_change_the_hash() {
        let d = Disco::new("confab");
        let before = d.ver();
        assert!(d.add_feature("urn:xmpp:avatar:metadata+notify"));
        assert!(!d.add_feature("urn:xmpp:avatar:metadata+notify"));
        assert_ne!(d.ver(), before);
        assert!(d.remove_feature("urn:xmpp:avatar:metadata+notify"));
        assert_eq!(d.ver(), before);
        let c = Caps::try_from(&d.caps()).expect("caps");
        assert_eq!((c.node.as_str(), c.ver), (CAPS_NODE, before));
    }
}
