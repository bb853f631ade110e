//! XEP-0280 Message Carbons: a user's other devices see both sides of a conversation. A
//! session enables carbons with an IQ; then every eligible chat message another of the
//! account's sessions sends (`<sent/>`) or that reaches another of its sessions but not
//! this one (`<received/>`) comes to it too, wrapped in XEP-0297 `<forwarded/>` with the
//! original element as it was.

use async_trait::async_trait;
use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::Jid;
use confab_proto::stanza::{IqType, Stanza, StanzaKind};
use confab_proto::xml::Element;
use confab_server::module::{
    HookArgs, HookPoint, HookResult, IqHandler, IqReply, IqTarget, Module, Registry, StanzaHook,
};
use confab_server::session::SessionInfo;
use confab_server::ServerCtx;
use confab_server::{carbons, router};
use std::sync::Arc;

pub use confab_server::carbons::NS;
const FORWARD_NS: &str = "urn:xmpp:forward:0";
const MUC_USER_NS: &str = "http://jabber.org/protocol/muc#user";

/// The `carbons` module.
pub struct Carbons;

impl Module for Carbons {
    fn name(&self) -> &'static str {
        "carbons"
    }

    fn register(self: Arc<Self>, reg: &mut Registry) {
        reg.iq(IqType::Set, IqTarget::Account, NS, self.clone());
        reg.host_feature(NS);
        // After blocking (1000): a refused message is copied nowhere.
        reg.hook(HookPoint::FromClient, 50, self.clone());
        reg.hook(HookPoint::ToFullJid, 50, self.clone());
        reg.hook(HookPoint::ToBareJid, 50, self);
    }
}

/// XEP-0280 §6, the rules every carbon follows (shared with a room's copies).
fn eligible(m: &Stanza) -> bool {
    m.kind == StanzaKind::Message && carbons::eligible(&m.el)
}

/// `message` wrapped for `to`, from the account's bare JID.
fn carbon(kind: &str, message: &Stanza, to: &SessionInfo) -> Option<Stanza> {
    let bare = to.jid.to_bare();
    let mut wrapper = Element::new("message", confab_proto::ns::CLIENT)
        .attr("from", bare.as_str())
        .attr("to", to.jid.as_str());
    if let Some(t) = message.type_attr() {
        wrapper = wrapper.attr("type", t.to_string());
    }
    let wrapper = wrapper.child(
        Element::new(kind, NS)
            .child(Element::new("forwarded", FORWARD_NS).child(message.el.clone())),
    );
    Stanza::from_element(wrapper).ok()
}

/// Sends `message` wrapped as `kind` to each of `to` that enabled carbons.
async fn copy_to(ctx: &ServerCtx, kind: &str, message: &Stanza, to: Vec<Arc<SessionInfo>>) {
    for s in to.into_iter().filter(|s| carbons::enabled(s)) {
        if let Some(c) = carbon(kind, message, &s) {
            router::deliver(ctx, &c, std::slice::from_ref(&s)).await;
        }
    }
}

#[async_trait]
impl StanzaHook for Carbons {
    async fn on_stanza(&self, ctx: &ServerCtx, args: &HookArgs, stanza: &mut Stanza) -> HookResult {
        if !eligible(stanza) {
            return HookResult::Continue;
        }
        match args.point {
            HookPoint::FromClient => {
                let Some(origin) = &args.origin else {
                    return HookResult::Continue;
                };
                // A private message to a room occupant hosted here: the room copies it to
                // the sessions sharing the sender's nick (XEP-0280 §6.1), the only ones
                // that can answer it; a copy from here too would show twice.
                if stanza.to.as_ref().is_some_and(|t| {
                    t.node().is_some()
                        && t.resource().is_some()
                        && ctx.registry.service_for(t.domain().as_str()).is_some()
                }) {
                    return HookResult::Continue;
                }
                let others: Vec<_> = ctx
                    .router
                    .sessions_of(&origin.jid.to_bare())
                    .into_iter()
                    .filter(|s| s.id != origin.id)
                    .collect();
                copy_to(ctx, "sent", stanza, others).await;
            }
            HookPoint::ToFullJid | HookPoint::ToBareJid => {
                // A private message from a room occupant means nothing to the other
                // devices, which are not in the room.
                if stanza.el.get_child("x", MUC_USER_NS).is_some() {
                    return HookResult::Continue;
                }
                let Some(to) = stanza.to.clone() else {
                    return HookResult::Continue;
                };
                let sessions = ctx.router.sessions_of(&to.to_bare());
                let getting: Vec<u64> = match to.try_as_full() {
                    Ok(full) if args.point == HookPoint::ToFullJid => sessions
                        .iter()
                        .filter(|s| &s.jid == full)
                        .map(|s| s.id)
                        .collect(),
                    _ => router::bare_message_targets(sessions.clone())
                        .iter()
                        .map(|s| s.id)
                        .collect(),
                };
                // Nobody gets it now (it goes to offline storage): no copies either.
                if getting.is_empty() {
                    return HookResult::Continue;
                }
                let others = sessions
                    .into_iter()
                    .filter(|s| !getting.contains(&s.id))
                    .collect();
                copy_to(ctx, "received", stanza, others).await;
            }
            _ => {}
        }
        HookResult::Continue
    }
}

#[async_trait]
impl IqHandler for Carbons {
    async fn handle_iq(&self, ctx: &ServerCtx, iq: &Stanza, _: IqTarget) -> IqReply {
        let Some(payload) = iq.iq_payload() else {
            return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest));
        };
        let on = match payload.name.as_str() {
            "enable" => true,
            "disable" => false,
            _ => return IqReply::Error(StanzaError::new(StanzaErrorCondition::BadRequest)),
        };
        // Only a session can enable carbons for itself (XEP-0280 §4), not another
        // account or a stranger.
        let own = iq.to.as_ref().is_none_or(|to| {
            iq.from.as_ref().map(Jid::to_bare) == Some(to.to_bare()) && to.is_bare()
        });
        let session = iq
            .from
            .as_ref()
            .and_then(|f| f.try_as_full().ok())
            .and_then(|f| ctx.router.session(f));
        match session {
            Some(s) if own => {
                carbons::set_enabled(&s, on);
                IqReply::Result(None)
            }
            _ => IqReply::Error(StanzaError::new(StanzaErrorCondition::Forbidden)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::parser::{parse_fragment, Limits};

    fn message(xml: &str) -> Stanza {
        let el = parse_fragment(xml, confab_proto::ns::CLIENT, &Limits::default()).expect("xml");
        Stanza::from_element(el).expect("stanza")
    }

    #[test]
    fn what_is_copied_follows_xep_0280_section_6() {
        assert!(eligible(&message(
            "<message type='chat'><body>x</body></message>"
        )));
        assert!(eligible(&message("<message><body>x</body></message>")));
        assert!(eligible(&message(
            "<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        )));
        assert!(eligible(&message(
            "<message><received xmlns='urn:xmpp:receipts' id='a'/></message>"
        )));
        assert!(!eligible(&message("<message/>")));
        assert!(!eligible(&message(
            "<message type='groupchat'><body>x</body></message>"
        )));
        assert!(!eligible(&message(
            "<message type='headline'><body>x</body></message>"
        )));
        assert!(!eligible(&message(
            "<message type='chat'><body>x</body><private xmlns='urn:xmpp:carbons:2'/></message>"
        )));
        assert!(!eligible(&message(
            "<message type='chat'><body>x</body><no-copy xmlns='urn:xmpp:hints'/></message>"
        )));
    }
}
