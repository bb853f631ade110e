//! XEP-0045 flows against a whole server with the MUC module on `conference.localhost`.

use confab_muc::config::{Creation, MucConfig};
use confab_muc::payloads::{NS_ADMIN, NS_MUC, NS_OWNER, NS_USER};
use confab_proto::ns;
use confab_proto::xml::Element;
use confab_stream::client::ClientSession;
use confab_tests::*;

const MUC: &str = "conference.localhost";
const XDATA: &str = "jabber:x:data";

async fn server() -> TestServer {
    TestServer::start_with_modules(confab_muc::all(), |_| {}).await
}

async fn server_with(f: impl FnOnce(&mut MucConfig)) -> TestServer {
    TestServer::start_with_modules(confab_muc::all(), |c| {
        c.update_section("muc", f).expect("muc section")
    })
    .await
}

async fn users(ts: &TestServer, names: &[&str]) -> Vec<ClientSession> {
    let mut v = Vec::new();
    for n in names {
        ts.add_user(n).await;
        v.push(ts.login_available(n).await);
    }
    v
}

fn room(name: &str) -> String {
    format!("{name}@{MUC}")
}

fn occ(room_name: &str, nick: &str) -> String {
    format!("{}/{nick}", room(room_name))
}

fn join_el(room_name: &str, nick: &str, x: Element) -> Element {
    Element::new("presence", ns::CLIENT)
        .attr("to", occ(room_name, nick))
        .attr("id", format!("join-{}", rand_id()))
        .child(x)
}

fn muc_x() -> Element {
    Element::new("x", NS_MUC)
}

fn user_x(e: &Element) -> Option<&Element> {
    e.get_child("x", NS_USER)
}

fn codes(e: &Element) -> Vec<String> {
    user_x(e)
        .map(|x| {
            x.elements()
                .filter(|c| c.name == "status")
                .filter_map(|c| c.get_attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn has_code(e: &Element, code: &str) -> bool {
    codes(e).iter().any(|c| c == code)
}

fn item(e: &Element) -> Element {
    user_x(e)
        .and_then(|x| x.get_child("item", NS_USER))
        .cloned()
        .unwrap_or_else(|| panic!("no muc#user item in {e}"))
}

fn body(e: &Element) -> Option<String> {
    e.get_child("body", ns::CLIENT).map(|b| b.text_content())
}

/// Joins and reads everything up to the subject; returns it all (presences, history,
/// subject) in order of arrival.
async fn join_with(c: &mut ClientSession, room_name: &str, nick: &str, x: Element) -> Vec<Element> {
    c.send(&join_el(room_name, nick, x)).await.expect("send");
    let mut got = Vec::new();
    loop {
        let e = recv(c).await;
        let from_room = e
            .get_attr("from")
            .is_some_and(|f| f.starts_with(&room(room_name)));
        if !from_room {
            continue;
        }
        if e.get_attr("type") == Some("error") {
            panic!("join refused: {e}");
        }
        let done = e.name == "message" && e.get_child("subject", ns::CLIENT).is_some();
        got.push(e);
        if done {
            return got;
        }
    }
}

async fn join(c: &mut ClientSession, room_name: &str, nick: &str) -> Vec<Element> {
    join_with(c, room_name, nick, muc_x()).await
}

/// Joins expecting an error; returns its condition.
async fn join_refused(c: &mut ClientSession, room_name: &str, nick: &str, x: Element) -> String {
    c.send(&join_el(room_name, nick, x)).await.expect("send");
    let e = expect(c, "join error", |e| {
        e.name == "presence" && e.get_attr("type") == Some("error")
    })
    .await;
    assert_eq!(e.get_attr("from"), Some(occ(room_name, nick).as_str()));
    condition(&e)
}

/// Creates an instant room; returns the creator's self-presence.
async fn create(c: &mut ClientSession, room_name: &str, nick: &str) -> Element {
    let got = join(c, room_name, nick).await;
    let me = got
        .iter()
        .find(|e| e.name == "presence" && has_code(e, "110"))
        .cloned()
        .expect("self-presence");
    let r = iq(
        c,
        "set",
        Some(&room(room_name)),
        Element::new("query", NS_OWNER).child(Element::new("x", XDATA).attr("type", "submit")),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    me
}

async fn configure(c: &mut ClientSession, room_name: &str, fields: &[(&str, &str)]) -> Element {
    let mut x = Element::new("x", XDATA).attr("type", "submit").child(
        Element::new("field", XDATA)
            .attr("var", "FORM_TYPE")
            .child(Element::new("value", XDATA).text("http://jabber.org/protocol/muc#roomconfig")),
    );
    for (var, value) in fields {
        x.push_child(
            Element::new("field", XDATA)
                .attr("var", *var)
                .child(Element::new("value", XDATA).text(*value)),
        );
    }
    iq(
        c,
        "set",
        Some(&room(room_name)),
        Element::new("query", NS_OWNER).child(x),
    )
    .await
}

async fn admin(
    c: &mut ClientSession,
    room_name: &str,
    type_: &str,
    items: Vec<Element>,
) -> Element {
    let mut q = Element::new("query", NS_ADMIN);
    for i in items {
        q.push_child(i);
    }
    iq(c, type_, Some(&room(room_name)), q).await
}

fn aitem(attrs: &[(&str, &str)]) -> Element {
    let mut e = Element::new("item", NS_ADMIN);
    for (k, v) in attrs {
        e.set_attr(k, *v);
    }
    e
}

fn groupchat(room_name: &str, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", room(room_name))
        .attr("type", "groupchat")
        .attr("id", format!("gc-{}", rand_id()))
        .child(Element::new("body", ns::CLIENT).text(text))
}

async fn presence_from(c: &mut ClientSession, from: &str) -> Element {
    let from = from.to_string();
    expect(c, &format!("presence from {from}"), |e| {
        e.name == "presence" && e.get_attr("from") == Some(from.as_str())
    })
    .await
}

async fn message_from(c: &mut ClientSession, from: &str) -> Element {
    let from = from.to_string();
    expect(c, &format!("message from {from}"), |e| {
        e.name == "message" && e.get_attr("from") == Some(from.as_str())
    })
    .await
}

async fn leave(c: &mut ClientSession, room_name: &str, nick: &str) {
    c.send(
        &Element::new("presence", ns::CLIENT)
            .attr("to", occ(room_name, nick))
            .attr("type", "unavailable"),
    )
    .await
    .expect("send");
    let p = presence_from(c, &occ(room_name, nick)).await;
    assert_eq!(p.get_attr("type"), Some("unavailable"));
    assert!(has_code(&p, "110"), "{p}");
}

async fn disco_info(c: &mut ClientSession, to: &str) -> Element {
    iq(c, "get", Some(to), Element::new("query", ns::DISCO_INFO)).await
}

fn features(r: &Element) -> Vec<String> {
    r.get_child("query", ns::DISCO_INFO)
        .map(|q| {
            q.elements()
                .filter(|f| f.name == "feature")
                .filter_map(|f| f.get_attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn create_join_talk_and_leave() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    let (alice, rest) = c.split_at_mut(1);
    let (alice, bob) = (&mut alice[0], &mut rest[0]);

    // Creation: 201 and 110, owner and moderator; the room is locked until configured.
    let got = join(alice, "coven", "firstwitch").await;
    let me = &got[0];
    assert_eq!(
        me.get_attr("from"),
        Some(occ("coven", "firstwitch").as_str())
    );
    assert!(has_code(me, "110") && has_code(me, "201"), "{me}");
    assert_eq!(item(me).get_attr("affiliation"), Some("owner"));
    assert_eq!(item(me).get_attr("role"), Some("moderator"));
    assert_eq!(
        join_refused(bob, "coven", "second", muc_x()).await,
        "item-not-found"
    );
    let r = iq(
        alice,
        "set",
        Some(&room("coven")),
        Element::new("query", NS_OWNER).child(Element::new("x", XDATA).attr("type", "submit")),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");

    // Bob enters: the others' presence first, then his own with 110 (no 201 now).
    let got = join(bob, "coven", "second").await;
    assert_eq!(
        got[0].get_attr("from"),
        Some(occ("coven", "firstwitch").as_str())
    );
    // Semi-anonymous: a participant does not see real JIDs.
    assert_eq!(item(&got[0]).get_attr("jid"), None);
    let own = &got[1];
    assert!(has_code(own, "110") && !has_code(own, "201"), "{own}");
    assert_eq!(item(own).get_attr("role"), Some("participant"));
    assert_eq!(item(own).get_attr("affiliation"), Some("none"));
    // The moderator sees Bob's real JID.
    let p = presence_from(alice, &occ("coven", "second")).await;
    assert_eq!(item(&p).get_attr("jid"), Some(bob.jid.as_str()));

    // A groupchat message reaches everyone, sender included, with the same id.
    let m = groupchat("coven", "Thrice the brinded cat hath mew'd.");
    let id = m.get_attr("id").map(str::to_string);
    alice.send(&m).await.expect("send");
    for c in [&mut *alice, &mut *bob] {
        let got = message_from(c, &occ("coven", "firstwitch")).await;
        assert_eq!(got.get_attr("type"), Some("groupchat"));
        assert_eq!(got.get_attr("id"), id.as_deref());
        assert_eq!(
            body(&got).as_deref(),
            Some("Thrice the brinded cat hath mew'd.")
        );
        assert_eq!(got.get_attr("to"), Some(c.jid.as_str()));
    }

    // Bob leaves: he gets 110, Alice sees role none.
    leave(bob, "coven", "second").await;
    let p = presence_from(alice, &occ("coven", "second")).await;
    assert_eq!(p.get_attr("type"), Some("unavailable"));
    assert_eq!(item(&p).get_attr("role"), Some("none"));
    assert!(!has_code(&p, "110"));

    // A non-occupant's groupchat message is refused and reaches nobody.
    bob.send(&groupchat("coven", "let me in"))
        .await
        .expect("send");
    let e = expect(bob, "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "not-acceptable");
    assert!(no_message(alice, 300).await);

    // The last occupant leaves: the temporary room is gone.
    leave(alice, "coven", "firstwitch").await;
    let r = disco_info(alice, &room("coven")).await;
    assert_eq!(condition(&r), "item-not-found");
}

#[tokio::test]
async fn history_then_subject_on_join() {
    let ts = server_with(|m| m.history_max = 3).await;
    let mut c = users(&ts, &["alice", "bob", "carol", "dave"]).await;
    create(&mut c[0], "hist", "a").await;
    for i in 1..=4 {
        c[0].send(&groupchat("hist", &format!("m{i}")))
            .await
            .expect("send");
        message_from(&mut c[0], &occ("hist", "a")).await;
    }
    // Subject change (a moderator may), reflected to all.
    c[0].send(
        &Element::new("message", ns::CLIENT)
            .attr("to", room("hist"))
            .attr("type", "groupchat")
            .child(Element::new("subject", ns::CLIENT).text("Spells")),
    )
    .await
    .expect("send");
    let s = message_from(&mut c[0], &occ("hist", "a")).await;
    assert!(s.get_child("subject", ns::CLIENT).is_some(), "{s}");

    // No limits: the room keeps the last three, each stamped, then the subject.
    let got = join(&mut c[1], "hist", "b").await;
    let hist: Vec<_> = got.iter().filter(|e| body(e).is_some()).collect();
    assert_eq!(
        hist.iter()
            .map(|e| body(e).unwrap_or_default())
            .collect::<Vec<_>>(),
        ["m2", "m3", "m4"]
    );
    for h in &hist {
        let d = h.get_child("delay", ns::DELAY).expect("delay");
        assert_eq!(d.get_attr("from"), Some(room("hist").as_str()));
        assert!(d.get_attr("stamp").is_some());
    }
    let last = got.last().expect("subject");
    assert_eq!(
        last.get_child("subject", ns::CLIENT)
            .map(|s| s.text_content())
            .as_deref(),
        Some("Spells")
    );
    assert_eq!(last.get_attr("from"), Some(occ("hist", "a").as_str()));
    assert!(last.get_child("delay", ns::DELAY).is_some());
    // Order: presences, then history, then the subject.
    let first_hist = got.iter().position(|e| body(e).is_some()).expect("history");
    assert!(got[..first_hist].iter().all(|e| e.name == "presence"));
    assert!(has_code(&got[first_hist - 1], "110"));

    // maxstanzas=1 and maxchars=0.
    let got = join_with(
        &mut c[2],
        "hist",
        "c",
        muc_x().child(Element::new("history", NS_MUC).attr("maxstanzas", "1")),
    )
    .await;
    let bodies: Vec<_> = got.iter().filter_map(body).collect();
    assert_eq!(bodies, ["m4"]);
    let got = join_with(
        &mut c[3],
        "hist",
        "d",
        muc_x().child(Element::new("history", NS_MUC).attr("maxchars", "0")),
    )
    .await;
    assert!(got.iter().all(|e| body(e).is_none()));
    // An invalid history request is refused and changes nothing.
    let e = join_refused(
        &mut c[3],
        "hist",
        "d2",
        muc_x().child(Element::new("history", NS_MUC).attr("since", "yesterday")),
    )
    .await;
    assert_eq!(e, "bad-request");
}

#[tokio::test]
async fn nick_changes_and_conflicts() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    create(&mut c[0], "nicks", "alice").await;
    // Taken nick.
    assert_eq!(
        join_refused(&mut c[1], "nicks", "alice", muc_x()).await,
        "conflict"
    );
    // Invisible nick.
    assert_eq!(
        join_refused(&mut c[1], "nicks", "   ", muc_x()).await,
        "jid-malformed"
    );
    join(&mut c[1], "nicks", "bob").await;
    presence_from(&mut c[0], &occ("nicks", "bob")).await;
    // Change to a taken nick: conflict, nothing changes.
    c[1].send(&Element::new("presence", ns::CLIENT).attr("to", occ("nicks", "alice")))
        .await
        .expect("send");
    let e = expect(&mut c[1], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "conflict");
    // Change nick: 303 with the new nick, then the new presence (110 to self).
    c[1].send(&Element::new("presence", ns::CLIENT).attr("to", occ("nicks", "robert")))
        .await
        .expect("send");
    for (i, c) in c.iter_mut().enumerate() {
        let gone = presence_from(c, &occ("nicks", "bob")).await;
        assert_eq!(gone.get_attr("type"), Some("unavailable"));
        assert!(has_code(&gone, "303"), "{gone}");
        assert_eq!(item(&gone).get_attr("nick"), Some("robert"));
        assert_eq!(has_code(&gone, "110"), i == 1);
        let new = presence_from(c, &occ("nicks", "robert")).await;
        assert_eq!(new.get_attr("type"), None);
        assert_eq!(has_code(&new, "110"), i == 1);
    }
    // A nick with surrounding spaces is trimmed: 210 tells the client.
    c[1].send(&Element::new("presence", ns::CLIENT).attr("to", occ("nicks", " rob ")))
        .await
        .expect("send");
    presence_from(&mut c[1], &occ("nicks", "robert")).await;
    let new = presence_from(&mut c[1], &occ("nicks", "rob")).await;
    assert!(has_code(&new, "210") && has_code(&new, "110"), "{new}");
    // Presence without the MUC <x/> from a non-occupant: kicked with 110, 307, 333.
    ts.add_user("carol").await;
    let mut carol = ts.login_available("carol").await;
    carol
        .send(&Element::new("presence", ns::CLIENT).attr("to", occ("nicks", "carol")))
        .await
        .expect("send");
    let p = presence_from(&mut carol, &occ("nicks", "carol")).await;
    for code in ["110", "307", "333"] {
        assert!(has_code(&p, code), "{p}");
    }
    // Joining at the bare room JID: no nick.
    carol
        .send(
            &Element::new("presence", ns::CLIENT)
                .attr("to", room("nicks"))
                .child(muc_x()),
        )
        .await
        .expect("send");
    let e = expect(&mut carol, "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "jid-malformed");
}

/// XEP-0045 §7.2.2: a user's second session joining under its nick shares the occupant;
/// another user under that nick is still a conflict.
#[tokio::test]
async fn several_sessions_share_one_nick() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    c.push(ts.login_available("bob").await);
    let [a, b1, carol, b2] = &mut c[..] else {
        unreachable!()
    };
    create(a, "multi", "alice").await;
    join(b1, "multi", "bob").await;
    presence_from(a, &occ("multi", "bob")).await;

    // Bob's second resource joins as "bob": it gets the room's state and its own presence
    // (110, the occupant's role); the first session is told too; Alice sees one "bob".
    let got = join(b2, "multi", "bob").await;
    let froms: Vec<&str> = got
        .iter()
        .filter(|e| e.name == "presence")
        .filter_map(|e| e.get_attr("from"))
        .collect();
    assert_eq!(
        froms,
        [occ("multi", "alice"), occ("multi", "bob")],
        "{got:?}"
    );
    let own = &got[1];
    assert!(has_code(own, "110"), "{own}");
    assert_eq!(item(own).get_attr("role"), Some("participant"));
    let p = presence_from(b1, &occ("multi", "bob")).await;
    assert!(has_code(&p, "110") && p.get_attr("type").is_none(), "{p}");
    let p = presence_from(a, &occ("multi", "bob")).await;
    assert!(!has_code(&p, "110") && p.get_attr("type").is_none(), "{p}");
    // Someone else under that nick: conflict.
    assert_eq!(
        join_refused(carol, "multi", "bob", muc_x()).await,
        "conflict"
    );

    // Groupchat and private messages reach both sessions.
    a.send(&groupchat("multi", "to all of bob"))
        .await
        .expect("send");
    for b in [&mut *b1, &mut *b2] {
        let m = message_from(b, &occ("multi", "alice")).await;
        assert_eq!(body(&m).as_deref(), Some("to all of bob"));
    }
    a.send(
        &Element::new("message", ns::CLIENT)
            .attr("to", occ("multi", "bob"))
            .attr("type", "chat")
            .child(Element::new("body", ns::CLIENT).text("psst")),
    )
    .await
    .expect("send");
    for b in [&mut *b1, &mut *b2] {
        let m = expect(b, "private message", |e| {
            e.name == "message" && body(e).as_deref() == Some("psst")
        })
        .await;
        assert_eq!(m.get_attr("from"), Some(occ("multi", "alice").as_str()));
    }

    // One session leaves: the occupant stays, as its other session is.
    leave(b1, "multi", "bob").await;
    let p = presence_from(a, &occ("multi", "bob")).await;
    assert_eq!(p.get_attr("type"), None, "{p}");
    let p = presence_from(b2, &occ("multi", "bob")).await;
    assert!(has_code(&p, "110") && p.get_attr("type").is_none(), "{p}");
    a.send(&groupchat("multi", "still there?"))
        .await
        .expect("send");
    let m = message_from(b2, &occ("multi", "alice")).await;
    assert_eq!(body(&m).as_deref(), Some("still there?"));
    assert!(no_message(b1, 300).await);

    // A kick removes every session of the occupant, each told with 110 and 307.
    join(b1, "multi", "bob").await;
    presence_from(b2, &occ("multi", "bob")).await;
    presence_from(a, &occ("multi", "bob")).await;
    let r = admin(
        a,
        "multi",
        "set",
        vec![aitem(&[("nick", "bob"), ("role", "none")])],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    for b in [&mut *b1, &mut *b2] {
        let p = presence_from(b, &occ("multi", "bob")).await;
        assert_eq!(p.get_attr("type"), Some("unavailable"), "{p}");
        assert!(has_code(&p, "110") && has_code(&p, "307"), "{p}");
    }
    let p = presence_from(a, &occ("multi", "bob")).await;
    assert_eq!(p.get_attr("type"), Some("unavailable"), "{p}");
    assert!(has_code(&p, "307") && !has_code(&p, "110"), "{p}");
    b2.send(&groupchat("multi", "let me back"))
        .await
        .expect("send");
    let e = expect(b2, "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "not-acceptable");
}

#[tokio::test]
async fn private_messages_go_through_the_room() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    create(&mut c[0], "pm", "alice").await;
    join(&mut c[1], "pm", "bob").await;
    let pm = |to: &str, t: &str| {
        Element::new("message", ns::CLIENT)
            .attr("to", occ("pm", to))
            .attr("type", t)
            .child(Element::new("body", ns::CLIENT).text("psst"))
    };
    c[1].send(&pm("alice", "chat")).await.expect("send");
    let m = message_from(&mut c[0], &occ("pm", "bob")).await;
    assert_eq!(m.get_attr("type"), Some("chat"));
    assert!(m.get_child("x", NS_USER).is_some(), "{m}");
    // To nobody: item-not-found; groupchat type: bad-request; from outside: not-acceptable.
    for (who, to, t, cond) in [
        (1, "nobody", "chat", "item-not-found"),
        (1, "alice", "groupchat", "bad-request"),
        (2, "alice", "chat", "not-acceptable"),
    ] {
        c[who].send(&pm(to, t)).await.expect("send");
        let e = expect(&mut c[who], "error", |e| {
            e.get_attr("type") == Some("error")
        })
        .await;
        assert_eq!(condition(&e), cond, "{to} {t}");
    }
    assert!(no_message(&mut c[0], 300).await);
}

#[tokio::test]
async fn reserved_room_with_password() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    let got = join(&mut c[0], "secret", "alice").await;
    assert!(has_code(&got[0], "201"));
    // The configuration form, then a submitted configuration.
    let r = iq(
        &mut c[0],
        "get",
        Some(&room("secret")),
        Element::new("query", NS_OWNER),
    )
    .await;
    let form = r
        .get_child("query", NS_OWNER)
        .and_then(|q| q.get_child("x", XDATA))
        .unwrap_or_else(|| panic!("no form in {r}"));
    let vars: Vec<_> = form.elements().filter_map(|f| f.get_attr("var")).collect();
    for v in [
        "muc#roomconfig_roomname",
        "muc#roomconfig_roomdesc",
        "muc#roomconfig_persistentroom",
        "muc#roomconfig_publicroom",
        "muc#roomconfig_membersonly",
        "muc#roomconfig_passwordprotectedroom",
        "muc#roomconfig_roomsecret",
        "muc#roomconfig_moderatedroom",
        "muc#roomconfig_whois",
        "muc#roomconfig_maxusers",
        "muc#roomconfig_changesubject",
    ] {
        assert!(vars.contains(&v), "{v} missing from {form}");
    }
    // Bad forms change nothing (the room stays locked).
    let r = configure(
        &mut c[0],
        "secret",
        &[("muc#roomconfig_publicroom", "maybe")],
    )
    .await;
    assert_eq!(condition(&r), "bad-request");
    let r = configure(
        &mut c[0],
        "secret",
        &[("muc#roomconfig_passwordprotectedroom", "1")],
    )
    .await;
    assert_eq!(condition(&r), "not-acceptable");
    assert_eq!(
        join_refused(&mut c[1], "secret", "bob", muc_x()).await,
        "item-not-found"
    );
    let r = configure(
        &mut c[0],
        "secret",
        &[
            ("muc#roomconfig_roomname", "A Dark Cave"),
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("muc#roomconfig_roomsecret", "cauldronburn"),
            ("muc#roomconfig_publicroom", "0"),
        ],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let info = disco_info(&mut c[1], &room("secret")).await;
    let f = features(&info);
    assert!(
        f.contains(&"muc_passwordprotected".to_string()) && f.contains(&"muc_hidden".to_string()),
        "{info}"
    );
    assert_eq!(
        join_refused(&mut c[1], "secret", "bob", muc_x()).await,
        "not-authorized"
    );
    let wrong = muc_x().child(Element::new("password", NS_MUC).text("nope"));
    assert_eq!(
        join_refused(&mut c[1], "secret", "bob", wrong).await,
        "not-authorized"
    );
    let right = muc_x().child(Element::new("password", NS_MUC).text("cauldronburn"));
    join_with(&mut c[1], "secret", "bob", right).await;
    // Only the owner sees the form.
    let r = iq(
        &mut c[1],
        "get",
        Some(&room("secret")),
        Element::new("query", NS_OWNER),
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
    // A configuration change is announced with 104.
    let r = configure(
        &mut c[0],
        "secret",
        &[("muc#roomconfig_roomdesc", "witches")],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let m = message_from(&mut c[1], &room("secret")).await;
    assert!(has_code(&m, "104"), "{m}");
}

#[tokio::test]
async fn members_only_and_affiliation_rules() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    create(&mut c[0], "club", "alice").await;
    let r = configure(&mut c[0], "club", &[("muc#roomconfig_membersonly", "1")]).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    assert_eq!(
        join_refused(&mut c[1], "club", "bob", muc_x()).await,
        "registration-required"
    );
    let r = admin(
        &mut c[0],
        "club",
        "set",
        vec![aitem(&[
            ("jid", "bob@localhost"),
            ("affiliation", "member"),
        ])],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let got = join(&mut c[1], "club", "bob").await;
    assert_eq!(
        item(
            got.last()
                .and_then(|_| got.iter().find(|e| has_code(e, "110")))
                .expect("self")
        )
        .get_attr("affiliation"),
        Some("member")
    );
    // A member may not change affiliations, nor see the ban list.
    let r = admin(
        &mut c[1],
        "club",
        "set",
        vec![aitem(&[
            ("jid", "carol@localhost"),
            ("affiliation", "member"),
        ])],
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
    let r = admin(
        &mut c[1],
        "club",
        "get",
        vec![aitem(&[("affiliation", "outcast")])],
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
    // Both a role and an affiliation in one item: bad-request.
    let r = admin(
        &mut c[0],
        "club",
        "set",
        vec![aitem(&[
            ("jid", "carol@localhost"),
            ("nick", "x"),
            ("affiliation", "member"),
            ("role", "participant"),
        ])],
    )
    .await;
    assert_eq!(condition(&r), "bad-request");
    // The last owner cannot step down, and a bad batch changes nothing.
    let r = admin(
        &mut c[0],
        "club",
        "set",
        vec![
            aitem(&[("jid", "carol@localhost"), ("affiliation", "member")]),
            aitem(&[("jid", "alice@localhost"), ("affiliation", "admin")]),
        ],
    )
    .await;
    assert_eq!(condition(&r), "conflict");
    let r = admin(
        &mut c[0],
        "club",
        "get",
        vec![aitem(&[("affiliation", "member")])],
    )
    .await;
    let members: Vec<_> = r
        .get_child("query", NS_ADMIN)
        .map(|q| {
            q.elements()
                .filter_map(|i| i.get_attr("jid").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(members, ["bob@localhost"]);
    // Owners can't ban themselves either.
    let r = admin(
        &mut c[0],
        "club",
        "set",
        vec![aitem(&[
            ("jid", "alice@localhost"),
            ("affiliation", "outcast"),
        ])],
    )
    .await;
    assert_eq!(condition(&r), "conflict");
    // Revoking membership removes Bob with 321.
    let r = admin(
        &mut c[0],
        "club",
        "set",
        vec![aitem(&[("jid", "bob@localhost"), ("affiliation", "none")])],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let p = presence_from(&mut c[1], &occ("club", "bob")).await;
    assert_eq!(p.get_attr("type"), Some("unavailable"));
    assert!(has_code(&p, "321") && has_code(&p, "110"), "{p}");
    let p = presence_from(&mut c[0], &occ("club", "bob")).await;
    assert!(has_code(&p, "321"), "{p}");
    assert_eq!(
        join_refused(&mut c[1], "club", "bob", muc_x()).await,
        "registration-required"
    );
}

#[tokio::test]
async fn kick_ban_and_voice() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    create(&mut c[0], "mod", "alice").await;
    let r = configure(&mut c[0], "mod", &[("muc#roomconfig_moderatedroom", "1")]).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let got = join(&mut c[1], "mod", "bob").await;
    let me = got.iter().find(|e| has_code(e, "110")).expect("self");
    assert_eq!(item(me).get_attr("role"), Some("visitor"));
    presence_from(&mut c[0], &occ("mod", "bob")).await;
    // A visitor has no voice.
    c[1].send(&groupchat("mod", "hello?")).await.expect("send");
    let e = expect(&mut c[1], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "forbidden");
    // A visitor cannot kick.
    let r = admin(
        &mut c[1],
        "mod",
        "set",
        vec![aitem(&[("nick", "alice"), ("role", "none")])],
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
    // Grant voice.
    let r = admin(
        &mut c[0],
        "mod",
        "set",
        vec![aitem(&[("nick", "bob"), ("role", "participant")])],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let p = presence_from(&mut c[1], &occ("mod", "bob")).await;
    assert_eq!(item(&p).get_attr("role"), Some("participant"));
    c[1].send(&groupchat("mod", "now I speak"))
        .await
        .expect("send");
    message_from(&mut c[0], &occ("mod", "bob")).await;
    // Revoke voice.
    let r = admin(
        &mut c[0],
        "mod",
        "set",
        vec![aitem(&[("nick", "bob"), ("role", "visitor")])],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let p = presence_from(&mut c[1], &occ("mod", "bob")).await;
    assert_eq!(item(&p).get_attr("role"), Some("visitor"));
    // Kick: 307 with actor and reason; 110 for the kicked one.
    let kick = aitem(&[("nick", "bob"), ("role", "none")])
        .child(Element::new("reason", NS_ADMIN).text("Avaunt, you cullion!"));
    let r = admin(&mut c[0], "mod", "set", vec![kick]).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let p = presence_from(&mut c[1], &occ("mod", "bob")).await;
    assert_eq!(p.get_attr("type"), Some("unavailable"));
    assert!(has_code(&p, "307") && has_code(&p, "110"), "{p}");
    let it = item(&p);
    assert_eq!(
        it.get_child("actor", NS_USER)
            .and_then(|a| a.get_attr("nick")),
        Some("alice")
    );
    assert_eq!(
        it.get_child("reason", NS_USER)
            .map(|r| r.text_content())
            .as_deref(),
        Some("Avaunt, you cullion!")
    );
    let p = presence_from(&mut c[0], &occ("mod", "bob")).await;
    assert!(has_code(&p, "307") && !has_code(&p, "110"), "{p}");
    // Kicking oneself: conflict.
    let r = admin(
        &mut c[0],
        "mod",
        "set",
        vec![aitem(&[("nick", "alice"), ("role", "none")])],
    )
    .await;
    assert_eq!(condition(&r), "conflict");
    // Ban: 301, and the outcast cannot come back.
    join(&mut c[1], "mod", "bob").await;
    let r = admin(
        &mut c[0],
        "mod",
        "set",
        vec![aitem(&[
            ("jid", "bob@localhost"),
            ("affiliation", "outcast"),
        ])],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let p = presence_from(&mut c[1], &occ("mod", "bob")).await;
    assert!(has_code(&p, "301") && has_code(&p, "110"), "{p}");
    assert_eq!(
        join_refused(&mut c[1], "mod", "bob", muc_x()).await,
        "forbidden"
    );
    let r = admin(
        &mut c[0],
        "mod",
        "get",
        vec![aitem(&[("affiliation", "outcast")])],
    )
    .await;
    let banned = r
        .get_child("query", NS_ADMIN)
        .and_then(|q| q.get_child("item", NS_ADMIN))
        .cloned()
        .expect("item");
    assert_eq!(banned.get_attr("jid"), Some("bob@localhost"));
    // Admins cannot be kicked by a lower affiliation, and an admin cannot ban an owner.
    let r = admin(
        &mut c[0],
        "mod",
        "set",
        vec![aitem(&[
            ("jid", "carol@localhost"),
            ("affiliation", "admin"),
        ])],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    join(&mut c[2], "mod", "carol").await;
    let r = admin(
        &mut c[2],
        "mod",
        "set",
        vec![aitem(&[
            ("jid", "alice@localhost"),
            ("affiliation", "outcast"),
        ])],
    )
    .await;
    assert_eq!(condition(&r), "not-allowed");
    let r = admin(
        &mut c[2],
        "mod",
        "set",
        vec![aitem(&[("nick", "alice"), ("role", "none")])],
    )
    .await;
    assert_eq!(condition(&r), "not-allowed");
    let r = admin(
        &mut c[2],
        "mod",
        "set",
        vec![aitem(&[
            ("jid", "dave@localhost"),
            ("affiliation", "admin"),
        ])],
    )
    .await;
    assert_eq!(condition(&r), "forbidden");
}

#[tokio::test]
async fn full_rooms_and_destruction() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    create(&mut c[0], "small", "alice").await;
    let r = configure(&mut c[0], "small", &[("muc#roomconfig_maxusers", "2")]).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    join(&mut c[1], "small", "bob").await;
    assert_eq!(
        join_refused(&mut c[2], "small", "carol", muc_x()).await,
        "service-unavailable"
    );
    // Not the owner: forbidden, nothing happens.
    let destroy = |reason: &str| {
        Element::new("query", NS_OWNER).child(
            Element::new("destroy", NS_OWNER)
                .attr("jid", room("elsewhere"))
                .child(Element::new("reason", NS_OWNER).text(reason)),
        )
    };
    let r = iq(&mut c[1], "set", Some(&room("small")), destroy("mine now")).await;
    assert_eq!(condition(&r), "forbidden");
    let r = iq(
        &mut c[0],
        "set",
        Some(&room("small")),
        destroy("Macbeth doth come."),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let p = presence_from(&mut c[1], &occ("small", "bob")).await;
    assert_eq!(p.get_attr("type"), Some("unavailable"));
    let d = user_x(&p)
        .and_then(|x| x.get_child("destroy", NS_USER))
        .expect("destroy");
    assert_eq!(d.get_attr("jid"), Some(room("elsewhere").as_str()));
    assert_eq!(
        d.get_child("reason", NS_USER)
            .map(|r| r.text_content())
            .as_deref(),
        Some("Macbeth doth come.")
    );
    // Only one unavailable each: Bob does not see Alice go.
    assert!(
        never(&mut c[1], 300, |e| e.get_attr("from")
            == Some(occ("small", "alice").as_str()))
        .await
    );
    let r = disco_info(&mut c[2], &room("small")).await;
    assert_eq!(condition(&r), "item-not-found");
}

#[tokio::test]
async fn invitations_and_declines() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    create(&mut c[0], "party", "alice").await;
    let invite = Element::new("message", ns::CLIENT)
        .attr("to", room("party"))
        .attr("id", "inv1")
        .child(
            Element::new("x", NS_USER).child(
                Element::new("invite", NS_USER)
                    .attr("to", "bob@localhost")
                    .child(Element::new("reason", NS_USER).text("come")),
            ),
        );
    c[0].send(&invite).await.expect("send");
    let m = message_from(&mut c[1], &room("party")).await;
    let inv = user_x(&m)
        .and_then(|x| x.get_child("invite", NS_USER))
        .expect("invite");
    assert_eq!(inv.get_attr("from"), Some("alice@localhost"));
    assert_eq!(
        inv.get_child("reason", NS_USER)
            .map(|r| r.text_content())
            .as_deref(),
        Some("come")
    );
    let decline = Element::new("message", ns::CLIENT)
        .attr("to", room("party"))
        .child(
            Element::new("x", NS_USER).child(
                Element::new("decline", NS_USER)
                    .attr("to", "alice@localhost")
                    .child(Element::new("reason", NS_USER).text("busy")),
            ),
        );
    c[1].send(&decline).await.expect("send");
    let m = message_from(&mut c[0], &room("party")).await;
    let d = user_x(&m)
        .and_then(|x| x.get_child("decline", NS_USER))
        .expect("decline");
    assert_eq!(d.get_attr("from"), Some("bob@localhost"));
    // A second decline has no invitation to answer: refused, not relayed.
    c[1].send(&decline).await.expect("send");
    let e = expect(&mut c[1], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "not-acceptable");
    assert!(no_message(&mut c[0], 300).await);
}

#[tokio::test]
async fn disco_of_service_and_rooms() {
    let ts = server().await;
    let mut c = users(&ts, &["alice"]).await;
    let items = iq(
        &mut c[0],
        "get",
        Some(DOMAIN),
        Element::new("query", ns::DISCO_ITEMS),
    )
    .await;
    assert!(format!("{items}").contains(MUC), "{items}");
    let info = disco_info(&mut c[0], MUC).await;
    let q = info.get_child("query", ns::DISCO_INFO).expect("query");
    let id = q.get_child("identity", ns::DISCO_INFO).expect("identity");
    assert_eq!(
        (id.get_attr("category"), id.get_attr("type")),
        (Some("conference"), Some("text"))
    );
    assert!(features(&info).contains(&NS_MUC.to_string()));
    create(&mut c[0], "open", "alice").await;
    create(&mut c[0], "hidden", "alice").await;
    let r = configure(&mut c[0], "hidden", &[("muc#roomconfig_publicroom", "0")]).await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let r = configure(
        &mut c[0],
        "open",
        &[("muc#roomconfig_roomname", "The Open Room")],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let items = iq(
        &mut c[0],
        "get",
        Some(MUC),
        Element::new("query", ns::DISCO_ITEMS),
    )
    .await;
    let listed: Vec<_> = items
        .get_child("query", ns::DISCO_ITEMS)
        .map(|q| {
            q.elements()
                .map(|i| {
                    (
                        i.get_attr("jid").map(str::to_string),
                        i.get_attr("name").map(str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        listed,
        [(Some(room("open")), Some("The Open Room".to_string()))]
    );
    let info = disco_info(&mut c[0], &room("open")).await;
    let f = features(&info);
    for want in [
        NS_MUC,
        "muc_public",
        "muc_temporary",
        "muc_open",
        "muc_unsecured",
        "muc_unmoderated",
        "muc_semianonymous",
    ] {
        assert!(f.contains(&want.to_string()), "{want} in {info}");
    }
    let s = format!("{info}");
    assert!(
        s.contains("muc#roominfo") && s.contains("The Open Room"),
        "{s}"
    );
    let info = disco_info(&mut c[0], &room("hidden")).await;
    assert!(features(&info).contains(&"muc_hidden".to_string()));
}

async fn lost_session_leaves(ts: TestServer) {
    let mut c = users(&ts, &["alice", "bob"]).await;
    create(&mut c[0], "ghosts", "alice").await;
    join(&mut c[1], "ghosts", "bob").await;
    presence_from(&mut c[0], &occ("ghosts", "bob")).await;
    // Bob's connection drops without unavailable presence.
    let bob = c.pop().expect("bob");
    drop(bob);
    let p = presence_from(&mut c[0], &occ("ghosts", "bob")).await;
    assert_eq!(p.get_attr("type"), Some("unavailable"));
    assert_eq!(item(&p).get_attr("role"), Some("none"));
    // His nick is free again.
    let mut bob = ts.login_available("bob").await;
    join(&mut bob, "ghosts", "bob").await;
}

#[tokio::test]
async fn lost_sessions_leave_their_rooms() {
    lost_session_leaves(server().await).await;
}

/// Without the presence module nobody sends unavailable presence for a lost session: the
/// room's own `session_closed` listener takes the occupant out.
#[tokio::test]
async fn lost_sessions_leave_without_the_presence_module() {
    let ts = TestServer::start_with_modules(confab_muc::all(), |c| {
        c.modules.disabled = vec!["presence".into()];
    })
    .await;
    lost_session_leaves(ts).await;
}

#[tokio::test]
async fn persistent_rooms_survive_a_restart() {
    let mut ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    let alice_id = occupant_id(&create(&mut c[0], "keep", "alice").await);
    let r = configure(
        &mut c[0],
        "keep",
        &[
            ("muc#roomconfig_persistentroom", "1"),
            ("muc#roomconfig_roomname", "Kept"),
            ("muc#roomconfig_membersonly", "1"),
        ],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    let r = admin(
        &mut c[0],
        "keep",
        "set",
        vec![aitem(&[
            ("jid", "bob@localhost"),
            ("affiliation", "member"),
        ])],
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"));
    c[0].send(
        &Element::new("message", ns::CLIENT)
            .attr("to", room("keep"))
            .attr("type", "groupchat")
            .child(Element::new("subject", ns::CLIENT).text("Kept subject")),
    )
    .await
    .expect("send");
    message_from(&mut c[0], &occ("keep", "alice")).await;
    say(&mut c[0], "keep", "alice", "kept message").await;
    leave(&mut c[0], "keep", "alice").await;
    // Empty but persistent: still there.
    let info = disco_info(&mut c[1], &room("keep")).await;
    assert!(
        features(&info).contains(&"muc_persistent".to_string()),
        "{info}"
    );
    drop(c);
    ts.server.take().expect("running").shutdown().await;
    let server = confab_tests::start_server(test_config(ts.dir.path()), confab_muc::all())
        .await
        .expect("restart");
    ts.addr = server.c2s_addr().expect("addr");
    ts.tls_addr = server.c2s_tls_addr().expect("tls");
    ts.server = Some(server);
    let mut bob = ts.login_available("bob").await;
    let got = join(&mut bob, "keep", "bob").await;
    let me = got.iter().find(|e| has_code(e, "110")).expect("self");
    assert_eq!(item(me).get_attr("affiliation"), Some("member"));
    let subject = got
        .last()
        .and_then(|m| m.get_child("subject", ns::CLIENT))
        .map(|s| s.text_content());
    assert_eq!(subject.as_deref(), Some("Kept subject"));
    let info = disco_info(&mut bob, &room("keep")).await;
    assert!(format!("{info}").contains("Kept"), "{info}");
    // The archive and the occupant ids outlive the restart.
    let (r, _) = query_archive(&mut bob, "keep", mam_query(&[], &[])).await;
    assert_eq!(bodies(&r), ["kept message"]);
    let mut alice = ts.login_available("alice").await;
    let got = join(&mut alice, "keep", "alice").await;
    let me = got.iter().find(|e| has_code(e, "110")).expect("self");
    assert_eq!(occupant_id(me), alice_id);
    // Destroying it removes it from storage too.
    let r = iq(
        &mut alice,
        "set",
        Some(&room("keep")),
        Element::new("query", NS_OWNER).child(Element::new("destroy", NS_OWNER)),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let rows = ts
        .server()
        .ctx()
        .stores
        .data
        .list_host_data(MUC, "muc")
        .await
        .expect("list");
    assert!(rows.is_empty(), "{rows:?}");
    let archive = ts
        .server()
        .ctx()
        .stores
        .room_archive
        .query_room_archive(
            MUC,
            "keep",
            &confab_store::ArchiveQuery {
                max: 10,
                ..Default::default()
            },
        )
        .await
        .expect("query")
        .expect("page");
    assert!(archive.items.is_empty(), "{archive:?}");
}

#[tokio::test]
async fn creation_policy_and_limits() {
    let ts = server_with(|m| {
        m.creation = Creation::Admins;
        m.admins = vec!["alice@localhost".into()];
        m.max_rooms_per_user = 1;
        m.message_burst = 2;
        m.message_rate = 0.001;
    })
    .await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    assert_eq!(
        join_refused(&mut c[1], "bobs", "bob", muc_x()).await,
        "not-allowed"
    );
    create(&mut c[0], "one", "alice").await;
    assert_eq!(
        join_refused(&mut c[0], "two", "alice", muc_x()).await,
        "not-allowed"
    );
    // Two messages at once, then the rate applies.
    for i in 0..2 {
        c[0].send(&groupchat("one", &format!("m{i}")))
            .await
            .expect("send");
        message_from(&mut c[0], &occ("one", "alice")).await;
    }
    c[0].send(&groupchat("one", "too many"))
        .await
        .expect("send");
    let e = expect(&mut c[0], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "policy-violation");
}

#[tokio::test]
async fn self_ping_and_other_iqs_to_occupants() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    create(&mut c[0], "ping", "alice").await;
    let r = iq(
        &mut c[0],
        "get",
        Some(&occ("ping", "alice")),
        Element::new("ping", ns::PING),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let r = iq(
        &mut c[1],
        "get",
        Some(&occ("ping", "alice")),
        Element::new("ping", ns::PING),
    )
    .await;
    assert_eq!(condition(&r), "not-acceptable");
    // XEP-0410: advertised; leaving, a room that does not exist: not joined.
    assert!(features(&disco_info(&mut c[0], &room("ping")).await)
        .contains(&"http://jabber.org/protocol/muc#self-ping-optimization".to_string()));
    let r = iq(
        &mut c[1],
        "get",
        Some(&occ("nosuchroom", "bob")),
        Element::new("ping", ns::PING),
    )
    .await;
    assert_eq!(condition(&r), "not-acceptable");
    join(&mut c[1], "ping", "bob").await;
    let r = iq(
        &mut c[1],
        "get",
        Some(&occ("ping", "bob")),
        Element::new("ping", ns::PING),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    leave(&mut c[1], "ping", "bob").await;
    let r = iq(
        &mut c[1],
        "get",
        Some(&occ("ping", "bob")),
        Element::new("ping", ns::PING),
    )
    .await;
    assert_eq!(condition(&r), "not-acceptable");
}

const MAM: &str = "urn:xmpp:mam:2";
const RSM: &str = "http://jabber.org/protocol/rsm";
const SID: &str = "urn:xmpp:sid:0";
const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
const MODERATE: &str = "urn:xmpp:message-moderate:1";
const RETRACT: &str = "urn:xmpp:message-retract:1";

/// A MAM query: the form fields, then RSM children (`max`, `after`, `before`).
fn mam_query(fields: &[(&str, &str)], set: &[(&str, &str)]) -> Element {
    let mut q = Element::new("query", MAM).attr("queryid", "q1");
    if !fields.is_empty() {
        let mut x = Element::new("x", XDATA).attr("type", "submit").child(
            Element::new("field", XDATA)
                .attr("var", "FORM_TYPE")
                .child(Element::new("value", XDATA).text(MAM)),
        );
        for (var, value) in fields {
            x.push_child(
                Element::new("field", XDATA)
                    .attr("var", *var)
                    .child(Element::new("value", XDATA).text(*value)),
            );
        }
        q.push_child(x);
    }
    if !set.is_empty() {
        let mut s = Element::new("set", RSM);
        for (name, value) in set {
            s.push_child(Element::new(*name, RSM).text(*value));
        }
        q.push_child(s);
    }
    q
}

/// Sends a MAM query to a room; returns the forwarded messages in order and the IQ reply.
async fn query_archive(
    c: &mut ClientSession,
    room_name: &str,
    q: Element,
) -> (Vec<Element>, Element) {
    let id = format!("mam-{}", rand_id());
    c.send(
        &Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", id.clone())
            .attr("to", room(room_name))
            .child(q),
    )
    .await
    .expect("send");
    let mut results = Vec::new();
    loop {
        let e = recv(c).await;
        if e.name == "iq" && e.get_attr("id") == Some(id.as_str()) {
            return (results, e);
        }
        if let Some(r) = e.get_child("result", MAM) {
            assert_eq!(e.get_attr("from"), Some(room(room_name).as_str()), "{e}");
            assert_eq!(r.get_attr("queryid"), Some("q1"), "{e}");
            results.push(e);
        }
    }
}

/// The archived message inside a MAM result.
fn forwarded(result: &Element) -> &Element {
    result
        .get_child("result", MAM)
        .and_then(|r| r.get_child("forwarded", "urn:xmpp:forward:0"))
        .and_then(|f| f.get_child("message", ns::CLIENT))
        .unwrap_or_else(|| panic!("no forwarded message in {result}"))
}

fn result_id(result: &Element) -> String {
    result
        .get_child("result", MAM)
        .and_then(|r| r.get_attr("id"))
        .map(str::to_string)
        .unwrap_or_default()
}

fn bodies(results: &[Element]) -> Vec<String> {
    results
        .iter()
        .map(|r| body(forwarded(r)).unwrap_or_default())
        .collect()
}

fn fin(reply: &Element) -> &Element {
    reply
        .get_child("fin", MAM)
        .unwrap_or_else(|| panic!("no fin in {reply}"))
}

fn complete(reply: &Element) -> bool {
    fin(reply).get_attr("complete") == Some("true")
}

fn rsm_last(reply: &Element) -> String {
    fin(reply)
        .get_child("set", RSM)
        .and_then(|s| s.get_child("last", RSM))
        .map(Element::text_content)
        .unwrap_or_default()
}

/// The room's stanza-id on a message it sent (exactly one must be there).
fn room_sid(m: &Element, room_name: &str) -> String {
    let ids: Vec<&Element> = m
        .elements()
        .filter(|c| c.is("stanza-id", SID) && c.get_attr("by") == Some(room(room_name).as_str()))
        .collect();
    assert_eq!(ids.len(), 1, "one stanza-id by the room in {m}");
    ids[0].get_attr("id").unwrap_or_default().to_string()
}

fn occupant_id(e: &Element) -> String {
    let ids: Vec<&Element> = e
        .elements()
        .filter(|c| c.is("occupant-id", OCCUPANT_ID))
        .collect();
    assert_eq!(ids.len(), 1, "one occupant-id in {e}");
    ids[0].get_attr("id").unwrap_or_default().to_string()
}

/// Sends a groupchat message and returns it as reflected to the sender.
async fn say(c: &mut ClientSession, room_name: &str, nick: &str, text: &str) -> Element {
    c.send(&groupchat(room_name, text)).await.expect("send");
    expect(c, "reflected message", |e| {
        e.name == "message"
            && e.get_attr("from") == Some(occ(room_name, nick).as_str())
            && body(e).as_deref() == Some(text)
    })
    .await
}

#[tokio::test]
async fn room_archive_is_queryable_with_mam() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    create(&mut c[0], "arch", "alice").await;
    assert!(features(&disco_info(&mut c[0], &room("arch")).await).contains(&MAM.to_string()));
    join(&mut c[1], "arch", "bob").await;
    let mut sids = Vec::new();
    for i in 0..4 {
        let m = say(&mut c[0], "arch", "alice", &format!("m{i}")).await;
        sids.push(room_sid(&m, "arch"));
    }
    // A subject change is not archived; a message from Bob is.
    c[0].send(
        &Element::new("message", ns::CLIENT)
            .attr("to", room("arch"))
            .attr("type", "groupchat")
            .child(Element::new("subject", ns::CLIENT).text("news")),
    )
    .await
    .expect("send");
    let m = say(&mut c[1], "arch", "bob", "b0").await;
    sids.push(room_sid(&m, "arch"));

    // Carol never entered the open room: she may read it, oldest first, each result with
    // the occupant JID, the stanza-id as its id, a delay, and no `to`.
    let (r, reply) = query_archive(&mut c[2], "arch", mam_query(&[], &[])).await;
    assert_eq!(reply.get_attr("type"), Some("result"), "{reply}");
    assert_eq!(bodies(&r), ["m0", "m1", "m2", "m3", "b0"]);
    assert!(complete(&reply));
    assert_eq!(r.iter().map(result_id).collect::<Vec<_>>(), sids);
    let first = forwarded(&r[0]);
    assert_eq!(first.get_attr("from"), Some(occ("arch", "alice").as_str()));
    assert_eq!(first.get_attr("type"), Some("groupchat"));
    assert_eq!(first.get_attr("to"), None);
    assert!(r[0]
        .get_child("result", MAM)
        .and_then(|x| x.get_child("forwarded", "urn:xmpp:forward:0"))
        .and_then(|f| f.get_child("delay", ns::DELAY))
        .is_some());
    // Semi-anonymous: no real JID for Carol.
    assert!(user_x(first).is_none(), "{first}");
    // The owner (an admin of the room) sees who sent it.
    let (r, _) = query_archive(&mut c[0], "arch", mam_query(&[], &[("max", "1")])).await;
    assert_eq!(
        user_x(forwarded(&r[0]))
            .and_then(|x| x.get_child("item", NS_USER))
            .and_then(|i| i.get_attr("jid")),
        Some("alice@localhost")
    );

    // Paging: forwards, after the last of a page, and the last page (empty <before/>).
    let (r, reply) = query_archive(&mut c[2], "arch", mam_query(&[], &[("max", "2")])).await;
    assert_eq!(bodies(&r), ["m0", "m1"]);
    assert!(!complete(&reply));
    let last = rsm_last(&reply);
    let (r, reply) = query_archive(
        &mut c[2],
        "arch",
        mam_query(&[], &[("max", "2"), ("after", &last)]),
    )
    .await;
    assert_eq!(bodies(&r), ["m2", "m3"]);
    assert!(!complete(&reply));
    let (r, reply) = query_archive(
        &mut c[2],
        "arch",
        mam_query(&[], &[("max", "2"), ("before", "")]),
    )
    .await;
    assert_eq!(bodies(&r), ["m3", "b0"]);
    assert!(!complete(&reply));
    // Filters: one occupant's messages, a time range.
    let (r, _) = query_archive(
        &mut c[2],
        "arch",
        mam_query(&[("with", &occ("arch", "bob"))], &[]),
    )
    .await;
    assert_eq!(bodies(&r), ["b0"]);
    let (r, reply) = query_archive(
        &mut c[2],
        "arch",
        mam_query(&[("start", "2100-01-01T00:00:00Z")], &[]),
    )
    .await;
    assert!(r.is_empty() && complete(&reply));
    let (r, _) = query_archive(
        &mut c[2],
        "arch",
        mam_query(&[("end", "2100-01-01T00:00:00Z")], &[]),
    )
    .await;
    assert_eq!(r.len(), 5);
    // Bad input: a form with a wrong value, an unknown id, a JID of no occupant.
    for (q, cond) in [
        (mam_query(&[("start", "yesterday")], &[]), "bad-request"),
        (mam_query(&[("ids", "x")], &[]), "item-not-found"),
        (
            mam_query(&[("include-groupchat", "true")], &[]),
            "feature-not-implemented",
        ),
        (mam_query(&[], &[("after", "nope")]), "item-not-found"),
        // Carol may not see real JIDs.
        (mam_query(&[("with", "bob@localhost")], &[]), "forbidden"),
    ] {
        let (r, reply) = query_archive(&mut c[2], "arch", q).await;
        assert!(r.is_empty());
        assert_eq!(condition(&reply), cond, "{reply}");
    }

    // Archiving off: no feature, no query, nothing kept; on again: the old messages are
    // still there, the ones sent meanwhile are not.
    let r = configure(&mut c[0], "arch", &[("mam", "0")]).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    assert!(!features(&disco_info(&mut c[0], &room("arch")).await).contains(&MAM.to_string()));
    let (_, reply) = query_archive(&mut c[2], "arch", mam_query(&[], &[])).await;
    assert_eq!(condition(&reply), "service-unavailable");
    say(&mut c[0], "arch", "alice", "off the record").await;
    configure(&mut c[0], "arch", &[("mam", "1")]).await;
    let (r, _) = query_archive(&mut c[2], "arch", mam_query(&[], &[])).await;
    assert_eq!(r.len(), 5);

    // Password-protected: a query carries no password, so only those in the room (and
    // its owners) may read.
    configure(
        &mut c[0],
        "arch",
        &[
            ("muc#roomconfig_passwordprotectedroom", "1"),
            ("muc#roomconfig_roomsecret", "cauldron"),
        ],
    )
    .await;
    let (r, reply) = query_archive(&mut c[2], "arch", mam_query(&[], &[])).await;
    assert!(r.is_empty());
    assert_eq!(condition(&reply), "forbidden");
    for i in [0, 1] {
        let (r, reply) = query_archive(&mut c[i], "arch", mam_query(&[], &[])).await;
        assert_eq!(r.len(), 5, "{reply}");
    }
    configure(
        &mut c[0],
        "arch",
        &[("muc#roomconfig_passwordprotectedroom", "0")],
    )
    .await;

    // Members-only: the archive is the members'.
    configure(&mut c[0], "arch", &[("muc#roomconfig_membersonly", "1")]).await;
    let (r, reply) = query_archive(&mut c[2], "arch", mam_query(&[], &[])).await;
    assert!(r.is_empty());
    assert_eq!(condition(&reply), "forbidden");
    let (r, _) = query_archive(&mut c[0], "arch", mam_query(&[], &[])).await;
    assert_eq!(r.len(), 5);

    // A room that is gone takes its archive with it: the same name again starts empty.
    leave(&mut c[0], "arch", "alice").await;
    create(&mut c[0], "arch", "alice").await;
    let (r, reply) = query_archive(&mut c[2], "arch", mam_query(&[], &[])).await;
    assert!(r.is_empty() && complete(&reply), "{reply}");
}

#[tokio::test]
async fn the_server_default_turns_archiving_off() {
    let ts = server_with(|m| m.mam = false).await;
    let mut c = users(&ts, &["alice"]).await;
    create(&mut c[0], "quiet", "alice").await;
    assert!(!features(&disco_info(&mut c[0], &room("quiet")).await).contains(&MAM.to_string()));
    say(&mut c[0], "quiet", "alice", "hello").await;
    let (_, reply) = query_archive(&mut c[0], "quiet", mam_query(&[], &[])).await;
    assert_eq!(condition(&reply), "service-unavailable");
}

#[tokio::test]
async fn stanza_ids_and_occupant_ids() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    create(&mut c[0], "ids", "alice").await;
    create(&mut c[0], "other", "alice").await;
    let f = features(&disco_info(&mut c[0], &room("ids")).await);
    for feature in [SID, OCCUPANT_ID] {
        assert!(f.contains(&feature.to_string()), "{feature}");
    }
    // Bob's presence carries his occupant id, to himself and to others; a forged one in
    // his own presence is dropped.
    let forged_presence = join_el("ids", "bob", muc_x())
        .child(Element::new("occupant-id", OCCUPANT_ID).attr("id", "forged"));
    c[1].send(&forged_presence).await.expect("send");
    let own = expect(&mut c[1], "own presence", |e| {
        e.name == "presence" && has_code(e, "110")
    })
    .await;
    let bob_id = occupant_id(&own);
    assert_ne!(bob_id, "forged");
    let seen = presence_from(&mut c[0], &occ("ids", "bob")).await;
    assert_eq!(occupant_id(&seen), bob_id);

    // A message with a forged stanza-id and occupant-id: the room's replace them.
    let mut m = groupchat("ids", "hi");
    m.push_child(
        Element::new("stanza-id", SID)
            .attr("id", "fake")
            .attr("by", room("ids")),
    );
    m.push_child(Element::new("occupant-id", OCCUPANT_ID).attr("id", "forged"));
    c[1].send(&m).await.expect("send");
    let mut sid = None;
    for cl in c.iter_mut() {
        let got = message_from(cl, &occ("ids", "bob")).await;
        let s = room_sid(&got, "ids");
        assert_ne!(s, "fake");
        assert_eq!(*sid.get_or_insert(s.clone()), s, "the same id for everyone");
        assert_eq!(occupant_id(&got), bob_id);
    }
    // Private messages carry it too.
    c[1].send(
        &Element::new("message", ns::CLIENT)
            .attr("to", occ("ids", "alice"))
            .attr("type", "chat")
            .child(Element::new("body", ns::CLIENT).text("psst")),
    )
    .await
    .expect("send");
    let pm = message_from(&mut c[0], &occ("ids", "bob")).await;
    assert_eq!(occupant_id(&pm), bob_id);

    // Stable for the user whatever the nick, different for another user and another room.
    leave(&mut c[1], "ids", "bob").await;
    let got = join(&mut c[1], "ids", "robert").await;
    let own = got
        .iter()
        .find(|e| e.name == "presence" && has_code(e, "110"))
        .expect("own presence");
    assert_eq!(occupant_id(own), bob_id);
    let alice = got
        .iter()
        .find(|e| e.get_attr("from") == Some(occ("ids", "alice").as_str()))
        .expect("alice's presence");
    assert_ne!(occupant_id(alice), bob_id);
    let got = join(&mut c[1], "other", "bob").await;
    let own = got
        .iter()
        .find(|e| e.name == "presence" && has_code(e, "110"))
        .expect("own presence");
    assert_ne!(occupant_id(own), bob_id);
}

#[tokio::test]
async fn moderators_retract_messages() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    let alice_id = occupant_id(&create(&mut c[0], "mod", "alice").await);
    assert!(features(&disco_info(&mut c[0], &room("mod")).await).contains(&MODERATE.to_string()));
    join(&mut c[1], "mod", "bob").await;
    let bad = say(&mut c[1], "mod", "bob", "something rude").await;
    let sid = room_sid(&bad, "mod");
    let _ = message_from(&mut c[0], &occ("mod", "bob")).await;
    let keep = say(&mut c[1], "mod", "bob", "something nice").await;
    let _ = message_from(&mut c[0], &occ("mod", "bob")).await;
    let moderate = |id: &str, retract: bool| {
        let mut m = Element::new("moderate", MODERATE).attr("id", id);
        if retract {
            m.push_child(Element::new("retract", RETRACT));
        }
        m.child(Element::new("reason", MODERATE).text("rude"))
    };

    // Bob is no moderator; an unknown id and a request without <retract/> change nothing.
    let r = iq(&mut c[1], "set", Some(&room("mod")), moderate(&sid, true)).await;
    assert_eq!(condition(&r), "forbidden");
    let r = iq(&mut c[0], "set", Some(&room("mod")), moderate("nope", true)).await;
    assert_eq!(condition(&r), "item-not-found");
    let r = iq(&mut c[0], "set", Some(&room("mod")), moderate(&sid, false)).await;
    assert_ne!(r.get_attr("type"), Some("result"), "{r}");
    assert!(no_message(&mut c[1], 200).await);

    // Alice retracts it: everyone is told, with her occupant JID and id and the reason.
    c[0].send(
        &Element::new("iq", ns::CLIENT)
            .attr("type", "set")
            .attr("id", "mod-1")
            .attr("to", room("mod"))
            .child(moderate(&sid, true)),
    )
    .await
    .expect("send");
    for (i, cl) in c.iter_mut().take(2).enumerate() {
        let m = message_from(cl, &room("mod")).await;
        if i == 0 {
            let r = expect(cl, "iq reply", |e| e.get_attr("id") == Some("mod-1")).await;
            assert_eq!(r.get_attr("type"), Some("result"), "{r}");
        }
        let retract = m
            .get_child("retract", RETRACT)
            .unwrap_or_else(|| panic!("{m}"));
        assert_eq!(retract.get_attr("id"), Some(sid.as_str()));
        let by = retract.get_child("moderated", MODERATE).expect("moderated");
        assert_eq!(by.get_attr("by"), Some(occ("mod", "alice").as_str()));
        assert_eq!(occupant_id(by), alice_id);
        assert_eq!(
            retract
                .get_child("reason", RETRACT)
                .map(Element::text_content)
                .as_deref(),
            Some("rude")
        );
    }
    // The archive keeps a tombstone (and the retraction); history no longer replays it.
    let (r, _) = query_archive(&mut c[2], "mod", mam_query(&[], &[])).await;
    assert_eq!(r.len(), 3, "{r:?}");
    let tomb = forwarded(&r[0]);
    assert_eq!(result_id(&r[0]), sid);
    assert!(body(tomb).is_none(), "{tomb}");
    assert!(tomb.get_child("retracted", RETRACT).is_some(), "{tomb}");
    assert_eq!(tomb.get_attr("from"), Some(occ("mod", "bob").as_str()));
    assert_eq!(body(forwarded(&r[1])).as_deref(), Some("something nice"));
    assert_eq!(result_id(&r[1]), room_sid(&keep, "mod"));
    assert!(forwarded(&r[2]).get_child("retract", RETRACT).is_some());
    let got = join(&mut c[2], "mod", "carol").await;
    let history: Vec<String> = got.iter().filter_map(body).collect();
    assert_eq!(history, ["something nice"]);
    // Once is enough.
    let r = iq(&mut c[0], "set", Some(&room("mod")), moderate(&sid, true)).await;
    assert_eq!(condition(&r), "item-not-found");
}

/// XEP-0424 in a room: an author retracts its own message; nobody else's.
#[tokio::test]
async fn occupants_retract_their_own_messages() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol", "dave"]).await;
    create(&mut c[0], "ret", "alice").await;
    let info = features(&disco_info(&mut c[0], &room("ret")).await);
    assert!(info.contains(&RETRACT.to_string()), "{info:?}");
    assert!(info.contains(&format!("{RETRACT}#tombstone")), "{info:?}");
    join(&mut c[1], "ret", "bob").await;
    join(&mut c[2], "ret", "carol").await;
    let oops = say(&mut c[1], "ret", "bob", "oops, wrong room").await;
    let sid = room_sid(&oops, "ret");
    let bob_id = occupant_id(&oops);
    for cl in [0, 2] {
        message_from(&mut c[cl], &occ("ret", "bob")).await;
    }
    let retraction = |id: &str| {
        Element::new("message", ns::CLIENT)
            .attr("to", room("ret"))
            .attr("type", "groupchat")
            .attr("id", format!("retract-{}", rand_id()))
            .child(Element::new("retract", RETRACT).attr("id", id))
            .child(Element::new("fallback", "urn:xmpp:fallback:0").attr("for", RETRACT))
            .child(Element::new("body", ns::CLIENT).text("/me retracted a message"))
    };

    // Carol may not retract Bob's message; an unknown id is not found. Nothing reaches the others.
    c[2].send(&retraction(&sid)).await.expect("send");
    let e = expect(&mut c[2], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "forbidden", "{e}");
    c[1].send(&retraction("no-such-id")).await.expect("send");
    let e = expect(&mut c[1], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "item-not-found", "{e}");
    assert!(no_message(&mut c[0], 200).await);

    // Bob retracts it: everyone gets the retraction from his occupant JID, with his
    // occupant id and a stanza-id of the room's.
    let r = retraction(&sid);
    let rid = r.get_attr("id").unwrap_or_default().to_string();
    c[1].send(&r).await.expect("send");
    let mut retraction_sid = String::new();
    for cl in c.iter_mut().take(3) {
        let m = message_from(cl, &occ("ret", "bob")).await;
        retraction_sid = room_sid(&m, "ret");
        let retract = m
            .get_child("retract", RETRACT)
            .unwrap_or_else(|| panic!("{m}"));
        assert_eq!(retract.get_attr("id"), Some(sid.as_str()));
        assert_eq!(m.get_attr("id"), Some(rid.as_str()));
        assert_eq!(occupant_id(&m), bob_id);
    }
    // The archive keeps a tombstone pointing at the retraction, and the retraction.
    let (r, _) = query_archive(&mut c[0], "ret", mam_query(&[], &[])).await;
    assert_eq!(r.len(), 2, "{r:?}");
    let tomb = forwarded(&r[0]);
    assert_eq!(result_id(&r[0]), sid);
    assert!(body(tomb).is_none(), "{tomb}");
    let retracted = tomb
        .get_child("retracted", RETRACT)
        .unwrap_or_else(|| panic!("{tomb}"));
    assert_eq!(retracted.get_attr("id"), Some(rid.as_str()));
    assert_eq!(occupant_id(tomb), bob_id);
    assert!(forwarded(&r[1]).get_child("retract", RETRACT).is_some());
    // A newcomer's history no longer has it; a second retraction finds nothing.
    let got = join(&mut c[3], "ret", "dave").await;
    assert!(
        got.iter().filter_map(body).all(|b| b != "oops, wrong room"),
        "{got:?}"
    );
    c[1].send(&retraction(&sid)).await.expect("send");
    let e = expect(&mut c[1], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "item-not-found", "{e}");
    // A retraction is not itself retracted.
    c[1].send(&retraction(&retraction_sid)).await.expect("send");
    let e = expect(&mut c[1], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "not-acceptable", "{e}");

    // Without an archive the history decides, with the same rules.
    let r = configure(&mut c[0], "ret", &[("mam", "0")]).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let m = say(&mut c[1], "ret", "bob", "unarchived").await;
    let sid = room_sid(&m, "ret");
    c[2].send(&retraction(&sid)).await.expect("send");
    let e = expect(&mut c[2], "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "forbidden", "{e}");
    c[1].send(&retraction(&sid)).await.expect("send");
    let m = expect(&mut c[3], "retraction", |e| {
        e.get_child("retract", RETRACT).is_some()
    })
    .await;
    assert_eq!(m.get_attr("from"), Some(occ("ret", "bob").as_str()));
}

async fn archive_metadata(c: &mut ClientSession, room_name: &str) -> Element {
    iq(
        c,
        "get",
        Some(&room(room_name)),
        Element::new("metadata", MAM),
    )
    .await
}

/// XEP-0313 §6: `with` names a real JID for those who may see real JIDs (whatever the
/// nick), and the room announces `#extended` with its archive's metadata.
#[tokio::test]
async fn room_archive_by_real_jid_and_metadata() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    create(&mut c[0], "real", "alice").await;
    let info = features(&disco_info(&mut c[0], &room("real")).await);
    assert!(info.contains(&format!("{MAM}#extended")), "{info:?}");
    let r = archive_metadata(&mut c[0], "real").await;
    let m = r
        .get_child("metadata", MAM)
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(m.elements().count(), 0, "an empty archive: {r}");
    join(&mut c[1], "real", "bob").await;
    join(&mut c[2], "real", "carol").await;
    let b1 = say(&mut c[1], "real", "bob", "b1").await;
    say(&mut c[2], "real", "carol", "c1").await;
    c[1].send(&Element::new("presence", ns::CLIENT).attr("to", occ("real", "robert")))
        .await
        .expect("send");
    presence_from(&mut c[1], &occ("real", "robert")).await;
    let b2 = say(&mut c[1], "real", "robert", "b2").await;

    // The owner sees real JIDs: bob's messages under both nicks, by bare or full JID.
    for with in ["bob@localhost".to_string(), c[1].jid.to_string()] {
        let (r, reply) = query_archive(
            &mut c[0],
            "real",
            mam_query(&[("with", with.as_str())], &[]),
        )
        .await;
        assert_eq!(bodies(&r), ["b1", "b2"], "{with}: {reply}");
    }
    // Carol does not: a real JID is refused, an occupant JID is a nick.
    let q = mam_query(&[("with", "bob@localhost")], &[]);
    let (r, reply) = query_archive(&mut c[2], "real", q).await;
    assert!(r.is_empty());
    assert_eq!(condition(&reply), "forbidden", "{reply}");
    let robert = occ("real", "robert");
    let (r, _) = query_archive(&mut c[2], "real", mam_query(&[("with", &robert)], &[])).await;
    assert_eq!(bodies(&r), ["b2"]);
    // The room's bare JID is no occupant.
    let (_, reply) = query_archive(
        &mut c[0],
        "real",
        mam_query(&[("with", &room("real"))], &[]),
    )
    .await;
    assert_eq!(condition(&reply), "bad-request", "{reply}");

    // Metadata: the first and the last message.
    let r = archive_metadata(&mut c[2], "real").await;
    let m = r
        .get_child("metadata", MAM)
        .unwrap_or_else(|| panic!("{r}"));
    let id = |name: &str| {
        m.get_child(name, MAM)
            .and_then(|e| e.get_attr("id"))
            .map(str::to_string)
    };
    assert_eq!(id("start"), Some(room_sid(&b1, "real")), "{r}");
    assert_eq!(id("end"), Some(room_sid(&b2, "real")), "{r}");
    // The form lists the extended fields.
    let r = iq(
        &mut c[2],
        "get",
        Some(&room("real")),
        Element::new("query", MAM),
    )
    .await;
    assert!(r.to_string().contains("before-id"), "{r}");
}

/// `[muc] mam_retention_days`: what is older goes (swept at start and hourly), the rest
/// stays.
#[tokio::test]
async fn room_archive_retention() {
    use confab_muc::room::RoomConfig;
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path());
    config
        .update_section("muc", |m: &mut MucConfig| m.mam_retention_days = 2)
        .expect("muc section");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    let day = 86_400 * 1_000_000;
    {
        let stores = confab_server::open_stores(&config).await.expect("stores");
        let room_config = RoomConfig {
            persistent: true,
            ..RoomConfig::default()
        };
        let (kind, key, value) =
            confab_muc::stored_room("old", room_config, Default::default(), None).expect("stored");
        stores
            .data
            .set_host_data(MUC, kind, &key, &value)
            .await
            .expect("write");
        for (id, age) in [("ancient", 30 * day), ("stale", 3 * day), ("fresh", day)] {
            let msg = confab_store::RoomMessage {
                id: id.into(),
                nick: "bob".into(),
                jid: "bob@localhost".into(),
                stamp: now - age,
                stanza: format!(
                    "<message xmlns='jabber:client' from='{}' type='groupchat'><body>{id}</body></message>",
                    occ("old", "bob")
                ),
            };
            stores
                .room_archive
                .append_room_message(MUC, "old", &msg)
                .await
                .expect("append");
        }
    }
    let server = start_server(config, confab_muc::all())
        .await
        .expect("start");
    let ts = TestServer {
        addr: server.c2s_addr().expect("addr"),
        tls_addr: server.c2s_tls_addr().expect("tls addr"),
        server: Some(server),
        dir,
    };
    let mut c = users(&ts, &["alice"]).await;
    let (r, _) = query_archive(&mut c[0], "old", mam_query(&[], &[])).await;
    assert_eq!(bodies(&r), ["fresh"]);
}

/// A room's messages go out while the database cannot take its archive rows (the rows
/// are written off the room's lock, in order), and are in the archive once it can.
#[tokio::test]
async fn a_busy_database_does_not_hold_up_a_room() {
    use sqlx::{AnyConnection, Connection};
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    create(&mut c[0], "busy", "alice").await;
    join(&mut c[1], "busy", "bob").await;
    say(&mut c[0], "busy", "alice", "before").await;
    message_from(&mut c[1], &occ("busy", "alice")).await;
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}", ts.dir.path().join("confab.db").display());
    let mut lock = AnyConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut lock)
        .await
        .expect("database locked");
    // Each message reaches the other occupant while the archive cannot be written.
    for text in ["during 1", "during 2", "during 3"] {
        say(&mut c[0], "busy", "alice", text).await;
        let m = message_from(&mut c[1], &occ("busy", "alice")).await;
        assert_eq!(body(&m).as_deref(), Some(text));
    }
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("unlocked");
    drop(lock);
    let (r, _) = query_archive(&mut c[1], "busy", mam_query(&[], &[])).await;
    assert_eq!(bodies(&r), ["before", "during 1", "during 2", "during 3"]);
}

/// A room an importer stored with `confab_muc::stored_room` (as `confabd import --from
/// openfire` does) is loaded at start and served with its configuration, subject and
/// affiliations.
#[tokio::test]
async fn an_imported_room_is_served() {
    use confab_muc::payloads::Affiliation;
    use confab_muc::room::{RoomConfig, Subject};
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config(dir.path());
    {
        let stores = confab_server::open_stores(&config).await.expect("stores");
        let room_config = RoomConfig {
            name: "The Team".into(),
            persistent: true,
            public: false,
            members_only: true,
            password: Some("s3cret".into()),
            ..RoomConfig::default()
        };
        let affiliations = [
            ("alice@localhost", Affiliation::Owner),
            ("bob@localhost", Affiliation::Member),
        ]
        .into_iter()
        .map(|(j, a)| (j.to_string(), a))
        .collect();
        let subject = Some(Subject {
            text: "Release on Friday".into(),
            nick: None,
            stamp: 1_764_500_100,
        });
        let (kind, key, value) =
            confab_muc::stored_room("team", room_config, affiliations, subject).expect("stored");
        stores
            .data
            .set_host_data(MUC, kind, &key, &value)
            .await
            .expect("write");
    }
    let server = start_server(config, confab_muc::all())
        .await
        .expect("start");
    let ts = TestServer {
        addr: server.c2s_addr().expect("addr"),
        tls_addr: server.c2s_tls_addr().expect("tls addr"),
        server: Some(server),
        dir,
    };
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    let pw = || muc_x().child(Element::new("password", NS_MUC).text("s3cret"));
    let got = join_with(&mut c[0], "team", "alice", pw()).await;
    let me = got
        .iter()
        .find(|e| e.name == "presence" && has_code(e, "110"))
        .expect("self-presence");
    assert_eq!(item(me).get_attr("affiliation"), Some("owner"), "{me}");
    let subject = got
        .last()
        .and_then(|m| m.get_child("subject", ns::CLIENT))
        .map(|s| s.text_content());
    assert_eq!(subject.as_deref(), Some("Release on Friday"));
    let got = join_with(&mut c[1], "team", "bob", pw()).await;
    let me = got
        .iter()
        .find(|e| e.name == "presence" && has_code(e, "110"))
        .expect("self-presence");
    assert_eq!(item(me).get_attr("affiliation"), Some("member"), "{me}");
    assert_eq!(
        join_refused(&mut c[2], "team", "carol", pw()).await,
        "registration-required"
    );
}

const VCARD: &str = "vcard-temp";
const VCARD_UPDATE: &str = "vcard-temp:x:update";
/// XEP-0486's example avatar (an SVG) and its SHA-1.
const SVG_B64: &str = "PHN2ZyB4bWxucz0iaHR0cDovL3d3dy53My5vcmcvMjAwMC9zdmciIHdpZHRoPSIzMiIgaGVpZ2h0PSIzMiI+CiA8cmVjdCB4PSIwIiB5PSIwIiB3aWR0aD0iMzIiIGhlaWdodD0iMzIiIGZpbGw9InJlZCIvPgo8L3N2Zz4K";
const SVG_SHA1: &str = "a31c4bd04de69663cfd7f424a8453f4674da37ff";

fn vcard_with_photo(b64: &str) -> Element {
    Element::new("vCard", VCARD).child(
        Element::new("PHOTO", VCARD)
            .child(Element::new("TYPE", VCARD).text("image/svg+xml"))
            .child(Element::new("BINVAL", VCARD).text(b64)),
    )
}

async fn set_room_vcard(c: &mut ClientSession, room_name: &str, card: Element) -> Element {
    iq(c, "set", Some(&room(room_name)), card).await
}

async fn room_vcard(c: &mut ClientSession, room_name: &str) -> Element {
    let r = iq(
        c,
        "get",
        Some(&room(room_name)),
        Element::new("vCard", VCARD),
    )
    .await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    r.get_child("vCard", VCARD).cloned().expect("a vCard")
}

fn binval(card: &Element) -> Option<String> {
    card.get_child("PHOTO", VCARD)
        .and_then(|p| p.get_child("BINVAL", VCARD))
        .map(|b| b.text_content())
}

/// The `muc#roominfo_avatarhash` values of a room's disco#info.
fn avatar_hashes(info: &Element) -> Option<Vec<String>> {
    let q = info.get_child("query", ns::DISCO_INFO)?;
    let form = q.get_child("x", XDATA)?;
    let field = form
        .elements()
        .find(|f| f.get_attr("var") == Some("muc#roominfo_avatarhash"))?;
    Some(field.elements().map(|v| v.text_content()).collect())
}

/// The presence from the room's bare JID announcing its avatar: the `<photo/>` text.
async fn avatar_presence(c: &mut ClientSession, room_name: &str) -> String {
    let p = presence_from(c, &room(room_name)).await;
    p.get_child("x", VCARD_UPDATE)
        .and_then(|x| x.get_child("photo", VCARD_UPDATE))
        .map(|ph| ph.text_content())
        .unwrap_or_else(|| panic!("no vcard-temp:x:update photo in {p}"))
}

/// A presence from the room's bare JID.
fn is_room_presence(e: &Element, room_name: &str) -> bool {
    e.name == "presence" && e.get_attr("from") == Some(room(room_name).as_str())
}

#[tokio::test]
async fn room_avatars_via_vcard() {
    let ts = server_with(|m| m.max_avatar_bytes = 1024).await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    let [a, b, carol] = &mut c[..] else {
        unreachable!()
    };
    create(a, "pics", "alice").await;
    join(b, "pics", "bob").await;
    presence_from(a, &occ("pics", "bob")).await;
    let info = disco_info(carol, &room("pics")).await;
    assert!(features(&info).contains(&VCARD.to_string()), "{info}");
    assert_eq!(avatar_hashes(&info), None, "no avatar yet: {info}");
    // XEP-0486 §3.1: the service says it supports room avatars.
    let info = disco_info(carol, MUC).await;
    assert!(features(&info).contains(&VCARD.to_string()), "{info}");
    assert_eq!(binval(&room_vcard(carol, "pics").await), None);

    // Only owners set it.
    let r = set_room_vcard(b, "pics", vcard_with_photo(SVG_B64)).await;
    assert_eq!(condition(&r), "forbidden", "{r}");
    let r = set_room_vcard(a, "pics", vcard_with_photo(SVG_B64)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    // Every occupant learns the hash from the room, and that its configuration changed.
    for o in [&mut *a, &mut *b] {
        assert_eq!(avatar_presence(o, "pics").await, SVG_SHA1);
        let m = message_from(o, &room("pics")).await;
        assert!(has_code(&m, "104"), "{m}");
    }
    // Anyone who may see the room reads it, occupant or not; disco lists the hash.
    assert_eq!(
        binval(&room_vcard(carol, "pics").await).as_deref(),
        Some(SVG_B64)
    );
    let info = disco_info(carol, &room("pics")).await;
    assert_eq!(avatar_hashes(&info), Some(vec![SVG_SHA1.to_string()]));
    // Joining, one learns the hash from disco, not from a presence of the room's bare JID.
    join(carol, "pics", "carol").await;
    assert!(never(carol, 300, |e| is_room_presence(e, "pics")).await);

    // Too big (1500 decoded bytes over a 1024 limit), or not base64: refused, the avatar
    // stays as it was and nobody is told anything.
    let r = set_room_vcard(a, "pics", vcard_with_photo(&"AAAA".repeat(500))).await;
    assert_eq!(condition(&r), "not-acceptable", "{r}");
    let r = set_room_vcard(a, "pics", vcard_with_photo("!!not base64!!")).await;
    assert_eq!(condition(&r), "bad-request", "{r}");
    assert_eq!(
        binval(&room_vcard(b, "pics").await).as_deref(),
        Some(SVG_B64)
    );
    assert!(
        never(b, 300, |e| e.get_attr("from")
            == Some(room("pics").as_str()))
        .await
    );

    // An empty vCard removes it: an empty <photo/> tells the occupants.
    let r = set_room_vcard(a, "pics", Element::new("vCard", VCARD)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    assert_eq!(avatar_presence(b, "pics").await, "");
    assert_eq!(binval(&room_vcard(b, "pics").await), None);
    let info = disco_info(b, &room("pics")).await;
    assert_eq!(avatar_hashes(&info), None, "{info}");
}

#[tokio::test]
async fn a_room_avatar_survives_a_restart() {
    let mut ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    create(&mut c[0], "face", "alice").await;
    let r = configure(&mut c[0], "face", &[("muc#roomconfig_persistentroom", "1")]).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let r = set_room_vcard(&mut c[0], "face", vcard_with_photo(SVG_B64)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    leave(&mut c[0], "face", "alice").await;
    drop(c);
    ts.server.take().expect("running").shutdown().await;
    let server = confab_tests::start_server(test_config(ts.dir.path()), confab_muc::all())
        .await
        .expect("restart");
    ts.addr = server.c2s_addr().expect("addr");
    ts.tls_addr = server.c2s_tls_addr().expect("tls");
    ts.server = Some(server);
    let mut bob = ts.login_available("bob").await;
    assert_eq!(
        binval(&room_vcard(&mut bob, "face").await).as_deref(),
        Some(SVG_B64)
    );
    let info = disco_info(&mut bob, &room("face")).await;
    assert_eq!(avatar_hashes(&info), Some(vec![SVG_SHA1.to_string()]));
    join(&mut bob, "face", "bob").await;
    assert!(never(&mut bob, 300, |e| is_room_presence(e, "face")).await);
}

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";

fn pm(room_name: &str, to: &str, text: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", occ(room_name, to))
        .attr("type", "chat")
        .attr("id", format!("pm-{}", rand_id()))
        .child(Element::new("body", ns::CLIENT).text(text))
}

/// The message a `<sent/>` carbon forwards, if `e` is one.
fn sent_copy(e: &Element) -> Option<&Element> {
    e.get_child("sent", CARBONS)?
        .get_child("forwarded", FORWARD)?
        .get_child("message", ns::CLIENT)
}

#[tokio::test]
async fn a_private_message_reaches_the_senders_other_sessions() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob", "carol"]).await;
    c.push(ts.login_available("bob").await);
    c.push(ts.login_available("bob").await);
    let [a, b1, carol, b2, b3] = &mut c[..] else {
        unreachable!()
    };
    create(a, "sync", "alice").await;
    join(b1, "sync", "bob").await;
    join(b2, "sync", "bob").await;
    // Bob's third session is in the room under another nick: another occupant.
    join(b3, "sync", "bobby").await;
    join(carol, "sync", "carol").await;
    // b2 has carbons on: it must still get one copy, not two.
    let r = iq(b2, "set", None, Element::new("enable", CARBONS)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");

    b1.send(&pm("sync", "alice", "for alice only"))
        .await
        .expect("send");
    let m = message_from(a, &occ("sync", "bob")).await;
    assert_eq!(body(&m).as_deref(), Some("for alice only"));
    let b1_jid = b1.jid.to_string();
    let copy = expect(b2, "a sent carbon", |e| sent_copy(e).is_some()).await;
    assert_eq!(copy.get_attr("from"), Some("bob@localhost"), "{copy}");
    let fwd = sent_copy(&copy).expect("forwarded");
    assert_eq!(
        fwd.get_attr("to"),
        Some(occ("sync", "alice").as_str()),
        "{fwd}"
    );
    assert_eq!(fwd.get_attr("from"), Some(b1_jid.as_str()), "{fwd}");
    assert_eq!(body(fwd).as_deref(), Some("for alice only"));
    assert!(fwd.get_child("x", NS_USER).is_some(), "{fwd}");
    assert!(
        never(b2, 300, |e| sent_copy(e).is_some()).await,
        "one copy only"
    );
    // Not back to the sender, nor to the user's session under another nick, nor to others.
    assert!(no_message(b1, 300).await);
    assert!(no_message(b3, 100).await);
    assert!(no_message(carol, 100).await);
}

#[tokio::test]
async fn a_private_message_is_copied_only_as_carbons_allow() {
    let ts = server().await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    c.push(ts.login_available("bob").await);
    c.push(ts.login_available("bob").await);
    let [a, b1, b2, b3] = &mut c[..] else {
        unreachable!()
    };
    create(a, "rules", "alice").await;
    for b in [&mut *b1, &mut *b2, &mut *b3] {
        join(b, "rules", "bob").await;
    }
    // Only b2 enables carbons.
    let r = iq(b2, "set", None, Element::new("enable", CARBONS)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");

    // A session without carbons gets no copy.
    b1.send(&pm("rules", "alice", "one")).await.expect("send");
    message_from(a, &occ("rules", "bob")).await;
    expect(b2, "a sent carbon", |e| sent_copy(e).is_some()).await;
    assert!(no_message(b3, 300).await, "b3 did not enable carbons");

    // XEP-0280 §6: a message marked private (or not to copy) is not copied.
    for mark in [
        Element::new("private", CARBONS),
        Element::new("no-copy", "urn:xmpp:hints"),
    ] {
        b1.send(&pm("rules", "alice", "private").child(mark))
            .await
            .expect("send");
        let m = message_from(a, &occ("rules", "bob")).await;
        assert_eq!(body(&m).as_deref(), Some("private"));
        assert!(no_message(b2, 300).await, "not copied");
    }

    // To one's own nick: every session of the nick gets the message once, no carbon.
    b1.send(&pm("rules", "bob", "to myself"))
        .await
        .expect("send");
    for b in [&mut *b1, &mut *b2, &mut *b3] {
        let m = message_from(b, &occ("rules", "bob")).await;
        assert_eq!(body(&m).as_deref(), Some("to myself"));
    }
    assert!(no_message(b2, 300).await, "no carbon besides");
}

#[tokio::test]
async fn the_message_rate_is_per_user_not_per_session() {
    // Three messages at once, then hardly any more.
    let ts = server_with(|m| {
        m.message_rate = 0.01;
        m.message_burst = 3;
    })
    .await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    c.push(ts.login_available("bob").await);
    let [a, b1, b2] = &mut c[..] else {
        unreachable!()
    };
    create(a, "rate", "alice").await;
    join(b1, "rate", "bob").await;
    join(b2, "rate", "bob").await;
    for i in 0..3 {
        let from = if i % 2 == 0 { &mut *b1 } else { &mut *b2 };
        say(from, "rate", "bob", &format!("m{i}")).await;
    }
    // Bob's burst is spent, whichever session sends next.
    for b in [&mut *b2, &mut *b1] {
        b.send(&groupchat("rate", "one too many"))
            .await
            .expect("send");
        let e = expect(b, "error", |e| e.get_attr("type") == Some("error")).await;
        assert_eq!(condition(&e), "policy-violation", "{e}");
    }
    // Alice has her own.
    say(a, "rate", "alice", "mine").await;
}

/// Restarts the server on the same data directory with `f` applied to its configuration.
async fn restart_with(ts: &mut TestServer, f: impl FnOnce(&mut confab_server::config::Config)) {
    ts.server.take().expect("running").shutdown().await;
    let mut config = test_config(ts.dir.path());
    f(&mut config);
    let server = confab_tests::start_server(config, confab_muc::all())
        .await
        .expect("restart");
    ts.addr = server.c2s_addr().expect("addr");
    ts.tls_addr = server.c2s_tls_addr().expect("tls");
    ts.server = Some(server);
}

#[tokio::test]
async fn a_stored_room_avatar_that_no_longer_reads_is_kept() {
    let mut ts = server().await;
    let mut c = users(&ts, &["alice"]).await;
    create(&mut c[0], "keep", "alice").await;
    let r = configure(&mut c[0], "keep", &[("muc#roomconfig_persistentroom", "1")]).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    // A field nested five deep: past the lowered depth limit below.
    let big = SVG_B64.to_string();
    let deep = Element::new("X-DEEP", VCARD).child(
        Element::new("a", VCARD).child(Element::new("b", VCARD).child(Element::new("c", VCARD))),
    );
    let r = set_room_vcard(&mut c[0], "keep", vcard_with_photo(&big).child(deep)).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    leave(&mut c[0], "keep", "alice").await;
    drop(c);

    // Limits lowered: the card no longer parses. The room is changed (so written again).
    restart_with(&mut ts, |c| c.limits.max_depth = 4).await;
    let mut alice = ts.login_available("alice").await;
    assert_eq!(binval(&room_vcard(&mut alice, "keep").await), None);
    join(&mut alice, "keep", "alice").await;
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", room("keep"))
                .attr("type", "groupchat")
                .child(Element::new("subject", ns::CLIENT).text("kept")),
        )
        .await
        .expect("send");
    message_from(&mut alice, &occ("keep", "alice")).await;
    leave(&mut alice, "keep", "alice").await;
    drop(alice);

    // Limits back: the card is there as it was, beside the change.
    restart_with(&mut ts, |_| {}).await;
    let mut alice = ts.login_available("alice").await;
    assert_eq!(
        binval(&room_vcard(&mut alice, "keep").await).as_deref(),
        Some(big.as_str())
    );
    let got = join(&mut alice, "keep", "alice").await;
    let subject = got.last().and_then(|m| m.get_child("subject", ns::CLIENT));
    assert_eq!(subject.map(|s| s.text_content()).as_deref(), Some("kept"));
}

#[tokio::test]
async fn leaving_and_joining_again_does_not_reset_the_message_rate() {
    let ts = server_with(|m| {
        m.message_rate = 0.01;
        m.message_burst = 3;
    })
    .await;
    let mut c = users(&ts, &["alice", "bob"]).await;
    let [a, b] = &mut c[..] else { unreachable!() };
    create(a, "again", "alice").await;
    join(b, "again", "bob").await;
    for i in 0..3 {
        say(b, "again", "bob", &format!("m{i}")).await;
    }
    leave(b, "again", "bob").await;
    join(b, "again", "bob").await;
    b.send(&groupchat("again", "one too many"))
        .await
        .expect("send");
    let e = expect(b, "error", |e| e.get_attr("type") == Some("error")).await;
    assert_eq!(condition(&e), "policy-violation", "{e}");
}
