//! The server side of a connection as a session sees it, whatever carries it: parsed events
//! in; stream openings, protocol elements and serialized stanzas out. One negotiation and one
//! session loop run over any `ServerFraming`:
//! - `XmlStream<Transport>`: the classic XML stream over TCP, with STARTTLS or direct TLS;
//! - `FramedXml`: RFC 7395 framing, one XML document per message (`<open/>`, `<close/>`,
//!   stanzas that declare their namespace), over any `MessageTransport` (WebSocket, or an
//!   in-memory channel in tests).

use crate::transport::ReadReady;
use crate::xmlstream::{ReadError, XmlStream};
use crate::Transport;
use async_trait::async_trait;
use bytes::Bytes;
use confab_proto::error::StreamError;
use confab_proto::ns;
use confab_proto::parser::{parse_fragment, Limits, ParseError, StreamEvent, StreamHeader};
use confab_proto::sasl::ChannelBindingData;
use confab_proto::xml::{escape, Element};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

/// RFC 7395: the namespace of `<open/>` and `<close/>`.
pub const FRAMING_NS: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// How stanzas look on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireForm {
    /// Inside one XML stream whose header declared `jabber:client` as the default namespace.
    Stream,
    /// Each a document of its own that declares its namespace (RFC 7395).
    Framed,
}

/// A stanza serialized once for every recipient and every wire form: the stream form made
/// by the router, and the framed form (RFC 7395: `xmlns` on the top element) made by the
/// first framed connection that writes it and shared by the others. Cloning is a reference
/// count.
#[derive(Clone)]
pub struct WireStanza(Arc<WireForms>);

struct WireForms {
    stream: Bytes,
    framed: OnceLock<Bytes>,
}

impl WireStanza {
    /// A stanza in the stream form (`Element::to_xml(jabber:client)`).
    pub fn new(stream_form: Bytes) -> WireStanza {
        WireStanza(Arc::new(WireForms {
            stream: stream_form,
            framed: OnceLock::new(),
        }))
    }

    /// The stream form, for connections inside one `jabber:client` XML stream.
    pub fn stream_form(&self) -> &Bytes {
        &self.0.stream
    }

    /// The framed form, made on first use.
    pub fn framed_form(&self) -> &Bytes {
        self.0.framed.get_or_init(|| with_client_ns(&self.0.stream))
    }

    /// Size in the stream form (what queue limits count).
    pub fn len(&self) -> usize {
        self.0.stream.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.stream.is_empty()
    }

    /// Whether two handles share one serialization.
    pub fn shares_with(&self, other: &WireStanza) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<Bytes> for WireStanza {
    fn from(stream_form: Bytes) -> WireStanza {
        WireStanza::new(stream_form)
    }
}

impl std::fmt::Debug for WireStanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("WireStanza")
            .field(&String::from_utf8_lossy(&self.0.stream))
            .finish()
    }
}

/// A connection's server side, for the negotiation and the session loop.
#[async_trait]
pub trait ServerFraming: Send + Sync {
    /// The next event from what was already received, without waiting: `Header` when the
    /// peer opens a stream, `Element`, or `Close`.
    fn next_buffered(&mut self) -> Result<Option<StreamEvent>, ParseError>;
    /// Waits for more input; returns how many bytes arrived. Cancel-safe.
    async fn read_more(&mut self) -> Result<usize, ReadError>;
    /// Ready when `read_more` would not wait, so an idle session can wait for its peer
    /// without making the read's future (boxed, since this is a trait object). May wake
    /// spuriously; framings that cannot tell are always ready.
    fn poll_read_ready(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    /// Opens our side of a (new) stream and offers `features`.
    async fn open(&mut self, from: &str, id: &str, features: &Element) -> io::Result<()>;
    /// Sends one element (negotiation, errors built for this session).
    async fn send_element(&mut self, e: &Element) -> io::Result<()>;
    /// Sends stanzas serialized once, shared by every recipient, in this connection's wire
    /// form; each item is one stanza.
    async fn send_stanzas(&mut self, stanzas: &[WireStanza]) -> io::Result<()>;
    /// Ends our side: the stream error first, if any, preceded by an opening when ours was
    /// not sent yet (`opened` false).
    async fn close(&mut self, error: Option<&StreamError>, opened: bool) -> io::Result<()>;
    /// Keeps NATs and the peer's timers alive while nothing else is sent.
    async fn keepalive(&mut self) -> io::Result<()>;
    /// The peer starts a new stream (after SASL success).
    fn restart(&mut self);
    /// Drops buffers while idle.
    fn release_buffers(&mut self);
    /// Encrypted underneath (TLS, or a secure WebSocket).
    fn is_secure(&self) -> bool;
    /// What carries the stream, for administrators (`tcp`, `websocket`, `bosh`).
    fn transport(&self) -> &'static str {
        "tcp"
    }
    /// Whether `<starttls/>` can be offered on this connection.
    fn offers_starttls(&self) -> bool {
        false
    }
    /// Upgrades to TLS after `<proceed/>` was sent.
    async fn starttls(
        self: Box<Self>,
        _acceptor: &tokio_rustls::TlsAcceptor,
    ) -> io::Result<Box<dyn ServerFraming>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "STARTTLS is not possible on this connection",
        ))
    }
    /// Channel-binding data for SASL `-PLUS` mechanisms.
    fn channel_binding(&self, _server_cert: Option<&[u8]>) -> ChannelBindingData {
        ChannelBindingData::default()
    }
    fn wire_form(&self) -> WireForm;
}

/// The classic stream's opening (RFC 6120 §4.7).
fn stream_header(from: &str, id: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' id='{}' from='{}' \
         version='1.0' xml:lang='en'>",
        escape(id),
        escape(from)
    )
}

#[async_trait]
impl ServerFraming for XmlStream<Transport> {
    fn next_buffered(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        XmlStream::next_buffered(self)
    }

    async fn read_more(&mut self) -> Result<usize, ReadError> {
        XmlStream::read_more(self).await
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().poll_read_ready(cx)
    }

    async fn open(&mut self, from: &str, id: &str, features: &Element) -> io::Result<()> {
        let mut out = stream_header(from, id);
        out.push_str(&features.to_stream_xml(ns::CLIENT));
        self.write_bytes(out.as_bytes()).await
    }

    async fn send_element(&mut self, e: &Element) -> io::Result<()> {
        self.write_element(e, ns::CLIENT).await
    }

    async fn send_stanzas(&mut self, stanzas: &[WireStanza]) -> io::Result<()> {
        // One write for the batch: the stream form concatenates.
        match stanzas {
            [one] => self.write_bytes(one.stream_form()).await,
            many => {
                let mut buf = Vec::with_capacity(many.iter().map(WireStanza::len).sum());
                for s in many {
                    buf.extend_from_slice(s.stream_form());
                }
                self.write_bytes(&buf).await
            }
        }
    }

    async fn close(&mut self, error: Option<&StreamError>, opened: bool) -> io::Result<()> {
        let mut out = String::new();
        if let Some(e) = error {
            if !opened {
                out.push_str(&stream_header("", ""));
            }
            out.push_str(&e.to_element().to_stream_xml(ns::CLIENT));
        }
        out.push_str("</stream:stream>");
        self.write_bytes(out.as_bytes()).await?;
        self.shutdown().await
    }

    async fn keepalive(&mut self) -> io::Result<()> {
        // RFC 6120 §4.6.1: whitespace between stanzas.
        self.write_bytes(b" ").await
    }

    fn restart(&mut self) {
        XmlStream::restart(self)
    }

    fn release_buffers(&mut self) {
        XmlStream::release_buffers(self)
    }

    fn is_secure(&self) -> bool {
        self.get_ref().is_tls()
    }

    fn offers_starttls(&self) -> bool {
        !self.get_ref().is_tls()
    }

    async fn starttls(
        self: Box<Self>,
        acceptor: &tokio_rustls::TlsAcceptor,
    ) -> io::Result<Box<dyn ServerFraming>> {
        let limits = self.limits().clone();
        let tcp = match (*self).into_inner() {
            Transport::Tcp(t) => t,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "already encrypted",
                ))
            }
        };
        let tls = acceptor.accept(tcp).await?;
        Ok(Box::new(XmlStream::new(
            Transport::ServerTls(Box::new(tls)),
            limits,
        )))
    }

    fn channel_binding(&self, server_cert: Option<&[u8]>) -> ChannelBindingData {
        crate::tls::channel_binding_data(self.get_ref(), server_cert)
    }

    fn wire_form(&self) -> WireForm {
        WireForm::Stream
    }
}

/// Whole text messages, each one XML document (a WebSocket with the `xmpp` subprotocol).
#[async_trait]
pub trait MessageTransport: Send + Sync {
    /// The next message; `None` once the peer closed. Must be cancel-safe.
    async fn recv(&mut self) -> io::Result<Option<String>>;
    /// Sends one message: UTF-8 text, handed over as shared bytes so a stanza's framed
    /// form goes to every recipient without a copy.
    async fn send(&mut self, text: Bytes) -> io::Result<()>;
    /// Closes the transport after our last message.
    async fn close(&mut self) -> io::Result<()>;
    /// Keeps the transport alive (a WebSocket ping); nothing by default.
    async fn ping(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Encrypted underneath (wss, or a trusted TLS-terminating proxy).
    fn is_secure(&self) -> bool;
    /// What carries the messages, for administrators.
    fn transport(&self) -> &'static str {
        "websocket"
    }
}

/// RFC 7395 framing over a message transport.
pub struct FramedXml<M> {
    transport: M,
    limits: Limits,
    events: VecDeque<StreamEvent>,
}

impl<M: MessageTransport> FramedXml<M> {
    pub fn new(transport: M, limits: Limits) -> Self {
        FramedXml {
            transport,
            limits,
            events: VecDeque::new(),
        }
    }

    /// One received message as the event it stands for.
    fn parse_message(&self, text: &str) -> Result<StreamEvent, ParseError> {
        if text.len() > self.limits.max_stanza_size {
            return Err(ParseError::PolicyViolation(format!(
                "message larger than {} bytes",
                self.limits.max_stanza_size
            )));
        }
        // Each message declares its namespaces; nothing is inherited from a stream.
        let el = parse_fragment(text, "", &self.limits)
            .ok_or_else(|| ParseError::NotWellFormed("a message must be one element".into()))?;
        if el.is("open", FRAMING_NS) {
            return Ok(StreamEvent::Header(StreamHeader {
                // The negotiation checks a stream header's name and namespace: an `<open/>`
                // is this framing's stream header.
                name: "stream".into(),
                ns: ns::STREAM.into(),
                to: el.get_attr("to").map(str::to_string),
                from: el.get_attr("from").map(str::to_string),
                id: el.get_attr("id").map(str::to_string),
                version: el.get_attr("version").map(str::to_string),
                lang: el.get_attr_ns(ns::XML, "lang").map(str::to_string),
            }));
        }
        if el.is("close", FRAMING_NS) {
            return Ok(StreamEvent::Close);
        }
        Ok(StreamEvent::Element(el))
    }
}

/// An element as a message of its own: it declares its namespace; one in the streams
/// namespace keeps the `stream:` prefix and declares it (as RFC 7395's examples do).
fn framed_element(e: &Element) -> String {
    if *e.ns == *ns::STREAM {
        let xml = e.to_stream_xml(ns::CLIENT);
        if let Some(rest) = xml.strip_prefix(&format!("<stream:{}", e.name)) {
            return format!("<stream:{} xmlns:stream='{}'{rest}", e.name, ns::STREAM);
        }
        return xml;
    }
    // With no parent namespace the element declares its own.
    e.to_xml("")
}

/// A stanza in the stream form with `xmlns='jabber:client'` added to its top element, as
/// each framed message must declare its namespace (the stream form never has one there).
fn with_client_ns(stream_form: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(stream_form);
    // An element queued in its own namespace (stream management's `<r/>`) already declares
    // it; a second `xmlns` would not be well-formed.
    let start_tag = &text[..text.find('>').unwrap_or(text.len())];
    if start_tag.contains(" xmlns='") || start_tag.contains(" xmlns=\"") {
        return Bytes::copy_from_slice(stream_form);
    }
    // `<name` ends at the first space, `/` or `>`.
    let end = text
        .char_indices()
        .skip(1)
        .find(|(_, c)| matches!(c, ' ' | '/' | '>'))
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let (head, tail) = text.split_at(end);
    Bytes::from(format!("{head} xmlns='{}'{tail}", ns::CLIENT))
}

#[async_trait]
impl<M: MessageTransport> ServerFraming for FramedXml<M> {
    fn next_buffered(&mut self) -> Result<Option<StreamEvent>, ParseError> {
        Ok(self.events.pop_front())
    }

    async fn read_more(&mut self) -> Result<usize, ReadError> {
        let text = self.transport.recv().await?.ok_or(ReadError::Eof)?;
        let ev = self.parse_message(&text)?;
        self.events.push_back(ev);
        Ok(text.len())
    }

    async fn open(&mut self, from: &str, id: &str, features: &Element) -> io::Result<()> {
        self.transport
            .send(Bytes::from(format!(
                "<open xmlns='{FRAMING_NS}' id='{}' from='{}' version='1.0' xml:lang='en'/>",
                escape(id),
                escape(from)
            )))
            .await?;
        self.transport.send(framed_element(features).into()).await
    }

    async fn send_element(&mut self, e: &Element) -> io::Result<()> {
        self.transport.send(framed_element(e).into()).await
    }

    async fn send_stanzas(&mut self, stanzas: &[WireStanza]) -> io::Result<()> {
        for s in stanzas {
            self.transport.send(s.framed_form().clone()).await?;
        }
        Ok(())
    }

    async fn close(&mut self, error: Option<&StreamError>, opened: bool) -> io::Result<()> {
        if let Some(e) = error {
            if !opened {
                self.transport
                    .send(Bytes::from(format!(
                        "<open xmlns='{FRAMING_NS}' version='1.0'/>"
                    )))
                    .await?;
            }
            self.transport
                .send(framed_element(&e.to_element()).into())
                .await?;
        }
        self.transport
            .send(Bytes::from(format!("<close xmlns='{FRAMING_NS}'/>")))
            .await?;
        self.transport.close().await
    }

    async fn keepalive(&mut self) -> io::Result<()> {
        self.transport.ping().await
    }

    fn restart(&mut self) {
        // Every message stands alone: the new `<open/>` is all a restart takes.
        self.events.clear();
    }

    fn release_buffers(&mut self) {
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    fn transport(&self) -> &'static str {
        self.transport.transport()
    }

    fn is_secure(&self) -> bool {
        self.transport.is_secure()
    }

    fn wire_form(&self) -> WireForm {
        WireForm::Framed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_framed_form_is_shared_by_every_recipient() {
        let w = WireStanza::new(Bytes::from_static(
            b"<message to='a@b'><body>x</body></message>",
        ));
        let copy = w.clone();
        assert!(copy.shares_with(&w));
        let first = w.framed_form().clone();
        // The second recipient gets the very same buffer, not a copy.
        assert_eq!(first.as_ptr(), copy.framed_form().as_ptr());
        assert_eq!(
            &first[..],
            b"<message xmlns='jabber:client' to='a@b'><body>x</body></message>"
        );
        assert_eq!(w.len(), w.stream_form().len());
    }

    #[test]
    fn framed_stanzas_declare_their_namespace() {
        assert_eq!(
            with_client_ns(b"<message to='a@b'><body>x</body></message>"),
            "<message xmlns='jabber:client' to='a@b'><body>x</body></message>"
        );
        assert_eq!(
            with_client_ns(b"<presence/>"),
            "<presence xmlns='jabber:client'/>"
        );
        assert_eq!(
            with_client_ns(b"<iq type='get'/>"),
            "<iq xmlns='jabber:client' type='get'/>"
        );
        // Already in its own namespace: left as it is.
        assert_eq!(
            with_client_ns(b"<r xmlns='urn:xmpp:sm:3'/>"),
            "<r xmlns='urn:xmpp:sm:3'/>"
        );
        // A prefix declaration is not a default namespace.
        assert_eq!(
            with_client_ns(b"<message xmlns:x='urn:x'><x:y/></message>"),
            "<message xmlns='jabber:client' xmlns:x='urn:x'><x:y/></message>"
        );
        let features = Element::new("features", ns::STREAM).child(Element::new("bind", ns::BIND));
        assert_eq!(
            framed_element(&features),
            "<stream:features xmlns:stream='http://etherx.jabber.org/streams'>\
             <bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
        );
        let auth = Element::new("success", ns::SASL);
        assert_eq!(
            framed_element(&auth),
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        );
    }
}
