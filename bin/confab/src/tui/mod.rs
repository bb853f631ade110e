//! The interactive terminal client: [`model`] holds the state (pure, tested without a
//! terminal), [`view`] draws it with ratatui, and [`run`] connects the two to the SDK and
//! the keyboard.

pub mod model;
pub mod view;

use crate::account::AccountArgs;
use crate::commands::connect;
use confab_client::payloads::roster::{RosterItem, Subscription};
use confab_client::{
    BareJid, Chat, ChatMessage, ChatState, Client, DisconnectReason, Event, Jid, JoinOptions, Mam,
    MamQuery, Muc, Presence, Reconnect, Roster, Status, Upload,
};
use crossterm::event::{Event as TermEvent, EventStream};
use futures_util::StreamExt;
use model::{Author, Command, Connection, Key, Line, Model, Outcome, RosterEntry};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

/// The SDK modules the client uses.
#[derive(Clone)]
struct Sdk {
    client: Client,
    chat: Arc<Chat>,
    presence: Arc<Presence>,
    roster: Arc<Roster>,
    muc: Arc<Muc>,
    mam: Arc<Mam>,
    upload: Arc<Upload>,
}

/// Largest file `/save` downloads.
const MAX_SAVE_BYTES: u64 = 1 << 30;

fn entry(item: &RosterItem) -> RosterEntry {
    let subscription = match item.subscription {
        Some(Subscription::To) => "to",
        Some(Subscription::From) => "from",
        Some(Subscription::Both) => "both",
        Some(Subscription::None) | None => "none",
        Some(Subscription::Remove) => "remove",
    };
    RosterEntry {
        jid: item.jid.to_bare().to_string(),
        name: item.name.clone(),
        subscription: subscription.to_string(),
        asking: item.ask,
        removed: item.subscription == Some(Subscription::Remove),
    }
}

/// Receives the next item of a broadcast channel; `None` once it is closed (a lagging
/// receiver skips what it missed).
async fn next<T: Clone>(rx: &mut broadcast::Receiver<T>) -> Option<T> {
    loop {
        match rx.recv().await {
            Ok(v) => return Some(v),
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return None,
        }
    }
}

/// Logs in, then runs the terminal client until `/quit` or Ctrl-C.
pub async fn run(args: &AccountArgs) -> Result<(), String> {
    // Asked before the terminal switches to raw mode, where a prompt could not be read.
    let account = args.account()?;
    let chat = Chat::new();
    let presence = Presence::new();
    let roster = Roster::new();
    let muc = Muc::new();
    let mam = Mam::new();
    let config = args
        .config(&account)?
        .module(chat.clone())
        .module(presence.clone())
        .module(roster.clone())
        .module(muc.clone())
        .module(mam.clone())
        .reconnect(Reconnect::default());
    // Upload URLs over https are checked as the XMPP connection is (--trust-cert).
    let upload = Arc::new(Upload::new(config.options.verify.clone()));
    eprintln!("connecting as {}…", account.jid);
    let client = connect(config).await?;
    let sdk = Sdk {
        client,
        chat,
        presence,
        roster,
        muc,
        mam,
        upload,
    };
    // Subscribed before going online so nothing is missed.
    let mut chat_rx = sdk.chat.events();
    let mut presence_rx = sdk.presence.events();
    let mut roster_rx = sdk.roster.changes();
    let mut muc_rx = sdk.muc.events();
    let mut client_rx = sdk.client.events();
    let items = sdk
        .roster
        .fetch(&sdk.client)
        .await
        .map_err(|e| format!("fetching the roster: {e}"))?;
    sdk.presence
        .set(&sdk.client, Status::available())
        .await
        .map_err(|e| format!("going online: {e}"))?;

    let mut model = Model::new(account.jid.as_str(), &sdk.client.new_id());
    for item in &items {
        model.on_roster(entry(item));
    }
    let (outcome_tx, mut outcome_rx) = mpsc::unbounded_channel::<Outcome>();
    let sender = start_sender(&sdk, &outcome_tx);

    let mut terminal = ratatui::try_init().map_err(|e| format!("terminal: {e}"))?;
    let mut keys = EventStream::new();
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        let mut above = 0;
        if let Err(e) = terminal.draw(|f| above = view::draw(f, &model)) {
            break Err(format!("drawing: {e}"));
        }
        model.set_scroll_limit(above);
        if model.quit {
            break Ok(());
        }
        tokio::select! {
            k = keys.next() => match k {
                Some(Ok(TermEvent::Key(k))) => {
                    for cmd in model.on_key(k) {
                        run_command(&sdk, cmd, &sender, &outcome_tx);
                    }
                }
                Some(Ok(_)) => {} // resize and the like: redrawn anyway
                Some(Err(e)) => break Err(format!("reading the terminal: {e}")),
                None => break Ok(()),
            },
            Some(e) = next(&mut chat_rx) => model.on_chat(e),
            Some(e) = next(&mut presence_rx) => model.on_presence(e),
            Some(item) = next(&mut roster_rx) => model.on_roster(entry(&item)),
            Some(e) = next(&mut muc_rx) => model.on_muc(e),
            Some(o) = outcome_rx.recv() => model.on_outcome(o),
            _ = ticks.tick() => {
                for cmd in model.on_tick() {
                    run_command(&sdk, cmd, &sender, &outcome_tx);
                }
            }
            e = next(&mut client_rx) => match e {
                Some(Event::Disconnected { reason, will_reconnect }) => {
                    let why = describe(&reason);
                    model.on_connection(if will_reconnect {
                        Connection::Reconnecting(why)
                    } else {
                        Connection::Offline(why)
                    });
                }
                Some(Event::Reconnected { .. }) => model.on_connection(Connection::Online),
                Some(_) => {}
                None => model.on_connection(Connection::Offline("client stopped".into())),
            },
        }
    };
    ratatui::restore();
    let _ = sdk.client.close().await;
    result
}

fn describe(reason: &DisconnectReason) -> String {
    match reason {
        DisconnectReason::Closed => "closed".into(),
        DisconnectReason::ServerClosed => "the server closed the connection".into(),
        DisconnectReason::StreamError(e) => format!("stream error: {e:?}"),
        DisconnectReason::ConnectionLost(why) => format!("connection lost: {why}"),
    }
}

/// Starts the task that writes messages and chat states one after another, so they go out
/// in the order they were typed.
fn start_sender(
    sdk: &Sdk,
    outcomes: &mpsc::UnboundedSender<Outcome>,
) -> mpsc::UnboundedSender<Command> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let sdk = sdk.clone();
    let outcomes = outcomes.clone();
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            if let Some(o) = execute(&sdk, cmd).await {
                let _ = outcomes.send(o);
            }
        }
    });
    tx
}

/// Hands a command to the SDK: messages and states to the ordered sender, requests (which
/// wait for replies; the screen must not) to a task of their own.
fn run_command(
    sdk: &Sdk,
    cmd: Command,
    sender: &mpsc::UnboundedSender<Command>,
    outcomes: &mpsc::UnboundedSender<Outcome>,
) {
    match cmd {
        Command::Quit => {} // the loop sees `model.quit`
        Command::Send { .. } | Command::SendRoom { .. } | Command::State { .. } => {
            let _ = sender.send(cmd);
        }
        _ => {
            let sdk = sdk.clone();
            let outcomes = outcomes.clone();
            tokio::spawn(async move {
                if let Some(o) = execute(&sdk, cmd).await {
                    let _ = outcomes.send(o);
                }
            });
        }
    }
}

/// Carries out one command; what to tell the user, if anything.
async fn execute(sdk: &Sdk, cmd: Command) -> Option<Outcome> {
    let c = &sdk.client;
    let result: Result<Option<Outcome>, String> = async {
        let jid = |s: &str| Jid::new(s).map_err(|e| format!("{s}: {e}"));
        let bare = |s: &str| BareJid::new(s).map_err(|e| format!("{s}: {e}"));
        match cmd {
            Command::Send { to, body, id } => {
                let mut m = ChatMessage::new(jid(&to)?, body);
                m.id = Some(id);
                m.request_receipt = true;
                m.state = Some(ChatState::Active);
                sdk.chat
                    .send_message(c, m)
                    .await
                    .map_err(|e| format!("sending to {to}: {e}"))?;
                Ok(None)
            }
            Command::SendRoom { room, body } => {
                sdk.muc
                    .send(c, &bare(&room)?, &body)
                    .await
                    .map_err(|e| format!("sending to {room}: {e}"))?;
                Ok(None)
            }
            Command::State { to, state } => {
                // Best effort: a lost chat state is harmless.
                let _ = sdk.chat.send_state(c, &jid(&to)?, state).await;
                Ok(None)
            }
            Command::Add(j) => {
                sdk.roster
                    .add(c, RosterItem::new(jid(&j)?))
                    .await
                    .map_err(|e| format!("adding {j}: {e}"))?;
                // Pre-approved (RFC 6121 §3.4), so their request back is granted at once.
                sdk.presence
                    .approve(c, &bare(&j)?)
                    .await
                    .map_err(|e| format!("approving {j}: {e}"))?;
                sdk.presence
                    .subscribe(c, &bare(&j)?)
                    .await
                    .map_err(|e| format!("asking {j}: {e}"))?;
                Ok(None)
            }
            Command::Accept(j) => {
                let b = bare(&j)?;
                sdk.presence
                    .approve(c, &b)
                    .await
                    .map_err(|e| format!("accepting {j}: {e}"))?;
                // Friends both ways: ask for theirs too unless we see it already.
                let sees = sdk.roster.get(&jid(&j)?).is_some_and(|i| {
                    matches!(
                        i.subscription,
                        Some(Subscription::To) | Some(Subscription::Both)
                    ) || i.ask
                });
                if !sees {
                    sdk.presence
                        .subscribe(c, &b)
                        .await
                        .map_err(|e| format!("asking {j}: {e}"))?;
                }
                Ok(Some(Outcome::Info(format!("{j} is a friend now"))))
            }
            Command::Remove(j) => {
                sdk.roster
                    .remove(c, &jid(&j)?)
                    .await
                    .map_err(|e| format!("removing {j}: {e}"))?;
                Ok(Some(Outcome::Info(format!("removed {j}"))))
            }
            Command::Join { room, nick } => {
                let r = bare(&room)?;
                let joined = sdk
                    .muc
                    .join(c, &r, JoinOptions::new(nick.clone()))
                    .await
                    .map_err(|e| format!("joining {room}: {e}"))?;
                if joined.created {
                    // A new room stays locked until configured (XEP-0045 §10.1): take the
                    // defaults, an "instant room", so others can come in.
                    sdk.muc
                        .accept_default_config(c, &r)
                        .await
                        .map_err(|e| format!("opening the new room {room}: {e}"))?;
                }
                Ok(Some(Outcome::Joined { room, nick }))
            }
            Command::Leave(room) => {
                sdk.muc
                    .leave(c, &bare(&room)?)
                    .await
                    .map_err(|e| format!("leaving {room}: {e}"))?;
                Ok(None)
            }
            Command::History { key, before } => history(sdk, key, before).await.map(Some),
            Command::SendFile { to, path } => {
                let url = sdk
                    .upload
                    .send_file(c, &jid(&to)?, &path)
                    .await
                    .map_err(|e| format!("sending {}: {e}", path.display()))?;
                Ok(Some(Outcome::FileSent { to, url }))
            }
            Command::Save { url, dir } => {
                let name = confab_client::upload::file_name_of(&url)
                    .ok_or_else(|| format!("{url}: no file name to save under"))?;
                let dest = dir.join(&name);
                let n = sdk
                    .upload
                    .download(&url, &dest, MAX_SAVE_BYTES)
                    .await
                    .map_err(|e| format!("saving {}: {e}", dest.display()))?;
                Ok(Some(Outcome::Info(format!(
                    "saved {} ({n} bytes)",
                    dest.display()
                ))))
            }
            Command::Quit => Ok(None),
        }
    }
    .await;
    match result {
        Ok(o) => o,
        Err(e) => Some(Outcome::Error(e)),
    }
}

/// Messages asked for per page of history.
const HISTORY_PAGE: usize = 20;

/// One page of a conversation's archive (XEP-0313) before `before` (empty: the latest): the
/// account's archive filtered to the contact, or the room's own.
async fn history(sdk: &Sdk, key: Key, before: String) -> Result<Outcome, String> {
    let me = sdk.client.jid().to_bare().to_string();
    let (archive, with, what) = match &key {
        Key::Contact(j) => {
            let with = Jid::new(j).map_err(|e| format!("{j}: {e}"))?;
            (None, Some(with), j.clone())
        }
        Key::Room(r) => {
            let room = BareJid::new(r).map_err(|e| format!("{r}: {e}"))?;
            (Some(room), None, r.clone())
        }
    };
    let query = MamQuery {
        with,
        max: Some(HISTORY_PAGE),
        before: Some(before),
        ..MamQuery::default()
    };
    let page = sdk
        .mam
        .query(&sdk.client, archive.as_ref(), &query)
        .await
        .map_err(|e| format!("the archive of {what}: {e}"))?;
    let own_nick = match &key {
        Key::Room(r) => sdk
            .muc
            .nick(&BareJid::new(r).map_err(|e| format!("{r}: {e}"))?),
        Key::Contact(_) => None,
    };
    let lines = page
        .messages
        .iter()
        .filter_map(|m| {
            let body = m.body.clone()?;
            let from = m.from.as_ref()?;
            let author = match &key {
                Key::Contact(_) if from.to_bare().as_str() == me => Author::Me,
                Key::Contact(_) => Author::Them(from.to_bare().to_string()),
                Key::Room(_) => match from.resource() {
                    Some(n) if Some(n.as_str()) == own_nick.as_deref() => Author::Me,
                    Some(n) => Author::Them(n.to_string()),
                    None => Author::System,
                },
            };
            Some(Line {
                author,
                text: body,
                id: m.message.get_attr("id").map(str::to_string),
                delivered: false,
                delayed: true,
            })
        })
        .collect();
    Ok(Outcome::History {
        key,
        lines,
        first: page.first,
        complete: page.complete,
    })
}
