//! Moving between servers in-process: what users did on one confabd (roster, vCard, a
//! message waiting offline) is exported, imported into another, and the users log in there
//! with their old password and find it; accounts from a Prosody-shaped export (SCRAM-SHA-1
//! keys only) log in with SCRAM-SHA-1 and PLAIN.

use confab_import::pie;
use confab_proto::sasl::{Mechanism, ScramCredentials, ScramHash};
use confab_proto::{ns, Element};
use confab_stream::client::connect;
use confab_tests::*;

fn opts() -> pie::ImportOptions {
    pie::ImportOptions::new(vec![DOMAIN.to_string()], 4096)
}

#[tokio::test]
async fn users_find_their_data_after_moving_servers() {
    let old = TestServer::start().await;
    old.add_user("alice").await;
    old.add_user("bob").await;
    let mut alice = old.login("alice").await;
    let item = Element::new("query", "jabber:iq:roster").child(
        Element::new("item", "jabber:iq:roster")
            .attr("jid", "bob@localhost")
            .attr("name", "Bob")
            .child(Element::new("group", "jabber:iq:roster").text("Friends")),
    );
    let r = iq(&mut alice, "set", None, item).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    let vcard = Element::new("vCard", "vcard-temp")
        .child(Element::new("FN", "vcard-temp").text("Alice A."));
    let r = iq(&mut alice, "set", None, vcard).await;
    assert_eq!(r.get_attr("type"), Some("result"), "{r}");
    // bob is offline: the message waits for him.
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost")
                .attr("type", "chat")
                .attr("id", "m1")
                .child(Element::new("body", ns::CLIENT).text("see you on the new server")),
        )
        .await
        .expect("send");
    ping(&mut alice).await;
    drop(alice);

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("export.xml");
    let mut out = tokio::fs::File::create(&file).await.expect("create");
    pie::export(&old.server().ctx().stores, &[DOMAIN.to_string()], &mut out)
        .await
        .expect("export");
    drop(out);

    let new = TestServer::start().await;
    let report = pie::import(&new.server().ctx().stores, &[file], &opts())
        .await
        .expect("import");
    assert_eq!(report.imported, vec!["alice@localhost", "bob@localhost"]);
    assert_eq!(report.offline_messages, 1, "{report:?}");

    for mech in [
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
        Mechanism::ScramSha256Plus,
    ] {
        let mut o = new.options("alice");
        o.mechanism = Some(mech);
        connect(&o)
            .await
            .unwrap_or_else(|e| panic!("{mech:?}: {e}"));
    }
    let mut wrong = new.options("alice");
    wrong.password = "not it".into();
    assert!(connect(&wrong).await.is_err(), "a wrong password logged in");

    let mut alice = new.login("alice").await;
    let r = iq(
        &mut alice,
        "get",
        None,
        Element::new("query", "jabber:iq:roster"),
    )
    .await;
    let item = r
        .get_child("query", "jabber:iq:roster")
        .and_then(|q| q.get_child("item", "jabber:iq:roster"))
        .expect("roster item");
    assert_eq!(item.get_attr("jid"), Some("bob@localhost"));
    assert_eq!(item.get_attr("name"), Some("Bob"));
    assert_eq!(
        item.get_child("group", "jabber:iq:roster")
            .map(|g| g.text_content()),
        Some("Friends".to_string())
    );
    let r = iq(&mut alice, "get", None, Element::new("vCard", "vcard-temp")).await;
    let fn_ = r
        .get_child("vCard", "vcard-temp")
        .and_then(|v| v.get_child("FN", "vcard-temp"))
        .map(|f| f.text_content());
    assert_eq!(fn_.as_deref(), Some("Alice A."), "{r}");

    let mut bob = new.login("bob").await;
    bob.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    let m = recv_message(&mut bob).await;
    assert_eq!(
        m.get_child("body", ns::CLIENT)
            .map(|b| b.text_content())
            .as_deref(),
        Some("see you on the new server")
    );
}

#[tokio::test]
async fn sha1_keys_from_prosody_log_in_with_scram_sha1_and_plain() {
    let ts = TestServer::start().await;
    let c = ScramCredentials::derive(ScramHash::Sha1, PASSWORD, b"prosody-salt-123", 4096)
        .expect("derive");
    let b = |v: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(v)
    };
    // The shape Prosody 0.12's mod_storage_xep0227 writes (a file per user).
    let doc = format!(
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='alice'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><server-key>{}</server-key><stored-key>{}</stored-key><iter-count>4096</iter-count><salt>{}</salt></scram-credentials><query version='2' xmlns='jabber:iq:roster'><item subscription='both' jid='bob@localhost' name='Bob'><group>Friends</group></item></query><presence from='carol@localhost' type='subscribe'/></user></host></server-data>",
        b(&c.server_key),
        b(&c.stored_key),
        b(&c.salt)
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("alice@localhost.xml");
    std::fs::write(&file, doc).expect("write");
    let report = pie::import(&ts.server().ctx().stores, &[file], &opts())
        .await
        .expect("import");
    assert_eq!(report.imported, vec!["alice@localhost"], "{report:?}");
    for mech in [Mechanism::ScramSha1, Mechanism::Plain] {
        let mut o = ts.options("alice");
        o.mechanism = Some(mech);
        connect(&o)
            .await
            .unwrap_or_else(|e| panic!("{mech:?}: {e}"));
    }
    // Only SHA-1 keys came along: SCRAM-SHA-256 cannot be answered (docs/migration.md).
    let mut o = ts.options("alice");
    o.mechanism = Some(Mechanism::ScramSha256);
    assert!(connect(&o).await.is_err());
    // Carol's request, written by Prosody in the pie namespace, is delivered as a
    // jabber:client subscription request when alice comes online.
    let mut o = ts.options("alice");
    o.mechanism = Some(Mechanism::ScramSha1);
    let mut alice = connect(&o).await.expect("login");
    alice
        .send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    let p = expect(&mut alice, "carol's request", |e| {
        e.name == "presence" && e.get_attr("type") == Some("subscribe")
    })
    .await;
    assert_eq!(p.get_attr("from"), Some("carol@localhost"));
}
