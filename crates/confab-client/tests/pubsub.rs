//! The disco/caps and pubsub modules against an in-process confabd: this client's
//! disco#info (also at its caps node) as another client sees it, and pubsub/PEP requests
//! to a server without PEP failing with a typed "not offered" at once (Prosody, which has
//! PEP, is in `prosody.rs`).

use confab_client::pep::NICK_NS;
use confab_client::{
    payloads::disco::DiscoInfo, Client, Config, Disco, Element, Error, ItemsQuery, Jid, PubSub,
    PubSubError, StanzaErrorCondition, CAPS_NODE,
};
use confab_tests::TestServer;
use std::sync::Arc;
use std::time::Duration;

/// A "not offered" answer comes at once, not after the request timeout.
const QUICK: Duration = Duration::from_secs(5);

async fn connect(ts: &TestServer, user: &str) -> (Client, Arc<Disco>, Arc<PubSub>) {
    let mut o = ts.options(user);
    o.resource = Some("desk".into());
    let disco = Disco::new("confab test");
    let pubsub = PubSub::new(disco.clone());
    let client = Client::connect(Config::new(o).module(disco.clone()).module(pubsub.clone()))
        .await
        .expect("connects");
    (client, disco, pubsub)
}

#[tokio::test]
async fn clients_answer_disco_at_their_caps_node() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let (alice, _, _) = connect(&ts, "alice").await;
    let (bob, bob_disco, bob_pubsub) = connect(&ts, "bob").await;
    bob_pubsub.notify(NICK_NS);
    let bob_jid = Jid::from(bob.jid());

    let info: DiscoInfo = Disco::query(&alice, &bob_jid, None).await.expect("disco");
    assert!(info.has_feature(&format!("{NICK_NS}+notify")), "{info:?}");
    assert!(info.has_feature(confab_client::ns::CAPS));
    assert_eq!(info.identities[0].category, "client");

    // What the caps in presence point at (XEP-0115 §6.2) answers the same, naming the node.
    let node = format!("{CAPS_NODE}#{}", bob_disco.ver());
    let at_node = Disco::query(&alice, &bob_jid, Some(&node))
        .await
        .expect("caps node");
    assert_eq!(at_node.node.as_deref(), Some(node.as_str()));
    assert_eq!(at_node.features, info.features);
    // A stale hash (the interest changed since) is no node of this client.
    bob_pubsub.stop_notify(NICK_NS);
    match Disco::query(&alice, &bob_jid, Some(&node)).await {
        Err(Error::Stanza { error, .. }) => {
            assert_eq!(error.condition, StanzaErrorCondition::ItemNotFound)
        }
        other => panic!("{other:?}"),
    }
    let _ = alice.close().await;
    let _ = bob.close().await;
}

#[tokio::test]
async fn pubsub_without_pep_is_not_offered() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let (alice, _, pubsub) = connect(&ts, "alice").await;

    let r = tokio::time::timeout(QUICK, pubsub.publish_nick(&alice, "Alice"))
        .await
        .expect("no hang");
    assert!(matches!(r, Err(PubSubError::NotOffered(_))), "{r:?}");
    let r = tokio::time::timeout(QUICK, pubsub.items(&alice, None, NICK_NS, &ItemsQuery::All))
        .await
        .expect("no hang");
    assert!(matches!(r, Err(PubSubError::NotOffered(_))), "{r:?}");
    // Publish-options are checked first: nothing is published without them.
    let r = tokio::time::timeout(
        QUICK,
        pubsub.publish(
            &alice,
            None,
            "urn:example:secret",
            None,
            Element::new("x", "urn:example:secret"),
            &[("pubsub#access_model", "whitelist")],
        ),
    )
    .await
    .expect("no hang");
    assert!(
        matches!(&r, Err(PubSubError::NotOffered(f)) if f.contains("publish-options")),
        "{r:?}"
    );
    assert!(!pubsub
        .offers(&alice, None, confab_client::pubsub::PUBSUB_NS)
        .await
        .expect("disco"));
    let _ = alice.close().await;
}
