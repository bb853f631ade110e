//! Roster, offline and document stores against SQLite: versions, ordering, quotas, and that
//! deleting an account removes all of its data.

use confab_proto::sasl::{ScramCredentials, ScramHash};
use confab_store::{Backend, RosterItem, Stores, Subscription};

async fn open() -> (tempfile::TempDir, Stores) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Stores::open(&Backend::Sqlite {
        path: dir.path().join("db"),
    })
    .await
    .expect("open");
    for u in ["alice", "bob"] {
        let c = vec![ScramCredentials::new_random(ScramHash::Sha256, "pw", 4096).expect("creds")];
        s.accounts
            .create_account("localhost", u, &c)
            .await
            .expect("create");
    }
    (dir, s)
}

#[tokio::test]
async fn roster_items_groups_and_versions() {
    let (_d, s) = open().await;
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
    assert_eq!(r.roster("localhost", "bob").await.expect("bob").1, vec![]);
    assert_eq!(
        r.delete_roster_item("localhost", "alice", "bob@localhost")
            .await
            .expect("del"),
        Some(3)
    );
    assert_eq!(
        r.delete_roster_item("localhost", "alice", "bob@localhost")
            .await
            .expect("del"),
        None
    );
    assert!(r
        .roster("localhost", "alice")
        .await
        .expect("roster")
        .1
        .is_empty());
}

#[tokio::test]
async fn offline_order_and_quota() {
    let (_d, s) = open().await;
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
    assert_eq!(
        o.delete_offline("localhost", "bob", msgs[1].id)
            .await
            .expect("del"),
        2
    );
    assert_eq!(o.offline_count("localhost", "bob").await.expect("count"), 1);
}

#[tokio::test]
async fn documents_and_account_deletion_cascade() {
    let (_d, s) = open().await;
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
    d.set_account_data("localhost", "alice", "private", "a:b", "<x/>")
        .await
        .expect("set");
    assert_eq!(
        d.list_account_data("localhost", "alice", "private")
            .await
            .expect("list")
            .len(),
        1
    );
    d.set_host_data("localhost", "invite", "tok", "{}")
        .await
        .expect("host");
    let mut item = RosterItem::new("bob@localhost");
    item.groups = vec!["G".into()];
    s.roster
        .put_roster_item("localhost", "alice", &item)
        .await
        .expect("roster");
    s.offline
        .push_offline("localhost", "alice", "<message/>", 1, 10)
        .await
        .expect("offline");
    assert!(s
        .accounts
        .delete_account("localhost", "alice")
        .await
        .expect("delete"));
    assert_eq!(
        d.get_account_data("localhost", "alice", "vcard", "")
            .await
            .expect("get"),
        None
    );
    assert!(d
        .list_account_data("localhost", "alice", "private")
        .await
        .expect("list")
        .is_empty());
    assert!(s
        .roster
        .roster("localhost", "alice")
        .await
        .expect("roster")
        .1
        .is_empty());
    assert_eq!(
        s.roster
            .roster_version("localhost", "alice")
            .await
            .expect("v"),
        0
    );
    assert_eq!(
        s.offline
            .offline_count("localhost", "alice")
            .await
            .expect("count"),
        0
    );
    // Host data is not an account's.
    assert!(d
        .get_host_data("localhost", "invite", "tok")
        .await
        .expect("host")
        .is_some());
    assert!(d
        .delete_host_data("localhost", "invite", "tok")
        .await
        .expect("del"));
}
