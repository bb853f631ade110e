//! XEP-0045 Multi-User Chat, the occupant's, moderator's and owner's side: join (with
//! password and history limits) and leave, group messages and the subject, nickname
//! changes, the occupant list with roles and affiliations, invitations (mediated through
//! the room and XEP-0249 direct ones), kick, ban, voice, the configuration form and
//! destroying a room. Like XMPPFramework's `XMPPRoom`.
//!
//! The module keeps one state per joined room, fed by the room's presence and messages,
//! and reports what happens as [`MucEvent`]s. It observes and passes stanzas on
//! ([`Handled::Pass`]), so the application still sees them raw as well.

use crate::client::{iq, Client};
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::payloads::data_form::{DataForm, FormType};
use confab_proto::payloads::delay::{self, Delay};
use confab_proto::{ns, BareJid, Element, IqType, Jid, Stanza, StanzaError, StanzaErrorCondition};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// The MUC namespaces (XEP-0045 §19.1).
pub mod muc_ns {
    /// Joining (`<x/>` in the join presence).
    pub const MUC: &str = "http://jabber.org/protocol/muc";
    /// What the room tells occupants.
    pub const USER: &str = "http://jabber.org/protocol/muc#user";
    /// Moderator and admin requests.
    pub const ADMIN: &str = "http://jabber.org/protocol/muc#admin";
    /// Owner requests (configuration, destruction).
    pub const OWNER: &str = "http://jabber.org/protocol/muc#owner";
    /// XEP-0249 direct invitations.
    pub const CONFERENCE: &str = "jabber:x:conference";
    /// XEP-0359 stanza ids (a room stamps each message with its archive id).
    pub const SID: &str = "urn:xmpp:sid:0";
}
use muc_ns::{ADMIN, CONFERENCE, MUC, OWNER, SID, USER};

/// Status codes (XEP-0045 §15.2.2) the module acts on.
mod status {
    pub const SELF: u16 = 110;
    pub const CREATED: u16 = 201;
    pub const NICK_MODIFIED: u16 = 210;
    pub const BANNED: u16 = 301;
    pub const NICK_CHANGED: u16 = 303;
    pub const KICKED: u16 = 307;
    pub const AFFILIATION_CHANGED: u16 = 321;
    pub const MEMBERS_ONLY: u16 = 322;
    pub const SHUTDOWN: u16 = 332;
}

/// How long [`Muc::join`], [`Muc::change_nick`] and [`Muc::leave`] wait for the room.
const ROOM_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// Most occupants kept per room, so a room cannot grow the client's memory without bound.
const MAX_OCCUPANTS: usize = 10_000;

/// An occupant's role in the room (XEP-0045 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// May kick, grant and revoke voice.
    Moderator,
    /// May speak.
    Participant,
    /// Present, but without voice in a moderated room.
    Visitor,
    /// Not in the room (being removed).
    None,
}

impl Role {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Participant => "participant",
            Role::Visitor => "visitor",
            Role::None => "none",
        }
    }

    fn from_name(s: &str) -> Option<Role> {
        Some(match s {
            "moderator" => Role::Moderator,
            "participant" => Role::Participant,
            "visitor" => Role::Visitor,
            "none" => Role::None,
            _ => return None,
        })
    }
}

/// A user's long-lived standing in the room (XEP-0045 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Affiliation {
    /// Configures and destroys the room.
    Owner,
    /// Bans, grants membership and moderation.
    Admin,
    /// May enter a members-only room.
    Member,
    /// Banned.
    Outcast,
    /// None of the above.
    None,
}

impl Affiliation {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Owner => "owner",
            Affiliation::Admin => "admin",
            Affiliation::Member => "member",
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
        }
    }

    fn from_name(s: &str) -> Option<Affiliation> {
        Some(match s {
            "owner" => Affiliation::Owner,
            "admin" => Affiliation::Admin,
            "member" => Affiliation::Member,
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            _ => return None,
        })
    }
}

/// Sets a field of a form (adding it if missing) to one value, e.g. a configuration field
/// from [`Muc::get_config`] before [`Muc::submit_config`]:
/// `set_form_value(&mut form, "muc#roomconfig_roomsecret", "secret")`.
pub fn set_form_value(form: &mut DataForm, var: &str, value: &str) {
    match form
        .fields
        .iter_mut()
        .find(|f| f.var.as_deref() == Some(var))
    {
        Some(f) => f.values = vec![value.to_string()],
        None => form
            .fields
            .push(confab_proto::payloads::data_form::Field::new(var, [value])),
    }
}

/// A user on one of the room's affiliation lists ([`Muc::affiliations`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AffiliatedUser {
    /// Their bare JID.
    pub jid: BareJid,
    /// The affiliation.
    pub affiliation: Affiliation,
    /// Their reserved nickname, if the room lists one.
    pub nick: Option<String>,
    /// The reason given (e.g. for a ban), if any.
    pub reason: Option<String>,
}

/// Someone in a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occupant {
    /// The nickname (the resource of the occupant JID).
    pub nick: String,
    /// The real JID, when the room shows it (non-anonymous rooms, or to moderators).
    pub jid: Option<Jid>,
    /// The role.
    pub role: Role,
    /// The affiliation.
    pub affiliation: Affiliation,
}

/// How much history to ask for on joining (XEP-0045 §7.2.15).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// At most this many messages (0: none).
    pub max_stanzas: Option<u32>,
    /// Only messages of the last this many seconds.
    pub seconds: Option<u64>,
}

/// How to join a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOptions {
    /// The nickname to use.
    pub nick: String,
    /// The room's password, if it has one.
    pub password: Option<String>,
    /// The history to ask for; `None` leaves it to the room.
    pub history: Option<History>,
}

impl JoinOptions {
    /// Joining as `nick`, without password, with the room's default history.
    pub fn new(nick: impl Into<String>) -> Self {
        JoinOptions {
            nick: nick.into(),
            password: None,
            history: None,
        }
    }
}

/// The room as found on joining.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The room.
    pub room: BareJid,
    /// Our nickname (the room may have changed it, status 210).
    pub nick: String,
    /// Ourselves, with the role and affiliation the room gave us.
    pub me: Occupant,
    /// Everyone else present.
    pub occupants: Vec<Occupant>,
    /// The room was created by this join (status 201); it stays locked until configured
    /// ([`Muc::accept_default_config`] or [`Muc::submit_config`]).
    pub created: bool,
}

/// Why a join (or nick change) failed.
#[derive(Debug, thiserror::Error)]
pub enum MucError {
    /// The room needs a password, or the one given is wrong (`not-authorized`).
    #[error("password required or wrong")]
    PasswordRequired,
    /// Banned from the room (`forbidden`).
    #[error("banned from the room")]
    Banned,
    /// The nickname is taken or reserved (`conflict`).
    #[error("nickname in use")]
    NickInUse,
    /// The room is members-only and this user is no member (`registration-required`).
    #[error("members only")]
    MembersOnly,
    /// The room is full (`service-unavailable`).
    #[error("the room is full or unavailable")]
    Unavailable,
    /// The room does not exist and this user may not create it (`item-not-found`,
    /// `not-allowed`).
    #[error("the room does not exist or may not be created")]
    NotAllowed,
    /// This user lacks the privilege for the request (`forbidden` or `not-allowed` to an
    /// admin or owner request, e.g. kicking without being a moderator).
    #[error("not permitted")]
    Forbidden,
    /// Another error from the room.
    #[error("refused: {0}")]
    Refused(StanzaError),
    /// The request failed on the client's side (timeout, disconnected) or the room's answer
    /// made no sense.
    #[error(transparent)]
    Client(#[from] Error),
}

impl From<StanzaError> for MucError {
    /// The error of a join or nickname change (XEP-0045 §7.2).
    fn from(e: StanzaError) -> Self {
        match e.condition {
            StanzaErrorCondition::NotAuthorized => MucError::PasswordRequired,
            StanzaErrorCondition::Forbidden => MucError::Banned,
            StanzaErrorCondition::Conflict => MucError::NickInUse,
            StanzaErrorCondition::RegistrationRequired => MucError::MembersOnly,
            StanzaErrorCondition::ServiceUnavailable => MucError::Unavailable,
            StanzaErrorCondition::ItemNotFound | StanzaErrorCondition::NotAllowed => {
                MucError::NotAllowed
            }
            _ => MucError::Refused(e),
        }
    }
}

/// Why someone (or this client) is no longer in a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// Left on their own.
    Left,
    /// Kicked by a moderator (307).
    Kicked {
        /// Who kicked, if the room says.
        actor: Option<String>,
        /// Why, if given.
        reason: Option<String>,
    },
    /// Banned (301).
    Banned {
        /// Who banned, if the room says.
        actor: Option<String>,
        /// Why, if given.
        reason: Option<String>,
    },
    /// Removed because their affiliation changed (321) or the room became members-only (322).
    AffiliationChanged,
    /// The service is shutting down (332).
    Shutdown,
    /// After a reconnection that could not resume, joining again failed (the text says why).
    RejoinFailed(String),
    /// The room was destroyed.
    Destroyed {
        /// Why, if given.
        reason: Option<String>,
        /// A room to go to instead, if given.
        alternate: Option<BareJid>,
    },
}

/// A group chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMessage {
    /// The room.
    pub room: BareJid,
    /// The sender's nickname; `None` for the room itself.
    pub nick: Option<String>,
    /// The stanza id the sender gave.
    pub id: Option<String>,
    /// The id the room archived it under (XEP-0359), for MAM queries.
    pub stanza_id: Option<String>,
    /// The text.
    pub body: String,
    /// Whether this client sent it (the room reflects every message to its sender).
    pub own: bool,
    /// When it was first sent, for history replayed on joining (Unix seconds).
    pub delayed: Option<i64>,
}

/// What the MUC module saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MucEvent {
    /// Someone entered a joined room.
    OccupantJoined {
        /// The room.
        room: BareJid,
        /// Who.
        occupant: Occupant,
    },
    /// An occupant's role or affiliation changed (voice granted or revoked, made moderator…).
    OccupantChanged {
        /// The room.
        room: BareJid,
        /// The occupant now.
        occupant: Occupant,
    },
    /// An occupant left (or was removed).
    OccupantLeft {
        /// The room.
        room: BareJid,
        /// Their nickname.
        nick: String,
        /// Why.
        reason: LeaveReason,
    },
    /// An occupant (possibly this client) changed nickname.
    NickChanged {
        /// The room.
        room: BareJid,
        /// The old nickname.
        old: String,
        /// The new one.
        new: String,
    },
    /// This client is no longer in the room.
    Left {
        /// The room.
        room: BareJid,
        /// Why (kicked, banned, destroyed, or left).
        reason: LeaveReason,
    },
    /// A group chat message (history on joining, then live ones).
    Message(GroupMessage),
    /// The subject was set (also sent on joining).
    Subject {
        /// The room.
        room: BareJid,
        /// Who set it, if known.
        nick: Option<String>,
        /// The subject (empty: cleared).
        subject: String,
    },
    /// An invitation to a room.
    Invited {
        /// The room.
        room: BareJid,
        /// Who invites.
        from: Option<Jid>,
        /// Why, if given.
        reason: Option<String>,
        /// The room's password, if given.
        password: Option<String>,
        /// Sent directly by the inviter (XEP-0249), not through the room.
        direct: bool,
    },
    /// Someone declined this client's invitation.
    Declined {
        /// The room.
        room: BareJid,
        /// Who declined.
        from: Option<Jid>,
        /// Why, if given.
        reason: Option<String>,
    },
    /// The room refused a message of this client (e.g. no voice).
    Error {
        /// The room.
        room: BareJid,
        /// The id of the message refused.
        id: Option<String>,
        /// The error.
        error: StanzaError,
    },
    /// After a reconnection that could not resume (the room had lost us), the room was
    /// joined again with the same nick and password. No history is asked for: read what
    /// was missed from the room's archive ([`crate::Mam`]) after the last `stanza_id` seen.
    /// With `created` set the room had vanished meanwhile (a temporary room goes with its
    /// last occupant) and is a new, locked one, as after a first join: configure it or
    /// leave.
    Rejoined(Joined),
    /// The room's configuration changed (status 104).
    ConfigChanged {
        /// The room.
        room: BareJid,
    },
}

/// What a pending presence exchange waits for.
enum Waiter {
    /// Join or nick change: our next available self-presence, or an error presence.
    Presence(oneshot::Sender<Result<(), StanzaError>>),
    /// Leave: our unavailable self-presence.
    Leave(oneshot::Sender<()>),
}

struct RoomState {
    nick: String,
    /// Kept to join again after a new session.
    password: Option<String>,
    joined: bool,
    created: bool,
    me: Option<Occupant>,
    occupants: BTreeMap<String, Occupant>,
    subject: Option<String>,
    waiter: Option<Waiter>,
}

/// The MUC module. Keep an `Arc<Muc>` to join rooms and receive their events.
pub struct Muc {
    rooms: Mutex<HashMap<String, RoomState>>,
    events: broadcast::Sender<MucEvent>,
}

impl std::fmt::Debug for Muc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muc")
            .field("rooms", &self.lock().keys().cloned().collect::<Vec<_>>())
            .finish()
    }
}

fn occupant_jid(room: &BareJid, nick: &str) -> Result<Jid, Error> {
    Jid::new(&format!("{room}/{nick}")).map_err(|_| Error::InvalidRequest("invalid nickname"))
}

fn status_codes(x: &Element) -> Vec<u16> {
    x.elements()
        .filter(|e| e.is("status", USER))
        .filter_map(|e| e.get_attr("code")?.parse().ok())
        .collect()
}

fn child_text(el: &Element, name: &str, ns: &str) -> Option<String> {
    el.get_child(name, ns).map(|e| e.text_content())
}

/// The occupant an `<item/>` of a room presence describes.
fn occupant_of(nick: &str, item: Option<&Element>) -> Occupant {
    let attr = |n: &str| item.and_then(|i| i.get_attr(n));
    Occupant {
        nick: nick.to_string(),
        jid: attr("jid").and_then(|j| Jid::new(j).ok()),
        role: attr("role").and_then(Role::from_name).unwrap_or(Role::None),
        affiliation: attr("affiliation")
            .and_then(Affiliation::from_name)
            .unwrap_or(Affiliation::None),
    }
}

fn removal_reason(codes: &[u16], x: &Element) -> LeaveReason {
    let item = x.get_child("item", USER);
    let actor = item
        .and_then(|i| i.get_child("actor", USER))
        .and_then(|a| a.get_attr("nick").or(a.get_attr("jid")))
        .map(str::to_string);
    let reason = item.and_then(|i| child_text(i, "reason", USER));
    if let Some(d) = x.get_child("destroy", USER) {
        return LeaveReason::Destroyed {
            reason: child_text(d, "reason", USER),
            alternate: d.get_attr("jid").and_then(|j| BareJid::new(j).ok()),
        };
    }
    if codes.contains(&status::BANNED) {
        LeaveReason::Banned { actor, reason }
    } else if codes.contains(&status::KICKED) {
        LeaveReason::Kicked { actor, reason }
    } else if codes.contains(&status::AFFILIATION_CHANGED) || codes.contains(&status::MEMBERS_ONLY)
    {
        LeaveReason::AffiliationChanged
    } else if codes.contains(&status::SHUTDOWN) {
        LeaveReason::Shutdown
    } else {
        LeaveReason::Left
    }
}

impl Muc {
    /// A MUC module, ready for [`crate::Config::module`].
    pub fn new() -> Arc<Muc> {
        let (events, _) = broadcast::channel(512);
        Arc::new(Muc {
            rooms: Mutex::new(HashMap::new()),
            events,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, RoomState>> {
        // Each update leaves the map whole: a poisoned lock still holds usable state.
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room events from now on.
    pub fn events(&self) -> broadcast::Receiver<MucEvent> {
        self.events.subscribe()
    }

    fn emit(&self, ev: MucEvent) {
        let _ = self.events.send(ev);
    }

    /// Joins `room` and waits until the room has sent the occupant list and our own
    /// presence (or refused). A room already joined is not joined again: that is
    /// [`Muc::change_nick`], or [`Muc::leave`] first.
    pub async fn join(
        &self,
        client: &Client,
        room: &BareJid,
        opts: JoinOptions,
    ) -> Result<Joined, MucError> {
        if self.lock().contains_key(room.as_str()) {
            return Err(Error::InvalidRequest("already in (or joining) that room").into());
        }
        let to = occupant_jid(room, &opts.nick)?;
        let mut x = Element::new("x", MUC);
        if let Some(p) = &opts.password {
            x.push_child(Element::new("password", MUC).text(p.clone()));
        }
        if let Some(h) = &opts.history {
            let mut he = Element::new("history", MUC);
            if let Some(n) = h.max_stanzas {
                he.set_attr("maxstanzas", n.to_string());
            }
            if let Some(s) = h.seconds {
                he.set_attr("seconds", s.to_string());
            }
            x.push_child(he);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut rooms = self.lock();
            rooms.insert(
                room.to_string(),
                RoomState {
                    nick: opts.nick.clone(),
                    password: opts.password.clone(),
                    joined: false,
                    created: false,
                    me: None,
                    occupants: BTreeMap::new(),
                    subject: None,
                    waiter: Some(Waiter::Presence(tx)),
                },
            );
        }
        let presence = Element::new("presence", ns::CLIENT)
            .attr("to", to.as_str())
            .child(x);
        if let Err(e) = client.send(presence).await {
            self.lock().remove(room.as_str());
            return Err(e.into());
        }
        match tokio::time::timeout(ROOM_ANSWER_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                self.lock().remove(room.as_str());
                return Err(e.into());
            }
            Ok(Err(_)) => return Err(Error::Disconnected.into()),
            Err(_) => {
                self.lock().remove(room.as_str());
                return Err(Error::Timeout.into());
            }
        }
        let rooms = self.lock();
        let s = rooms
            .get(room.as_str())
            .ok_or(Error::Protocol("left the room while joining".into()))?;
        Ok(Joined {
            room: room.clone(),
            nick: s.nick.clone(),
            me: s.me.clone().unwrap_or_else(|| occupant_of(&s.nick, None)),
            occupants: s.occupants.values().cloned().collect(),
            created: s.created,
        })
    }

    /// Leaves `room` and waits (bounded) for the room to confirm.
    pub async fn leave(&self, client: &Client, room: &BareJid) -> Result<(), MucError> {
        let (tx, rx) = oneshot::channel();
        let to = {
            let mut rooms = self.lock();
            let s = rooms
                .get_mut(room.as_str())
                .ok_or(Error::InvalidRequest("not in that room"))?;
            s.waiter = Some(Waiter::Leave(tx));
            occupant_jid(room, &s.nick)?
        };
        let p = Element::new("presence", ns::CLIENT)
            .attr("to", to.as_str())
            .attr("type", "unavailable");
        client.send(p).await?;
        let r = tokio::time::timeout(ROOM_ANSWER_TIMEOUT, rx).await;
        // Gone from our side either way.
        self.lock().remove(room.as_str());
        match r {
            Ok(_) => Ok(()),
            Err(_) => Err(Error::Timeout.into()),
        }
    }

    /// Changes our nickname in `room`; fails with [`MucError::NickInUse`] when taken.
    pub async fn change_nick(
        &self,
        client: &Client,
        room: &BareJid,
        new_nick: &str,
    ) -> Result<(), MucError> {
        let to = occupant_jid(room, new_nick)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut rooms = self.lock();
            let s = rooms
                .get_mut(room.as_str())
                .filter(|s| s.joined)
                .ok_or(Error::InvalidRequest("not in that room"))?;
            s.waiter = Some(Waiter::Presence(tx));
        }
        client
            .send(Element::new("presence", ns::CLIENT).attr("to", to.as_str()))
            .await?;
        match tokio::time::timeout(ROOM_ANSWER_TIMEOUT, rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(e.into()),
            Ok(Err(_)) => Err(Error::Disconnected.into()),
            Err(_) => Err(Error::Timeout.into()),
        }
    }

    /// The rooms this client is in.
    pub fn rooms(&self) -> Vec<BareJid> {
        self.lock()
            .iter()
            .filter(|(_, s)| s.joined)
            .filter_map(|(r, _)| BareJid::new(r).ok())
            .collect()
    }

    /// Our nickname in `room`, if joined.
    pub fn nick(&self, room: &BareJid) -> Option<String> {
        self.lock()
            .get(room.as_str())
            .filter(|s| s.joined)
            .map(|s| s.nick.clone())
    }

    /// The other occupants of `room`, by nickname.
    pub fn occupants(&self, room: &BareJid) -> Vec<Occupant> {
        self.lock()
            .get(room.as_str())
            .map(|s| s.occupants.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The room's subject, as last set.
    pub fn subject(&self, room: &BareJid) -> Option<String> {
        self.lock()
            .get(room.as_str())
            .and_then(|s| s.subject.clone())
    }

    /// Sends a group message; returns its id (the room reflects it back with `own` set).
    pub async fn send(&self, client: &Client, room: &BareJid, body: &str) -> Result<String, Error> {
        let id = client.new_id();
        let m = Element::new("message", ns::CLIENT)
            .attr("to", room.as_str())
            .attr("type", "groupchat")
            .attr("id", id.clone())
            .child(Element::new("body", ns::CLIENT).text(body));
        client.send(m).await?;
        Ok(id)
    }

    /// Sets the subject (needs the room's permission: moderators, or anyone if allowed).
    pub async fn set_subject(
        &self,
        client: &Client,
        room: &BareJid,
        subject: &str,
    ) -> Result<(), Error> {
        let m = Element::new("message", ns::CLIENT)
            .attr("to", room.as_str())
            .attr("type", "groupchat")
            .attr("id", client.new_id())
            .child(Element::new("subject", ns::CLIENT).text(subject));
        client.send(m).await
    }

    /// Invites `who` through the room (mediated, XEP-0045 §7.8.2).
    pub async fn invite(
        &self,
        client: &Client,
        room: &BareJid,
        who: &Jid,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        let mut inv = Element::new("invite", USER).attr("to", who.as_str());
        if let Some(r) = reason {
            inv.push_child(Element::new("reason", USER).text(r));
        }
        let m = Element::new("message", ns::CLIENT)
            .attr("to", room.as_str())
            .attr("id", client.new_id())
            .child(Element::new("x", USER).child(inv));
        client.send(m).await
    }

    /// Invites `who` directly (XEP-0249), passing the password along if the room has one.
    pub async fn invite_direct(
        &self,
        client: &Client,
        room: &BareJid,
        who: &Jid,
        reason: Option<&str>,
        password: Option<&str>,
    ) -> Result<(), Error> {
        let mut x = Element::new("x", CONFERENCE).attr("jid", room.as_str());
        if let Some(r) = reason {
            x.set_attr("reason", r);
        }
        if let Some(p) = password {
            x.set_attr("password", p);
        }
        let m = Element::new("message", ns::CLIENT)
            .attr("to", who.as_str())
            .attr("id", client.new_id())
            .child(x);
        client.send(m).await
    }

    /// Declines a mediated invitation to `room` from `inviter`.
    pub async fn decline(
        &self,
        client: &Client,
        room: &BareJid,
        inviter: &Jid,
        reason: Option<&str>,
    ) -> Result<(), Error> {
        let mut d = Element::new("decline", USER).attr("to", inviter.as_str());
        if let Some(r) = reason {
            d.push_child(Element::new("reason", USER).text(r));
        }
        let m = Element::new("message", ns::CLIENT)
            .attr("to", room.as_str())
            .attr("id", client.new_id())
            .child(Element::new("x", USER).child(d));
        client.send(m).await
    }

    async fn admin(&self, client: &Client, room: &BareJid, item: Element) -> Result<(), MucError> {
        let q = Element::new("query", ADMIN).child(item);
        client
            .request(iq(IqType::Set, Some(&Jid::from(room.clone())), q))
            .await
            .map_err(muc_error)?;
        Ok(())
    }

    fn item(attr: &str, value: &str, who: (&str, &str), reason: Option<&str>) -> Element {
        let mut item = Element::new("item", ADMIN)
            .attr(who.0, who.1)
            .attr(attr, value);
        if let Some(r) = reason {
            item.push_child(Element::new("reason", ADMIN).text(r));
        }
        item
    }

    /// Sets an occupant's role: [`Role::None`] kicks, [`Role::Participant`] grants voice,
    /// [`Role::Visitor`] revokes it, [`Role::Moderator`] makes a moderator.
    pub async fn set_role(
        &self,
        client: &Client,
        room: &BareJid,
        nick: &str,
        role: Role,
        reason: Option<&str>,
    ) -> Result<(), MucError> {
        let item = Self::item("role", role.as_str(), ("nick", nick), reason);
        self.admin(client, room, item).await
    }

    /// Kicks an occupant (XEP-0045 §8.2).
    pub async fn kick(
        &self,
        client: &Client,
        room: &BareJid,
        nick: &str,
        reason: Option<&str>,
    ) -> Result<(), MucError> {
        self.set_role(client, room, nick, Role::None, reason).await
    }

    /// Sets a user's affiliation: [`Affiliation::Outcast`] bans (XEP-0045 §9.1),
    /// [`Affiliation::Member`] grants membership, [`Affiliation::None`] takes it away.
    pub async fn set_affiliation(
        &self,
        client: &Client,
        room: &BareJid,
        user: &BareJid,
        affiliation: Affiliation,
        reason: Option<&str>,
    ) -> Result<(), MucError> {
        let item = Self::item(
            "affiliation",
            affiliation.as_str(),
            ("jid", user.as_str()),
            reason,
        );
        self.admin(client, room, item).await
    }

    /// Bans a user (their bare JID) from the room.
    pub async fn ban(
        &self,
        client: &Client,
        room: &BareJid,
        user: &BareJid,
        reason: Option<&str>,
    ) -> Result<(), MucError> {
        self.set_affiliation(client, room, user, Affiliation::Outcast, reason)
            .await
    }

    /// The users with `affiliation` in the room (XEP-0045 §9.5 ban list, §9.5 member list,
    /// §10.5 owners, §10.8 admins), each with the reason given, if any. Needs the privilege
    /// the room asks for that list ([`MucError::Forbidden`] otherwise).
    pub async fn affiliations(
        &self,
        client: &Client,
        room: &BareJid,
        affiliation: Affiliation,
    ) -> Result<Vec<AffiliatedUser>, MucError> {
        let q = Element::new("query", ADMIN)
            .child(Element::new("item", ADMIN).attr("affiliation", affiliation.as_str()));
        let reply = client
            .request(iq(IqType::Get, Some(&Jid::from(room.clone())), q))
            .await
            .map_err(muc_error)?;
        let Some(q) = reply.get_child("query", ADMIN) else {
            return Err(Error::Protocol("affiliation list without a query".into()).into());
        };
        Ok(q.elements()
            .filter(|i| i.is("item", ADMIN))
            .filter_map(|i| {
                // An item without a valid JID names nobody; skipped.
                let jid = i.get_attr("jid").and_then(|j| BareJid::new(j).ok())?;
                Some(AffiliatedUser {
                    jid,
                    affiliation: i
                        .get_attr("affiliation")
                        .and_then(Affiliation::from_name)
                        .unwrap_or(affiliation),
                    nick: i.get_attr("nick").map(str::to_string),
                    reason: child_text(i, "reason", ADMIN),
                })
            })
            .collect())
    }

    /// The room's configuration form (owners only, XEP-0045 §10.2).
    pub async fn get_config(&self, client: &Client, room: &BareJid) -> Result<DataForm, MucError> {
        let reply = client
            .request(iq(
                IqType::Get,
                Some(&Jid::from(room.clone())),
                Element::new("query", OWNER),
            ))
            .await
            .map_err(muc_error)?;
        let x = reply
            .get_child("query", OWNER)
            .and_then(|q| q.get_child("x", confab_proto::payloads::data_form::NS))
            .ok_or_else(|| Error::Protocol("configuration result without a form".into()))?;
        DataForm::try_from(x)
            .map_err(|e| Error::Protocol(format!("configuration form: {e}")).into())
    }

    /// Submits a configuration: the form from [`Muc::get_config`] with values changed
    /// (sent as `type='submit'`).
    pub async fn submit_config(
        &self,
        client: &Client,
        room: &BareJid,
        mut form: DataForm,
    ) -> Result<(), MucError> {
        form.type_ = FormType::Submit;
        for f in &mut form.fields {
            // A submitted form carries values only.
            f.label = None;
            f.desc = None;
            f.options.clear();
        }
        self.owner_set(client, room, form.into()).await
    }

    /// Accepts the default configuration of a room this client just created (an "instant
    /// room", XEP-0045 §10.1.2), unlocking it.
    pub async fn accept_default_config(
        &self,
        client: &Client,
        room: &BareJid,
    ) -> Result<(), MucError> {
        let empty = DataForm::new(FormType::Submit, Vec::new());
        self.owner_set(client, room, empty.into()).await
    }

    /// Destroys the room (owners only, XEP-0045 §10.9); the occupants are told `reason` and
    /// `alternate`.
    pub async fn destroy(
        &self,
        client: &Client,
        room: &BareJid,
        reason: Option<&str>,
        alternate: Option<&BareJid>,
    ) -> Result<(), MucError> {
        let mut d = Element::new("destroy", OWNER);
        if let Some(a) = alternate {
            d.set_attr("jid", a.as_str());
        }
        if let Some(r) = reason {
            d.push_child(Element::new("reason", OWNER).text(r));
        }
        self.owner_set(client, room, d).await
    }

    async fn owner_set(
        &self,
        client: &Client,
        room: &BareJid,
        child: Element,
    ) -> Result<(), MucError> {
        let q = Element::new("query", OWNER).child(child);
        client
            .request(iq(IqType::Set, Some(&Jid::from(room.clone())), q))
            .await
            .map_err(muc_error)?;
        Ok(())
    }

    /// A presence from a room this client is in (or joining).
    fn room_presence(&self, stanza: &Stanza, room: &BareJid, nick: &str) {
        let el = &stanza.el;
        let x = el.get_child("x", USER);
        let codes = x.map(status_codes).unwrap_or_default();
        let mut events = Vec::new();
        {
            let mut rooms = self.lock();
            let Some(s) = rooms.get_mut(room.as_str()) else {
                return;
            };
            if stanza.type_attr() == Some("error") {
                let err = StanzaError::from_stanza(el)
                    .unwrap_or_else(|| StanzaError::new(StanzaErrorCondition::UndefinedCondition));
                // An error to a join or nick change; otherwise a stray one.
                match s.waiter.take() {
                    Some(Waiter::Presence(tx)) => {
                        let _ = tx.send(Err(err));
                    }
                    other => s.waiter = other,
                }
                if !s.joined {
                    rooms.remove(room.as_str());
                }
                return;
            }
            let item = x.and_then(|x| x.get_child("item", USER));
            let occupant = occupant_of(nick, item);
            // Status 110 marks our own presence, but not every one carries it (XEP-0045
            // §10.9's destruction notice does not); the occupant JID with our nick is ours.
            let is_self = codes.contains(&status::SELF) || nick == s.nick;
            let unavailable = stanza.type_attr() == Some("unavailable");
            if unavailable && codes.contains(&status::NICK_CHANGED) {
                let new = item.and_then(|i| i.get_attr("nick")).map(str::to_string);
                if let Some(new) = new {
                    if is_self {
                        s.nick = new.clone();
                    } else if let Some(mut o) = s.occupants.remove(nick) {
                        o.nick = new.clone();
                        s.occupants.insert(new.clone(), o);
                    }
                    events.push(MucEvent::NickChanged {
                        room: room.clone(),
                        old: nick.to_string(),
                        new,
                    });
                }
            } else if unavailable {
                let reason = x
                    .map(|x| removal_reason(&codes, x))
                    .unwrap_or(LeaveReason::Left);
                if is_self {
                    if let Some(Waiter::Leave(tx)) = s.waiter.take() {
                        let _ = tx.send(());
                    }
                    rooms.remove(room.as_str());
                    events.push(MucEvent::Left {
                        room: room.clone(),
                        reason,
                    });
                } else {
                    s.occupants.remove(nick);
                    events.push(MucEvent::OccupantLeft {
                        room: room.clone(),
                        nick: nick.to_string(),
                        reason,
                    });
                }
            } else if is_self {
                if codes.contains(&status::NICK_MODIFIED) || nick != s.nick {
                    s.nick = nick.to_string();
                }
                if codes.contains(&status::CREATED) {
                    s.created = true;
                }
                let was_joined = s.joined;
                s.joined = true;
                let changed = s.me.as_ref().is_some_and(|m| {
                    m.role != occupant.role || m.affiliation != occupant.affiliation
                });
                s.me = Some(occupant.clone());
                if let Some(Waiter::Presence(tx)) = s.waiter.take() {
                    let _ = tx.send(Ok(()));
                } else if was_joined && changed {
                    events.push(MucEvent::OccupantChanged {
                        room: room.clone(),
                        occupant,
                    });
                }
            } else {
                let known = s.occupants.get(nick).cloned();
                match known {
                    Some(k) if k.role == occupant.role && k.affiliation == occupant.affiliation => {
                        s.occupants.insert(nick.to_string(), occupant);
                    }
                    Some(_) => {
                        s.occupants.insert(nick.to_string(), occupant.clone());
                        events.push(MucEvent::OccupantChanged {
                            room: room.clone(),
                            occupant,
                        });
                    }
                    None if s.occupants.len() >= MAX_OCCUPANTS => {
                        tracing::debug!(%room, "occupant list full; not tracking more");
                    }
                    None => {
                        s.occupants.insert(nick.to_string(), occupant.clone());
                        // Those present before we joined are in `Joined`, not events.
                        if s.joined {
                            events.push(MucEvent::OccupantJoined {
                                room: room.clone(),
                                occupant,
                            });
                        }
                    }
                }
            }
        }
        for e in events {
            self.emit(e);
        }
    }

    fn room_message(&self, stanza: &Stanza, room: &BareJid, nick: Option<&str>) {
        let el = &stanza.el;
        if stanza.type_attr() == Some("error") {
            let error = StanzaError::from_stanza(el)
                .unwrap_or_else(|| StanzaError::new(StanzaErrorCondition::UndefinedCondition));
            self.emit(MucEvent::Error {
                room: room.clone(),
                id: stanza.id().map(str::to_string),
                error,
            });
            return;
        }
        if stanza.type_attr() != Some("groupchat") {
            return;
        }
        let own_nick = {
            let rooms = self.lock();
            match rooms.get(room.as_str()) {
                Some(s) => s.nick.clone(),
                // Not a room we are in: ignore what it says.
                None => return,
            }
        };
        if let Some(x) = el.get_child("x", USER) {
            if status_codes(x).contains(&104) {
                self.emit(MucEvent::ConfigChanged { room: room.clone() });
            }
        }
        let body = child_text(el, "body", ns::CLIENT);
        if let (Some(subject), None) = (child_text(el, "subject", ns::CLIENT), &body) {
            if let Some(s) = self.lock().get_mut(room.as_str()) {
                s.subject = Some(subject.clone());
            }
            self.emit(MucEvent::Subject {
                room: room.clone(),
                nick: nick.map(str::to_string),
                subject,
            });
            return;
        }
        let Some(body) = body else { return };
        let stanza_id = el
            .elements()
            .filter(|e| e.is("stanza-id", SID))
            .find(|e| e.get_attr("by") == Some(room.as_str()))
            .and_then(|e| e.get_attr("id"))
            .map(str::to_string);
        self.emit(MucEvent::Message(GroupMessage {
            room: room.clone(),
            nick: nick.map(str::to_string),
            id: stanza.id().map(str::to_string),
            stanza_id,
            own: nick == Some(own_nick.as_str()),
            body,
            delayed: el
                .get_child("delay", delay::NS)
                .and_then(|d| Delay::try_from(d).ok())
                .map(|d| d.stamp),
        }));
    }

    /// Invitations arrive from the room (mediated) or from the inviter (direct).
    fn invitation(&self, stanza: &Stanza) -> bool {
        let el = &stanza.el;
        if let Some(x) = el.get_child("x", CONFERENCE) {
            let Some(room) = x.get_attr("jid").and_then(|j| BareJid::new(j).ok()) else {
                return false;
            };
            self.emit(MucEvent::Invited {
                room,
                from: stanza.from.clone(),
                reason: x.get_attr("reason").map(str::to_string),
                password: x.get_attr("password").map(str::to_string),
                direct: true,
            });
            return true;
        }
        let Some(x) = el.get_child("x", USER) else {
            return false;
        };
        let Some(room) = stanza.from.as_ref().map(|f| f.to_bare()) else {
            return false;
        };
        if let Some(inv) = x.get_child("invite", USER) {
            self.emit(MucEvent::Invited {
                room,
                from: inv.get_attr("from").and_then(|f| Jid::new(f).ok()),
                reason: child_text(inv, "reason", USER),
                password: child_text(x, "password", USER),
                direct: false,
            });
            return true;
        }
        if let Some(d) = x.get_child("decline", USER) {
            self.emit(MucEvent::Declined {
                room,
                from: d.get_attr("from").and_then(|f| Jid::new(f).ok()),
                reason: child_text(d, "reason", USER),
            });
            return true;
        }
        false
    }
}

/// The error of an admin or owner request (XEP-0045 §8–10).
fn muc_error(e: Error) -> MucError {
    match e {
        Error::Stanza { error, .. } => match error.condition {
            StanzaErrorCondition::Forbidden | StanzaErrorCondition::NotAllowed => {
                MucError::Forbidden
            }
            _ => MucError::Refused(error),
        },
        e => MucError::Client(e),
    }
}

#[async_trait::async_trait]
impl Module for Muc {
    fn name(&self) -> &'static str {
        "muc"
    }

    fn handle(&self, stanza: &Stanza, _ctx: &mut Context<'_>) -> Handled {
        let Some(from) = stanza.from.as_ref() else {
            return Handled::Pass;
        };
        let room = from.to_bare();
        let nick = from.resource().map(|r| r.to_string());
        match stanza.kind {
            confab_proto::StanzaKind::Presence => {
                if let Some(nick) = nick {
                    let ours = self.lock().contains_key(room.as_str());
                    if ours {
                        self.room_presence(stanza, &room, &nick);
                    }
                }
            }
            confab_proto::StanzaKind::Message => {
                if !self.invitation(stanza) {
                    let ours = self.lock().contains_key(room.as_str());
                    if ours {
                        self.room_message(stanza, &room, nick.as_deref());
                    }
                }
            }
            confab_proto::StanzaKind::Iq => {}
        }
        Handled::Pass
    }

    /// A new session after a reconnection: the rooms forgot us (or hold a stale copy), so
    /// join each again; [`MucEvent::Rejoined`] or a [`MucEvent::Left`] with
    /// [`LeaveReason::RejoinFailed`] tells the application.
    async fn new_session(&self, client: &Client) {
        let rooms: Vec<(String, String, Option<String>)> = self
            .lock()
            .drain()
            .filter(|(_, s)| s.joined)
            .map(|(r, s)| (r, s.nick, s.password))
            .collect();
        for (r, nick, password) in rooms {
            let Ok(room) = BareJid::new(&r) else { continue };
            let opts = JoinOptions {
                nick,
                password,
                history: Some(History {
                    max_stanzas: Some(0),
                    seconds: None,
                }),
            };
            match self.join(client, &room, opts).await {
                Ok(j) => self.emit(MucEvent::Rejoined(j)),
                Err(e) => self.emit(MucEvent::Left {
                    room,
                    reason: LeaveReason::RejoinFailed(e.to_string()),
                }),
            }
        }
    }
}
