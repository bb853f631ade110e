//! The stanza model: message, presence and iq as typed views over one element tree.
//!
//! The element is kept intact (unknown payloads included) so routing forwards exactly what
//! the sender sent; `to` and `from` are parsed once here.

use crate::error::{StanzaError, StanzaErrorCondition};
use crate::jid::Jid;
use crate::ns;
use crate::xml::Element;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
}

impl StanzaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    pub fn as_str(self) -> &'static str {
        match self {
            IqType::Get => "get",
            IqType::Set => "set",
            IqType::Result => "result",
            IqType::Error => "error",
        }
    }
}

/// Why a top-level element is not a usable stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StanzaParseError {
    /// Not message/presence/iq in a stanza namespace: a stream-level problem.
    NotAStanza,
    /// A stanza, but invalid: answer with this stanza error (unless it is itself an error).
    Invalid(StanzaError),
}

/// A message, presence or iq with its addresses parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    pub kind: StanzaKind,
    pub to: Option<Jid>,
    pub from: Option<Jid>,
    pub el: Element,
}

impl Stanza {
    /// Classifies a top-level element received in a stream whose content namespace is
    /// jabber:client or jabber:server.
    pub fn from_element(el: Element) -> Result<Stanza, Box<(StanzaParseError, Element)>> {
        if el.ns != ns::CLIENT && el.ns != ns::SERVER {
            return Err(Box::new((StanzaParseError::NotAStanza, el)));
        }
        let kind = match el.name.as_str() {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            "iq" => StanzaKind::Iq,
            _ => return Err(Box::new((StanzaParseError::NotAStanza, el))),
        };
        let jid_attr = |name: &str| -> Result<Option<Jid>, StanzaParseError> {
            match el.get_attr(name) {
                None => Ok(None),
                Some(s) => Jid::new(s).map(Some).map_err(|_| {
                    StanzaParseError::Invalid(StanzaError::with_text(
                        StanzaErrorCondition::JidMalformed,
                        format!("invalid '{name}' address"),
                    ))
                }),
            }
        };
        let to = match jid_attr("to") {
            Ok(j) => j,
            Err(e) => return Err(Box::new((e, el))),
        };
        let from = match jid_attr("from") {
            Ok(j) => j,
            Err(e) => return Err(Box::new((e, el))),
        };
        let stanza = Stanza { kind, to, from, el };
        if kind == StanzaKind::Iq {
            if let Err(e) = stanza.validate_iq() {
                return Err(Box::new((StanzaParseError::Invalid(e), stanza.el)));
            }
        }
        Ok(stanza)
    }

    /// RFC 6120 §8.2.3: an iq has an id and a valid type; get/set carry exactly one child.
    fn validate_iq(&self) -> Result<(), StanzaError> {
        let bad = |t: &str| StanzaError::with_text(StanzaErrorCondition::BadRequest, t);
        if self.id().is_none() {
            return Err(bad("iq without id"));
        }
        match self.iq_type() {
            Some(IqType::Get | IqType::Set) => {
                if self.el.elements().count() != 1 {
                    return Err(bad("iq get/set must have exactly one child element"));
                }
                Ok(())
            }
            Some(_) => Ok(()),
            None => Err(bad("invalid iq type")),
        }
    }

    pub fn id(&self) -> Option<&str> {
        self.el.get_attr("id")
    }

    pub fn type_attr(&self) -> Option<&str> {
        self.el.get_attr("type")
    }

    pub fn iq_type(&self) -> Option<IqType> {
        if self.kind != StanzaKind::Iq {
            return None;
        }
        match self.type_attr()? {
            "get" => Some(IqType::Get),
            "set" => Some(IqType::Set),
            "result" => Some(IqType::Result),
            "error" => Some(IqType::Error),
            _ => None,
        }
    }

    /// The single payload child of an iq get/set.
    pub fn iq_payload(&self) -> Option<&Element> {
        self.el.elements().next()
    }

    pub fn is_error(&self) -> bool {
        self.type_attr() == Some("error")
    }

    pub fn set_to(&mut self, to: Option<Jid>) {
        match &to {
            Some(j) => self.el.set_attr("to", j.as_str()),
            None => {
                self.el.remove_attr("to");
            }
        }
        self.to = to;
    }

    pub fn set_from(&mut self, from: Option<Jid>) {
        match &from {
            Some(j) => self.el.set_attr("from", j.as_str()),
            None => {
                self.el.remove_attr("from");
            }
        }
        self.from = from;
    }

    /// An iq result answering this request, with an optional payload.
    pub fn iq_result(&self, payload: Option<Element>) -> Stanza {
        let mut el = Element::new("iq", self.el.ns.clone()).attr("type", "result");
        if let Some(id) = self.id() {
            el.set_attr("id", id);
        }
        if let Some(p) = payload {
            el.push_child(p);
        }
        let mut s = Stanza {
            kind: StanzaKind::Iq,
            to: None,
            from: None,
            el,
        };
        s.set_to(self.from.clone());
        s.set_from(self.to.clone());
        s
    }

    /// The error reply RFC 6120 §8.3.1 describes: same kind and id, addresses swapped,
    /// `type='error'`. Returns `None` for a stanza that is itself an error (never answered)
    /// and for an iq result (never answered either).
    pub fn error_reply(&self, err: &StanzaError) -> Option<Stanza> {
        if self.is_error() || self.iq_type() == Some(IqType::Result) {
            return None;
        }
        Some(error_reply_for(
            &self.el,
            self.to.clone(),
            self.from.clone(),
            err,
        ))
    }
}

/// Builds an error reply from raw parts; used also for stanzas that failed to parse.
pub fn error_reply_for(
    original: &Element,
    original_to: Option<Jid>,
    original_from: Option<Jid>,
    err: &StanzaError,
) -> Stanza {
    let mut el = Element::new(original.name.clone(), original.ns.clone()).attr("type", "error");
    if let Some(id) = original.get_attr("id") {
        el.set_attr("id", id);
    }
    // Keep the original payload of messages and presences, as RFC 6120 §8.3.1 allows, so a
    // client can tell which message bounced; iq replies stay small.
    if original.name != "iq" {
        for c in original.elements() {
            if c.name != "error" {
                el.push_child(c.clone());
            }
        }
    } else if let Some(first) = original.elements().next() {
        el.push_child(first.clone());
    }
    el.push_child(err.to_element(&original.ns));
    let kind = match original.name.as_str() {
        "message" => StanzaKind::Message,
        "presence" => StanzaKind::Presence,
        _ => StanzaKind::Iq,
    };
    let mut s = Stanza {
        kind,
        to: None,
        from: None,
        el,
    };
    s.set_to(original_from);
    s.set_from(original_to);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml_name: &str) -> Element {
        Element::new(xml_name, ns::CLIENT)
    }

    #[test]
    fn classifies_and_parses_addresses() {
        let m = el("message")
            .attr("to", "Romeo@Example.net/orchard")
            .attr("type", "chat");
        let s = Stanza::from_element(m).expect("valid");
        assert_eq!(s.kind, StanzaKind::Message);
        assert_eq!(
            s.to.as_ref().map(|j| j.as_str()),
            Some("romeo@example.net/orchard")
        );
        assert!(Stanza::from_element(Element::new("foo", ns::CLIENT)).is_err());
        assert!(Stanza::from_element(Element::new("message", "urn:other")).is_err());
    }

    #[test]
    fn malformed_jid_is_jid_malformed() {
        let m = el("message").attr("to", "@@bad");
        match Stanza::from_element(m).map_err(|b| *b) {
            Err((StanzaParseError::Invalid(e), _)) => {
                assert_eq!(e.condition, StanzaErrorCondition::JidMalformed)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn iq_rules() {
        let no_child = el("iq").attr("type", "set").attr("id", "1");
        assert!(matches!(
            Stanza::from_element(no_child).map_err(|b| *b),
            Err((StanzaParseError::Invalid(e), _)) if e.condition == StanzaErrorCondition::BadRequest
        ));
        let two = el("iq")
            .attr("type", "get")
            .attr("id", "1")
            .child(Element::new("a", "x"))
            .child(Element::new("b", "x"));
        assert!(Stanza::from_element(two).is_err());
        let no_id = el("iq").attr("type", "get").child(Element::new("a", "x"));
        assert!(Stanza::from_element(no_id).is_err());
        let ok = el("iq")
            .attr("type", "get")
            .attr("id", "7")
            .attr("from", "a@b/c")
            .child(Element::new("ping", ns::PING));
        let s = Stanza::from_element(ok).expect("valid");
        let reply = s
            .error_reply(&StanzaError::new(StanzaErrorCondition::ServiceUnavailable))
            .expect("reply");
        assert_eq!(reply.el.get_attr("to"), Some("a@b/c"));
        assert_eq!(reply.el.get_attr("type"), Some("error"));
        assert_eq!(reply.el.get_attr("id"), Some("7"));
        assert!(reply
            .error_reply(&StanzaError::new(StanzaErrorCondition::BadRequest))
            .is_none());
        let result = s.iq_result(None);
        assert!(result
            .error_reply(&StanzaError::new(StanzaErrorCondition::BadRequest))
            .is_none());
    }
}
