//! The `<body/>` wrapper of XEP-0124 / XEP-0206: reading a request's, writing ours.

use super::session::Params;
use bytes::Bytes;
use confab_proto::error::{StreamError, StreamErrorCondition};
use confab_proto::ns;
use confab_proto::parser::{parse_fragment, Limits};
use confab_proto::xml::{escape, Element};

/// XEP-0124's namespace of `<body/>`.
pub const NS: &str = "http://jabber.org/protocol/httpbind";
/// XEP-0206's namespace of the `xmpp:` attributes.
pub const XBOSH_NS: &str = "urn:xmpp:xbosh";
/// The XEP-0124 version we speak.
pub const VERSION: &str = "1.11";
/// XEP-0124 §7.1: a rid is at most 2^53 - 1.
const MAX_RID: u64 = (1 << 53) - 1;

/// A terminal binding condition (XEP-0124 §17.2) and, for `remote-stream-error`, the
/// stream error it carries (XEP-0206 §8). An empty condition is a plain terminate.
#[derive(Clone, Debug)]
pub(crate) struct Terminate {
    pub condition: &'static str,
    inner: Option<String>,
}

impl Terminate {
    pub fn new(condition: &'static str) -> Terminate {
        Terminate {
            condition,
            inner: None,
        }
    }

    /// A stream error as a terminate body: the conditions BOSH shares by name, else
    /// `remote-stream-error` with the stream error inside.
    pub fn from_stream_error(e: &StreamError) -> Terminate {
        use StreamErrorCondition as C;
        let condition = match e.condition {
            C::HostUnknown => "host-unknown",
            C::HostGone => "host-gone",
            C::ImproperAddressing => "improper-addressing",
            C::InternalServerError => "internal-server-error",
            C::PolicyViolation => "policy-violation",
            C::SystemShutdown => "system-shutdown",
            _ => "remote-stream-error",
        };
        Terminate {
            condition,
            inner: Some(e.to_element().to_stream_xml(ns::CLIENT)),
        }
    }
}

/// A request's `<body/>`, parsed and checked to be one.
pub(crate) fn parse(text: &str, limits: &Limits) -> Result<Element, &'static str> {
    let limits = Limits {
        // The wrapper is one level above the stanzas.
        max_depth: limits.max_depth + 1,
        ..limits.clone()
    };
    let el = parse_fragment(text, "", &limits).ok_or("not one well-formed element")?;
    if !el.is("body", NS) {
        return Err("not a body in the httpbind namespace");
    }
    Ok(el)
}

/// The request id, which every request carries.
pub(crate) fn rid(el: &Element) -> Option<u64> {
    el.get_attr("rid")
        .and_then(|r| r.parse::<u64>().ok())
        .filter(|r| *r <= MAX_RID)
}

pub(crate) fn xmpp_attr<'a>(el: &'a Element, name: &str) -> Option<&'a str> {
    el.get_attr_ns(XBOSH_NS, name)
}

/// What the answer to the session creation request adds (XEP-0124 §7.1, XEP-0206 §5).
pub(crate) struct Creation<'a> {
    pub sid: &'a str,
    pub params: &'a Params,
    pub from: Option<&'a str>,
    pub authid: Option<&'a str>,
}

fn open_tag(out: &mut String) {
    out.push_str("<body xmlns='");
    out.push_str(NS);
    out.push('\'');
}

/// XEP-0124 §9 attributes of an answer.
#[derive(Default)]
pub(crate) struct Acks {
    /// `ack`: the highest rid received with all before it.
    pub ack: Option<u64>,
    /// `report` and `time`: an answer the client missed, and milliseconds since it was sent.
    pub report: Option<(u64, u64)>,
}

/// The answer to one request: payloads already serialized (each declaring its namespace),
/// the creation attributes, acknowledgements, and the end of the session if it ended.
pub(crate) fn response(
    creation: Option<&Creation<'_>>,
    acks: &Acks,
    payloads: &[Bytes],
    end: Option<&Terminate>,
) -> Bytes {
    let mut head = String::with_capacity(256);
    open_tag(&mut head);
    if let Some(a) = acks.ack {
        head.push_str(&format!(" ack='{a}'"));
    }
    if let Some((rid, ms)) = acks.report {
        head.push_str(&format!(" report='{rid}' time='{ms}'"));
    }
    if let Some(c) = creation {
        let p = c.params;
        head.push_str(&format!(
            " sid='{}' wait='{}' hold='{}' requests='{}' polling='{}' inactivity='{}' ver='{VERSION}'",
            escape(c.sid),
            p.wait,
            p.hold,
            p.requests,
            POLLING,
            p.inactivity
        ));
        if p.max_pause > 0 {
            head.push_str(&format!(" maxpause='{}'", p.max_pause));
        }
        if let Some(f) = c.from {
            head.push_str(&format!(" from='{}'", escape(f)));
        }
        if let Some(a) = c.authid {
            head.push_str(&format!(" authid='{}'", escape(a)));
        }
        head.push_str(&format!(
            " xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0' xmpp:restartlogic='true'"
        ));
    }
    let inner = end.and_then(|t| t.inner.as_deref());
    if let Some(t) = end {
        head.push_str(" type='terminate'");
        if !t.condition.is_empty() {
            head.push_str(&format!(" condition='{}'", t.condition));
        }
    }
    head.push_str(&format!(" xmlns:stream='{}'", ns::STREAM));
    if payloads.is_empty() && inner.is_none() {
        head.push_str("/>");
        return Bytes::from(head);
    }
    head.push('>');
    let size = head.len() + payloads.iter().map(Bytes::len).sum::<usize>() + 64;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(head.as_bytes());
    for p in payloads {
        out.extend_from_slice(p);
    }
    if let Some(i) = inner {
        out.extend_from_slice(i.as_bytes());
    }
    out.extend_from_slice(b"</body>");
    Bytes::from(out)
}

/// The shortest interval between empty requests we ask of polling clients, in seconds.
pub(crate) const POLLING: u64 = 2;

/// A terminate body outside any session (bad requests, unknown sids).
pub(crate) fn terminate(t: &Terminate) -> Bytes {
    response(None, &Acks::default(), &[], Some(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked() {
        let l = Limits::default();
        let b = parse(
            &format!("<body xmlns='{NS}' rid='10' xmlns:xmpp='{XBOSH_NS}' xmpp:version='1.0'/>"),
            &l,
        )
        .expect("a body");
        assert_eq!(rid(&b), Some(10));
        assert_eq!(xmpp_attr(&b, "version"), Some("1.0"));
        assert!(parse("<body xmlns='urn:other' rid='1'/>", &l).is_err());
        assert!(parse("<body xmlns='http://jabber.org/protocol/httpbind'", &l).is_err());
        assert!(parse(&format!("<body xmlns='{NS}'/><body xmlns='{NS}'/>"), &l).is_err());
        let huge = Element::new("body", NS).attr("rid", "9007199254740992");
        assert_eq!(rid(&huge), None);
        assert_eq!(rid(&Element::new("body", NS).attr("rid", "-1")), None);
    }

    #[test]
    fn stream_errors_become_terminate_bodies() {
        let t = Terminate::from_stream_error(&StreamError::new(StreamErrorCondition::Conflict));
        let b = terminate(&t);
        let text = std::str::from_utf8(&b).expect("utf-8");
        assert!(
            text.contains("type='terminate' condition='remote-stream-error'"),
            "{text}"
        );
        let el = parse(text, &Limits::default()).expect("well-formed");
        let err = el.get_child("error", ns::STREAM).expect("the stream error");
        assert!(err.elements().any(|c| c.name == "conflict"), "{text}");
        let t = Terminate::from_stream_error(&StreamError::new(StreamErrorCondition::HostUnknown));
        assert_eq!(t.condition, "host-unknown");
    }
}
