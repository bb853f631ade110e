//! After a reconnection that cannot resume (the server's resume timeout passed), the
//! modules set the new session up: carbons are enabled again and rooms joined again (the
//! room had dropped the occupant).

use confab_client::{
    BareJid, CarbonEvent, Carbons, Chat, Client, Config, Event, Jid, JoinOptions, Muc, MucEvent,
    Reconnect,
};
use confab_modules::stream_management::StreamManagementConfig;
use confab_tests::{TcpProxy, TestServer};
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
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .expect("timed out waiting for an event")
}

#[tokio::test]
async fn a_new_session_re_enables_carbons_and_joins_rooms_again() {
    let ts = TestServer::start_with_modules(confab_muc::all(), |c| {
        c.update_section("stream_management", |s: &mut StreamManagementConfig| {
            s.resume_timeout = 1;
        })
        .expect("stream_management section");
    })
    .await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut proxy = TcpProxy::start(ts.addr).await;
    let mut o = ts.options("alice");
    o.addr = proxy.addr;
    o.resource = Some("phone".into());
    let muc = Muc::new();
    let carbons = Carbons::new();
    let mut cfg = Config::new(o)
        .reconnect(Reconnect {
            initial_delay: Duration::from_millis(300),
            max_delay: Duration::from_millis(1000),
            max_attempts: Some(100),
        })
        .module(muc.clone())
        .module(carbons.clone());
    // Every stanza acknowledged at once: nothing of the old session is sent again after
    // the new bind (which would re-enable carbons by itself), so the modules must.
    cfg.stream_management.request_every = 1;
    let phone = Client::connect(cfg).await.expect("phone connects");
    let mut pc_o = ts.options("alice");
    pc_o.resource = Some("pc".into());
    let pc = Client::connect(Config::new(pc_o))
        .await
        .expect("pc connects");
    let bob_chat = Chat::new();
    let bob = Client::connect(Config::new(ts.options("bob")).module(bob_chat.clone()))
        .await
        .expect("bob connects");

    assert!(carbons.enable(&phone).await.expect("carbons"));
    let room = BareJid::new("den@conference.localhost").expect("jid");
    muc.join(&phone, &room, JoinOptions::new("Alice"))
        .await
        .expect("join");
    muc.accept_default_config(&phone, &room)
        .await
        .expect("instant room");
    // Let the acknowledgements of the last requests arrive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bob_muc = Muc::new();
    let mut bob_o = ts.options("bob");
    bob_o.resource = Some("muc".into());
    let bob_in_room = Client::connect(Config::new(bob_o).module(bob_muc.clone()))
        .await
        .expect("bob connects");
    bob_muc
        .join(&bob_in_room, &room, JoinOptions::new("Bob"))
        .await
        .expect("bob joins");
    let mut bob_room_ev = bob_muc.events();
    let mut room_ev = muc.events();
    let mut copies = carbons.events();
    let mut ev = phone.events();

    // Gone for longer than the server keeps the session: a new one is bound.
    proxy.stop().await;
    next(&mut ev, |e| {
        matches!(
            e,
            Event::Disconnected {
                will_reconnect: true,
                ..
            }
        )
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    proxy.restore().await;
    let e = next(&mut ev, |e| matches!(e, Event::Reconnected { .. })).await;
    assert!(matches!(e, Event::Reconnected { resumed: false }), "{e:?}");

    let again = next(&mut room_ev, |e| {
        matches!(e, MucEvent::Rejoined(_) | MucEvent::Left { .. })
    })
    .await;
    assert!(
        matches!(&again, MucEvent::Rejoined(j) if j.room == room && j.nick == "Alice"),
        "{again:?}"
    );
    assert_eq!(muc.rooms(), vec![room.clone()]);
    // Bob stayed in the room all along: alice finds him there, and he sees her come back.
    assert!(
        matches!(&again, MucEvent::Rejoined(j) if !j.created
            && j.occupants.iter().map(|o| o.nick.as_str()).collect::<Vec<_>>() == ["Bob"]),
        "{again:?}"
    );
    next(
        &mut bob_room_ev,
        |e| matches!(e, MucEvent::OccupantJoined { occupant, .. } if occupant.nick == "Alice"),
    )
    .await;

    // Bob writes to the pc until the phone gets a copy (the re-enabling runs on its own
    // task right after the reconnection); bounded.
    let pc_jid = Jid::new(pc.jid().as_str()).expect("jid");
    let mut copied = false;
    for i in 0..20 {
        bob_chat
            .send(&bob, &pc_jid, &format!("after {i}"))
            .await
            .expect("send");
        if let Ok(Ok(CarbonEvent::Received(_))) =
            tokio::time::timeout(Duration::from_millis(300), copies.recv()).await
        {
            copied = true;
            break;
        }
    }
    assert!(copied, "no carbons after the new session");
    assert!(carbons.is_enabled());
}
