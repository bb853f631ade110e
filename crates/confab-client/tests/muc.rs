//! The MUC module against an in-process confabd with its MUC service: creating and
//! configuring a room, joining with history and password, messages, subject, nick changes,
//! occupants, voice, kick, ban, invitations and destruction.

use confab_client::muc::set_form_value;
use confab_client::{
    Affiliation, BareJid, Client, Config, Error, History, Jid, JoinOptions, LeaveReason, Muc,
    MucError, MucEvent, Role,
};
use confab_tests::TestServer;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

struct Conn {
    client: Client,
    muc: Arc<Muc>,
    ev: broadcast::Receiver<MucEvent>,
}

async fn connect(ts: &TestServer, user: &str) -> Conn {
    let mut o = ts.options(user);
    o.resource = Some("desk".into());
    let muc = Muc::new();
    let ev = muc.events();
    let client = Client::connect(Config::new(o).module(muc.clone()))
        .await
        .expect("connects");
    Conn { client, muc, ev }
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

fn bare(s: &str) -> BareJid {
    BareJid::new(s).expect("jid")
}

#[tokio::test]
async fn room_life_cycle() {
    let ts = TestServer::start_with_modules(confab_muc::all(), |_| {}).await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    let room = bare("tea@conference.localhost");
    let mut alice = connect(&ts, "alice").await;
    let mut bob = connect(&ts, "bob").await;
    let mut carol = connect(&ts, "carol").await;

    // Alice creates the room: owner and moderator; it is locked until configured.
    let joined = alice
        .muc
        .join(&alice.client, &room, JoinOptions::new("Alice"))
        .await
        .expect("alice joins");
    assert!(joined.created);
    assert_eq!(joined.me.affiliation, Affiliation::Owner);
    assert_eq!(joined.me.role, Role::Moderator);
    assert!(joined.occupants.is_empty());
    alice
        .muc
        .accept_default_config(&alice.client, &room)
        .await
        .expect("instant room");

    // Bob finds alice there; alice sees bob come in.
    let joined = bob
        .muc
        .join(&bob.client, &room, JoinOptions::new("Bob"))
        .await
        .expect("bob joins");
    assert!(!joined.created);
    assert_eq!(joined.me.role, Role::Participant);
    assert_eq!(joined.occupants.len(), 1);
    assert_eq!(joined.occupants[0].nick, "Alice");
    assert_eq!(joined.occupants[0].affiliation, Affiliation::Owner);
    let ev = next(&mut alice.ev, |e| {
        matches!(e, MucEvent::OccupantJoined { .. })
    })
    .await;
    assert!(
        matches!(&ev, MucEvent::OccupantJoined { occupant, .. } if occupant.nick == "Bob"
            && occupant.role == Role::Participant),
        "{ev:?}"
    );
    assert_eq!(alice.muc.occupants(&room).len(), 1);
    // Joining again is refused here and keeps the room's state.
    let twice = bob
        .muc
        .join(&bob.client, &room, JoinOptions::new("Bob2"))
        .await;
    assert!(
        matches!(twice, Err(MucError::Client(Error::InvalidRequest(_)))),
        "{twice:?}"
    );
    assert_eq!(bob.muc.occupants(&room).len(), 1);

    // Subject and messages, reflected to the sender.
    alice
        .muc
        .set_subject(&alice.client, &room, "Tea time")
        .await
        .expect("subject");
    next(
        &mut bob.ev,
        |e| matches!(e, MucEvent::Subject { subject, .. } if subject == "Tea time"),
    )
    .await;
    assert_eq!(bob.muc.subject(&room).as_deref(), Some("Tea time"));
    for text in ["one", "two", "three"] {
        bob.muc.send(&bob.client, &room, text).await.expect("send");
    }
    let got = next(&mut alice.ev, |e| matches!(e, MucEvent::Message(_))).await;
    let MucEvent::Message(m) = got else {
        unreachable!()
    };
    assert_eq!(m.nick.as_deref(), Some("Bob"));
    assert_eq!(m.body, "one");
    assert!(!m.own);
    assert!(m.stanza_id.is_some(), "the room stamps its archive id");
    let own = next(
        &mut bob.ev,
        |e| matches!(e, MucEvent::Message(m) if m.body == "three"),
    )
    .await;
    assert!(matches!(own, MucEvent::Message(m) if m.own));

    // Carol asks for one message of history: she gets "three", delayed, then the subject.
    carol
        .muc
        .join(
            &carol.client,
            &room,
            JoinOptions {
                history: Some(History {
                    max_stanzas: Some(1),
                    seconds: None,
                }),
                ..JoinOptions::new("Carol")
            },
        )
        .await
        .expect("carol joins");
    let mut history = Vec::new();
    // The history comes before the subject.
    while let MucEvent::Message(m) = next(&mut carol.ev, |e| {
        matches!(e, MucEvent::Message(_) | MucEvent::Subject { .. })
    })
    .await
    {
        history.push(m);
    }
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].body, "three");
    assert!(history[0].delayed.is_some());

    // Nick change; a taken nick is refused and changes nothing.
    bob.muc
        .change_nick(&bob.client, &room, "Robert")
        .await
        .expect("nick change");
    assert_eq!(bob.muc.nick(&room).as_deref(), Some("Robert"));
    let ev = next(&mut alice.ev, |e| matches!(e, MucEvent::NickChanged { .. })).await;
    assert_eq!(
        ev,
        MucEvent::NickChanged {
            room: room.clone(),
            old: "Bob".into(),
            new: "Robert".into()
        }
    );
    let taken = bob.muc.change_nick(&bob.client, &room, "Carol").await;
    assert!(matches!(taken, Err(MucError::NickInUse)), "{taken:?}");
    assert_eq!(bob.muc.nick(&room).as_deref(), Some("Robert"));

    // Voice revoked and granted back.
    alice
        .muc
        .set_role(&alice.client, &room, "Robert", Role::Visitor, None)
        .await
        .expect("revoke voice");
    next(&mut alice.ev, |e| {
        matches!(e, MucEvent::OccupantChanged { occupant, .. } if occupant.nick == "Robert" && occupant.role == Role::Visitor)
    })
    .await;
    next(&mut bob.ev, |e| {
        matches!(e, MucEvent::OccupantChanged { occupant, .. } if occupant.role == Role::Visitor)
    })
    .await;
    // A visitor's message is refused by the room.
    let id = bob
        .muc
        .send(&bob.client, &room, "let me speak")
        .await
        .expect("send");
    next(
        &mut bob.ev,
        |e| matches!(e, MucEvent::Error { id: Some(i), .. } if *i == id),
    )
    .await;
    alice
        .muc
        .set_role(&alice.client, &room, "Robert", Role::Participant, None)
        .await
        .expect("grant voice");
    // Bob may not kick: no moderator.
    let refused = bob.muc.kick(&bob.client, &room, "Carol", None).await;
    assert!(matches!(refused, Err(MucError::Forbidden)), "{refused:?}");

    // Invitations: through the room, and directly.
    let carol_jid = Jid::new(carol.client.jid().as_str()).expect("jid");
    alice
        .muc
        .invite(&alice.client, &room, &carol_jid, Some("join us"))
        .await
        .expect("invite");
    let inv = next(&mut carol.ev, |e| matches!(e, MucEvent::Invited { .. })).await;
    assert!(
        matches!(&inv, MucEvent::Invited { room: r, reason: Some(why), direct: false, from: Some(f), .. }
            if *r == room && why == "join us" && f.to_bare().as_str() == "alice@localhost"),
        "{inv:?}"
    );
    alice
        .muc
        .invite_direct(&alice.client, &room, &carol_jid, Some("direct"), Some("pw"))
        .await
        .expect("direct invite");
    let inv = next(&mut carol.ev, |e| {
        matches!(e, MucEvent::Invited { direct: true, .. })
    })
    .await;
    assert!(
        matches!(&inv, MucEvent::Invited { password: Some(p), .. } if p == "pw"),
        "{inv:?}"
    );

    // Kick: bob is told he was kicked, with the reason; the others see him go.
    alice
        .muc
        .kick(&alice.client, &room, "Robert", Some("too loud"))
        .await
        .expect("kick");
    let left = next(&mut bob.ev, |e| matches!(e, MucEvent::Left { .. })).await;
    assert!(
        matches!(&left, MucEvent::Left { reason: LeaveReason::Kicked { reason: Some(r), .. }, .. } if r == "too loud"),
        "{left:?}"
    );
    assert!(bob.muc.rooms().is_empty());
    next(&mut carol.ev, |e| {
        matches!(e, MucEvent::OccupantLeft { nick, reason: LeaveReason::Kicked { .. }, .. } if nick == "Robert")
    })
    .await;

    // Ban: bob cannot come back.
    alice
        .muc
        .ban(&alice.client, &room, &bare("bob@localhost"), Some("enough"))
        .await
        .expect("ban");
    let banned = bob
        .muc
        .join(&bob.client, &room, JoinOptions::new("Bob"))
        .await;
    assert!(matches!(banned, Err(MucError::Banned)), "{banned:?}");
    let outcasts = alice
        .muc
        .affiliations(&alice.client, &room, Affiliation::Outcast)
        .await
        .expect("ban list");
    assert_eq!(outcasts.len(), 1, "{outcasts:?}");
    assert_eq!(outcasts[0].jid, bare("bob@localhost"));
    assert_eq!(outcasts[0].affiliation, Affiliation::Outcast);
    let owners = carol
        .muc
        .affiliations(&carol.client, &room, Affiliation::Owner)
        .await;
    assert!(
        matches!(owners, Err(MucError::Forbidden)),
        "a participant may not list the owners: {owners:?}"
    );

    // A password through the configuration form.
    let mut form = alice
        .muc
        .get_config(&alice.client, &room)
        .await
        .expect("config form");
    set_form_value(&mut form, "muc#roomconfig_passwordprotectedroom", "1");
    set_form_value(&mut form, "muc#roomconfig_roomsecret", "s3cret");
    alice
        .muc
        .submit_config(&alice.client, &room, form)
        .await
        .expect("config submitted");
    carol.muc.leave(&carol.client, &room).await.expect("leave");
    let no_pw = carol
        .muc
        .join(&carol.client, &room, JoinOptions::new("Carol"))
        .await;
    assert!(
        matches!(no_pw, Err(MucError::PasswordRequired)),
        "{no_pw:?}"
    );
    carol
        .muc
        .join(
            &carol.client,
            &room,
            JoinOptions {
                password: Some("s3cret".into()),
                ..JoinOptions::new("Carol")
            },
        )
        .await
        .expect("with the password");
    // Not an owner: no configuration form for carol.
    let refused = carol.muc.get_config(&carol.client, &room).await;
    assert!(matches!(refused, Err(MucError::Forbidden)), "{refused:?}");

    // Destroyed: carol is told why.
    alice
        .muc
        .destroy(&alice.client, &room, Some("closing time"), None)
        .await
        .expect("destroy");
    let left = next(
        &mut carol.ev,
        |e| matches!(e, MucEvent::Left { reason, .. } if *reason != LeaveReason::Left),
    )
    .await;
    assert!(
        matches!(&left, MucEvent::Left { reason: LeaveReason::Destroyed { reason: Some(r), .. }, .. } if r == "closing time"),
        "{left:?}"
    );
    assert!(carol.muc.rooms().is_empty());
}

#[tokio::test]
async fn malformed_room_traffic_is_ignored() {
    let ts = TestServer::start_with_modules(confab_muc::all(), |_| {}).await;
    for u in ["alice", "mallory"] {
        ts.add_user(u).await;
    }
    let room = bare("den@conference.localhost");
    let mut alice = connect(&ts, "alice").await;
    let mallory = connect(&ts, "mallory").await;
    alice
        .muc
        .join(&alice.client, &room, JoinOptions::new("Alice"))
        .await
        .expect("join");
    // Mallory sends alice presences and messages with nonsense in MUC payloads, and an
    // invitation without a room: none of it breaks the client or reaches the room state.
    let to = alice.client.jid().to_string();
    let junk = [
        format!("<presence xmlns='jabber:client' to='{to}'><x xmlns='http://jabber.org/protocol/muc#user'><item role='emperor' affiliation='god'/><status code='nope'/></x></presence>"),
        format!("<message xmlns='jabber:client' to='{to}'><x xmlns='jabber:x:conference'/></message>"),
        format!("<message xmlns='jabber:client' to='{to}' type='groupchat'><body>not from a room</body></message>"),
    ];
    for j in junk {
        let el = confab_proto::parser::parse_fragment(
            &j,
            "jabber:client",
            &confab_proto::parser::Limits::default(),
        )
        .expect("xml");
        mallory.client.send(el).await.expect("send");
    }
    alice
        .muc
        .send(&alice.client, &room, "still here")
        .await
        .expect("send");
    let got = next(&mut alice.ev, |e| {
        matches!(e, MucEvent::Message(_) | MucEvent::Invited { .. })
    })
    .await;
    assert!(
        matches!(&got, MucEvent::Message(m) if m.body == "still here" && m.own),
        "{got:?}"
    );
    assert_eq!(alice.muc.rooms(), vec![room]);
}
