//! Client side of stream negotiation (RFC 6120): TLS (STARTTLS or direct, XEP-0368), SASL
//! SCRAM/PLAIN with channel binding, and resource binding. The server's tests, the bench
//! tool and the client SDK all log in through this one implementation.

use crate::tls::{channel_binding_data, client_config, CertVerification};
use crate::transport::Transport;
use crate::xmlstream::{ReadError, XmlStream};
use base64::Engine;
use confab_proto::jid::FullJid;
use confab_proto::ns;
use confab_proto::parser::{Limits, StreamEvent};
use confab_proto::sasl::{encode_plain, ChannelBindingType, Mechanism, ScramClient};
use confab_proto::xml::Element;
use confab_proto::StreamError;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use tokio::net::TcpStream;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP, then STARTTLS (required: the client refuses to go on without it).
    StartTls,
    /// TLS from the first byte (XEP-0368, port 5223).
    Direct,
    /// Never TLS; only for testing a server's refusal paths.
    None,
}

#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub addr: SocketAddr,
    pub domain: String,
    pub username: String,
    pub password: String,
    pub resource: Option<String>,
    pub tls: TlsMode,
    pub verify: CertVerification,
    /// Use this mechanism (it must be offered); otherwise the strongest offered.
    pub mechanism: Option<Mechanism>,
    pub authzid: Option<String>,
    /// The channel-binding type for -PLUS mechanisms; by default tls-exporter when the
    /// connection has it (TLS 1.3), else tls-server-end-point.
    pub channel_binding: Option<ChannelBindingType>,
    /// Log every element sent and received, secrets redacted (see [`crate::traffic`]).
    pub log_traffic: bool,
}

impl ClientOptions {
    pub fn new(addr: SocketAddr, domain: &str, username: &str, password: &str) -> Self {
        ClientOptions {
            addr,
            domain: domain.to_string(),
            username: username.to_string(),
            password: password.to_string(),
            resource: None,
            tls: TlsMode::StartTls,
            // Checked against the system's roots unless the caller says otherwise (tests
            // and tools talking to a self-signed server set `Insecure` or `Roots`).
            verify: CertVerification::System,
            mechanism: None,
            authzid: None,
            channel_binding: None,
            log_traffic: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("read: {0}")]
    Read(#[from] ReadError),
    #[error("stream error from server: {0}")]
    Stream(StreamError),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A negotiated, authenticated and bound client stream.
pub struct ClientSession {
    pub stream: XmlStream<Transport>,
    pub jid: FullJid,
    /// The mechanism that authenticated this session.
    pub mechanism: Mechanism,
    /// The stream features offered after authentication (what the session may use:
    /// stream management, roster versioning, …).
    pub features: Element,
}

pub fn stream_header(domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
         xmlns:stream='http://etherx.jabber.org/streams' to='{}' version='1.0' xml:lang='en'>",
        confab_proto::xml::escape(domain)
    )
}

impl ClientSession {
    pub async fn send(&mut self, e: &Element) -> Result<(), ClientError> {
        Ok(self.stream.write_element(e, ns::CLIENT).await?)
    }

    /// Next top-level element; a `<stream:error/>` becomes `ClientError::Stream`.
    pub async fn recv(&mut self) -> Result<Element, ClientError> {
        let e = self.stream.next_element().await?;
        if let Some(err) = StreamError::from_element(&e) {
            return Err(ClientError::Stream(err));
        }
        Ok(e)
    }

    /// Closes the stream politely and waits for the server's close.
    pub async fn close(mut self) -> Result<(), ClientError> {
        self.stream.write_bytes(b"</stream:stream>").await?;
        loop {
            match self.stream.next_event().await {
                Ok(StreamEvent::Close) | Err(ReadError::Eof) => break,
                Ok(_) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let _ = self.stream.shutdown().await;
        Ok(())
    }
}

async fn open_stream(s: &mut XmlStream<Transport>, domain: &str) -> Result<Element, ClientError> {
    s.write_bytes(stream_header(domain).as_bytes()).await?;
    match s.next_event().await? {
        StreamEvent::Header(h) if h.ns == ns::STREAM && h.name == "stream" => {}
        StreamEvent::Header(_) => return Err(ClientError::Protocol("bad stream header".into())),
        other => {
            return Err(ClientError::Protocol(format!(
                "expected header, got {other:?}"
            )))
        }
    }
    let features = s.next_element().await?;
    if let Some(err) = StreamError::from_element(&features) {
        return Err(ClientError::Stream(err));
    }
    if !features.is("features", ns::STREAM) {
        return Err(ClientError::Protocol("expected stream features".into()));
    }
    Ok(features)
}

async fn tls_connect(
    tcp: TcpStream,
    opts: &ClientOptions,
    alpn: bool,
) -> Result<Transport, ClientError> {
    let cfg = client_config(&opts.verify, alpn).map_err(|e| ClientError::Tls(e.to_string()))?;
    let name =
        ServerName::try_from(opts.domain.clone()).map_err(|e| ClientError::Tls(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(Transport::ClientTls(Box::new(tls)))
}

/// Connects and negotiates TLS as `opts.tls` asks, up to the features of the (encrypted)
/// stream, before any authentication: what in-band registration (XEP-0077) starts from.
/// `username` and `password` are not used.
pub async fn connect_unauthenticated(
    opts: &ClientOptions,
) -> Result<(XmlStream<Transport>, Element), ClientError> {
    let limits = Limits::default();
    let tcp = TcpStream::connect(opts.addr).await?;
    tcp.set_nodelay(true)?;
    let transport = match opts.tls {
        TlsMode::Direct => tls_connect(tcp, opts, true).await?,
        _ => Transport::Tcp(tcp),
    };
    let mut s = XmlStream::new(transport, limits.clone());
    s.set_log_traffic(opts.log_traffic);
    let mut features = open_stream(&mut s, &opts.domain).await?;

    if opts.tls == TlsMode::StartTls {
        if features.get_child("starttls", ns::TLS).is_none() {
            return Err(ClientError::Tls("server does not offer STARTTLS".into()));
        }
        s.write_element(&Element::new("starttls", ns::TLS), ns::CLIENT)
            .await?;
        let answer = s.next_element().await?;
        if !answer.is("proceed", ns::TLS) {
            return Err(ClientError::Tls(format!("STARTTLS refused: {answer}")));
        }
        let tcp = match s.into_inner() {
            Transport::Tcp(t) => t,
            _ => return Err(ClientError::Tls("already encrypted".into())),
        };
        s = XmlStream::new(tls_connect(tcp, opts, false).await?, limits);
        s.set_log_traffic(opts.log_traffic);
        features = open_stream(&mut s, &opts.domain).await?;
    }
    Ok((s, features))
}

/// An authenticated stream, restarted after SASL, before any resource is bound: where a
/// client either binds a new resource ([`bind`]) or resumes an earlier session (XEP-0198).
pub struct Authenticated {
    pub stream: XmlStream<Transport>,
    /// The features of the restarted stream (bind, stream management, …).
    pub features: Element,
    /// The mechanism that authenticated this stream.
    pub mechanism: Mechanism,
}

/// Connects, negotiates TLS and authenticates, up to the features of the restarted stream.
pub async fn connect_authenticated(opts: &ClientOptions) -> Result<Authenticated, ClientError> {
    let (mut s, features) = connect_unauthenticated(opts).await?;
    let mechanism = authenticate(&mut s, &features, opts).await?;
    s.restart();
    let features = open_stream(&mut s, &opts.domain).await?;
    Ok(Authenticated {
        stream: s,
        features,
        mechanism,
    })
}

/// Binds a resource (`resource`, or one the server picks) on an authenticated stream.
pub async fn bind(
    auth: Authenticated,
    resource: Option<&str>,
) -> Result<ClientSession, ClientError> {
    let Authenticated {
        stream: mut s,
        features,
        mechanism,
    } = auth;
    if features.get_child("bind", ns::BIND).is_none() {
        return Err(ClientError::Protocol(
            "server offers no resource binding".into(),
        ));
    }
    let mut bind = Element::new("bind", ns::BIND);
    if let Some(r) = resource {
        bind.push_child(Element::new("resource", ns::BIND).text(r.to_string()));
    }
    let iq = Element::new("iq", ns::CLIENT)
        .attr("type", "set")
        .attr("id", "bind-1")
        .child(bind);
    s.write_element(&iq, ns::CLIENT).await?;
    let reply = s.next_element().await?;
    if let Some(err) = StreamError::from_element(&reply) {
        return Err(ClientError::Stream(err));
    }
    if reply.get_attr("type") != Some("result") {
        return Err(ClientError::Protocol(format!("bind failed: {reply}")));
    }
    let jid_text = reply
        .get_child("bind", ns::BIND)
        .and_then(|b| b.get_child("jid", ns::BIND))
        .map(|j| j.text_content())
        .ok_or_else(|| ClientError::Protocol("bind result without jid".into()))?;
    let jid = FullJid::new(&jid_text)
        .map_err(|_| ClientError::Protocol(format!("server bound an invalid JID {jid_text}")))?;
    Ok(ClientSession {
        stream: s,
        jid,
        mechanism,
        features,
    })
}

/// Connects, negotiates TLS, authenticates and binds a resource.
pub async fn connect(opts: &ClientOptions) -> Result<ClientSession, ClientError> {
    let auth = connect_authenticated(opts).await?;
    bind(auth, opts.resource.as_deref()).await
}

fn offered_mechanisms(features: &Element) -> Vec<String> {
    features
        .get_child("mechanisms", ns::SASL)
        .map(|m| {
            m.elements()
                .filter(|e| e.name == "mechanism")
                .map(|e| e.text_content().trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn authenticate(
    s: &mut XmlStream<Transport>,
    features: &Element,
    opts: &ClientOptions,
) -> Result<Mechanism, ClientError> {
    let offered = offered_mechanisms(features);
    let cb = channel_binding_data(s.get_ref(), None);
    let server_plus = offered.iter().any(|m| m.ends_with("-PLUS"));
    let usable = |m: Mechanism| -> bool {
        offered.iter().any(|o| o == m.name())
            && (!m.is_plus() || cb.tls_exporter.is_some() || cb.tls_server_end_point.is_some())
            && (m != Mechanism::Plain || s.get_ref().is_tls())
    };
    let mech = match opts.mechanism {
        Some(m) if offered.iter().any(|o| o == m.name()) => m,
        Some(m) => return Err(ClientError::Auth(format!("{} not offered", m.name()))),
        None => Mechanism::ALL
            .into_iter()
            .find(|m| usable(*m))
            .ok_or_else(|| ClientError::Auth(format!("no usable mechanism in {offered:?}")))?,
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let auth = |mech: Mechanism, data: &[u8]| {
        let text = if data.is_empty() {
            "=".to_string()
        } else {
            b64.encode(data)
        };
        Element::new("auth", ns::SASL)
            .attr("mechanism", mech.name())
            .text(text)
    };
    if mech == Mechanism::Plain {
        let data = encode_plain(opts.authzid.as_deref(), &opts.username, &opts.password);
        s.write_element(&auth(mech, &data), ns::CLIENT).await?;
        let answer = s.next_element().await?;
        return if answer.is("success", ns::SASL) {
            Ok(mech)
        } else {
            Err(ClientError::Auth(failure_text(&answer)))
        };
    }
    let binding = if mech.is_plus() {
        match (
            opts.channel_binding,
            &cb.tls_exporter,
            &cb.tls_server_end_point,
        ) {
            (Some(ChannelBindingType::TlsServerEndPoint), _, Some(d)) => {
                Some((ChannelBindingType::TlsServerEndPoint, d.clone()))
            }
            (Some(ChannelBindingType::TlsServerEndPoint), _, None) => None,
            (_, Some(d), _) => Some((ChannelBindingType::TlsExporter, d.clone())),
            (_, None, Some(d)) => Some((ChannelBindingType::TlsServerEndPoint, d.clone())),
            _ => None,
        }
    } else {
        None
    };
    let mut client = ScramClient::new(
        mech,
        &opts.username,
        &opts.password,
        opts.authzid.as_deref(),
        binding,
        server_plus,
    )
    .map_err(|e| ClientError::Auth(e.as_str().to_string()))?;
    let first = client.client_first();
    s.write_element(&auth(mech, &first), ns::CLIENT).await?;
    let challenge = s.next_element().await?;
    if !challenge.is("challenge", ns::SASL) {
        return Err(ClientError::Auth(failure_text(&challenge)));
    }
    let server_first = b64
        .decode(challenge.text_content().trim())
        .map_err(|_| ClientError::Auth("bad base64 in challenge".into()))?;
    let client_final = client
        .handle_server_first(&server_first)
        .map_err(|e| ClientError::Auth(e.as_str().to_string()))?;
    let response = Element::new("response", ns::SASL).text(b64.encode(client_final));
    s.write_element(&response, ns::CLIENT).await?;
    let answer = s.next_element().await?;
    if !answer.is("success", ns::SASL) {
        return Err(ClientError::Auth(failure_text(&answer)));
    }
    let server_final = b64
        .decode(answer.text_content().trim())
        .map_err(|_| ClientError::Auth("bad base64 in success".into()))?;
    client
        .verify_server_final(&server_final)
        .map_err(|_| ClientError::Auth("server signature did not verify".into()))?;
    Ok(mech)
}

fn failure_text(e: &Element) -> String {
    if e.is("failure", ns::SASL) {
        e.elements()
            .find(|c| c.name != "text")
            .map(|c| c.name.clone())
            .unwrap_or_else(|| "failure".into())
    } else {
        e.to_string()
    }
}
