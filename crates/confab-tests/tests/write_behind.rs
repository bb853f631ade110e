//! Logouts write last activity and the last presence behind (`[storage] write_behind_ms`):
//! contacts see them at once, the database gets them in a later batch, and a shutdown
//! writes what is still held.

use confab_proto::ns;
use confab_proto::xml::Element;
use confab_store::{RosterItem, Subscription};
use confab_tests::{iq, TestServer, DOMAIN};
use std::time::Duration;

async fn last_in_database(config: &confab_server::config::Config) -> Option<String> {
    let stores = confab_server::open_stores(config).await.expect("stores");
    stores
        .data
        .get_account_data(DOMAIN, "alice", "last", "logout")
        .await
        .expect("read")
}

async fn log_out_alice(ts: &TestServer) {
    let mut item = RosterItem::new(&format!("bob@{DOMAIN}"));
    item.subscription = Subscription::Both;
    item.in_roster = true;
    ts.server()
        .ctx()
        .stores
        .roster
        .put_roster_item(DOMAIN, "alice", &item)
        .await
        .expect("roster item");
    let mut alice = ts.login_available("alice").await;
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .attr("type", "unavailable")
                .child(Element::new("status", ns::CLIENT).text("gone fishing")),
        )
        .await
        .expect("presence");
    alice.close().await.expect("close");
}

/// What bob's last-activity query for alice says (the status text), once alice is out.
async fn seen_by_bob(ts: &TestServer) -> String {
    let mut bob = ts.login("bob").await;
    for _ in 0..100 {
        let r = iq(
            &mut bob,
            "get",
            Some(&format!("alice@{DOMAIN}")),
            Element::new("query", "jabber:iq:last"),
        )
        .await;
        let text = r
            .get_child("query", "jabber:iq:last")
            .map(|q| q.text_content())
            .unwrap_or_default();
        if !text.is_empty() {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("alice's last activity never showed");
}

#[tokio::test]
async fn logout_documents_are_held_then_written_at_shutdown() {
    let mut ts = TestServer::start_with(|c| c.storage.write_behind_ms = 3_600_000).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let config = ts.server().ctx().config.clone();
    log_out_alice(&ts).await;
    assert_eq!(seen_by_bob(&ts).await, "gone fishing", "read at once");
    assert_eq!(last_in_database(&config).await, None, "not written yet");
    ts.server.take().expect("running").shutdown().await;
    let stored = last_in_database(&config)
        .await
        .expect("written at shutdown");
    assert!(stored.ends_with("\ngone fishing"), "{stored}");
}

#[tokio::test]
async fn logout_documents_reach_the_database_within_the_interval() {
    let ts = TestServer::start_with(|c| c.storage.write_behind_ms = 50).await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let config = ts.server().ctx().config.clone();
    log_out_alice(&ts).await;
    assert_eq!(seen_by_bob(&ts).await, "gone fishing");
    for _ in 0..100 {
        if last_in_database(&config).await.is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never written");
}
