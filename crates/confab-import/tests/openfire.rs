//! `confabd import --from openfire`: an Openfire database on MariaDB (127.0.0.1:3306),
//! created from Openfire's published MySQL schema (the tables read, in
//! `openfire/openfire_mysql_tables.sql`) with rows as Openfire writes them, imported into
//! a fresh store. Skipped when MariaDB is not reachable, failed then under
//! `CONFAB_REQUIRE_SERVICES=1`.

// The conformance suite's databases: the fresh target store.
#[path = "../../confab-store/tests/harness/mod.rs"]
#[allow(dead_code)]
mod harness;

use base64::Engine;
use confab_import::openfire;
use confab_import::pie::ImportOptions;
use confab_proto::sasl::{ScramCredentials, ScramHash};
use harness::{Kind, TestDb};
use sqlx::{AnyConnection, AssertSqlSafe, Connection};

const ADMIN: &str = "mysql://root@127.0.0.1:3306/test";
const SCHEMA: &str = include_str!("openfire/openfire_mysql_tables.sql");
/// The key and a value made with Openfire's own Blowfish class (see `openfire::blowfish`).
const PASSWORD_KEY: &str = "kQ8vWz3YpR1tXn5";
const BOB_ENCRYPTED: &str =
    "c47f188c3f7d0179e0849b1bf0bfe5e7a83f21e6aa16e11ff588e654e563bddb69ae61ec2e2a4703";
const CAROL_ENCRYPTED: &str = "b37f78ca9b9654ef551ca5f7c36a3fa3a7198731110148ceaaceebaa1c3913b4";
/// "pässwörd 🎉": the emoji is unassigned in the Unicode version SASLprep uses.
const FRANK_ENCRYPTED: &str = "4d14d34e64f1ef837f70b2a834b73c14c6758490688c14b2f7597101959303f8";

/// An Openfire database of its own on the MariaDB server, dropped afterwards.
struct OpenfireDb {
    name: String,
    url: String,
}

impl OpenfireDb {
    async fn create() -> Option<OpenfireDb> {
        sqlx::any::install_default_drivers();
        let admin = std::env::var("CONFAB_TEST_MYSQL_URL").unwrap_or_else(|_| ADMIN.into());
        let mut conn = match AnyConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                if std::env::var("CONFAB_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                    panic!("MariaDB not reachable and CONFAB_REQUIRE_SERVICES=1: {e}");
                }
                eprintln!("skipped: MariaDB not reachable at 127.0.0.1:3306 ({e})");
                return None;
            }
        };
        let name = format!("confab_openfire_{}_{}", std::process::id(), rand_suffix());
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE {name} CHARACTER SET utf8mb4"
        )))
        .execute(&mut conn)
        .await
        .expect("create database");
        let _ = conn.close().await;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(OpenfireDb {
            url: format!("{base}/{name}"),
            name,
        })
    }

    async fn exec(&self, sql: &str) {
        let mut conn = AnyConnection::connect(&self.url).await.expect("connect");
        sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        let _ = conn.close().await;
    }
}

impl Drop for OpenfireDb {
    fn drop(&mut self) {
        let admin = std::env::var("CONFAB_TEST_MYSQL_URL").unwrap_or_else(|_| ADMIN.into());
        let sql = format!("DROP DATABASE IF EXISTS {}", self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut c) = AnyConnection::connect(&admin).await {
                    let _ = sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut c).await;
                    let _ = c.close().await;
                }
            })
        })
        .join();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

#[tokio::test]
async fn an_openfire_database_moves_in() {
    let Some(of) = OpenfireDb::create().await else {
        return;
    };
    of.exec(SCHEMA).await;
    // alice: SCRAM-SHA-1 keys, as Openfire 4.x keeps them in ofUser (base64).
    let alice = ScramCredentials::derive(ScramHash::Sha1, "alice's pw", b"openfire-salt-16", 4096)
        .expect("derive");
    // erin: keys and the encrypted password they were made from (Openfire's default);
    // gus: keys that do not match the encrypted password.
    let erin = ScramCredentials::derive(ScramHash::Sha1, "old password", b"erin-salt-123456", 4096)
        .expect("derive");
    let gus = ScramCredentials::derive(ScramHash::Sha1, "gus's own", b"gus-salt-1234567", 4096)
        .expect("derive");
    let now = "001764500000000";
    let rows = format!(
        "INSERT INTO ofProperty (name, propValue) VALUES ('xmpp.domain', 'example.org'), ('passwordKey', '{PASSWORD_KEY}'), ('admin.authorizedJIDs', 'alice@example.org, ops@example.org');
INSERT INTO ofUser (username, storedKey, serverKey, salt, iterations, plainPassword, encryptedPassword, name, email, creationDate, modificationDate) VALUES
 ('alice', '{}', '{}', '{}', 4096, NULL, NULL, 'Alice', 'alice@example.org', '{now}', '{now}'),
 ('bob', NULL, NULL, NULL, NULL, NULL, '{BOB_ENCRYPTED}', 'Bob', NULL, '{now}', '{now}'),
 ('carol', NULL, NULL, NULL, NULL, NULL, '{CAROL_ENCRYPTED}', NULL, NULL, '{now}', '{now}'),
 ('dave', NULL, NULL, NULL, NULL, NULL, 'deadbeefdeadbeefdeadbeefdeadbeef', NULL, NULL, '{now}', '{now}'),
 ('frank', NULL, NULL, NULL, NULL, NULL, '{FRANK_ENCRYPTED}', NULL, NULL, '{now}', '{now}'),
 ('erin', '{}', '{}', '{}', 4096, NULL, '{BOB_ENCRYPTED}', NULL, NULL, '{now}', '{now}'),
 ('gus', '{}', '{}', '{}', 4096, NULL, '{BOB_ENCRYPTED}', NULL, NULL, '{now}', '{now}');
INSERT INTO ofRoster (rosterID, username, jid, sub, ask, recv, nick, stanza) VALUES
 (1, 'alice', 'bob@example.org', 3, -1, -1, 'Bobby', NULL),
 (2, 'alice', 'eve@elsewhere.example', 1, -1, -1, NULL, NULL),
 (3, 'alice', 'carol@example.org', 0, -1, 1, NULL, '<presence xmlns=\"jabber:client\" type=\"subscribe\" from=\"carol@example.org\" to=\"alice@example.org\"><status>hi alice</status></presence>'),
 (4, 'bob', 'alice@example.org', 3, -1, -1, NULL, NULL),
 (5, 'carol', 'alice@example.org', 0, 0, -1, NULL, NULL);
INSERT INTO ofRosterGroups (rosterID, `rank`, groupName) VALUES (1, 0, 'Friends'), (1, 1, 'Team'), (2, 0, 'Elsewhere');
INSERT INTO ofVCard (username, vcard) VALUES ('alice', '<vCard xmlns=\"vcard-temp\"><FN>Alice Openfire</FN><NICKNAME>al</NICKNAME></vCard>');
INSERT INTO ofMucService (serviceID, subdomain, isHidden) VALUES (1, 'conference', 0);
INSERT INTO ofMucRoom (serviceID, roomID, creationDate, modificationDate, name, naturalName, description, lockedDate, emptyDate, canChangeSubject, maxUsers, publicRoom, moderated, membersOnly, canInvite, roomPassword, canDiscoverJID, logEnabled, subject, rolesToBroadcast, useReservedNick, canChangeNick, canRegister, allowpm, fmucEnabled) VALUES
 (1, 10, '{now}', '001764500100000', 'team', 'The Team', 'Where we plan', '000000000000000', NULL, 0, 30, 0, 0, 1, 1, 's3cret', 1, 1, 'Release on Friday', 7, 0, 1, 1, 0, 0);
INSERT INTO ofMucAffiliation (roomID, jid, affiliation) VALUES (10, 'alice@example.org', 10), (10, 'bob@example.org', 20), (10, 'troll@elsewhere.example', 40);
INSERT INTO ofMucMember (roomID, jid, nickname) VALUES (10, 'carol@example.org', 'caz');
INSERT INTO ofOffline (username, messageID, creationDate, messageSize, stanza) VALUES
 ('bob', 7, '001764500123456', 120, '<message from=\"alice@example.org/desk\" to=\"bob@example.org\" type=\"chat\" id=\"o1\"><body>while you were away</body></message>');",
        b64(&alice.stored_key),
        b64(&alice.server_key),
        b64(&alice.salt),
        b64(&erin.stored_key),
        b64(&erin.server_key),
        b64(&erin.salt),
        b64(&gus.stored_key),
        b64(&gus.server_key),
        b64(&gus.salt),
    );
    of.exec(&rows).await;

    let target = TestDb::new(Kind::Sqlite).await.expect("sqlite");
    let s = target.open().await;
    let opts = ImportOptions::new(vec!["example.org".into()], 4096);
    let report = openfire::import(&of.url, &s, &opts).await.expect("import");
    assert_eq!(report.domain, "example.org");
    assert_eq!(report.admins, vec!["alice@example.org", "ops@example.org"]);
    assert_eq!(
        report.import.imported,
        vec![
            "alice@example.org",
            "bob@example.org",
            "carol@example.org",
            "erin@example.org",
            "gus@example.org"
        ],
        "{report:?}"
    );
    // dave's encrypted password is not one under this key, frank's decrypts to one that
    // SASLprep refuses: neither is imported, and each says why.
    assert_eq!(report.import.failed.len(), 2, "{report:?}");
    assert_eq!(report.import.failed[0].0, "dave@example.org");
    assert_eq!(report.import.failed[1].0, "frank@example.org");
    assert!(report.import.failed[1].1.contains("SASLprep"), "{report:?}");
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("dave@example.org") && n.contains("does not decrypt")));

    let creds = |u: &'static str| {
        let s = s.clone();
        async move {
            s.accounts
                .credentials("example.org", u)
                .await
                .expect("creds")
                .expect("account")
        }
    };
    assert_eq!(creds("alice").await, vec![alice]);
    // With the password, SCRAM-SHA-256 keys too; without a matching one, the keys as kept.
    let e = creds("erin").await;
    assert_eq!(e.len(), 2);
    assert!(e.iter().all(|k| k.verify_password("old password")));
    assert_eq!(creds("gus").await, vec![gus]);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("gus@example.org") && n.contains("does not match")),
        "{report:?}"
    );
    // Decrypted passwords become SCRAM keys for both hashes.
    for (u, pw) in [("bob", "old password"), ("carol", "12345678")] {
        let c = creds(u).await;
        assert_eq!(c.len(), 2, "{u}");
        for k in &c {
            assert!(k.verify_password(pw), "{u} {:?}", k.hash);
        }
    }

    let (_, mut items) = s
        .roster
        .roster("example.org", "alice")
        .await
        .expect("roster");
    items.sort_by(|a, b| a.jid.cmp(&b.jid));
    let bob = &items[0];
    assert_eq!(bob.jid, "bob@example.org");
    assert_eq!(bob.name.as_deref(), Some("Bobby"));
    assert_eq!(bob.subscription, confab_store::Subscription::Both);
    assert_eq!(bob.groups, vec!["Friends", "Team"]);
    let carol = &items[1];
    assert_eq!(carol.jid, "carol@example.org");
    assert!(!carol.in_roster, "a request alone is not a roster item");
    assert!(
        carol
            .pending_in
            .as_deref()
            .is_some_and(|p| p.contains("hi alice")),
        "{carol:?}"
    );
    let eve = &items[2];
    assert_eq!(eve.subscription, confab_store::Subscription::To);
    assert_eq!(eve.groups, vec!["Elsewhere"]);
    let (_, carols) = s
        .roster
        .roster("example.org", "carol")
        .await
        .expect("roster");
    assert!(carols[0].ask, "carol's pending-out request to alice");

    let vcard = s
        .data
        .get_account_data("example.org", "alice", "vcard", "vcard")
        .await
        .expect("vcard")
        .expect("stored");
    assert!(vcard.contains("Alice Openfire"), "{vcard}");
    let offline = s
        .offline
        .offline_messages("example.org", "bob")
        .await
        .expect("offline");
    assert_eq!(offline.len(), 1);
    assert!(offline[0].stanza.contains("while you were away"));
    assert_eq!(offline[0].stamp, 1_764_500_123);

    // The room, as Confab's group chat service stores a persistent room.
    let rooms = s
        .data
        .list_host_data("conference.example.org", "muc")
        .await
        .expect("rooms");
    assert_eq!(rooms.len(), 1, "{rooms:?}");
    assert_eq!(rooms[0].0, "room:team");
    let room: serde_json::Value = serde_json::from_str(&rooms[0].1).expect("json");
    assert_eq!(room["config"]["name"], "The Team");
    assert_eq!(room["config"]["members_only"], true);
    assert_eq!(room["config"]["public"], false);
    assert_eq!(room["config"]["password"], "s3cret");
    assert_eq!(room["config"]["whois_anyone"], true);
    assert_eq!(room["config"]["max_users"], 30);
    assert_eq!(room["subject"]["text"], "Release on Friday");
    assert_eq!(room["affiliations"]["alice@example.org"], "owner");
    assert_eq!(room["affiliations"]["bob@example.org"], "admin");
    assert_eq!(room["affiliations"]["carol@example.org"], "member");
    assert_eq!(room["affiliations"]["troll@elsewhere.example"], "outcast");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("reserved nick 'caz'")),
        "{report:?}"
    );
}

/// A database that cannot be reached, or is not Openfire's, is an error naming it.
#[tokio::test]
async fn a_missing_or_foreign_database_is_a_clear_error() {
    let target = TestDb::new(Kind::Sqlite).await.expect("sqlite");
    let s = target.open().await;
    let opts = ImportOptions::new(vec!["example.org".into()], 4096);
    let err = openfire::import("mysql://root@127.0.0.1:1/openfire", &s, &opts)
        .await
        .expect_err("unreachable");
    assert!(err.why.contains("Openfire's database"), "{}", err.why);
    let Some(of) = OpenfireDb::create().await else {
        return;
    };
    let err = openfire::import(&of.url, &s, &opts)
        .await
        .expect_err("no tables");
    assert!(err.why.contains("ofProperty"), "{}", err.why);
}
