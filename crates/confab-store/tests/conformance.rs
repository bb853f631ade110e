//! The storage conformance suite: every case runs against SQLite always, and against
//! PostgreSQL (127.0.0.1:5432) and MariaDB/MySQL (127.0.0.1:3306) when they are reachable
//! (required with `CONFAB_REQUIRE_SERVICES=1`). Each backend must behave the same.

mod harness;

use confab_proto::sasl::{ScramCredentials, ScramHash};
use confab_store::{
    AccountDataWrite, AccountQuery, AccountSearch, ArchiveQuery, ArchivedMessage, Backend,
    DataStore, RoomMessage, RosterItem, StoreError, Stores, Subscription, WriteBehind,
};
use harness::TestDb;
use std::collections::BTreeSet;

conformance!(
    account_lifecycle_and_persistence,
    a_name_registered_again_is_a_new_generation,
    common_iterations_is_the_most_used_count,
    roster_items_groups_and_versions,
    offline_order_and_quota,
    documents,
    document_batches_and_writing_behind,
    export_listings,
    account_deletion_removes_everything,
    concurrent_roster_writers,
    concurrent_offline_pushes_respect_the_quota,
    deletion_racing_writers_leaves_nothing,
    unicode_outside_the_bmp,
    values_at_their_limits,
    keys_are_case_and_space_sensitive,
    writes_to_a_missing_account_fail,
    corrupt_rows_are_errors,
    database_errors_propagate,
    archive_paging_and_filters,
    archive_id_filters_and_counts,
    archive_stamps_never_decrease,
    archive_expiry,
    archive_per_account_cap,
    archive_batches,
    room_archives,
    room_archive_sweep_uses_the_stamp_index,
    account_pages_and_counts,
    empty_credentials_and_rosters,
);

fn creds(pw: &str) -> Vec<ScramCredentials> {
    [ScramHash::Sha1, ScramHash::Sha256]
        .into_iter()
        .map(|h| ScramCredentials::new_random(h, pw, 4096).expect("creds"))
        .collect()
}

async fn add(s: &Stores, domain: &str, user: &str) {
    let c = vec![ScramCredentials::new_random(ScramHash::Sha256, "pw", 4096).expect("creds")];
    s.accounts
        .create_account(domain, user, &c)
        .await
        .expect("create account");
}

/// Stores with alice and bob on localhost.
async fn with_two(db: &TestDb) -> Stores {
    let s = db.open().await;
    for u in ["alice", "bob"] {
        add(&s, "localhost", u).await;
    }
    s
}

async fn account_lifecycle_and_persistence(db: TestDb) {
    {
        let s = db.open().await;
        let a = &s.accounts;
        assert!(a
            .credentials("localhost", "alice")
            .await
            .expect("query")
            .is_none());
        a.create_account("localhost", "alice", &creds("pw1"))
            .await
            .expect("create");
        assert!(matches!(
            a.create_account("localhost", "alice", &creds("other"))
                .await,
            Err(StoreError::Conflict)
        ));
        // Same name on another domain is a different account.
        a.create_account("example.org", "alice", &creds("pw3"))
            .await
            .expect("create");
        a.create_account("localhost", "bob", &creds("pw2"))
            .await
            .expect("create");
        assert_eq!(
            a.list_accounts("localhost").await.expect("list"),
            vec!["alice", "bob"]
        );
        assert!(a
            .set_credentials("localhost", "alice", &creds("new"))
            .await
            .expect("set"));
        assert!(!a
            .set_credentials("localhost", "nobody", &creds("x"))
            .await
            .expect("set"));
    }
    // Reopen: migrations are idempotent and data survived.
    let s = db.open().await;
    let a = &s.accounts;
    let stored = a
        .credentials("localhost", "alice")
        .await
        .expect("query")
        .expect("exists");
    assert_eq!(stored.len(), 2);
    for c in &stored {
        assert!(c.verify_password("new"));
        assert!(!c.verify_password("pw1"));
        // Only derived keys are stored, never the password.
        assert!(!c.stored_key.windows(3).any(|w| w == b"new"));
    }
    assert!(a
        .delete_account("localhost", "alice")
        .await
        .expect("delete"));
    assert!(!a
        .delete_account("localhost", "alice")
        .await
        .expect("delete twice"));
    assert!(a
        .credentials("localhost", "alice")
        .await
        .expect("query")
        .is_none());
    assert!(a
        .account_exists("example.org", "alice")
        .await
        .expect("exists"));
    // Credentials of a deleted account are gone too, so re-creating starts fresh.
    a.create_account("localhost", "alice", &creds("again"))
        .await
        .expect("recreate");
    let c = a
        .credentials("localhost", "alice")
        .await
        .expect("q")
        .expect("exists");
    assert_eq!(c.len(), 2);
    assert!(c.iter().all(|c| c.verify_password("again")));
}

async fn a_name_registered_again_is_a_new_generation(db: TestDb) {
    let first;
    {
        let s = db.open().await;
        let a = &s.accounts;
        assert_eq!(
            a.account_generation("localhost", "alice").await.expect("q"),
            None
        );
        a.create_account("localhost", "alice", &creds("pw"))
            .await
            .expect("create");
        first = a
            .account_generation("localhost", "alice")
            .await
            .expect("q")
            .expect("exists");
        // Deleting the newest account must not let its number be handed out again.
        assert!(a
            .delete_account("localhost", "alice")
            .await
            .expect("delete"));
    }
    // Also across a restart.
    let s = db.open().await;
    let a = &s.accounts;
    a.create_account("localhost", "alice", &creds("pw"))
        .await
        .expect("create again");
    let second = a
        .account_generation("localhost", "alice")
        .await
        .expect("q")
        .expect("exists");
    assert!(second > first, "{second} after {first}");
}

async fn common_iterations_is_the_most_used_count(db: TestDb) {
    let s = db.open().await;
    let a = &s.accounts;
    assert_eq!(a.common_iterations().await.expect("q"), None);
    let with = |n: u32| {
        [ScramHash::Sha1, ScramHash::Sha256]
            .into_iter()
            .map(|h| ScramCredentials::new_random(h, "pw", n).expect("creds"))
            .collect::<Vec<_>>()
    };
    a.create_account("localhost", "a", &with(4096))
        .await
        .expect("a");
    a.create_account("localhost", "b", &with(5000))
        .await
        .expect("b");
    a.create_account("localhost", "c", &with(5000))
        .await
        .expect("c");
    assert_eq!(a.common_iterations().await.expect("q"), Some(5000));
}

async fn roster_items_groups_and_versions(db: TestDb) {
    let s = with_two(&db).await;
    let r = &s.roster;
    assert_eq!(r.roster_version("localhost", "alice").await.expect("v"), 0);
    let mut item = RosterItem::new("bob@localhost");
    item.name = Some("Bob".into());
    item.groups = vec!["Friends".into(), "Work".into()];
    item.in_roster = true;
    item.ask = true;
    let v1 = r
        .put_roster_item("localhost", "alice", &item)
        .await
        .expect("put");
    assert_eq!(v1, 1);
    item.subscription = Subscription::Both;
    item.ask = false;
    item.approved = true;
    item.groups = vec!["Friends".into()];
    item.pending_in = Some("<presence type='subscribe'/>".into());
    let v2 = r
        .put_roster_item("localhost", "alice", &item)
        .await
        .expect("put");
    assert_eq!(v2, 2);
    let (v, items) = r.roster("localhost", "alice").await.expect("roster");
    assert_eq!(v, 2);
    assert_eq!(items, vec![item.clone()]);
    assert_eq!(
        r.roster_item("localhost", "alice", "bob@localhost")
            .await
            .expect("get"),
        Some(item)
    );
    assert_eq!(
        r.roster_item("localhost", "alice", "nobody@localhost")
            .await
            .expect("get"),
        None
    );
    // The same group twice is one group.
    let mut carol = RosterItem::new("carol@localhost");
    carol.groups = vec!["G".into(), "G".into()];
    assert_eq!(
        r.put_roster_item("localhost", "alice", &carol)
            .await
            .expect("put"),
        3
    );
    assert_eq!(
        r.roster_item("localhost", "alice", "carol@localhost")
            .await
            .expect("get")
            .expect("carol")
            .groups,
        vec!["G"]
    );
    assert_eq!(r.roster("localhost", "bob").await.expect("bob").1, vec![]);
    assert_eq!(
        r.delete_roster_item("localhost", "alice", "bob@localhost")
            .await
            .expect("del"),
        Some(4)
    );
    assert_eq!(
        r.delete_roster_item("localhost", "alice", "bob@localhost")
            .await
            .expect("del"),
        None
    );
    let (v, items) = r.roster("localhost", "alice").await.expect("roster");
    assert_eq!(v, 4);
    assert_eq!(
        items.iter().map(|i| i.jid.as_str()).collect::<Vec<_>>(),
        vec!["carol@localhost"]
    );
    // An item put back after deletion has no stale groups.
    let bob = RosterItem::new("bob@localhost");
    r.put_roster_item("localhost", "alice", &bob)
        .await
        .expect("put");
    assert_eq!(
        r.roster_item("localhost", "alice", "bob@localhost")
            .await
            .expect("get"),
        Some(bob)
    );
}

async fn offline_order_and_quota(db: TestDb) {
    let s = with_two(&db).await;
    let o = &s.offline;
    for i in 0..3 {
        assert!(o
            .push_offline(
                "localhost",
                "bob",
                &format!("<message id='{i}'/>"),
                100 + i,
                3
            )
            .await
            .expect("push"));
    }
    assert!(!o
        .push_offline("localhost", "bob", "<message id='x'/>", 200, 3)
        .await
        .expect("quota"));
    let msgs = o.offline_messages("localhost", "bob").await.expect("list");
    assert_eq!(
        msgs.iter().map(|m| m.stanza.as_str()).collect::<Vec<_>>(),
        vec![
            "<message id='0'/>",
            "<message id='1'/>",
            "<message id='2'/>"
        ]
    );
    assert_eq!(msgs[0].stamp, 100);
    // Paging: after an id, at most `limit`.
    let page = o
        .offline_page("localhost", "bob", msgs[0].id, 1)
        .await
        .expect("page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, msgs[1].id);
    assert!(o
        .offline_page("localhost", "bob", msgs[2].id, 10)
        .await
        .expect("page")
        .is_empty());
    // Another account's queue is its own.
    assert_eq!(o.offline_count("localhost", "alice").await.expect("c"), 0);
    assert_eq!(
        o.delete_offline("localhost", "bob", msgs[1].id)
            .await
            .expect("del"),
        2
    );
    assert_eq!(o.offline_count("localhost", "bob").await.expect("count"), 1);
    // Room again under the quota.
    assert!(o
        .push_offline("localhost", "bob", "<message id='y'/>", 300, 3)
        .await
        .expect("push"));
    let ids: Vec<i64> = o
        .offline_messages("localhost", "bob")
        .await
        .expect("list")
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids[0] < ids[1]);
}

async fn documents(db: TestDb) {
    let s = with_two(&db).await;
    let d = &s.data;
    d.set_account_data("localhost", "alice", "vcard", "", "<vCard/>")
        .await
        .expect("set");
    d.set_account_data(
        "localhost",
        "alice",
        "vcard",
        "",
        "<vCard><FN>A</FN></vCard>",
    )
    .await
    .expect("replace");
    assert_eq!(
        d.get_account_data("localhost", "alice", "vcard", "")
            .await
            .expect("get")
            .as_deref(),
        Some("<vCard><FN>A</FN></vCard>")
    );
    assert_eq!(
        d.get_account_data("localhost", "bob", "vcard", "")
            .await
            .expect("get"),
        None
    );
    d.set_account_data("localhost", "alice", "private", "b:b", "<y/>")
        .await
        .expect("set");
    d.set_account_data("localhost", "alice", "private", "a:b", "<x/>")
        .await
        .expect("set");
    assert_eq!(
        d.list_account_data("localhost", "alice", "private")
            .await
            .expect("list"),
        vec![
            ("a:b".to_string(), "<x/>".to_string()),
            ("b:b".to_string(), "<y/>".to_string())
        ]
    );
    assert!(d
        .delete_account_data("localhost", "alice", "private", "a:b")
        .await
        .expect("del"));
    assert!(!d
        .delete_account_data("localhost", "alice", "private", "a:b")
        .await
        .expect("del"));
    d.set_host_data("localhost", "invite", "tok", "{}")
        .await
        .expect("host");
    d.set_host_data("localhost", "invite", "tok", "{\"n\":1}")
        .await
        .expect("host replace");
    d.set_host_data("example.org", "invite", "tok", "other")
        .await
        .expect("host");
    assert_eq!(
        d.list_host_data("localhost", "invite").await.expect("list"),
        vec![("tok".to_string(), "{\"n\":1}".to_string())]
    );
    assert!(d
        .delete_host_data("localhost", "invite", "tok")
        .await
        .expect("del"));
    assert!(!d
        .delete_host_data("localhost", "invite", "tok")
        .await
        .expect("del"));
    assert_eq!(
        d.get_host_data("example.org", "invite", "tok")
            .await
            .expect("get")
            .as_deref(),
        Some("other")
    );
}

/// What an export walks: every document of an account or domain, the domains holding
/// documents, the rooms with archives.
async fn export_listings(db: TestDb) {
    let s = with_two(&db).await;
    let d = &s.data;
    for (kind, key, value) in [
        ("vcard", "vcard", "<vCard/>"),
        ("blocklist", "b@x", ""),
        ("blocklist", "a@x", ""),
    ] {
        d.set_account_data("localhost", "alice", kind, key, value)
            .await
            .expect("set");
    }
    d.set_account_data(
        "localhost",
        "bob",
        "vcard",
        "vcard",
        "<vCard><FN>B</FN></vCard>",
    )
    .await
    .expect("set");
    let row = |k: &str, key: &str, v: &str| (k.to_string(), key.to_string(), v.to_string());
    assert_eq!(
        d.all_account_data("localhost", "alice").await.expect("all"),
        vec![
            row("blocklist", "a@x", ""),
            row("blocklist", "b@x", ""),
            row("vcard", "vcard", "<vCard/>")
        ]
    );
    assert!(d
        .all_account_data("localhost", "nobody")
        .await
        .expect("all")
        .is_empty());
    assert!(d.host_data_domains().await.expect("domains").is_empty());
    d.set_host_data("localhost", "invite", "t", "1")
        .await
        .expect("host");
    d.set_host_data("conference.localhost", "muc", "room", "{}")
        .await
        .expect("host");
    d.set_host_data("conference.localhost", "muc-keys", "k", "s")
        .await
        .expect("host");
    assert_eq!(
        d.host_data_domains().await.expect("domains"),
        vec!["conference.localhost".to_string(), "localhost".to_string()]
    );
    assert_eq!(
        d.all_host_data("conference.localhost").await.expect("all"),
        vec![row("muc", "room", "{}"), row("muc-keys", "k", "s")]
    );
    assert!(s
        .room_archive
        .room_archives()
        .await
        .expect("rooms")
        .is_empty());
    for (room, id) in [("b", "1"), ("a", "2"), ("b", "3")] {
        s.room_archive
            .append_room_message(
                "conference.localhost",
                room,
                &RoomMessage {
                    id: id.into(),
                    nick: "n".into(),
                    jid: "alice@localhost".into(),
                    stamp: 1,
                    stanza: "<message/>".into(),
                },
            )
            .await
            .expect("append");
    }
    assert_eq!(
        s.room_archive.room_archives().await.expect("rooms"),
        vec![
            ("conference.localhost".to_string(), "a".to_string()),
            ("conference.localhost".to_string(), "b".to_string())
        ]
    );
}

async fn account_deletion_removes_everything(db: TestDb) {
    let s = with_two(&db).await;
    for user in ["alice", "bob"] {
        s.data
            .set_account_data("localhost", user, "vcard", "", "<vCard/>")
            .await
            .expect("set");
        let mut item = RosterItem::new("carol@localhost");
        item.groups = vec!["G".into(), "H".into()];
        s.roster
            .put_roster_item("localhost", user, &item)
            .await
            .expect("roster");
        s.offline
            .push_offline("localhost", user, "<message/>", 1, 10)
            .await
            .expect("offline");
        s.archive
            .append_archive("localhost", user, &archived("a1", "carol@localhost/x", 1))
            .await
            .expect("archive");
    }
    s.data
        .set_host_data("localhost", "invite", "tok", "{}")
        .await
        .expect("host");
    assert!(s
        .accounts
        .delete_account("localhost", "alice")
        .await
        .expect("delete"));
    // Nothing of alice's is left in any table (looked at directly, not through the stores).
    let mut raw = db.raw().await;
    for table in [
        "accounts",
        "account_credentials",
        "account_data",
        "roster_items",
        "roster_groups",
        "roster_versions",
        "offline_messages",
        "archive",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE username = 'alice'"
        )))
        .fetch_one(&mut raw)
        .await
        .expect("count");
        assert_eq!(n, 0, "{table} still holds alice's rows");
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE username = 'bob'"
        )))
        .fetch_one(&mut raw)
        .await
        .expect("count");
        assert!(n > 0, "{table} lost bob's rows");
    }
    // And through the stores: alice starts from nothing when registered again.
    add(&s, "localhost", "alice").await;
    assert_eq!(
        s.roster.roster("localhost", "alice").await.expect("roster"),
        (0, vec![])
    );
    assert_eq!(
        s.offline
            .offline_count("localhost", "alice")
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        s.data
            .get_account_data("localhost", "alice", "vcard", "")
            .await
            .expect("get"),
        None
    );
    // Host data is not an account's.
    assert!(s
        .data
        .get_host_data("localhost", "invite", "tok")
        .await
        .expect("host")
        .is_some());
}

/// Many tasks write one account's roster at once: every write is kept, and each gets its
/// own version number.
async fn concurrent_roster_writers(db: TestDb) {
    let s = with_two(&db).await;
    const WRITERS: usize = 16;
    const EACH: usize = 4;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let s = s.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut versions = Vec::new();
            for i in 0..EACH {
                let mut item = RosterItem::new(&format!("c{w}-{i}@localhost"));
                item.groups = vec![format!("w{w}"), "all".into()];
                item.in_roster = true;
                versions.push(
                    s.roster
                        .put_roster_item("localhost", "alice", &item)
                        .await
                        .expect("put"),
                );
            }
            // Half of the writers also delete their first item again.
            if w % 2 == 0 {
                versions.push(
                    s.roster
                        .delete_roster_item("localhost", "alice", &format!("c{w}-0@localhost"))
                        .await
                        .expect("delete")
                        .expect("was there"),
                );
            }
            versions
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let writes = WRITERS * EACH + WRITERS / 2;
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        distinct,
        (1..=writes as u64).collect(),
        "every write has its own version"
    );
    let (v, items) = s.roster.roster("localhost", "alice").await.expect("roster");
    assert_eq!(v, writes as u64);
    assert_eq!(items.len(), WRITERS * EACH - WRITERS / 2);
    assert!(items.iter().all(|i| i.groups.len() == 2));
    assert_eq!(s.roster.roster("localhost", "bob").await.expect("bob").0, 0);
}

/// Concurrent senders never push an account's queue past its quota, and each accepted
/// message is stored once, in order of acceptance.
async fn concurrent_offline_pushes_respect_the_quota(db: TestDb) {
    let s = with_two(&db).await;
    const SENDERS: usize = 12;
    const EACH: usize = 5;
    const QUOTA: usize = 37;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(SENDERS));
    let mut tasks = Vec::new();
    for t in 0..SENDERS {
        let s = s.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut accepted = 0;
            for i in 0..EACH {
                if s.offline
                    .push_offline(
                        "localhost",
                        "bob",
                        &format!("<message id='{t}-{i}'/>"),
                        i as i64,
                        QUOTA,
                    )
                    .await
                    .expect("push")
                {
                    accepted += 1;
                }
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.expect("task");
    }
    assert_eq!(accepted, QUOTA);
    let msgs = s
        .offline
        .offline_messages("localhost", "bob")
        .await
        .expect("list");
    assert_eq!(msgs.len(), QUOTA);
    assert!(msgs.windows(2).all(|w| w[0].id < w[1].id));
    let distinct: BTreeSet<&str> = msgs.iter().map(|m| m.stanza.as_str()).collect();
    assert_eq!(distinct.len(), QUOTA);
    // Each sender's own messages are in the order it sent them.
    for t in 0..SENDERS {
        let mine: Vec<&str> = msgs
            .iter()
            .map(|m| m.stanza.as_str())
            .filter(|m| m.starts_with(&format!("<message id='{t}-")))
            .collect();
        let mut sorted = mine.clone();
        sorted.sort();
        assert_eq!(mine, sorted);
    }
}

/// Writers racing an account's deletion: whatever they managed before it is deleted with
/// the account, and after it they fail; nothing is left behind.
async fn deletion_racing_writers_leaves_nothing(db: TestDb) {
    let s = with_two(&db).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let item = RosterItem::new(&format!("c{t}-{i}@localhost"));
                match s.roster.put_roster_item("localhost", "alice", &item).await {
                    Ok(_) | Err(StoreError::NoAccount) => {}
                    Err(e) => panic!("roster write failed: {e}"),
                }
                match s
                    .offline
                    .push_offline("localhost", "alice", "<message/>", 1, 1000)
                    .await
                {
                    Ok(_) | Err(StoreError::NoAccount) => {}
                    Err(e) => panic!("offline push failed: {e}"),
                }
                match s
                    .data
                    .set_account_data("localhost", "alice", "k", &format!("{t}-{i}"), "v")
                    .await
                {
                    Ok(_) | Err(StoreError::NoAccount) => {}
                    Err(e) => panic!("data write failed: {e}"),
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(s
        .accounts
        .delete_account("localhost", "alice")
        .await
        .expect("delete"));
    for t in tasks {
        t.await.expect("task");
    }
    let mut raw = db.raw().await;
    for table in [
        "roster_items",
        "roster_groups",
        "roster_versions",
        "offline_messages",
        "account_data",
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE username = 'alice'"
        )))
        .fetch_one(&mut raw)
        .await
        .expect("count");
        assert_eq!(n, 0, "{table} holds rows of a deleted account");
    }
}

async fn unicode_outside_the_bmp(db: TestDb) {
    let s = db.open().await;
    let user = "𝒶𝓁𝒾𝒸𝑒😀";
    let domain = "ex𝔞mple.org";
    add(&s, domain, user).await;
    add(&s, domain, "zed").await;
    let mut accounts = s.accounts.list_accounts(domain).await.expect("list");
    accounts.sort();
    assert_eq!(accounts, vec!["zed".to_string(), user.to_string()]);
    let mut item = RosterItem::new("😀🎉@ex𝔞mple.org");
    item.name = Some("Bob 🐝 𠜎".into());
    item.groups = vec!["👪 Family".into(), "𝄞 Music".into()];
    item.pending_in = Some("<presence><status>🙂</status></presence>".into());
    s.roster
        .put_roster_item(domain, user, &item)
        .await
        .expect("put");
    let (_, items) = s.roster.roster(domain, user).await.expect("roster");
    // Groups come back sorted by their bytes: U+1D11E before U+1F46A.
    item.groups.reverse();
    assert_eq!(items, vec![item.clone()]);
    let body = "<message><body>🚀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𠀋 \u{10FFFD}</body></message>";
    s.offline
        .push_offline(domain, user, body, 1, 10)
        .await
        .expect("push");
    assert_eq!(
        s.offline.offline_messages(domain, user).await.expect("l")[0].stanza,
        body
    );
    s.data
        .set_account_data(domain, user, "vcard", "🔑", "<FN>🦀</FN>")
        .await
        .expect("set");
    assert_eq!(
        s.data
            .get_account_data(domain, user, "vcard", "🔑")
            .await
            .expect("get")
            .as_deref(),
        Some("<FN>🦀</FN>")
    );
    s.data
        .set_host_data(domain, "k😀", "🔑", "🦀")
        .await
        .expect("set");
    assert_eq!(
        s.data.list_host_data(domain, "k😀").await.expect("list"),
        vec![("🔑".to_string(), "🦀".to_string())]
    );
}

/// A string of exactly `bytes` bytes of varied, multi-byte text (varied, so that no
/// database stores it smaller by compressing it).
fn text_of(bytes: usize, seed: u32) -> String {
    let mut out = String::new();
    let mut n = seed;
    loop {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let c = match n % 4 {
            0 => char::from_u32(0x1F600 + (n >> 8) % 64),
            1 => char::from_u32(0x4E00 + (n >> 8) % 2000),
            2 => char::from_u32(0xE0 + (n >> 8) % 30),
            _ => char::from_u32(u32::from(b'a') + (n >> 8) % 26),
        }
        .unwrap_or('x');
        if out.len() + c.len_utf8() > bytes {
            break;
        }
        out.push(c);
    }
    while out.len() < bytes {
        out.push('a');
    }
    out
}

async fn values_at_their_limits(db: TestDb) {
    let s = db.open().await;
    // The longest localpart (1023 bytes) on a short domain, and a long domain.
    let user = text_of(1023, 1);
    assert_eq!(user.len(), 1023);
    add(&s, "localhost", &user).await;
    let long_domain = (0..16)
        .map(|i| format!("{i:x}").repeat(63))
        .collect::<Vec<_>>()
        .join(".")[..1023]
        .to_string();
    add(&s, &long_domain, "alice").await;
    assert_eq!(
        s.accounts.list_accounts(&long_domain).await.expect("list"),
        vec!["alice"]
    );
    assert!(s
        .accounts
        .credentials("localhost", &user)
        .await
        .expect("creds")
        .is_some());
    // A contact whose localpart is 1023 bytes, with a long name and group.
    let contact = format!("{}@localhost", text_of(1023, 2));
    let mut item = RosterItem::new(&contact);
    item.name = Some(text_of(4000, 3));
    item.groups = vec![text_of(255, 4)];
    s.roster
        .put_roster_item("localhost", &user, &item)
        .await
        .expect("put");
    assert_eq!(
        s.roster
            .roster_item("localhost", &user, &contact)
            .await
            .expect("get"),
        Some(item)
    );
    // Large bodies: a stanza and a document of 1 MiB.
    let big = format!("<message><body>{}</body></message>", text_of(1 << 20, 5));
    s.offline
        .push_offline("localhost", &user, &big, i64::MAX, usize::MAX)
        .await
        .expect("push");
    let stored = s
        .offline
        .offline_messages("localhost", &user)
        .await
        .expect("list");
    assert_eq!(stored[0].stanza, big);
    assert_eq!(stored[0].stamp, i64::MAX);
    let photo = text_of(1 << 20, 6);
    s.data
        .set_account_data("localhost", &user, "vcard", "", &photo)
        .await
        .expect("set");
    assert_eq!(
        s.data
            .get_account_data("localhost", &user, "vcard", "")
            .await
            .expect("get"),
        Some(photo)
    );
    // Counters at their limits: the iteration count is a u32.
    let c = vec![ScramCredentials {
        hash: ScramHash::Sha256,
        iterations: u32::MAX,
        salt: vec![0; 64],
        stored_key: vec![0xff; 32],
        server_key: vec![0; 32],
    }];
    s.accounts
        .create_account("localhost", "max", &c)
        .await
        .expect("create");
    let back = s
        .accounts
        .credentials("localhost", "max")
        .await
        .expect("q")
        .expect("exists");
    assert_eq!(back[0].iterations, u32::MAX);
    assert_eq!(back[0].stored_key, vec![0xff; 32]);
    assert!(s
        .accounts
        .delete_account("localhost", &user)
        .await
        .expect("delete"));
}

/// Keys compare byte for byte: case and trailing spaces make different keys (MariaDB's
/// default collations would merge them).
async fn keys_are_case_and_space_sensitive(db: TestDb) {
    let s = db.open().await;
    add(&s, "localhost", "alice").await;
    add(&s, "localhost", "Alice").await;
    add(&s, "localhost", "alice ").await;
    assert!(matches!(
        s.accounts
            .create_account("localhost", "alice", &creds("x"))
            .await,
        Err(StoreError::Conflict)
    ));
    // Byte order, as SQLite sorts.
    assert_eq!(
        s.accounts.list_accounts("localhost").await.expect("list"),
        vec!["Alice", "alice", "alice "]
    );
    let d = &s.data;
    d.set_account_data("localhost", "alice", "k", "Key", "1")
        .await
        .expect("set");
    d.set_account_data("localhost", "alice", "k", "key", "2")
        .await
        .expect("set");
    d.set_account_data("localhost", "alice", "k", "key ", "3")
        .await
        .expect("set");
    assert_eq!(
        d.list_account_data("localhost", "alice", "k")
            .await
            .expect("list")
            .len(),
        3
    );
    assert_eq!(
        d.get_account_data("localhost", "alice", "k", "key")
            .await
            .expect("get")
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        d.get_account_data("localhost", "Alice", "k", "key")
            .await
            .expect("get"),
        None
    );
    let mut item = RosterItem::new("bob@localhost");
    item.groups = vec!["Friends".into(), "Friends ".into(), "friends".into()];
    s.roster
        .put_roster_item("localhost", "alice", &item)
        .await
        .expect("put");
    s.roster
        .put_roster_item("localhost", "alice", &RosterItem::new("Bob@localhost"))
        .await
        .expect("put");
    let (_, items) = s.roster.roster("localhost", "alice").await.expect("roster");
    assert_eq!(items.len(), 2);
    let bob = items
        .iter()
        .find(|i| i.jid == "bob@localhost")
        .expect("bob");
    assert_eq!(bob.groups, vec!["Friends", "Friends ", "friends"]);
    assert!(s
        .accounts
        .delete_account("localhost", "Alice")
        .await
        .expect("delete"));
    assert!(s
        .accounts
        .account_exists("localhost", "alice")
        .await
        .expect("exists"));
    assert!(!s
        .accounts
        .account_exists("localhost", "ALICE")
        .await
        .expect("exists"));
}

async fn writes_to_a_missing_account_fail(db: TestDb) {
    let s = db.open().await;
    assert!(matches!(
        s.roster
            .put_roster_item("localhost", "ghost", &RosterItem::new("a@b"))
            .await,
        Err(StoreError::NoAccount)
    ));
    assert!(matches!(
        s.offline
            .push_offline("localhost", "ghost", "<message/>", 1, 10)
            .await,
        Err(StoreError::NoAccount)
    ));
    assert!(matches!(
        s.data
            .set_account_data("localhost", "ghost", "vcard", "", "<vCard/>")
            .await,
        Err(StoreError::NoAccount)
    ));
    assert!(matches!(
        s.archive
            .append_archive("localhost", "ghost", &archived("x", "a@b", 1))
            .await,
        Err(StoreError::NoAccount)
    ));
    assert_eq!(
        s.roster
            .delete_roster_item("localhost", "ghost", "a@b")
            .await
            .expect("nothing to delete"),
        None
    );
    assert!(!s
        .accounts
        .delete_account("localhost", "ghost")
        .await
        .expect("nothing to delete"));
}

/// Rows no store wrote are reported as corrupt, never read as a default.
async fn corrupt_rows_are_errors(db: TestDb) {
    let s = with_two(&db).await;
    s.roster
        .put_roster_item("localhost", "alice", &RosterItem::new("bob@localhost"))
        .await
        .expect("put");
    db.exec("UPDATE roster_items SET subscription = 'sideways' WHERE username = 'alice'")
        .await;
    assert!(matches!(
        s.roster.roster("localhost", "alice").await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.roster
            .roster_item("localhost", "alice", "bob@localhost")
            .await,
        Err(StoreError::Corrupt(_))
    ));
    db.exec("UPDATE roster_versions SET version = -1 WHERE username = 'alice'")
        .await;
    assert!(matches!(
        s.roster.roster_version("localhost", "alice").await,
        Err(StoreError::Corrupt(_))
    ));
    db.exec("UPDATE account_credentials SET hash = 'MD5' WHERE username = 'bob'")
        .await;
    assert!(matches!(
        s.accounts.credentials("localhost", "bob").await,
        Err(StoreError::Corrupt(_))
    ));
    db.exec("UPDATE account_credentials SET iterations = -5")
        .await;
    assert!(matches!(
        s.accounts.common_iterations().await,
        Err(StoreError::Corrupt(_))
    ));
}

/// A database that fails under the stores gives errors, not empty answers.
async fn database_errors_propagate(db: TestDb) {
    let s = with_two(&db).await;
    s.offline
        .push_offline("localhost", "alice", "<message/>", 1, 10)
        .await
        .expect("push");
    for table in [
        "roster_groups",
        "roster_items",
        "roster_versions",
        "offline_messages",
        "account_data",
        "host_data",
    ] {
        db.exec(&format!("DROP TABLE {table}")).await;
    }
    assert!(matches!(
        s.roster.roster("localhost", "alice").await,
        Err(StoreError::Database(_))
    ));
    assert!(s.roster.roster_version("localhost", "alice").await.is_err());
    assert!(s
        .roster
        .roster_item("localhost", "alice", "bob@localhost")
        .await
        .is_err());
    assert!(s.offline.offline_count("localhost", "alice").await.is_err());
    assert!(s
        .offline
        .offline_page("localhost", "alice", 0, 10)
        .await
        .is_err());
    assert!(s
        .offline
        .push_offline("localhost", "alice", "<message/>", 1, 10)
        .await
        .is_err());
    assert!(s
        .data
        .get_account_data("localhost", "alice", "vcard", "")
        .await
        .is_err());
    assert!(s.data.list_host_data("localhost", "invite").await.is_err());
    // Deleting the account fails as a whole: the account is still there.
    assert!(s
        .accounts
        .delete_account("localhost", "alice")
        .await
        .is_err());
    assert!(s
        .accounts
        .account_exists("localhost", "alice")
        .await
        .expect("exists"));
}

/// A free port on 127.0.0.1 that nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn a_database_that_is_down_is_a_clear_error() {
    for (backend, name) in [
        (
            Backend::Postgres {
                url: format!(
                    "postgres://postgres:secret@127.0.0.1:{}/test",
                    closed_port()
                ),
            },
            "PostgreSQL",
        ),
        (
            Backend::Mysql {
                url: format!("mysql://root:secret@127.0.0.1:{}/test", closed_port()),
            },
            "MySQL/MariaDB",
        ),
    ] {
        let started = std::time::Instant::now();
        let err = match Stores::open(&backend).await {
            Ok(_) => panic!("{name}: opened a closed port"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("cannot connect to {name} at 127.0.0.1:")),
            "{err}"
        );
        assert!(!err.contains("secret"), "the password leaked: {err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(15));
    }
}

#[tokio::test]
async fn a_sqlite_file_that_cannot_be_created_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("write");
    // A path under a regular file.
    let r = Stores::open(&Backend::Sqlite {
        path: file.join("confab.db"),
    })
    .await;
    assert!(r.is_err());
}

fn archived(id: &str, with: &str, stamp: i64) -> ArchivedMessage {
    ArchivedMessage {
        id: id.to_string(),
        with: with.to_string(),
        stamp,
        stanza: format!("<message id='{id}'><body>{id} \u{1F600}</body></message>"),
    }
}

fn ids(page: &confab_store::ArchivePage) -> Vec<&str> {
    page.items.iter().map(|m| m.id.as_str()).collect()
}

async fn archive_paging_and_filters(db: TestDb) {
    let s = with_two(&db).await;
    let a = &s.archive;
    // Ten messages for alice, alternating between carol (two resources) and dave; ids
    // that do not sort like the order, so the order must come from the archive.
    let order = ["k", "b", "x", "a", "m", "c", "z", "d", "q", "e"];
    for (i, id) in order.iter().enumerate() {
        let with = match i % 3 {
            0 => "carol@localhost/phone",
            1 => "carol@localhost/pc",
            _ => "dave@example.org",
        };
        a.append_archive("localhost", "alice", &archived(id, with, 1000 + i as i64))
            .await
            .expect("append");
    }
    // Bob's archive is his own.
    a.append_archive("localhost", "bob", &archived("bobs", "alice@localhost", 1))
        .await
        .expect("append");
    let q = |f: fn(&mut ArchiveQuery)| {
        let mut q = ArchiveQuery {
            max: 4,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    let page = |q: ArchiveQuery| {
        let a = a.clone();
        async move {
            a.query_archive("localhost", "alice", &q)
                .await
                .expect("query")
                .expect("known ids")
        }
    };
    // Forwards from the start.
    let p = page(q(|_| {})).await;
    assert_eq!(ids(&p), ["k", "b", "x", "a"]);
    assert!(!p.complete);
    assert_eq!(p.items[0].with, "carol@localhost/phone");
    assert_eq!(p.items[0].stamp, 1000);
    assert!(p.items[0].stanza.contains('\u{1F600}'));
    let p = page(q(|q| q.after = Some("a".into()))).await;
    assert_eq!(ids(&p), ["m", "c", "z", "d"]);
    assert!(!p.complete);
    let p = page(q(|q| q.after = Some("d".into()))).await;
    assert_eq!(ids(&p), ["q", "e"]);
    assert!(p.complete);
    // Backwards from the end (an empty `<before/>`), then before the first of that page.
    let p = page(q(|q| q.before = Some(String::new()))).await;
    assert_eq!(ids(&p), ["z", "d", "q", "e"]);
    assert!(!p.complete);
    let p = page(q(|q| q.before = Some("z".into()))).await;
    assert_eq!(ids(&p), ["x", "a", "m", "c"]);
    assert!(!p.complete);
    let p = page(q(|q| q.before = Some("x".into()))).await;
    assert_eq!(ids(&p), ["k", "b"]);
    assert!(p.complete);
    // Both bounds: what lies between.
    let p = page(q(|q| {
        q.after = Some("b".into());
        q.before = Some("c".into())
    }))
    .await;
    assert_eq!(ids(&p), ["x", "a", "m"]);
    assert!(p.complete);
    // A bare `with` matches every resource, a full one only itself.
    let p = page(q(|q| {
        q.with = Some("carol@localhost".into());
        q.max = 100
    }))
    .await;
    assert_eq!(ids(&p), ["k", "b", "a", "m", "z", "d", "e"]);
    let p = page(q(|q| {
        q.with = Some("carol@localhost/pc".into());
        q.max = 100
    }))
    .await;
    assert_eq!(ids(&p), ["b", "m", "d"]);
    let p = page(q(|q| {
        q.with = Some("dave@example.org".into());
        q.before = Some(String::new());
        q.max = 2
    }))
    .await;
    assert_eq!(ids(&p), ["c", "q"]);
    assert!(!p.complete);
    // Time: start and end are inclusive.
    let p = page(q(|q| {
        q.start = Some(1003);
        q.end = Some(1005);
    }))
    .await;
    assert_eq!(ids(&p), ["a", "m", "c"]);
    assert!(p.complete);
    // The page size is capped.
    let p = page(q(|q| q.max = 100_000)).await;
    assert_eq!(p.items.len(), 10);
    assert!(p.complete);
    let p = page(q(|q| q.max = 0)).await;
    assert!(p.items.is_empty());
    assert!(!p.complete);
    // Unknown ids, and another account's ids, are not found.
    for bad in ["nope", "bobs"] {
        let mut q = q(|_| {});
        q.after = Some(bad.into());
        assert_eq!(
            a.query_archive("localhost", "alice", &q)
                .await
                .expect("query"),
            None
        );
        let mut q2 = ArchiveQuery {
            max: 4,
            ..Default::default()
        };
        q2.before = Some(bad.into());
        assert_eq!(
            a.query_archive("localhost", "alice", &q2)
                .await
                .expect("query"),
            None
        );
    }
    // Deleting one archive leaves the other.
    assert_eq!(
        a.delete_archive("localhost", "alice")
            .await
            .expect("delete"),
        10
    );
    assert!(page(q(|_| {})).await.items.is_empty());
    let bob = a
        .query_archive("localhost", "bob", &q(|_| {}))
        .await
        .expect("query")
        .expect("page");
    assert_eq!(ids(&bob), ["bobs"]);
}

async fn archive_expiry(db: TestDb) {
    let s = with_two(&db).await;
    for (i, user) in ["alice", "bob", "alice", "bob", "alice"].iter().enumerate() {
        s.archive
            .append_archive(
                "localhost",
                user,
                &archived(&format!("m{i}"), "c@d", i as i64),
            )
            .await
            .expect("append");
    }
    // Older than 4: four messages, in batches of at most three.
    assert_eq!(s.archive.expire_archive(4, 3).await.expect("expire"), 3);
    assert_eq!(s.archive.expire_archive(4, 3).await.expect("expire"), 1);
    assert_eq!(s.archive.expire_archive(4, 3).await.expect("expire"), 0);
    let all = ArchiveQuery {
        max: 100,
        ..Default::default()
    };
    let p = s
        .archive
        .query_archive("localhost", "alice", &all)
        .await
        .expect("query")
        .expect("page");
    assert_eq!(ids(&p), ["m4"]);
}

/// Alice's archive of `order` (stamps 1000, 1001, …); returns the stores.
async fn alice_archive(db: &TestDb, order: &[&str]) -> Stores {
    let s = with_two(db).await;
    for (i, id) in order.iter().enumerate() {
        let with = if i % 2 == 0 {
            "carol@localhost/phone"
        } else {
            "dave@example.org"
        };
        s.archive
            .append_archive("localhost", "alice", &archived(id, with, 1000 + i as i64))
            .await
            .expect("append");
    }
    s
}

async fn archive_id_filters_and_counts(db: TestDb) {
    let order = ["k", "b", "x", "a", "m", "c", "z", "d", "q", "e"];
    let s = alice_archive(&db, &order).await;
    let a = &s.archive;
    let query = |q: ArchiveQuery| {
        let a = a.clone();
        async move {
            a.query_archive("localhost", "alice", &q)
                .await
                .expect("query")
        }
    };
    let q = |f: fn(&mut ArchiveQuery)| {
        let mut q = ArchiveQuery {
            max: 3,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    // after-id and before-id bound the range; the page is its oldest part.
    let p = query(q(|q| {
        q.after_id = Some("b".into());
        q.before_id = Some("q".into());
    }))
    .await
    .expect("page");
    assert_eq!(ids(&p), ["x", "a", "m"]);
    assert!(!p.complete);
    // RSM pages within it, forwards and backwards.
    let p = query(q(|q| {
        q.after_id = Some("b".into());
        q.before_id = Some("q".into());
        q.after = Some("m".into());
    }))
    .await
    .expect("page");
    assert_eq!(ids(&p), ["c", "z", "d"]);
    assert!(p.complete);
    let p = query(q(|q| {
        q.after_id = Some("b".into());
        q.before_id = Some("q".into());
        q.before = Some(String::new());
        q.count = true;
    }))
    .await
    .expect("page");
    assert_eq!(ids(&p), ["c", "z", "d"]);
    assert!(!p.complete);
    // The range holds x a m c z d: six, and the page starts at the fourth.
    assert_eq!(p.count, Some(6));
    assert_eq!(p.first_index, Some(3));
    // ids: exactly those, in archive order, with the other filters still applying.
    let p = query(q(|q| {
        q.ids = vec!["e".into(), "k".into(), "a".into()];
        q.max = 10;
    }))
    .await
    .expect("page");
    assert_eq!(ids(&p), ["k", "a", "e"]);
    assert!(p.complete);
    let p = query(q(|q| {
        q.ids = vec!["e".into(), "k".into(), "a".into()];
        q.with = Some("dave@example.org".into());
        q.count = true;
    }))
    .await
    .expect("page");
    assert_eq!(ids(&p), ["a", "e"]);
    assert_eq!(p.count, Some(2));
    assert_eq!(p.first_index, Some(0));
    // Counting everything; no count unless asked.
    let p = query(q(|q| q.count = true)).await.expect("page");
    assert_eq!((p.count, p.first_index), (Some(10), Some(0)));
    let p = query(q(|q| {
        q.after = Some("x".into());
        q.count = true;
    }))
    .await
    .expect("page");
    assert_eq!(ids(&p), ["a", "m", "c"]);
    assert_eq!((p.count, p.first_index), (Some(10), Some(3)));
    assert_eq!(query(q(|_| {})).await.expect("page").count, None);
    // Time bounds as ids: start in the middle, end before it, a start past the newest.
    let p = query(q(|q| {
        q.start = Some(1006);
        q.count = true;
    }))
    .await
    .expect("page");
    assert_eq!(ids(&p), ["z", "d", "q"]);
    assert_eq!(p.count, Some(4));
    let p = query(q(|q| {
        q.start = Some(1006);
        q.end = Some(1005);
    }))
    .await
    .expect("page");
    assert!(p.items.is_empty() && p.complete);
    let p = query(q(|q| {
        q.start = Some(5000);
        q.count = true;
    }))
    .await
    .expect("page");
    assert!(p.items.is_empty() && p.complete);
    assert_eq!(p.count, Some(0));
    let p = query(q(|q| {
        q.end = Some(999);
    }))
    .await
    .expect("page");
    assert!(p.items.is_empty() && p.complete);
    // Any unknown id is item-not-found: in after-id, before-id or ids.
    for f in [
        (|q: &mut ArchiveQuery| q.after_id = Some("nope".into())) as fn(&mut ArchiveQuery),
        |q| q.before_id = Some("nope".into()),
        |q| q.ids = vec!["k".into(), "nope".into()],
    ] {
        assert_eq!(query(q(f)).await, None);
    }
}

async fn archive_stamps_never_decrease(db: TestDb) {
    let s = with_two(&db).await;
    // A stamp older than the newest one (a clock stepping back) is raised to it, so
    // the time filters, which rely on order, still find every message.
    for (id, stamp) in [("a", 100), ("b", 300), ("c", 200), ("d", 400)] {
        s.archive
            .append_archive("localhost", "alice", &archived(id, "x@y", stamp))
            .await
            .expect("append");
    }
    let all = ArchiveQuery {
        max: 10,
        ..Default::default()
    };
    let p = s
        .archive
        .query_archive("localhost", "alice", &all)
        .await
        .expect("query")
        .expect("page");
    let stamps: Vec<i64> = p.items.iter().map(|m| m.stamp).collect();
    assert_eq!(stamps, [100, 300, 300, 400]);
    let from = ArchiveQuery {
        start: Some(250),
        ..all.clone()
    };
    let p = s
        .archive
        .query_archive("localhost", "alice", &from)
        .await
        .expect("query")
        .expect("page");
    assert_eq!(ids(&p), ["b", "c", "d"]);
}

async fn archive_per_account_cap(db: TestDb) {
    let order: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = order.iter().map(String::as_str).collect();
    let s = alice_archive(&db, &refs).await;
    s.archive
        .append_archive("localhost", "bob", &archived("bobs", "x@y", 1))
        .await
        .expect("append");
    // Keep the newest four, deleting at most four per call.
    assert_eq!(
        s.archive
            .trim_archive("localhost", "alice", 4, 4)
            .await
            .expect("trim"),
        4
    );
    assert_eq!(
        s.archive
            .trim_archive("localhost", "alice", 4, 4)
            .await
            .expect("trim"),
        2
    );
    assert_eq!(
        s.archive
            .trim_archive("localhost", "alice", 4, 4)
            .await
            .expect("trim"),
        0
    );
    let all = ArchiveQuery {
        max: 100,
        ..Default::default()
    };
    let p = s
        .archive
        .query_archive("localhost", "alice", &all)
        .await
        .expect("query")
        .expect("page");
    assert_eq!(ids(&p), ["m6", "m7", "m8", "m9"]);
    // Nobody else's archive is touched; keeping zero empties it.
    assert_eq!(
        s.archive
            .trim_archive("localhost", "bob", 1, 10)
            .await
            .expect("trim"),
        0
    );
    assert_eq!(
        s.archive
            .trim_archive("localhost", "bob", 0, 10)
            .await
            .expect("trim"),
        1
    );
}

/// The room archive's retention sweep (`expire_room_archives`: the statement
/// `expire_rows` builds for the table, oldest stamp first) finds its rows through the
/// `room_archive_by_stamp` index on every backend, as each one's query plan says, rather
/// than reading the whole table every hour.
async fn room_archive_sweep_uses_the_stamp_index(db: TestDb) {
    use sqlx::{Connection, Row};
    let s = db.open().await;
    // Enough rows in enough rooms that a planner would rather not read them all.
    let rows: Vec<String> = (0..2000)
        .map(|i| {
            format!(
                "('conference.localhost', 'room{}', 'sid{i}', 'nick', 'u@localhost', {}, '<message/>')",
                i % 50,
                1000 + i
            )
        })
        .collect();
    db.exec(&format!(
        "INSERT INTO room_archive (service, room, sid, nick, jid, stamp, stanza) VALUES {}",
        rows.join(", ")
    ))
    .await;
    let (analyze, explain, sweep) = match db.kind {
        harness::Kind::Sqlite => (
            "ANALYZE",
            "EXPLAIN QUERY PLAN",
            "DELETE FROM room_archive WHERE id IN \
             (SELECT id FROM room_archive WHERE stamp < 1010 ORDER BY stamp LIMIT 1000)",
        ),
        harness::Kind::Postgres => (
            "ANALYZE room_archive",
            "EXPLAIN",
            "DELETE FROM room_archive WHERE id IN \
             (SELECT id FROM room_archive WHERE stamp < 1010 ORDER BY stamp LIMIT 1000)",
        ),
        harness::Kind::Mysql => (
            "ANALYZE TABLE room_archive",
            "EXPLAIN",
            "DELETE FROM room_archive WHERE stamp < 1010 ORDER BY stamp LIMIT 1000",
        ),
    };
    db.exec(analyze).await;
    let mut conn = db.raw().await;
    let plan: Vec<String> = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{explain} {sweep}")))
        .fetch_all(&mut conn)
        .await
        .expect("explain")
        .iter()
        .flat_map(|r| {
            (0..r.len())
                .filter_map(|i| r.try_get::<Option<String>, _>(i).ok().flatten())
                .collect::<Vec<_>>()
        })
        .collect();
    let _ = conn.close().await;
    assert!(
        plan.iter().any(|l| l.contains("room_archive_by_stamp")),
        "{:?}: {plan:#?}",
        db.kind
    );
    // And the sweep itself deletes what the plan was for.
    assert_eq!(
        s.room_archive
            .expire_room_archives(1010, 1000)
            .await
            .expect("expire"),
        10
    );
}

fn room_message(id: &str, nick: &str, stamp: i64) -> RoomMessage {
    RoomMessage {
        id: id.to_string(),
        nick: nick.to_string(),
        jid: format!("{nick}@localhost"),
        stamp,
        stanza: format!(
            "<message id='{id}' type='groupchat'><body>{id} \u{1F600}</body></message>"
        ),
    }
}

async fn room_archives(db: TestDb) {
    let s = db.open().await;
    let a = &s.room_archive;
    const MUC: &str = "conference.localhost";
    let order = ["k", "b", "x", "a", "m", "c"];
    for (i, id) in order.iter().enumerate() {
        let nick = if i % 2 == 0 { "Alice" } else { "alice" };
        a.append_room_message(MUC, "lounge", &room_message(id, nick, 1000 + i as i64))
            .await
            .expect("append");
    }
    // Another room, and a room of the same name on another service, are apart; the same
    // ids may be used there.
    for (svc, room) in [(MUC, "other"), ("conference.example.org", "lounge")] {
        a.append_room_message(svc, room, &room_message("k", "zed", 1))
            .await
            .expect("append");
    }
    let page = |q: ArchiveQuery| {
        let a = a.clone();
        async move {
            a.query_room_archive(MUC, "lounge", &q)
                .await
                .expect("query")
                .expect("known ids")
        }
    };
    let ids = |p: &confab_store::ArchivePage<RoomMessage>| -> Vec<String> {
        p.items.iter().map(|m| m.id.clone()).collect()
    };
    let q = |max: usize| ArchiveQuery {
        max,
        ..Default::default()
    };
    let p = page(q(4)).await;
    assert_eq!(ids(&p), ["k", "b", "x", "a"]);
    assert!(!p.complete);
    assert_eq!(p.items[0].nick, "Alice");
    assert_eq!(p.items[0].jid, "Alice@localhost");
    assert_eq!(p.items[0].stamp, 1000);
    assert!(p.items[0].stanza.contains('\u{1F600}'));
    let p = page(ArchiveQuery {
        after: Some("a".into()),
        ..q(4)
    })
    .await;
    assert_eq!(ids(&p), ["m", "c"]);
    assert!(p.complete);
    let p = page(ArchiveQuery {
        before: Some(String::new()),
        ..q(4)
    })
    .await;
    assert_eq!(ids(&p), ["x", "a", "m", "c"]);
    assert!(!p.complete);
    let p = page(ArchiveQuery {
        before: Some("x".into()),
        ..q(4)
    })
    .await;
    assert_eq!(ids(&p), ["k", "b"]);
    assert!(p.complete);
    // `with` is a nick, compared exactly.
    let p = page(ArchiveQuery {
        with: Some("alice".into()),
        ..q(100)
    })
    .await;
    assert_eq!(ids(&p), ["b", "a", "c"]);
    // `sender` is the real bare JID, compared exactly too; with a nick, both must match.
    let p = page(ArchiveQuery {
        sender: Some("alice@localhost".into()),
        ..q(100)
    })
    .await;
    assert_eq!(ids(&p), ["b", "a", "c"]);
    let p = page(ArchiveQuery {
        sender: Some("Alice@localhost".into()),
        with: Some("alice".into()),
        ..q(100)
    })
    .await;
    assert!(p.items.is_empty());
    let p = page(ArchiveQuery {
        start: Some(1002),
        end: Some(1003),
        ..q(100)
    })
    .await;
    assert_eq!(ids(&p), ["x", "a"]);
    // Ids of another room are unknown here.
    let r = a
        .query_room_archive(
            MUC,
            "other",
            &ArchiveQuery {
                after: Some("b".into()),
                ..q(4)
            },
        )
        .await
        .expect("query");
    assert_eq!(r, None);
    // One message looked up and replaced (a tombstone); unknown ids change nothing.
    let m = a.room_message(MUC, "lounge", "x").await.expect("get");
    assert_eq!(m.map(|m| m.nick), Some("Alice".to_string()));
    assert_eq!(
        a.room_message(MUC, "lounge", "nope").await.expect("get"),
        None
    );
    assert!(a
        .replace_room_message(MUC, "lounge", "x", "<message id='x'/>")
        .await
        .expect("replace"));
    // The same stanza again still finds the message.
    assert!(a
        .replace_room_message(MUC, "lounge", "x", "<message id='x'/>")
        .await
        .expect("replace"));
    assert!(!a
        .replace_room_message(MUC, "lounge", "nope", "<message/>")
        .await
        .expect("replace"));
    assert!(!a
        .replace_room_message(MUC, "other", "x", "<message/>")
        .await
        .expect("replace"));
    let p = page(q(100)).await;
    assert_eq!(ids(&p), order);
    assert_eq!(p.items[2].stanza, "<message id='x'/>");
    assert_eq!(p.items[2].nick, "Alice");
    // Retention: what is older than the cut goes, from every room, in bounded batches.
    assert_eq!(a.expire_room_archives(1002, 1).await.expect("expire"), 1);
    assert_eq!(a.expire_room_archives(1002, 100).await.expect("expire"), 3);
    assert_eq!(a.expire_room_archives(1002, 100).await.expect("expire"), 0);
    assert_eq!(ids(&page(q(100)).await), ["x", "a", "m", "c"]);
    for (svc, room) in [(MUC, "other"), ("conference.example.org", "lounge")] {
        a.append_room_message(svc, room, &room_message("k", "zed", 1))
            .await
            .expect("append");
    }
    // Deleting a room's archive leaves the others.
    assert_eq!(
        a.delete_room_archive(MUC, "lounge").await.expect("delete"),
        4
    );
    assert!(page(q(100)).await.items.is_empty());
    for (svc, room) in [(MUC, "other"), ("conference.example.org", "lounge")] {
        let p = a
            .query_room_archive(svc, room, &q(10))
            .await
            .expect("query")
            .expect("page");
        assert_eq!(ids(&p), ["k"]);
    }
}

async fn archive_batches(db: TestDb) {
    let s = with_two(&db).await;
    s.archive
        .append_archive("localhost", "alice", &archived("first", "x@y", 500))
        .await
        .expect("append");
    // More than one INSERT's worth, stamps partly older than what is stored.
    let batch: Vec<ArchivedMessage> = (0..1203)
        .map(|i| archived(&format!("b{i}"), "carol@localhost/x", 400 + i as i64))
        .collect();
    s.archive
        .append_archive_batch("localhost", "alice", &batch)
        .await
        .expect("batch");
    let q = ArchiveQuery {
        max: 100,
        before: Some(String::new()),
        count: true,
        ..Default::default()
    };
    let p = s
        .archive
        .query_archive("localhost", "alice", &q)
        .await
        .expect("query")
        .expect("page");
    assert_eq!(p.count, Some(1204));
    assert_eq!(p.items.last().map(|m| m.id.as_str()), Some("b1202"));
    // In order, stamps raised to the newest before them.
    let all = ArchiveQuery {
        max: 3,
        ..Default::default()
    };
    let p = s
        .archive
        .query_archive("localhost", "alice", &all)
        .await
        .expect("query")
        .expect("page");
    assert_eq!(ids(&p), ["first", "b0", "b1"]);
    let stamps: Vec<i64> = p.items.iter().map(|m| m.stamp).collect();
    assert_eq!(stamps, [500, 500, 500]);
    // Statistics can be refreshed on every backend after an import.
    s.archive
        .refresh_archive_statistics()
        .await
        .expect("analyze");
    // Several accounts in one call, interleaved: each keeps its order; a missing account's
    // rows are left out, the others written.
    let rows: Vec<(String, String, ArchivedMessage)> = (0..9)
        .map(|i| {
            let user = ["bob", "ghost", "alice"][i % 3];
            (
                "localhost".to_string(),
                user.to_string(),
                archived(&format!("x{i}"), "dave@localhost", 10_000 + i as i64),
            )
        })
        .collect();
    assert_eq!(s.archive.append_archive_many(&rows).await.expect("many"), 6);
    let bobs = s
        .archive
        .query_archive("localhost", "bob", &all)
        .await
        .expect("query")
        .expect("page");
    assert_eq!(ids(&bobs), ["x0", "x3", "x6"]);
    let last = ArchiveQuery {
        max: 3,
        before: Some(String::new()),
        ..Default::default()
    };
    let alices = s
        .archive
        .query_archive("localhost", "alice", &last)
        .await
        .expect("query")
        .expect("page");
    assert_eq!(ids(&alices), ["x2", "x5", "x8"]);
    // A batch for a missing account writes nothing.
    assert!(matches!(
        s.archive
            .append_archive_batch("localhost", "ghost", &batch[..2])
            .await,
        Err(StoreError::NoAccount)
    ));
}

fn doc(user: &str, key: &str, value: &str) -> AccountDataWrite {
    AccountDataWrite {
        domain: "localhost".into(),
        username: user.into(),
        kind: "last".into(),
        key: key.into(),
        value: value.into(),
    }
}

/// A batch is written whole, skipping accounts that do not exist; documents written behind
/// are read at once, reach the database only when flushed, never overwrite a newer direct
/// write, and past the bound are written at once.
async fn document_batches_and_writing_behind(db: TestDb) {
    let s = with_two(&db).await;
    let d = &s.data;
    let n = d
        .set_account_data_batch(&[
            doc("alice", "a", "1"),
            doc("nobody", "a", "x"),
            doc("bob", "a", "2"),
        ])
        .await
        .expect("batch");
    assert_eq!(n, 2);
    assert_eq!(
        d.get_account_data("localhost", "bob", "last", "a")
            .await
            .expect("get"),
        Some("2".into())
    );
    assert_eq!(
        d.get_account_data("localhost", "nobody", "last", "a")
            .await
            .expect("get"),
        None
    );

    // An interval long enough that only `flush` writes.
    let wb = WriteBehind::new(s.data.clone(), std::time::Duration::from_secs(3600), 3);
    wb.set_account_data_lazily("localhost", "alice", "last", "logout", "t1")
        .await
        .expect("held");
    wb.set_account_data_lazily("localhost", "alice", "last", "logout", "t2")
        .await
        .expect("held");
    wb.set_account_data_lazily("localhost", "bob", "last", "logout", "held")
        .await
        .expect("held");
    assert_eq!(
        wb.pending(),
        2,
        "a newer write of a document replaces the held one"
    );
    let get = |u: &'static str| {
        let d = s.data.clone();
        async move {
            d.get_account_data("localhost", u, "last", "logout")
                .await
                .expect("get")
        }
    };
    assert_eq!(
        get("alice").await,
        None,
        "held back, not in the database yet"
    );
    assert_eq!(
        wb.get_account_data("localhost", "alice", "last", "logout")
            .await
            .expect("get"),
        Some("t2".into()),
        "but read at once"
    );
    assert_eq!(
        wb.list_account_data("localhost", "alice", "last")
            .await
            .expect("list"),
        vec![
            ("a".to_string(), "1".to_string()),
            ("logout".into(), "t2".into())
        ]
    );
    assert!(wb
        .all_account_data("localhost", "alice")
        .await
        .expect("all")
        .contains(&("last".into(), "logout".into(), "t2".into())));
    // A direct write wins over what is held.
    wb.set_account_data("localhost", "bob", "last", "logout", "direct")
        .await
        .expect("direct");
    // Past the bound (3 held at most): written at once.
    wb.set_account_data_lazily("localhost", "alice", "last", "k1", "v1")
        .await
        .expect("held");
    wb.set_account_data_lazily("localhost", "alice", "last", "k2", "v2")
        .await
        .expect("held");
    wb.set_account_data_lazily("localhost", "alice", "last", "k3", "v3")
        .await
        .expect("through");
    assert_eq!(wb.pending(), 3);
    assert_eq!(
        d.get_account_data("localhost", "alice", "last", "k3")
            .await
            .expect("get"),
        Some("v3".into())
    );
    // A deletion removes what is held too.
    assert!(wb
        .delete_account_data("localhost", "alice", "last", "k2")
        .await
        .expect("delete"));
    // A deleted (or newly created) account's held documents are dropped.
    wb.set_account_data_lazily("localhost", "bob", "last", "gone", "old owner's")
        .await
        .expect("held");
    wb.forget_held("localhost", "bob");
    assert_eq!(
        wb.get_account_data("localhost", "bob", "last", "gone")
            .await
            .expect("get"),
        None
    );
    wb.flush().await.expect("flush");
    assert_eq!(wb.pending(), 0);
    assert_eq!(
        d.get_account_data("localhost", "bob", "last", "gone")
            .await
            .expect("get"),
        None
    );
    assert_eq!(get("alice").await, Some("t2".into()));
    assert_eq!(get("bob").await, Some("direct".into()));
    assert_eq!(
        d.get_account_data("localhost", "alice", "last", "k2")
            .await
            .expect("get"),
        None
    );
    assert_eq!(
        d.get_account_data("localhost", "alice", "last", "k1")
            .await
            .expect("get"),
        Some("v1".into())
    );
}

/// The paged, searchable account listing: sorted pages by offset, counts, search by
/// substring and by suffix, LIKE's own characters taken literally, one domain only.
async fn account_pages_and_counts(db: TestDb) {
    let s = db.open().await;
    let a = &s.accounts;
    let names = [
        "alice", "bob", "carol", "dave", "mal%lory", "o_scar", "oxscar", "x!y", "zoë", "𝔞lice",
    ];
    for n in names {
        add(&s, "localhost", n).await;
    }
    add(&s, "example.org", "alice").await;
    let page = |search: Option<AccountSearch>, offset, limit| AccountQuery {
        search,
        offset,
        limit,
    };
    assert_eq!(
        a.count_accounts("localhost", None).await.expect("count"),
        10
    );
    assert_eq!(
        a.count_accounts("example.org", None).await.expect("count"),
        1
    );
    assert_eq!(a.count_accounts("nowhere", None).await.expect("count"), 0);
    // Pages in username order (byte order: "zoë" before "𝔞lice"), each once.
    let mut all = Vec::new();
    for p in 0..4 {
        let got = a
            .account_page("localhost", &page(None, p * 3, 3))
            .await
            .expect("page");
        assert!(got.len() <= 3);
        all.extend(got);
    }
    let mut sorted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sorted.sort();
    assert_eq!(all, sorted);
    assert!(a
        .account_page("localhost", &page(None, 10, 3))
        .await
        .expect("past the end")
        .is_empty());
    assert!(a
        .account_page("localhost", &page(None, u64::MAX, 3))
        .await
        .expect("far past the end")
        .is_empty());
    // Search: a substring, with %, _ and ! meaning themselves.
    let search = |t: &str| Some(AccountSearch::Contains(t.into()));
    let got = a
        .account_page("localhost", &page(search("lic"), 0, 10))
        .await
        .expect("search");
    assert_eq!(got, ["alice", "𝔞lice"]);
    assert_eq!(
        a.count_accounts("localhost", search("lic").as_ref())
            .await
            .expect("count"),
        2
    );
    for (t, want) in [
        ("l%l", vec!["mal%lory"]),
        ("o_s", vec!["o_scar"]),
        ("x!", vec!["x!y"]),
        ("%", vec!["mal%lory"]),
        ("_", vec!["o_scar"]),
    ] {
        assert_eq!(
            a.account_page("localhost", &page(search(t), 0, 10))
                .await
                .expect("search"),
            want,
            "{t}"
        );
    }
    assert!(
        a.account_page("localhost", &page(search("ALICE"), 0, 10))
            .await
            .expect("search")
            .is_empty(),
        "usernames are stored case-folded; the caller folds the search"
    );
    let ends = Some(AccountSearch::EndsWith("ar".into()));
    assert_eq!(
        a.account_page("localhost", &page(ends.clone(), 0, 10))
            .await
            .expect("suffix"),
        ["o_scar", "oxscar"]
    );
    assert_eq!(
        a.account_page("localhost", &page(ends.clone(), 1, 10))
            .await
            .expect("suffix, second"),
        ["oxscar"]
    );
    assert_eq!(
        a.count_accounts("localhost", ends.as_ref())
            .await
            .expect("count"),
        2
    );
    assert_eq!(
        a.account_page("example.org", &page(search("a"), 0, 10))
            .await
            .expect("other domain"),
        ["alice"]
    );
}

/// The cases the login path reads in one statement: an account without keys is still an
/// account (`Some` of nothing, never `None`), a missing one is `None`; a roster never written
/// is empty at version 0, and one emptied again keeps its version.
async fn empty_credentials_and_rosters(db: TestDb) {
    let s = db.open().await;
    s.accounts
        .create_account("localhost", "keyless", &[])
        .await
        .expect("create");
    assert_eq!(
        s.accounts
            .credentials("localhost", "keyless")
            .await
            .expect("query"),
        Some(Vec::new())
    );
    assert_eq!(
        s.accounts
            .credentials("localhost", "nobody")
            .await
            .expect("query"),
        None
    );
    add(&s, "localhost", "alice").await;
    let stored = s
        .accounts
        .credentials("localhost", "alice")
        .await
        .expect("query")
        .expect("exists");
    assert_eq!(stored.len(), 1);
    assert!(stored[0].verify_password("pw"));
    let r = &s.roster;
    assert_eq!(
        r.roster("localhost", "alice").await.expect("roster"),
        (0, Vec::new())
    );
    assert_eq!(
        r.roster("localhost", "nobody").await.expect("roster"),
        (0, Vec::new())
    );
    let item = RosterItem::new("bob@localhost");
    r.put_roster_item("localhost", "alice", &item)
        .await
        .expect("put");
    assert_eq!(
        r.roster("localhost", "alice").await.expect("roster"),
        (1, vec![item])
    );
    r.delete_roster_item("localhost", "alice", "bob@localhost")
        .await
        .expect("delete");
    assert_eq!(
        r.roster("localhost", "alice").await.expect("roster"),
        (2, Vec::new())
    );
}
