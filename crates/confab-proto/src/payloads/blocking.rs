//! XEP-0191 Blocking Command: `<blocklist/>`, `<block/>` and `<unblock/>` with items.

use super::{expect, parse_jid, PayloadError};
use crate::jid::Jid;
use crate::xml::Element;

pub const NS: &str = "urn:xmpp:blocking";
/// The application error of a stanza refused because its recipient is blocked.
pub const NS_ERRORS: &str = "urn:xmpp:blocking:errors";

/// The JIDs of the `<item/>` children (other children are ignored).
fn items(el: &Element) -> Result<Vec<Jid>, PayloadError> {
    el.elements()
        .filter(|e| e.is("item", NS))
        .map(|item| match item.get_attr("jid") {
            Some(raw) => parse_jid(raw),
            None => Err(PayloadError::MissingAttribute {
                element: "item",
                attr: "jid",
            }),
        })
        .collect()
}

fn build(name: &str, jids: Vec<Jid>) -> Element {
    let mut e = Element::new(name, NS);
    for j in jids {
        e.push_child(Element::new("item", NS).attr("jid", j.to_string()));
    }
    e
}

/// The block list: a request (empty) or its result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockList {
    pub items: Vec<Jid>,
}

/// Block these JIDs (a set or a push). XEP-0191 §3.3: at least one item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub items: Vec<Jid>,
}

/// Unblock these JIDs (a set or a push); none means everything (XEP-0191 §3.5).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Unblock {
    pub items: Vec<Jid>,
}

impl TryFrom<&Element> for BlockList {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "blocklist", NS)?;
        Ok(BlockList { items: items(el)? })
    }
}

impl TryFrom<&Element> for Block {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "block", NS)?;
        let items = items(el)?;
        if items.is_empty() {
            return Err(PayloadError::BadRequest("block needs at least one item"));
        }
        Ok(Block { items })
    }
}

impl TryFrom<&Element> for Unblock {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "unblock", NS)?;
        Ok(Unblock { items: items(el)? })
    }
}

impl From<BlockList> for Element {
    fn from(b: BlockList) -> Element {
        build("blocklist", b.items)
    }
}

impl From<Block> for Element {
    fn from(b: Block) -> Element {
        build("block", b.items)
    }
}

impl From<Unblock> for Element {
    fn from(b: Unblock) -> Element {
        build("unblock", b.items)
    }
}

/// `<blocked xmlns='urn:xmpp:blocking:errors'/>`, the application condition of XEP-0191 §3.6.
pub fn blocked_condition() -> Element {
    Element::new("blocked", NS_ERRORS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payloads::test_util::{payload, same};

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("valid")
    }

    #[test]
    fn xep_0191_examples() {
        // Examples 3 and 5.
        let get =
            payload("<iq type='get' id='blocklist1'><blocklist xmlns='urn:xmpp:blocking'/></iq>");
        assert_eq!(BlockList::try_from(&get), Ok(BlockList::default()));
        assert_eq!(Element::from(BlockList::default()), get);
        // Example 4.
        let list = payload(
            "<iq type='result' id='blocklist1'>
               <blocklist xmlns='urn:xmpp:blocking'>
                 <item jid='romeo@montague.net'/>
                 <item jid='iago@shakespeare.lit'/>
               </blocklist>
             </iq>",
        );
        let b = BlockList::try_from(&list).expect("parses");
        assert_eq!(
            b.items,
            vec![jid("romeo@montague.net"), jid("iago@shakespeare.lit")]
        );
        assert!(same(&Element::from(b), &list));
        // Example 6.
        let block = payload(
            "<iq from='juliet@capulet.com/chamber' type='set' id='block1'>
               <block xmlns='urn:xmpp:blocking'>
                 <item jid='romeo@montague.net'/>
               </block>
             </iq>",
        );
        let b = Block::try_from(&block).expect("parses");
        assert_eq!(b.items, vec![jid("romeo@montague.net")]);
        assert!(same(&Element::from(b), &block));
        // Example 10: unblock; example 13: unblock all.
        let unblock = payload(
            "<iq type='set' id='unblock1'>
               <unblock xmlns='urn:xmpp:blocking'>
                 <item jid='romeo@montague.net'/>
               </unblock>
             </iq>",
        );
        assert_eq!(
            Unblock::try_from(&unblock).map(|u| u.items),
            Ok(vec![jid("romeo@montague.net")])
        );
        let all = payload("<iq type='set' id='unblock2'><unblock xmlns='urn:xmpp:blocking'/></iq>");
        assert_eq!(Unblock::try_from(&all), Ok(Unblock::default()));
    }

    #[test]
    fn bad_items() {
        let empty = Element::new("block", NS);
        assert_eq!(
            Block::try_from(&empty).map_err(|e| e.condition().as_str()),
            Err("bad-request")
        );
        let bad = Element::new("block", NS).child(Element::new("item", NS).attr("jid", "@bad@"));
        assert_eq!(
            Block::try_from(&bad).map_err(|e| e.condition().as_str()),
            Err("jid-malformed")
        );
        let missing = Element::new("unblock", NS).child(Element::new("item", NS));
        assert_eq!(
            Unblock::try_from(&missing).map_err(|e| e.condition().as_str()),
            Err("bad-request")
        );
        assert!(Block::try_from(&Element::new("unblock", NS)).is_err());
    }
}
