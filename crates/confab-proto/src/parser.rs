//! Incremental XML stream parser: bytes in, the stream header and complete top-level
//! elements (stanzas, stream features, SASL and TLS elements) out.
//!
//! Tokenizing is done by `rxml`, which refuses DTDs, entity declarations, processing
//! instructions and comments (RFC 6120 §11). `rxml` does not bound stanza size, depth or
//! attribute count; this module does, *before* any tree is built, so no later code ever sees
//! input beyond the configured limits and memory per stream stays bounded.

use crate::error::StreamErrorCondition;
use crate::xml::{Attr, Element, Node, Ns};
use rxml::error::EndOrError;
use rxml::{Event, Parse, WithOptions};

/// Limits enforced while parsing; every value is configurable by the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element (or stream header) in bytes as received.
    pub max_stanza_size: usize,
    /// Deepest element nesting inside the stream element (a stanza is depth 1).
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Longest element or attribute name, in bytes.
    pub max_name_length: usize,
    /// Most memory one top-level element may hold once parsed (an estimate of the tree's
    /// heap and struct sizes). Bounds what a stanza costs, not only what it sends: an
    /// empty child element is 4 bytes on the wire and about a hundred in the tree.
    pub max_stanza_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_size: 256 * 1024,
            max_depth: 48,
            max_attributes: 64,
            max_name_length: 256,
            max_stanza_memory: 1024 * 1024,
        }
    }
}

/// The attributes of a received stream header (`<stream:stream ...>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// Local name and namespace of the root element; a valid stream has `stream` /
    /// `http://etherx.jabber.org/streams`. The caller checks, so it can answer with the
    /// right stream error.
    pub name: String,
    pub ns: String,
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    Header(StreamHeader),
    Element(Element),
    /// The peer closed its stream (`</stream:stream>`).
    Close,
}

/// Why parsing stopped; each maps to the stream error RFC 6120 names.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    #[error("restricted XML: {0}")]
    RestrictedXml(String),
    #[error("limit exceeded: {0}")]
    PolicyViolation(String),
    #[error("bad format: {0}")]
    BadFormat(String),
}

impl ParseError {
    pub fn condition(&self) -> StreamErrorCondition {
        match self {
            ParseError::NotWellFormed(_) => StreamErrorCondition::NotWellFormed,
            ParseError::RestrictedXml(_) => StreamErrorCondition::RestrictedXml,
            ParseError::PolicyViolation(_) => StreamErrorCondition::PolicyViolation,
            ParseError::BadFormat(_) => StreamErrorCondition::BadFormat,
        }
    }
}

/// Parses one XML stream. A stream restart (after STARTTLS or SASL) uses a new parser.
pub struct StreamParser {
    parser: rxml::Parser,
    limits: Limits,
    /// Elements under construction; the first is the top-level element.
    stack: Vec<Element>,
    header_seen: bool,
    /// Whether any non-whitespace byte has been fed yet.
    started: bool,
    closed: bool,
    /// Bytes consumed since the last complete top-level unit; bounds buffered input.
    pending: usize,
    /// Estimated memory held by the element under construction; bounds the parsed tree.
    held: usize,
    failed: Option<ParseError>,
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        // rxml's Options is non-exhaustive, so it cannot be built with a struct literal.
        #[allow(clippy::field_reassign_with_default)]
        let opts = {
            let mut o = rxml::parser::Options::default();
            o.max_token_length = limits.max_stanza_size.max(1024);
            o
        };
        // No single token may exceed the stanza limit; text longer than this is split into
        // several events by rxml, names and attribute values are refused.
        let mut parser = rxml::Parser::with_options(opts);
        // Between stanzas, whitespace keepalives must be seen at once so they do not count
        // towards the next stanza's size; buffering is switched on inside stanzas.
        parser.set_text_buffering(false);
        StreamParser {
            parser,
            limits,
            stack: Vec::new(),
            header_seen: false,
            started: false,
            closed: false,
            pending: 0,
            held: 0,
            failed: None,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// True once the peer's closing tag has been seen.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True when no partial top-level element is buffered (used to release memory when idle).
    pub fn is_between_stanzas(&self) -> bool {
        self.stack.is_empty()
    }

    /// Releases rxml's temporary buffers and, between stanzas, the element stack (it keeps
    /// the capacity of the deepest stanza seen otherwise); call when the connection goes idle.
    pub fn release_temporaries(&mut self) {
        self.parser.release_temporaries();
        if self.stack.is_empty() {
            self.stack = Vec::new();
        }
    }

    /// Consumes bytes from `buf` and returns the next complete event, or `Ok(None)` once all
    /// of `buf` is consumed without completing one. Call again until it returns `Ok(None)`.
    /// After an error the parser stays failed.
    pub fn next_event(&mut self, buf: &mut &[u8]) -> Result<Option<StreamEvent>, ParseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.step(buf) {
            Ok(ev) => Ok(ev),
            Err(e) => {
                self.failed = Some(e.clone());
                self.stack.clear();
                self.held = 0;
                Err(e)
            }
        }
    }

    fn step(&mut self, buf: &mut &[u8]) -> Result<Option<StreamEvent>, ParseError> {
        loop {
            if self.closed {
                if buf.iter().all(|b| b.is_ascii_whitespace()) {
                    *buf = &buf[buf.len()..];
                    return Ok(None);
                }
                return Err(ParseError::NotWellFormed("data after stream end".into()));
            }
            if !self.started {
                // Whitespace before the stream header is legal XML (prolog `Misc*`) and some
                // clients send a newline there after a restart; rxml refuses it, so skip it.
                let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
                *buf = &buf[ws..];
                if buf.is_empty() {
                    return Ok(None);
                }
                self.started = true;
            }
            let before = buf.len();
            let result = self.parser.parse(buf, false);
            self.pending += before - buf.len();
            if self.pending > self.limits.max_stanza_size {
                return Err(ParseError::PolicyViolation(format!(
                    "element larger than {} bytes",
                    self.limits.max_stanza_size
                )));
            }
            let ev = match result {
                Ok(Some(ev)) => ev,
                Ok(None) | Err(EndOrError::NeedMoreData) => return Ok(None),
                Err(EndOrError::Error(e)) => return Err(map_rxml_error(e)),
            };
            if let Some(out) = self.handle(ev)? {
                return Ok(Some(out));
            }
        }
    }

    fn handle(&mut self, ev: Event) -> Result<Option<StreamEvent>, ParseError> {
        match ev {
            Event::XmlDeclaration(..) => Ok(None),
            Event::StartElement(_, (ns, name), attrs) => {
                if name.len() > self.limits.max_name_length {
                    return Err(ParseError::PolicyViolation("element name too long".into()));
                }
                if attrs.len() > self.limits.max_attributes {
                    return Err(ParseError::PolicyViolation("too many attributes".into()));
                }
                let mut cost = ELEMENT_COST + name.len();
                let mut converted = Vec::with_capacity(attrs.len());
                for ((ans, aname), value) in attrs.into_iter() {
                    if aname.len() > self.limits.max_name_length {
                        return Err(ParseError::PolicyViolation(
                            "attribute name too long".into(),
                        ));
                    }
                    cost += ATTR_COST + aname.len() + value.len();
                    converted.push(Attr {
                        ns: shared(ans),
                        name: aname.as_str().to_string(),
                        value,
                    });
                }
                if !self.header_seen {
                    self.header_seen = true;
                    self.pending = 0;
                    return Ok(Some(StreamEvent::Header(header_from(
                        name.as_str(),
                        ns.as_str(),
                        converted,
                    ))));
                }
                // The stream element is depth 0, a stanza depth 1.
                if self.stack.len() + 1 > self.limits.max_depth {
                    return Err(ParseError::PolicyViolation(
                        "elements nested too deeply".into(),
                    ));
                }
                self.hold(cost)?;
                self.parser.set_text_buffering(true);
                self.stack.push(Element {
                    name: name.as_str().to_string(),
                    ns: shared(ns),
                    attrs: converted,
                    children: Vec::new(),
                });
                Ok(None)
            }
            Event::Text(_, text) => {
                match self.stack.last_mut() {
                    Some(_) => {
                        let appends = matches!(
                            self.stack.last().and_then(|top| top.children.last()),
                            Some(Node::Text(_))
                        );
                        self.hold(text.len() + if appends { 0 } else { NODE_COST })?;
                        if let Some(top) = self.stack.last_mut() {
                            if let Some(Node::Text(t)) = top.children.last_mut() {
                                t.push_str(&text);
                            } else {
                                top.children.push(Node::Text(text));
                            }
                        }
                    }
                    None => {
                        // Between stanzas only whitespace (keepalives) is meaningful.
                        if !text.chars().all(|c| c.is_ascii_whitespace()) {
                            return Err(ParseError::BadFormat("text at stream level".into()));
                        }
                        self.pending = 0;
                    }
                }
                Ok(None)
            }
            Event::EndElement(_) => match self.stack.pop() {
                None => {
                    self.closed = true;
                    self.pending = 0;
                    Ok(Some(StreamEvent::Close))
                }
                Some(done) => match self.stack.last_mut() {
                    Some(parent) => {
                        parent.children.push(Node::Element(done));
                        Ok(None)
                    }
                    None => {
                        self.pending = 0;
                        self.held = 0;
                        self.parser.set_text_buffering(false);
                        Ok(Some(StreamEvent::Element(done)))
                    }
                },
            },
        }
    }
}

/// What one element costs in the tree besides its name: the `Element` itself and the
/// `Node` that holds it in its parent (namespaces are shared, see `xml::Ns`).
const ELEMENT_COST: usize = std::mem::size_of::<Element>() + std::mem::size_of::<Node>();
/// What one attribute costs besides its name and value.
const ATTR_COST: usize = std::mem::size_of::<Attr>();
/// What a text node costs besides its characters.
const NODE_COST: usize = std::mem::size_of::<Node>();

/// Keeps rxml's shared namespace string instead of copying it (see `xml::Ns`).
fn shared(ns: rxml::Namespace<'_>) -> Ns {
    ns.into_static()
}

impl StreamParser {
    /// Counts `cost` bytes towards what the element under construction holds.
    fn hold(&mut self, cost: usize) -> Result<(), ParseError> {
        self.held = self.held.saturating_add(cost);
        if self.held > self.limits.max_stanza_memory {
            return Err(ParseError::PolicyViolation(format!(
                "element would hold more than {} bytes of memory",
                self.limits.max_stanza_memory
            )));
        }
        Ok(())
    }
}

/// Parses one element stored as XML (a stanza or document kept in the database) in the
/// given default namespace, with the given limits (the size limit grows to fit the text,
/// which was checked when it was received). `None` unless it is exactly one element.
pub fn parse_fragment(xml: &str, default_ns: &str, limits: &Limits) -> Option<Element> {
    let header = format!(
        "<stream:stream xmlns='{}' xmlns:stream='{}'>",
        crate::xml::escape(default_ns),
        crate::ns::STREAM
    );
    let mut p = StreamParser::new(Limits {
        max_stanza_size: limits.max_stanza_size.max(xml.len() + header.len() + 16),
        max_stanza_memory: limits.max_stanza_memory.max(xml.len().saturating_mul(8)),
        ..limits.clone()
    });
    let mut buf = header.as_bytes();
    match p.next_event(&mut buf) {
        Ok(Some(StreamEvent::Header(_))) => {}
        _ => return None,
    }
    let mut buf = xml.as_bytes();
    let el = match p.next_event(&mut buf) {
        Ok(Some(StreamEvent::Element(e))) => e,
        _ => return None,
    };
    buf.iter().all(u8::is_ascii_whitespace).then_some(el)
}

fn header_from(name: &str, ns: &str, attrs: Vec<Attr>) -> StreamHeader {
    let mut h = StreamHeader {
        name: name.to_string(),
        ns: ns.to_string(),
        ..Default::default()
    };
    for a in attrs {
        match (a.ns.as_str(), a.name.as_str()) {
            ("", "to") => h.to = Some(a.value),
            ("", "from") => h.from = Some(a.value),
            ("", "id") => h.id = Some(a.value),
            ("", "version") => h.version = Some(a.value),
            (crate::ns::XML, "lang") => h.lang = Some(a.value),
            _ => {}
        }
    }
    h
}

fn map_rxml_error(e: rxml::Error) -> ParseError {
    match e {
        rxml::Error::RestrictedXml(what) if what.contains("long") => {
            ParseError::PolicyViolation(what.to_string())
        }
        rxml::Error::RestrictedXml(what) => ParseError::RestrictedXml(what.to_string()),
        rxml::Error::UndeclaredEntity => ParseError::RestrictedXml("entity reference".into()),
        other => ParseError::NotWellFormed(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0' xml:lang='en'>";

    fn parse_all(p: &mut StreamParser, data: &[u8]) -> Result<Vec<StreamEvent>, ParseError> {
        let mut buf = data;
        let mut out = Vec::new();
        while let Some(ev) = p.next_event(&mut buf)? {
            out.push(ev);
        }
        assert!(buf.is_empty());
        Ok(out)
    }

    #[test]
    fn header_and_stanzas_byte_by_byte() {
        let doc = format!(
            "{HEADER}<message to='romeo@example.net' type='chat'><body>hi &amp; bye</body></message> \
             <iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
        );
        let mut p = StreamParser::new(Limits::default());
        let mut events = Vec::new();
        for b in doc.as_bytes() {
            events.extend(parse_all(&mut p, std::slice::from_ref(b)).expect("parses"));
        }
        assert_eq!(events.len(), 4);
        match &events[0] {
            StreamEvent::Header(h) => {
                assert_eq!(h.name, "stream");
                assert_eq!(h.ns, crate::ns::STREAM);
                assert_eq!(h.to.as_deref(), Some("example.com"));
                assert_eq!(h.version.as_deref(), Some("1.0"));
                assert_eq!(h.lang.as_deref(), Some("en"));
            }
            other => panic!("expected header, got {other:?}"),
        }
        match &events[1] {
            StreamEvent::Element(m) => {
                assert!(m.is("message", "jabber:client"));
                let body = m.get_child("body", "jabber:client").expect("body");
                assert_eq!(body.text_content(), "hi & bye");
            }
            other => panic!("expected message, got {other:?}"),
        }
        match &events[2] {
            StreamEvent::Element(iq) => {
                assert!(iq.get_child("ping", "urn:xmpp:ping").is_some());
            }
            other => panic!("expected iq, got {other:?}"),
        }
        assert_eq!(events[3], StreamEvent::Close);
        assert!(p.is_closed());
    }

    /// An idle stream holds no element stack: the deepest stanza's capacity is given back
    /// between stanzas, and parsing goes on as before.
    #[test]
    fn idle_parser_releases_its_element_stack() {
        let mut p = StreamParser::new(Limits::default());
        let doc = format!("{HEADER}<iq type='get' id='1'><a xmlns='urn:x'><b><c/></b></a></iq>");
        let events = parse_all(&mut p, doc.as_bytes()).expect("parses");
        assert_eq!(events.len(), 2);
        assert!(p.stack.capacity() > 0, "a nested stanza used the stack");
        p.release_temporaries();
        assert_eq!(
            p.stack.capacity(),
            0,
            "an idle parser kept its element stack"
        );
        let events = parse_all(&mut p, b"<presence/>").expect("parses after release");
        assert!(matches!(&events[..], [StreamEvent::Element(e)] if &*e.name == "presence"));
    }

    fn error_after_header(body: &str, limits: Limits) -> ParseError {
        let mut p = StreamParser::new(limits);
        let doc = format!("{HEADER}{body}");
        parse_all(&mut p, doc.as_bytes()).expect_err("must fail")
    }

    #[test]
    fn whitespace_before_the_header_is_skipped() {
        let mut p = StreamParser::new(Limits::default());
        let doc = format!("\n \r\n{HEADER}<presence/>");
        let events = parse_all(&mut p, doc.as_bytes()).expect("parses");
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn fragments() {
        let e = parse_fragment(
            "<message to='a@b'><body>x</body></message>",
            "jabber:client",
            &Limits::default(),
        )
        .expect("parses");
        assert!(e.is("message", "jabber:client"));
        assert!(parse_fragment("<a/><b/>", "jabber:client", &Limits::default()).is_none());
        assert!(parse_fragment("<a>", "jabber:client", &Limits::default()).is_none());
        assert!(parse_fragment("", "jabber:client", &Limits::default()).is_none());
    }

    #[test]
    fn refuses_restricted_constructs() {
        let l = Limits::default;
        assert!(matches!(
            error_after_header("<!-- hi -->", l()),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            error_after_header("<?pi x?>", l()),
            ParseError::RestrictedXml(_)
        ));
        assert!(matches!(
            error_after_header("<message><body>&foo;</body></message>", l()),
            ParseError::RestrictedXml(_)
        ));
        let mut p = StreamParser::new(l());
        let dtd = "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";
        assert!(parse_all(&mut p, dtd.as_bytes()).is_err());
    }

    #[test]
    fn refuses_malformed() {
        let l = Limits::default;
        assert!(matches!(
            error_after_header("<message></iq>", l()),
            ParseError::NotWellFormed(_)
        ));
        assert!(matches!(
            error_after_header("<message><x:y/></message>", l()),
            ParseError::NotWellFormed(_)
        ));
        assert!(matches!(
            error_after_header("hello", l()),
            ParseError::BadFormat(_)
        ));
    }

    #[test]
    fn enforces_limits() {
        let small = Limits {
            max_stanza_size: 2000,
            max_depth: 5,
            max_attributes: 3,
            max_name_length: 20,
            max_stanza_memory: 1 << 20,
        };
        let big = format!("<message><body>{}</body></message>", "x".repeat(5000));
        assert!(matches!(
            error_after_header(&big, small.clone()),
            ParseError::PolicyViolation(_)
        ));
        let deep = "<a><a><a><a><a><a>".to_string();
        assert!(matches!(
            error_after_header(&deep, small.clone()),
            ParseError::PolicyViolation(_)
        ));
        let attrs = "<message a='1' b='2' c='3' d='4'/>";
        assert!(matches!(
            error_after_header(attrs, small.clone()),
            ParseError::PolicyViolation(_)
        ));
        let name = format!("<{}/>", "n".repeat(30));
        assert!(matches!(
            error_after_header(&name, small.clone()),
            ParseError::PolicyViolation(_)
        ));
        // An unterminated element head is bounded by the size limit too.
        let mut p = StreamParser::new(small);
        parse_all(&mut p, HEADER.as_bytes()).expect("header");
        parse_all(&mut p, b"<message to='").expect("partial head");
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = parse_all(
                &mut p,
                b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            ) {
                err = Some(e);
                break;
            }
        }
        assert!(matches!(err, Some(ParseError::PolicyViolation(_))));
    }

    #[test]
    fn whitespace_keepalives_do_not_accumulate() {
        let limits = Limits {
            max_stanza_size: 100,
            ..Limits::default()
        };
        let header =
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";
        assert!(header.len() < 100);
        let mut p2 = StreamParser::new(limits);
        parse_all(&mut p2, header.as_bytes()).expect("header");
        for _ in 0..1000 {
            parse_all(&mut p2, b" ").expect("whitespace is fine");
        }
        let events = parse_all(&mut p2, b"<presence/>").expect("stanza");
        assert_eq!(events.len(), 1);
    }
}
