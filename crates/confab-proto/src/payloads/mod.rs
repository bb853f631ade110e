//! Typed payloads: the children of stanzas that modules read and build, one file per
//! specification, each `TryFrom<&Element>` (parsing) and `From<T> for Element` (building).
//!
//! These types are for what a module *parses and builds* (an IQ query it answers, a reply it
//! sends, a hint it checks). Stanzas that are routed or forwarded stay the original
//! [`Element`]: they are never rebuilt from these types, which keep only what their
//! specification defines and would drop unknown extensions.
//!
//! Parsing never panics, whatever the element tree; it ignores unknown attributes and
//! children where the specification allows, and refuses the rest with a [`PayloadError`],
//! which names the stanza error a server should answer with (usually `bad-request`).

pub mod blocking;
pub mod caps;
pub mod chatstates;
pub mod data_form;
pub mod delay;
pub mod disco;
pub mod hints;
pub mod last;
pub mod mam;
pub mod nick;
pub mod ping;
pub mod private;
pub mod receipts;
pub mod register;
pub mod roster;
pub mod rsm;
pub mod time;
pub mod vcard;
pub mod version;

use crate::error::{StanzaError, StanzaErrorCondition};
use crate::jid::Jid;
use crate::xml::Element;

/// Why an element is not a valid payload of its kind.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not this payload at all: another name or namespace.
    #[error("expected <{name} xmlns='{ns}'/>")]
    UnexpectedElement {
        name: &'static str,
        ns: &'static str,
    },
    /// A required attribute is absent.
    #[error("<{element}/> needs the '{attr}' attribute")]
    MissingAttribute {
        element: &'static str,
        attr: &'static str,
    },
    /// A required child is absent.
    #[error("<{element}/> needs a <{child}/> child")]
    MissingChild {
        element: &'static str,
        child: &'static str,
    },
    /// An attribute or character data that does not have the specified form.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A JID that is not valid (RFC 7622). Roster items treat a missing JID like this too.
    #[error("invalid jid '{0}'")]
    JidMalformed(String),
    /// Well-formed but refused by a rule of the specification (`not-acceptable`).
    #[error("{0}")]
    NotAcceptable(&'static str),
    /// Refused by a rule of the specification that names `bad-request`.
    #[error("{0}")]
    BadRequest(&'static str),
    /// A part of the specification this server does not implement
    /// (`feature-not-implemented`).
    #[error("{0}")]
    NotImplemented(&'static str),
}

impl PayloadError {
    /// The stanza error condition a server answers this with.
    pub fn condition(&self) -> StanzaErrorCondition {
        match self {
            PayloadError::JidMalformed(_) => StanzaErrorCondition::JidMalformed,
            PayloadError::NotAcceptable(_) => StanzaErrorCondition::NotAcceptable,
            PayloadError::NotImplemented(_) => StanzaErrorCondition::FeatureNotImplemented,
            PayloadError::UnexpectedElement { .. }
            | PayloadError::MissingAttribute { .. }
            | PayloadError::MissingChild { .. }
            | PayloadError::Invalid(_)
            | PayloadError::BadRequest(_) => StanzaErrorCondition::BadRequest,
        }
    }

    /// The stanza error to answer with, its text saying what was wrong.
    pub fn to_stanza_error(&self) -> StanzaError {
        StanzaError::with_text(self.condition(), self.to_string())
    }
}

impl From<PayloadError> for StanzaError {
    fn from(e: PayloadError) -> Self {
        e.to_stanza_error()
    }
}

/// `Ok` if `el` is `<name xmlns='ns'/>`.
pub(crate) fn expect(
    el: &Element,
    name: &'static str,
    ns: &'static str,
) -> Result<(), PayloadError> {
    if el.is(name, ns) {
        Ok(())
    } else {
        Err(PayloadError::UnexpectedElement { name, ns })
    }
}

/// The character data of the first child `<name xmlns='ns'/>`, if there is one.
pub(crate) fn child_text(el: &Element, name: &str, ns: &str) -> Option<String> {
    el.get_child(name, ns).map(Element::text_content)
}

/// The character data of every child `<name xmlns='ns'/>`, in order.
pub(crate) fn children_text(el: &Element, name: &str, ns: &str) -> Vec<String> {
    el.elements()
        .filter(|e| e.is(name, ns))
        .map(Element::text_content)
        .collect()
}

/// A JID attribute: absent is `Ok(None)`, invalid is `jid-malformed`.
pub(crate) fn jid_attr(el: &Element, attr: &str) -> Result<Option<Jid>, PayloadError> {
    el.get_attr(attr).map(parse_jid).transpose()
}

pub(crate) fn parse_jid(s: &str) -> Result<Jid, PayloadError> {
    Jid::new(s).map_err(|_| PayloadError::JidMalformed(s.to_string()))
}

/// An unsigned integer attribute or text (XML Schema `xs:unsignedInt`-like: digits only,
/// surrounding whitespace allowed).
pub(crate) fn parse_uint<T: std::str::FromStr>(
    s: &str,
    what: &'static str,
) -> Result<T, PayloadError> {
    let t = s.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PayloadError::Invalid(what));
    }
    t.parse().map_err(|_| PayloadError::Invalid(what))
}

/// Whether a parsed time is within the years 0000–9999 in UTC, so it can be written back
/// (a local time of 9999-12-31T23:59:59-01:00 is in year 10000 in UTC).
pub(crate) fn writable_datetime(unix_secs: i64) -> bool {
    crate::datetime::parse_datetime(&crate::datetime::format_datetime(unix_secs)).is_some()
}

/// Builds `<name xmlns='ns'>text</name>`.
pub(crate) fn text_element(name: &str, ns: &'static str, text: impl Into<String>) -> Element {
    let text = text.into();
    let e = Element::new(name, ns);
    if text.is_empty() {
        e
    } else {
        e.text(text)
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use crate::parser::{parse_fragment, Limits};
    use crate::xml::Element;

    /// Parses an example from a specification (a stanza or a bare payload).
    pub fn xml(s: &str) -> Element {
        match parse_fragment(s.trim(), crate::ns::CLIENT, &Limits::default()) {
            Some(e) => e,
            None => panic!("example does not parse: {s}"),
        }
    }

    /// The first child element of a stanza from a specification's example.
    pub fn payload(stanza: &str) -> Element {
        let e = xml(stanza);
        let found = e.elements().next().cloned();
        found.unwrap_or_else(|| panic!("example has no payload: {stanza}"))
    }

    /// The first child element `name` of a stanza.
    pub fn child(stanza: &str, name: &str) -> Element {
        let e = xml(stanza);
        let found = e.elements().find(|c| c.name == name).cloned();
        found.unwrap_or_else(|| panic!("example has no <{name}/>: {stanza}"))
    }

    /// Equality of two trees ignoring whitespace-only text (examples are indented).
    pub fn same(a: &Element, b: &Element) -> bool {
        strip(a) == strip(b)
    }

    pub fn strip(e: &Element) -> Element {
        let mut out = Element {
            children: Vec::new(),
            ..e.clone()
        };
        out.attrs.sort_by(|x, y| x.name.cmp(&y.name));
        for c in &e.children {
            match c {
                crate::xml::Node::Element(c) => {
                    out.children.push(crate::xml::Node::Element(strip(c)))
                }
                crate::xml::Node::Text(t) if !t.trim().is_empty() => out
                    .children
                    .push(crate::xml::Node::Text(t.trim().to_string())),
                crate::xml::Node::Text(_) => {}
            }
        }
        out
    }
}
