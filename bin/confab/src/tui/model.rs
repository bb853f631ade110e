//! The terminal client's state, with no terminal and no network: SDK events and key presses
//! go in, [`Command`]s for the app to carry out come out, and the view draws what is here.
//! Everything is plain data so tests can drive it directly.

use confab_client::{BareJid, ChatEvent, ChatState, LeaveReason, MucEvent, PresenceEvent, Show};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Seconds (ticks) without a key press after which `composing` becomes `paused`
/// (XEP-0085 §5.2 suggests a few seconds).
pub const PAUSE_AFTER_TICKS: u32 = 5;

/// Lines kept per conversation (oldest dropped first), so a busy room cannot grow memory
/// without bound.
pub const MAX_LINES: usize = 2000;

/// A conversation: with a contact (bare JID) or in a room (the room's bare JID).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// One-to-one with this bare JID.
    Contact(String),
    /// In this room.
    Room(String),
}

/// How a contact is, from the presence of its resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Availability {
    /// No resource available (or no subscription to see it).
    Offline,
    /// Available (or free to chat).
    Online,
    /// Away or extended away.
    Away,
    /// Do not disturb.
    Busy,
}

/// A roster entry as the model needs it (converted from the SDK's roster item by the app).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterEntry {
    /// Bare JID.
    pub jid: String,
    /// The handle the user gave, if any.
    pub name: Option<String>,
    /// `none`, `to`, `from`, `both`.
    pub subscription: String,
    /// A request of ours is pending.
    pub asking: bool,
    /// The item was removed.
    pub removed: bool,
}

/// A contact in the roster pane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Contact {
    /// The handle the user gave, if any.
    pub name: Option<String>,
    /// `none`, `to`, `from`, `both`; empty for someone not in the roster.
    pub subscription: String,
    /// Our request to see their presence is pending.
    pub asking: bool,
    /// They asked to see ours and we have not answered.
    pub requested: bool,
    /// Available resources and their `show`.
    pub resources: BTreeMap<String, Option<Show>>,
    /// Messages not yet seen.
    pub unread: usize,
    /// They are typing (XEP-0085 `composing`).
    pub typing: bool,
}

impl Contact {
    /// The best availability of any resource.
    pub fn availability(&self) -> Availability {
        let mut best = Availability::Offline;
        for show in self.resources.values() {
            let a = match show {
                None | Some(Show::Chat) => return Availability::Online,
                Some(Show::Away) | Some(Show::Xa) => Availability::Away,
                Some(Show::Dnd) => Availability::Busy,
            };
            if best == Availability::Offline || a == Availability::Away {
                best = a;
            }
        }
        best
    }
}

/// A joined room in the roster pane.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Room {
    /// Our nickname there.
    pub nick: String,
    /// Messages not yet seen.
    pub unread: usize,
}

/// Who wrote a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Author {
    /// This user.
    Me,
    /// Someone else (nickname or bare JID).
    Them(String),
    /// The client or the room (joins, leaves, subjects).
    System,
}

/// One line of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Who wrote it.
    pub author: Author,
    /// The text as sent (emoji are applied when drawn).
    pub text: String,
    /// The stanza id, for receipts.
    pub id: Option<String>,
    /// The recipient's client confirmed it (XEP-0184).
    pub delivered: bool,
    /// Sent before now: from offline storage or room history.
    pub delayed: bool,
}

/// The connection as the status line shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    /// Logged in.
    Online,
    /// Lost; the client is trying to get it back.
    Reconnecting(String),
    /// Lost for good.
    Offline(String),
}

/// What the app must do for the model (with the SDK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a chat message with this id (already shown, awaiting its receipt).
    Send {
        /// Bare JID.
        to: String,
        /// The text.
        body: String,
        /// The id the model recorded.
        id: String,
    },
    /// Send a group message (shown when the room reflects it).
    SendRoom {
        /// Room bare JID.
        room: String,
        /// The text.
        body: String,
    },
    /// Send a standalone chat state.
    State {
        /// Bare JID.
        to: String,
        /// What we are doing.
        state: ChatState,
    },
    /// Add to the roster, pre-approve their request for ours and ask to see theirs.
    Add(String),
    /// Approve their request (and ask for theirs if we do not see it yet).
    Accept(String),
    /// Remove from the roster (ending subscriptions both ways).
    Remove(String),
    /// Join a room.
    Join {
        /// Room bare JID.
        room: String,
        /// Our nickname.
        nick: String,
    },
    /// Leave a room.
    Leave(String),
    /// Fetch a page of the server's archive (XEP-0313) before what is shown.
    History {
        /// The conversation.
        key: Key,
        /// The archive id to page back from; empty: the latest page.
        before: String,
    },
    /// Upload a file (XEP-0363) and send its URL to a contact.
    SendFile {
        /// Bare JID.
        to: String,
        /// The file.
        path: std::path::PathBuf,
    },
    /// Download a received file into a directory.
    Save {
        /// Its URL.
        url: String,
        /// Where to put it.
        dir: std::path::PathBuf,
    },
    /// Close the connection and exit.
    Quit,
}

/// What came back from a command the app ran in the background.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Something to tell the user.
    Info(String),
    /// Something failed.
    Error(String),
    /// A page of the archive, oldest first.
    History {
        /// The conversation.
        key: Key,
        /// Its messages, oldest first.
        lines: Vec<Line>,
        /// The archive id of the page's oldest message (where the next page ends).
        first: Option<String>,
        /// Nothing older is archived.
        complete: bool,
    },
    /// A file was uploaded and its URL sent.
    FileSent {
        /// Bare JID of the recipient.
        to: String,
        /// Where it is.
        url: String,
    },
    /// A room was joined.
    Joined {
        /// Room bare JID.
        room: String,
        /// Our nickname.
        nick: String,
    },
}

/// The whole client state.
#[derive(Debug)]
pub struct Model {
    /// This account's bare JID.
    pub me: String,
    /// Contacts by bare JID.
    pub contacts: BTreeMap<String, Contact>,
    /// Joined rooms by bare JID.
    pub rooms: BTreeMap<String, Room>,
    /// Each conversation's lines, oldest first.
    pub logs: HashMap<Key, VecDeque<Line>>,
    /// The conversation shown.
    pub open: Option<Key>,
    /// What is being typed.
    pub input: String,
    /// Lines scrolled up from the bottom of the open conversation.
    pub scroll: u16,
    /// How far the open conversation can scroll up before its top (rows above the pane,
    /// as last drawn); scrolling past it fetches an older page of the archive.
    scroll_limit: u16,
    /// An archive page was asked for and has not come back yet.
    history_pending: bool,
    /// The connection.
    pub connection: Connection,
    /// The last notice: (text, is an error).
    pub notice: Option<(String, bool)>,
    /// To whom `composing` (or `paused` after it) was sent and not yet ended.
    composing_to: Option<String>,
    /// `paused` was sent to `composing_to`.
    paused: bool,
    /// Ticks since the last key press.
    idle_ticks: u32,
    /// Per conversation, the archive id the next history page ends before; `None` inside
    /// once the archive has nothing older.
    history: HashMap<Key, Option<String>>,
    /// The URL of the last file received (what `/save` downloads).
    pub last_file: Option<String>,
    /// Set once the user asked to quit.
    pub quit: bool,
    /// Ids for messages sent (unique within this run).
    next_id: u64,
    id_prefix: String,
}

/// How a file shows in a conversation: its name and URL (and the text, if it says more
/// than the URL).
fn file_line(url: &str, body: &str) -> String {
    let name = confab_client::upload::file_name_of(url).unwrap_or_else(|| "file".into());
    if body.trim() == url || body.trim().is_empty() {
        format!("[file] {name} {url}")
    } else {
        format!("{body} [file] {name} {url}")
    }
}

/// A bare JID, normalised, or a message saying what is wrong.
fn bare_jid(s: &str) -> Result<String, String> {
    match BareJid::new(s) {
        Ok(j) if j.node().is_some() => Ok(j.to_string()),
        Ok(_) => Err(format!("{s}: needs a user part (user@domain)")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

impl Model {
    /// A fresh model for account `me`; `id_prefix` keeps message ids unique across runs.
    pub fn new(me: &str, id_prefix: &str) -> Model {
        Model {
            me: me.to_string(),
            contacts: BTreeMap::new(),
            rooms: BTreeMap::new(),
            logs: HashMap::new(),
            open: None,
            input: String::new(),
            scroll: 0,
            scroll_limit: 0,
            history_pending: false,
            connection: Connection::Online,
            notice: None,
            composing_to: None,
            paused: false,
            idle_ticks: 0,
            history: HashMap::new(),
            last_file: None,
            quit: false,
            next_id: 0,
            id_prefix: id_prefix.to_string(),
        }
    }

    /// Conversations in the order the roster pane lists them: contacts, then rooms.
    pub fn conversations(&self) -> Vec<Key> {
        self.contacts
            .keys()
            .map(|j| Key::Contact(j.clone()))
            .chain(self.rooms.keys().map(|r| Key::Room(r.clone())))
            .collect()
    }

    /// The open conversation's lines.
    pub fn open_lines(&self) -> impl Iterator<Item = &Line> {
        self.open
            .as_ref()
            .and_then(|k| self.logs.get(k))
            .into_iter()
            .flatten()
    }

    /// Whether the open conversation's contact is typing.
    pub fn open_typing(&self) -> Option<&str> {
        match &self.open {
            Some(Key::Contact(j)) if self.contacts.get(j).is_some_and(|c| c.typing) => {
                Some(j.as_str())
            }
            _ => None,
        }
    }

    fn info(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), false));
    }

    fn error(&mut self, text: impl Into<String>) {
        self.notice = Some((text.into(), true));
    }

    fn push(&mut self, key: Key, line: Line) {
        let log = self.logs.entry(key.clone()).or_default();
        if log.len() >= MAX_LINES {
            log.pop_front();
        }
        log.push_back(line);
        if self.open.as_ref() != Some(&key) {
            match &key {
                Key::Contact(j) => self.contacts.entry(j.clone()).or_default().unread += 1,
                Key::Room(r) => {
                    if let Some(room) = self.rooms.get_mut(r) {
                        room.unread += 1;
                    }
                }
            }
        }
    }

    /// Shows `key` and marks it read.
    pub fn open(&mut self, key: Key) {
        match &key {
            Key::Contact(j) => self.contacts.entry(j.clone()).or_default().unread = 0,
            Key::Room(r) => {
                if let Some(room) = self.rooms.get_mut(r) {
                    room.unread = 0;
                }
            }
        }
        self.open = Some(key);
        self.scroll = 0;
    }

    fn cycle(&mut self, forward: bool) {
        let all = self.conversations();
        if all.is_empty() {
            return;
        }
        let pos = self
            .open
            .as_ref()
            .and_then(|k| all.iter().position(|c| c == k));
        let next = match (pos, forward) {
            (None, _) => 0,
            (Some(i), true) => (i + 1) % all.len(),
            (Some(i), false) => (i + all.len() - 1) % all.len(),
        };
        self.open(all[next].clone());
    }

    // ----- SDK events -----

    /// A roster item (from the first fetch or a push).
    pub fn on_roster(&mut self, e: RosterEntry) {
        if e.removed {
            self.contacts.remove(&e.jid);
            if self.open == Some(Key::Contact(e.jid.clone())) {
                self.open = None;
            }
            return;
        }
        let c = self.contacts.entry(e.jid).or_default();
        c.name = e.name;
        c.subscription = e.subscription;
        c.asking = e.asking;
    }

    /// A presence event.
    pub fn on_presence(&mut self, e: PresenceEvent) {
        match e {
            PresenceEvent::Available(full, status) => {
                let bare = full.to_bare().to_string();
                if bare == self.me {
                    return; // our other clients are not contacts
                }
                let c = self.contacts.entry(bare).or_default();
                c.resources.insert(full.to_string(), status.show);
            }
            PresenceEvent::Unavailable(full) => {
                let bare = full.to_bare().to_string();
                if let Some(c) = self.contacts.get_mut(&bare) {
                    c.resources.remove(full.as_str());
                    if c.resources.is_empty() {
                        c.typing = false;
                    }
                }
            }
            PresenceEvent::SubscriptionRequest { from, nick } => {
                let jid = from.to_string();
                let who = match nick {
                    Some(n) => format!("{n} ({jid})"),
                    None => jid.clone(),
                };
                self.contacts.entry(jid.clone()).or_default().requested = true;
                self.info(format!("{who} wants to be friends: /accept {jid}"));
            }
            PresenceEvent::Subscribed(j) => self.info(format!("{j} accepted your request")),
            PresenceEvent::Unsubscribed(j) => {
                if let Some(c) = self.contacts.get_mut(j.as_str()) {
                    c.resources.clear();
                }
                self.info(format!("{j} does not share presence with you"));
            }
            PresenceEvent::Unsubscribe(j) => self.info(format!("{j} stopped seeing your presence")),
        }
    }

    /// A chat event.
    pub fn on_chat(&mut self, e: ChatEvent) {
        match e {
            ChatEvent::Message(m) => {
                let Some(from) = m.from.as_ref().map(|f| f.to_bare().to_string()) else {
                    return;
                };
                let Some(mut body) = m.body.clone() else {
                    return; // a correction without a body changes nothing shown
                };
                // A file (XEP-0363 upload sent with XEP-0066): its name and URL.
                if let Some(url) = &m.oob_url {
                    body = file_line(url, &body);
                    self.last_file = Some(url.clone());
                }
                if let Some(c) = self.contacts.get_mut(&from) {
                    c.typing = false;
                }
                let key = Key::Contact(from.clone());
                // A correction (XEP-0308) replaces the text of the line it names.
                if let Some(old) = &m.replaces {
                    if let Some(line) = self.logs.get_mut(&key).and_then(|l| {
                        l.iter_mut().rev().find(|l| {
                            l.id.as_deref() == Some(old) && l.author == Author::Them(from.clone())
                        })
                    }) {
                        line.text = body;
                        return;
                    }
                }
                self.push(
                    key,
                    Line {
                        author: Author::Them(from),
                        text: body,
                        id: m.id,
                        delivered: false,
                        delayed: m.delayed.is_some(),
                    },
                );
            }
            ChatEvent::State { from, state } => {
                let bare = from.to_bare().to_string();
                if let Some(c) = self.contacts.get_mut(&bare) {
                    c.typing = state == ChatState::Composing;
                }
            }
            ChatEvent::Delivered { from, id } => {
                let key = Key::Contact(from.to_bare().to_string());
                if let Some(line) = self
                    .logs
                    .get_mut(&key)
                    .and_then(|l| l.iter_mut().rev().find(|l| l.id.as_deref() == Some(&id)))
                {
                    line.delivered = true;
                }
            }
            ChatEvent::Failed { from, error, .. } => {
                let who = from.map(|f| f.to_bare().to_string()).unwrap_or_default();
                self.error(format!("message to {who} failed: {error}"));
            }
        }
    }

    /// A MUC event.
    pub fn on_muc(&mut self, e: MucEvent) {
        let system = |text: String| Line {
            author: Author::System,
            text,
            id: None,
            delivered: false,
            delayed: false,
        };
        match e {
            MucEvent::Message(m) => {
                let room = m.room.to_string();
                let author = match (&m.nick, m.own) {
                    (_, true) => Author::Me,
                    (Some(n), false) => Author::Them(n.clone()),
                    (None, false) => Author::System,
                };
                self.push(
                    Key::Room(room),
                    Line {
                        author,
                        text: m.body,
                        id: m.id,
                        delivered: false,
                        delayed: m.delayed.is_some(),
                    },
                );
            }
            MucEvent::OccupantJoined { room, occupant } => {
                let line = system(format!("{} joined", occupant.nick));
                self.push(Key::Room(room.to_string()), line);
            }
            MucEvent::OccupantLeft { room, nick, .. } => {
                self.push(Key::Room(room.to_string()), system(format!("{nick} left")));
            }
            MucEvent::NickChanged { room, old, new } => {
                let line = system(format!("{old} is now {new}"));
                self.push(Key::Room(room.to_string()), line);
            }
            MucEvent::Subject { room, subject, .. } if !subject.is_empty() => {
                let line = system(format!("subject: {subject}"));
                self.push(Key::Room(room.to_string()), line);
            }
            MucEvent::Left { room, reason } => {
                let r = room.to_string();
                self.rooms.remove(&r);
                if self.open == Some(Key::Room(r.clone())) {
                    self.open = None;
                }
                let why = match reason {
                    LeaveReason::Left => "you left".to_string(),
                    other => format!("{other:?}"),
                };
                self.info(format!("left {r}: {why}"));
            }
            MucEvent::Invited { room, from, .. } => {
                let who = from.map(|f| f.to_string()).unwrap_or_default();
                self.info(format!("{who} invites you to {room}: /join {room} NICK"));
            }
            MucEvent::Error { room, error, .. } => self.error(format!("{room}: {error}")),
            _ => {}
        }
    }

    /// The connection was lost (`retrying`: the client is reconnecting) or came back.
    pub fn on_connection(&mut self, c: Connection) {
        if c != Connection::Online {
            for contact in self.contacts.values_mut() {
                contact.resources.clear();
                contact.typing = false;
            }
        }
        self.connection = c;
    }

    /// The result of a background command.
    pub fn on_outcome(&mut self, o: Outcome) {
        match o {
            Outcome::Info(t) => self.info(t),
            Outcome::Error(t) => {
                self.history_pending = false;
                self.error(t)
            }
            Outcome::History {
                key,
                lines,
                first,
                complete,
            } => {
                self.history_pending = false;
                let log = self.logs.entry(key.clone()).or_default();
                // What is already shown (it came live, or on an earlier page) is not repeated.
                let fresh: Vec<Line> = lines
                    .into_iter()
                    .filter(|l| l.id.is_none() || !log.iter().any(|s| s.id == l.id))
                    .collect();
                let n = fresh.len();
                for line in fresh.into_iter().rev() {
                    if log.len() >= MAX_LINES {
                        break; // the window is full: older pages would fall off at once
                    }
                    log.push_front(line);
                }
                self.history
                    .insert(key, if complete { None } else { first });
                self.info(if complete && n == 0 {
                    "no earlier messages in the archive".to_string()
                } else {
                    format!("{n} earlier messages from the archive")
                });
            }
            Outcome::FileSent { to, url } => {
                self.push(
                    Key::Contact(to),
                    Line {
                        author: Author::Me,
                        text: file_line(&url, &url),
                        id: None,
                        delivered: false,
                        delayed: false,
                    },
                );
            }
            Outcome::Joined { room, nick } => {
                self.rooms.insert(room.clone(), Room { nick, unread: 0 });
                self.info(format!("joined {room}"));
                self.open(Key::Room(room));
            }
        }
    }

    // ----- keys -----

    /// A key press; returns what the app must do.
    pub fn on_key(&mut self, k: KeyEvent) -> Vec<Command> {
        if k.kind == KeyEventKind::Release {
            return Vec::new();
        }
        self.idle_ticks = 0;
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Char('c') | KeyCode::Char('d') if ctrl => self.quit(),
            // A terminal sends Escape followed quickly by a key as that key with Alt: the
            // Escape (clear the input) is what the person pressed, then the key.
            KeyCode::Char(c) if !ctrl && k.modifiers.contains(KeyModifiers::ALT) => {
                self.input.clear();
                let mut out = self.typing_ended();
                self.input.push(c);
                out.extend(self.typing_started());
                out
            }
            KeyCode::Char(c) if !ctrl => {
                self.input.push(c);
                self.typing_started()
            }
            KeyCode::Backspace => {
                self.input.pop();
                self.typing_ended()
            }
            KeyCode::Esc => {
                self.input.clear();
                self.typing_ended()
            }
            KeyCode::Enter => self.submit(),
            KeyCode::Tab | KeyCode::Down => {
                let mut out = self.stop_composing();
                self.cycle(true);
                out.extend(self.typing_started());
                out
            }
            KeyCode::BackTab | KeyCode::Up => {
                let mut out = self.stop_composing();
                self.cycle(false);
                out.extend(self.typing_started());
                out
            }
            KeyCode::PageUp => self.page_up(),
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_sub(10);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Records how far the open conversation can scroll (from the last drawing), keeping
    /// the scroll position within it.
    pub fn set_scroll_limit(&mut self, rows_above: u16) {
        self.scroll_limit = rows_above;
        self.scroll = self.scroll.min(rows_above);
    }

    /// PageUp: scrolls up; at the top, asks the archive for the page before what is shown.
    fn page_up(&mut self) -> Vec<Command> {
        if self.scroll >= self.scroll_limit {
            if self.history_pending {
                return Vec::new();
            }
            return self.older_page();
        }
        self.scroll = self.scroll.saturating_add(10).min(self.scroll_limit);
        Vec::new()
    }

    /// The request for the open conversation's next older archive page, if there is one.
    fn older_page(&mut self) -> Vec<Command> {
        let Some(key) = self.open.clone() else {
            self.error("no conversation open");
            return Vec::new();
        };
        let before = match self.history.get(&key) {
            Some(None) => {
                self.info("no earlier messages in the archive");
                return Vec::new();
            }
            Some(Some(before)) => before.clone(),
            None => String::new(),
        };
        self.history_pending = true;
        self.info("loading earlier messages…");
        vec![Command::History { key, before }]
    }

    fn quit(&mut self) -> Vec<Command> {
        self.quit = true;
        vec![Command::Quit]
    }

    /// `composing` once, when text (not a command) starts in a one-to-one conversation.
    fn typing_started(&mut self) -> Vec<Command> {
        let Some(Key::Contact(to)) = &self.open else {
            return Vec::new();
        };
        if self.input.is_empty() || self.input.starts_with('/') {
            return self.stop_composing();
        }
        if self.composing_to.as_ref() == Some(to) && !self.paused {
            return Vec::new();
        }
        self.composing_to = Some(to.clone());
        self.paused = false;
        vec![Command::State {
            to: to.clone(),
            state: ChatState::Composing,
        }]
    }

    fn typing_ended(&mut self) -> Vec<Command> {
        if self.input.is_empty() || self.input.starts_with('/') {
            self.stop_composing()
        } else {
            Vec::new()
        }
    }

    /// A second passed: after [`PAUSE_AFTER_TICKS`] without a key press, whoever was told
    /// we are composing is told we paused.
    pub fn on_tick(&mut self) -> Vec<Command> {
        let Some(to) = &self.composing_to else {
            return Vec::new();
        };
        if self.paused {
            return Vec::new();
        }
        self.idle_ticks = self.idle_ticks.saturating_add(1);
        if self.idle_ticks < PAUSE_AFTER_TICKS {
            return Vec::new();
        }
        self.paused = true;
        vec![Command::State {
            to: to.clone(),
            state: ChatState::Paused,
        }]
    }

    /// `active` to whoever was told we were composing.
    fn stop_composing(&mut self) -> Vec<Command> {
        self.paused = false;
        match self.composing_to.take() {
            Some(to) => vec![Command::State {
                to,
                state: ChatState::Active,
            }],
            None => Vec::new(),
        }
    }

    fn submit(&mut self) -> Vec<Command> {
        let text = std::mem::take(&mut self.input);
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return self.stop_composing();
        }
        if let Some(cmd) = trimmed.strip_prefix('/') {
            let mut out = self.stop_composing();
            out.extend(self.slash(cmd));
            return out;
        }
        self.scroll = 0;
        match self.open.clone() {
            Some(Key::Contact(to)) => {
                // The message carries `active` itself (XEP-0085 §5.1).
                self.composing_to = None;
                self.next_id += 1;
                let id = format!("{}-{}", self.id_prefix, self.next_id);
                self.push(
                    Key::Contact(to.clone()),
                    Line {
                        author: Author::Me,
                        text: text.clone(),
                        id: Some(id.clone()),
                        delivered: false,
                        delayed: false,
                    },
                );
                vec![Command::Send { to, body: text, id }]
            }
            Some(Key::Room(room)) => vec![Command::SendRoom { room, body: text }],
            None => {
                self.error("no conversation open: Tab picks one, /add JID adds a contact");
                self.input = text;
                Vec::new()
            }
        }
    }

    /// A `/command` (without the slash).
    fn slash(&mut self, cmd: &str) -> Vec<Command> {
        let mut words = cmd.split_whitespace();
        let name = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        let one_jid = |m: &mut Model, usage: &str| -> Option<String> {
            match args.as_slice() {
                [j] => match bare_jid(j) {
                    Ok(j) => Some(j),
                    Err(e) => {
                        m.error(e);
                        None
                    }
                },
                _ => {
                    m.error(format!("usage: {usage}"));
                    None
                }
            }
        };
        match name {
            "quit" | "q" => self.quit(),
            "add" => match one_jid(self, "/add USER@DOMAIN") {
                Some(j) => {
                    self.info(format!("asked {j} to be friends"));
                    vec![Command::Add(j)]
                }
                None => Vec::new(),
            },
            "accept" => match one_jid(self, "/accept USER@DOMAIN") {
                Some(j) => {
                    if let Some(c) = self.contacts.get_mut(&j) {
                        c.requested = false;
                    }
                    vec![Command::Accept(j)]
                }
                None => Vec::new(),
            },
            "remove" => match one_jid(self, "/remove USER@DOMAIN") {
                Some(j) => vec![Command::Remove(j)],
                None => Vec::new(),
            },
            "msg" | "open" => match one_jid(self, "/msg USER@DOMAIN") {
                Some(j) => {
                    self.open(Key::Contact(j));
                    Vec::new()
                }
                None => Vec::new(),
            },
            "join" => match args.as_slice() {
                [room, nick] => match BareJid::new(room) {
                    Ok(r) if r.node().is_some() => vec![Command::Join {
                        room: r.to_string(),
                        nick: nick.to_string(),
                    }],
                    _ => {
                        self.error(format!(
                            "{room}: not a room address (room@conference.domain)"
                        ));
                        Vec::new()
                    }
                },
                _ => {
                    self.error("usage: /join ROOM@SERVICE NICK");
                    Vec::new()
                }
            },
            "leave" | "part" => {
                let room = match (args.as_slice(), &self.open) {
                    ([r], _) => Some(r.to_string()),
                    ([], Some(Key::Room(r))) => Some(r.clone()),
                    _ => None,
                };
                match room {
                    Some(r) => vec![Command::Leave(r)],
                    None => {
                        self.error("usage: /leave [ROOM] (in a room: leaves it)");
                        Vec::new()
                    }
                }
            }
            "history" => self.older_page(),
            "file" => {
                // The path is the rest of the line: file names have spaces.
                let path = cmd
                    .trim_start()
                    .strip_prefix("file")
                    .unwrap_or_default()
                    .trim();
                match (&self.open, path) {
                    (_, "") => {
                        self.error("usage: /file PATH (sends it to the open chat)");
                        Vec::new()
                    }
                    (Some(Key::Contact(to)), p) => {
                        let to = to.clone();
                        self.info(format!("uploading {p}…"));
                        vec![Command::SendFile { to, path: p.into() }]
                    }
                    _ => {
                        self.error("open a chat with a contact to send a file");
                        Vec::new()
                    }
                }
            }
            "save" => match self.last_file.clone() {
                Some(url) => {
                    let dir = cmd
                        .trim_start()
                        .strip_prefix("save")
                        .unwrap_or_default()
                        .trim();
                    vec![Command::Save {
                        url,
                        dir: if dir.is_empty() {
                            ".".into()
                        } else {
                            dir.into()
                        },
                    }]
                }
                None => {
                    self.error("no file received yet");
                    Vec::new()
                }
            },
            "help" => {
                self.info("/add JID  /accept JID  /remove JID  /msg JID  /join ROOM NICK  /leave  /history  /file PATH  /save [DIR]  /quit  (Tab: next chat, PgUp/PgDn: scroll, past the top: older messages from the archive)");
                Vec::new()
            }
            other => {
                self.error(format!("unknown command /{other} (try /help)"));
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_client::{ChatMessage, FullJid, Jid, Status};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn typed(m: &mut Model, s: &str) -> Vec<Command> {
        let mut out = Vec::new();
        for c in s.chars() {
            out.extend(m.on_key(key(KeyCode::Char(c))));
        }
        out
    }

    fn enter(m: &mut Model, s: &str) -> Vec<Command> {
        let mut out = typed(m, s);
        out.extend(m.on_key(key(KeyCode::Enter)));
        out
    }

    fn friend(m: &mut Model, jid: &str) {
        m.on_roster(RosterEntry {
            jid: jid.into(),
            name: None,
            subscription: "both".into(),
            asking: false,
            removed: false,
        });
    }

    fn incoming(from: &str, body: &str, id: &str) -> ChatEvent {
        ChatEvent::Message(ChatMessage {
            id: Some(id.into()),
            from: Some(Jid::new(from).expect("jid")),
            body: Some(body.into()),
            ..ChatMessage::default()
        })
    }

    /// Escape read together with the next key arrives as that key with Alt: the input is
    /// cleared and the key typed, so "/quit" after Escape quits instead of being sent.
    #[test]
    fn escape_then_a_key_read_as_alt_clears_the_input() {
        let mut m = Model::new("alice@localhost", "t");
        friend(&mut m, "bob@localhost");
        m.on_key(key(KeyCode::Tab));
        typed(&mut m, "let me think");
        m.on_key(KeyEvent::new(KeyCode::Char('/'), KeyModifiers::ALT));
        typed(&mut m, "quit");
        assert_eq!(m.input, "/quit");
    }

    #[test]
    fn messages_count_unread_until_opened() {
        let mut m = Model::new("alice@localhost", "t");
        friend(&mut m, "bob@localhost");
        m.on_chat(incoming("bob@localhost/desk", "hi :)", "m1"));
        m.on_chat(incoming("bob@localhost/desk", "there", "m2"));
        assert_eq!(m.contacts["bob@localhost"].unread, 2);
        m.on_key(key(KeyCode::Tab));
        assert_eq!(m.open, Some(Key::Contact("bob@localhost".into())));
        assert_eq!(m.contacts["bob@localhost"].unread, 0);
        let texts: Vec<_> = m.open_lines().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["hi :)", "there"]);
        // While open, new messages are read at once.
        m.on_chat(incoming("bob@localhost/desk", "more", "m3"));
        assert_eq!(m.contacts["bob@localhost"].unread, 0);
        // A stranger's message makes an entry with its unread count.
        m.on_chat(incoming("eve@localhost/x", "psst", "e1"));
        assert_eq!(m.contacts["eve@localhost"].unread, 1);
    }

    #[test]
    fn typing_sends_composing_once_then_the_message_and_its_tick() {
        let mut m = Model::new("alice@localhost", "t");
        friend(&mut m, "bob@localhost");
        m.open(Key::Contact("bob@localhost".into()));
        let out = typed(&mut m, "hello");
        assert_eq!(
            out,
            vec![Command::State {
                to: "bob@localhost".into(),
                state: ChatState::Composing
            }]
        );
        let out = m.on_key(key(KeyCode::Enter));
        assert_eq!(
            out,
            vec![Command::Send {
                to: "bob@localhost".into(),
                body: "hello".into(),
                id: "t-1".into()
            }]
        );
        assert!(m.input.is_empty());
        let line = m.open_lines().last().expect("own line").clone();
        assert_eq!(line.author, Author::Me);
        assert!(!line.delivered);
        // A receipt from another account for the same id changes nothing.
        m.on_chat(ChatEvent::Delivered {
            from: Jid::new("eve@localhost/x").expect("jid"),
            id: "t-1".into(),
        });
        assert!(!m.open_lines().last().expect("line").delivered);
        m.on_chat(ChatEvent::Delivered {
            from: Jid::new("bob@localhost/desk").expect("jid"),
            id: "t-1".into(),
        });
        assert!(m.open_lines().last().expect("line").delivered);
        // Typing and deleting it all says `active` again.
        typed(&mut m, "x");
        assert_eq!(
            m.on_key(key(KeyCode::Backspace)),
            vec![Command::State {
                to: "bob@localhost".into(),
                state: ChatState::Active
            }]
        );
        // A command is not typing.
        assert!(typed(&mut m, "/help").is_empty());
        m.input.clear();
    }

    #[test]
    fn composing_pauses_when_idle_and_resumes() {
        let mut m = Model::new("alice@localhost", "t");
        friend(&mut m, "bob@localhost");
        m.open(Key::Contact("bob@localhost".into()));
        assert!(m.on_tick().is_empty(), "nothing typed, nothing to pause");
        typed(&mut m, "hel");
        for _ in 1..PAUSE_AFTER_TICKS {
            assert!(m.on_tick().is_empty());
        }
        let paused = vec![Command::State {
            to: "bob@localhost".into(),
            state: ChatState::Paused,
        }];
        assert_eq!(m.on_tick(), paused);
        assert!(m.on_tick().is_empty(), "paused once");
        // Typing again is composing again; a key press restarts the count.
        assert_eq!(
            typed(&mut m, "l"),
            vec![Command::State {
                to: "bob@localhost".into(),
                state: ChatState::Composing
            }]
        );
        for _ in 1..PAUSE_AFTER_TICKS {
            assert!(m.on_tick().is_empty());
        }
        typed(&mut m, "o");
        assert!(m.on_tick().is_empty());
        for _ in 1..PAUSE_AFTER_TICKS {
            m.on_tick();
        }
        assert_eq!(m.composing_to.as_deref(), Some("bob@localhost"));
        assert!(m.paused);
    }

    #[test]
    fn their_typing_shows_until_their_message() {
        let mut m = Model::new("alice@localhost", "t");
        friend(&mut m, "bob@localhost");
        m.open(Key::Contact("bob@localhost".into()));
        m.on_chat(ChatEvent::State {
            from: Jid::new("bob@localhost/desk").expect("jid"),
            state: ChatState::Composing,
        });
        assert_eq!(m.open_typing(), Some("bob@localhost"));
        m.on_chat(incoming("bob@localhost/desk", "done", "m1"));
        assert_eq!(m.open_typing(), None);
        m.on_chat(ChatEvent::State {
            from: Jid::new("bob@localhost/desk").expect("jid"),
            state: ChatState::Composing,
        });
        m.on_chat(ChatEvent::State {
            from: Jid::new("bob@localhost/desk").expect("jid"),
            state: ChatState::Paused,
        });
        assert_eq!(m.open_typing(), None);
    }

    #[test]
    fn presence_and_friend_requests() {
        let mut m = Model::new("alice@localhost", "t");
        let bob = FullJid::new("bob@localhost/desk").expect("jid");
        m.on_presence(PresenceEvent::SubscriptionRequest {
            from: bob.to_bare(),
            nick: Some("Bob".into()),
        });
        assert!(m.contacts["bob@localhost"].requested);
        assert!(m
            .notice
            .as_ref()
            .is_some_and(|(t, _)| t.contains("/accept bob@localhost")));
        assert_eq!(
            enter(&mut m, "/accept bob@localhost"),
            vec![Command::Accept("bob@localhost".into())]
        );
        assert!(!m.contacts["bob@localhost"].requested);
        assert_eq!(
            m.contacts["bob@localhost"].availability(),
            Availability::Offline
        );
        m.on_presence(PresenceEvent::Available(bob.clone(), Status::available()));
        assert_eq!(
            m.contacts["bob@localhost"].availability(),
            Availability::Online
        );
        m.on_presence(PresenceEvent::Unavailable(bob));
        assert_eq!(
            m.contacts["bob@localhost"].availability(),
            Availability::Offline
        );
        // Our own other clients are no contact.
        let me = FullJid::new("alice@localhost/phone").expect("jid");
        m.on_presence(PresenceEvent::Available(me, Status::available()));
        assert!(!m.contacts.contains_key("alice@localhost"));
    }

    #[test]
    fn slash_commands_and_their_errors() {
        let mut m = Model::new("alice@localhost", "t");
        assert_eq!(
            enter(&mut m, "/add Bob@LocalHost"),
            vec![Command::Add("bob@localhost".into())]
        );
        assert!(enter(&mut m, "/add").is_empty());
        assert!(m
            .notice
            .as_ref()
            .is_some_and(|(t, err)| *err && t.contains("usage")));
        assert!(enter(&mut m, "/add localhost").is_empty());
        assert!(m.notice.as_ref().is_some_and(|(_, err)| *err));
        assert_eq!(
            enter(&mut m, "/remove bob@localhost"),
            vec![Command::Remove("bob@localhost".into())]
        );
        assert_eq!(
            enter(&mut m, "/join lounge@conference.localhost al"),
            vec![Command::Join {
                room: "lounge@conference.localhost".into(),
                nick: "al".into()
            }]
        );
        assert!(enter(&mut m, "/join lounge@conference.localhost").is_empty());
        assert!(enter(&mut m, "/frobnicate").is_empty());
        assert!(m
            .notice
            .as_ref()
            .is_some_and(|(t, _)| t.contains("unknown")));
        // Text with nothing open stays in the input and says why.
        assert!(enter(&mut m, "hello").is_empty());
        assert_eq!(m.input, "hello");
        m.input.clear();
        assert_eq!(enter(&mut m, "/quit"), vec![Command::Quit]);
        assert!(m.quit);
    }

    #[test]
    fn rooms_show_messages_and_count_unread() {
        let mut m = Model::new("alice@localhost", "t");
        m.on_outcome(Outcome::Joined {
            room: "lounge@conference.localhost".into(),
            nick: "al".into(),
        });
        let room = Key::Room("lounge@conference.localhost".into());
        assert_eq!(m.open, Some(room.clone()));
        assert_eq!(
            enter(&mut m, "hi all"),
            vec![Command::SendRoom {
                room: "lounge@conference.localhost".into(),
                body: "hi all".into()
            }]
        );
        let lounge = BareJid::new("lounge@conference.localhost").expect("jid");
        m.on_muc(MucEvent::Message(confab_client::GroupMessage {
            room: lounge.clone(),
            nick: Some("al".into()),
            id: None,
            stanza_id: None,
            body: "hi all".into(),
            own: true,
            delayed: None,
        }));
        assert_eq!(m.open_lines().last().map(|l| &l.author), Some(&Author::Me));
        m.open = None;
        m.on_muc(MucEvent::Message(confab_client::GroupMessage {
            room: lounge.clone(),
            nick: Some("bo".into()),
            id: None,
            stanza_id: None,
            body: "hey".into(),
            own: false,
            delayed: None,
        }));
        assert_eq!(m.rooms["lounge@conference.localhost"].unread, 1);
        m.on_muc(MucEvent::Left {
            room: lounge,
            reason: LeaveReason::Left,
        });
        assert!(m.rooms.is_empty());
    }

    #[test]
    fn history_pages_back_without_repeating_what_is_shown() {
        let mut m = Model::new("alice@localhost", "t");
        friend(&mut m, "bob@localhost");
        let bob = Key::Contact("bob@localhost".into());
        assert!(enter(&mut m, "/history").is_empty(), "nothing open");
        m.open(bob.clone());
        m.on_chat(incoming("bob@localhost/desk", "live one", "m3"));
        assert_eq!(
            enter(&mut m, "/history"),
            vec![Command::History {
                key: bob.clone(),
                before: String::new()
            }]
        );
        let line = |id: &str, text: &str| Line {
            author: Author::Them("bob@localhost".into()),
            text: text.into(),
            id: Some(id.into()),
            delivered: false,
            delayed: true,
        };
        m.on_outcome(Outcome::History {
            key: bob.clone(),
            lines: vec![line("m2", "second"), line("m3", "live one")],
            first: Some("a2".into()),
            complete: false,
        });
        let texts: Vec<_> = m.open_lines().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["second", "live one"]);
        // The next page ends where this one began.
        assert_eq!(
            enter(&mut m, "/history"),
            vec![Command::History {
                key: bob.clone(),
                before: "a2".into()
            }]
        );
        m.on_outcome(Outcome::History {
            key: bob.clone(),
            lines: vec![line("m1", "first")],
            first: Some("a1".into()),
            complete: true,
        });
        let texts: Vec<_> = m.open_lines().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["first", "second", "live one"]);
        // Nothing older: no more requests.
        assert!(enter(&mut m, "/history").is_empty());
    }

    #[test]
    fn page_up_past_the_top_loads_older_messages() {
        let mut m = Model::new("alice@localhost", "t");
        friend(&mut m, "bob@localhost");
        let bob = Key::Contact("bob@localhost".into());
        m.open(bob.clone());
        // 25 rows above the pane: PageUp scrolls, 10 at a time, up to the top.
        m.set_scroll_limit(25);
        assert!(m.on_key(key(KeyCode::PageUp)).is_empty());
        assert_eq!(m.scroll, 10);
        assert!(m.on_key(key(KeyCode::PageUp)).is_empty());
        assert!(m.on_key(key(KeyCode::PageUp)).is_empty());
        assert_eq!(m.scroll, 25, "not past the top");
        // At the top: the latest archive page, asked for once while it loads.
        let first = vec![Command::History {
            key: bob.clone(),
            before: String::new(),
        }];
        assert_eq!(m.on_key(key(KeyCode::PageUp)), first);
        assert!(
            m.on_key(key(KeyCode::PageUp)).is_empty(),
            "one page at a time"
        );
        let line = |id: &str| Line {
            author: Author::Them("bob@localhost".into()),
            text: id.into(),
            id: Some(id.into()),
            delivered: false,
            delayed: true,
        };
        m.on_outcome(Outcome::History {
            key: bob.clone(),
            lines: vec![line("m1"), line("m2")],
            first: Some("a1".into()),
            complete: false,
        });
        // The page made the log taller: PageUp scrolls on into it, then asks for the next.
        m.set_scroll_limit(35);
        assert!(m.on_key(key(KeyCode::PageUp)).is_empty());
        assert_eq!(m.scroll, 35);
        assert_eq!(
            m.on_key(key(KeyCode::PageUp)),
            vec![Command::History {
                key: bob.clone(),
                before: "a1".into()
            }]
        );
        m.on_outcome(Outcome::Error("archive unavailable".into()));
        // A failed page may be asked for again; once the archive is exhausted, no more.
        assert_eq!(m.on_key(key(KeyCode::PageUp)).len(), 1);
        m.on_outcome(Outcome::History {
            key: bob.clone(),
            lines: Vec::new(),
            first: None,
            complete: true,
        });
        assert!(m.on_key(key(KeyCode::PageUp)).is_empty());
        // PageDown goes back towards the newest; a shorter log clamps the position.
        assert!(m.on_key(key(KeyCode::PageDown)).is_empty());
        assert_eq!(m.scroll, 25);
        m.set_scroll_limit(5);
        assert_eq!(m.scroll, 5);
        m.on_key(key(KeyCode::PageDown));
        assert_eq!(m.scroll, 0);
    }

    #[test]
    fn logs_are_bounded() {
        let mut m = Model::new("alice@localhost", "t");
        for i in 0..MAX_LINES + 10 {
            m.on_chat(incoming("bob@localhost/desk", "x", &i.to_string()));
        }
        assert_eq!(
            m.logs[&Key::Contact("bob@localhost".into())].len(),
            MAX_LINES
        );
    }

    #[test]
    fn files_are_sent_shown_and_saved() {
        let mut m = Model::new("alice@localhost", "t");
        friend(&mut m, "bob@localhost");
        assert!(enter(&mut m, "/save").is_empty(), "nothing received yet");
        assert!(m.notice.as_ref().is_some_and(|(_, err)| *err));
        assert!(enter(&mut m, "/file /tmp/x.png").is_empty(), "no chat open");
        let url = "http://h/upload/abc/my%20photo.png";
        m.on_chat(ChatEvent::Message(ChatMessage {
            id: Some("f1".into()),
            from: Some(Jid::new("bob@localhost/desk").expect("jid")),
            body: Some(url.into()),
            oob_url: Some(url.into()),
            ..ChatMessage::default()
        }));
        let bob = Key::Contact("bob@localhost".into());
        assert_eq!(
            m.logs[&bob].back().map(|l| l.text.as_str()),
            Some("[file] my photo.png http://h/upload/abc/my%20photo.png")
        );
        assert_eq!(m.last_file.as_deref(), Some(url));
        assert_eq!(
            enter(&mut m, "/save /tmp/in box"),
            vec![Command::Save {
                url: url.into(),
                dir: "/tmp/in box".into(),
            }]
        );
        assert_eq!(
            enter(&mut m, "/save"),
            vec![Command::Save {
                url: url.into(),
                dir: ".".into(),
            }]
        );
        m.open(bob.clone());
        assert_eq!(
            enter(&mut m, "/file /tmp/holiday pics/a b.png"),
            vec![Command::SendFile {
                to: "bob@localhost".into(),
                path: "/tmp/holiday pics/a b.png".into(),
            }]
        );
        m.on_outcome(Outcome::FileSent {
            to: "bob@localhost".into(),
            url: "http://h/upload/def/a%20b.png".into(),
        });
        let last = m.logs[&bob].back().expect("line");
        assert_eq!(last.author, Author::Me);
        assert_eq!(last.text, "[file] a b.png http://h/upload/def/a%20b.png");
    }
}
