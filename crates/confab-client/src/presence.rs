//! RFC 6121 presence: the client's own (show, status, priority), what contacts' resources
//! say, and subscriptions (§3) — requests from contacts as events, approve, deny, subscribe,
//! unsubscribe. Like XMPPFramework's presence handling in `XMPPRoster`.
//!
//! The module observes presence and passes it on ([`Handled::Pass`]): the application
//! still gets [`crate::Event::Presence`]. After a new session (a reconnection that could
//! not resume) it sends the last own presence again, since the server forgot it.

use crate::client::Client;
use crate::disco::Disco;
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::{BareJid, Element, FullJid, Stanza, StanzaKind};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

const CLIENT_NS: &str = "jabber:client";
const NICK_NS: &str = "http://jabber.org/protocol/nick";

/// `<show/>` (RFC 6121 §4.7.2.1); no show is plain "available".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    /// Free to chat.
    Chat,
    /// Away for a short while.
    Away,
    /// Extended away.
    Xa,
    /// Do not disturb.
    Dnd,
}

impl Show {
    fn as_str(self) -> &'static str {
        match self {
            Show::Chat => "chat",
            Show::Away => "away",
            Show::Xa => "xa",
            Show::Dnd => "dnd",
        }
    }

    fn from_name(s: &str) -> Option<Show> {
        match s {
            "chat" => Some(Show::Chat),
            "away" => Some(Show::Away),
            "xa" => Some(Show::Xa),
            "dnd" => Some(Show::Dnd),
            _ => None,
        }
    }
}

/// What an available presence says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// `None`: available.
    pub show: Option<Show>,
    /// Free text.
    pub status: Option<String>,
    /// −128…127; a negative priority receives no messages sent to the bare JID.
    pub priority: i8,
}

impl Status {
    /// Plain "available", priority 0.
    pub fn available() -> Self {
        Status::default()
    }

    /// The `<presence/>` announcing it.
    pub fn to_element(&self) -> Element {
        let mut p = Element::new("presence", CLIENT_NS);
        if let Some(show) = self.show {
            p.push_child(Element::new("show", CLIENT_NS).text(show.as_str()));
        }
        if let Some(status) = &self.status {
            p.push_child(Element::new("status", CLIENT_NS).text(status.as_str()));
        }
        if self.priority != 0 {
            p.push_child(Element::new("priority", CLIENT_NS).text(self.priority.to_string()));
        }
        p
    }

    fn from_presence(el: &Element) -> Status {
        let text = |name: &str| el.get_child(name, CLIENT_NS).map(|e| e.text_content());
        Status {
            show: text("show").and_then(|s| Show::from_name(s.trim())),
            status: text("status"),
            priority: text("priority")
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0),
        }
    }
}

/// What the presence module saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PresenceEvent {
    /// A contact's resource is available, or changed what it says.
    Available(FullJid, Status),
    /// A contact's resource went offline.
    Unavailable(FullJid),
    /// Someone asks to see this account's presence; answer with [`Presence::approve`] or
    /// [`Presence::deny`].
    SubscriptionRequest {
        /// Who asks.
        from: BareJid,
        /// The nickname they gave (XEP-0172), if any.
        nick: Option<String>,
    },
    /// A contact approved this account's request.
    Subscribed(BareJid),
    /// A contact denied a request or cancelled this account's subscription.
    Unsubscribed(BareJid),
    /// A contact stopped seeing this account's presence.
    Unsubscribe(BareJid),
}

#[derive(Default)]
struct State {
    own: Option<Status>,
    /// Children added to each own available presence (e.g. an avatar hash).
    extensions: Vec<Element>,
    /// Whose XEP-0115 caps each own available presence carries.
    caps: Option<Arc<Disco>>,
    /// The latest available presence of each contact resource.
    resources: BTreeMap<String, (FullJid, Status)>,
}

/// The presence module. Keep an `Arc<Presence>` to set presence and read contacts'.
pub struct Presence {
    state: Mutex<State>,
    events: broadcast::Sender<PresenceEvent>,
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.lock();
        f.debug_struct("Presence")
            .field("own", &s.own)
            .field("resources", &s.resources.len())
            .finish()
    }
}

fn bare(jid: &BareJid) -> String {
    jid.to_string()
}

impl Presence {
    /// A presence module, ready for [`crate::Config::module`].
    pub fn new() -> Arc<Presence> {
        let (events, _) = broadcast::channel(256);
        Arc::new(Presence {
            state: Mutex::new(State::default()),
            events,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere leaves plain data behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Presence events from now on.
    pub fn events(&self) -> broadcast::Receiver<PresenceEvent> {
        self.events.subscribe()
    }

    /// Announces `status` (the first call is the initial presence that makes the session
    /// available); sent again after a new session.
    pub async fn set(&self, client: &Client, status: Status) -> Result<(), Error> {
        client.send(self.own_presence(&status)).await?;
        self.lock().own = Some(status);
        Ok(())
    }

    /// Children to add to every own presence from now on, e.g. the XEP-0153 avatar hash
    /// ([`crate::VCards::presence_update`]); takes effect with the next [`Presence::set`].
    pub fn set_extensions(&self, extensions: Vec<Element>) {
        self.lock().extensions = extensions;
    }

    /// Puts `disco`'s XEP-0115 caps (computed afresh each time) in every own presence
    /// from now on, so servers and contacts learn this client's features and PEP
    /// `+notify` interests; takes effect with the next [`Presence::set`].
    pub fn advertise(&self, disco: Arc<Disco>) {
        self.lock().caps = Some(disco);
    }

    fn own_presence(&self, status: &Status) -> Element {
        let mut p = status.to_element();
        let s = self.lock();
        for e in &s.extensions {
            p.push_child(e.clone());
        }
        if let Some(d) = &s.caps {
            p.push_child(d.caps());
        }
        p
    }

    /// The presence last announced, if any.
    pub fn own(&self) -> Option<Status> {
        self.lock().own.clone()
    }

    /// The available resources of a contact and what each says.
    pub fn of(&self, contact: &BareJid) -> Vec<(FullJid, Status)> {
        let prefix = format!("{}/", bare(contact));
        self.lock()
            .resources
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    async fn send_typed(&self, client: &Client, to: &BareJid, type_: &str) -> Result<(), Error> {
        let p = Element::new("presence", CLIENT_NS)
            .attr("to", to.to_string())
            .attr("type", type_);
        client.send(p).await
    }

    /// Asks to see `contact`'s presence (the server adds it to the roster, `ask`).
    pub async fn subscribe(&self, client: &Client, contact: &BareJid) -> Result<(), Error> {
        self.send_typed(client, contact, "subscribe").await
    }

    /// Asks to see `contact`'s presence, telling them this user's nickname (XEP-0172 §4.1:
    /// someone not yet in their roster is otherwise just an address).
    pub async fn subscribe_with_nick(
        &self,
        client: &Client,
        contact: &BareJid,
        nick: &str,
    ) -> Result<(), Error> {
        let p = Element::new("presence", CLIENT_NS)
            .attr("to", contact.to_string())
            .attr("type", "subscribe")
            .child(Element::new("nick", NICK_NS).text(nick));
        client.send(p).await
    }

    /// Lets `contact` see this account's presence (answers a request, or pre-approves).
    pub async fn approve(&self, client: &Client, contact: &BareJid) -> Result<(), Error> {
        self.send_typed(client, contact, "subscribed").await
    }

    /// Refuses a request, or stops `contact` seeing this account's presence.
    pub async fn deny(&self, client: &Client, contact: &BareJid) -> Result<(), Error> {
        self.send_typed(client, contact, "unsubscribed").await
    }

    /// Stops seeing `contact`'s presence.
    pub async fn unsubscribe(&self, client: &Client, contact: &BareJid) -> Result<(), Error> {
        self.send_typed(client, contact, "unsubscribe").await
    }

    fn observe(&self, stanza: &Stanza, own: &FullJid) -> Option<PresenceEvent> {
        let from = stanza.from.clone()?;
        let from_bare = from.to_bare();
        match stanza.type_attr() {
            None => {
                let full = from.try_as_full().ok()?.clone();
                // The own session's echo says nothing new.
                if full == *own {
                    return None;
                }
                let status = Status::from_presence(&stanza.el);
                self.lock()
                    .resources
                    .insert(full.to_string(), (full.clone(), status.clone()));
                Some(PresenceEvent::Available(full, status))
            }
            Some("unavailable") => {
                let full = from.try_as_full().ok()?.clone();
                self.lock().resources.remove(full.as_str());
                Some(PresenceEvent::Unavailable(full))
            }
            Some("subscribe") => Some(PresenceEvent::SubscriptionRequest {
                from: from_bare,
                nick: stanza
                    .el
                    .get_child("nick", NICK_NS)
                    .map(|n| n.text_content()),
            }),
            Some("subscribed") => Some(PresenceEvent::Subscribed(from_bare)),
            Some("unsubscribed") => {
                // No longer seeing any of the contact's resources.
                let prefix = format!("{from_bare}/");
                self.lock().resources.retain(|k, _| !k.starts_with(&prefix));
                Some(PresenceEvent::Unsubscribed(from_bare))
            }
            Some("unsubscribe") => Some(PresenceEvent::Unsubscribe(from_bare)),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl Module for Presence {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled {
        if stanza.kind == StanzaKind::Presence {
            if let Some(ev) = self.observe(stanza, ctx.jid()) {
                // Nobody listening is fine: the state above is kept regardless.
                let _ = self.events.send(ev);
            }
        }
        Handled::Pass
    }

    async fn new_session(&self, client: &Client) {
        // The server forgot the old session's presence, and the contacts' resources it
        // had told it about will be told again.
        let own = {
            let mut s = self.lock();
            s.resources.clear();
            s.own.clone()
        };
        if let Some(own) = own {
            if let Err(e) = client.send(self.own_presence(&own)).await {
                tracing::warn!(error = %e, "re-sending presence after a new session failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_go_with_own_presence() {
        let p = Presence::new();
        let x = Element::new("x", "vcard-temp:x:update");
        p.set_extensions(vec![x.clone()]);
        let el = p.own_presence(&Status::available());
        assert_eq!(el.get_child("x", "vcard-temp:x:update"), Some(&x));
        p.set_extensions(Vec::new());
        assert!(p
            .own_presence(&Status::available())
            .elements()
            .next()
            .is_none());
    }

    #[test]
    fn status_round_trip() {
        let s = Status {
            show: Some(Show::Dnd),
            status: Some("in a meeting 🙂".into()),
            priority: -1,
        };
        let el = s.to_element();
        assert_eq!(Status::from_presence(&el), s);
        assert_eq!(
            Status::from_presence(&Status::available().to_element()),
            Status::available()
        );
        // Nonsense in a received presence is read as plain available.
        let odd = Element::new("presence", CLIENT_NS)
            .child(Element::new("show", CLIENT_NS).text("sleeping"))
            .child(Element::new("priority", CLIENT_NS).text("999"));
        assert_eq!(Status::from_presence(&odd), Status::available());
    }
}
