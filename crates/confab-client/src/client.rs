//! The running client: one driver task owns the negotiated stream; [`Client`] is a cheap,
//! clonable handle that talks to it over a channel.

use crate::dns::{self, Endpoint, Target};
use crate::error::Error;
use crate::module::{Context, Handled, Module};
use crate::reconnect::{stream_error_is_transient, Reconnect};
use crate::sm::{self, SmState, StreamManagement};
use confab_proto::stanza::{error_reply_for, StanzaParseError};
use confab_proto::{
    ns, Element, FullJid, IqType, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind,
    StreamError,
};
use confab_stream::client::{
    bind, connect_authenticated, ClientError, ClientOptions, ClientSession,
};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// How to connect, and how the running client behaves.
#[derive(Clone)]
pub struct Config {
    /// Address, domain, credentials, resource, TLS mode and certificate verification; the
    /// negotiation itself is confab-stream's.
    pub options: ClientOptions,
    /// Where to connect: `options.addr` (the default), or the domain's server found in DNS.
    pub endpoint: Endpoint,
    /// How long one connection attempt (TCP, TLS, authentication, binding or resumption)
    /// may take.
    pub connect_timeout: Duration,
    /// How long [`Client::request`] waits for a reply.
    pub request_timeout: Duration,
    /// How long an incoming iq get/set delivered as [`Event::Iq`] may stay unanswered before
    /// the client answers `service-unavailable` for the application (RFC 6120 §8.2.3 wants
    /// every request answered).
    pub iq_answer_timeout: Duration,
    /// How long [`Client::close`] waits for the server to close its side.
    pub close_timeout: Duration,
    /// Capacity of the event channel; a subscriber that falls further behind loses the
    /// oldest events (`broadcast` lag), the stream is never stalled by a slow reader.
    pub event_capacity: usize,
    /// Modules, asked in this order to handle each incoming stanza.
    pub modules: Vec<Arc<dyn Module>>,
    /// Reconnect after a lost connection; `None` (the default): the client stops.
    pub reconnect: Option<Reconnect>,
    /// XEP-0198 stream management, used when the server offers it.
    pub stream_management: StreamManagement,
}

impl Config {
    /// A configuration with defaults from [`ClientOptions::new`]: STARTTLS required, the
    /// server's certificate checked against the system's trusted roots (set `verify` to
    /// [`confab_stream::tls::CertVerification::Roots`] to trust one given certificate).
    pub fn new(options: ClientOptions) -> Self {
        Config {
            options,
            endpoint: Endpoint::Address,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            iq_answer_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            event_capacity: 256,
            modules: Vec::new(),
            reconnect: None,
            stream_management: StreamManagement::default(),
        }
    }

    /// A configuration for `user@domain` whose server is found in DNS (SRV records, else
    /// the domain's addresses), with the system's resolver and trusted roots.
    pub fn for_domain(domain: &str, username: &str, password: &str) -> Self {
        // The address is a placeholder: with `Endpoint::Dns` each target found replaces it.
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut c = Config::new(ClientOptions::new(unspecified, domain, username, password));
        c.endpoint = Endpoint::Dns(dns::DnsConfig::default());
        c
    }

    /// Reconnects with this policy after a lost connection (builder style).
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Adds a module (builder style); modules see stanzas in the order they were added.
    pub fn module(mut self, m: Arc<dyn Module>) -> Self {
        self.modules.push(m);
        self
    }
}

impl fmt::Debug for Config {
    // Hand-written so the password never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("addr", &self.options.addr)
            .field("endpoint", &self.endpoint)
            .field("domain", &self.options.domain)
            .field("username", &self.options.username)
            .field("request_timeout", &self.request_timeout)
            .field(
                "modules",
                &self.modules.iter().map(|m| m.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Why the client stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The application closed the stream ([`Client::close`] or dropping every handle).
    Closed,
    /// The server ended the stream with this stream error.
    StreamError(StreamError),
    /// The server closed the stream without an error.
    ServerClosed,
    /// The connection failed (read or write error, malformed XML); the text says how.
    ConnectionLost(String),
}

/// What the client reports to the application.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event {
    /// A message no module consumed.
    Message(Stanza),
    /// A presence no module consumed.
    Presence(Stanza),
    /// An iq get/set no module consumed; answer it with [`IqRequest::reply`] or
    /// [`IqRequest::reply_error`] within [`Config::iq_answer_timeout`].
    Iq(IqRequest),
    /// The connection ended. With `will_reconnect` the client is trying to get it back
    /// ([`Event::Reconnected`] follows, or this event again without `will_reconnect`);
    /// without it the client has stopped and no further events follow.
    Disconnected {
        /// Why the connection ended.
        reason: DisconnectReason,
        /// Whether the client is reconnecting ([`Config::reconnect`]).
        will_reconnect: bool,
    },
    /// A lost connection was replaced. `resumed`: the session went on (XEP-0198), nothing
    /// was lost and the server kept presence and subscriptions; otherwise this is a new
    /// session: the modules have been told (they re-send presence, re-fetch the roster), and
    /// the server may have bound another resource ([`Client::jid`]).
    Reconnected {
        /// Whether the previous session was resumed.
        resumed: bool,
    },
    /// The client stopped for good with stanzas it had written that the server never
    /// acknowledged (XEP-0198): they may not have arrived. Sent before the final
    /// [`Event::Disconnected`].
    Unacknowledged(Vec<Element>),
}

/// An incoming iq get/set the application may answer; every clone shares one "answered"
/// flag so exactly one reply goes out.
#[derive(Clone)]
pub struct IqRequest {
    /// The request as received.
    pub stanza: Stanza,
    answered: Arc<AtomicBool>,
    // Weak, so an event kept in a receiver's buffer does not keep the connection open.
    cmd: mpsc::WeakSender<Command>,
}

impl fmt::Debug for IqRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IqRequest")
            .field("stanza", &self.stanza)
            .field("answered", &self.answered.load(Ordering::Relaxed))
            .finish()
    }
}

impl IqRequest {
    /// The request's payload (its single child element).
    pub fn payload(&self) -> Option<&Element> {
        self.stanza.iq_payload()
    }

    /// Answers with an iq result carrying `payload`, if any.
    pub async fn reply(&self, payload: Option<Element>) -> Result<(), Error> {
        let reply = self.stanza.iq_result(payload).el;
        self.answer(reply).await
    }

    /// Answers with an iq error.
    pub async fn reply_error(&self, err: StanzaError) -> Result<(), Error> {
        let reply = self
            .stanza
            .error_reply(&err)
            .ok_or(Error::InvalidRequest("not an iq request"))?
            .el;
        self.answer(reply).await
    }

    async fn answer(&self, reply: Element) -> Result<(), Error> {
        if self.answered.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyAnswered);
        }
        let cmd = self.cmd.upgrade().ok_or(Error::Disconnected)?;
        send_via(&cmd, reply).await
    }
}

/// Something that can be sent as a top-level element: an [`Element`] or a [`Stanza`].
pub trait IntoElement {
    /// The element to write.
    fn into_element(self) -> Element;
}

impl IntoElement for Element {
    fn into_element(self) -> Element {
        self
    }
}

impl IntoElement for Stanza {
    fn into_element(self) -> Element {
        self.el
    }
}

enum Command {
    /// Write this element; the result says whether it reached the socket (or, with stream
    /// management, is kept to be sent again after a reconnection).
    Send(Element, oneshot::Sender<Result<(), Error>>),
    /// Close the stream; answered when done.
    Close(oneshot::Sender<()>),
}

struct Pending {
    reply: oneshot::Sender<Element>,
    /// The address the request went to, so a reply from anyone else is not taken for it.
    to: Option<Jid>,
}

/// What the current session is: changes when a reconnection binds anew.
struct SessionView {
    jid: FullJid,
    features: Element,
}

struct Shared {
    session: RwLock<SessionView>,
    pending: Mutex<HashMap<String, Pending>>,
    events: broadcast::Sender<Event>,
    modules: Vec<Arc<dyn Module>>,
    next_id: AtomicU64,
    request_timeout: Duration,
}

/// A handle to a running client. Clones share one connection; the connection closes on
/// [`Client::close`], on a server close or error (unless it reconnects), or when every
/// handle is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    cmd: mpsc::Sender<Command>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("jid", &self.jid())
            .finish_non_exhaustive()
    }
}

async fn send_via(cmd: &mpsc::Sender<Command>, el: Element) -> Result<(), Error> {
    let (tx, rx) = oneshot::channel();
    cmd.send(Command::Send(el, tx))
        .await
        .map_err(|_| Error::Disconnected)?;
    rx.await.map_err(|_| Error::Disconnected)?
}

impl Client {
    /// Connects (to `options.addr`, or as DNS says for [`Endpoint::Dns`]), negotiates TLS,
    /// authenticates, binds and enables stream management when offered, then starts the
    /// task that owns the stream. A failure here is returned, not retried: reconnecting
    /// starts once a session existed.
    pub async fn connect(config: Config) -> Result<Client, Error> {
        let sm_cfg = StreamManagement {
            request_every: config
                .stream_management
                .request_every
                .clamp(1, config.stream_management.max_unacked.max(1)),
            max_unacked: config.stream_management.max_unacked.max(1),
            ..config.stream_management.clone()
        };
        let connector = Connector {
            options: config.options.clone(),
            endpoint: config.endpoint.clone(),
            sm: sm_cfg.clone(),
            timeout: config.connect_timeout,
        };
        let est = match connector
            .establish(None, config.options.resource.clone())
            .await?
        {
            Attempt::Done(est) => est,
            Attempt::StillAttached => return Err(Error::Protocol("no session to resume".into())),
        };
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            session: RwLock::new(SessionView {
                jid: est.session.jid.clone(),
                features: est.session.features.clone(),
            }),
            pending: Mutex::new(HashMap::new()),
            events,
            modules: config.modules,
            next_id: AtomicU64::new(1),
            request_timeout: config.request_timeout,
        });
        // Bounded so a flood of sends waits for the socket instead of growing memory.
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let mut sm = SmState::default();
        if let Some(id) = &est.sm_enabled {
            sm.enable(id.clone());
        }
        let driver = Driver {
            shared: shared.clone(),
            cmd_rx,
            cmd_tx: cmd_tx.downgrade(),
            iq_answer_timeout: config.iq_answer_timeout,
            close_timeout: config.close_timeout,
            connector,
            reconnect: config.reconnect,
            sm,
            sm_cfg,
            held: VecDeque::new(),
            ack_deadline: None,
        };
        tokio::spawn(driver.run(est.session, est.early));
        Ok(Client {
            shared,
            cmd: cmd_tx,
        })
    }

    /// The full JID the server bound for the current session (after a reconnection that
    /// could not resume, possibly another resource).
    pub fn jid(&self) -> FullJid {
        self.shared.view().jid.clone()
    }

    /// The stream features the server offered the current session after authentication.
    pub fn features(&self) -> Element {
        self.shared.view().features.clone()
    }

    /// Whether the current session's stream features include `<name xmlns='ns'/>`, e.g.
    /// roster versioning (`ver`, `urn:xmpp:features:rosterver`).
    pub fn has_feature(&self, name: &str, ns: &str) -> bool {
        self.shared.view().features.get_child(name, ns).is_some()
    }

    /// A new receiver of events. Events emitted before it was created are not seen.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// A fresh stanza id, unique within this client.
    pub fn new_id(&self) -> String {
        format!("c{}", self.shared.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Writes an element (a stanza, usually). Returns once it has been written to the
    /// connection, or an error saying it was not. While the client reconnects, waits for
    /// the new connection; with stream management, a stanza whose write failed is kept and
    /// sent again after the reconnection, and `send` succeeds. It waits (backpressure)
    /// while [`StreamManagement::max_unacked`] stanzas are unacknowledged.
    pub async fn send(&self, item: impl IntoElement) -> Result<(), Error> {
        send_via(&self.cmd, item.into_element()).await
    }
    /// Sends an iq get/set and waits for its reply, up to [`Config::request_timeout`].
    /// An id is added if the iq has none. A `type='error'` reply is [`Error::Stanza`].
    pub async fn request(&self, iq: impl IntoElement) -> Result<Element, Error> {
        self.request_with_timeout(iq, self.shared.request_timeout)
            .await
    }

    /// [`Client::request`] with its own timeout.
    pub async fn request_with_timeout(
        &self,
        iq: impl IntoElement,
        timeout: Duration,
    ) -> Result<Element, Error> {
        let mut iq = iq.into_element();
        if iq.name != "iq" || !matches!(iq.get_attr("type"), Some("get" | "set")) {
            return Err(Error::InvalidRequest(
                "request takes an iq of type get or set",
            ));
        }
        let to = match iq.get_attr("to") {
            Some(t) => Some(Jid::new(t).map_err(|_| Error::InvalidRequest("invalid 'to'"))?),
            None => None,
        };
        let id = match iq.get_attr("id") {
            Some(id) => id.to_string(),
            None => {
                let id = self.new_id();
                iq.set_attr("id", id.clone());
                id
            }
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.shared.lock_pending();
            if pending.contains_key(&id) {
                return Err(Error::InvalidRequest(
                    "an iq with this id is already pending",
                ));
            }
            pending.insert(id.clone(), Pending { reply: tx, to });
        }
        // Registered before sending, so even an instant reply finds its waiter.
        if let Err(e) = self.send(iq).await {
            self.shared.lock_pending().remove(&id);
            return Err(e);
        }
        let reply = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(Error::Disconnected),
            Err(_) => {
                self.shared.lock_pending().remove(&id);
                return Err(Error::Timeout);
            }
        };
        if reply.get_attr("type") == Some("error") {
            let error = StanzaError::from_stanza(&reply)
                .unwrap_or_else(|| StanzaError::new(StanzaErrorCondition::UndefinedCondition));
            return Err(Error::Stanza {
                error,
                stanza: Box::new(reply),
            });
        }
        Ok(reply)
    }

    /// Ends the stream politely (`</stream:stream>`, then waits a bounded time for the
    /// server's close). Other handles see [`Event::Disconnected`] with
    /// [`DisconnectReason::Closed`]; pending requests fail with [`Error::Disconnected`].
    pub async fn close(&self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Close(tx))
            .await
            .map_err(|_| Error::Disconnected)?;
        rx.await.map_err(|_| Error::Disconnected)
    }

    /// True once the driver task has stopped (closed, or disconnected for good).
    pub fn is_closed(&self) -> bool {
        self.cmd.is_closed()
    }
}

impl Shared {
    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A panic while holding this lock cannot leave the map inconsistent (single
        // inserts/removes), so a poisoned lock is still usable.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self) -> std::sync::RwLockReadGuard<'_, SessionView> {
        // Replaced whole, never half-written: a poisoned lock still holds a valid value.
        self.session.read().unwrap_or_else(|p| p.into_inner())
    }

    fn set_view(&self, view: SessionView) {
        *self.session.write().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// Whether `from` may answer a request sent to `to` (RFC 6120 §10.1.3: no `to` means the
    /// account itself, which the server answers with no `from`, the bare JID or the domain).
    fn reply_from_ok(&self, to: Option<&Jid>, from: Option<&Jid>) -> bool {
        let jid = self.view().jid.clone();
        let own_bare = jid.to_bare();
        match (to, from) {
            (None, None) => true,
            (None, Some(f)) => {
                f.as_str() == own_bare.as_str()
                    || f.as_str() == jid.as_str()
                    || f.as_str() == own_bare.domain().as_str()
            }
            (Some(t), None) => t.as_str() == own_bare.as_str(),
            (Some(t), Some(f)) => t == f,
        }
    }
}

/// What a resumption attempt needs from the previous session.
#[derive(Clone)]
struct ResumeRequest {
    previd: String,
    handled: u32,
    jid: FullJid,
    /// If the server refuses while it still counts our stanzas (`<failed h=…/>`: it has not
    /// noticed yet that the old connection is gone), give up this attempt and resume at the
    /// next one instead of binding anew.
    retry_if_attached: bool,
}

/// What one connection attempt came to.
enum Attempt {
    Done(Box<Established>),
    /// The server still had the old session on its old connection; try resuming again.
    StillAttached,
}

/// A negotiated session and how it came about.
struct Established {
    session: ClientSession,
    /// Resumed (XEP-0198): the server's count of our stanzas it handled.
    resumed: Option<u32>,
    /// A resumption failed, and the server said how many of our stanzas it had handled.
    failed_h: Option<u32>,
    /// Stream management enabled on a new session, with the resumption id if resumable.
    sm_enabled: Option<Option<String>>,
    /// Stanzas that arrived before `<enabled/>` (not counted by stream management).
    early: Vec<Element>,
}

/// The places to connect to, best first: the configured address, or what DNS says.
pub(crate) async fn targets(
    options: &ClientOptions,
    endpoint: &Endpoint,
) -> Result<Vec<Target>, Error> {
    match endpoint {
        Endpoint::Address => Ok(vec![Target {
            addr: options.addr,
            tls: options.tls,
        }]),
        Endpoint::Dns(cfg) => dns::resolve(&options.domain, cfg).await,
    }
}

/// Makes connections: the same for the first one and every reconnection.
#[derive(Clone)]
struct Connector {
    options: ClientOptions,
    endpoint: Endpoint,
    sm: StreamManagement,
    timeout: Duration,
}

impl Connector {
    async fn targets(&self) -> Result<Vec<Target>, Error> {
        targets(&self.options, &self.endpoint).await
    }

    /// Connects and logs in: resumes `resume` when the server offers stream management,
    /// else binds (`resource`) and enables stream management if configured.
    async fn establish(
        &self,
        resume: Option<ResumeRequest>,
        resource: Option<String>,
    ) -> Result<Attempt, Error> {
        tokio::time::timeout(self.timeout, self.establish_inner(resume, resource))
            .await
            .map_err(|_| Error::Timeout)?
    }

    async fn establish_inner(
        &self,
        resume: Option<ResumeRequest>,
        resource: Option<String>,
    ) -> Result<Attempt, Error> {
        let mut last = None;
        let mut auth = None;
        for t in self.targets().await? {
            let mut o = self.options.clone();
            o.addr = t.addr;
            o.tls = t.tls;
            match connect_authenticated(&o).await {
                Ok(a) => {
                    auth = Some(a);
                    break;
                }
                // Wrong credentials are wrong everywhere.
                Err(e @ ClientError::Auth(_)) => return Err(e.into()),
                Err(e) => {
                    tracing::debug!(addr = %t.addr, error = %e, "connection attempt failed");
                    last = Some(e);
                }
            }
        }
        let mut auth = match (auth, last) {
            (Some(a), _) => a,
            (None, Some(e)) => return Err(e.into()),
            (None, None) => return Err(Error::Dns("no address to connect to".into())),
        };
        let offers_sm = auth.features.get_child("sm", sm::NS).is_some();
        let mut failed_h = None;
        if let (Some(r), true) = (resume, offers_sm) {
            let el = Element::new("resume", sm::NS)
                .attr("previd", r.previd)
                .attr("h", r.handled.to_string());
            auth.stream
                .write_element(&el, ns::CLIENT)
                .await
                .map_err(ClientError::from)?;
            let answer = auth
                .stream
                .next_element()
                .await
                .map_err(ClientError::from)?;
            if let Some(e) = StreamError::from_element(&answer) {
                return Err(ClientError::Stream(e).into());
            }
            if answer.is("resumed", sm::NS) {
                let h = sm::h_of(&answer)
                    .ok_or_else(|| Error::Protocol("<resumed/> without h".into()))?;
                return Ok(Attempt::Done(Box::new(Established {
                    session: ClientSession {
                        stream: auth.stream,
                        jid: r.jid,
                        mechanism: auth.mechanism,
                        features: auth.features,
                    },
                    resumed: Some(h),
                    failed_h: None,
                    sm_enabled: None,
                    early: Vec::new(),
                })));
            }
            if !answer.is("failed", sm::NS) {
                return Err(Error::Protocol(format!(
                    "unexpected answer to <resume/>: {answer}"
                )));
            }
            failed_h = sm::h_of(&answer);
            if failed_h.is_some() && r.retry_if_attached {
                tracing::debug!(%answer, "resumption refused while the session is still attached; retrying");
                let _ = auth.stream.write_bytes(b"</stream:stream>").await;
                return Ok(Attempt::StillAttached);
            }
            tracing::debug!(%answer, "resumption refused; binding a new session");
        }
        let mut session = bind(auth, resource.as_deref()).await?;
        let mut sm_enabled = None;
        let mut early = Vec::new();
        if self.sm.enabled && offers_sm {
            let mut enable = Element::new("enable", sm::NS);
            if self.sm.resume {
                enable.set_attr("resume", "true");
                if let Some(max) = self.sm.max_resume {
                    enable.set_attr("max", max.as_secs().max(1).to_string());
                }
            }
            session.send(&enable).await?;
            loop {
                let el = session.recv().await?;
                if el.is("enabled", sm::NS) {
                    let resumable = matches!(el.get_attr("resume"), Some("true" | "1"));
                    let id = el.get_attr("id").filter(|_| resumable).map(str::to_string);
                    sm_enabled = Some(id);
                    break;
                }
                if el.is("failed", sm::NS) {
                    tracing::debug!(%el, "server refused stream management");
                    break;
                }
                if sm::is_stanza(&el) {
                    early.push(el);
                }
            }
        }
        Ok(Attempt::Done(Box::new(Established {
            session,
            resumed: None,
            failed_h,
            sm_enabled,
            early,
        })))
    }
}

/// Why serving a connection stopped.
enum Stop {
    /// The application closed the client (or dropped every handle).
    Closed,
    /// The connection ended; maybe worth reconnecting.
    Lost(DisconnectReason),
}

struct Driver {
    shared: Arc<Shared>,
    cmd_rx: mpsc::Receiver<Command>,
    // Weak, so the driver's own handle does not keep the connection open after the
    // application has dropped every `Client`.
    cmd_tx: mpsc::WeakSender<Command>,
    iq_answer_timeout: Duration,
    close_timeout: Duration,
    connector: Connector,
    reconnect: Option<Reconnect>,
    sm: SmState,
    sm_cfg: StreamManagement,
    /// Sends taken while there was no connection, written once there is one. Together
    /// with the unacknowledged stanzas at most `sm_cfg.max_unacked`.
    held: VecDeque<(Element, oneshot::Sender<Result<(), Error>>)>,
    /// When the pending `<r/>` must have been answered.
    ack_deadline: Option<Instant>,
}

/// How many reconnection attempts may find the old session still attached to its old
/// connection (the server has not noticed the loss yet) before the client binds anew.
const RETRIES_WHILE_ATTACHED: u32 = 3;

fn lost(e: ClientError) -> DisconnectReason {
    match e {
        ClientError::Stream(e) => DisconnectReason::StreamError(e),
        ClientError::Read(confab_stream::ReadError::Eof) => DisconnectReason::ServerClosed,
        e => DisconnectReason::ConnectionLost(e.to_string()),
    }
}

impl Driver {
    async fn run(mut self, first: ClientSession, early: Vec<Element>) {
        let mut conn = first;
        let mut prelude = Ok(());
        for el in early {
            if prelude.is_ok() {
                prelude = self.incoming(&mut conn, el, false).await;
            }
        }
        let mut stop = match prelude {
            Ok(()) => self.serve(conn).await,
            Err(e) => Stop::Lost(lost(e)),
        };
        loop {
            let reason = match stop {
                Stop::Closed => break self.finish(DisconnectReason::Closed),
                Stop::Lost(reason) => reason,
            };
            let will_reconnect = self.reconnect.is_some()
                && match &reason {
                    DisconnectReason::StreamError(e) => stream_error_is_transient(e),
                    DisconnectReason::Closed => false,
                    _ => true,
                };
            tracing::debug!(jid = %self.shared.view().jid, ?reason, will_reconnect, "connection ended");
            if !will_reconnect {
                break self.finish(reason);
            }
            let _ = self.shared.events.send(Event::Disconnected {
                reason: reason.clone(),
                will_reconnect: true,
            });
            stop = match self.reconnect_loop(reason).await {
                Ok((conn, resumed)) => {
                    let _ = self.shared.events.send(Event::Reconnected { resumed });
                    self.serve(conn).await
                }
                Err(stop) => stop,
            };
        }
    }

    /// The client stops for good.
    fn finish(&mut self, reason: DisconnectReason) {
        tracing::debug!(jid = %self.shared.view().jid, ?reason, "client stopped");
        // Dropping the waiters makes every pending request fail with `Disconnected`.
        self.shared.lock_pending().clear();
        self.cmd_rx.close();
        // Held sends were never written: their `send` fails with `Disconnected`.
        self.held.clear();
        let unacked = self.sm.take_unacked(None);
        if !unacked.is_empty() && reason != DisconnectReason::Closed {
            let _ = self.shared.events.send(Event::Unacknowledged(unacked));
        }
        let _ = self.shared.events.send(Event::Disconnected {
            reason,
            will_reconnect: false,
        });
    }

    fn has_room(&self) -> bool {
        self.held.len() + self.sm.unacked.len() < self.sm_cfg.max_unacked
    }

    /// Takes a command while there is no connection; Some(stop) if the client must stop.
    fn hold(&mut self, cmd: Option<Command>) -> Option<Stop> {
        match cmd {
            Some(Command::Send(el, done)) => {
                self.held.push_back((el, done));
                None
            }
            Some(Command::Close(done)) => {
                let _ = done.send(());
                Some(Stop::Closed)
            }
            None => Some(Stop::Closed),
        }
    }

    /// Tries to get a session back, with backoff; the new connection and whether the old
    /// session was resumed.
    async fn reconnect_loop(
        &mut self,
        mut reason: DisconnectReason,
    ) -> Result<(ClientSession, bool), Stop> {
        let Some(policy) = self.reconnect.clone() else {
            return Err(Stop::Lost(reason));
        };
        let connector = self.connector.clone();
        let mut attempt = 0u32;
        let mut attached_retries = 0u32;
        loop {
            if !policy.may_try(attempt) {
                return Err(Stop::Lost(reason));
            }
            let delay = policy.delay(attempt, &mut rand::thread_rng());
            attempt = attempt.saturating_add(1);
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    cmd = self.cmd_rx.recv(), if self.has_room() => {
                        if let Some(stop) = self.hold(cmd) {
                            return Err(stop);
                        }
                    }
                }
            }
            let resume = self.sm.resume_id.clone().map(|previd| ResumeRequest {
                previd,
                handled: self.sm.handled,
                jid: self.shared.view().jid.clone(),
                retry_if_attached: attached_retries < RETRIES_WHILE_ATTACHED,
            });
            // The resource of the lost session, so a new session keeps the same address.
            let resource = Some(self.shared.view().jid.resource().as_str().to_string());
            let establish = connector.establish(resume, resource);
            tokio::pin!(establish);
            let result = loop {
                tokio::select! {
                    r = &mut establish => break r,
                    cmd = self.cmd_rx.recv(), if self.has_room() => {
                        if let Some(stop) = self.hold(cmd) {
                            return Err(stop);
                        }
                    }
                }
            };
            let est = match result {
                Ok(Attempt::Done(est)) => *est,
                Ok(Attempt::StillAttached) => {
                    attached_retries += 1;
                    continue;
                }
                Err(Error::Connect(ClientError::Auth(e))) => {
                    return Err(Stop::Lost(DisconnectReason::ConnectionLost(format!(
                        "reconnecting: authentication failed: {e}"
                    ))));
                }
                Err(e) => {
                    tracing::debug!(attempt, error = %e, "reconnection attempt failed");
                    reason = DisconnectReason::ConnectionLost(format!("reconnecting: {e}"));
                    continue;
                }
            };
            let mut conn = est.session;
            let resumed = est.resumed.is_some();
            match self
                .restart(
                    &mut conn,
                    est.resumed,
                    est.failed_h,
                    est.sm_enabled,
                    est.early,
                )
                .await
            {
                Ok(()) => return Ok((conn, resumed)),
                Err(e) => {
                    tracing::debug!(error = %e, "connection lost right after reconnecting");
                    reason = lost(e);
                }
            }
        }
    }

    /// Puts a new connection in place: after a resumption sends again what the server
    /// had not handled; after a new bind starts counting afresh, sends again what the old
    /// session never had acknowledged and lets the modules set the session up; then writes
    /// the sends held meanwhile.
    async fn restart(
        &mut self,
        conn: &mut ClientSession,
        resumed: Option<u32>,
        failed_h: Option<u32>,
        sm_enabled: Option<Option<String>>,
        early: Vec<Element>,
    ) -> Result<(), ClientError> {
        self.ack_deadline = None;
        self.shared.set_view(SessionView {
            jid: conn.jid.clone(),
            features: conn.features.clone(),
        });
        if let Some(h) = resumed {
            if let Err(sent) = self.sm.ack(h) {
                tracing::info!(h, sent, "server resumed with an h beyond what was sent");
            }
            // Still unacknowledged: they stay queued while written again.
            let again: Vec<Element> = self.sm.unacked.iter().cloned().collect();
            for el in &again {
                conn.send(el).await?;
            }
            if !again.is_empty() {
                self.request_ack(conn).await?;
            }
        } else {
            let again = self.sm.take_unacked(failed_h);
            if let Some(id) = sm_enabled {
                self.sm.enable(id);
            }
            for el in early {
                self.incoming(conn, el, false).await?;
            }
            // What the old session may never have received. Without stream management
            // nothing is known, so nothing is repeated.
            for el in &again {
                self.write(conn, el).await?;
            }
            self.modules_new_session();
        }
        while let Some((el, done)) = self.held.pop_front() {
            match self.write(conn, &el).await {
                Ok(()) => {
                    let _ = done.send(Ok(()));
                }
                Err(e) => {
                    if self.keeps(&el) {
                        let _ = done.send(Ok(()));
                    } else {
                        self.held.push_front((el, done));
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Lets each module set a new session up, in order, on a task of its own.
    fn modules_new_session(&self) {
        let Some(cmd) = self.cmd_tx.upgrade() else {
            return;
        };
        let client = Client {
            shared: self.shared.clone(),
            cmd,
        };
        tokio::spawn(async move {
            let modules = client.shared.modules.clone();
            for m in modules {
                m.new_session(&client).await;
            }
        });
    }

    /// Whether a stanza whose write failed is kept to be sent again after reconnecting.
    fn keeps(&self, el: &Element) -> bool {
        self.sm.enabled && self.reconnect.is_some() && sm::is_stanza(el)
    }

    /// Writes an element, keeping stanzas until acknowledged when stream management is on
    /// (kept before the write, so one whose write fails is sent again after a resumption).
    async fn write(&mut self, conn: &mut ClientSession, el: &Element) -> Result<(), ClientError> {
        let ask = self.sm.sent(el, self.sm_cfg.request_every)
            || (self.sm.enabled
                && !self.sm.request_pending
                && self.sm.unacked.len() >= self.sm_cfg.max_unacked);
        conn.send(el).await?;
        if ask {
            self.request_ack(conn).await?;
        }
        Ok(())
    }

    async fn request_ack(&mut self, conn: &mut ClientSession) -> Result<(), ClientError> {
        conn.send(&Element::new("r", sm::NS)).await?;
        self.sm.requested();
        self.ack_deadline = Some(Instant::now() + self.sm_cfg.ack_timeout);
        Ok(())
    }

    /// Runs one connection until it ends.
    async fn serve(&mut self, mut conn: ClientSession) -> Stop {
        loop {
            // Full: wait for acknowledgements before taking more (backpressure).
            let room = !self.sm.enabled || self.sm.unacked.len() < self.sm_cfg.max_unacked;
            let deadline = self.ack_deadline;
            // `recv` is cancel-safe (confab-stream's read_more only keeps bytes that
            // arrived), so waiting on it beside the command queue loses nothing.
            tokio::select! {
                cmd = self.cmd_rx.recv(), if room => match cmd {
                    Some(Command::Send(el, done)) => {
                        let r = self.write(&mut conn, &el).await;
                        match r {
                            Ok(()) => {
                                let _ = done.send(Ok(()));
                            }
                            Err(e) => {
                                let kept = self.keeps(&el);
                                let _ = done.send(if kept { Ok(()) } else { Err(Error::Write(e.to_string())) });
                                return Stop::Lost(DisconnectReason::ConnectionLost(e.to_string()));
                            }
                        }
                    }
                    Some(Command::Close(done)) => {
                        self.close(&mut conn).await;
                        let _ = done.send(());
                        return Stop::Closed;
                    }
                    None => {
                        self.close(&mut conn).await;
                        return Stop::Closed;
                    }
                },
                r = conn.recv() => match r {
                    Ok(el) => {
                        if let Err(e) = self.incoming(&mut conn, el, true).await {
                            return Stop::Lost(lost(e));
                        }
                    }
                    Err(e) => return Stop::Lost(lost(e)),
                },
                _ = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    return Stop::Lost(DisconnectReason::ConnectionLost(
                        "no acknowledgement from the server in time".into(),
                    ));
                }
            }
        }
    }

    async fn close(&mut self, conn: &mut ClientSession) {
        // Tell the server what was handled, so it does not route it again (to offline
        // storage) when the session ends.
        let ack = self
            .sm
            .enabled
            .then(|| Element::new("a", sm::NS).attr("h", self.sm.handled.to_string()));
        let s = &mut conn.stream;
        let closing = async {
            if let Some(a) = &ack {
                s.write_element(a, ns::CLIENT).await?;
            }
            s.write_bytes(b"</stream:stream>").await?;
            // Drain until the server's close: stanzas in flight are dropped on purpose.
            loop {
                match s.next_event().await {
                    Ok(confab_proto::StreamEvent::Close) | Err(_) => break,
                    Ok(_) => continue,
                }
            }
            s.shutdown().await
        };
        if tokio::time::timeout(self.close_timeout, closing)
            .await
            .is_err()
        {
            tracing::debug!("server did not close its stream in time");
        }
        // Everything written before the close was read by the server.
        self.sm.unacked.clear();
    }

    /// Handles one incoming element; `count`: it counts toward stream management's `h`.
    async fn incoming(
        &mut self,
        conn: &mut ClientSession,
        el: Element,
        count: bool,
    ) -> Result<(), ClientError> {
        if el.ns.as_ref() as &str == sm::NS {
            return self.sm_element(conn, &el).await;
        }
        let stanza_like = sm::is_stanza(&el);
        let r = self.stanza(conn, el).await;
        // Handled once processed, even if it was invalid: the server counted it as sent.
        if stanza_like && count {
            self.sm.handled_one();
        }
        r
    }

    async fn sm_element(
        &mut self,
        conn: &mut ClientSession,
        el: &Element,
    ) -> Result<(), ClientError> {
        match el.name.as_str() {
            "r" if self.sm.enabled => {
                let a = Element::new("a", sm::NS).attr("h", self.sm.handled.to_string());
                conn.send(&a).await?;
            }
            "a" if self.sm.enabled => {
                let Some(h) = sm::h_of(el) else {
                    return Err(ClientError::Protocol("<a/> without a valid h".into()));
                };
                if let Err(sent) = self.sm.ack(h) {
                    tracing::info!(h, sent, "server acknowledged more than was sent");
                }
                self.ack_deadline = None;
            }
            _ => tracing::debug!(element = %el.name, "ignoring stream management element"),
        }
        Ok(())
    }

    async fn stanza(&mut self, conn: &mut ClientSession, el: Element) -> Result<(), ClientError> {
        let stanza = match Stanza::from_element(el) {
            Ok(s) => s,
            Err(b) => {
                let (why, el) = *b;
                match why {
                    StanzaParseError::Invalid(err)
                        if el.name == "iq"
                            && matches!(el.get_attr("type"), Some("get" | "set")) =>
                    {
                        let reply = error_reply_for(&el, None, None, &err);
                        self.write(conn, &reply.el).await?;
                    }
                    _ => {
                        tracing::debug!(element = %el.name, "ignoring non-stanza or invalid stanza")
                    }
                }
                return Ok(());
            }
        };
        if matches!(stanza.iq_type(), Some(IqType::Result | IqType::Error)) {
            self.response(stanza);
            return Ok(());
        }
        let mut out = Vec::new();
        let mut consumed = false;
        {
            let jid = self.shared.view().jid.clone();
            for m in &self.shared.modules {
                let mut ctx = Context::new(&jid, &mut out);
                if m.handle(&stanza, &mut ctx) == Handled::Consumed {
                    consumed = true;
                    break;
                }
            }
        }
        for e in &out {
            self.write(conn, e).await?;
        }
        if consumed {
            return Ok(());
        }
        match stanza.kind {
            StanzaKind::Message => {
                let _ = self.shared.events.send(Event::Message(stanza));
            }
            StanzaKind::Presence => {
                let _ = self.shared.events.send(Event::Presence(stanza));
            }
            StanzaKind::Iq => self.unhandled_iq(conn, stanza).await?,
        }
        Ok(())
    }

    fn response(&mut self, stanza: Stanza) {
        let Some(id) = stanza.id() else { return };
        let mut pending = self.shared.lock_pending();
        let matches = pending.get(id).is_some_and(|p| {
            self.shared
                .reply_from_ok(p.to.as_ref(), stanza.from.as_ref())
        });
        if matches {
            if let Some(p) = pending.remove(id) {
                let _ = p.reply.send(stanza.el);
            }
        } else {
            tracing::debug!(
                id,
                "iq response matching no request (or from the wrong entity)"
            );
        }
    }

    async fn unhandled_iq(
        &mut self,
        conn: &mut ClientSession,
        stanza: Stanza,
    ) -> Result<(), ClientError> {
        let unavailable = StanzaError::new(StanzaErrorCondition::ServiceUnavailable);
        let cmd = self.cmd_tx.clone();
        let answered = Arc::new(AtomicBool::new(false));
        let req = IqRequest {
            stanza: stanza.clone(),
            answered: answered.clone(),
            cmd: cmd.clone(),
        };
        if self.shared.events.send(Event::Iq(req)).is_err() {
            // Nobody listens for events, so nobody will answer: do it now.
            answered.store(true, Ordering::Release);
            if let Some(reply) = stanza.error_reply(&unavailable) {
                self.write(conn, &reply.el).await?;
            }
            return Ok(());
        }
        let wait = self.iq_answer_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if !answered.swap(true, Ordering::AcqRel) {
                if let (Some(reply), Some(cmd)) = (stanza.error_reply(&unavailable), cmd.upgrade())
                {
                    let _ = send_via(&cmd, reply.el).await;
                }
            }
        });
        Ok(())
    }
}

/// Builds an iq of the given type with one payload child (`to` optional), ready for
/// [`Client::request`].
pub fn iq(type_: IqType, to: Option<&Jid>, payload: Element) -> Element {
    let mut e = Element::new("iq", ns::CLIENT)
        .attr("type", type_.as_str())
        .child(payload);
    if let Some(t) = to {
        e.set_attr("to", t.as_str());
    }
    e
}
