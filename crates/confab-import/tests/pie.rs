//! XEP-0227 export and import against every backend: a store full of data exported,
//! imported into a fresh database, exported again gives the same document; bad input gets
//! an error naming where, and a user is imported whole or not at all.

// The conformance suite's databases: a fresh one per test on each backend.
#[path = "../../confab-store/tests/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use confab_import::pie::{self, ImportOptions};
use confab_proto::sasl::{ScramCredentials, ScramHash};
use confab_store::{ArchiveQuery, ArchivedMessage, RoomMessage, RosterItem, Stores, Subscription};
use harness::{Kind, TestDb};
use std::path::{Path, PathBuf};

conformance!(round_trip_is_lossless);

const PHOTO: &str = "iVBORw0KGgo=";

fn opts(domains: &[&str]) -> ImportOptions {
    ImportOptions::new(domains.iter().map(|d| d.to_string()).collect(), 4096)
}

async fn export_string(s: &Stores, domains: &[&str]) -> String {
    let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    let mut out = Vec::new();
    pie::export(s, &domains, &mut out).await.expect("export");
    String::from_utf8(out).expect("utf-8")
}

/// A stanza as the server stores it: parsed (attributes in the parser's order) and
/// serialized.
fn canon(xml: &str) -> String {
    confab_proto::parser::parse_fragment(xml, "jabber:client", &Default::default())
        .expect("stanza")
        .to_xml("jabber:client")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// Fills a store with every kind of data Confab keeps.
async fn fill(s: &Stores) {
    let creds: Vec<ScramCredentials> = [ScramHash::Sha1, ScramHash::Sha256]
        .into_iter()
        .map(|h| ScramCredentials::new_random(h, "alice's secret", 4096).expect("creds"))
        .collect();
    s.accounts
        .create_account("localhost", "alice", &creds)
        .await
        .expect("alice");
    let bob = vec![ScramCredentials::new_random(ScramHash::Sha256, "pw", 5000).expect("creds")];
    s.accounts
        .create_account("localhost", "bob", &bob)
        .await
        .expect("bob");
    s.accounts
        .create_account("example.org", "zoe", &bob)
        .await
        .expect("zoe");
    let item = |jid: &str, f: &dyn Fn(&mut RosterItem)| {
        let mut i = RosterItem::new(jid);
        i.in_roster = true;
        f(&mut i);
        i
    };
    let items = [
        item("bob@localhost", &|i| {
            i.name = Some("Bob <the builder> & co".into());
            i.subscription = Subscription::Both;
            i.groups = vec!["Friends".into(), "Work 🛠".into()];
        }),
        item("carol@example.org", &|i| {
            i.subscription = Subscription::To;
            i.ask = true;
        }),
        item("dave@example.org", &|i| {
            i.subscription = Subscription::From;
            i.approved = true;
            i.pending_in = Some(canon(
                "<presence from='dave@example.org' type='subscribe'><status>again</status></presence>",
            ));
        }),
        // Only a pending request: not in the roster clients see.
        {
            let mut i = RosterItem::new("eve@example.org");
            i.pending_in = Some(canon(
                "<presence from='eve@example.org/phone' type='subscribe'><nick xmlns='http://jabber.org/protocol/nick'>Eve</nick></presence>",
            ));
            i
        },
        // Hidden, with a pre-approval (RFC 6121 §3.4) as well.
        {
            let mut i = RosterItem::new("frank@example.org");
            i.approved = true;
            i
        },
    ];
    for i in &items {
        s.roster
            .put_roster_item("localhost", "alice", i)
            .await
            .expect("roster");
    }
    let vcard = format!(
        "<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{PHOTO}</BINVAL></PHOTO></vCard>"
    );
    let photo = confab_proto::parser::parse_fragment(
        &vcard,
        "jabber:client",
        &confab_proto::parser::Limits::default(),
    )
    .expect("vcard");
    let hash = confab_modules::vcard::photo_hash(&photo)
        .expect("hash")
        .expect("photo");
    let docs = [
        ("vcard", "vcard", vcard.as_str()),
        ("vcard", "avatar-hash", hash.as_str()),
        (
            "private",
            "{storage:bookmarks}storage",
            "<storage xmlns='storage:bookmarks'><conference jid='lobby@conference.localhost' name='Lobby'/></storage>",
        ),
        ("blocklist", "spam@evil.example", ""),
        ("blocklist", "evil.example", ""),
        ("mam", "prefs", "<prefs xmlns='urn:xmpp:mam:2' default='roster'><always><jid>bob@localhost</jid></always></prefs>"),
        ("last", "last", "1764518400 gone\tfishing\r\n& <back> soon 🎣"),
    ];
    for (kind, key, value) in docs {
        s.data
            .set_account_data("localhost", "alice", kind, key, value)
            .await
            .expect("doc");
    }
    // As the vCard module stores one: the vCard and its photo's hash (none).
    for (key, value) in [
        ("vcard", "<vCard xmlns='vcard-temp'/>"),
        ("avatar-hash", ""),
    ] {
        s.data
            .set_account_data("example.org", "zoe", "vcard", key, value)
            .await
            .expect("zoe vcard");
    }
    for (i, stamp) in [1_764_000_000_i64, 1_764_000_060, 1_764_000_120]
        .iter()
        .enumerate()
    {
        let stanza = format!(
            "<message from='bob@localhost/desk' to='alice@localhost' type='chat' id='o{i}'><body>offline {i} &amp; more</body><delay xmlns='urn:xmpp:delay' from='elsewhere.example' stamp='2020-01-01T00:00:00Z'/></message>"
        );
        assert!(s
            .offline
            .push_offline("localhost", "alice", &canon(&stanza), *stamp, 100)
            .await
            .expect("offline"));
    }
    // More than two pages of the archive, sent and received, stamps with microseconds.
    let mut msgs = Vec::new();
    for i in 0..250_i64 {
        let (stanza, with) = if i % 2 == 0 {
            (
                format!("<message from='alice@localhost/laptop' to='bob@localhost/desk' type='chat' id='m{i}'><body>to bob {i}</body></message>"),
                "bob@localhost/desk".to_string(),
            )
        } else {
            (
                format!("<message from='bob@localhost/desk' to='alice@localhost/laptop' type='chat' id='m{i}'><body>from bob {i}</body><stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='a{i}'/></message>"),
                "bob@localhost/desk".to_string(),
            )
        };
        // One whose recorded party differs from what the message shows.
        let with = if i == 7 {
            "bob@localhost".to_string()
        } else {
            with
        };
        msgs.push(ArchivedMessage {
            id: format!("a{i}"),
            with,
            stamp: 1_764_000_000_000_000 + i * 1_000_003,
            stanza: canon(&stanza),
        });
    }
    s.archive
        .append_archive_batch("localhost", "alice", &msgs)
        .await
        .expect("archive");
    s.data
        .set_host_data("localhost", "invite", "tok1", "{\"expires\":1}")
        .await
        .expect("invite");
    s.data
        .set_host_data(
            "conference.localhost",
            "muc",
            "lobby",
            "{\"affiliations\":{\"alice@localhost\":\"owner\"}}",
        )
        .await
        .expect("room");
    s.data
        .set_host_data("conference.localhost", "muc-keys", "secret", "c2VjcmV0")
        .await
        .expect("keys");
    for i in 0..5_i64 {
        s.room_archive
            .append_room_message(
                "conference.localhost",
                "lobby",
                &RoomMessage {
                    id: format!("r{i}"),
                    nick: "Alice 🌸".into(),
                    jid: "alice@localhost".into(),
                    stamp: 1_764_000_000_500_000 + i,
                    stanza: canon(&format!("<message from='lobby@conference.localhost/Alice 🌸' type='groupchat' id='g{i}'><body>hello {i}</body></message>")),
                },
            )
            .await
            .expect("room message");
    }
}

/// Exported from SQLite, imported into `db` (each backend), exported again: the same
/// document, and the stores hold the same data.
async fn round_trip_is_lossless(db: TestDb) {
    let src_db = TestDb::new(Kind::Sqlite).await.expect("sqlite");
    let src = src_db.open().await;
    fill(&src).await;
    let domains = ["localhost", "example.org"];
    let first = export_string(&src, &domains).await;
    for needle in [
        "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>",
        "<group>Work 🛠</group>",
        "ask='subscribe'",
        "<presence xmlns='jabber:client' from='eve@example.org/phone' type='subscribe'>",
        "<vCard xmlns='vcard-temp'>",
        "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'>",
        "<blocklist xmlns='urn:xmpp:blocking'>",
        "<offline-messages>",
        "<archive xmlns='urn:xmpp:pie:0#mam'>",
        "<result xmlns='urn:xmpp:mam:2' id='a249'>",
        "<room-archive xmlns='urn:confab:pie:0' room='lobby'>",
        "<host jid='conference.localhost'>",
    ] {
        assert!(first.contains(needle), "export lacks {needle}:\n{first}");
    }
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "export.xml", &first);
    let target = db.open().await;
    let report = pie::import(&target, &[file], &opts(&domains))
        .await
        .expect("import");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert_eq!(
        report.imported,
        vec!["zoe@example.org", "alice@localhost", "bob@localhost"]
    );
    assert!(report.ignored.is_empty(), "{:?}", report.ignored);
    assert_eq!(report.archived_messages, 250);
    assert_eq!(report.offline_messages, 3);
    assert_eq!(report.room_messages, 5);
    let second = export_string(&target, &domains).await;
    assert_eq!(first, second, "the second export differs");

    // The stores agree, beyond what the document shows.
    for (d, u) in [
        ("localhost", "alice"),
        ("localhost", "bob"),
        ("example.org", "zoe"),
    ] {
        assert_eq!(
            src.accounts.credentials(d, u).await.expect("creds"),
            target.accounts.credentials(d, u).await.expect("creds"),
            "{u}@{d}"
        );
        let sort = |mut v: Vec<RosterItem>| {
            v.sort_by(|a, b| a.jid.cmp(&b.jid));
            v
        };
        assert_eq!(
            sort(src.roster.roster(d, u).await.expect("roster").1),
            sort(target.roster.roster(d, u).await.expect("roster").1)
        );
        assert_eq!(
            src.data.all_account_data(d, u).await.expect("docs"),
            target.data.all_account_data(d, u).await.expect("docs")
        );
        assert_eq!(
            src.offline
                .offline_messages(d, u)
                .await
                .expect("offline")
                .into_iter()
                .map(|m| (m.stanza, m.stamp))
                .collect::<Vec<_>>(),
            target
                .offline
                .offline_messages(d, u)
                .await
                .expect("offline")
                .into_iter()
                .map(|m| (m.stanza, m.stamp))
                .collect::<Vec<_>>()
        );
    }
    let q = ArchiveQuery {
        max: 100,
        before: Some(String::new()),
        ..ArchiveQuery::default()
    };
    assert_eq!(
        src.archive
            .query_archive("localhost", "alice", &q)
            .await
            .expect("page"),
        target
            .archive
            .query_archive("localhost", "alice", &q)
            .await
            .expect("page")
    );
}

async fn sqlite() -> (TestDb, Stores) {
    let db = TestDb::new(Kind::Sqlite).await.expect("sqlite");
    let s = db.open().await;
    (db, s)
}

const SCRAM_ALICE: &str = "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>4096</iter-count><salt>QSXCR+Q6sek8bf92</salt><server-key>D+CSWLOshSulAsxiupA+qs2/fTE=</server-key><stored-key>6dlGYMOdZcOPutkcNY8U2g7vK9Y=</stored-key></scram-credentials>";

fn doc(users: &str) -> String {
    format!("<?xml version='1.0'?>\n<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>{users}</host></server-data>")
}

/// Not well-formed input stops the import with the file and byte; the users before it are
/// imported, the one being read is rolled back entirely.
#[tokio::test]
async fn malformed_xml_stops_with_where_and_what_was_imported() {
    let (_db, s) = sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    let text = doc(&format!(
        "<user name='alice'>{SCRAM_ALICE}</user><user name='bob' password='pw'><query xmlns='jabber:iq:roster'><item jid='alice@localhost' subscription='both'/></query><archive xmlns='urn:xmpp:pie:0#mam'><result xmlns='urn:xmpp:mam:2' id='1'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/><message xmlns='jabber:client' from='alice@localhost' to='bob@localhost'><body>hi</body></message></forwarded></result></archive><vCard xmlns='vcard-temp'><FN>Bob</FN></wrong></user>"
    ));
    let file = write(dir.path(), "bad.xml", &text);
    let err = pie::import(&s, &[file], &opts(&["localhost"]))
        .await
        .expect_err("must fail");
    assert!(err.why.contains("bad.xml"), "{}", err.why);
    assert!(err.why.contains("byte"), "{}", err.why);
    assert!(err.why.contains("not well-formed"), "{}", err.why);
    assert_eq!(err.report.imported, vec!["alice@localhost"]);
    assert_eq!(err.report.failed.len(), 1, "{:?}", err.report.failed);
    assert_eq!(err.report.failed[0].0, "bob@localhost");
    assert!(s
        .accounts
        .account_exists("localhost", "alice")
        .await
        .expect("q"));
    assert!(!s
        .accounts
        .account_exists("localhost", "bob")
        .await
        .expect("q"));
    assert!(s
        .roster
        .roster("localhost", "bob")
        .await
        .expect("r")
        .1
        .is_empty());
}

/// A user with bad data is not imported at all, and the error names the data and where;
/// the next user is imported. Unknown elements are reported and skipped.
#[tokio::test]
async fn a_bad_user_is_rolled_back_and_named() {
    let (_db, s) = sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    let archive = "<archive xmlns='urn:xmpp:pie:0#mam'><result xmlns='urn:xmpp:mam:2' id='x1'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:00Z'/><message xmlns='jabber:client' from='carol@localhost/a' to='alice@localhost'><body>hi</body></message></forwarded></result></archive>";
    let text = doc(&format!(
        "<user name='carol' password='pw'>{archive}<query xmlns='jabber:iq:roster'><item jid='not a@valid@jid' subscription='both'/></query></user>\
         <user name='Dave' password='pw'/>\
         <user name='erin'/>\
         <user name='alice'>{SCRAM_ALICE}<query xmlns='jabber:iq:privacy'><list name='x'/></query><favourite-colour xmlns='urn:example:nonsense'>blue</favourite-colour></user>"
    ));
    let file = write(dir.path(), "users.xml", &text);
    let report = pie::import(&s, &[file], &opts(&["localhost"]))
        .await
        .expect("import");
    assert_eq!(report.imported, vec!["alice@localhost"]);
    let failed: std::collections::HashMap<_, _> = report.failed.iter().cloned().collect();
    let carol = &failed["carol@localhost"];
    assert!(
        carol.contains("not a@valid@jid") && carol.contains("users.xml (byte"),
        "{carol}"
    );
    assert!(
        failed["Dave@localhost"].contains("normalised"),
        "{failed:?}"
    );
    assert!(
        failed["erin@localhost"].contains("neither a password"),
        "{failed:?}"
    );
    // carol's archive was written before the bad roster was read: all of it went again.
    assert!(!s
        .accounts
        .account_exists("localhost", "carol")
        .await
        .expect("q"));
    assert!(s
        .archive
        .query_archive(
            "localhost",
            "carol",
            &ArchiveQuery {
                max: 10,
                ..Default::default()
            }
        )
        .await
        .expect("q")
        .is_none_or(|p| p.items.is_empty()));
    assert!(
        report.ignored.iter().any(|i| i.contains("privacy lists")),
        "{:?}",
        report.ignored
    );
    assert!(
        report
            .ignored
            .iter()
            .any(|i| i.contains("urn:example:nonsense")),
        "{:?}",
        report.ignored
    );
}

/// A failure after the account and part of its archive were written takes all of it away
/// again (the archive is written in batches as it is read).
#[tokio::test]
async fn a_failure_after_writing_rolls_the_user_back() {
    let (_db, s) = sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    let results: String = (0..5)
        .map(|i| format!("<result xmlns='urn:xmpp:mam:2' id='x{i}'><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2020-01-01T00:00:0{i}Z'/><message xmlns='jabber:client' from='carol@localhost/a' to='bob@localhost'><body>{i}</body></message></forwarded></result>"))
        .collect();
    let text = doc(&format!(
        "<user name='carol' password='pw'><archive xmlns='urn:xmpp:pie:0#mam'>{results}</archive><query xmlns='jabber:iq:roster'><item jid='@bad' subscription='both'/></query></user>"
    ));
    let file = write(dir.path(), "late.xml", &text);
    let mut o = opts(&["localhost"]);
    o.archive_batch = 2;
    let report = pie::import(&s, &[file], &o).await.expect("import");
    assert!(report.imported.is_empty());
    assert_eq!(report.failed.len(), 1, "{:?}", report.failed);
    assert!(!s
        .accounts
        .account_exists("localhost", "carol")
        .await
        .expect("q"));
    let left = s
        .archive
        .query_archive(
            "localhost",
            "carol",
            &ArchiveQuery {
                max: 10,
                ..Default::default()
            },
        )
        .await
        .expect("q");
    assert!(left.as_ref().is_none_or(|p| p.items.is_empty()), "{left:?}");
}

/// An account that exists is left as it is; users of hosts not served here and a host
/// that is not a domain are refused.
#[tokio::test]
async fn existing_accounts_and_foreign_hosts_are_refused() {
    let (_db, s) = sqlite().await;
    let creds = vec![ScramCredentials::new_random(ScramHash::Sha256, "old", 4096).expect("c")];
    s.accounts
        .create_account("localhost", "alice", &creds)
        .await
        .expect("alice");
    let dir = tempfile::tempdir().expect("dir");
    let text = format!(
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='alice'>{SCRAM_ALICE}</user></host><host jid='elsewhere.example'><user name='x' password='pw'/></host><host jid='bad@@host'><user name='y' password='pw'/></host></server-data>"
    );
    let file = write(dir.path(), "x.xml", &text);
    let report = pie::import(&s, &[file], &opts(&["localhost"]))
        .await
        .expect("import");
    assert!(report.imported.is_empty());
    assert_eq!(
        s.accounts
            .credentials("localhost", "alice")
            .await
            .expect("c"),
        Some(creds)
    );
    let text = format!("{:?}", report.failed);
    assert!(text.contains("exists here already"), "{text}");
    assert!(
        text.contains("elsewhere.example is not served here"),
        "{text}"
    );
    assert!(text.contains("host 'bad@@host'"), "{text}");
}

/// A plaintext password becomes SCRAM keys; Prosody's and ejabberd's forms of SCRAM keys
/// are taken as they are.
#[tokio::test]
async fn passwords_and_scram_forms() {
    let (_db, s) = sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    let ej =
        ScramCredentials::derive(ScramHash::Sha1, "ejpw", b"0123456789abcdef", 4096).expect("d");
    let b = |v: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(v)
    };
    // ejabberd 23.01's export: its base64 values encoded in base64 once more.
    let twice = |v: &[u8]| b(b(v).as_bytes());
    let ej23 = format!(
        "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>4096</iter-count><salt>{}</salt><server-key>{}</server-key><stored-key>{}</stored-key></scram-credentials>",
        twice(&ej.salt),
        twice(&ej.server_key),
        twice(&ej.stored_key)
    );
    let text = doc(&format!(
        "<user name='plain' password='pässword'/><user name='prosody'>{SCRAM_ALICE}</user><user name='ej' password='scram:{},{},{},4096'/><user name='ej23'>{ej23}</user>",
        b(&ej.stored_key),
        b(&ej.server_key),
        b(&ej.salt)
    ));
    let file = write(dir.path(), "pw.xml", &text);
    let report = pie::import(&s, &[file], &opts(&["localhost"]))
        .await
        .expect("import");
    assert_eq!(report.imported.len(), 4, "{:?}", report.failed);
    let plain = s
        .accounts
        .credentials("localhost", "plain")
        .await
        .expect("c")
        .expect("some");
    assert_eq!(plain.len(), 2);
    for c in &plain {
        let again = ScramCredentials::derive(c.hash, "pässword", &c.salt, c.iterations).expect("d");
        assert_eq!(&again, c);
    }
    let ej_stored = s
        .accounts
        .credentials("localhost", "ej")
        .await
        .expect("c")
        .expect("some");
    assert_eq!(ej_stored, vec![ej.clone()]);
    let ej23_stored = s
        .accounts
        .credentials("localhost", "ej23")
        .await
        .expect("c")
        .expect("some");
    assert_eq!(ej23_stored, vec![ej]);
    let prosody = s
        .accounts
        .credentials("localhost", "prosody")
        .await
        .expect("c")
        .expect("some");
    assert_eq!(prosody[0].iterations, 4096);
    assert_eq!(prosody[0].hash, ScramHash::Sha1);
}

/// Limits: an element past the memory bound and nesting past the depth bound stop the
/// import with an error saying so.
#[tokio::test]
async fn huge_and_deep_input_is_refused() {
    let (_db, s) = sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    let big = "x".repeat(200_000);
    let text = doc(&format!(
        "<user name='a' password='pw'><vCard xmlns='vcard-temp'><FN>{big}</FN></vCard></user>"
    ));
    let file = write(dir.path(), "big.xml", &text);
    let mut o = opts(&["localhost"]);
    o.limits.max_element_memory = 100_000;
    let err = pie::import(&s, &[file], &o).await.expect_err("too big");
    assert!(err.why.contains("more than 100000 bytes"), "{}", err.why);
    assert!(!s
        .accounts
        .account_exists("localhost", "a")
        .await
        .expect("q"));
    let deep = format!("{}{}", "<x>".repeat(100), "</x>".repeat(100));
    let text = doc(&format!("<user name='b' password='pw'>{deep}</user>"));
    let file = write(dir.path(), "deep.xml", &text);
    let err = pie::import(&s, &[file], &opts(&["localhost"]))
        .await
        .expect_err("too deep");
    assert!(err.why.contains("nested too deeply"), "{}", err.why);
    // Many small elements for one user: bounded together.
    let many: String = (0..2000)
        .map(|i| {
            format!(
                "<data xmlns='urn:confab:pie:0' kind='k' key='{i}'>{}</data>",
                "y".repeat(100)
            )
        })
        .collect();
    let text = doc(&format!(
        "<user name='c' password='pw'>{many}</user><user name='d' password='pw'/>"
    ));
    let file = write(dir.path(), "many.xml", &text);
    let mut o = opts(&["localhost"]);
    o.limits.max_user_memory = 100_000;
    let report = pie::import(&s, &[file], &o).await.expect("import");
    assert_eq!(report.imported, vec!["d@localhost"]);
    assert!(
        report.failed[0]
            .1
            .contains("more than 100000 bytes of data for one user"),
        "{report:?}"
    );
    let file = write(dir.path(), "notpie.xml", "<stream xmlns='jabber:client'/>");
    let err = pie::import(&s, &[file], &opts(&["localhost"]))
        .await
        .expect_err("not pie");
    assert!(err.why.contains("not <server-data"), "{}", err.why);
}

/// XInclude (XEP-0227 §6): hosts and users in files of their own, as ejabberd writes them
/// (a whole document per host); paths leaving the directory are refused.
#[tokio::test]
async fn xinclude_is_followed_within_the_directory() {
    let (_db, s) = sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("localhost")).expect("mkdir");
    write(
        &dir.path().join("localhost"),
        "bob.xml",
        "<user xmlns='urn:xmpp:pie:0' name='bob' password='pw'/>",
    );
    write(
        dir.path(),
        "localhost.xml",
        &format!("<?xml version='1.0'?><server-data xmlns='urn:xmpp:pie:0'><host jid='localhost' xmlns:xi='http://www.w3.org/2001/XInclude'><user name='alice'>{SCRAM_ALICE}</user><xi:include href='localhost/bob.xml'/></host></server-data>"),
    );
    let main = write(
        dir.path(),
        "main.xml",
        "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>\n<xi:include href='localhost.xml'/>\n</server-data>",
    );
    let report = pie::import(&s, &[main], &opts(&["localhost"]))
        .await
        .expect("import");
    assert_eq!(report.imported, vec!["alice@localhost", "bob@localhost"]);
    let escape = write(
        dir.path(),
        "escape.xml",
        "<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='../etc/passwd'/></server-data>",
    );
    let err = pie::import(&s, &[escape], &opts(&["localhost"]))
        .await
        .expect_err("refused");
    assert!(err.why.contains("only relative paths"), "{}", err.why);
}

/// What is ignored is listed up to a bound and counted beyond it.
#[tokio::test]
async fn ignored_data_is_listed_within_a_bound() {
    let (_db, s) = sqlite().await;
    let dir = tempfile::tempdir().expect("dir");
    let users: String = (0..1500)
        .map(|i| format!("<user name='u{i}' password='pw'><x xmlns='urn:example:unknown'/></user>"))
        .collect();
    let file = write(dir.path(), "many.xml", &doc(&users));
    let mut o = opts(&["localhost"]);
    o.iterations = 1;
    let report = pie::import(&s, &[file], &o).await.expect("import");
    assert_eq!(report.imported.len(), 1500);
    assert_eq!(report.ignored.len() as u64 + report.ignored_more, 1500);
    assert!(
        report.ignored.len() <= pie::MAX_IGNORED + 1,
        "{}",
        report.ignored.len()
    );
}

/// An archive of several full batches and many pages moves whole and in order: 20,001
/// messages (three transactions of at most 10,000 on import, 201 pages on export).
#[tokio::test]
async fn a_large_archive_moves_whole() {
    let (_db, src) = sqlite().await;
    let c = vec![ScramCredentials::new_random(ScramHash::Sha256, "pw", 4096).expect("c")];
    src.accounts
        .create_account("localhost", "big", &c)
        .await
        .expect("account");
    let msgs: Vec<ArchivedMessage> = (0..20_001_i64)
        .map(|i| ArchivedMessage {
            id: format!("id{i:06}"),
            with: "friend@example.org/x".into(),
            stamp: 1_700_000_000_000_000 + i,
            stanza: canon(&format!("<message from='friend@example.org/x' to='big@localhost' type='chat'><body>{i}</body></message>")),
        })
        .collect();
    src.archive
        .append_archive_batch("localhost", "big", &msgs)
        .await
        .expect("fill");
    let first = export_string(&src, &["localhost"]).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = write(dir.path(), "big.xml", &first);
    let (_db2, dst) = sqlite().await;
    let report = pie::import(&dst, &[file], &opts(&["localhost"]))
        .await
        .expect("import");
    assert_eq!(report.archived_messages, 20_001);
    assert_eq!(first, export_string(&dst, &["localhost"]).await);
    let last = dst
        .archive
        .query_archive(
            "localhost",
            "big",
            &ArchiveQuery {
                max: 1,
                before: Some(String::new()),
                ..ArchiveQuery::default()
            },
        )
        .await
        .expect("q")
        .expect("page");
    assert_eq!(last.items[0].id, "id020000");
}
