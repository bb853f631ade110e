//! The local SQLite store (feature `storage`) against an in-process confabd: a client
//! restarted on the same file gets its roster (and roster version) and its history back
//! from disk, and catching up with the server archive resumes after the last stored
//! message without storing any twice, for the account's archive and a room's. A damaged or locked file is a typed error.

use confab_client::store::{ConversationKind, NewMessage, StoreOptions};
use confab_client::{
    BareJid, Chat, ChatEvent, Client, Config, Jid, JoinOptions, LocalStore, Mam, Muc, MucEvent,
    Roster, StoreError,
};
use confab_proto::payloads::roster::RosterItem;
use confab_tests::TestServer;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

async fn next<T: Clone>(rx: &mut broadcast::Receiver<T>, pred: impl Fn(&T) -> bool) -> T {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("event channel closed"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("timed out waiting for an event")
}

struct Alice {
    client: Client,
    roster: Arc<Roster>,
    mam: Arc<Mam>,
    chat: Arc<Chat>,
    store: LocalStore,
}

async fn alice(ts: &TestServer, path: &Path) -> Alice {
    let store = LocalStore::open(path).await.expect("store opens");
    let me = BareJid::new("alice@localhost").expect("jid");
    let roster = store.roster(&me).await.expect("stored roster");
    let mam = Mam::new();
    let chat = Chat::new();
    let mut o = ts.options("alice");
    o.resource = Some("desk".into());
    let client = Client::connect(
        Config::new(o)
            .module(roster.clone())
            .module(mam.clone())
            .module(chat.clone()),
    )
    .await
    .expect("connects");
    store.keep_roster(me, &roster);
    Alice {
        client,
        roster,
        mam,
        chat,
        store,
    }
}

/// Bob sends these to alice's session and waits until she has them (so they are archived).
async fn bob_says(bob: &(Client, Arc<Chat>), alice: &Alice, texts: &[&str]) {
    let mut ev = alice.chat.events();
    let to = Jid::from(alice.client.jid());
    for t in texts {
        bob.1.send(&bob.0, &to, t).await.expect("send");
        next(
            &mut ev,
            |e| matches!(e, ChatEvent::Message(m) if m.body.as_deref() == Some(*t)),
        )
        .await;
    }
}

#[tokio::test]
async fn roster_and_history_come_back_from_disk() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("alice.sqlite");
    let me = BareJid::new("alice@localhost").expect("jid");
    let bob_jid = BareJid::new("bob@localhost").expect("jid");
    let bob_chat = Chat::new();
    let mut bo = ts.options("bob");
    bo.resource = Some("phone".into());
    let bob = (
        Client::connect(Config::new(bo).module(bob_chat.clone()))
            .await
            .expect("bob connects"),
        bob_chat,
    );

    // First run: an empty store; a contact added, three messages caught up from the archive.
    let a = alice(&ts, &path).await;
    assert!(a.roster.items().is_empty());
    a.roster.fetch(&a.client).await.expect("roster");
    let mut item = RosterItem::new(Jid::from(bob_jid.clone()));
    item.name = Some("Bob".into());
    a.roster.add(&a.client, item).await.expect("add bob");
    let saved = async {
        loop {
            let (_, items) = a.store.load_roster(&me).await.expect("load");
            if !items.is_empty() {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let saved = tokio::time::timeout(Duration::from_secs(5), saved)
        .await
        .expect("the roster push is saved");
    assert_eq!(saved[0].name.as_deref(), Some("Bob"));
    bob_says(&bob, &a, &["one", "two", "three"]).await;
    assert_eq!(
        a.store
            .catch_up(&a.client, &a.mam, None, 2)
            .await
            .expect("catch up"),
        3
    );
    assert_eq!(
        a.store
            .catch_up(&a.client, &a.mam, None, 2)
            .await
            .expect("again"),
        0
    );
    let _ = a.client.close().await;
    a.store.close().await;
    drop(a);

    // Second run, same file: roster (with its version) and history are there before any
    // request; the catch-up fetches only what came since.
    let store = LocalStore::open(&path).await.expect("reopens");
    let (ver, items) = store.load_roster(&me).await.expect("roster");
    assert!(ver.is_some(), "confabd offers roster versioning");
    assert_eq!(items.len(), 1);
    let history = store
        .messages(&me, &bob_jid, None, 10)
        .await
        .expect("history");
    let bodies: Vec<_> = history.iter().filter_map(|m| m.body.clone()).collect();
    assert_eq!(bodies, ["one", "two", "three"]);
    assert!(history
        .iter()
        .all(|m| !m.outgoing && m.archive_id.is_some()));
    // The next catch-up starts after the last message stored.
    assert_eq!(
        store.last_archive_id(&me, None).await.expect("position"),
        history[2].archive_id
    );
    // Paging backwards through the stored history.
    let older = store
        .messages(&me, &bob_jid, Some(history[1].seq), 10)
        .await
        .expect("older");
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].body.as_deref(), Some("one"));
    store.close().await;

    let a = alice(&ts, &path).await;
    assert_eq!(
        a.roster.items().len(),
        1,
        "roster from disk before fetching"
    );
    assert!(a.roster.version().is_some());
    a.roster.fetch(&a.client).await.expect("versioned fetch");
    assert_eq!(a.roster.items().len(), 1);
    bob_says(&bob, &a, &["four", "five"]).await;
    assert_eq!(
        a.store
            .catch_up(&a.client, &a.mam, None, 10)
            .await
            .expect("catch up"),
        2
    );
    let all = a
        .store
        .messages(&me, &bob_jid, None, 100)
        .await
        .expect("history");
    assert_eq!(all.len(), 5);
    let _ = a.client.close().await;
    let _ = bob.0.close().await;
}

fn message(archive_id: Option<&str>, message_id: Option<&str>, body: &str) -> NewMessage {
    NewMessage {
        seq: 0,
        conversation: "room@conference.localhost".into(),
        kind: ConversationKind::GroupChat,
        archive_id: archive_id.map(str::to_string),
        message_id: message_id.map(str::to_string),
        from: "room@conference.localhost/bob".into(),
        outgoing: false,
        body: Some(body.into()),
        stamp: Some(1_700_000_000),
    }
}

#[tokio::test]
async fn duplicates_are_stored_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("s.sqlite"))
        .await
        .expect("opens");
    let me = BareJid::new("alice@localhost").expect("jid");
    let room = BareJid::new("room@conference.localhost").expect("jid");
    // Seen live first (sender's id only), then from the room's archive: one row, which
    // gains the archive id.
    assert!(store
        .store_message(&me, Some(&room), &message(None, Some("m1"), "hi"))
        .await
        .expect("store"));
    assert!(!store
        .store_message(&me, Some(&room), &message(Some("A1"), Some("m1"), "hi"))
        .await
        .expect("store"));
    assert!(!store
        .store_message(&me, Some(&room), &message(Some("A1"), None, "hi"))
        .await
        .expect("store"));
    assert!(store
        .store_message(&me, Some(&room), &message(Some("A2"), None, "again"))
        .await
        .expect("store"));
    let got = store.messages(&me, &room, None, 10).await.expect("read");
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].archive_id.as_deref(), Some("A1"));
    assert_eq!(got[0].kind, ConversationKind::GroupChat);
    // The same archive id in another account's rows is another message.
    let other = BareJid::new("carol@localhost").expect("jid");
    assert!(store
        .store_message(&other, Some(&room), &message(Some("A1"), None, "hi"))
        .await
        .expect("store"));
}

#[tokio::test]
async fn damaged_and_locked_files_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(&junk, "this is not a database, ".repeat(200)).expect("write");
    let r = LocalStore::open(&junk).await;
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");

    let path = dir.path().join("locked.sqlite");
    LocalStore::open(&path)
        .await
        .expect("creates")
        .close()
        .await;
    // Another process (here a second connection) holds the write lock.
    use sqlx::Connection as _;
    let url = format!("sqlite://{}", path.display());
    let mut holder = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connects");
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .expect("locks");
    let quick = StoreOptions {
        busy_timeout: Duration::from_millis(200),
    };
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        LocalStore::open_with(&path, &quick),
    )
    .await
    .expect("no hang");
    assert!(matches!(r, Err(StoreError::Locked(_))), "{r:?}");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("unlocks");
    LocalStore::open_with(&path, &quick)
        .await
        .expect("opens once unlocked");

    let missing = dir.path().join("no/such/dir/x.sqlite");
    let r = LocalStore::open(&missing).await;
    assert!(matches!(r, Err(StoreError::Open(_))), "{r:?}");
}

#[tokio::test]
async fn a_rooms_archive_is_caught_up_once() {
    let ts = TestServer::start_with_modules(confab_muc::all(), |_| {}).await;
    ts.add_user("alice").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(&dir.path().join("room.sqlite"))
        .await
        .expect("opens");
    let me = BareJid::new("alice@localhost").expect("jid");
    let muc = Muc::new();
    let mam = Mam::new();
    let client = Client::connect(
        Config::new(ts.options("alice"))
            .module(mam.clone())
            .module(muc.clone()),
    )
    .await
    .expect("connects");
    let room = BareJid::new("log@conference.localhost").expect("jid");
    muc.join(&client, &room, JoinOptions::new("Alice"))
        .await
        .expect("joins");
    muc.accept_default_config(&client, &room)
        .await
        .expect("instant room");
    let say = |text: &'static str| {
        let (client, muc, room) = (client.clone(), muc.clone(), room.clone());
        async move {
            let mut ev = muc.events();
            muc.send(&client, &room, text).await.expect("send");
            next(
                &mut ev,
                |e| matches!(e, MucEvent::Message(m) if m.body == text),
            )
            .await;
        }
    };
    for t in ["room 0", "room 1", "room 2"] {
        say(t).await;
    }
    assert_eq!(
        store
            .catch_up(&client, &mam, Some(&room), 2)
            .await
            .expect("catch up"),
        3
    );
    assert_eq!(
        store
            .catch_up(&client, &mam, Some(&room), 2)
            .await
            .expect("again"),
        0
    );
    say("room 3").await;
    assert_eq!(
        store
            .catch_up(&client, &mam, Some(&room), 2)
            .await
            .expect("resume"),
        1
    );
    let got = store.messages(&me, &room, None, 10).await.expect("history");
    let bodies: Vec<_> = got.iter().filter_map(|m| m.body.clone()).collect();
    assert_eq!(bodies, ["room 0", "room 1", "room 2", "room 3"]);
    assert!(got.iter().all(
        |m| m.kind == ConversationKind::GroupChat && m.from == "log@conference.localhost/Alice"
    ));
    // The room's archive ids are not the account's: its own archive position is untouched.
    assert_eq!(store.last_archive_id(&me, None).await.expect("own"), None);
    let _ = client.close().await;
}
