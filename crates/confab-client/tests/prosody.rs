//! The SDK's modules against a server we did not write: Debian's Prosody, started here on
//! loopback with its own configuration and data directory (never the system service).
//!
//! Skips, saying so, when `prosody` is not installed; with `CONFAB_REQUIRE_SERVICES=1` a
//! missing Prosody fails instead (`scripts/ensure-prosody.sh`, run by `scripts/test.sh` and
//! `scripts/interop.sh`, installs it).

use confab_client::pep::{AVATAR_METADATA_NS, NICK_NS};
use confab_client::{
    cancel_account, change_password, register_account, registration_fields, Affiliation, BareJid,
    CarbonEvent, Carbons, Chat, ChatEvent, ChatState, Client, ClientOptions, Config, Disco,
    Element, Error, ItemsQuery, Jid, JoinOptions, LeaveReason, Mam, MamQuery, Muc, MucError,
    MucEvent, PepEvent, Photo, Presence, PresenceEvent, PubSub, PubSubError, PubSubEvent,
    RegistrationError, Role, Status, SubscriptionState, Upload, UploadError, VCard, VCards,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

const DOMAIN: &str = "localhost";
const PASSWORD: &str = "interop secret 1";

/// A Prosody process of this test, killed when dropped.
struct Prosody {
    child: Child,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prosody_binary() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("prosody"))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl Prosody {
    /// Starts Prosody, or `None` (after saying why) when it is not installed.
    async fn start() -> Option<Prosody> {
        let Some(bin) = prosody_binary() else {
            if std::env::var("CONFAB_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("prosody is not installed and CONFAB_REQUIRE_SERVICES=1");
            }
            eprintln!("SKIPPED: prosody is not installed (apt-get install prosody)");
            return None;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).expect("data dir");
        let cert = rcgen::generate_simple_self_signed(vec![DOMAIN.to_string()]).expect("cert");
        std::fs::write(d.join("cert.pem"), cert.cert.pem()).expect("cert");
        std::fs::write(d.join("key.pem"), cert.signing_key.serialize_pem()).expect("key");
        let port = free_port();
        let http_port = free_port();
        let cfg = config(d, port, http_port);
        std::fs::write(d.join("prosody.cfg.lua"), cfg).expect("config");
        let log = std::fs::File::create(d.join("stdout.log")).expect("log");
        let child = Command::new(bin)
            .arg("-F")
            .arg("--config")
            .arg(d.join("prosody.cfg.lua"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("prosody starts");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut p = Prosody { child, dir, addr };
        p.wait_listening().await;
        Some(p)
    }

    async fn wait_listening(&mut self) {
        for _ in 0..100 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("prosody exited ({status}): {}", self.logs());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prosody did not listen within 10 s: {}", self.logs());
    }

    fn logs(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        format!("{}\n{}", read("stdout.log"), read("prosody.log"))
    }

    /// Creates an account with prosodyctl.
    fn add_user(&self, user: &str) {
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(self.dir.path().join("prosody.cfg.lua"))
            .args(["register", user, DOMAIN, PASSWORD])
            .output()
            .expect("prosodyctl runs");
        assert!(
            out.status.success(),
            "prosodyctl register {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn options(&self, user: &str, resource: &str) -> ClientOptions {
        let mut o = ClientOptions::new(self.addr, DOMAIN, user, PASSWORD);
        o.resource = Some(resource.into());
        // Its certificate is the self-signed one made above.
        o.verify = confab_client::CertVerification::Insecure;
        o
    }
}

/// Prosody's configuration: c2s on `port`, TLS with the generated certificate, MUC,
/// MAM, carbons, PEP, a pubsub component, in-band registration (open to loopback,
/// unthrottled), and HTTP File Upload (`mod_http_file_share` on `upload.localhost`, plain
/// HTTP on `http_port`, loopback).
fn config(d: &Path, port: u16, http_port: u16) -> String {
    let d = d.display();
    format!(
        r#"
run_as_root = true
pidfile = "{d}/prosody.pid"
data_path = "{d}/data"
log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{d}/prosody.log" }} }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ }}
s2s_interfaces = {{ }}
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
http_external_url = "http://127.0.0.1:{http_port}/"
http_default_host = "upload.{DOMAIN}"
https_ports = {{ }}
component_ports = {{ }}
modules_enabled = {{ "roster"; "saslauth"; "tls"; "disco"; "ping"; "register"; "mam"; "carbons"; "offline"; "vcard_legacy"; "pep" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
allow_registration = true
archive_expires_after = "never"
default_archive_policy = true
ssl = {{ certificate = "{d}/cert.pem"; key = "{d}/key.pem" }}
VirtualHost "{DOMAIN}"
Component "pubsub.{DOMAIN}" "pubsub"
    -- Node creation is for the service's admins; alice, here only.
    admins = {{ "alice@{DOMAIN}" }}
Component "conference.{DOMAIN}" "muc"
    modules_enabled = {{ "muc_mam" }}
    restrict_room_creation = false
Component "upload.{DOMAIN}" "http_file_share"
    http_file_share_size_limit = 1000000
"#
    )
}

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

fn full(c: &Client) -> Jid {
    Jid::new(c.jid().as_str()).expect("jid")
}

async fn chat_client(p: &Prosody, user: &str) -> (Client, Arc<Chat>) {
    let chat = Chat::new();
    let client = Client::connect(Config::new(p.options(user, "sdk")).module(chat.clone()))
        .await
        .expect("connects to prosody");
    (client, chat)
}

#[tokio::test]
async fn chat_states_receipts_corrections_with_prosody() {
    let Some(p) = Prosody::start().await else {
        return;
    };
    p.add_user("alice");
    p.add_user("bob");
    let (alice, alice_chat) = chat_client(&p, "alice").await;
    let (bob, bob_chat) = chat_client(&p, "bob").await;
    let mut alice_ev = alice_chat.events();
    let mut bob_ev = bob_chat.events();
    let bob_jid = full(&bob);

    let id = alice_chat
        .send(&alice, &bob_jid, "hello via prosody")
        .await
        .expect("send");
    let got = next(&mut bob_ev, |e| matches!(e, ChatEvent::Message(_))).await;
    assert!(
        matches!(&got, ChatEvent::Message(m) if m.body.as_deref() == Some("hello via prosody")
            && m.state == Some(ChatState::Active) && m.request_receipt),
        "{got:?}"
    );
    let d = next(&mut alice_ev, |e| matches!(e, ChatEvent::Delivered { .. })).await;
    assert_eq!(
        d,
        ChatEvent::Delivered {
            from: bob_jid.clone(),
            id: id.clone()
        }
    );
    alice_chat
        .send_state(&alice, &bob_jid, ChatState::Composing)
        .await
        .expect("state");
    let got = next(&mut bob_ev, |e| matches!(e, ChatEvent::State { .. })).await;
    assert_eq!(
        got,
        ChatEvent::State {
            from: full(&alice),
            state: ChatState::Composing
        }
    );
    alice_chat
        .correct(&alice, &bob_jid, &id, "hello via Prosody")
        .await
        .expect("correct");
    let got = next(&mut bob_ev, |e| matches!(e, ChatEvent::Message(_))).await;
    assert!(
        matches!(&got, ChatEvent::Message(m) if m.replaces.as_deref() == Some(id.as_str())),
        "{got:?}"
    );
    alice.close().await.expect("close");
    bob.close().await.expect("close");
}

#[tokio::test]
async fn registration_with_prosody() {
    let Some(p) = Prosody::start().await else {
        return;
    };
    let cfg = Config::new(p.options("fresh", "sdk"));
    // Prosody asks with a data form (confabd with the legacy fields): the form is filled.
    let fields = registration_fields(&cfg).await.expect("fields");
    assert!(fields.form.is_some(), "{fields:?}");
    register_account(&cfg, &[])
        .await
        .expect("registers in-band");
    let client = Client::connect(cfg.clone()).await.expect("logs in");
    let again = register_account(&cfg, &[]).await;
    assert!(
        matches!(again, Err(RegistrationError::Conflict)),
        "{again:?}"
    );
    let mut bad = cfg.clone();
    bad.options.username = "no@name".into();
    let bad = register_account(&bad, &[]).await;
    assert!(
        matches!(bad, Err(RegistrationError::NotAcceptable(_))),
        "{bad:?}"
    );

    change_password(&client, "changed secret 2")
        .await
        .expect("password changed");
    client.close().await.expect("close");
    let old = Client::connect(cfg.clone()).await;
    assert!(matches!(old, Err(Error::Connect(_))), "{old:?}");
    let mut cfg2 = cfg.clone();
    cfg2.options.password = "changed secret 2".into();
    let client = Client::connect(cfg2.clone()).await.expect("new password");
    cancel_account(&client).await.expect("cancelled");
    let gone = Client::connect(cfg2).await;
    assert!(matches!(gone, Err(Error::Connect(_))), "{gone:?}");
}

async fn muc_client(p: &Prosody, user: &str) -> (Client, Arc<Muc>, broadcast::Receiver<MucEvent>) {
    let muc = Muc::new();
    let ev = muc.events();
    let client = Client::connect(Config::new(p.options(user, "sdk")).module(muc.clone()))
        .await
        .expect("connects to prosody");
    (client, muc, ev)
}

#[tokio::test]
async fn muc_with_prosody() {
    let Some(p) = Prosody::start().await else {
        return;
    };
    for u in ["alice", "bob"] {
        p.add_user(u);
    }
    let room = BareJid::new("lounge@conference.localhost").expect("jid");
    let (alice, alice_muc, mut alice_ev) = muc_client(&p, "alice").await;
    let (bob, bob_muc, mut bob_ev) = muc_client(&p, "bob").await;

    let joined = alice_muc
        .join(&alice, &room, JoinOptions::new("Alice"))
        .await
        .expect("alice creates the room");
    assert!(joined.created);
    assert_eq!(joined.me.affiliation, Affiliation::Owner);
    alice_muc
        .accept_default_config(&alice, &room)
        .await
        .expect("instant room");
    let joined = bob_muc
        .join(&bob, &room, JoinOptions::new("Bob"))
        .await
        .expect("bob joins");
    assert_eq!(joined.occupants.len(), 1, "{joined:?}");
    assert_eq!(joined.occupants[0].nick, "Alice");
    assert_eq!(joined.occupants[0].role, Role::Moderator);
    next(
        &mut alice_ev,
        |e| matches!(e, MucEvent::OccupantJoined { occupant, .. } if occupant.nick == "Bob"),
    )
    .await;

    bob_muc.send(&bob, &room, "hi all").await.expect("send");
    let got = next(&mut alice_ev, |e| matches!(e, MucEvent::Message(_))).await;
    assert!(
        matches!(&got, MucEvent::Message(m) if m.body == "hi all" && m.nick.as_deref() == Some("Bob") && !m.own),
        "{got:?}"
    );
    next(&mut bob_ev, |e| matches!(e, MucEvent::Message(m) if m.own)).await;

    bob_muc
        .change_nick(&bob, &room, "Robert")
        .await
        .expect("nick change");
    next(
        &mut alice_ev,
        |e| matches!(e, MucEvent::NickChanged { old, new, .. } if old == "Bob" && new == "Robert"),
    )
    .await;
    let taken = bob_muc.change_nick(&bob, &room, "Alice").await;
    assert!(matches!(taken, Err(MucError::NickInUse)), "{taken:?}");

    alice_muc
        .kick(&alice, &room, "Robert", Some("bye"))
        .await
        .expect("kick");
    let left = next(&mut bob_ev, |e| matches!(e, MucEvent::Left { .. })).await;
    assert!(
        matches!(&left, MucEvent::Left { reason: LeaveReason::Kicked { reason: Some(r), .. }, .. } if r == "bye"),
        "{left:?}"
    );
    assert!(bob_muc.rooms().is_empty());
    next(&mut alice_ev, |e| {
        matches!(e, MucEvent::OccupantLeft { nick, reason: LeaveReason::Kicked { .. }, .. } if nick == "Robert")
    })
    .await;

    alice_muc
        .ban(
            &alice,
            &room,
            &BareJid::new("bob@localhost").expect("jid"),
            Some("out"),
        )
        .await
        .expect("ban");
    let banned = bob_muc.join(&bob, &room, JoinOptions::new("Bob")).await;
    assert!(matches!(banned, Err(MucError::Banned)), "{banned:?}");
    let outcasts = alice_muc
        .affiliations(&alice, &room, Affiliation::Outcast)
        .await
        .expect("ban list");
    assert_eq!(
        outcasts
            .iter()
            .map(|u| u.jid.to_string())
            .collect::<Vec<_>>(),
        ["bob@localhost"]
    );
}

struct Full {
    client: Client,
    chat: Arc<Chat>,
    mam: Arc<Mam>,
    carbons: Arc<Carbons>,
}

async fn full_client(p: &Prosody, user: &str, resource: &str) -> Full {
    let chat = Chat::new();
    let mam = Mam::new();
    let carbons = Carbons::new();
    let client = Client::connect(
        Config::new(p.options(user, resource))
            .module(mam.clone())
            .module(carbons.clone())
            .module(chat.clone()),
    )
    .await
    .expect("connects to prosody");
    Full {
        client,
        chat,
        mam,
        carbons,
    }
}

fn body_of(e: &Element) -> Option<String> {
    e.get_child("body", "jabber:client")
        .map(|b| b.text_content())
}

#[tokio::test]
async fn mam_paging_and_carbons_with_prosody() {
    let Some(p) = Prosody::start().await else {
        return;
    };
    for u in ["alice", "bob"] {
        p.add_user(u);
    }
    let pc = full_client(&p, "alice", "pc").await;
    let phone = full_client(&p, "alice", "phone").await;
    let bob = full_client(&p, "bob", "pc").await;
    assert!(phone.carbons.enable(&phone.client).await.expect("enable"));
    let mut copies = phone.carbons.events();
    let mut bob_ev = bob.chat.events();

    // Alice's pc writes to bob: bob gets it, alice's phone a "sent" copy.
    let bob_jid = Jid::new(bob.client.jid().as_str()).expect("jid");
    for i in 0..7 {
        pc.chat
            .send(&pc.client, &bob_jid, &format!("archived {i}"))
            .await
            .expect("send");
    }
    next(
        &mut bob_ev,
        |e| matches!(e, ChatEvent::Message(m) if m.body.as_deref() == Some("archived 6")),
    )
    .await;
    let got = next(
        &mut copies,
        |e| matches!(e, CarbonEvent::Sent(m) if body_of(m).is_some()),
    )
    .await;
    assert!(
        matches!(&got, CarbonEvent::Sent(m) if body_of(m).as_deref() == Some("archived 0")),
        "{got:?}"
    );
    // Bob answers the pc: the phone gets a "received" copy.
    let pc_jid = Jid::new(pc.client.jid().as_str()).expect("jid");
    bob.chat
        .send(&bob.client, &pc_jid, "got them")
        .await
        .expect("send");
    let got = next(
        &mut copies,
        |e| matches!(e, CarbonEvent::Received(m) if body_of(m).is_some()),
    )
    .await;
    assert!(
        matches!(&got, CarbonEvent::Received(m) if body_of(m).as_deref() == Some("got them")),
        "{got:?}"
    );

    // Bob pages through his archive with alice, 3 at a time.
    let mut q = MamQuery {
        with: Some(Jid::new("alice@localhost").expect("jid")),
        ..MamQuery::first(3)
    };
    let mut bodies = Vec::new();
    let mut pages = 0;
    loop {
        let page = bob.mam.query(&bob.client, None, &q).await.expect("page");
        pages += 1;
        assert!(page.messages.len() <= 3);
        bodies.extend(page.messages.iter().filter_map(|m| m.body.clone()));
        if page.complete || pages > 20 {
            break;
        }
        q = q.next_page(&page).expect("a last id");
    }
    let mut expected: Vec<String> = (0..7).map(|i| format!("archived {i}")).collect();
    expected.push("got them".into());
    assert_eq!(bodies, expected);
    // Prosody archives the receipts too (no body), so more than the three pages of bodies.
    assert!(pages >= 3, "{pages}");
}

#[tokio::test]
async fn vcard_with_prosody() {
    let Some(p) = Prosody::start().await else {
        return;
    };
    for u in ["alice", "bob"] {
        p.add_user(u);
    }
    let connect = |user: &'static str| {
        let vcards = VCards::new();
        let cfg = Config::new(p.options(user, "sdk")).module(vcards.clone());
        async move { (Client::connect(cfg).await.expect("connects"), vcards) }
    };
    let (alice, alice_v) = connect("alice").await;
    let (bob, bob_v) = connect("bob").await;
    let card = VCard {
        full_name: Some("Alice Liddell".into()),
        nickname: Some("Alice".into()),
        photo: Some(Photo {
            mime_type: Some("image/png".into()),
            data: Some(vec![0x89, b'P', b'N', b'G', 9, 8, 7]),
            extval: None,
        }),
        others: Vec::new(),
    };
    alice_v.publish(&alice, &card).await.expect("publish");
    let got = bob_v
        .fetch(&bob, Some(&BareJid::new("alice@localhost").expect("jid")))
        .await
        .expect("fetch")
        .expect("a vCard");
    assert_eq!(got.full_name, card.full_name);
    assert_eq!(
        got.photo.and_then(|p| p.data),
        card.photo.and_then(|p| p.data)
    );
}

/// A client with the modules PEP needs: disco (caps), pubsub, presence advertising caps.
struct PepClient {
    client: Client,
    pubsub: Arc<PubSub>,
    presence: Arc<Presence>,
    events: broadcast::Receiver<PubSubEvent>,
    presence_events: broadcast::Receiver<PresenceEvent>,
}

async fn pep_client(p: &Prosody, user: &str) -> PepClient {
    let disco = Disco::new("confab test");
    let pubsub = PubSub::new(disco.clone());
    pubsub.notify(NICK_NS);
    pubsub.notify(AVATAR_METADATA_NS);
    let presence = Presence::new();
    presence.advertise(disco.clone());
    let client = Client::connect(
        Config::new(p.options(user, "pep"))
            .module(disco)
            .module(pubsub.clone())
            .module(presence.clone()),
    )
    .await
    .expect("connects to prosody");
    let events = pubsub.events();
    let presence_events = presence.events();
    PepClient {
        client,
        pubsub,
        presence,
        events,
        presence_events,
    }
}

async fn next_pep(
    rx: &mut broadcast::Receiver<PubSubEvent>,
    pred: impl Fn(&PepEvent) -> bool,
) -> PepEvent {
    let e = next(rx, |e| PepEvent::from_pubsub(e).is_some_and(|p| pred(&p))).await;
    PepEvent::from_pubsub(&e).expect("a PEP event")
}

/// `x` asks to see `y`'s presence and `y` approves.
async fn subscribe_to(x: &mut PepClient, y: &mut PepClient) {
    let (xj, yj) = (bare(&x.client), bare(&y.client));
    x.presence
        .subscribe(&x.client, &yj)
        .await
        .expect("subscribe");
    next(&mut y.presence_events, |e| {
        matches!(e, PresenceEvent::SubscriptionRequest { .. })
    })
    .await;
    y.presence.approve(&y.client, &xj).await.expect("approve");
    // Prosody tells only resources that fetched the roster of the approval itself; the
    // contact's presence follows it for every resource.
    next(
        &mut x.presence_events,
        |e| matches!(e, PresenceEvent::Available(j, _) if j.to_bare() == yj),
    )
    .await;
}

fn bare(c: &Client) -> BareJid {
    c.jid().to_bare()
}

#[tokio::test]
async fn pep_nick_and_avatar_with_prosody() {
    let Some(p) = Prosody::start().await else {
        return;
    };
    p.add_user("alice");
    p.add_user("bob");
    let mut alice = pep_client(&p, "alice").await;
    let mut bob = pep_client(&p, "bob").await;
    let (a, b) = (bare(&alice.client), bare(&bob.client));
    // Mutual presence subscriptions: PEP sends to contacts who see the owner's presence.
    // Requests reach available resources only.
    for x in [&mut alice, &mut bob] {
        x.presence
            .set(&x.client, Status::available())
            .await
            .expect("presence");
    }
    subscribe_to(&mut alice, &mut bob).await;
    subscribe_to(&mut bob, &mut alice).await;
    // Presence with caps again, now to the contacts: Prosody asks the caps node what each
    // client wants notifying of.
    for x in [&mut alice, &mut bob] {
        x.presence
            .set(&x.client, Status::available())
            .await
            .expect("presence");
    }
    alice
        .pubsub
        .publish_nick(&alice.client, "Wonderland Alice")
        .await
        .expect("publish nick");
    let got = next_pep(&mut bob.events, |e| matches!(e, PepEvent::Nick { .. })).await;
    assert_eq!(
        got,
        PepEvent::Nick {
            from: a.clone(),
            nick: Some("Wonderland Alice".into())
        }
    );
    assert_eq!(
        bob.pubsub
            .fetch_nick(&bob.client, &a)
            .await
            .expect("fetch nick")
            .as_deref(),
        Some("Wonderland Alice")
    );
    assert_eq!(
        bob.pubsub
            .fetch_nick(&bob.client, &b)
            .await
            .expect("own nick"),
        None
    );

    let image: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let info = alice
        .pubsub
        .publish_avatar(&alice.client, &image, "image/png", Some(32), Some(32))
        .await
        .expect("publish avatar");
    let got = next_pep(&mut bob.events, |e| matches!(e, PepEvent::Avatar { .. })).await;
    assert_eq!(
        got,
        PepEvent::Avatar {
            from: a.clone(),
            info: Some(info.clone())
        }
    );
    let fetched = bob
        .pubsub
        .fetch_avatar(&bob.client, &a, &info.id)
        .await
        .expect("fetch avatar");
    assert_eq!(fetched.as_deref(), Some(&image[..]));
    assert_eq!(
        bob.pubsub
            .fetch_avatar(&bob.client, &a, "0000000000000000000000000000000000000000")
            .await
            .expect("unknown id"),
        None
    );
    alice
        .pubsub
        .disable_avatar(&alice.client)
        .await
        .expect("disable");
    let got = next_pep(&mut bob.events, |e| matches!(e, PepEvent::Avatar { .. })).await;
    assert_eq!(
        got,
        PepEvent::Avatar {
            from: a.clone(),
            info: None
        }
    );

    // Publish-options on PEP: a whitelisted node is not readable by contacts, and a publish
    // whose options contradict the node's configuration is refused.
    let secret = "urn:example:secret";
    alice
        .pubsub
        .publish(
            &alice.client,
            None,
            secret,
            Some("1"),
            Element::new("x", secret),
            &[("pubsub#access_model", "whitelist")],
        )
        .await
        .expect("publish with options");
    let denied = bob
        .pubsub
        .items(
            &bob.client,
            Some(&Jid::from(a.clone())),
            secret,
            &ItemsQuery::All,
        )
        .await;
    assert!(
        matches!(denied, Err(PubSubError::Forbidden | PubSubError::NotFound)),
        "{denied:?}"
    );
    let clash = alice
        .pubsub
        .publish(
            &alice.client,
            None,
            secret,
            Some("2"),
            Element::new("x", secret),
            &[("pubsub#access_model", "open")],
        )
        .await;
    assert!(
        matches!(clash, Err(PubSubError::PreconditionNotMet)),
        "{clash:?}"
    );
    let _ = alice.client.close().await;
    let _ = bob.client.close().await;
}

#[tokio::test]
async fn pubsub_service_with_prosody() {
    let Some(p) = Prosody::start().await else {
        return;
    };
    p.add_user("alice");
    p.add_user("bob");
    let alice = pep_client(&p, "alice").await;
    let mut bob = pep_client(&p, "bob").await;
    let service = Jid::new("pubsub.localhost").expect("jid");
    let svc = Some(&service);
    // Notifications go to the bare JID: delivered to available resources.
    bob.presence
        .set(&bob.client, Status::available())
        .await
        .expect("presence");
    let node = alice
        .pubsub
        .create_node(
            &alice.client,
            svc,
            Some("news"),
            &[("pubsub#max_items", "10")],
        )
        .await
        .expect("create node");
    assert_eq!(node, "news");
    let again = alice
        .pubsub
        .create_node(&alice.client, svc, Some("news"), &[])
        .await;
    assert!(matches!(again, Err(PubSubError::Conflict)), "{again:?}");
    let form = alice
        .pubsub
        .node_config(&alice.client, svc, "news")
        .await
        .expect("config");
    assert_eq!(form.value("pubsub#max_items"), Some("10"));
    alice
        .pubsub
        .configure_node(
            &alice.client,
            svc,
            "news",
            &[("pubsub#max_items", "5"), ("pubsub#title", "News")],
        )
        .await
        .expect("configure");
    let form = alice
        .pubsub
        .node_config(&alice.client, svc, "news")
        .await
        .expect("config");
    assert_eq!(form.value("pubsub#title"), Some("News"));

    let sub = bob
        .pubsub
        .subscribe(&bob.client, svc, "news")
        .await
        .expect("subscribe");
    assert_eq!(sub.state, SubscriptionState::Subscribed);
    assert_eq!(sub.node, "news");

    let entry = |t: &str| {
        Element::new("entry", "http://www.w3.org/2005/Atom")
            .child(Element::new("title", "http://www.w3.org/2005/Atom").text(t))
    };
    for (id, t) in [("1", "first"), ("2", "second")] {
        let got = alice
            .pubsub
            .publish(&alice.client, svc, "news", Some(id), entry(t), &[])
            .await
            .expect("publish");
        assert_eq!(got.as_deref(), Some(id));
    }
    let assigned = alice
        .pubsub
        .publish(&alice.client, svc, "news", None, entry("third"), &[])
        .await
        .expect("publish");
    let third = assigned.expect("the service names the item");
    let ev = next(&mut bob.events, |e| matches!(e, PubSubEvent::Items { items, .. } if items.iter().any(|i| i.id.as_deref() == Some("1")))).await;
    match ev {
        PubSubEvent::Items { from, node, items } => {
            assert_eq!((from, node.as_str()), (service.clone(), "news"));
            let title = items[0]
                .payload
                .as_ref()
                .and_then(|p| p.elements().next())
                .map(|t| t.text_content());
            assert_eq!(title.as_deref(), Some("first"));
        }
        e => panic!("{e:?}"),
    }
    let all = bob
        .pubsub
        .items(&bob.client, svc, "news", &ItemsQuery::All)
        .await
        .expect("items");
    assert_eq!(all.len(), 3, "{all:?}");
    let latest = bob
        .pubsub
        .items(&bob.client, svc, "news", &ItemsQuery::Max(1))
        .await
        .expect("max");
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].id.as_deref(), Some(third.as_str()));
    let by_id = bob
        .pubsub
        .items(&bob.client, svc, "news", &ItemsQuery::Ids(vec!["2".into()]))
        .await
        .expect("by id");
    assert_eq!(
        by_id.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![Some("2".to_string())]
    );
    let missing = bob
        .pubsub
        .items(&bob.client, svc, "nothing-here", &ItemsQuery::All)
        .await;
    assert!(matches!(missing, Err(PubSubError::NotFound)), "{missing:?}");

    alice
        .pubsub
        .retract(&alice.client, svc, "news", "1", true)
        .await
        .expect("retract");
    let ev = next(&mut bob.events, |e| {
        matches!(e, PubSubEvent::Retracted { .. })
    })
    .await;
    assert_eq!(
        ev,
        PubSubEvent::Retracted {
            from: service.clone(),
            node: "news".into(),
            ids: vec!["1".into()]
        }
    );
    // Only the owner manages the node.
    let refused = bob.pubsub.delete_node(&bob.client, svc, "news").await;
    assert!(
        matches!(refused, Err(PubSubError::Forbidden)),
        "{refused:?}"
    );
    alice
        .pubsub
        .purge(&alice.client, svc, "news")
        .await
        .expect("purge");
    next(&mut bob.events, |e| matches!(e, PubSubEvent::Purged { .. })).await;
    assert!(bob
        .pubsub
        .items(&bob.client, svc, "news", &ItemsQuery::All)
        .await
        .expect("items")
        .is_empty());
    bob.pubsub
        .unsubscribe(&bob.client, svc, "news", sub.subid.as_deref())
        .await
        .expect("unsubscribe");
    bob.pubsub
        .subscribe(&bob.client, svc, "news")
        .await
        .expect("subscribe again");
    alice
        .pubsub
        .delete_node(&alice.client, svc, "news")
        .await
        .expect("delete");
    let ev = next(&mut bob.events, |e| {
        matches!(e, PubSubEvent::Deleted { .. })
    })
    .await;
    assert_eq!(
        ev,
        PubSubEvent::Deleted {
            from: service.clone(),
            node: "news".into()
        }
    );
    let _ = alice.client.close().await;
    let _ = bob.client.close().await;
}

#[tokio::test]
async fn http_upload_with_prosody() {
    let Some(p) = Prosody::start().await else {
        return;
    };
    p.add_user("alice");
    p.add_user("bob");
    let (alice, _) = chat_client(&p, "alice").await;
    let (bob, bob_chat) = chat_client(&p, "bob").await;
    confab_client::Presence::new()
        .set(&bob, Status::available())
        .await
        .expect("presence");
    let mut events = bob_chat.events();
    let upload = Upload::new(p.options("alice", "sdk").verify);
    let service = upload
        .discover(&alice)
        .await
        .expect("prosody offers upload");
    assert_eq!(service.jid.as_str(), "upload.localhost");
    assert_eq!(service.max_file_size, Some(1_000_000));

    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("report 1.pdf");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 241) as u8).collect();
    std::fs::write(&src, &data).expect("write");
    let bob_jid = Jid::new("bob@localhost").expect("jid");
    let url = upload
        .send_file(&alice, &bob_jid, &src)
        .await
        .unwrap_or_else(|e| panic!("upload to prosody: {e}\n{}", p.logs()));
    let got = next(&mut events, |e| matches!(e, ChatEvent::Message(_))).await;
    let ChatEvent::Message(m) = got else {
        unreachable!()
    };
    assert_eq!(m.oob_url.as_deref(), Some(url.as_str()));
    let dest = dir.path().join("got.pdf");
    let bob_upload = Upload::new(p.options("bob", "sdk").verify);
    let n = bob_upload
        .download(&url, &dest, 1 << 20)
        .await
        .expect("download from prosody");
    assert_eq!(n, data.len() as u64);
    assert!(std::fs::read(&dest).expect("read") == data);

    let big = dir.path().join("big.bin");
    std::fs::write(&big, vec![0u8; 1_000_001]).expect("write");
    let fresh = Upload::new(confab_client::CertVerification::Insecure);
    fresh.discover(&alice).await.expect("service");
    assert!(matches!(
        fresh.upload_file(&alice, &big, None).await,
        Err(UploadError::FileTooLarge {
            max: Some(1_000_000)
        })
    ));
    alice.close().await.expect("close");
    bob.close().await.expect("close");
}
