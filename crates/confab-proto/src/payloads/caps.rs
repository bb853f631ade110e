//! XEP-0115 Entity Capabilities: the `<c/>` element in presence and stream features, and
//! the §5.1 verification string over an entity's identities and features.

use super::disco::Identity;
use super::{expect, PayloadError};
use crate::ns::CAPS;
use crate::xml::Element;
use base64::Engine as _;
use sha1::{Digest, Sha1};

/// `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='…' ver='…'/>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps {
    /// The hash function's name (`sha-1` is the one every entity supports).
    pub hash: String,
    /// The software's URI.
    pub node: String,
    /// The verification string.
    pub ver: String,
}

impl Caps {
    /// SHA-1 caps of `node` over these identities and features (no extension forms).
    pub fn sha1(node: &str, identities: &[Identity], features: &[String]) -> Self {
        Caps {
            hash: "sha-1".into(),
            node: node.to_string(),
            ver: ver(identities, features),
        }
    }
}

impl TryFrom<&Element> for Caps {
    type Error = PayloadError;
    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "c", CAPS)?;
        let attr = |a: &'static str| {
            el.get_attr(a)
                .map(str::to_string)
                .ok_or(PayloadError::MissingAttribute {
                    element: "c",
                    attr: a,
                })
        };
        Ok(Caps {
            hash: attr("hash")?,
            node: attr("node")?,
            ver: attr("ver")?,
        })
    }
}

impl From<Caps> for Element {
    fn from(c: Caps) -> Element {
        Element::new("c", CAPS)
            .attr("hash", c.hash)
            .attr("node", c.node)
            .attr("ver", c.ver)
    }
}

/// The XEP-0115 §5.1 verification string (SHA-1, base64) of identities and features,
/// without extended information forms: identities `category/type/lang/name` sorted, then
/// features sorted without repeats, each followed by `<`.
pub fn ver(identities: &[Identity], features: &[String]) -> String {
    let mut ids: Vec<String> = identities
        .iter()
        .map(|i| {
            format!(
                "{}/{}/{}/{}",
                i.category,
                i.type_,
                i.lang.as_deref().unwrap_or(""),
                i.name.as_deref().unwrap_or("")
            )
        })
        .collect();
    ids.sort();
    let mut feats: Vec<&str> = features.iter().map(String::as_str).collect();
    feats.sort_unstable();
    feats.dedup();
    let mut s = String::new();
    for i in &ids {
        s.push_str(i);
        s.push('<');
    }
    for f in feats {
        s.push_str(f);
        s.push('<');
    }
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0115_simple_example() {
        // XEP-0115 §5.2.
        let ids = [Identity::new("client", "pc", Some("Exodus 0.9.1"))];
        let features: Vec<String> = [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(ver(&ids, &features), "QgayPKawpkPSDYmwT/WM94uAlu0=");
        let c = Caps::sha1("http://x.invalid", &ids, &features);
        assert_eq!(Caps::try_from(&Element::from(c.clone())), Ok(c));
    }
}
