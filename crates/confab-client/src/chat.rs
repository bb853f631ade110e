//! One-to-one chat: typed `type='chat'` messages both ways, with chat states (XEP-0085),
//! delivery receipts (XEP-0184), last message correction (XEP-0308) and nicknames in
//! messages (XEP-0172). Like XMPPFramework's `XMPPMessageDeliveryReceipts` plus the chat
//! parts of `XMPPMessage`.
//!
//! The module turns incoming one-to-one messages into [`ChatEvent`]s and passes them on
//! ([`Handled::Pass`]), so [`crate::Event::Message`] still sees the raw stanza. Group chat
//! and carbons (messages wrapped by the server) are left to their own modules.

use crate::client::Client;
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::payloads::chatstates::ChatState;
use confab_proto::payloads::delay::{self, Delay};
use confab_proto::payloads::{hints, nick, receipts};
use confab_proto::{ns, Element, Jid, Stanza, StanzaError, StanzaKind};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::broadcast;

/// XEP-0308 Last Message Correction.
pub const CORRECT_NS: &str = "urn:xmpp:message-correct:0";

/// How the chat module behaves.
#[derive(Clone, Debug)]
pub struct ChatConfig {
    /// Answer receipt requests (XEP-0184) automatically. A receipt tells the sender that
    /// this client is online; turn it off to answer none (XEP-0184 §8 leaves the choice
    /// to the user).
    pub answer_receipts: bool,
    /// Ask for a receipt with each message sent by [`Chat::send`].
    pub request_receipts: bool,
    /// Mark each message sent by [`Chat::send`] with the `active` chat state (XEP-0085
    /// §5.1: a message with content carries `active`).
    pub send_active: bool,
    /// How many ids of messages sent through this module are remembered (oldest forgotten
    /// first): a receipt is surfaced only for one of them sent to the account answering,
    /// and a bounce only for one of them (not for group chat or raw sends).
    pub max_tracked_messages: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            answer_receipts: true,
            request_receipts: true,
            send_active: true,
            max_tracked_messages: 1000,
        }
    }
}

/// A one-to-one message, received or to send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChatMessage {
    /// The stanza id (set by [`Chat::send_message`] when absent).
    pub id: Option<String>,
    /// The sender (received messages).
    pub from: Option<Jid>,
    /// The recipient.
    pub to: Option<Jid>,
    /// The text.
    pub body: Option<String>,
    /// The conversation thread, if any.
    pub thread: Option<String>,
    /// The chat state that came with it (XEP-0085).
    pub state: Option<ChatState>,
    /// Whether a receipt is (to be) asked for (XEP-0184).
    pub request_receipt: bool,
    /// The id of the message this one corrects (XEP-0308). Only a correction from the
    /// same full JID as the original should be applied (XEP-0308 §6).
    pub replaces: Option<String>,
    /// The sender's nickname (XEP-0172), sent to those who do not know it yet.
    pub nick: Option<String>,
    /// When it was first sent, if it was delayed (offline storage, XEP-0203), in Unix seconds.
    pub delayed: Option<i64>,
    /// A file's URL carried as XEP-0066 out-of-band data (`<x xmlns='jabber:x:oob'><url/>`),
    /// as clients send uploaded files (XEP-0363; see [`crate::Upload`]).
    pub oob_url: Option<String>,
}

impl ChatMessage {
    /// A chat message with a body to `to`.
    pub fn new(to: Jid, body: impl Into<String>) -> Self {
        ChatMessage {
            to: Some(to),
            body: Some(body.into()),
            ..ChatMessage::default()
        }
    }

    /// The `<message type='chat'/>` for it.
    pub fn to_element(&self) -> Element {
        let mut m = Element::new("message", ns::CLIENT).attr("type", "chat");
        if let Some(id) = &self.id {
            m.set_attr("id", id.clone());
        }
        if let Some(to) = &self.to {
            m.set_attr("to", to.as_str());
        }
        if let Some(b) = &self.body {
            m.push_child(Element::new("body", ns::CLIENT).text(b.clone()));
        }
        if let Some(t) = &self.thread {
            m.push_child(Element::new("thread", ns::CLIENT).text(t.clone()));
        }
        if let Some(s) = self.state {
            m.push_child(s.into());
        }
        if self.request_receipt {
            m.push_child(receipts::Request.into());
        }
        if let Some(r) = &self.replaces {
            m.push_child(Element::new("replace", CORRECT_NS).attr("id", r.clone()));
        }
        if let Some(n) = &self.nick {
            m.push_child(nick::Nick(n.clone()).into());
        }
        if let Some(u) = &self.oob_url {
            m.push_child(
                Element::new("x", crate::upload::OOB_NS)
                    .child(Element::new("url", crate::upload::OOB_NS).text(u.clone())),
            );
        }
        m
    }

    /// Reads a received message; `None` when it carries nothing of this module's (no
    /// body, state, receipt or correction).
    pub fn from_element(el: &Element) -> Option<ChatMessage> {
        let text = |name: &str| el.get_child(name, ns::CLIENT).map(|e| e.text_content());
        let m = ChatMessage {
            id: el.get_attr("id").map(str::to_string),
            from: el.get_attr("from").and_then(|f| Jid::new(f).ok()),
            to: el.get_attr("to").and_then(|t| Jid::new(t).ok()),
            body: text("body"),
            thread: text("thread"),
            state: ChatState::of_message(el),
            request_receipt: el.get_child("request", receipts::NS).is_some(),
            replaces: el
                .get_child("replace", CORRECT_NS)
                .and_then(|r| r.get_attr("id"))
                .map(str::to_string),
            nick: el.get_child("nick", nick::NS).map(|n| n.text_content()),
            delayed: el
                .get_child("delay", delay::NS)
                .and_then(|d| Delay::try_from(d).ok())
                .map(|d| d.stamp),
            oob_url: el
                .get_child("x", crate::upload::OOB_NS)
                .and_then(|x| x.get_child("url", crate::upload::OOB_NS))
                .map(|u| u.text_content().trim().to_string())
                .filter(|u| !u.is_empty()),
        };
        (m.body.is_some() || m.state.is_some() || m.replaces.is_some()).then_some(m)
    }
}

/// What the chat module saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatEvent {
    /// A message with a body (a correction when `replaces` is set).
    Message(ChatMessage),
    /// A chat state notification without a body (typing, paused, …).
    State {
        /// Who is typing (a full JID, usually).
        from: Jid,
        /// What they are doing.
        state: ChatState,
    },
    /// The recipient's client confirmed a message this client sent (XEP-0184).
    Delivered {
        /// Who confirmed.
        from: Jid,
        /// The id of the message sent.
        id: String,
    },
    /// A message sent through this module bounced with an error.
    Failed {
        /// Who answered (the recipient, or the server on its behalf).
        from: Option<Jid>,
        /// The id of the message sent.
        id: String,
        /// The error.
        error: StanzaError,
    },
}

struct Sent {
    id: String,
    /// The bare JID it went to: only that account may confirm it.
    to_bare: String,
    /// A receipt was asked for and has not come.
    awaiting_receipt: bool,
}

/// The chat module. Keep an `Arc<Chat>` to send and to receive its events.
pub struct Chat {
    config: ChatConfig,
    /// Messages sent through the module, oldest first (bounded).
    sent: Mutex<VecDeque<Sent>>,
    events: broadcast::Sender<ChatEvent>,
}

impl std::fmt::Debug for Chat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chat")
            .field("config", &self.config)
            .field("tracked", &self.lock().len())
            .finish()
    }
}

fn bare_of(j: &Jid) -> String {
    j.to_bare().to_string()
}

impl Chat {
    /// A chat module with the default [`ChatConfig`], ready for [`crate::Config::module`].
    pub fn new() -> Arc<Chat> {
        Self::with_config(ChatConfig::default())
    }

    /// A chat module with this configuration.
    pub fn with_config(config: ChatConfig) -> Arc<Chat> {
        let (events, _) = broadcast::channel(256);
        Arc::new(Chat {
            config,
            sent: Mutex::new(VecDeque::new()),
            events,
        })
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Sent>> {
        // Single pushes and removals: a poisoned lock still holds a consistent queue.
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Chat events from now on.
    pub fn events(&self) -> broadcast::Receiver<ChatEvent> {
        self.events.subscribe()
    }

    /// Sends `body` to `to` (with `active` and a receipt request, as configured); returns
    /// the message id, which a later [`ChatEvent::Delivered`] or [`Chat::correct`] names.
    pub async fn send(&self, client: &Client, to: &Jid, body: &str) -> Result<String, Error> {
        let mut m = ChatMessage::new(to.clone(), body);
        m.request_receipt = self.config.request_receipts;
        if self.config.send_active {
            m.state = Some(ChatState::Active);
        }
        self.send_message(client, m).await
    }

    /// Sends a message as given (an id is added when it has none); returns its id.
    pub async fn send_message(&self, client: &Client, mut m: ChatMessage) -> Result<String, Error> {
        let to =
            m.to.clone()
                .ok_or(Error::InvalidRequest("a chat message needs a recipient"))?;
        let id = m.id.get_or_insert_with(|| client.new_id()).clone();
        {
            let mut q = self.lock();
            while q.len() >= self.config.max_tracked_messages.max(1) {
                q.pop_front();
            }
            q.push_back(Sent {
                id: id.clone(),
                to_bare: bare_of(&to),
                awaiting_receipt: m.request_receipt,
            });
        }
        client.send(m.to_element()).await?;
        Ok(id)
    }

    /// Corrects the message `replaces` sent earlier to `to` with `body` (XEP-0308); returns
    /// the id of the correction.
    pub async fn correct(
        &self,
        client: &Client,
        to: &Jid,
        replaces: &str,
        body: &str,
    ) -> Result<String, Error> {
        let mut m = ChatMessage::new(to.clone(), body);
        m.replaces = Some(replaces.to_string());
        m.request_receipt = self.config.request_receipts;
        if self.config.send_active {
            m.state = Some(ChatState::Active);
        }
        self.send_message(client, m).await
    }

    /// Tells `to` what this user is doing (XEP-0085 standalone notification, marked not
    /// to be stored).
    pub async fn send_state(
        &self,
        client: &Client,
        to: &Jid,
        state: ChatState,
    ) -> Result<(), Error> {
        let m = Element::new("message", ns::CLIENT)
            .attr("to", to.as_str())
            .attr("type", "chat")
            .attr("id", client.new_id())
            .child(state.into())
            .child(Element::new(hints::Hint::NoStore.as_str(), hints::NS));
        client.send(m).await
    }

    /// Ids of sent messages still awaiting a receipt, oldest first.
    pub fn awaiting_receipts(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|s| s.awaiting_receipt)
            .map(|s| s.id.clone())
            .collect()
    }

    /// A receipt for `id` from `from`: surfaced only when this client asked `from`'s account.
    fn confirm(&self, from: &Jid, id: &str) -> bool {
        let from_bare = bare_of(from);
        let mut q = self.lock();
        match q
            .iter_mut()
            .find(|s| s.awaiting_receipt && s.id == id && s.to_bare == from_bare)
        {
            Some(s) => {
                s.awaiting_receipt = false;
                true
            }
            None => false,
        }
    }

    fn observe(&self, stanza: &Stanza, ctx: &mut Context<'_>) {
        let el = &stanza.el;
        let Some(from) = stanza.from.clone() else {
            return;
        };
        if stanza.is_error() {
            if let Some(id) = stanza.id() {
                let error = StanzaError::from_stanza(el).unwrap_or_else(|| {
                    StanzaError::new(confab_proto::StanzaErrorCondition::UndefinedCondition)
                });
                // Only messages sent through this module: a room's error belongs to the MUC
                // module, a raw send's to the application (both see it too).
                let ours = {
                    let mut q = self.lock();
                    let before = q.len();
                    q.retain(|s| s.id != id);
                    q.len() != before
                };
                if ours {
                    self.emit(ChatEvent::Failed {
                        from: Some(from),
                        id: id.to_string(),
                        error,
                    });
                }
            }
            return;
        }
        if let Some(r) = el.get_child("received", receipts::NS) {
            // XEP-0184 §5: the id names the message; older clients left it out and reused
            // the message's own id.
            let id = r.get_attr("id").or(stanza.id());
            match id {
                Some(id) if self.confirm(&from, id) => self.emit(ChatEvent::Delivered {
                    from: from.clone(),
                    id: id.to_string(),
                }),
                _ => tracing::debug!(%from, "receipt for no message awaiting one"),
            }
        }
        let Some(m) = ChatMessage::from_element(el) else {
            return;
        };
        if m.request_receipt && self.config.answer_receipts {
            // §5.4: no id, nothing to name in the receipt.
            if let Some(id) = &m.id {
                let receipt = Element::new("message", ns::CLIENT)
                    .attr("to", from.as_str())
                    .attr("id", format!("r-{id}"))
                    .child(
                        receipts::Received {
                            id: Some(id.clone()),
                        }
                        .into(),
                    );
                ctx.send(receipt);
            }
        }
        if m.body.is_some() || m.replaces.is_some() {
            self.emit(ChatEvent::Message(m));
        } else if let Some(state) = m.state {
            self.emit(ChatEvent::State { from, state });
        }
    }

    fn emit(&self, ev: ChatEvent) {
        // Nobody listening is fine.
        let _ = self.events.send(ev);
    }
}

/// Whether a message is one-to-one traffic for this module: chat or normal, not a carbon
/// or a forwarded archive result (those arrive wrapped) and not from a room.
fn is_one_to_one(stanza: &Stanza) -> bool {
    if stanza.kind != StanzaKind::Message {
        return false;
    }
    matches!(
        stanza.type_attr(),
        None | Some("chat") | Some("normal") | Some("error")
    )
}

#[async_trait::async_trait]
impl Module for Chat {
    fn name(&self) -> &'static str {
        "chat"
    }

    fn handle(&self, stanza: &Stanza, ctx: &mut Context<'_>) -> Handled {
        if is_one_to_one(stanza) {
            self.observe(stanza, ctx);
        }
        Handled::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let m = ChatMessage {
            id: Some("m1".into()),
            from: None,
            to: Some(Jid::new("bob@example.org").expect("jid")),
            body: Some("hi <there> & all".into()),
            thread: Some("t1".into()),
            state: Some(ChatState::Active),
            request_receipt: true,
            replaces: Some("m0".into()),
            nick: Some("Al".into()),
            delayed: None,
            oob_url: Some("https://u.example/f/a%20b.png".into()),
        };
        assert_eq!(ChatMessage::from_element(&m.to_element()), Some(m));
    }

    #[test]
    fn nothing_of_ours_is_none() {
        let bare = Element::new("message", ns::CLIENT).attr("from", "a@b/c");
        assert_eq!(ChatMessage::from_element(&bare), None);
        // An unknown chat state is no state.
        let odd = bare.clone().child(Element::new(
            "sleeping",
            confab_proto::payloads::chatstates::NS,
        ));
        assert_eq!(ChatMessage::from_element(&odd), None);
    }
}
