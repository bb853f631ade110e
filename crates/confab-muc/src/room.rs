//! One room: its configuration, affiliations, occupants, subject and history, and every
//! XEP-0045 action on it. No I/O here: each action checks everything first (bad input gets
//! an error and changes nothing), then changes the room and says in `Out` what to send.

use crate::avatar::RoomVcard;
use crate::payloads::{
    status, Actor, AdminQuery, Affiliation, Destroy, History, Invitation, Item, Join, Role, UserX,
    NS_MODERATE, NS_OCCUPANT_ID, NS_RETRACT, NS_SID, NS_USER,
};
use confab_proto::datetime::format_datetime;
use confab_proto::error::{StanzaError, StanzaErrorCondition, StanzaErrorType};
use confab_proto::jid::{BareJid, FullJid, Jid};
use confab_proto::ns;
use confab_proto::payloads::delay::Delay;
use confab_proto::xml::Element;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Service-wide limits a room applies.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_occupants: usize,
    pub max_affiliations: usize,
    pub max_sessions_per_nick: usize,
    pub history_max: usize,
    pub history_max_bytes: usize,
    pub message_rate: f64,
    pub message_burst: u32,
    /// Decoded bytes of the photos in a room's vCard (XEP-0486).
    pub max_avatar_bytes: usize,
}

const NS_FORWARD: &str = "urn:xmpp:forward:0";

/// Most invitations one message may carry.
const MAX_INVITES_PER_MESSAGE: usize = 10;
/// Invitations remembered per room so that a decline can be passed back (and only then).
const MAX_PENDING_INVITES: usize = 100;
/// Longest nick, in bytes: every presence of the occupant carries it.
const MAX_NICK_BYTES: usize = 256;
/// Longest room name, description or password.
pub const MAX_TEXT_CHARS: usize = 1024;

/// What an owner configures (`muc#roomconfig`); stored for persistent rooms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    pub name: String,
    pub description: String,
    pub persistent: bool,
    pub public: bool,
    pub members_only: bool,
    /// Members may invite others to a members-only room (which adds them as members).
    pub allow_invites: bool,
    /// Set: the room is password-protected.
    pub password: Option<String>,
    pub moderated: bool,
    /// Real JIDs visible to everyone (non-anonymous) rather than to moderators only.
    pub whois_anyone: bool,
    /// Most occupants; admins and owners may still enter up to the service's cap.
    pub max_users: usize,
    /// Participants (not only moderators) may change the subject.
    pub change_subject: bool,
    /// Messages are archived and may be queried with MAM (XEP-0313). Rooms stored before
    /// the option existed read as archiving.
    pub mam: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            allow_invites: false,
            password: None,
            moderated: false,
            whois_anyone: false,
            max_users: 0,
            change_subject: false,
            mam: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub text: String,
    /// The nick that set it, if an occupant did.
    pub nick: Option<String>,
    pub stamp: i64,
}

pub struct Occupant {
    pub nick: String,
    /// The occupant's real full JID.
    pub jid: FullJid,
    /// `room@service/nick`.
    pub room_jid: FullJid,
    pub role: Role,
    /// What the occupant's presence carries that the room passes on (show, status,
    /// priority, caps …; never client-made `muc`/`muc#user` data).
    pub payload: Vec<Element>,
    /// XEP-0421: the same for one real bare JID in this room, whatever its nick or session.
    pub occupant_id: String,
    /// `[muc] message_rate`: shared by every session (and nick) of one real bare JID in the
    /// room, so that more sessions do not mean more messages.
    rate: Arc<Mutex<Bucket>>,
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// Whether the bucket is full again by now (nothing left to remember).
    fn refilled(&self, lim: &Limits) -> bool {
        let elapsed = self.last.elapsed().as_secs_f64();
        lim.message_rate <= 0.0
            || self.tokens + elapsed * lim.message_rate >= f64::from(lim.message_burst)
    }
}

impl Occupant {
    /// True if the occupant's user may send one more message now.
    fn take_token(&self, lim: &Limits) -> bool {
        if lim.message_rate <= 0.0 {
            return true;
        }
        // Only ever locked under the room's lock, never across an await: uncontended.
        let mut b = self.rate.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * lim.message_rate).min(f64::from(lim.message_burst));
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct HistoryEntry {
    /// The message as reflected, `from` the occupant JID, without `to`.
    el: Element,
    stamp: i64,
    chars: usize,
}

/// A message for the room's archive.
pub struct ArchiveItem {
    /// Its stanza-id, which is its archive id.
    pub id: String,
    pub nick: String,
    /// The sender's real bare JID.
    pub jid: BareJid,
    pub el: Arc<Element>,
}

/// What an action asks the service to do, in order.
#[derive(Default)]
pub struct Out {
    /// Stanzas for occupants' sessions, delivered while the room is still locked so every
    /// occupant sees the room's events in one order. One `Arc` pushed for several occupants
    /// in a row is serialized once for all of them.
    pub deliver: Vec<(Arc<Element>, FullJid)>,
    /// XEP-0280 carbons for occupants' sessions: delivered after `deliver`, only to the
    /// sessions that enabled carbons (which the room cannot see).
    pub carbons: Vec<(Arc<Element>, FullJid)>,
    /// Stanzas to route once the room is unlocked (invitations, declines).
    pub route: Vec<Element>,
    /// The stored room must be written (persistent rooms).
    pub save: bool,
    /// The stored room must be deleted (destroyed, or no longer persistent).
    pub unstore: bool,
    /// Occupancy changes: (real JID, joined) — the service's index of who is where.
    pub joined: Vec<(FullJid, bool)>,
    /// Where in `deliver` the answer to the request goes, if not after everything:
    /// XEP-0045 §8.2 and §9.1 tell the removed occupant first, then the moderator, then
    /// the others.
    pub reply_at: Option<usize>,
    /// Messages to archive before anything is delivered (so every copy carries an id that
    /// is already in the archive).
    pub archive: Vec<ArchiveItem>,
}

pub struct Room {
    pub jid: BareJid,
    pub config: RoomConfig,
    /// Created and not configured yet: only owners may enter (XEP-0045 §10.1.1).
    pub locked: bool,
    /// Every affiliation but `none`, by bare JID.
    pub affiliations: BTreeMap<BareJid, Affiliation>,
    pub occupants: Vec<Occupant>,
    pub subject: Option<Subject>,
    history: VecDeque<HistoryEntry>,
    history_bytes: usize,
    invites: VecDeque<(BareJid, Jid)>,
    /// Who created it (counted against `max_rooms_per_user` while it exists).
    pub creator: Option<BareJid>,
    /// Removed from the service (destroyed or emptied): whoever waited for the lock must
    /// look the room up again.
    pub gone: bool,
    /// The room's vCard with its avatar (XEP-0486), stored with a persistent room.
    pub vcard: Option<RoomVcard>,
    /// A stored vCard that no longer reads (limits lowered since it was set): not served,
    /// but written back as it was with the room until an owner sets another.
    pub vcard_unread: Option<String>,
    /// `[muc] message_rate` allowances of users who left with part of it spent, kept until
    /// refilled (at most `MAX_LEFT_RATES`, oldest dropped first): leaving and joining
    /// again does not give a fresh burst.
    left_rates: VecDeque<(BareJid, Arc<Mutex<Bucket>>)>,
}

/// Most spent message-rate allowances a room keeps for users who left.
const MAX_LEFT_RATES: usize = 256;

fn err(cond: StanzaErrorCondition, text: &str) -> StanzaError {
    StanzaError::with_text(cond, text)
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// An id for a stanza the room makes, or for a reflected message that had none (XEP-0045
/// §7.4: the same id on every copy).
pub fn new_id(now: i64) -> String {
    format!("muc-{now:x}-{:x}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// A stanza-id (XEP-0359) for a message the room passes on: random, so it tells nothing
/// about the room's traffic and cannot be guessed.
pub fn new_stanza_id() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), 16)
}

fn occupant_id_el(id: &str) -> Element {
    Element::new("occupant-id", NS_OCCUPANT_ID).attr("id", id)
}

/// The room's stanza-id on a message it passed on, if it has one.
pub fn stanza_id<'a>(m: &'a Element, room: &BareJid) -> Option<&'a str> {
    m.elements()
        .find(|c| c.is("stanza-id", NS_SID) && c.get_attr("by") == Some(room.as_str()))
        .and_then(|c| c.get_attr("id"))
}

/// Removes what only the room may say: stanza-ids claiming to be the room's (XEP-0359 §5)
/// and occupant-ids (XEP-0421 §4), which a client could forge.
fn strip_claims(m: &mut Element, room: &BareJid) {
    m.children.retain(|n| {
        !matches!(n, confab_proto::xml::Node::Element(e)
            if e.is("occupant-id", NS_OCCUPANT_ID)
                || (e.is("stanza-id", NS_SID) && e.get_attr("by") == Some(room.as_str())))
    });
}

/// Whether a nick is empty or made only of spaces and invisible characters (XEP-0045 §16.1
/// forbids them).
pub fn invisible_nick(nick: &str) -> bool {
    nick.chars().all(|c| {
        c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}')
    })
}

/// Checks a requested nick; returns it (trimmed) and whether the service changed it.
pub fn check_nick(nick: &str) -> Result<(String, bool), StanzaError> {
    if invisible_nick(nick) {
        return Err(err(
            StanzaErrorCondition::JidMalformed,
            "empty or invisible nick",
        ));
    }
    if nick.len() > MAX_NICK_BYTES {
        return Err(err(StanzaErrorCondition::NotAcceptable, "nick too long"));
    }
    let trimmed = nick.trim();
    Ok((trimmed.to_string(), trimmed != nick))
}

/// The parts of a client's presence the room passes on.
pub fn presence_payload(presence: &Element) -> Vec<Element> {
    presence
        .elements()
        .filter(|c| !(c.name == "x" && (c.ns == crate::payloads::NS_MUC || c.ns == NS_USER)))
        .filter(|c| !c.is("occupant-id", NS_OCCUPANT_ID))
        .filter(|c| c.name != "error")
        .cloned()
        .collect()
}

impl Room {
    pub fn new(jid: BareJid, creator: BareJid) -> Room {
        let mut affiliations = BTreeMap::new();
        affiliations.insert(creator.clone(), Affiliation::Owner);
        Room {
            jid,
            config: RoomConfig::default(),
            locked: true,
            affiliations,
            occupants: Vec::new(),
            subject: None,
            history: VecDeque::new(),
            history_bytes: 0,
            invites: VecDeque::new(),
            creator: Some(creator),
            gone: false,
            vcard: None,
            vcard_unread: None,
            left_rates: VecDeque::new(),
        }
    }

    /// A persistent room as stored.
    pub fn restored(
        jid: BareJid,
        config: RoomConfig,
        affiliations: BTreeMap<BareJid, Affiliation>,
        subject: Option<Subject>,
        creator: Option<BareJid>,
    ) -> Room {
        Room {
            jid,
            config,
            locked: false,
            affiliations,
            occupants: Vec::new(),
            subject,
            history: VecDeque::new(),
            history_bytes: 0,
            invites: VecDeque::new(),
            creator,
            gone: false,
            vcard: None,
            vcard_unread: None,
            left_rates: VecDeque::new(),
        }
    }

    pub fn affiliation(&self, who: &BareJid) -> Affiliation {
        self.affiliations
            .get(who)
            .copied()
            .unwrap_or(Affiliation::None)
    }

    pub fn occupant_index(&self, jid: &FullJid) -> Option<usize> {
        self.occupants.iter().position(|o| &o.jid == jid)
    }

    pub fn occupant(&self, jid: &FullJid) -> Option<&Occupant> {
        self.occupants.iter().find(|o| &o.jid == jid)
    }

    fn by_nick(&self, nick: &str) -> Option<usize> {
        self.occupants.iter().position(|o| o.nick == nick)
    }

    /// The real JIDs of the sessions sharing the occupant `nick` (XEP-0045 §7.2.2: one user
    /// may be in the room from several resources under one nick).
    pub fn sessions_of(&self, nick: &str) -> Vec<FullJid> {
        self.occupants
            .iter()
            .filter(|o| o.nick == nick)
            .map(|o| o.jid.clone())
            .collect()
    }

    /// The occupants as others see them: one per nick, the session that joined last
    /// standing for a nick with several. In join order.
    fn distinct_occupants(&self) -> Vec<&Occupant> {
        let mut seen = std::collections::HashSet::new();
        let mut v: Vec<&Occupant> = self
            .occupants
            .iter()
            .rev()
            .filter(|o| seen.insert(o.nick.as_str()))
            .collect();
        v.reverse();
        v
    }

    /// How many occupants (nicks, not sessions) are in the room.
    pub fn occupant_count(&self) -> usize {
        self.distinct_occupants().len()
    }

    pub fn is_password_protected(&self) -> bool {
        self.config.password.is_some()
    }

    /// Whether the room has nothing left to exist for.
    pub fn should_vanish(&self) -> bool {
        self.gone || (self.occupants.is_empty() && (!self.config.persistent || self.locked))
    }

    fn default_role(&self, aff: Affiliation) -> Role {
        match aff {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.config.moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    fn sees_jids(&self, viewer: &Occupant) -> bool {
        self.config.whois_anyone || viewer.role == Role::Moderator
    }

    fn item_for(&self, o: &Occupant) -> Item {
        Item {
            affiliation: Some(self.affiliation(&o.jid.to_bare())),
            role: Some(o.role),
            ..Item::default()
        }
    }

    /// Presence from an occupant JID.
    fn presence(
        from: &FullJid,
        occupant_id: &str,
        unavailable: bool,
        payload: &[Element],
        x: UserX,
        extra: Option<Element>,
    ) -> Element {
        let mut p = Element::new("presence", ns::CLIENT).attr("from", from.as_str());
        if unavailable {
            p.set_attr("type", "unavailable");
        }
        for c in payload {
            p.push_child(c.clone());
        }
        p.push_child(occupant_id_el(occupant_id));
        let mut x: Element = x.into();
        if let Some(e) = extra {
            x.children.insert(0, confab_proto::xml::Node::Element(e));
        }
        p.push_child(x);
        p
    }

    /// Sends presence about `subject` to every occupant (and to `subject` itself, with
    /// status 110 and `self_codes`, even when it is no longer in the room): with its real
    /// JID to those allowed to see it.
    #[allow(clippy::too_many_arguments)]
    fn broadcast_about(
        &self,
        out: &mut Out,
        subject: &Occupant,
        unavailable: bool,
        payload: &[Element],
        item: Item,
        codes: &[u16],
        self_codes: &[u16],
        self_id: Option<&str>,
    ) {
        self.broadcast_ordered(
            out,
            subject,
            &[],
            unavailable,
            payload,
            item,
            codes,
            self_codes,
            self_id,
            false,
        )
    }

    /// `broadcast_about`, the subject told first (and the request answered right after it)
    /// when `subject_first`. The subject's own copy (status 110) goes to every session
    /// sharing its nick, and to `removed`: its other sessions just taken out of the room.
    #[allow(clippy::too_many_arguments)]
    fn broadcast_ordered(
        &self,
        out: &mut Out,
        subject: &Occupant,
        removed: &[FullJid],
        unavailable: bool,
        payload: &[Element],
        item: Item,
        codes: &[u16],
        self_codes: &[u16],
        self_id: Option<&str>,
        subject_first: bool,
    ) {
        let with_jid = Item {
            jid: Some(Jid::from(subject.jid.clone())),
            ..item.clone()
        };
        let plain = Self::presence(
            &subject.room_jid,
            &subject.occupant_id,
            unavailable,
            payload,
            UserX {
                items: vec![item],
                status: codes.to_vec(),
                ..UserX::default()
            },
            None,
        );
        let visible = Self::presence(
            &subject.room_jid,
            &subject.occupant_id,
            unavailable,
            payload,
            UserX {
                items: vec![with_jid.clone()],
                status: codes.to_vec(),
                ..UserX::default()
            },
            None,
        );
        let mut own_codes: Vec<u16> = codes.to_vec();
        own_codes.extend_from_slice(self_codes);
        own_codes.push(status::SELF);
        own_codes.sort_unstable();
        own_codes.dedup();
        let mut own = Self::presence(
            &subject.room_jid,
            &subject.occupant_id,
            unavailable,
            payload,
            UserX {
                items: vec![with_jid],
                status: own_codes,
                ..UserX::default()
            },
            None,
        );
        // The request's id only on the copy to the session that sent it.
        let mut own_copies: Vec<(Arc<Element>, FullJid)> = Vec::new();
        let others_own: Vec<FullJid> = self
            .occupants
            .iter()
            .filter(|r| r.nick == subject.nick && r.jid != subject.jid)
            .map(|r| r.jid.clone())
            .chain(removed.iter().cloned())
            .collect();
        if !others_own.is_empty() {
            let shared = Arc::new(own.clone());
            own_copies.extend(others_own.into_iter().map(|j| (shared.clone(), j)));
        }
        if let Some(id) = self_id {
            own.set_attr("id", id);
        }
        own_copies.insert(0, (Arc::new(own), subject.jid.clone()));
        let own = if subject_first {
            out.deliver.extend(own_copies);
            if out.reply_at.is_none() {
                out.reply_at = Some(out.deliver.len());
            }
            Vec::new()
        } else {
            own_copies
        };
        let (visible, plain) = (Arc::new(visible), Arc::new(plain));
        for r in &self.occupants {
            if r.nick == subject.nick {
                continue;
            }
            let el = if self.sees_jids(r) { &visible } else { &plain };
            out.deliver.push((el.clone(), r.jid.clone()));
        }
        out.deliver.extend(own);
    }

    /// A message from the room to every occupant.
    fn notice_all(&self, out: &mut Out, codes: &[u16], now: i64) {
        let x: Element = UserX {
            status: codes.to_vec(),
            ..UserX::default()
        }
        .into();
        let m = Element::new("message", ns::CLIENT)
            .attr("from", self.jid.as_str())
            .attr("type", "groupchat")
            .attr("id", new_id(now))
            .child(x);
        let m = Arc::new(m);
        for o in &self.occupants {
            out.deliver.push((m.clone(), o.jid.clone()));
        }
    }

    /// Removes an occupant, every session under its nick, with status codes (kick, ban,
    /// affiliation change …): everyone, each removed session included, is told.
    fn remove_occupant(
        &mut self,
        nick: &str,
        codes: &[u16],
        actor: Option<Actor>,
        reason: Option<String>,
        out: &mut Out,
    ) {
        let (mut gone, kept): (Vec<Occupant>, Vec<Occupant>) = std::mem::take(&mut self.occupants)
            .into_iter()
            .partition(|o| o.nick == nick);
        self.occupants = kept;
        let Some(o) = gone.pop() else {
            return;
        };
        self.keep_rate(&o);
        let others: Vec<FullJid> = gone.into_iter().map(|g| g.jid).collect();
        let item = Item {
            affiliation: Some(self.affiliation(&o.jid.to_bare())),
            role: Some(Role::None),
            actor,
            reason,
            ..Item::default()
        };
        self.broadcast_ordered(out, &o, &others, true, &[], item, codes, &[], None, true);
        for j in others {
            out.joined.push((j, false));
        }
        out.joined.push((o.jid, false));
    }

    /// XEP-0045 §7.2: enter (or, for `created`, create) the room.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &mut self,
        lim: &Limits,
        from: &FullJid,
        nick: &str,
        nick_modified: bool,
        presence: &Element,
        join: &Join,
        created: bool,
        occupant_id: String,
        now: i64,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let aff = self.affiliation(&from.to_bare());
        if !created {
            if self.locked && aff != Affiliation::Owner {
                return Err(err(
                    StanzaErrorCondition::ItemNotFound,
                    "the room is locked",
                ));
            }
            if aff == Affiliation::Outcast {
                return Err(err(StanzaErrorCondition::Forbidden, "you are banned"));
            }
            if self.config.members_only && aff < Affiliation::Member {
                return Err(err(
                    StanzaErrorCondition::RegistrationRequired,
                    "the room is members-only",
                ));
            }
            if let Some(pw) = &self.config.password {
                if aff < Affiliation::Owner && join.password.as_deref() != Some(pw.as_str()) {
                    return Err(err(
                        StanzaErrorCondition::NotAuthorized,
                        "password required",
                    ));
                }
            }
        }
        // XEP-0045 §7.2.2: another session of the same user may join under its nick and
        // shares the occupant (its role included); anyone else gets a conflict.
        let shared_role = match self.by_nick(nick) {
            Some(i) if self.occupants[i].jid.to_bare() != from.to_bare() => {
                return Err(err(StanzaErrorCondition::Conflict, "nick in use"));
            }
            Some(i) => {
                if self.sessions_of(nick).len() >= lim.max_sessions_per_nick {
                    return Err(err(
                        StanzaErrorCondition::Conflict,
                        "too many sessions under this nick",
                    ));
                }
                Some(self.occupants[i].role)
            }
            None => None,
        };
        if shared_role.is_none() {
            let count = self.occupant_count();
            let room_max = match self.config.max_users {
                0 => lim.max_occupants,
                n => n.min(lim.max_occupants),
            };
            if count >= lim.max_occupants || (count >= room_max && aff < Affiliation::Admin) {
                let mut e = err(StanzaErrorCondition::ServiceUnavailable, "the room is full");
                e.type_ = StanzaErrorType::Wait;
                return Err(e);
            }
        }
        let room_jid = self
            .jid
            .with_resource_str(nick)
            .map_err(|_| err(StanzaErrorCondition::JidMalformed, "invalid nick"))?;
        // Compared by parts: no bare JID allocated per occupant on every join.
        self.left_rates
            .retain(|(_, b)| !b.lock().unwrap_or_else(|p| p.into_inner()).refilled(lim));
        let rate =
            self.occupants
                .iter()
                .find(|o| o.jid.node() == from.node() && o.jid.domain() == from.domain())
                .map(|o| o.rate.clone())
                .or_else(|| {
                    let i = self.left_rates.iter().position(|(j, _)| {
                        j.node() == from.node() && j.domain() == from.domain()
                    })?;
                    self.left_rates.remove(i).map(|(_, b)| b)
                })
                .unwrap_or_else(|| {
                    Arc::new(Mutex::new(Bucket {
                        tokens: f64::from(lim.message_burst),
                        last: Instant::now(),
                    }))
                });
        let occ = Occupant {
            nick: nick.to_string(),
            jid: from.clone(),
            room_jid,
            role: shared_role.unwrap_or_else(|| self.default_role(aff)),
            payload: presence_payload(presence),
            occupant_id,
            rate,
        };
        self.occupants.push(occ);
        out.joined.push((from.clone(), true));
        let idx = self.occupants.len() - 1;
        self.send_join_sequence(
            idx,
            nick_modified,
            created,
            presence.get_attr("id"),
            join,
            now,
            out,
        );
        Ok(())
    }

    /// What a joining (or resynchronising) occupant gets, in XEP-0045 §7.1 order: the
    /// others' presence, its own (also broadcast to the others), history, subject.
    #[allow(clippy::too_many_arguments)]
    fn send_join_sequence(
        &self,
        idx: usize,
        nick_modified: bool,
        created: bool,
        id: Option<&str>,
        join: &Join,
        now: i64,
        out: &mut Out,
    ) {
        let me = &self.occupants[idx];
        let see = self.sees_jids(me);
        for o in self.distinct_occupants() {
            if o.nick == me.nick {
                continue;
            }
            let mut item = self.item_for(o);
            if see {
                item.jid = Some(Jid::from(o.jid.clone()));
            }
            let p = Self::presence(
                &o.room_jid,
                &o.occupant_id,
                false,
                &o.payload,
                UserX {
                    items: vec![item],
                    ..UserX::default()
                },
                None,
            );
            out.deliver.push((Arc::new(p), me.jid.clone()));
        }
        let mut self_codes = Vec::new();
        if self.config.whois_anyone {
            self_codes.push(status::NON_ANONYMOUS);
        }
        if created {
            self_codes.push(status::CREATED);
        }
        if nick_modified {
            self_codes.push(status::NICK_MODIFIED);
        }
        self.broadcast_about(
            out,
            me,
            false,
            &me.payload,
            self.item_for(me),
            &[],
            &self_codes,
            id,
        );
        for h in self.select_history(join.history.as_ref(), now) {
            let mut m = h.el.clone();
            m.push_child(
                Delay {
                    from: Some(Jid::from(self.jid.clone())),
                    stamp: h.stamp,
                    reason: None,
                }
                .into(),
            );
            out.deliver.push((Arc::new(m), me.jid.clone()));
        }
        out.deliver
            .push((Arc::new(self.subject_message(now)), me.jid.clone()));
        // No presence from the room's bare JID with the avatar's hash: XEP-0486 has clients
        // learn it from disco#info (`muc#roominfo_avatarhash`) and does not encourage that
        // presence; only a change is announced to those present.
    }

    fn subject_message(&self, now: i64) -> Element {
        let mut m = Element::new("message", ns::CLIENT)
            .attr("type", "groupchat")
            .attr("id", new_id(now));
        match &self.subject {
            Some(s) => {
                let from = s
                    .nick
                    .as_deref()
                    .and_then(|n| self.jid.with_resource_str(n).ok())
                    .map(Jid::from)
                    .unwrap_or_else(|| Jid::from(self.jid.clone()));
                m.set_attr("from", from.as_str());
                m.push_child(Element::new("subject", ns::CLIENT).text(s.text.clone()));
                m.push_child(
                    Delay {
                        from: Some(Jid::from(self.jid.clone())),
                        stamp: s.stamp,
                        reason: None,
                    }
                    .into(),
                );
            }
            None => {
                m.set_attr("from", self.jid.as_str());
                m.push_child(Element::new("subject", ns::CLIENT));
            }
        }
        m
    }

    /// XEP-0045 §7.2.15: the smallest history that meets every limit given, newest kept.
    fn select_history(&self, h: Option<&History>, now: i64) -> Vec<&HistoryEntry> {
        let (mut chars_left, mut stanzas_left, mut since) = (usize::MAX, usize::MAX, i64::MIN);
        if let Some(h) = h {
            chars_left = h.maxchars.unwrap_or(usize::MAX);
            stanzas_left = h.maxstanzas.unwrap_or(usize::MAX);
            if let Some(s) = h.seconds {
                since = since.max(now.saturating_sub(i64::try_from(s).unwrap_or(i64::MAX)));
            }
            if let Some(s) = h.since {
                since = since.max(s);
            }
        }
        let mut picked = Vec::new();
        for e in self.history.iter().rev() {
            if stanzas_left == 0 || e.stamp < since || e.chars > chars_left {
                break;
            }
            stanzas_left -= 1;
            chars_left -= e.chars;
            picked.push(e);
        }
        picked.reverse();
        picked
    }

    fn push_history(&mut self, lim: &Limits, el: Element, now: i64) {
        if lim.history_max == 0 {
            return;
        }
        // What a client counts for maxchars is the whole stanza it receives: the stored
        // form plus the `to` and the delay stamp the copy gets.
        let chars = el.to_xml(ns::CLIENT).len() + 120;
        if chars > lim.history_max_bytes {
            return;
        }
        self.history.push_back(HistoryEntry {
            el,
            stamp: now,
            chars,
        });
        self.history_bytes += chars;
        while self.history.len() > lim.history_max || self.history_bytes > lim.history_max_bytes {
            match self.history.pop_front() {
                Some(e) => self.history_bytes -= e.chars,
                None => break,
            }
        }
    }

    /// Available presence from an occupant: a status change, a resync (with the MUC
    /// `<x/>`), or a nick change (to another occupant JID).
    #[allow(clippy::too_many_arguments)]
    pub fn occupant_presence(
        &mut self,
        from: &FullJid,
        new_nick: &str,
        nick_modified: bool,
        presence: &Element,
        join: Option<&Join>,
        now: i64,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let Some(idx) = self.occupant_index(from) else {
            return Err(err(StanzaErrorCondition::NotAcceptable, "not an occupant"));
        };
        if self.occupants[idx].nick != new_nick {
            return self.change_nick(idx, new_nick, nick_modified, presence, out);
        }
        self.occupants[idx].payload = presence_payload(presence);
        match join {
            Some(j) => {
                // XEP-0045 §17.3: a join from an occupant is a request to resynchronise.
                self.send_join_sequence(
                    idx,
                    nick_modified,
                    false,
                    presence.get_attr("id"),
                    j,
                    now,
                    out,
                )
            }
            None => {
                let o = &self.occupants[idx];
                self.broadcast_about(out, o, false, &o.payload, self.item_for(o), &[], &[], None);
            }
        }
        Ok(())
    }

    fn change_nick(
        &mut self,
        idx: usize,
        nick: &str,
        nick_modified: bool,
        presence: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        if self.by_nick(nick).is_some() {
            return Err(err(StanzaErrorCondition::Conflict, "nick in use"));
        }
        let room_jid = self
            .jid
            .with_resource_str(nick)
            .map_err(|_| err(StanzaErrorCondition::JidMalformed, "invalid nick"))?;
        let o = &self.occupants[idx];
        let gone_item = Item {
            nick: Some(nick.to_string()),
            ..self.item_for(o)
        };
        self.broadcast_about(
            out,
            o,
            true,
            &[],
            gone_item,
            &[status::NICK_CHANGED],
            &[],
            None,
        );
        // Every session under the old nick moves: they are one occupant.
        let old = self.occupants[idx].nick.clone();
        for o in self.occupants.iter_mut().filter(|o| o.nick == old) {
            o.nick = nick.to_string();
            o.room_jid = room_jid.clone();
        }
        self.occupants[idx].payload = presence_payload(presence);
        let self_codes: &[u16] = if nick_modified {
            &[status::NICK_MODIFIED]
        } else {
            &[]
        };
        let o = &self.occupants[idx];
        self.broadcast_about(
            out,
            o,
            false,
            &o.payload,
            self.item_for(o),
            &[],
            self_codes,
            None,
        );
        Ok(())
    }

    /// Keeps the message-rate allowance of `o`'s user once its last session left.
    fn keep_rate(&mut self, o: &Occupant) {
        let bare = o.jid.to_bare();
        if self.occupants.iter().any(|r| r.jid.to_bare() == bare) {
            return;
        }
        if self.left_rates.len() >= MAX_LEFT_RATES {
            self.left_rates.pop_front();
        }
        self.left_rates.push_back((bare, o.rate.clone()));
    }

    /// Unavailable presence from an occupant (or its session ended): it leaves.
    pub fn leave(&mut self, from: &FullJid, presence: Option<&Element>, out: &mut Out) {
        let Some(idx) = self.occupant_index(from) else {
            // XEP-0045 §17.3.5: ignored from non-occupants.
            return;
        };
        let o = self.occupants.remove(idx);
        self.keep_rate(&o);
        if let Some(rest) = self.occupants.iter().rposition(|r| r.nick == o.nick) {
            // Another session keeps the occupant (XEP-0045 §7.2.2): only the leaving one
            // is told it left; the others see the occupant as its remaining session is.
            let item = Item {
                affiliation: Some(self.affiliation(&o.jid.to_bare())),
                role: Some(Role::None),
                ..Item::default()
            };
            let gone = Self::presence(
                &o.room_jid,
                &o.occupant_id,
                true,
                &[],
                UserX {
                    items: vec![Item {
                        jid: Some(Jid::from(o.jid.clone())),
                        ..item
                    }],
                    status: vec![status::SELF],
                    ..UserX::default()
                },
                None,
            );
            out.deliver.push((Arc::new(gone), o.jid.clone()));
            out.joined.push((o.jid, false));
            let r = &self.occupants[rest];
            self.broadcast_about(out, r, false, &r.payload, self.item_for(r), &[], &[], None);
            return;
        }
        // Only the exit message is passed on.
        let payload: Vec<Element> = presence
            .map(|p| {
                p.elements()
                    .filter(|c| c.is("status", ns::CLIENT))
                    .take(1)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let item = Item {
            affiliation: Some(self.affiliation(&o.jid.to_bare())),
            role: Some(Role::None),
            ..Item::default()
        };
        self.broadcast_about(out, &o, true, &payload, item, &[], &[], None);
        out.joined.push((o.jid, false));
    }

    /// XEP-0045 §7.4 and §8.1: a groupchat message or a subject change.
    pub fn groupchat(
        &mut self,
        lim: &Limits,
        from: &FullJid,
        msg: &Element,
        now: i64,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let Some(idx) = self.occupant_index(from) else {
            return Err(err(
                StanzaErrorCondition::NotAcceptable,
                "you are not in the room",
            ));
        };
        let is_subject = msg.get_child("subject", ns::CLIENT).is_some()
            && msg.get_child("body", ns::CLIENT).is_none()
            && msg.get_child("thread", ns::CLIENT).is_none();
        let role = self.occupants[idx].role;
        if is_subject {
            let allowed = role == Role::Moderator
                || (self.config.change_subject && role >= Role::Participant);
            if !allowed {
                return Err(err(
                    StanzaErrorCondition::Forbidden,
                    "you may not change the subject",
                ));
            }
        } else if role < Role::Participant {
            return Err(err(StanzaErrorCondition::Forbidden, "you have no voice"));
        }
        rate_check(&self.occupants[idx], lim)?;
        let (m, sid) = self.as_sent_by(msg, idx, now);
        let o = &self.occupants[idx];
        let shared = Arc::new(m.clone());
        for r in &self.occupants {
            out.deliver.push((shared.clone(), r.jid.clone()));
        }
        // XEP-0313 §6: messages with a body, once each; subject changes are not kept.
        if !is_subject && self.config.mam && msg.get_child("body", ns::CLIENT).is_some() {
            out.archive.push(ArchiveItem {
                id: sid,
                nick: o.nick.clone(),
                jid: o.jid.to_bare(),
                el: shared.clone(),
            });
        }
        if is_subject {
            let text = msg
                .get_child("subject", ns::CLIENT)
                .map(Element::text_content)
                .unwrap_or_default();
            self.subject = Some(Subject {
                text,
                nick: Some(self.occupants[idx].nick.clone()),
                stamp: now,
            });
            out.save = self.config.persistent;
        } else if msg.get_child("body", ns::CLIENT).is_some() {
            self.push_history(lim, m, now);
        }
        Ok(())
    }

    /// XEP-0045 §7.5: a private message to one occupant, through the room.
    pub fn private_message(
        &mut self,
        lim: &Limits,
        from: &FullJid,
        to_nick: &str,
        msg: &Element,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let Some(idx) = self.occupant_index(from) else {
            return Err(err(
                StanzaErrorCondition::NotAcceptable,
                "you are not in the room",
            ));
        };
        if msg.get_attr("type") == Some("groupchat") {
            return Err(err(
                StanzaErrorCondition::BadRequest,
                "a private message is not groupchat",
            ));
        }
        let targets = self.sessions_of(to_nick);
        if targets.is_empty() {
            return Err(err(StanzaErrorCondition::ItemNotFound, "no such occupant"));
        }
        rate_check(&self.occupants[idx], lim)?;
        let mut m = msg.clone();
        m.remove_attr("to");
        m.set_attr("from", self.occupants[idx].room_jid.as_str());
        strip_claims(&mut m, &self.jid);
        m.push_child(occupant_id_el(&self.occupants[idx].occupant_id));
        if m.get_child("x", NS_USER).is_none() {
            m.push_child(Element::new("x", NS_USER));
        }
        // Every session of the addressee gets it (XEP-0045 §7.2.2).
        // To one's own nick, the sender's other sessions get the message itself: a carbon
        // as well would show it twice.
        let to_self = targets.contains(from);
        let m = Arc::new(m);
        out.deliver
            .extend(targets.into_iter().map(|j| (m.clone(), j)));
        if !to_self {
            self.copy_to_own_sessions(from, msg, out);
        }
        Ok(())
    }

    /// The sender's other sessions under its nick see what it sent privately, as a XEP-0280
    /// `<sent/>` carbon of the message as the client sent it: XEP-0045 §7.5 leaves the sync
    /// to carbons, and XEP-0280 §6.1 limits those copies to the sessions sharing the nick,
    /// which only the room knows (so the `carbons` module leaves them to it). Gajim and
    /// Conversations show such a carbon as the user's own private message in the room; a
    /// copy as the room delivers it (from the sender's occupant JID) would read as a message
    /// from oneself. From the account's bare JID, as every carbon: clients drop others.
    /// The message must be one carbons copy (not `<private/>` nor `<no-copy/>`), and only
    /// sessions that enabled carbons get it (`Out::carbons`).
    fn copy_to_own_sessions(&self, from: &FullJid, msg: &Element, out: &mut Out) {
        if !confab_server::carbons::eligible(msg) {
            return;
        }
        let Some(me) = self.occupant(from) else {
            return;
        };
        let others: Vec<FullJid> = self
            .sessions_of(&me.nick)
            .into_iter()
            .filter(|j| j != from)
            .collect();
        if others.is_empty() {
            return;
        }
        let mut original = msg.clone();
        original.set_attr("from", from.as_str());
        // XEP-0280 §6.1 allows adding the <x/>: it marks the copy as a MUC private message.
        if original.get_child("x", NS_USER).is_none() {
            original.push_child(Element::new("x", NS_USER));
        }
        let mut wrapper = Element::new("message", ns::CLIENT).attr("from", from.to_bare().as_str());
        if let Some(t) = msg.get_attr("type") {
            wrapper.set_attr("type", t);
        }
        let wrapper = Arc::new(
            wrapper.child(
                Element::new("sent", confab_server::carbons::NS)
                    .child(Element::new("forwarded", NS_FORWARD).child(original)),
            ),
        );
        out.carbons
            .extend(others.into_iter().map(|j| (wrapper.clone(), j)));
    }

    /// XEP-0045 §7.8.2: mediated invitations (and declines).
    pub fn invite(
        &mut self,
        lim: &Limits,
        from: &FullJid,
        msg: &Element,
        x: &UserX,
        now: i64,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        if let Some(d) = &x.decline {
            return self.decline(from, msg, d, out);
        }
        let Some(idx) = self.occupant_index(from) else {
            return Err(err(
                StanzaErrorCondition::NotAcceptable,
                "you are not in the room",
            ));
        };
        if x.invites.len() > MAX_INVITES_PER_MESSAGE {
            return Err(err(
                StanzaErrorCondition::BadRequest,
                "too many invitations at once",
            ));
        }
        let mut invitees = Vec::new();
        for i in &x.invites {
            match &i.to {
                Some(to) => invitees.push((to.clone(), i.reason.clone())),
                None => {
                    return Err(err(
                        StanzaErrorCondition::BadRequest,
                        "an invitation needs 'to'",
                    ))
                }
            }
        }
        let aff = self.affiliation(&from.to_bare());
        if self.config.members_only
            && aff < Affiliation::Admin
            && !(self.config.allow_invites && aff >= Affiliation::Member)
        {
            return Err(err(
                StanzaErrorCondition::Forbidden,
                "only admins may invite",
            ));
        }
        let new_members = invitees
            .iter()
            .filter(|(to, _)| self.affiliation(&to.to_bare()) == Affiliation::None)
            .count();
        if self.config.members_only && self.affiliations.len() + new_members > lim.max_affiliations
        {
            return Err(err(
                StanzaErrorCondition::ResourceConstraint,
                "the member list is full",
            ));
        }
        rate_check(&self.occupants[idx], lim)?;
        let inviter = from.to_bare();
        for (to, reason) in invitees {
            let mut ux = UserX {
                invites: vec![Invitation {
                    to: None,
                    from: Some(Jid::from(inviter.clone())),
                    reason,
                }],
                ..UserX::default()
            };
            ux.password = self.config.password.clone();
            let body = format!("{inviter} invites you to the room {}", self.jid);
            let m = Element::new("message", ns::CLIENT)
                .attr("from", self.jid.as_str())
                .attr("to", to.as_str())
                .attr(
                    "id",
                    msg.get_attr("id")
                        .map(str::to_string)
                        .unwrap_or_else(|| new_id(now)),
                )
                .child(ux.into())
                .child(Element::new("body", ns::CLIENT).text(body));
            out.route.push(m);
            let bare = to.to_bare();
            if self.config.members_only && self.affiliation(&bare) == Affiliation::None {
                self.affiliations.insert(bare.clone(), Affiliation::Member);
                out.save = self.config.persistent;
            }
            if self.invites.len() >= MAX_PENDING_INVITES {
                self.invites.pop_front();
            }
            self.invites.push_back((bare, Jid::from(from.clone())));
        }
        Ok(())
    }

    fn decline(
        &mut self,
        from: &FullJid,
        msg: &Element,
        d: &Invitation,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let Some(to) = &d.to else {
            return Err(err(
                StanzaErrorCondition::BadRequest,
                "a decline needs 'to'",
            ));
        };
        let me = from.to_bare();
        // Passed on only to someone who invited this user: the room is no relay for
        // messages to arbitrary addresses.
        let Some(pos) = self
            .invites
            .iter()
            .position(|(invitee, inviter)| *invitee == me && inviter.to_bare() == to.to_bare())
        else {
            return Err(err(
                StanzaErrorCondition::NotAcceptable,
                "no such invitation",
            ));
        };
        let Some((_, inviter)) = self.invites.remove(pos) else {
            return Ok(());
        };
        let ux = UserX {
            decline: Some(Invitation {
                to: None,
                from: Some(Jid::from(me)),
                reason: d.reason.clone(),
            }),
            ..UserX::default()
        };
        let mut m = Element::new("message", ns::CLIENT)
            .attr("from", self.jid.as_str())
            .attr("to", inviter.as_str())
            .child(ux.into());
        if let Some(id) = msg.get_attr("id") {
            m.set_attr("id", id);
        }
        out.route.push(m);
        Ok(())
    }

    /// XEP-0045 §8.5, §9.5, §9.8, §10.5, §10.8: a role or affiliation list.
    pub fn admin_get(&self, from: &FullJid, q: &AdminQuery) -> Result<Element, StanzaError> {
        let first = &q.items[0];
        let aff = self.affiliation(&from.to_bare());
        let mut items = Vec::new();
        match (first.role, first.affiliation) {
            (Some(role), None) => {
                let me = self.occupant(from);
                if me.map(|o| o.role) != Some(Role::Moderator) {
                    return Err(err(StanzaErrorCondition::Forbidden, "moderators only"));
                }
                if role == Role::None {
                    return Err(err(
                        StanzaErrorCondition::BadRequest,
                        "no list of role none",
                    ));
                }
                for o in self
                    .distinct_occupants()
                    .into_iter()
                    .filter(|o| o.role == role)
                {
                    items.push(Item {
                        nick: Some(o.nick.clone()),
                        jid: Some(Jid::from(o.jid.clone())),
                        ..self.item_for(o)
                    });
                }
            }
            (None, Some(want)) => {
                let allowed = match want {
                    Affiliation::None => {
                        return Err(err(
                            StanzaErrorCondition::BadRequest,
                            "no list of affiliation none",
                        ))
                    }
                    Affiliation::Outcast => aff >= Affiliation::Admin,
                    Affiliation::Member => {
                        aff >= Affiliation::Admin
                            || (aff >= Affiliation::Member && self.config.whois_anyone)
                    }
                    Affiliation::Admin | Affiliation::Owner => {
                        aff == Affiliation::Owner
                            || (aff >= Affiliation::Member && self.config.whois_anyone)
                    }
                };
                if !allowed {
                    return Err(err(
                        StanzaErrorCondition::Forbidden,
                        "not allowed to see that list",
                    ));
                }
                for (j, a) in self.affiliations.iter().filter(|(_, a)| **a == want) {
                    let nick = (want != Affiliation::Outcast)
                        .then(|| self.occupants.iter().find(|o| o.jid.to_bare() == *j))
                        .flatten()
                        .map(|o| o.nick.clone());
                    items.push(Item {
                        affiliation: Some(*a),
                        jid: Some(Jid::from(j.clone())),
                        nick,
                        ..Item::default()
                    });
                }
            }
            _ => {
                return Err(err(
                    StanzaErrorCondition::BadRequest,
                    "ask for one role or one affiliation",
                ))
            }
        }
        Ok(AdminQuery { items }.into())
    }

    /// XEP-0045 §8 and §9: kick, voice, moderator, and affiliation changes. Every item is
    /// checked before anything changes.
    pub fn admin_set(
        &mut self,
        lim: &Limits,
        from: &FullJid,
        q: &AdminQuery,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        let actor_bare = from.to_bare();
        let actor_aff = self.affiliation(&actor_bare);
        let actor_occ = self.occupant(from);
        let actor = Actor {
            jid: None,
            nick: actor_occ.map(|o| o.nick.clone()),
        };
        enum Change {
            Role(String, Role, Option<String>),
            Aff(BareJid, Affiliation, Option<String>),
        }
        let mut changes = Vec::new();
        let mut affs = self.affiliations.clone();
        for item in &q.items {
            match (item.role, item.affiliation) {
                (Some(_), Some(_)) => {
                    return Err(err(
                        StanzaErrorCondition::BadRequest,
                        "role or affiliation, not both",
                    ))
                }
                (None, None) => {
                    return Err(err(
                        StanzaErrorCondition::BadRequest,
                        "an item needs a role or an affiliation",
                    ))
                }
                (Some(role), None) => {
                    if actor_occ.map(|o| o.role) != Some(Role::Moderator) {
                        return Err(err(StanzaErrorCondition::Forbidden, "moderators only"));
                    }
                    let Some(nick) = &item.nick else {
                        return Err(err(
                            StanzaErrorCondition::BadRequest,
                            "a role change needs a nick",
                        ));
                    };
                    let Some(t) = self.by_nick(nick) else {
                        return Err(err(StanzaErrorCondition::ItemNotFound, "no such occupant"));
                    };
                    if changes
                        .iter()
                        .any(|c| matches!(c, Change::Role(n, _, _) if n == nick))
                    {
                        return Err(err(
                            StanzaErrorCondition::BadRequest,
                            "one change per occupant",
                        ));
                    }
                    let target = &self.occupants[t];
                    let target_aff = self.affiliation(&target.jid.to_bare());
                    match role {
                        Role::None => {
                            if actor_occ.map(|o| o.nick.as_str()) == Some(target.nick.as_str()) {
                                return Err(err(
                                    StanzaErrorCondition::Conflict,
                                    "you cannot kick yourself",
                                ));
                            }
                            if target_aff > actor_aff {
                                return Err(err(
                                    StanzaErrorCondition::NotAllowed,
                                    "cannot kick a higher affiliation",
                                ));
                            }
                        }
                        Role::Visitor => {
                            if target_aff >= Affiliation::Admin || target_aff >= actor_aff {
                                return Err(err(
                                    StanzaErrorCondition::NotAllowed,
                                    "cannot revoke that voice",
                                ));
                            }
                            if target.role == Role::Moderator && actor_aff < Affiliation::Admin {
                                return Err(err(StanzaErrorCondition::Forbidden, "admins only"));
                            }
                        }
                        Role::Participant => {
                            if target.role == Role::Moderator {
                                if actor_aff < Affiliation::Admin {
                                    return Err(err(
                                        StanzaErrorCondition::Forbidden,
                                        "admins only",
                                    ));
                                }
                                if target_aff > actor_aff {
                                    return Err(err(
                                        StanzaErrorCondition::NotAllowed,
                                        "cannot revoke a higher affiliation",
                                    ));
                                }
                            }
                        }
                        Role::Moderator => {
                            if actor_aff < Affiliation::Admin {
                                return Err(err(StanzaErrorCondition::Forbidden, "admins only"));
                            }
                        }
                    }
                    changes.push(Change::Role(target.nick.clone(), role, item.reason.clone()));
                }
                (None, Some(new)) => {
                    let target = match (&item.jid, &item.nick) {
                        (Some(j), _) => j.to_bare(),
                        (None, Some(n)) => match self.by_nick(n) {
                            Some(i) => self.occupants[i].jid.to_bare(),
                            None => {
                                return Err(err(
                                    StanzaErrorCondition::ItemNotFound,
                                    "no such occupant",
                                ))
                            }
                        },
                        (None, None) => {
                            return Err(err(
                                StanzaErrorCondition::BadRequest,
                                "an affiliation change needs a jid",
                            ))
                        }
                    };
                    if actor_aff < Affiliation::Admin {
                        return Err(err(StanzaErrorCondition::Forbidden, "admins only"));
                    }
                    let cur = affs.get(&target).copied().unwrap_or(Affiliation::None);
                    if new >= Affiliation::Admin && actor_aff < Affiliation::Owner {
                        return Err(err(StanzaErrorCondition::Forbidden, "owners only"));
                    }
                    if cur >= Affiliation::Admin && actor_aff < Affiliation::Owner {
                        return Err(err(
                            StanzaErrorCondition::NotAllowed,
                            "cannot change a higher affiliation",
                        ));
                    }
                    if new == Affiliation::Outcast && target == actor_bare {
                        return Err(err(
                            StanzaErrorCondition::Conflict,
                            "you cannot ban yourself",
                        ));
                    }
                    if new == Affiliation::None {
                        affs.remove(&target);
                    } else {
                        affs.insert(target.clone(), new);
                    }
                    changes.push(Change::Aff(target, new, item.reason.clone()));
                }
            }
        }
        if !affs.values().any(|a| *a == Affiliation::Owner) {
            return Err(err(
                StanzaErrorCondition::Conflict,
                "the room needs an owner",
            ));
        }
        if affs.len() > lim.max_affiliations && affs.len() > self.affiliations.len() {
            return Err(err(
                StanzaErrorCondition::ResourceConstraint,
                "too many affiliations",
            ));
        }
        // Everything checked: apply.
        let aff_changed = affs != self.affiliations;
        self.affiliations = affs;
        if aff_changed {
            out.save = self.config.persistent;
        }
        for c in changes {
            match c {
                Change::Role(nick, Role::None, reason) => {
                    self.remove_occupant(
                        &nick,
                        &[status::KICKED],
                        Some(actor.clone()),
                        reason,
                        out,
                    );
                }
                Change::Role(nick, role, reason) => {
                    // An earlier change of this request may have removed the occupant.
                    let Some(t) = self.occupants.iter().rposition(|o| o.nick == nick) else {
                        continue;
                    };
                    if self.occupants[t].role == role {
                        continue;
                    }
                    for o in self.occupants.iter_mut().filter(|o| o.nick == nick) {
                        o.role = role;
                    }
                    let o = &self.occupants[t];
                    let item = Item {
                        nick: Some(o.nick.clone()),
                        reason,
                        ..self.item_for(o)
                    };
                    self.broadcast_about(out, o, false, &o.payload, item, &[], &[], None);
                }
                Change::Aff(target, new, reason) => {
                    self.apply_affiliation(&target, new, &actor, reason, out);
                }
            }
        }
        Ok(())
    }

    /// Presence for the occupants of a user whose affiliation changed (already recorded).
    fn apply_affiliation(
        &mut self,
        target: &BareJid,
        new: Affiliation,
        actor: &Actor,
        reason: Option<String>,
        out: &mut Out,
    ) {
        let nicks: Vec<String> = self
            .distinct_occupants()
            .into_iter()
            .filter(|o| o.jid.to_bare() == *target)
            .map(|o| o.nick.clone())
            .collect();
        for nick in nicks {
            let Some(i) = self.occupants.iter().rposition(|o| o.nick == nick) else {
                continue;
            };
            if new == Affiliation::Outcast {
                self.remove_occupant(
                    &nick,
                    &[status::BANNED],
                    Some(actor.clone()),
                    reason.clone(),
                    out,
                );
            } else if self.config.members_only && new < Affiliation::Member {
                self.remove_occupant(
                    &nick,
                    &[status::AFFILIATION_CHANGED],
                    Some(actor.clone()),
                    reason.clone(),
                    out,
                );
            } else {
                let o = &self.occupants[i];
                let role = if new >= Affiliation::Admin {
                    Role::Moderator
                } else if o.role == Role::Moderator
                    || (new == Affiliation::Member && o.role == Role::Visitor)
                {
                    // Lost admin or owner (or became a member of a moderated room): the
                    // role the new affiliation gives.
                    self.default_role(new)
                } else {
                    o.role
                };
                for o in self.occupants.iter_mut().filter(|o| o.nick == nick) {
                    o.role = role;
                }
                let o = &self.occupants[i];
                let item = Item {
                    reason: reason.clone(),
                    ..self.item_for(o)
                };
                self.broadcast_about(out, o, false, &o.payload, item, &[], &[], None);
            }
        }
    }

    /// XEP-0425: only moderators moderate.
    pub fn check_moderator(&self, from: &FullJid) -> Result<(), StanzaError> {
        match self.occupant(from) {
            Some(o) if o.role == Role::Moderator => Ok(()),
            _ => Err(err(StanzaErrorCondition::Forbidden, "moderators only")),
        }
    }

    /// Whether the message with this stanza-id is in the history sent on join.
    pub fn in_history(&self, sid: &str) -> bool {
        self.history
            .iter()
            .any(|h| stanza_id(&h.el, &self.jid) == Some(sid))
    }

    /// XEP-0425: a moderator retracts the message `sid` (found by the caller in the history
    /// or the archive). It leaves the history, every occupant gets the retraction, which is
    /// archived too (XEP-0424 §5). Returns the `<retracted/>` for the archived message's
    /// tombstone.
    pub fn moderate(
        &mut self,
        from: &FullJid,
        sid: &str,
        reason: Option<&str>,
        now: i64,
        out: &mut Out,
    ) -> Result<Element, StanzaError> {
        self.check_moderator(from)?;
        let Some(m) = self.occupant(from) else {
            return Err(err(StanzaErrorCondition::Forbidden, "moderators only"));
        };
        let moderated = Element::new("moderated", NS_MODERATE)
            .attr("by", m.room_jid.as_str())
            .child(occupant_id_el(&m.occupant_id));
        let (nick, real) = (m.nick.clone(), m.jid.to_bare());
        let reason = reason.map(|r| Element::new("reason", NS_RETRACT).text(r));
        let mut retract = Element::new("retract", NS_RETRACT)
            .attr("id", sid)
            .child(moderated.clone());
        let mut retracted = Element::new("retracted", NS_RETRACT)
            .attr("stamp", format_datetime(now))
            .child(moderated);
        if let Some(r) = reason {
            retract.push_child(r.clone());
            retracted.push_child(r);
        }
        let id = new_id(now);
        retracted.set_attr("id", id.as_str());
        let own_sid = new_stanza_id();
        let notice = Element::new("message", ns::CLIENT)
            .attr("from", self.jid.as_str())
            .attr("type", "groupchat")
            .attr("id", id)
            .child(retract)
            .child(
                Element::new("stanza-id", NS_SID)
                    .attr("id", own_sid.as_str())
                    .attr("by", self.jid.as_str()),
            );
        let notice = Arc::new(notice);
        self.forget_history(sid);
        for o in &self.occupants {
            out.deliver.push((notice.clone(), o.jid.clone()));
        }
        if self.config.mam {
            out.archive.push(ArchiveItem {
                id: own_sid,
                nick,
                jid: real,
                el: notice,
            });
        }
        Ok(retracted)
    }

    /// A retracted message is no longer sent on join (XEP-0424 §6).
    fn forget_history(&mut self, sid: &str) {
        let before = self.history.len();
        let room = self.jid.clone();
        self.history
            .retain(|h| stanza_id(&h.el, &room) != Some(sid));
        if self.history.len() != before {
            self.history_bytes = self.history.iter().map(|h| h.chars).sum();
        }
    }

    /// XEP-0424 in a room: an occupant retracts a message it sent, `sid` being the room's
    /// stanza-id for it. `archived_by` is the real bare JID the archive has for the message
    /// (`None`: not archived, then the history must have it). Only the author (the same
    /// real user, hence the same occupant id) may retract it; the retraction goes to every
    /// occupant like any groupchat message and is archived, the message leaves the history.
    /// Returns the `<retracted/>` for the archived message's tombstone.
    #[allow(clippy::too_many_arguments)]
    pub fn retract_own(
        &mut self,
        lim: &Limits,
        from: &FullJid,
        msg: &Element,
        sid: &str,
        archived_by: Option<&str>,
        now: i64,
        out: &mut Out,
    ) -> Result<Element, StanzaError> {
        let Some(idx) = self.occupant_index(from) else {
            return Err(err(
                StanzaErrorCondition::NotAcceptable,
                "you are not in the room",
            ));
        };
        if self.occupants[idx].role < Role::Participant {
            return Err(err(StanzaErrorCondition::Forbidden, "you have no voice"));
        }
        let author = match archived_by {
            Some(jid) => jid == from.to_bare().as_str(),
            None => {
                let mine = &self.occupants[idx].occupant_id;
                let room = &self.jid;
                let Some(h) = self
                    .history
                    .iter()
                    .find(|h| stanza_id(&h.el, room) == Some(sid))
                else {
                    return Err(err(StanzaErrorCondition::ItemNotFound, "no such message"));
                };
                h.el.get_child("occupant-id", NS_OCCUPANT_ID)
                    .and_then(|o| o.get_attr("id"))
                    == Some(mine.as_str())
            }
        };
        if !author {
            return Err(err(
                StanzaErrorCondition::Forbidden,
                "only its author may retract a message",
            ));
        }
        rate_check(&self.occupants[idx], lim)?;
        let (m, own_sid) = self.as_sent_by(msg, idx, now);
        let o = &self.occupants[idx];
        let retracted = Element::new("retracted", NS_RETRACT)
            .attr("id", m.get_attr("id").unwrap_or_default())
            .attr("stamp", format_datetime(now));
        let (nick, real) = (o.nick.clone(), o.jid.to_bare());
        let shared = Arc::new(m);
        for r in &self.occupants {
            out.deliver.push((shared.clone(), r.jid.clone()));
        }
        // XEP-0424 §6: the retraction is archived, whatever its body.
        if self.config.mam {
            out.archive.push(ArchiveItem {
                id: own_sid,
                nick,
                jid: real,
                el: shared,
            });
        }
        self.forget_history(sid);
        Ok(retracted)
    }

    /// A groupchat message as the room passes it on from occupant `idx`: from their room
    /// JID, with an id, the sender's own claims stripped, and the room's stanza-id and the
    /// occupant id (XEP-0359, XEP-0421). Returns it with the stanza-id.
    fn as_sent_by(&self, msg: &Element, idx: usize, now: i64) -> (Element, String) {
        let o = &self.occupants[idx];
        let mut m = msg.clone();
        m.remove_attr("to");
        m.set_attr("from", o.room_jid.as_str());
        if m.get_attr("id").is_none() {
            m.set_attr("id", new_id(now));
        }
        strip_claims(&mut m, &self.jid);
        let sid = new_stanza_id();
        m.push_child(
            Element::new("stanza-id", NS_SID)
                .attr("id", sid.as_str())
                .attr("by", self.jid.as_str()),
        );
        m.push_child(occupant_id_el(&o.occupant_id));
        (m, sid)
    }

    /// XEP-0424 §5: what stays of a retracted message in the archive: who sent it and its
    /// ids, the content replaced by `<retracted/>`.
    pub fn tombstone(original: &Element, retracted: Element) -> Element {
        let mut t = Element::new("message", ns::CLIENT);
        for a in ["from", "id", "type"] {
            if let Some(v) = original.get_attr(a) {
                t.set_attr(a, v);
            }
        }
        t.push_child(retracted);
        for c in original.elements() {
            if c.is("stanza-id", NS_SID) || c.is("occupant-id", NS_OCCUPANT_ID) {
                t.push_child(c.clone());
            }
        }
        t
    }

    /// XEP-0486: an owner sets the room's vCard, or removes it with an empty one. Every
    /// occupant is told by presence from the room with the new hash (an empty `<photo/>`
    /// once removed) and by status 104, as for a configuration change.
    pub fn set_vcard(
        &mut self,
        lim: &Limits,
        from: &FullJid,
        card: &Element,
        now: i64,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err(err(
                StanzaErrorCondition::Forbidden,
                "only owners may set the room's avatar",
            ));
        }
        self.vcard = crate::avatar::check(card, lim.max_avatar_bytes)?;
        self.vcard_unread = None;
        out.save = self.config.persistent;
        let hash = self.vcard.as_ref().and_then(RoomVcard::hash);
        let p = Arc::new(crate::avatar::update_presence(&self.jid, hash));
        // XEP-0486 §3.2: the owner's request is acknowledged, then the room tells everyone.
        out.reply_at = Some(out.deliver.len());
        for o in &self.occupants {
            out.deliver.push((p.clone(), o.jid.clone()));
        }
        self.notice_all(out, &[status::CONFIG_CHANGED], now);
        Ok(())
    }

    /// XEP-0045 §10.2: the configuration form (owners only).
    pub fn owner_get(&self, from: &FullJid, max_occupants: usize) -> Result<Element, StanzaError> {
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err(err(StanzaErrorCondition::Forbidden, "owners only"));
        }
        Ok(crate::forms::config_query(self, max_occupants))
    }

    /// XEP-0045 §10.1–10.2: an instant room, a submitted configuration, or a cancel.
    pub fn configure(
        &mut self,
        lim: &Limits,
        from: &FullJid,
        form: &confab_proto::payloads::data_form::DataForm,
        now: i64,
        out: &mut Out,
    ) -> Result<(), StanzaError> {
        use confab_proto::payloads::data_form::FormType;
        if self.affiliation(&from.to_bare()) != Affiliation::Owner {
            return Err(err(StanzaErrorCondition::Forbidden, "owners only"));
        }
        match form.type_ {
            FormType::Cancel => {
                if self.locked {
                    // XEP-0045 §10.1.1: a cancelled initial configuration destroys the room.
                    self.destroy(&Destroy::default(), out);
                }
                return Ok(());
            }
            FormType::Submit => {}
            _ => {
                return Err(err(
                    StanzaErrorCondition::BadRequest,
                    "submit or cancel a form",
                ))
            }
        }
        let new = crate::forms::parse_config(&self.config, form, lim.max_occupants)?;
        let was_locked = self.locked;
        let old = std::mem::replace(&mut self.config, new);
        self.locked = false;
        if !was_locked {
            let mut codes = Vec::new();
            if old.whois_anyone != self.config.whois_anyone {
                codes.push(if self.config.whois_anyone {
                    status::NOW_NON_ANONYMOUS
                } else {
                    status::NOW_SEMI_ANONYMOUS
                });
            }
            if old != self.config {
                codes.push(status::CONFIG_CHANGED);
            }
            if !codes.is_empty() {
                self.notice_all(out, &codes, now);
            }
        }
        if self.config.members_only && !old.members_only {
            let outsiders: Vec<String> = self
                .distinct_occupants()
                .into_iter()
                .filter(|o| self.affiliation(&o.jid.to_bare()) < Affiliation::Member)
                .map(|o| o.nick.clone())
                .collect();
            for nick in outsiders {
                self.remove_occupant(&nick, &[status::MEMBERS_ONLY], None, None, out);
            }
        }
        if self.config.persistent {
            out.save = true;
        } else if old.persistent {
            out.unstore = true;
        }
        Ok(())
    }

    /// XEP-0045 §10.9: everyone is told (once each) and the room is gone.
    pub fn destroy(&mut self, d: &Destroy, out: &mut Out) {
        let notice = d.to_element(NS_USER);
        for o in std::mem::take(&mut self.occupants) {
            let p = Self::presence(
                &o.room_jid,
                &o.occupant_id,
                true,
                &[],
                UserX {
                    items: vec![Item {
                        affiliation: Some(Affiliation::None),
                        role: Some(Role::None),
                        ..Item::default()
                    }],
                    ..UserX::default()
                },
                Some(notice.clone()),
            );
            out.deliver.push((Arc::new(p), o.jid.clone()));
            out.joined.push((o.jid, false));
        }
        self.gone = true;
        out.unstore = true;
    }

    /// The service is shutting down: each occupant learns it was removed (status 332).
    pub fn shutdown(&mut self, out: &mut Out) {
        for o in std::mem::take(&mut self.occupants) {
            let item = Item {
                affiliation: Some(self.affiliation(&o.jid.to_bare())),
                role: Some(Role::None),
                ..Item::default()
            };
            let p = Self::presence(
                &o.room_jid,
                &o.occupant_id,
                true,
                &[],
                UserX {
                    items: vec![item],
                    status: vec![status::SELF, status::SHUTDOWN],
                    ..UserX::default()
                },
                None,
            );
            out.deliver.push((Arc::new(p), o.jid.clone()));
            out.joined.push((o.jid, false));
        }
    }
}

fn rate_check(o: &Occupant, lim: &Limits) -> Result<(), StanzaError> {
    if o.take_token(lim) {
        Ok(())
    } else {
        let mut e = err(
            StanzaErrorCondition::PolicyViolation,
            "too many messages; slow down",
        );
        e.type_ = StanzaErrorType::Wait;
        Err(e)
    }
}
