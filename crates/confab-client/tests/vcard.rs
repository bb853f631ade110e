//! The vCard module against an in-process confabd: publishing and fetching vCards with a
//! photo, and avatar hashes in presence (XEP-0153) surfaced once per change.

use confab_client::payloads::vcard::UPDATE_NS;
use confab_client::{
    BareJid, Client, Config, Element, Jid, Photo, Presence, Status, VCard, VCardEvent, VCards,
};
use confab_tests::TestServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

async fn connect(ts: &TestServer, user: &str) -> (Client, Arc<VCards>, Arc<Presence>) {
    let mut o = ts.options(user);
    o.resource = Some("desk".into());
    let vcards = VCards::new();
    let presence = Presence::new();
    let client = Client::connect(
        Config::new(o)
            .module(vcards.clone())
            .module(presence.clone()),
    )
    .await
    .expect("connects");
    (client, vcards, presence)
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

fn card() -> VCard {
    VCard {
        full_name: Some("Alice Liddell".into()),
        nickname: Some("Alice".into()),
        photo: Some(Photo {
            mime_type: Some("image/png".into()),
            data: Some(vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3]),
            extval: None,
        }),
        others: Vec::new(),
    }
}

#[tokio::test]
async fn publish_fetch_and_avatar_hashes() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let (alice, alice_v, _) = connect(&ts, "alice").await;
    let (bob, bob_v, _) = connect(&ts, "bob").await;
    let alice_bare = BareJid::new("alice@localhost").expect("jid");

    // Nothing published yet; until known, presence says "not ready".
    assert_eq!(
        bob_v.fetch(&bob, Some(&alice_bare)).await.expect("fetch"),
        None
    );
    assert!(alice_v
        .presence_update()
        .get_child("photo", UPDATE_NS)
        .is_none());

    alice_v.publish(&alice, &card()).await.expect("publish");
    let got = bob_v
        .fetch(&bob, Some(&alice_bare))
        .await
        .expect("fetch")
        .expect("a vCard");
    assert_eq!(got.full_name, card().full_name);
    assert_eq!(got.nickname, card().nickname);
    assert_eq!(got.photo, card().photo);
    let own = alice_v
        .fetch(&alice, None)
        .await
        .expect("own")
        .expect("a vCard");
    assert_eq!(own.full_name, card().full_name);

    // The hash goes out with alice's presence (directed to bob here), and bob is told once.
    let hash = card().photo_hash().expect("hash");
    let mut ev = bob_v.events();
    let mut p = Status::available().to_element();
    p.set_attr("to", bob.jid().as_str());
    p.push_child(alice_v.presence_update());
    alice.send(p.clone()).await.expect("presence");
    let got = next(&mut ev, |_| true).await;
    assert_eq!(
        got,
        VCardEvent::AvatarChanged {
            from: Jid::new(alice.jid().as_str()).expect("jid"),
            hash: Some(hash)
        }
    );
    // The same hash again is no change; a malformed update is ignored; then "no photo".
    alice.send(p).await.expect("presence");
    let junk = Element::new("presence", "jabber:client")
        .attr("to", bob.jid().as_str())
        .child(Element::new("x", UPDATE_NS).child(Element::new("photo", "urn:other")));
    alice.send(junk).await.expect("presence");
    alice_v
        .publish(&alice, &VCard::default())
        .await
        .expect("publish without photo");
    let mut p = Status::available().to_element();
    p.set_attr("to", bob.jid().as_str());
    p.push_child(alice_v.presence_update());
    alice.send(p).await.expect("presence");
    let got = next(&mut ev, |_| true).await;
    assert_eq!(
        got,
        VCardEvent::AvatarChanged {
            from: Jid::new(alice.jid().as_str()).expect("jid"),
            hash: None
        }
    );
}
