//! RFC 6121 §2 roster management: `<query xmlns='jabber:iq:roster' ver='…'>` with items.

use super::{expect, parse_jid, text_element, PayloadError};
use crate::jid::Jid;
use crate::xml::Element;

pub const NS: &str = "jabber:iq:roster";

/// The `subscription` attribute of an item (RFC 6121 §2.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
    /// Only in a roster set or push: the item is removed.
    Remove,
}

impl Subscription {
    pub const ALL: [Subscription; 5] = [
        Subscription::None,
        Subscription::To,
        Subscription::From,
        Subscription::Both,
        Subscription::Remove,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
            Subscription::Remove => "remove",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// One roster item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact, as given (servers keep bare JIDs).
    pub jid: Jid,
    /// The handle the user gave the contact; kept as given, even empty.
    pub name: Option<String>,
    /// Absent, or a value other than the five defined ones (which a server ignores in a
    /// roster set, RFC 6121 §2.1.2.5), is `None`.
    pub subscription: Option<Subscription>,
    /// `ask='subscribe'`: a subscription request is pending.
    pub ask: bool,
    /// `approved='true'`: a subscription is pre-approved.
    pub approved: bool,
    /// Group names, non-empty and distinct (RFC 6121 §2.3.3).
    pub groups: Vec<String>,
}

impl RosterItem {
    pub fn new(jid: Jid) -> Self {
        RosterItem {
            jid,
            name: None,
            subscription: None,
            ask: false,
            approved: false,
            groups: Vec::new(),
        }
    }

    pub fn is_remove(&self) -> bool {
        self.subscription == Some(Subscription::Remove)
    }
}

impl TryFrom<&Element> for RosterItem {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "item", NS)?;
        // The JID is required; a missing one is answered like an invalid one (jid-malformed).
        let jid = parse_jid(el.get_attr("jid").unwrap_or_default())?;
        let mut groups: Vec<String> = Vec::new();
        for g in el.elements().filter(|e| e.is("group", NS)) {
            let g = g.text_content();
            // RFC 6121 §2.3.3: an empty group name is not-acceptable, a repeated one
            // bad-request.
            if g.is_empty() {
                return Err(PayloadError::NotAcceptable("empty group name"));
            }
            if groups.contains(&g) {
                return Err(PayloadError::BadRequest("duplicate group"));
            }
            groups.push(g);
        }
        Ok(RosterItem {
            jid,
            name: el.get_attr("name").map(str::to_string),
            subscription: el
                .get_attr("subscription")
                .and_then(Subscription::from_name),
            ask: el.get_attr("ask") == Some("subscribe"),
            approved: matches!(el.get_attr("approved"), Some("true" | "1")),
            groups,
        })
    }
}

impl From<RosterItem> for Element {
    fn from(i: RosterItem) -> Element {
        let mut e = Element::new("item", NS).attr("jid", i.jid.to_string());
        if let Some(n) = i.name {
            e.set_attr("name", n);
        }
        if let Some(s) = i.subscription {
            e.set_attr("subscription", s.as_str());
        }
        if i.ask {
            e.set_attr("ask", "subscribe");
        }
        if i.approved {
            e.set_attr("approved", "true");
        }
        for g in i.groups {
            e.push_child(text_element("group", NS, g));
        }
        e
    }
}

/// A roster get, result, set or push.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterQuery {
    /// XEP-0237 / RFC 6121 §2.6 roster version.
    pub ver: Option<String>,
    pub items: Vec<RosterItem>,
}

impl RosterQuery {
    /// The item of a roster set: RFC 6121 §2.3.3 allows exactly one (else `bad-request`).
    pub fn parse_set(el: &Element) -> Result<RosterItem, PayloadError> {
        expect(el, "query", NS)?;
        let mut items = el.elements().filter(|e| e.is("item", NS));
        match (items.next(), items.next()) {
            (Some(item), None) => RosterItem::try_from(item),
            _ => Err(PayloadError::BadRequest(
                "a roster set carries exactly one item",
            )),
        }
    }
}

impl TryFrom<&Element> for RosterQuery {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", NS)?;
        Ok(RosterQuery {
            ver: el.get_attr("ver").map(str::to_string),
            items: el
                .elements()
                .filter(|e| e.is("item", NS))
                .map(RosterItem::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

impl From<RosterQuery> for Element {
    fn from(q: RosterQuery) -> Element {
        let mut e = Element::new("query", NS);
        if let Some(v) = q.ver {
            e.set_attr("ver", v);
        }
        for i in q.items {
            e.push_child(i.into());
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same};

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("valid")
    }

    #[test]
    fn rfc_6121_roster_result() {
        // RFC 6121 §2.1.3: a roster result (examples' names: Romeo, Mercutio, Benvolio).
        let r = payload(
            "<iq id='bv1bs71f' to='juliet@example.com/chamber' type='result'>
               <query xmlns='jabber:iq:roster' ver='ver11'>
                 <item jid='romeo@example.net' name='Romeo' subscription='both'>
                   <group>Friends</group>
                 </item>
                 <item jid='mercutio@example.com' name='Mercutio' subscription='from'/>
                 <item jid='benvolio@example.net' name='Benvolio' subscription='both'/>
               </query>
             </iq>",
        );
        let q = RosterQuery::try_from(&r).expect("parses");
        assert_eq!(q.ver.as_deref(), Some("ver11"));
        assert_eq!(q.items.len(), 3);
        let romeo = &q.items[0];
        assert_eq!(romeo.jid, jid("romeo@example.net"));
        assert_eq!(romeo.name.as_deref(), Some("Romeo"));
        assert_eq!(romeo.subscription, Some(Subscription::Both));
        assert_eq!(romeo.groups, vec!["Friends".to_string()]);
        assert_eq!(q.items[1].subscription, Some(Subscription::From));
        assert!(same(&Element::from(q), &r));
    }

    #[test]
    fn rfc_6121_roster_set_and_remove() {
        // RFC 6121 §2.3: adding an item.
        let set = payload(
            "<iq from='juliet@example.com/balcony' id='rs1' type='set'>
               <query xmlns='jabber:iq:roster'>
                 <item jid='nurse@example.com'/>
               </query>
             </iq>",
        );
        assert_eq!(
            RosterQuery::parse_set(&set),
            Ok(RosterItem::new(jid("nurse@example.com")))
        );
        // RFC 6121 §2.1.2/§2.4: an item with a name and a group.
        let set = payload(
            "<iq from='juliet@example.com/balcony' id='ph1xaz53' type='set'>
               <query xmlns='jabber:iq:roster'>
                 <item jid='nurse@example.com' name='Nurse'>
                   <group>Servants</group>
                 </item>
               </query>
             </iq>",
        );
        let item = RosterQuery::parse_set(&set).expect("parses");
        assert_eq!(item.name.as_deref(), Some("Nurse"));
        assert_eq!(item.groups, vec!["Servants".to_string()]);
        // RFC 6121 §2.5: removing.
        let rm = payload(
            "<iq from='juliet@example.com/balcony' id='hm4hs97y' type='set'>
               <query xmlns='jabber:iq:roster'>
                 <item jid='nurse@example.com' subscription='remove'/>
               </query>
             </iq>",
        );
        assert!(RosterQuery::parse_set(&rm).is_ok_and(|i| i.is_remove()));
    }

    #[test]
    fn rfc_6121_2_3_3_errors() {
        let cond = |xml: &str| {
            RosterQuery::parse_set(&payload(xml))
                .err()
                .map(|e| e.condition().as_str())
        };
        // Two items.
        assert_eq!(
            cond(
                "<iq type='set' id='x'><query xmlns='jabber:iq:roster'>
                    <item jid='nurse@example.com'/><item jid='romeo@example.net'/>
                  </query></iq>"
            ),
            Some("bad-request")
        );
        // No item.
        assert_eq!(
            cond("<iq type='set' id='x'><query xmlns='jabber:iq:roster'/></iq>"),
            Some("bad-request")
        );
        // The same group twice (§2.3.3, example "bad-request").
        assert_eq!(
            cond(
                "<iq from='juliet@example.com/balcony' id='rs2' type='set'>
                    <query xmlns='jabber:iq:roster'>
                      <item jid='nurse@example.com' name='Nurse'>
                        <group>Servants</group>
                        <group>Servants</group>
                      </item>
                    </query>
                  </iq>"
            ),
            Some("bad-request")
        );
        // An empty group name (§2.3.3, "not-acceptable").
        assert_eq!(
            cond(
                "<iq from='juliet@example.com/balcony' id='rs3' type='set'>
                    <query xmlns='jabber:iq:roster'>
                      <item jid='nurse@example.com' name='Nurse'>
                        <group></group>
                      </item>
                    </query>
                  </iq>"
            ),
            Some("not-acceptable")
        );
        // Missing or invalid JIDs.
        assert_eq!(
            cond("<iq type='set' id='x'><query xmlns='jabber:iq:roster'><item/></query></iq>"),
            Some("jid-malformed")
        );
        assert_eq!(
            cond(
                "<iq type='set' id='x'><query xmlns='jabber:iq:roster'>
                    <item jid='@@bad'/></query></iq>"
            ),
            Some("jid-malformed")
        );
    }

    #[test]
    fn attributes_roundtrip_and_unknown_values_are_ignored() {
        let item = RosterItem {
            name: Some("Romeo".into()),
            subscription: Some(Subscription::None),
            ask: true,
            approved: true,
            groups: vec!["A".into(), "B".into()],
            ..RosterItem::new(jid("romeo@example.net"))
        };
        let el = Element::from(item.clone());
        assert_eq!(RosterItem::try_from(&el), Ok(item));
        let odd = Element::new("item", NS)
            .attr("jid", "romeo@example.net")
            .attr("subscription", "sometimes")
            .attr("ask", "unsubscribe")
            .attr("x-extra", "1")
            .child(Element::new("note", "urn:example"));
        let parsed = RosterItem::try_from(&odd).expect("parses");
        assert_eq!(parsed, RosterItem::new(jid("romeo@example.net")));
    }
}
