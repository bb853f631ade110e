//! What every scenario does on a connection: log in (through confab-stream's client
//! negotiation), answer the server's IQs, ping, close, and the message bodies that carry a
//! sequence number and a send time.

use crate::opts::Target;
use crate::BenchError;
use confab_proto::ns;
use confab_proto::parser::StreamEvent;
use confab_proto::xml::{escape, Element};
use confab_stream::client::{connect, connect_unauthenticated, ClientError, ClientSession};
use confab_stream::{Transport, XmlStream};
use std::time::{Duration, Instant};

/// Logs in as account `i` with this resource, within the target's timeout.
pub async fn login(t: &Target, i: usize, resource: String) -> Result<ClientSession, BenchError> {
    let opts = t.client_options(i, resource);
    match tokio::time::timeout(t.timeout, connect(&opts)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(BenchError::Client(e)),
        Err(_) => Err(BenchError::Timeout("login")),
    }
}

/// Logs in and sends initial presence (what a real client does before chatting).
pub async fn login_available(
    t: &Target,
    i: usize,
    resource: String,
) -> Result<ClientSession, BenchError> {
    let mut s = login(t, i, resource).await?;
    write_raw(&mut s, PRESENCE, t.timeout).await?;
    Ok(s)
}

/// Initial presence, preformatted.
pub const PRESENCE: &str = "<presence/>";

/// Writes preformatted stanza bytes within the timeout.
pub async fn write_raw(
    s: &mut ClientSession,
    data: &str,
    timeout: Duration,
) -> Result<(), BenchError> {
    match tokio::time::timeout(timeout, s.stream.write_bytes(data.as_bytes())).await {
        Ok(r) => r.map_err(|e| BenchError::Client(ClientError::Io(e))),
        Err(_) => Err(BenchError::Timeout("write")),
    }
}

/// Closes the stream politely, waiting (within the timeout) for the server's close.
pub async fn close(s: ClientSession, timeout: Duration) -> Result<(), BenchError> {
    match tokio::time::timeout(timeout, s.close()).await {
        Ok(r) => r.map_err(BenchError::Client),
        Err(_) => Err(BenchError::Timeout("close")),
    }
}

/// The roster namespace (RFC 6121).
pub const ROSTER: &str = "jabber:iq:roster";
/// The Multi-User Chat namespaces (XEP-0045).
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// Occupant information in room presence (XEP-0045).
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// Room configuration by its owner (XEP-0045).
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";

/// The reply a client owes the server for an incoming IQ request: a XEP-0199 ping and a
/// roster push (RFC 6121 §2.1.6) are acknowledged (servers ping idle clients and push
/// roster changes), anything else gets `service-unavailable`.
/// `None` for everything that is not an IQ request.
pub fn reply_to_request(e: &Element) -> Option<String> {
    if e.name != "iq" || !matches!(e.get_attr("type"), Some("get" | "set")) {
        return None;
    }
    let id = escape(e.get_attr("id").unwrap_or_default());
    let to = e
        .get_attr("from")
        .map(|f| format!(" to='{}'", escape(f)))
        .unwrap_or_default();
    if e.get_child("ping", ns::PING).is_some() || e.get_child("query", ROSTER).is_some() {
        Some(format!("<iq type='result' id='{id}'{to}/>"))
    } else {
        Some(format!(
            "<iq type='error' id='{id}'{to}><error type='cancel'>\
             <service-unavailable xmlns='{}'/></error></iq>",
            ns::STANZAS
        ))
    }
}

/// A XEP-0199 ping to the session's own server.
pub fn ping_request(domain: &str, id: &str) -> String {
    format!(
        "<iq type='get' id='{}' to='{}'><ping xmlns='{}'/></iq>",
        escape(id),
        escape(domain),
        ns::PING
    )
}

/// Sends a ping to the server and waits for its result, answering the server's own
/// requests meanwhile. `Ok(true)` for a result, `Ok(false)` for an error reply.
pub async fn ping(
    s: &mut ClientSession,
    domain: &str,
    timeout: Duration,
) -> Result<bool, BenchError> {
    let id = "bench-ping";
    let deadline = tokio::time::Instant::now() + timeout;
    write_raw(s, &ping_request(domain, id), timeout).await?;
    loop {
        let e = match tokio::time::timeout_at(deadline, s.recv()).await {
            Ok(r) => r.map_err(BenchError::Client)?,
            Err(_) => return Err(BenchError::Timeout("ping")),
        };
        if e.name == "iq" && e.get_attr("id") == Some(id) {
            return Ok(e.get_attr("type") == Some("result"));
        }
        if let Some(reply) = reply_to_request(&e) {
            write_raw(s, &reply, timeout).await?;
        }
    }
}

/// A chat message body: `cb <sender> <seq> <sent_ns> [padding]`, where `sent_ns` is the
/// (intended) send time in nanoseconds since the run's epoch. Both ends are in this
/// process, so one clock measures the latency exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Body {
    /// The pair (or session) that sent the message.
    pub sender: u32,
    /// The sender's sequence number, from 0.
    pub seq: u64,
    /// The (intended) send time, nanoseconds since the run's epoch.
    pub sent_ns: u64,
}

impl Body {
    /// The body text, with `padding` bytes of `x` after the fields.
    pub fn format(&self, padding: usize) -> String {
        let mut s = format!("cb {} {} {}", self.sender, self.seq, self.sent_ns);
        if padding > 0 {
            s.push(' ');
            s.extend(std::iter::repeat_n('x', padding));
        }
        s
    }

    /// Parses a body this tool wrote; anything else (a server's welcome message, a body
    /// changed in transit) is `None` and counted apart by the caller.
    pub fn parse(text: &str) -> Option<Body> {
        let mut it = text.split_ascii_whitespace();
        if it.next()? != "cb" {
            return None;
        }
        let sender = it.next()?.parse().ok()?;
        let seq = it.next()?.parse().ok()?;
        let sent_ns = it.next()?.parse().ok()?;
        Some(Body {
            sender,
            seq,
            sent_ns,
        })
    }
}

/// Formats a chat message to a full JID.
pub fn message(to: &str, body: &Body, padding: usize) -> String {
    format!(
        "<message type='chat' to='{}'><body>{}</body></message>",
        escape(to),
        body.format(padding)
    )
}

/// Nanoseconds from `epoch` to `t` (0 if `t` is earlier).
pub fn since(epoch: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// An unauthenticated stream (for in-band registration): TLS as the target asks, the
/// stream opened, its features read (`client::connect_unauthenticated`).
pub struct PreAuth {
    /// The stream, ready for pre-authentication requests.
    pub stream: XmlStream<Transport>,
    /// The features the server offered on it.
    pub features: Element,
}

impl PreAuth {
    /// Connects and negotiates up to the (encrypted, if asked) stream's features.
    pub async fn connect(t: &Target) -> Result<PreAuth, BenchError> {
        let opts = t.client_options(0, String::new());
        let (stream, features) = connect_unauthenticated(&opts)
            .await
            .map_err(BenchError::Client)?;
        Ok(PreAuth { stream, features })
    }

    /// Sends preformatted bytes.
    pub async fn send(&mut self, data: &str) -> Result<(), BenchError> {
        self.stream
            .write_bytes(data.as_bytes())
            .await
            .map_err(|e| BenchError::Client(ClientError::Io(e)))
    }

    /// The next element; a stream error becomes an error.
    pub async fn recv(&mut self) -> Result<Element, BenchError> {
        let e = self
            .stream
            .next_element()
            .await
            .map_err(|e| BenchError::Client(e.into()))?;
        if let Some(err) = confab_proto::StreamError::from_element(&e) {
            return Err(BenchError::Client(ClientError::Stream(err)));
        }
        Ok(e)
    }

    /// Ends the stream without waiting long for the server's answer.
    pub async fn close(mut self) {
        let _ = self.stream.write_bytes(b"</stream:stream>").await;
        let wait = async {
            loop {
                match self.stream.next_event().await {
                    Ok(StreamEvent::Close) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip() {
        let b = Body {
            sender: 7,
            seq: 123_456,
            sent_ns: 9_876_543_210,
        };
        assert_eq!(Body::parse(&b.format(0)), Some(b));
        assert_eq!(Body::parse(&b.format(32)), Some(b));
        assert_eq!(b.format(3), "cb 7 123456 9876543210 xxx");
        for bad in ["", "hello", "cb 1 2", "cb x 2 3", "xb 1 2 3", "cb 1 -2 3"] {
            assert_eq!(Body::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn requests_are_answered() {
        let ping = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "p'1")
            .attr("from", "localhost")
            .child(Element::new("ping", ns::PING));
        let r = reply_to_request(&ping).expect("reply");
        assert_eq!(r, "<iq type='result' id='p&apos;1' to='localhost'/>");
        let other = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "v")
            .child(Element::new("query", ns::VERSION));
        let r = reply_to_request(&other).expect("reply");
        assert!(
            r.contains("service-unavailable") && r.contains("type='error'"),
            "{r}"
        );
        let push = Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", "push1")
            .child(Element::new("query", ROSTER));
        assert_eq!(
            reply_to_request(&push).as_deref(),
            Some("<iq type='result' id='push1'/>")
        );
        let result = Element::new("iq", ns::CLIENT).attr("type", "result");
        assert_eq!(reply_to_request(&result), None);
        assert_eq!(reply_to_request(&Element::new("message", ns::CLIENT)), None);
    }

    #[test]
    fn messages_escape_addresses() {
        let m = message(
            "a@b/<r>",
            &Body {
                sender: 0,
                seq: 1,
                sent_ns: 2,
            },
            0,
        );
        assert_eq!(
            m,
            "<message type='chat' to='a@b/&lt;r&gt;'><body>cb 0 1 2</body></message>"
        );
    }
}
