//! The running client: one driver task owns the negotiated stream; [`Client`] is a cheap,
//! clonable handle that talks to it over a channel.

use crate::error::Error;
use crate::module::{Context, Handled, Module};
use confab_proto::stanza::{error_reply_for, StanzaParseError};
use confab_proto::{
    ns, Element, FullJid, IqType, Jid, Stanza, StanzaError, StanzaErrorCondition, StanzaKind,
    StreamError,
};
use confab_stream::client::{connect, ClientError, ClientOptions, ClientSession};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// How to connect, and how the running client behaves.
#[derive(Clone)]
pub struct Config {
    /// Address, domain, credentials, resource, TLS mode and certificate verification; the
    /// negotiation itself is confab-stream's.
    pub options: ClientOptions,
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
}

impl Config {
    /// A configuration with defaults from [`ClientOptions::new`]: STARTTLS required, the
    /// server's certificate checked against the system's trusted roots (set `verify` to
    /// [`confab_stream::tls::CertVerification::Roots`] to trust one given certificate).
    pub fn new(options: ClientOptions) -> Self {
        Config {
            options,
            request_timeout: Duration::from_secs(30),
            iq_answer_timeout: Duration::from_secs(10),
            close_timeout: Duration::from_secs(5),
            event_capacity: 256,
            modules: Vec::new(),
        }
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
pub enum Event {
    /// A message no module consumed.
    Message(Stanza),
    /// A presence no module consumed.
    Presence(Stanza),
    /// An iq get/set no module consumed; answer it with [`IqRequest::reply`] or
    /// [`IqRequest::reply_error`] within [`Config::iq_answer_timeout`].
    Iq(IqRequest),
    /// The stream ended; no further events follow.
    Disconnected(DisconnectReason),
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
    /// Write this element; the result says whether it reached the socket.
    Send(Element, oneshot::Sender<Result<(), Error>>),
    /// Close the stream; answered when done.
    Close(oneshot::Sender<()>),
}

struct Pending {
    reply: oneshot::Sender<Element>,
    /// The address the request went to, so a reply from anyone else is not taken for it.
    to: Option<Jid>,
}

struct Shared {
    jid: FullJid,
    pending: Mutex<HashMap<String, Pending>>,
    events: broadcast::Sender<Event>,
    modules: Vec<Arc<dyn Module>>,
    next_id: AtomicU64,
    request_timeout: Duration,
}

/// A handle to a running client. Clones share one connection; the connection closes on
/// [`Client::close`], on a server close or error, or when every handle is dropped.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    cmd: mpsc::Sender<Command>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("jid", &self.shared.jid)
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
    /// Connects, negotiates TLS, authenticates and binds (confab-stream's negotiation), then
    /// starts the task that owns the stream.
    pub async fn connect(config: Config) -> Result<Client, Error> {
        let session = connect(&config.options).await?;
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let shared = Arc::new(Shared {
            jid: session.jid.clone(),
            pending: Mutex::new(HashMap::new()),
            events,
            modules: config.modules,
            next_id: AtomicU64::new(1),
            request_timeout: config.request_timeout,
        });
        // Bounded so a flood of sends waits for the socket instead of growing memory.
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let driver = Driver {
            session,
            shared: shared.clone(),
            cmd_rx,
            cmd_tx: cmd_tx.downgrade(),
            iq_answer_timeout: config.iq_answer_timeout,
            close_timeout: config.close_timeout,
        };
        tokio::spawn(driver.run());
        Ok(Client {
            shared,
            cmd: cmd_tx,
        })
    }

    /// The full JID the server bound for this session.
    pub fn jid(&self) -> &FullJid {
        &self.shared.jid
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
    /// connection, or an error saying it was not.
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

    /// True once the driver task has stopped (closed or disconnected).
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

    /// Whether `from` may answer a request sent to `to` (RFC 6120 §10.1.3: no `to` means the
    /// account itself, which the server answers with no `from`, the bare JID or the domain).
    fn reply_from_ok(&self, to: Option<&Jid>, from: Option<&Jid>) -> bool {
        let own_bare = self.jid.to_bare();
        match (to, from) {
            (None, None) => true,
            (None, Some(f)) => {
                f.as_str() == own_bare.as_str()
                    || f.as_str() == self.jid.as_str()
                    || f.as_str() == own_bare.domain().as_str()
            }
            (Some(t), None) => t.as_str() == own_bare.as_str(),
            (Some(t), Some(f)) => t == f,
        }
    }
}

struct Driver {
    session: ClientSession,
    shared: Arc<Shared>,
    cmd_rx: mpsc::Receiver<Command>,
    // Weak, so the driver's own handle does not keep the connection open after the
    // application has dropped every `Client`.
    cmd_tx: mpsc::WeakSender<Command>,
    iq_answer_timeout: Duration,
    close_timeout: Duration,
}

impl Driver {
    async fn run(mut self) {
        let reason = loop {
            // `recv` is cancel-safe (confab-stream's read_more only keeps bytes that
            // arrived), so waiting on it beside the command queue loses nothing.
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(Command::Send(el, done)) => {
                        let r = self.session.send(&el).await;
                        let failed = r.as_ref().err().map(|e| e.to_string());
                        let _ = done.send(r.map_err(|e| Error::Write(e.to_string())));
                        if let Some(e) = failed {
                            break DisconnectReason::ConnectionLost(e);
                        }
                    }
                    Some(Command::Close(done)) => {
                        self.close().await;
                        let _ = done.send(());
                        break DisconnectReason::Closed;
                    }
                    None => {
                        self.close().await;
                        break DisconnectReason::Closed;
                    }
                },
                r = self.session.recv() => match r {
                    Ok(el) => {
                        if let Err(e) = self.incoming(el).await {
                            break DisconnectReason::ConnectionLost(e.to_string());
                        }
                    }
                    Err(ClientError::Stream(e)) => break DisconnectReason::StreamError(e),
                    Err(ClientError::Read(confab_stream::ReadError::Eof)) => {
                        break DisconnectReason::ServerClosed
                    }
                    Err(e) => break DisconnectReason::ConnectionLost(e.to_string()),
                },
            }
        };
        tracing::debug!(jid = %self.shared.jid, ?reason, "client stopped");
        // Dropping the waiters makes every pending request fail with `Disconnected`.
        self.shared.lock_pending().clear();
        self.cmd_rx.close();
        let _ = self.shared.events.send(Event::Disconnected(reason));
    }

    async fn close(&mut self) {
        let s = &mut self.session.stream;
        let closing = async {
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
    }

    async fn incoming(&mut self, el: Element) -> Result<(), ClientError> {
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
                        self.session.send(&reply.el).await?;
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
        for m in &self.shared.modules {
            let mut ctx = Context::new(&self.shared.jid, &mut out);
            if m.handle(&stanza, &mut ctx) == Handled::Consumed {
                consumed = true;
                break;
            }
        }
        for e in &out {
            self.session.send(e).await?;
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
            StanzaKind::Iq => self.unhandled_iq(stanza).await?,
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

    async fn unhandled_iq(&mut self, stanza: Stanza) -> Result<(), ClientError> {
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
                self.session.send(&reply.el).await?;
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
