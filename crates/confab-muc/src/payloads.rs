//! Typed XEP-0045 payloads: `muc` (joining), `muc#user` (what the room says about
//! occupants, invitations, destruction), `muc#admin` (role and affiliation items) and
//! `muc#owner` (configuration form, destruction). Parsing never panics and refuses what the
//! schema does not allow with a `StanzaError` naming the condition to answer with.

use confab_proto::error::{StanzaError, StanzaErrorCondition};
use confab_proto::jid::Jid;
use confab_proto::payloads::data_form::DataForm;
use confab_proto::xml::Element;
use serde::{Deserialize, Serialize};

pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const NS_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const NS_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
pub const NS_STABLE_ID: &str = "http://jabber.org/protocol/muc#stable_id";
/// XEP-0359 unique and stable stanza ids.
pub const NS_SID: &str = "urn:xmpp:sid:0";
/// XEP-0421 anonymous unique occupant identifiers.
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// XEP-0410 MUC self-ping: the room answers a ping to one's own occupant JID.
pub const NS_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
/// XEP-0424 message retraction and XEP-0425 moderation.
pub const NS_RETRACT: &str = "urn:xmpp:message-retract:1";
pub const NS_MODERATE: &str = "urn:xmpp:message-moderate:1";

/// Status codes (XEP-0045 §15) the service sends.
pub mod status {
    pub const NON_ANONYMOUS: u16 = 100;
    pub const CONFIG_CHANGED: u16 = 104;
    pub const SELF: u16 = 110;
    pub const NOW_NON_ANONYMOUS: u16 = 172;
    pub const NOW_SEMI_ANONYMOUS: u16 = 173;
    pub const CREATED: u16 = 201;
    pub const NICK_MODIFIED: u16 = 210;
    pub const BANNED: u16 = 301;
    pub const NICK_CHANGED: u16 = 303;
    pub const KICKED: u16 = 307;
    pub const AFFILIATION_CHANGED: u16 = 321;
    pub const MEMBERS_ONLY: u16 = 322;
    pub const SHUTDOWN: u16 = 332;
    pub const TECHNICAL: u16 = 333;
}

fn bad(text: &str) -> StanzaError {
    StanzaError::with_text(StanzaErrorCondition::BadRequest, text)
}

fn child_text(el: &Element, name: &str, ns: &str) -> Option<String> {
    el.get_child(name, ns).map(Element::text_content)
}

fn text_el(name: &str, ns: &str, text: &str) -> Element {
    let e = Element::new(name, confab_proto::xml::namespace(ns));
    if text.is_empty() {
        e
    } else {
        e.text(text)
    }
}

fn jid_attr(el: &Element, attr: &str) -> Result<Option<Jid>, StanzaError> {
    match el.get_attr(attr) {
        None => Ok(None),
        Some(s) => Jid::new(s).map(Some).map_err(|_| {
            StanzaError::with_text(
                StanzaErrorCondition::JidMalformed,
                format!("invalid {attr}"),
            )
        }),
    }
}

/// An occupant's role in the room (XEP-0045 §5.1), lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    None,
    Visitor,
    Participant,
    Moderator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        [
            Role::None,
            Role::Visitor,
            Role::Participant,
            Role::Moderator,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A user's long-lived affiliation with the room (XEP-0045 §5.2), lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Affiliation {
    Outcast,
    None,
    Member,
    Admin,
    Owner,
}

impl Affiliation {
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    pub fn from_name(s: &str) -> Option<Affiliation> {
        [
            Affiliation::Outcast,
            Affiliation::None,
            Affiliation::Member,
            Affiliation::Admin,
            Affiliation::Owner,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// `<history/>` limits of a join (XEP-0045 §7.2.15).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    pub maxchars: Option<usize>,
    pub maxstanzas: Option<usize>,
    pub seconds: Option<u64>,
    /// Unix seconds.
    pub since: Option<i64>,
}

/// `<x xmlns='http://jabber.org/protocol/muc'/>` of a join presence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Join {
    pub password: Option<String>,
    pub history: Option<History>,
}

impl TryFrom<&Element> for Join {
    type Error = StanzaError;
    fn try_from(el: &Element) -> Result<Self, StanzaError> {
        if !el.is("x", NS_MUC) {
            return Err(bad("expected <x xmlns='http://jabber.org/protocol/muc'/>"));
        }
        let history = match el.get_child("history", NS_MUC) {
            None => None,
            Some(h) => {
                let since = match h.get_attr("since") {
                    None => None,
                    Some(s) => Some(
                        confab_proto::datetime::parse_datetime(s)
                            .ok_or_else(|| bad("invalid history 'since'"))?,
                    ),
                };
                Some(History {
                    maxchars: big_uint(h, "maxchars")?,
                    maxstanzas: big_uint(h, "maxstanzas")?,
                    seconds: big_uint(h, "seconds")?.map(|s| s as u64),
                    since,
                })
            }
        };
        Ok(Join {
            password: child_text(el, "password", NS_MUC),
            history,
        })
    }
}

/// A non-negative integer attribute; values past `usize` saturate (a client asking for
/// "everything" gets what the room keeps).
fn big_uint(el: &Element, attr: &str) -> Result<Option<usize>, StanzaError> {
    match el.get_attr(attr) {
        None => Ok(None),
        Some(s) => {
            let t = s.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("invalid history limit"));
            }
            Ok(Some(t.parse().unwrap_or(usize::MAX)))
        }
    }
}

impl From<Join> for Element {
    fn from(j: Join) -> Element {
        let mut x = Element::new("x", NS_MUC);
        if let Some(h) = j.history {
            let mut he = Element::new("history", NS_MUC);
            if let Some(v) = h.maxchars {
                he.set_attr("maxchars", v.to_string());
            }
            if let Some(v) = h.maxstanzas {
                he.set_attr("maxstanzas", v.to_string());
            }
            if let Some(v) = h.seconds {
                he.set_attr("seconds", v.to_string());
            }
            if let Some(v) = h.since {
                he.set_attr("since", confab_proto::datetime::format_datetime(v));
            }
            x.push_child(he);
        }
        if let Some(p) = j.password {
            x.push_child(text_el("password", NS_MUC, &p));
        }
        x
    }
}

/// `<actor/>` of an item.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actor {
    pub jid: Option<Jid>,
    pub nick: Option<String>,
}

/// An `<item/>` in `muc#user` or `muc#admin` (same shape in both).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Item {
    pub affiliation: Option<Affiliation>,
    pub role: Option<Role>,
    pub jid: Option<Jid>,
    pub nick: Option<String>,
    pub actor: Option<Actor>,
    pub reason: Option<String>,
}

impl Item {
    pub fn parse(el: &Element, ns: &str) -> Result<Item, StanzaError> {
        if !el.is("item", ns) {
            return Err(bad("expected <item/>"));
        }
        let affiliation = match el.get_attr("affiliation") {
            None => None,
            Some(a) => Some(Affiliation::from_name(a).ok_or_else(|| bad("unknown affiliation"))?),
        };
        let role = match el.get_attr("role") {
            None => None,
            Some(r) => Some(Role::from_name(r).ok_or_else(|| bad("unknown role"))?),
        };
        let actor = match el.get_child("actor", ns) {
            None => None,
            Some(a) => Some(Actor {
                jid: jid_attr(a, "jid")?,
                nick: a.get_attr("nick").map(str::to_string),
            }),
        };
        Ok(Item {
            affiliation,
            role,
            jid: jid_attr(el, "jid")?,
            nick: el.get_attr("nick").map(str::to_string),
            actor,
            reason: child_text(el, "reason", ns),
        })
    }

    pub fn to_element(&self, ns: &str) -> Element {
        let ns_ = confab_proto::xml::namespace(ns);
        let mut e = Element::new("item", ns_.clone());
        if let Some(a) = self.affiliation {
            e.set_attr("affiliation", a.as_str());
        }
        if let Some(j) = &self.jid {
            e.set_attr("jid", j.as_str());
        }
        if let Some(n) = &self.nick {
            e.set_attr("nick", n.clone());
        }
        if let Some(r) = self.role {
            e.set_attr("role", r.as_str());
        }
        if let Some(a) = &self.actor {
            let mut ae = Element::new("actor", ns_);
            if let Some(j) = &a.jid {
                ae.set_attr("jid", j.as_str());
            }
            if let Some(n) = &a.nick {
                ae.set_attr("nick", n.clone());
            }
            e.push_child(ae);
        }
        if let Some(r) = &self.reason {
            e.push_child(text_el("reason", ns, r));
        }
        e
    }
}

/// `<invite/>` or `<decline/>` of a mediated invitation: `to` when sent to the room,
/// `from` when the room passes it on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invitation {
    pub to: Option<Jid>,
    pub from: Option<Jid>,
    pub reason: Option<String>,
}

impl Invitation {
    fn parse(el: &Element) -> Result<Invitation, StanzaError> {
        Ok(Invitation {
            to: jid_attr(el, "to")?,
            from: jid_attr(el, "from")?,
            reason: child_text(el, "reason", NS_USER),
        })
    }

    pub fn to_element(&self, name: &str) -> Element {
        let mut e = Element::new(name.to_string(), NS_USER);
        if let Some(j) = &self.to {
            e.set_attr("to", j.as_str());
        }
        if let Some(j) = &self.from {
            e.set_attr("from", j.as_str());
        }
        if let Some(r) = &self.reason {
            e.push_child(text_el("reason", NS_USER, r));
        }
        e
    }
}

/// `<destroy/>` (in `muc#owner` requests and `muc#user` notices).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Destroy {
    /// The alternate venue.
    pub jid: Option<Jid>,
    pub reason: Option<String>,
    pub password: Option<String>,
}

impl Destroy {
    pub fn parse(el: &Element, ns: &str) -> Result<Destroy, StanzaError> {
        Ok(Destroy {
            jid: jid_attr(el, "jid")?,
            reason: child_text(el, "reason", ns),
            password: child_text(el, "password", ns),
        })
    }

    pub fn to_element(&self, ns: &str) -> Element {
        let mut e = Element::new("destroy", confab_proto::xml::namespace(ns));
        if let Some(j) = &self.jid {
            e.set_attr("jid", j.as_str());
        }
        if let Some(r) = &self.reason {
            e.push_child(text_el("reason", ns, r));
        }
        if let Some(p) = &self.password {
            e.push_child(text_el("password", ns, p));
        }
        e
    }
}

/// `<x xmlns='http://jabber.org/protocol/muc#user'/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserX {
    pub items: Vec<Item>,
    pub status: Vec<u16>,
    pub invites: Vec<Invitation>,
    pub decline: Option<Invitation>,
    pub destroy: Option<Destroy>,
    pub password: Option<String>,
}

impl TryFrom<&Element> for UserX {
    type Error = StanzaError;
    fn try_from(el: &Element) -> Result<Self, StanzaError> {
        if !el.is("x", NS_USER) {
            return Err(bad(
                "expected <x xmlns='http://jabber.org/protocol/muc#user'/>",
            ));
        }
        let mut x = UserX::default();
        for c in el.elements().filter(|c| c.ns == NS_USER) {
            match c.name.as_str() {
                "item" => x.items.push(Item::parse(c, NS_USER)?),
                "status" => {
                    let code = c
                        .get_attr("code")
                        .and_then(|s| s.parse::<u16>().ok())
                        .filter(|c| (100..1000).contains(c))
                        .ok_or_else(|| bad("invalid status code"))?;
                    x.status.push(code);
                }
                "invite" => x.invites.push(Invitation::parse(c)?),
                "decline" => x.decline = Some(Invitation::parse(c)?),
                "destroy" => x.destroy = Some(Destroy::parse(c, NS_USER)?),
                "password" => x.password = Some(c.text_content()),
                _ => {}
            }
        }
        Ok(x)
    }
}

impl From<UserX> for Element {
    fn from(x: UserX) -> Element {
        let mut e = Element::new("x", NS_USER);
        if let Some(d) = x.decline {
            e.push_child(d.to_element("decline"));
        }
        if let Some(d) = x.destroy {
            e.push_child(d.to_element(NS_USER));
        }
        for i in x.invites {
            e.push_child(i.to_element("invite"));
        }
        for i in x.items {
            e.push_child(i.to_element(NS_USER));
        }
        if let Some(p) = x.password {
            e.push_child(text_el("password", NS_USER, &p));
        }
        for s in x.status {
            e.push_child(Element::new("status", NS_USER).attr("code", s.to_string()));
        }
        e
    }
}

/// `<query xmlns='http://jabber.org/protocol/muc#admin'/>`: one or more items.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminQuery {
    pub items: Vec<Item>,
}

impl TryFrom<&Element> for AdminQuery {
    type Error = StanzaError;
    fn try_from(el: &Element) -> Result<Self, StanzaError> {
        if !el.is("query", NS_ADMIN) {
            return Err(bad("expected a muc#admin query"));
        }
        let items = el
            .elements()
            .filter(|c| c.is("item", NS_ADMIN))
            .map(|c| Item::parse(c, NS_ADMIN))
            .collect::<Result<Vec<_>, _>>()?;
        if items.is_empty() {
            return Err(bad("a muc#admin query needs an item"));
        }
        Ok(AdminQuery { items })
    }
}

impl From<AdminQuery> for Element {
    fn from(q: AdminQuery) -> Element {
        let mut e = Element::new("query", NS_ADMIN);
        for i in q.items {
            e.push_child(i.to_element(NS_ADMIN));
        }
        e
    }
}

/// `<query xmlns='http://jabber.org/protocol/muc#owner'/>`: empty (form request), a data
/// form (configuration) or `<destroy/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OwnerQuery {
    pub form: Option<DataForm>,
    pub destroy: Option<Destroy>,
}

impl TryFrom<&Element> for OwnerQuery {
    type Error = StanzaError;
    fn try_from(el: &Element) -> Result<Self, StanzaError> {
        if !el.is("query", NS_OWNER) {
            return Err(bad("expected a muc#owner query"));
        }
        let form = match el.get_child("x", confab_proto::payloads::data_form::NS) {
            None => None,
            Some(x) => Some(DataForm::try_from(x).map_err(StanzaError::from)?),
        };
        let destroy = match el.get_child("destroy", NS_OWNER) {
            None => None,
            Some(d) => Some(Destroy::parse(d, NS_OWNER)?),
        };
        if form.is_some() && destroy.is_some() {
            return Err(bad("a form or a destroy request, not both"));
        }
        Ok(OwnerQuery { form, destroy })
    }
}

impl From<OwnerQuery> for Element {
    fn from(q: OwnerQuery) -> Element {
        let mut e = Element::new("query", NS_OWNER);
        if let Some(f) = q.form {
            e.push_child(f.into());
        }
        if let Some(d) = q.destroy {
            e.push_child(d.to_element(NS_OWNER));
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_proto::parser::{parse_fragment, Limits};
    use confab_proto::payloads::data_form::FormType;

    fn xml(s: &str) -> Element {
        parse_fragment(s.trim(), confab_proto::ns::CLIENT, &Limits::default())
            .unwrap_or_else(|| panic!("does not parse: {s}"))
    }

    fn first(stanza: &str, name: &str, ns: &str) -> Element {
        xml(stanza)
            .get_child(name, ns)
            .cloned()
            .unwrap_or_else(|| panic!("no <{name}/> in {stanza}"))
    }

    #[test]
    fn join_with_history_and_password() {
        // XEP-0045 examples 18 (password) and 37-41 (history).
        let x = first(
            "<presence from='hag66@shakespeare.lit/pda' id='djn4714'
                 to='coven@chat.shakespeare.lit/thirdwitch'>
               <x xmlns='http://jabber.org/protocol/muc'>
                 <password>cauldronburn</password>
               </x>
             </presence>",
            "x",
            NS_MUC,
        );
        let j = Join::try_from(&x).expect("parses");
        assert_eq!(j.password.as_deref(), Some("cauldronburn"));
        assert_eq!(j.history, None);
        for (attr, check) in [
            (
                "maxchars='65000'",
                History {
                    maxchars: Some(65000),
                    ..History::default()
                },
            ),
            (
                "maxstanzas='20'",
                History {
                    maxstanzas: Some(20),
                    ..History::default()
                },
            ),
            (
                "seconds='180'",
                History {
                    seconds: Some(180),
                    ..History::default()
                },
            ),
            (
                "since='1970-01-01T00:00:00Z'",
                History {
                    since: Some(0),
                    ..History::default()
                },
            ),
            (
                "maxchars='0'",
                History {
                    maxchars: Some(0),
                    ..History::default()
                },
            ),
        ] {
            let x = xml(&format!(
                "<x xmlns='http://jabber.org/protocol/muc'><history {attr}/></x>"
            ));
            let j = Join::try_from(&x).expect("parses");
            assert_eq!(j.history.as_ref(), Some(&check), "{attr}");
            // Back to an element and parsed again: the same limits.
            let again = Join::try_from(&Element::from(j.clone())).expect("round trip");
            assert_eq!(again, j);
        }
        for bad in [
            "maxchars='-1'",
            "maxstanzas='x'",
            "since='yesterday'",
            "seconds=''",
        ] {
            let x = xml(&format!(
                "<x xmlns='http://jabber.org/protocol/muc'><history {bad}/></x>"
            ));
            let e = Join::try_from(&x).expect_err(bad);
            assert_eq!(e.condition, StanzaErrorCondition::BadRequest);
        }
        let huge = xml("<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='99999999999999999999999'/></x>");
        let j = Join::try_from(&huge).expect("saturates");
        assert_eq!(j.history.and_then(|h| h.maxstanzas), Some(usize::MAX));
    }

    #[test]
    fn user_x_items_and_status_codes() {
        // XEP-0045 example 27 (nick change, self-presence).
        let x = first(
            "<presence from='coven@chat.shakespeare.lit/thirdwitch'
                 to='hag66@shakespeare.lit/pda' type='unavailable'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='member' jid='hag66@shakespeare.lit/pda'
                       nick='oldhag' role='participant'/>
                 <status code='303'/>
                 <status code='110'/>
               </x>
             </presence>",
            "x",
            NS_USER,
        );
        let u = UserX::try_from(&x).expect("parses");
        assert_eq!(u.status, vec![303, 110]);
        let item = &u.items[0];
        assert_eq!(item.affiliation, Some(Affiliation::Member));
        assert_eq!(item.role, Some(Role::Participant));
        assert_eq!(item.nick.as_deref(), Some("oldhag"));
        assert_eq!(
            item.jid.as_ref().map(|j| j.as_str()),
            Some("hag66@shakespeare.lit/pda")
        );
        assert_eq!(
            UserX::try_from(&Element::from(u.clone())).expect("again"),
            u
        );
        // A kick with actor and reason (example 92).
        let x = first(
            "<presence from='harfleur@chat.shakespeare.lit/pistol'
                 to='pistol@shakespeare.lit/harfleur' type='unavailable'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <item affiliation='none' role='none'>
                   <actor nick='Fluellen'/>
                   <reason>Avaunt, you cullion!</reason>
                 </item>
                 <status code='110'/>
                 <status code='307'/>
               </x>
             </presence>",
            "x",
            NS_USER,
        );
        let u = UserX::try_from(&x).expect("parses");
        assert_eq!(
            u.items[0].actor.as_ref().and_then(|a| a.nick.as_deref()),
            Some("Fluellen")
        );
        assert_eq!(u.items[0].reason.as_deref(), Some("Avaunt, you cullion!"));
        for bad in [
            "<x xmlns='http://jabber.org/protocol/muc#user'><status code='abc'/></x>",
            "<x xmlns='http://jabber.org/protocol/muc#user'><status/></x>",
            "<x xmlns='http://jabber.org/protocol/muc#user'><item role='king'/></x>",
            "<x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='god'/></x>",
            "<x xmlns='http://jabber.org/protocol/muc#user'><invite to='@@'/></x>",
        ] {
            assert!(UserX::try_from(&xml(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn invitations_and_declines() {
        // XEP-0045 examples 56 and 59.
        let x = first(
            "<message from='crone1@shakespeare.lit/desktop' id='nzd143v8'
                 to='coven@chat.shakespeare.lit'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <invite to='hecate@shakespeare.lit'>
                   <reason>Hey Hecate, this is the place for all good witches!</reason>
                 </invite>
               </x>
             </message>",
            "x",
            NS_USER,
        );
        let u = UserX::try_from(&x).expect("parses");
        assert_eq!(u.invites.len(), 1);
        assert_eq!(
            u.invites[0].to.as_ref().map(|j| j.as_str()),
            Some("hecate@shakespeare.lit")
        );
        let x = first(
            "<message from='hecate@shakespeare.lit/broom' id='jk2vs61v'
                 to='coven@chat.shakespeare.lit'>
               <x xmlns='http://jabber.org/protocol/muc#user'>
                 <decline to='crone1@shakespeare.lit'>
                   <reason>Sorry, I'm too busy right now.</reason>
                 </decline>
               </x>
             </message>",
            "x",
            NS_USER,
        );
        let u = UserX::try_from(&x).expect("parses");
        let d = u.decline.expect("decline");
        assert_eq!(
            d.to.as_ref().map(|j| j.as_str()),
            Some("crone1@shakespeare.lit")
        );
        assert_eq!(d.reason.as_deref(), Some("Sorry, I'm too busy right now."));
    }

    #[test]
    fn admin_queries() {
        // XEP-0045 example 91 (kick) and 120 (ban).
        let q = first(
            "<iq from='fluellen@shakespeare.lit/pda' id='kick1'
                 to='harfleur@chat.shakespeare.lit' type='set'>
               <query xmlns='http://jabber.org/protocol/muc#admin'>
                 <item nick='pistol' role='none'>
                   <reason>Avaunt, you cullion!</reason>
                 </item>
               </query>
             </iq>",
            "query",
            NS_ADMIN,
        );
        let a = AdminQuery::try_from(&q).expect("parses");
        assert_eq!(a.items[0].nick.as_deref(), Some("pistol"));
        assert_eq!(a.items[0].role, Some(Role::None));
        assert_eq!(
            AdminQuery::try_from(&Element::from(a.clone())).expect("again"),
            a
        );
        let q = first(
            "<iq from='kinghenryv@shakespeare.lit/throne' id='ban1'
                 to='southampton@chat.shakespeare.lit' type='set'>
               <query xmlns='http://jabber.org/protocol/muc#admin'>
                 <item affiliation='outcast' jid='earlofcambridge@shakespeare.lit'>
                   <reason>Treason</reason>
                 </item>
               </query>
             </iq>",
            "query",
            NS_ADMIN,
        );
        let a = AdminQuery::try_from(&q).expect("parses");
        assert_eq!(a.items[0].affiliation, Some(Affiliation::Outcast));
        assert!(AdminQuery::try_from(&xml(
            "<query xmlns='http://jabber.org/protocol/muc#admin'/>"
        ))
        .is_err());
        assert!(AdminQuery::try_from(&xml(
            "<query xmlns='http://jabber.org/protocol/muc#admin'><item jid='a@b@c' affiliation='member'/></query>"
        ))
        .is_err());
    }

    #[test]
    fn owner_queries() {
        // XEP-0045 example 155 (instant room) and 200 (destroy).
        let q = first(
            "<iq from='crone1@shakespeare.lit/desktop' id='create1'
                 to='coven@chat.shakespeare.lit' type='set'>
               <query xmlns='http://jabber.org/protocol/muc#owner'>
                 <x xmlns='jabber:x:data' type='submit'/>
               </query>
             </iq>",
            "query",
            NS_OWNER,
        );
        let o = OwnerQuery::try_from(&q).expect("parses");
        let f = o.form.expect("form");
        assert_eq!(f.type_, FormType::Submit);
        assert!(f.fields.is_empty());
        let q = first(
            "<iq from='crone1@shakespeare.lit/desktop' id='begone'
                 to='heath@chat.shakespeare.lit' type='set'>
               <query xmlns='http://jabber.org/protocol/muc#owner'>
                 <destroy jid='coven@chat.shakespeare.lit'>
                   <reason>Macbeth doth come.</reason>
                 </destroy>
               </query>
             </iq>",
            "query",
            NS_OWNER,
        );
        let o = OwnerQuery::try_from(&q).expect("parses");
        let d = o.destroy.clone().expect("destroy");
        assert_eq!(
            d.jid.as_ref().map(|j| j.as_str()),
            Some("coven@chat.shakespeare.lit")
        );
        assert_eq!(d.reason.as_deref(), Some("Macbeth doth come."));
        assert_eq!(
            OwnerQuery::try_from(&Element::from(o.clone())).expect("again"),
            o
        );
        let empty = OwnerQuery::try_from(&xml(
            "<query xmlns='http://jabber.org/protocol/muc#owner'/>",
        ))
        .expect("empty");
        assert_eq!(empty, OwnerQuery::default());
    }

    #[test]
    fn roles_and_affiliations_are_ordered() {
        assert!(Affiliation::Owner > Affiliation::Admin);
        assert!(Affiliation::Member > Affiliation::None);
        assert!(Affiliation::None > Affiliation::Outcast);
        assert!(Role::Moderator > Role::Participant && Role::Participant > Role::Visitor);
    }
}
