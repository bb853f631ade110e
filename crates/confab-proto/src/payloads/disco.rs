//! XEP-0030 Service Discovery: `disco#info` (identities, features, XEP-0128 extension
//! forms) and `disco#items`.

use super::data_form::DataForm;
use super::{expect, jid_attr, PayloadError};
use crate::jid::Jid;
use crate::ns::{DISCO_INFO, DISCO_ITEMS};
use crate::xml::Element;

/// One `<identity/>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub category: String,
    pub type_: String,
    pub name: Option<String>,
    /// `xml:lang` of the name.
    pub lang: Option<String>,
}

impl Identity {
    pub fn new(category: &str, type_: &str, name: Option<&str>) -> Self {
        Identity {
            category: category.to_string(),
            type_: type_.to_string(),
            name: name.map(str::to_string),
            lang: None,
        }
    }
}

/// A `disco#info` request (only `node` set) or result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoInfo {
    pub node: Option<String>,
    pub identities: Vec<Identity>,
    /// The `var` of each `<feature/>`, in order.
    pub features: Vec<String>,
    /// XEP-0128 extended information (data forms of type `result`).
    pub extensions: Vec<DataForm>,
}

impl DiscoInfo {
    pub fn has_feature(&self, var: &str) -> bool {
        self.features.iter().any(|f| f == var)
    }
}

impl TryFrom<&Element> for DiscoInfo {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", DISCO_INFO)?;
        let mut out = DiscoInfo {
            node: el.get_attr("node").map(str::to_string),
            ..DiscoInfo::default()
        };
        for c in el.elements() {
            if c.is("identity", DISCO_INFO) {
                // XEP-0030 §3.1: category and type are required.
                let attr = |a: &'static str| {
                    c.get_attr(a)
                        .map(str::to_string)
                        .ok_or(PayloadError::MissingAttribute {
                            element: "identity",
                            attr: a,
                        })
                };
                out.identities.push(Identity {
                    category: attr("category")?,
                    type_: attr("type")?,
                    name: c.get_attr("name").map(str::to_string),
                    lang: c.get_attr_ns(crate::ns::XML, "lang").map(str::to_string),
                });
            } else if c.is("feature", DISCO_INFO) {
                let var = c.get_attr("var").ok_or(PayloadError::MissingAttribute {
                    element: "feature",
                    attr: "var",
                })?;
                out.features.push(var.to_string());
            } else if c.is("x", super::data_form::NS) {
                out.extensions.push(DataForm::try_from(c)?);
            }
        }
        Ok(out)
    }
}

impl From<DiscoInfo> for Element {
    fn from(d: DiscoInfo) -> Element {
        let mut e = Element::new("query", DISCO_INFO);
        if let Some(n) = d.node {
            e.set_attr("node", n);
        }
        for i in d.identities {
            let mut ie = Element::new("identity", DISCO_INFO)
                .attr("category", i.category)
                .attr("type", i.type_);
            if let Some(n) = i.name {
                ie.set_attr("name", n);
            }
            if let Some(l) = i.lang {
                ie.attrs.push(crate::xml::Attr {
                    ns: crate::xml::namespace(crate::ns::XML),
                    name: "lang".into(),
                    value: l,
                });
            }
            e.push_child(ie);
        }
        for f in d.features {
            e.push_child(Element::new("feature", DISCO_INFO).attr("var", f));
        }
        for x in d.extensions {
            e.push_child(x.into());
        }
        e
    }
}

/// One `<item/>` of a `disco#items` result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoItem {
    pub jid: Jid,
    pub node: Option<String>,
    pub name: Option<String>,
}

/// A `disco#items` request (only `node` set) or result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoItems {
    pub node: Option<String>,
    pub items: Vec<DiscoItem>,
}

impl TryFrom<&Element> for DiscoItems {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", DISCO_ITEMS)?;
        let items = el
            .elements()
            .filter(|c| c.is("item", DISCO_ITEMS))
            .map(|c| {
                Ok(DiscoItem {
                    jid: jid_attr(c, "jid")?.ok_or(PayloadError::MissingAttribute {
                        element: "item",
                        attr: "jid",
                    })?,
                    node: c.get_attr("node").map(str::to_string),
                    name: c.get_attr("name").map(str::to_string),
                })
            })
            .collect::<Result<_, PayloadError>>()?;
        Ok(DiscoItems {
            node: el.get_attr("node").map(str::to_string),
            items,
        })
    }
}

impl From<DiscoItems> for Element {
    fn from(d: DiscoItems) -> Element {
        let mut e = Element::new("query", DISCO_ITEMS);
        if let Some(n) = d.node {
            e.set_attr("node", n);
        }
        for i in d.items {
            let mut ie = Element::new("item", DISCO_ITEMS).attr("jid", i.jid.to_string());
            if let Some(n) = i.node {
                ie.set_attr("node", n);
            }
            if let Some(n) = i.name {
                ie.set_attr("name", n);
            }
            e.push_child(ie);
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same};

    #[test]
    fn xep_0030_info_examples() {
        // Example 1.
        let q = payload(
            "<iq type='get' from='romeo@montague.net/orchard' to='plays.shakespeare.lit' id='info1'>
               <query xmlns='http://jabber.org/protocol/disco#info'/>
             </iq>",
        );
        assert_eq!(DiscoInfo::try_from(&q), Ok(DiscoInfo::default()));
        assert_eq!(Element::from(DiscoInfo::default()), q);
        // Example 2.
        let r = payload(
            "<iq type='result' from='plays.shakespeare.lit' to='romeo@montague.net/orchard' id='info1'>
               <query xmlns='http://jabber.org/protocol/disco#info'>
                 <identity
                     category='conference'
                     type='text'
                     name='Play-Specific Chatrooms'/>
                 <identity
                     category='directory'
                     type='chatroom'
                     name='Play-Specific Chatrooms'/>
                 <feature var='http://jabber.org/protocol/disco#info'/>
                 <feature var='http://jabber.org/protocol/disco#items'/>
                 <feature var='http://jabber.org/protocol/muc'/>
                 <feature var='jabber:iq:register'/>
                 <feature var='jabber:iq:search'/>
                 <feature var='jabber:iq:time'/>
                 <feature var='jabber:iq:version'/>
               </query>
             </iq>",
        );
        let info = DiscoInfo::try_from(&r).expect("parses");
        assert_eq!(
            info.identities,
            vec![
                Identity::new("conference", "text", Some("Play-Specific Chatrooms")),
                Identity::new("directory", "chatroom", Some("Play-Specific Chatrooms")),
            ]
        );
        assert_eq!(info.features.len(), 7);
        assert!(info.has_feature("http://jabber.org/protocol/muc"));
        assert!(same(&Element::from(info), &r));
    }

    #[test]
    fn xep_0030_items_examples() {
        // Example 12, shortened.
        let r = payload(
            "<iq type='result' from='shakespeare.lit' to='romeo@montague.net/orchard' id='items1'>
               <query xmlns='http://jabber.org/protocol/disco#items'>
                 <item jid='people.shakespeare.lit'
                       name='Directory of Characters'/>
                 <item jid='plays.shakespeare.lit'
                       name='Play-Specific Chatrooms'/>
               </query>
             </iq>",
        );
        let items = DiscoItems::try_from(&r).expect("parses");
        assert_eq!(items.items.len(), 2);
        assert_eq!(
            items.items[0].jid,
            Jid::new("people.shakespeare.lit").expect("jid")
        );
        assert_eq!(
            items.items[1].name.as_deref(),
            Some("Play-Specific Chatrooms")
        );
        assert!(same(&Element::from(items), &r));
        // Example 13: the empty result.
        let e = payload(
            "<iq type='result' from='shakespeare.lit' to='romeo@montague.net/orchard' id='items1'>
               <query xmlns='http://jabber.org/protocol/disco#items'/>
             </iq>",
        );
        assert_eq!(DiscoItems::try_from(&e), Ok(DiscoItems::default()));
        // Example 18: an items query to a node.
        let q = payload(
            "<iq type='get' from='romeo@montague.net/orchard' to='catalog.shakespeare.lit' id='items3'>
               <query xmlns='http://jabber.org/protocol/disco#items'
                      node='music'/>
             </iq>",
        );
        let items = DiscoItems::try_from(&q).expect("parses");
        assert_eq!(items.node.as_deref(), Some("music"));
        assert_eq!(Element::from(items), q);
    }

    #[test]
    fn required_attributes() {
        let no_type = Element::new("query", DISCO_INFO)
            .child(Element::new("identity", DISCO_INFO).attr("category", "client"));
        assert!(DiscoInfo::try_from(&no_type).is_err());
        let no_var = Element::new("query", DISCO_INFO).child(Element::new("feature", DISCO_INFO));
        assert!(DiscoInfo::try_from(&no_var).is_err());
        let no_jid = Element::new("query", DISCO_ITEMS).child(Element::new("item", DISCO_ITEMS));
        assert!(DiscoItems::try_from(&no_jid).is_err());
        let lang = Element::from(DiscoInfo {
            identities: vec![Identity {
                lang: Some("en".into()),
                ..Identity::new("client", "pc", Some("Gabber"))
            }],
            ..DiscoInfo::default()
        });
        assert_eq!(
            DiscoInfo::try_from(&lang).map(|i| i.identities[0].lang.clone()),
            Ok(Some("en".into()))
        );
    }
}
