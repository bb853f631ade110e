//! Client-to-server sessions: one task per connection, from the first byte to the close.
//!
//! Negotiation follows RFC 6120 exactly: stream header checks, STARTTLS (required by
//! default), SASL (SCRAM with channel binding, PLAIN only over TLS), stream restarts, and
//! resource binding. A bound session then reads stanzas, stamps their `from`, and hands them
//! to the router, while its bounded outbound queue is written back to the socket.

use crate::config::ResourceConflict;
use crate::module::LifecycleListener;
use crate::router::{self, BindError};
use crate::session::{self, Session, SessionInfo};
use crate::ServerCtx;
use base64::Engine;
use confab_proto::error::{StanzaError, StanzaErrorCondition, StreamError, StreamErrorCondition};
use confab_proto::jid::{BareJid, FullJid, Jid};
use confab_proto::ns;
use confab_proto::parser::{StreamEvent, StreamHeader};
use confab_proto::sasl::{
    parse_plain, ChannelBindingData, Mechanism, SaslFailure, ScramCredentials, ScramServer,
};
use confab_proto::stanza::{error_reply_for, IqType, Stanza, StanzaKind, StanzaParseError};
use confab_proto::xml::Element;
use confab_stream::{ReadError, ServerFraming, Transport, XmlStream};
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Why a session's loop stopped.
enum End {
    /// Send this stream error, then close.
    Error(StreamError),
    /// The peer closed its stream: close ours.
    PeerClosed,
    /// The connection is gone (EOF, I/O error): nothing more can be sent.
    Gone,
    /// The session was ended on request (conflict, deletion, slow reader) while the
    /// connection was mid-stanza: it is dropped without a stream error, and the session
    /// is not kept for resumption.
    Cut,
}

impl From<StreamErrorCondition> for End {
    fn from(c: StreamErrorCondition) -> Self {
        End::Error(StreamError::new(c))
    }
}

impl From<ReadError> for End {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Parse(p) => {
                tracing::info!(error = %p, "closing stream on bad input");
                End::Error(StreamError::with_text(p.condition(), p.to_string()))
            }
            ReadError::Eof => End::Gone,
            ReadError::Io(_) => End::Gone,
        }
    }
}

impl From<std::io::Error> for End {
    fn from(_: std::io::Error) -> Self {
        End::Gone
    }
}

struct C2s {
    ctx: ServerCtx,
    conn: u64,
    /// The connection; `None` only while STARTTLS swaps it.
    stream: Option<Box<dyn ServerFraming>>,
    secure: bool,
    domain: Option<String>,
    header_sent: bool,
    authenticated: Option<BareJid>,
    /// The authenticated account's generation: binding re-checks it, so a stream of an
    /// account deleted (and perhaps registered anew) meanwhile never binds.
    generation: i64,
    /// Fires when the authenticated account is deleted before this stream binds.
    deleted: Option<Arc<tokio::sync::Notify>>,
    auth_failures: u32,
    session: Option<Arc<SessionInfo>>,
    /// The session's `detach_epoch` when this connection took it: older detach requests
    /// (a resumption that lost the race for it) are not for this connection.
    detach_since: u64,
    /// The session once bound (or resumed), until the session loop takes it: whatever ends
    /// the negotiation after that (a failed write, the handshake timeout) ends it properly.
    bound: Option<Session>,
    trace: bool,
    peer: SocketAddr,
    /// Per-connection state of pre-authentication IQ handlers.
    pre_auth_state: std::collections::HashMap<String, String>,
}

/// Serves one TCP client connection (STARTTLS or direct TLS) until it ends. (A plain `fn`
/// returning the future: an `async fn` would keep its arguments beside the future made of
/// them, in every connection's task.)
pub fn serve(
    ctx: ServerCtx,
    tcp: TcpStream,
    peer: SocketAddr,
    direct_tls: bool,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    let conn = ctx.router.next_session_id();
    in_span(conn, peer, async move {
        let _ = tcp.set_nodelay(true);
        let limits = ctx.config.limits.parser_limits();
        let transport = if direct_tls {
            let acceptor = ctx.tls.direct.clone();
            let handshake = Duration::from_secs(ctx.config.c2s.handshake_timeout.max(1));
            // Boxed, like every phase that runs once or briefly: an idle connection's task
            // then holds only the waiting loop's state, not the largest phase's.
            match tokio::time::timeout(handshake, Box::pin(acceptor.accept(tcp))).await {
                Ok(Ok(tls)) => Transport::ServerTls(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::info!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!("TLS handshake timed out");
                    return;
                }
            }
        } else {
            Transport::Tcp(tcp)
        };
        let framing: Box<dyn ServerFraming> = Box::new(XmlStream::new(transport, limits));
        run_session(ctx, conn, framing, peer, shutdown).await;
    })
}

/// Serves a client connection of any framing (TCP, WebSocket, …): the same negotiation and
/// session, whatever carries them. Transports other than TCP call this.
pub fn serve_framing(
    ctx: ServerCtx,
    framing: Box<dyn ServerFraming>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    let conn = ctx.router.next_session_id();
    in_span(conn, peer, run_session(ctx, conn, framing, peer, shutdown))
}

pin_project_lite::pin_project! {
    /// A connection's future inside its `c2s` span (`conn`, `peer`), made anew for each
    /// poll. A span kept for the connection's whole life would hold its slot and formatted
    /// fields in the subscriber for every idle session; made per poll, it costs memory only
    /// while the task runs, and the log lines read the same. A struct rather than an
    /// `async fn`, whose state would hold the wrapped future twice (argument and local).
    struct InSpan<F> {
        conn: u64,
        peer: SocketAddr,
        #[pin]
        inner: F,
    }
}

fn in_span<F: std::future::Future>(conn: u64, peer: SocketAddr, inner: F) -> InSpan<F> {
    InSpan { conn, peer, inner }
}

impl<F: std::future::Future> std::future::Future for InSpan<F> {
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let this = self.project();
        let _span = tracing::info_span!("c2s", conn = *this.conn, peer = %this.peer).entered();
        this.inner.poll(cx)
    }
}

impl C2s {
    /// A connection's state before its stream header (`stream` is `None` only in tests
    /// that measure the state without a connection).
    fn new(
        ctx: ServerCtx,
        conn: u64,
        stream: Option<Box<dyn ServerFraming>>,
        peer: SocketAddr,
    ) -> C2s {
        C2s {
            trace: ctx.config.log.xml_trace,
            ctx,
            conn,
            secure: stream.as_ref().is_some_and(|f| f.is_secure()),
            stream,
            domain: None,
            header_sent: false,
            authenticated: None,
            generation: 0,
            deleted: None,
            auth_failures: 0,
            session: None,
            detach_since: 0,
            bound: None,
            peer,
            pre_auth_state: Default::default(),
        }
    }
}

/// The connection's session state, built before the future so the future holds it once
/// (an `async fn` would also keep the arguments it was built from).
fn run_session(
    ctx: ServerCtx,
    conn: u64,
    framing: Box<dyn ServerFraming>,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send {
    let mut s = C2s::new(ctx, conn, Some(framing), peer);
    async move {
        tracing::debug!("connected");
        s.run(shutdown).await;
        tracing::debug!("disconnected");
    }
}

impl C2s {
    fn stream(&mut self) -> Result<&mut Box<dyn ServerFraming>, End> {
        self.stream.as_mut().ok_or(End::Gone)
    }

    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) {
        let deadline = Duration::from_secs(self.ctx.config.c2s.handshake_timeout.max(1));
        let negotiated = tokio::time::timeout(deadline, Box::pin(self.negotiate())).await;
        if let Some(account) = &self.authenticated {
            self.ctx.router.forget_authenticated(account, self.conn);
        }
        let bound = self.bound.take();
        let mut session = match (negotiated, bound) {
            (Ok(Ok(())), Some(session)) => session,
            (negotiated, bound) => {
                // Bound (or resumed) but the negotiation did not complete: the session ends
                // here, with whatever was queued for it.
                if let Some(s) = bound {
                    self.session = None;
                    crate::detach::end_session(&self.ctx, s).await;
                }
                let end = match negotiated {
                    Err(_) => End::Error(StreamError::with_text(
                        StreamErrorCondition::ConnectionTimeout,
                        "negotiation took too long",
                    )),
                    Ok(Err(end)) => end,
                    Ok(Ok(())) => End::Gone,
                };
                return self.finish(end).await;
            }
        };
        let end = self.established(&mut session, &mut shutdown).await;
        self.session = None;
        // A connection that just went away may leave its session parked for a new one
        // (stream management); otherwise the session ends with it.
        let resumable = session.info.resume_timeout().is_some() && !*shutdown.borrow();
        // Only a lost connection parks; a session ended on request (End::Cut) ends.
        if matches!(end, End::Gone) && resumable {
            crate::detach::park(&self.ctx, session);
            return;
        }
        crate::detach::end_session(&self.ctx, session).await;
        self.finish(end).await;
    }

    /// Closes our side of the connection (with the stream error, if any).
    async fn finish(&mut self, end: End) {
        let error = match end {
            End::Gone | End::Cut => return,
            End::PeerClosed => None,
            End::Error(e) => {
                tracing::info!(condition = %e.condition, "sending stream error");
                if self.trace {
                    tracing::info!(target: "confab::xmltrace", conn = self.conn, "-> {}", e.to_element().to_stream_xml(ns::CLIENT));
                }
                Some(e)
            }
        };
        let opened = self.header_sent;
        if let Ok(stream) = self.stream() {
            let close = stream.close(error.as_ref(), opened);
            let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
        }
    }

    /// The domain our stream is from: the one the client asked for, else the first served.
    fn stream_from(&self) -> String {
        self.domain
            .clone()
            .or_else(|| self.ctx.config.server.domains.first().cloned())
            .unwrap_or_default()
    }

    fn trace_in(&self, e: &Element) {
        if self.trace {
            tracing::info!(target: "confab::xmltrace", conn = self.conn, "<- {}", redact(e));
        }
    }

    /// Writes one element now (negotiation, and replies a bound session's own input gets
    /// directly). A client that does not read gets `write_timeout`, then the connection is
    /// dropped; a bound session's connection is dropped at once when a resumption on a
    /// new connection asks for the session, so that does not wait behind the blocked write.
    async fn send(&mut self, e: &Element) -> Result<(), End> {
        if self.trace {
            tracing::info!(target: "confab::xmltrace", conn = self.conn, "-> {}", redact(e));
        }
        let limit = Duration::from_secs(self.ctx.config.c2s.write_timeout.max(1));
        let session = self.session.clone();
        let since = self.detach_since;
        let detach = async {
            match &session {
                Some(info) => info.detach_requested(since).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // A write that can complete does; only a blocked one is cut.
            biased;
            r = tokio::time::timeout(limit, self.stream()?.send_element(e)) => match r {
                Ok(r) => Ok(r?),
                Err(_) => {
                    tracing::info!("closing a connection whose writes are blocked");
                    Err(End::Gone)
                }
            },
            _ = detach => {
                tracing::info!("a new connection resumes this session; dropping this one");
                Err(End::Gone)
            }
        }
    }

    /// Waits for the next event on the connection.
    async fn next_event(&mut self) -> Result<StreamEvent, End> {
        let stream = self.stream()?;
        loop {
            if let Some(ev) = stream.next_buffered().map_err(ReadError::Parse)? {
                return Ok(ev);
            }
            stream.read_more().await?;
        }
    }

    /// Reads a stream header and answers it with ours and the features of this stage.
    async fn open_stream(&mut self) -> Result<(), End> {
        self.header_sent = false;
        let header = match self.next_event().await? {
            StreamEvent::Header(h) => h,
            _ => return Err(StreamErrorCondition::NotWellFormed.into()),
        };
        self.check_header(&header)?;
        // Nothing a client could do here (no TLS underneath, none to start, no mechanism
        // allowed without it): say so, rather than offer empty features it would wait on.
        let can_starttls = self.stream.as_ref().is_some_and(|s| s.offers_starttls());
        if self.authenticated.is_none()
            && !self.secure
            && !can_starttls
            && self.offered_mechanisms().is_empty()
        {
            tracing::info!("refusing an unencrypted stream that cannot authenticate");
            return Err(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "encryption is required: connect over TLS",
            )
            .into());
        }
        let features = self.features();
        let from = self.stream_from();
        let id: String = {
            let mut rng = rand::thread_rng();
            (0..16)
                .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
                .collect()
        };
        self.header_sent = true;
        if self.trace {
            tracing::info!(target: "confab::xmltrace", conn = self.conn, "-> (stream {id} from {from}) {}", features.to_stream_xml(ns::CLIENT));
        }
        self.stream()?.open(&from, &id, &features).await?;
        Ok(())
    }

    fn check_header(&mut self, h: &StreamHeader) -> Result<(), End> {
        if h.name != "stream" || h.ns != ns::STREAM {
            return Err(StreamErrorCondition::InvalidNamespace.into());
        }
        let to = h.to.as_deref().unwrap_or("");
        let to = Jid::new(to)
            .ok()
            .filter(|j| j.node().is_none() && j.resource().is_none())
            .map(|j| j.domain().to_string());
        match (&to, &self.domain) {
            (Some(d), None) if self.ctx.config.is_local_domain(d) => self.domain = Some(d.clone()),
            (Some(d), Some(prev)) if d == prev => {}
            _ => return Err(StreamErrorCondition::HostUnknown.into()),
        }
        // RFC 6120 §4.7.5: no version means pre-1.0, which we do not speak.
        let major = h
            .version
            .as_deref()
            .and_then(|v| v.split('.').next())
            .and_then(|m| m.parse::<u32>().ok());
        match major {
            Some(m) if m >= 1 => Ok(()),
            _ => Err(StreamErrorCondition::UnsupportedVersion.into()),
        }
    }

    /// Channel-binding data of this connection (empty without TLS underneath).
    fn channel_binding(&self) -> ChannelBindingData {
        match self.stream.as_ref() {
            Some(s) if self.secure => s.channel_binding(Some(&self.ctx.tls.leaf_der)),
            _ => ChannelBindingData::default(),
        }
    }

    fn offered_mechanisms(&self) -> Vec<Mechanism> {
        let c2s = &self.ctx.config.c2s;
        // -PLUS only where the connection can bind to its TLS channel.
        let can_bind = self.channel_binding().any();
        self.ctx
            .config
            .auth
            .mechanisms
            .iter()
            .filter_map(|m| Mechanism::from_name(m))
            .filter(|m| {
                if m.is_plus() {
                    can_bind
                } else if *m == Mechanism::Plain {
                    self.secure || c2s.allow_plain_without_tls
                } else {
                    self.secure || !c2s.require_tls
                }
            })
            .collect()
    }

    fn features(&self) -> Element {
        let mut f = Element::new("features", ns::STREAM);
        let c2s = &self.ctx.config.c2s;
        if self.authenticated.is_none() {
            let can_starttls = self.stream.as_ref().is_some_and(|s| s.offers_starttls());
            if !self.secure && can_starttls {
                let mut tls = Element::new("starttls", ns::TLS);
                if c2s.require_tls {
                    tls.push_child(Element::new("required", ns::TLS));
                }
                f.push_child(tls);
            }
            if self.secure {
                // Pre-authentication features (e.g. registration) need an encrypted stream.
                for e in self
                    .ctx
                    .registry
                    .stream_features(crate::module::FeatureStage::PreAuth)
                {
                    f.push_child(e.clone());
                }
            }
            let mechs = self.offered_mechanisms();
            let plus = mechs.iter().any(|m| m.is_plus());
            if !mechs.is_empty() {
                let mut m = Element::new("mechanisms", ns::SASL);
                for mech in mechs {
                    m.push_child(Element::new("mechanism", ns::SASL).text(mech.name()));
                }
                f.push_child(m);
                if plus {
                    // XEP-0440: the channel-binding types this server supports.
                    f.push_child(
                        Element::new("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
                            .child(
                                Element::new("channel-binding", "urn:xmpp:sasl-cb:0")
                                    .attr("type", "tls-exporter"),
                            )
                            .child(
                                Element::new("channel-binding", "urn:xmpp:sasl-cb:0")
                                    .attr("type", "tls-server-end-point"),
                            ),
                    );
                }
            }
        } else {
            f.push_child(Element::new("bind", ns::BIND));
            for e in self
                .ctx
                .registry
                .stream_features(crate::module::FeatureStage::Authenticated)
            {
                f.push_child(e.clone());
            }
        }
        f
    }

    /// Everything up to a bound resource.
    async fn negotiate(&mut self) -> Result<(), End> {
        loop {
            self.open_stream().await?;
            if self.authenticated.is_some() {
                return self.bind_phase().await;
            }
            // Pre-authentication: STARTTLS or SASL, nothing else.
            loop {
                let e = match self.next_event().await? {
                    StreamEvent::Element(e) => e,
                    StreamEvent::Close => return Err(End::PeerClosed),
                    StreamEvent::Header(_) => {
                        return Err(StreamErrorCondition::NotWellFormed.into())
                    }
                };
                self.trace_in(&e);
                let can_starttls = self.stream.as_ref().is_some_and(|s| s.offers_starttls());
                if e.is("starttls", ns::TLS) && !self.secure && can_starttls {
                    self.starttls().await?;
                    break;
                }
                if e.is("auth", ns::SASL) {
                    if !self.secure && self.ctx.config.c2s.require_tls {
                        self.send(&sasl_failure(SaslFailure::EncryptionRequired))
                            .await?;
                        continue;
                    }
                    if self.sasl(e).await? {
                        self.stream()?.restart();
                        break;
                    }
                    continue;
                }
                let e = match self.pre_auth_iq(e).await? {
                    None => continue,
                    Some(e) => e,
                };
                tracing::info!(element = %e.name, "element before authentication");
                return Err(StreamErrorCondition::NotAuthorized.into());
            }
        }
    }

    /// A get/set IQ before authentication whose payload namespace a module registered for
    /// (`Registry::pre_auth_iq`): answered here, on this stream, without `to`. Returns the
    /// element back when no handler takes it.
    async fn pre_auth_iq(&mut self, e: Element) -> Result<Option<Element>, End> {
        if !e.is("iq", ns::CLIENT) || !matches!(e.get_attr("type"), Some("get" | "set")) {
            return Ok(Some(e));
        }
        let ctx = self.ctx.clone();
        let handler = e
            .elements()
            .next()
            .and_then(|p| ctx.registry.pre_auth_iq_handler(&p.ns))
            .cloned();
        let Some(handler) = handler else {
            return Ok(Some(e));
        };
        let mut stanza = match Stanza::from_element(e) {
            Ok(s) => s,
            Err(b) => {
                let (why, el) = *b;
                if let StanzaParseError::Invalid(err) = why {
                    let mut reply = error_reply_for(&el, None, None, &err);
                    reply.set_to(None);
                    self.send(&reply.el).await?;
                    return Ok(None);
                }
                return Ok(Some(el));
            }
        };
        // Nobody has an address yet: a `from` is meaningless and not trusted.
        stanza.set_from(None);
        let mut conn = crate::module::PreAuthConn {
            peer: self.peer,
            secure: self.secure,
            domain: self.domain.clone().unwrap_or_default(),
            state: std::mem::take(&mut self.pre_auth_state),
        };
        let reply = handler.handle_pre_auth_iq(&ctx, &mut conn, &stanza).await;
        self.pre_auth_state = conn.state;
        let out = match reply {
            crate::module::IqReply::Result(payload) => Some(stanza.iq_result(payload)),
            crate::module::IqReply::Error(err) => stanza.error_reply(&err).map(|mut r| {
                // Pre-authentication payloads can carry secrets: never echo them.
                r.el.children.retain(|n| match n {
                    confab_proto::xml::Node::Element(c) => c.name == "error",
                    _ => false,
                });
                r
            }),
            crate::module::IqReply::Handled => None,
        };
        if let Some(mut r) = out {
            r.set_to(None);
            self.send(&r.el).await?;
        }
        Ok(None)
    }

    async fn starttls(&mut self) -> Result<(), End> {
        self.send(&Element::new("proceed", ns::TLS)).await?;
        let stream = self.stream.take().ok_or(End::Gone)?;
        match stream.starttls(&self.ctx.tls.starttls).await {
            Ok(tls) => {
                self.stream = Some(tls);
                self.secure = true;
                Ok(())
            }
            Err(e) => {
                tracing::info!(error = %e, "STARTTLS handshake failed");
                Err(End::Gone)
            }
        }
    }

    /// Runs one SASL exchange; Ok(true) on success.
    async fn sasl(&mut self, auth: Element) -> Result<bool, End> {
        let offered = self.offered_mechanisms();
        let mech = auth
            .get_attr("mechanism")
            .and_then(Mechanism::from_name)
            .filter(|m| offered.contains(m));
        let outcome = match mech {
            None => Err(SaslFailure::InvalidMechanism),
            Some(mech) => self.sasl_exchange(mech, &auth, &offered).await?,
        };
        let outcome = match outcome {
            Ok((jid, mech, server_final)) => match self.account_generation(&jid).await {
                Ok(Some(generation)) => {
                    self.generation = generation;
                    Ok((jid, mech, server_final))
                }
                // Deleted while authenticating.
                Ok(None) => Err(SaslFailure::NotAuthorized),
                Err(f) => Err(f),
            },
            Err(f) => Err(f),
        };
        match outcome {
            Ok((jid, mech, server_final)) => {
                let text = server_final.map(|d| B64.encode(d)).unwrap_or_default();
                let mut ok = Element::new("success", ns::SASL);
                if !text.is_empty() {
                    ok = ok.text(text);
                }
                self.send(&ok).await?;
                // Debug, like "resource bound": a line per login is most of the logging
                // cost of a busy server; failures stay at info.
                tracing::debug!(user = %jid, mechanism = mech.name(), "authenticated");
                self.deleted = Some(self.ctx.router.authenticated(&jid, self.conn));
                self.authenticated = Some(jid);
                Ok(true)
            }
            Err(f) => {
                self.auth_failures += 1;
                tracing::info!(failure = f.as_str(), "authentication failed");
                if matches!(f, SaslFailure::NotAuthorized) {
                    // Slows down password guessing on this connection.
                    let delay = self.ctx.config.c2s.auth_failure_delay_ms;
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                self.send(&sasl_failure(f)).await?;
                if self.auth_failures >= self.ctx.config.c2s.max_auth_failures {
                    return Err(StreamError::with_text(
                        StreamErrorCondition::PolicyViolation,
                        "too many failed authentication attempts",
                    )
                    .into());
                }
                Ok(false)
            }
        }
    }

    async fn sasl_exchange(
        &mut self,
        mech: Mechanism,
        auth: &Element,
        offered: &[Mechanism],
    ) -> Result<Result<(BareJid, Mechanism, Option<Vec<u8>>), SaslFailure>, End> {
        let data = match self.initial_response(auth).await? {
            Ok(d) => d,
            Err(f) => return Ok(Err(f)),
        };
        let r = if mech == Mechanism::Plain {
            self.sasl_plain(&data).await
        } else {
            self.sasl_scram(mech, &data, offered.iter().any(|m| m.is_plus()))
                .await?
        };
        Ok(r.map(|(jid, fin)| (jid, mech, fin)))
    }

    /// The initial response of `<auth/>`, asking for it with an empty challenge if absent.
    async fn initial_response(
        &mut self,
        auth: &Element,
    ) -> Result<Result<Vec<u8>, SaslFailure>, End> {
        let text = auth.text_content();
        let text = text.trim();
        if text.is_empty() {
            self.send(&Element::new("challenge", ns::SASL)).await?;
            return self.read_response().await;
        }
        Ok(decode_b64(text))
    }

    /// Reads a `<response/>` (or `<abort/>`).
    async fn read_response(&mut self) -> Result<Result<Vec<u8>, SaslFailure>, End> {
        let e = match self.next_event().await? {
            StreamEvent::Element(e) => e,
            StreamEvent::Close => return Err(End::PeerClosed),
            StreamEvent::Header(_) => return Err(StreamErrorCondition::NotWellFormed.into()),
        };
        self.trace_in(&e);
        if e.is("abort", ns::SASL) {
            return Ok(Err(SaslFailure::Aborted));
        }
        if !e.is("response", ns::SASL) {
            return Err(StreamErrorCondition::NotAuthorized.into());
        }
        let text = e.text_content();
        Ok(decode_b64(text.trim()))
    }

    /// Maps a SASL username to this domain's account, if it names a valid one.
    fn account_for(&self, username: &str) -> Option<BareJid> {
        let domain = self.domain.as_deref()?;
        BareJid::new(&format!("{username}@{domain}"))
            .ok()
            .filter(|j| j.node().is_some() && j.domain().as_str() == domain)
    }

    /// RFC 6120 §6.4.6: an authorization identity naming anyone else is refused.
    fn check_authzid(&self, authzid: Option<&str>, jid: &BareJid) -> Result<(), SaslFailure> {
        match authzid {
            None | Some("") => Ok(()),
            Some(a) => match BareJid::new(a) {
                Ok(j) if &j == jid => Ok(()),
                _ => Err(SaslFailure::InvalidAuthzid),
            },
        }
    }

    async fn account_generation(&self, jid: &BareJid) -> Result<Option<i64>, SaslFailure> {
        let node = jid.node().map(|n| n.as_str()).unwrap_or_default();
        self.ctx
            .stores
            .accounts
            .account_generation(jid.domain().as_str(), node)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "account lookup failed");
                SaslFailure::TemporaryAuthFailure
            })
    }

    async fn load_credentials(
        &self,
        jid: &BareJid,
    ) -> Result<Option<Vec<ScramCredentials>>, SaslFailure> {
        let node = jid.node().map(|n| n.as_str()).unwrap_or_default();
        self.ctx
            .stores
            .accounts
            .credentials(jid.domain().as_str(), node)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "credential lookup failed");
                SaslFailure::TemporaryAuthFailure
            })
    }

    async fn sasl_plain(&mut self, data: &[u8]) -> Result<(BareJid, Option<Vec<u8>>), SaslFailure> {
        let req = parse_plain(data)?;
        let jid = self.account_for(&req.authcid);
        let creds = match &jid {
            Some(j) => self.load_credentials(j).await?,
            None => None,
        };
        let stored = creds.as_deref().and_then(|c| {
            c.iter()
                .find(|c| c.hash == confab_proto::sasl::ScramHash::Sha256)
                .or(c.first())
                .cloned()
        });
        let iterations = self.ctx.auth.decoy_iterations;
        let secret = self.ctx.auth.decoy_secret.clone();
        let password = req.password.clone();
        // PBKDF2 takes milliseconds of CPU: off the async threads.
        let ok = tokio::task::spawn_blocking(move || match stored {
            Some(c) => c.verify_password(&password),
            None => {
                // Unknown users cost the same key derivation, so timing does not tell which
                // accounts exist (SCRAM uses a decoy exchange for the same reason).
                let _ = ScramCredentials::derive(
                    confab_proto::sasl::ScramHash::Sha256,
                    &password,
                    &secret,
                    iterations,
                );
                false
            }
        })
        .await
        .unwrap_or(false);
        let Some(jid) = jid.filter(|_| ok) else {
            return Err(SaslFailure::NotAuthorized);
        };
        self.check_authzid(req.authzid.as_deref(), &jid)?;
        Ok((jid, None))
    }

    async fn sasl_scram(
        &mut self,
        mech: Mechanism,
        data: &[u8],
        offered_plus: bool,
    ) -> Result<Result<(BareJid, Option<Vec<u8>>), SaslFailure>, End> {
        let cb = self.channel_binding();
        let mut server = ScramServer::new(mech, cb, offered_plus);
        let first = match server.handle_client_first(data) {
            Ok(f) => f,
            Err(f) => return Ok(Err(f)),
        };
        let jid = self.account_for(&first.username);
        let creds = match &jid {
            Some(j) => match self.load_credentials(j).await {
                Ok(c) => c,
                Err(f) => return Ok(Err(f)),
            },
            None => None,
        };
        let hash = mech.hash();
        let cred = creds
            .as_deref()
            .and_then(|c| c.iter().find(|c| Some(c.hash) == hash));
        let server_first = match cred {
            Some(c) => server.server_first(c),
            // Unknown users go through the same exchange and fail at the end.
            None => server.server_first_unknown_user(
                self.ctx.auth.decoy_iterations,
                &self.ctx.auth.decoy_secret,
            ),
        };
        let server_first = match server_first {
            Ok(d) => d,
            Err(f) => return Ok(Err(f)),
        };
        self.send(&Element::new("challenge", ns::SASL).text(B64.encode(server_first)))
            .await?;
        let response = match self.read_response().await? {
            Ok(r) => r,
            Err(f) => return Ok(Err(f)),
        };
        let server_final = match server.handle_client_final(&response) {
            Ok(d) => d,
            Err(f) => return Ok(Err(f)),
        };
        let Some(jid) = jid.filter(|_| cred.is_some()) else {
            return Ok(Err(SaslFailure::NotAuthorized));
        };
        if let Err(f) = self.check_authzid(first.authzid.as_deref(), &jid) {
            return Ok(Err(f));
        }
        Ok(Ok((jid, Some(server_final))))
    }

    /// After authentication: only resource binding (and the legacy session IQ) until bound.
    async fn bind_phase(&mut self) -> Result<(), End> {
        let deleted = self.deleted.clone().ok_or(End::Gone)?;
        loop {
            let ev = tokio::select! {
                ev = self.next_event() => ev?,
                _ = deleted.notified() => return Err(account_deleted()),
            };
            let e = match ev {
                StreamEvent::Element(e) => e,
                StreamEvent::Close => return Err(End::PeerClosed),
                StreamEvent::Header(_) => return Err(StreamErrorCondition::NotWellFormed.into()),
            };
            self.trace_in(&e);
            let is_bind = e.is("iq", ns::CLIENT)
                && e.get_attr("type") == Some("set")
                && e.get_child("bind", ns::BIND).is_some();
            if !is_bind {
                let handler = self.ctx.registry.pre_bind_handler(&e.name, &e.ns).cloned();
                let Some(handler) = handler else {
                    // RFC 6120 §7.1: no stanzas before a resource is bound.
                    return Err(StreamErrorCondition::NotAuthorized.into());
                };
                let account = self.authenticated.clone().ok_or(End::Gone)?;
                match handler.handle(&self.ctx, &account, &e).await {
                    crate::module::PreBind::Reply(r) => self.send(&r).await?,
                    crate::module::PreBind::Resume {
                        session,
                        resumed,
                        failed,
                    } => match crate::detach::resume(&self.ctx, session, &account).await {
                        Some(s) => {
                            tracing::info!(jid = %s.info.jid, "session resumed");
                            // Kept here at once: if anything below fails, the session ends
                            // properly instead of vanishing.
                            let info = s.info.clone();
                            self.detach_since = info.detach_epoch();
                            self.bound = Some(s);
                            self.send(&resumed).await?;
                            let listeners = self.ctx.registry.lifecycle_listeners().to_vec();
                            if let Some(s) = self.bound.as_mut() {
                                for l in listeners {
                                    l.session_resumed(&self.ctx, &info, &mut s.outbox).await;
                                }
                            }
                            return Ok(());
                        }
                        None => self.send(&failed).await?,
                    },
                }
                continue;
            }
            if self.bind(&e).await? {
                return Ok(());
            }
        }
    }

    /// Handles a bind request; Some(queues) once bound.
    async fn bind(&mut self, iq: &Element) -> Result<bool, End> {
        let account = self.authenticated.clone().ok_or(End::Gone)?;
        let id = iq.get_attr("id").unwrap_or_default().to_string();
        let reply_error = |cond: StanzaErrorCondition| {
            Element::new("iq", ns::CLIENT)
                .attr("type", "error")
                .attr("id", id.clone())
                .child(StanzaError::new(cond).to_element(ns::CLIENT))
        };
        let requested = iq
            .get_child("bind", ns::BIND)
            .and_then(|b| b.get_child("resource", ns::BIND))
            .map(|r| r.text_content().trim().to_string())
            .filter(|r| !r.is_empty());
        let policy = self.ctx.config.c2s.resource_conflict;
        let mut jid = match &requested {
            Some(r) => match account.with_resource_str(r) {
                Ok(j) => j,
                Err(_) => {
                    self.send(&reply_error(StanzaErrorCondition::BadRequest))
                        .await?;
                    return Ok(false);
                }
            },
            None => random_resource(&account)?,
        };
        let limits = &self.ctx.config.limits;
        let info = loop {
            let info = SessionInfo::new(
                self.conn,
                jid.clone(),
                limits.outbound_queue,
                limits.max_outbound_bytes,
            );
            info.set_connection(crate::session::ConnectionInfo {
                peer: self.peer,
                transport: self.stream.as_ref().map_or("tcp", |s| s.transport()),
                secure: self.secure,
                since: std::time::SystemTime::now(),
            });
            let info = Arc::new(info);
            match self.ctx.router.bind(info.clone(), policy) {
                Ok(old) => {
                    if let Some(old) = old {
                        tracing::info!(jid = %old.jid, "resource conflict: replacing the old session");
                        old.close(StreamError::with_text(
                            StreamErrorCondition::Conflict,
                            "replaced by a new session",
                        ));
                    }
                    break info;
                }
                Err(BindError::Conflict) if policy == ResourceConflict::Random => {
                    jid = random_resource(&account)?;
                }
                Err(BindError::Conflict) => {
                    self.send(&reply_error(StanzaErrorCondition::Conflict))
                        .await?;
                    return Ok(false);
                }
            }
        };
        // Checked after the session is in the table: a deletion either ran before this read
        // (it sees no account, or a new generation) or ends the bound session itself.
        let current = self.account_generation(&account).await;
        if current != Ok(Some(self.generation)) {
            self.ctx.router.unbind(&info);
            return Err(match current {
                Err(_) => StreamErrorCondition::InternalServerError.into(),
                Ok(_) => account_deleted(),
            });
        }
        let result = Element::new("iq", ns::CLIENT)
            .attr("type", "result")
            .attr("id", id)
            .child(
                Element::new("bind", ns::BIND)
                    .child(Element::new("jid", ns::BIND).text(jid.to_string())),
            );
        self.session = Some(info.clone());
        self.detach_since = info.detach_epoch();
        self.bound = Some(Session::new(info.clone()));
        self.send(&result).await?;
        tracing::debug!(jid = %jid, "resource bound");
        let listeners: Vec<Arc<dyn LifecycleListener>> =
            self.ctx.registry.lifecycle_listeners().to_vec();
        for l in listeners {
            l.session_bound(&self.ctx, &info).await;
        }
        Ok(true)
    }

    /// The bound session: stanzas in, queued stanzas out, keepalives, timeouts, shutdown.
    async fn established(
        &mut self,
        session: &mut Session,
        shutdown: &mut watch::Receiver<bool>,
    ) -> End {
        let info = session.info.clone();
        self.session = Some(info.clone());
        let since = self.detach_since;
        let outbox = &mut session.outbox;
        let c2s = &self.ctx.config.c2s;
        let idle = (c2s.idle_timeout > 0).then(|| Duration::from_secs(c2s.idle_timeout));
        let keepalive =
            (c2s.keepalive_interval > 0).then(|| Duration::from_secs(c2s.keepalive_interval));
        let write_timeout = Duration::from_secs(c2s.write_timeout.max(1));
        let mut last_in = Instant::now();
        let mut last_out = Instant::now();
        let limits = &self.ctx.config.limits;
        // The session's own output above this pauses its reading (see `session::with_origin`).
        let own_limit = limits.max_outbound_bytes / 2;
        let mut throttle = ReadThrottle::new(limits.read_rate, limits.read_burst);
        let mut resume_reading: Option<Instant> = None;
        let tick = Duration::from_secs(1).max(keepalive.unwrap_or(Duration::from_secs(30)) / 4);
        loop {
            // Everything already received is handled before waiting again, unless the
            // session's own output has to drain first.
            while info.own_backlog() <= own_limit {
                let ev = match self.stream.as_mut().map(|s| s.next_buffered()) {
                    Some(Ok(Some(ev))) => ev,
                    Some(Ok(None)) => break,
                    Some(Err(p)) => return ReadError::Parse(p).into(),
                    None => return End::Gone,
                };
                match ev {
                    StreamEvent::Element(e) => {
                        // Boxed: handling a stanza needs several KiB of state for a moment,
                        // which the idle task should not carry.
                        let handled =
                            Box::pin(session::with_origin(info.clone(), self.handle_element(e)));
                        if let Err(end) = handled.await {
                            return end;
                        }
                    }
                    StreamEvent::Close => return End::PeerClosed,
                    StreamEvent::Header(_) => return StreamErrorCondition::NotWellFormed.into(),
                }
            }
            let reading = resume_reading.is_none() && info.own_backlog() <= own_limit;
            if let Some(s) = self.stream.as_mut() {
                s.release_buffers();
            }
            let Some(stream) = self.stream.as_mut() else {
                return End::Gone;
            };
            // One timer for the periodic checks and the end of a read pause: every future
            // below is part of the idle session's state.
            let wake_at = {
                let tick_at = Instant::now() + tick;
                resume_reading.map_or(tick_at, |r| r.min(tick_at))
            };
            tokio::select! {
                r = async {
                    // The read's future (boxed: the framing is a trait object) is made only
                    // once the peer has sent something.
                    std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
                    stream.read_more().await
                }, if reading => {
                    let n = match r {
                        Ok(n) => n,
                        Err(e) => return e.into(),
                    };
                    resume_reading = throttle.consume(n);
                    last_in = Instant::now();
                    info.touch_input();
                }
                out = outbox.next_batch() => {
                    let Some(batch) = out else { return End::Gone };
                    let buf: Vec<confab_stream::WireStanza> = batch.iter().map(|o| o.data.clone()).collect();
                    trace_stanzas(self.trace, self.conn, &buf);
                    // A client that stops reading blocks this write; a close request (slow
                    // reader, conflict, shutdown) or the write timeout must still end the
                    // session. The stream is then mid-stanza, so the connection is dropped
                    // without a stream error.
                    tokio::select! {
                        // The write goes first: a close request only cuts a write that is
                        // actually blocked, not one that can complete (e.g. the reply to an
                        // account removal, queued just before its close request).
                        biased;
                        r = stream.send_stanzas(&buf) => {
                            if r.is_err() {
                                outbox.keep_unsent(batch);
                                return End::Gone;
                            }
                        }
                        err = info.close_requested() => {
                            tracing::info!(reason = ?err.condition, "closing a session blocked on writing");
                            outbox.keep_unsent(batch);
                            return End::Cut;
                        }
                        _ = tokio::time::sleep(write_timeout) => {
                            tracing::info!("closing a session whose writes are blocked");
                            outbox.keep_unsent(batch);
                            return End::Gone;
                        }
                        _ = shutdown.changed() => {
                            outbox.keep_unsent(batch);
                            return End::Gone;
                        }
                        _ = info.detach_requested(since) => {
                            tracing::info!("a new connection resumes this session; dropping this one");
                            outbox.keep_unsent(batch);
                            return End::Gone;
                        }
                    }
                    outbox.written(batch);
                    last_out = Instant::now();
                }
                e = info.close_requested() => {
                    // What was queued before the close request (e.g. the reply to an
                    // account removal) goes out before the stream error.
                    let mut batch = outbox.drain_now();
                    let buf: Vec<confab_stream::WireStanza> = batch.iter().map(|o| o.data.clone()).collect();
                    if !buf.is_empty() && e.condition != StreamErrorCondition::PolicyViolation {
                        trace_stanzas(self.trace, self.conn, &buf);
                        let written = tokio::time::timeout(Duration::from_secs(2), stream.send_stanzas(&buf)).await;
                        if !matches!(written, Ok(Ok(()))) {
                            // Possibly mid-stanza: no stream error can follow.
                            outbox.keep_unsent(batch);
                            return End::Cut;
                        }
                        outbox.written(std::mem::take(&mut batch));
                    }
                    // A slow reader's queue is not written: it is routed elsewhere.
                    outbox.keep_unsent(batch);
                    return End::Error(e);
                }
                _ = shutdown.changed() => {
                    return StreamErrorCondition::SystemShutdown.into();
                }
                _ = info.detach_requested(since) => {
                    // Parked (see `detach::detach_for_resume`), not ended: this connection
                    // is gone as far as the session is concerned.
                    tracing::info!("a new connection resumes this session; dropping this one");
                    return End::Gone;
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    let now = Instant::now();
                    if resume_reading.is_some_and(|r| now >= r) {
                        resume_reading = None;
                    }
                    if let Some(idle) = idle {
                        if now.duration_since(last_in) >= idle {
                            return StreamError::with_text(StreamErrorCondition::ConnectionTimeout, "idle").into();
                        }
                    }
                    if let Some(k) = keepalive {
                        if now.duration_since(last_out) >= k {
                            // RFC 6120 §4.6.1: whitespace keeps NATs and the peer's timers
                            // alive. A peer that does not read even that is gone.
                            // A resumption elsewhere must not wait for it either.
                            tokio::select! {
                                r = tokio::time::timeout(write_timeout, stream.keepalive()) => {
                                    if !matches!(r, Ok(Ok(()))) {
                                        return End::Gone;
                                    }
                                }
                                _ = info.detach_requested(since) => return End::Gone,
                            }
                            last_out = now;
                        }
                    }
                }
            }
        }
    }

    async fn handle_element(&mut self, e: Element) -> Result<(), End> {
        self.trace_in(&e);
        let info = self.session.clone().ok_or(End::Gone)?;
        if e.is("error", ns::STREAM) {
            tracing::info!(error = %e, "client sent a stream error");
            return Err(End::PeerClosed);
        }
        let mut stanza = match Stanza::from_element(e) {
            Ok(s) => s,
            Err(b) => {
                let (why, el) = *b;
                return match why {
                    StanzaParseError::NotAStanza => {
                        // Stream-level elements a module speaks (stream management's
                        // `<r/>`, client state's `<active/>`, …).
                        let handler = self
                            .ctx
                            .registry
                            .session_element_handler(&el.name, &el.ns)
                            .cloned();
                        let Some(handler) = handler else {
                            tracing::info!(element = %el.name, ns = %el.ns, "unsupported top-level element");
                            return Err(StreamErrorCondition::UnsupportedStanzaType.into());
                        };
                        match handler.handle(&self.ctx, &info, &el).await {
                            Ok(replies) => {
                                for r in replies {
                                    self.send(&r).await?;
                                }
                                Ok(())
                            }
                            Err(e) => Err(End::Error(e)),
                        }
                    }
                    StanzaParseError::Invalid(err) => {
                        info.count_stanza_in();
                        if el.get_attr("type") != Some("error") {
                            let reply =
                                error_reply_for(&el, None, Some(Jid::from(info.jid.clone())), &err);
                            // Through the session's queue like every stanza it gets, so
                            // stream management counts it.
                            router::deliver(&self.ctx, &reply, std::slice::from_ref(&info)).await;
                        }
                        Ok(())
                    }
                };
            }
        };
        info.count_stanza_in();
        // RFC 6120 §8.1.2.1: a `from` other than the session's own address is forged.
        if let Some(from) = &stanza.from {
            let own_full = from.try_as_full().map(|f| f == &info.jid).unwrap_or(false);
            let own_bare = from.is_bare() && from.to_bare() == info.jid.to_bare();
            if !own_full && !own_bare {
                tracing::info!(from = %from, "forged from address");
                return Err(StreamErrorCondition::InvalidFrom.into());
            }
        }
        stanza.set_from(Some(Jid::from(info.jid.clone())));
        if stanza.kind == StanzaKind::Iq
            && stanza.iq_type() == Some(IqType::Set)
            && stanza.iq_payload().is_some_and(|p| p.is("bind", ns::BIND))
        {
            // RFC 6120 §7: one resource per stream.
            let reply = stanza.error_reply(&StanzaError::with_text(
                StanzaErrorCondition::NotAllowed,
                "a resource is already bound on this stream",
            ));
            if let Some(r) = reply {
                router::deliver(&self.ctx, &r, std::slice::from_ref(&info)).await;
            }
            return Ok(());
        }
        if stanza.kind == StanzaKind::Presence && stanza.to.is_none() {
            track_availability(&info, &stanza);
        }
        router::from_client(&self.ctx, stanza).await;
        Ok(())
    }
}

/// A token bucket over received bytes: a client sending faster than the configured rate is
/// simply read later, so its stanzas queue in its own TCP window, not in server memory.
struct ReadThrottle {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl ReadThrottle {
    fn new(rate: u64, burst: u64) -> Self {
        ReadThrottle {
            rate: rate as f64,
            burst: burst.max(rate) as f64,
            tokens: burst.max(rate) as f64,
            last: Instant::now(),
        }
    }

    /// Takes `n` bytes from the bucket; returns when reading may go on if it is in debt.
    fn consume(&mut self, n: usize) -> Option<Instant> {
        if self.rate <= 0.0 {
            return None;
        }
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst) - n as f64;
        self.last = now;
        (self.tokens < 0.0).then(|| now + Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

impl From<StreamError> for End {
    fn from(e: StreamError) -> Self {
        End::Error(e)
    }
}

/// Broadcast presence (no `to`) sets the session's availability and priority, which
/// message routing to the bare JID uses (RFC 6121 §4.2, §8.5.2).
fn track_availability(info: &SessionInfo, presence: &Stanza) {
    match presence.type_attr() {
        None => {
            let priority = presence
                .el
                .get_child("priority", ns::CLIENT)
                .and_then(|p| p.text_content().trim().parse::<i8>().ok())
                .unwrap_or(0);
            info.set_presence(true, priority);
        }
        Some("unavailable") => info.set_presence(false, 0),
        _ => {}
    }
}

/// A server-generated resource (RFC 6120 §7.6.2.1); ASCII letters and digits always pass
/// resourceprep, so this only fails for an invalid account JID.
fn random_resource(account: &BareJid) -> Result<FullJid, End> {
    let mut rng = rand::thread_rng();
    let suffix: String = (0..12)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
        .collect();
    account
        .with_resource_str(&format!("confab-{suffix}"))
        .map_err(|_| StreamErrorCondition::InternalServerError.into())
}

/// Stanzas going out, for the XML trace.
fn trace_stanzas(trace: bool, conn: u64, stanzas: &[confab_stream::WireStanza]) {
    if trace {
        for b in stanzas {
            tracing::info!(target: "confab::xmltrace", conn, "-> {}", String::from_utf8_lossy(b.stream_form()));
        }
    }
}

fn account_deleted() -> End {
    StreamError::with_text(
        StreamErrorCondition::NotAuthorized,
        "the account was deleted",
    )
    .into()
}

fn decode_b64(text: &str) -> Result<Vec<u8>, SaslFailure> {
    // RFC 6120 §6.4.2: "=" is an empty response.
    if text == "=" {
        return Ok(Vec::new());
    }
    B64.decode(text).map_err(|_| SaslFailure::IncorrectEncoding)
}

fn sasl_failure(f: SaslFailure) -> Element {
    Element::new("failure", ns::SASL).child(Element::new(f.as_str(), ns::SASL))
}

/// A copy of an element for the XML trace with SASL payloads (secrets) removed.
fn redact(e: &Element) -> String {
    if e.ns == ns::SASL {
        let mut c = e.clone();
        c.children
            .retain(|n| matches!(n, confab_proto::xml::Node::Element(_)));
        if !e.text_content().trim().is_empty() {
            c.children
                .push(confab_proto::xml::Node::Text("[redacted]".into()));
        }
        return c.to_xml(ns::CLIENT);
    }
    /// Blanks the text of password fields (XEP-0077 `<password/>`, XEP-0004 fields named
    /// like a password or of type `text-private`) anywhere below `e`; true if any was.
    fn hide_passwords(e: &mut Element) -> bool {
        const REGISTER: &str = "jabber:iq:register";
        const DATA: &str = "jabber:x:data";
        let secret = (e.ns == REGISTER && matches!(e.name.as_str(), "password" | "old_password"))
            || (e.is("field", DATA)
                && (e.get_attr("var").is_some_and(|v| v.contains("password"))
                    || e.get_attr("type") == Some("text-private")));
        if secret {
            // A password is the element's text, a form field's the text of its <value/>s.
            let mut any = false;
            for n in e.children.iter_mut() {
                match n {
                    confab_proto::xml::Node::Text(t) if !t.trim().is_empty() => {
                        *t = "[redacted]".into();
                        any = true;
                    }
                    confab_proto::xml::Node::Element(v) if v.is("value", DATA) => {
                        v.children = vec![confab_proto::xml::Node::Text("[redacted]".into())];
                        any = true;
                    }
                    _ => {}
                }
            }
            return any;
        }
        let mut any = false;
        for n in e.children.iter_mut() {
            if let confab_proto::xml::Node::Element(c) = n {
                any |= hide_passwords(c);
            }
        }
        any
    }
    // Only registration payloads carry passwords; other stanzas are shown as they are.
    if e.elements().any(|c| c.ns == "jabber:iq:register") {
        let mut c = e.clone();
        if hide_passwords(&mut c) {
            return c.to_xml(ns::CLIENT);
        }
    }
    e.to_xml(ns::CLIENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes in bytes of what an idle connection's task holds: the whole task's future
    /// (`serve`), the bound session's waiting loop and the connection's state.
    async fn idle_state_sizes() -> Vec<(&'static str, usize)> {
        let dir = tempfile::tempdir().expect("dir");
        let mut c = crate::config::Config::default();
        c.server.data_dir = dir.path().to_path_buf();
        c.c2s.interfaces = vec!["127.0.0.1".into()];
        c.c2s.port = 0;
        c.c2s.tls_port = 0;
        c.http.port = 0;
        c.http.tls_port = 0;
        let server = crate::Server::start(c, Vec::new()).await.expect("server");
        let ctx = server.ctx().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (tcp, peer) = listener.accept().await.expect("accept");
        let (_tx, rx) = watch::channel(false);
        let jid = FullJid::new("a@localhost/r").expect("jid");
        let mut session = Session::new(Arc::new(SessionInfo::new(1, jid, 10, 10_000)));
        let mut c2s = C2s::new(ctx.clone(), 1, None, peer);
        let mut sizes = vec![("C2s", std::mem::size_of::<C2s>())];
        {
            let mut shutdown = rx.clone();
            let f = c2s.established(&mut session, &mut shutdown);
            sizes.push(("established", std::mem::size_of_val(&f)));
        }
        {
            let f = c2s.run(rx.clone());
            sizes.push(("run", std::mem::size_of_val(&f)));
        }
        let f = serve(ctx.clone(), tcp, peer, false, rx);
        sizes.push(("serve", std::mem::size_of_val(&f)));
        drop(f);
        drop(c2s);
        drop(ctx);
        server.shutdown().await;
        sizes
    }

    /// What an idle connection's task holds is the waiting loop of the bound session and
    /// the connection's own state, not the largest phase (negotiation, the TLS handshake,
    /// handling one stanza are boxed), and the layers around it (span, arguments) add
    /// little: most of an idle session's memory is this task, so it is guarded here by
    /// size, not by timing.
    #[tokio::test]
    async fn idle_connection_task_holds_only_the_waiting_loop() {
        let sizes = idle_state_sizes().await;
        let size = |what: &str| {
            sizes
                .iter()
                .find(|(n, _)| *n == what)
                .map(|(_, s)| *s)
                .expect("measured")
        };
        println!("{sizes:?}");
        let (serve, established, c2s) = (size("serve"), size("established"), size("C2s"));
        assert!(
            serve <= established + c2s + 1024,
            "the connection task ({serve} bytes) holds more than the waiting loop \
             ({established}) and the connection state ({c2s}): {sizes:?}"
        );
    }

    #[test]
    fn xml_trace_redacts_sasl_payloads() {
        let auth = Element::new("auth", ns::SASL)
            .attr("mechanism", "PLAIN")
            .text("AGFsaWNlAHNlY3JldA==");
        let shown = redact(&auth);
        assert!(!shown.contains("AGFsaWNl"), "{shown}");
        assert!(
            shown.contains("[redacted]") && shown.contains("PLAIN"),
            "{shown}"
        );
        let msg =
            Element::new("message", ns::CLIENT).child(Element::new("body", ns::CLIENT).text("hi"));
        assert!(redact(&msg).contains("hi"));
    }

    #[test]
    fn xml_trace_redacts_registration_passwords() {
        const REGISTER: &str = "jabber:iq:register";
        const DATA: &str = "jabber:x:data";
        let field = |var: &str, value: &str| {
            Element::new("field", DATA)
                .attr("var", var)
                .child(Element::new("value", DATA).text(value))
        };
        // Registration and password change (client to server).
        let set = Element::new("iq", ns::CLIENT).attr("type", "set").child(
            Element::new("query", REGISTER)
                .child(Element::new("username", REGISTER).text("bill"))
                .child(Element::new("password", REGISTER).text("Calliope")),
        );
        let shown = redact(&set);
        assert!(!shown.contains("Calliope"), "{shown}");
        assert!(
            shown.contains("bill") && shown.contains("[redacted]"),
            "{shown}"
        );
        // A XEP-0004 form, e.g. a password change with the old password.
        let form = Element::new("iq", ns::CLIENT).attr("type", "set").child(
            Element::new("query", REGISTER).child(
                Element::new("x", DATA)
                    .attr("type", "submit")
                    .child(field("username", "bill"))
                    .child(field("old_password", "Calliope"))
                    .child(field("password", "Euterpe"))
                    .child(field("pin", "1234").attr("type", "text-private")),
            ),
        );
        let shown = redact(&form);
        for secret in ["Calliope", "Euterpe", "1234"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("bill"), "{shown}");
        // Server to client: a form offered back keeps its (empty) fields.
        let result = Element::new("iq", ns::CLIENT).attr("type", "result").child(
            Element::new("query", REGISTER)
                .child(Element::new("username", REGISTER))
                .child(Element::new("password", REGISTER)),
        );
        assert_eq!(redact(&result), result.to_xml(ns::CLIENT));
        // Another namespace's <password/> is not a registration.
        let other = Element::new("iq", ns::CLIENT).child(
            Element::new("query", "urn:example")
                .child(Element::new("password", "urn:example").text("x")),
        );
        assert_eq!(redact(&other), other.to_xml(ns::CLIENT));
    }
}
