//! XEP-0313 Message Archive Management and XEP-0359 stanza ids through the whole server.

use confab_modules::mam::{NS, SID_NS};
use confab_proto::ns;
use confab_proto::xml::Element;
use confab_stream::client::ClientSession;
use confab_tests::*;

const FORWARD_NS: &str = "urn:xmpp:forward:0";
const RSM_NS: &str = "http://jabber.org/protocol/rsm";
const DATA_NS: &str = "jabber:x:data";

fn chat(to: &str, body: &str) -> Element {
    Element::new("message", ns::CLIENT)
        .attr("to", to)
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text(body))
}

fn body(e: &Element) -> String {
    e.get_child("body", ns::CLIENT)
        .map(|b| b.text_content())
        .unwrap_or_default()
}

/// A query with these form fields and RSM children.
fn query(queryid: &str, fields: &[(&str, &str)], rsm: &[(&str, &str)]) -> Element {
    let mut q = Element::new("query", NS).attr("queryid", queryid);
    if !fields.is_empty() {
        let mut x = Element::new("x", DATA_NS).attr("type", "submit").child(
            Element::new("field", DATA_NS)
                .attr("var", "FORM_TYPE")
                .attr("type", "hidden")
                .child(Element::new("value", DATA_NS).text(NS)),
        );
        for (var, value) in fields {
            x.push_child(
                Element::new("field", DATA_NS)
                    .attr("var", *var)
                    .child(Element::new("value", DATA_NS).text(*value)),
            );
        }
        q.push_child(x);
    }
    if !rsm.is_empty() {
        let mut set = Element::new("set", RSM_NS);
        for (name, value) in rsm {
            set.push_child(Element::new(*name, RSM_NS).text(*value));
        }
        q.push_child(set);
    }
    q
}

/// What a query returned: (archive id, the forwarded message) per result, and the IQ reply.
struct Answer {
    items: Vec<(String, Element)>,
    reply: Element,
}

impl Answer {
    fn bodies(&self) -> Vec<String> {
        self.items.iter().map(|(_, m)| body(m)).collect()
    }
    fn complete(&self) -> bool {
        self.reply
            .get_child("fin", NS)
            .and_then(|f| f.get_attr("complete"))
            == Some("true")
    }
    fn rsm(&self, name: &str) -> Option<String> {
        self.reply
            .get_child("fin", NS)
            .and_then(|f| f.get_child("set", RSM_NS))
            .and_then(|s| s.get_child(name, RSM_NS))
            .map(|e| e.text_content())
    }
}

/// Sends a query and collects the results up to the IQ reply.
async fn ask(c: &mut ClientSession, to: Option<&str>, q: Element) -> Answer {
    let id = format!("q-{}", rand_id());
    let queryid = q.get_attr("queryid").unwrap_or_default().to_string();
    let mut iq = Element::new("iq", ns::CLIENT)
        .attr("type", "set")
        .attr("id", id.clone())
        .child(q);
    if let Some(t) = to {
        iq.set_attr("to", t);
    }
    c.send(&iq).await.expect("send");
    let mut items = Vec::new();
    loop {
        let e = expect(c, "a result or the reply", |e| {
            e.name == "message" && e.get_child("result", NS).is_some()
                || e.name == "iq" && e.get_attr("id") == Some(id.as_str())
        })
        .await;
        if e.name == "iq" {
            return Answer { items, reply: e };
        }
        assert_eq!(e.get_attr("from"), Some(c.jid.to_bare().as_str()), "{e}");
        let result = e.get_child("result", NS).expect("result");
        assert_eq!(result.get_attr("queryid"), Some(queryid.as_str()), "{e}");
        let forwarded = result
            .get_child("forwarded", FORWARD_NS)
            .expect("forwarded");
        assert!(
            forwarded
                .get_child("delay", ns::DELAY)
                .and_then(|d| d.get_attr("stamp"))
                .is_some(),
            "{e}"
        );
        let m = forwarded
            .get_child("message", ns::CLIENT)
            .cloned()
            .expect("the message");
        items.push((result.get_attr("id").expect("id").to_string(), m));
    }
}

fn stanza_id<'a>(m: &'a Element, by: &str) -> Option<&'a str> {
    m.elements()
        .find(|e| e.is("stanza-id", SID_NS) && e.get_attr("by") == Some(by))
        .and_then(|e| e.get_attr("id"))
}

#[tokio::test]
async fn both_sides_archived_and_paged_both_ways() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    let mut carol = ts.login_available("carol").await;
    let bob_jid = bob.jid.to_string();
    // Ten messages, alternating directions; bob keeps the stanza ids he is given.
    let mut bob_ids = Vec::new();
    for i in 0..10 {
        if i % 2 == 0 {
            alice
                .send(&chat("bob@localhost", &format!("m{i}")))
                .await
                .expect("send");
            let m = recv_message(&mut bob).await;
            assert_eq!(body(&m), format!("m{i}"));
            bob_ids.push(
                stanza_id(&m, "bob@localhost")
                    .expect("a stanza id")
                    .to_string(),
            );
        } else {
            bob.send(&chat("alice@localhost", &format!("m{i}")))
                .await
                .expect("send");
            let m = recv_message(&mut alice).await;
            assert!(stanza_id(&m, "alice@localhost").is_some(), "{m}");
        }
    }
    // Carol talks to alice too (the `with` filter leaves her out).
    carol
        .send(&chat("alice@localhost", "from carol"))
        .await
        .expect("send");
    recv_message(&mut alice).await;

    let all: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    // Bob's archive: both sides, in order; the ids are those he got on delivery.
    let a = ask(&mut bob, None, query("b1", &[], &[])).await;
    assert_eq!(a.reply.get_attr("type"), Some("result"), "{}", a.reply);
    assert_eq!(a.bodies(), all);
    assert!(a.complete());
    let received: Vec<&String> = a
        .items
        .iter()
        .filter(|(_, m)| m.get_attr("from").is_some_and(|f| f.starts_with("alice@")))
        .map(|(id, _)| id)
        .collect();
    assert_eq!(received, bob_ids.iter().collect::<Vec<_>>());
    // The sent side keeps the sender's full JID as from.
    assert_eq!(a.items[1].1.get_attr("from"), Some(bob_jid.as_str()));

    // Alice pages forwards through her conversation with bob, three at a time.
    let with_bob = [("with", "bob@localhost")];
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let max = [("max", "3")];
        let rsm: Vec<(&str, &str)> = match &after {
            Some(a) => vec![("max", "3"), ("after", a.as_str())],
            None => max.to_vec(),
        };
        let a = ask(&mut alice, None, query("fw", &with_bob, &rsm)).await;
        assert!(a.items.len() <= 3);
        got.extend(a.bodies());
        assert_eq!(
            a.rsm("first").as_deref(),
            a.items.first().map(|i| i.0.as_str())
        );
        assert_eq!(
            a.rsm("last").as_deref(),
            a.items.last().map(|i| i.0.as_str())
        );
        if a.complete() {
            break;
        }
        after = a.rsm("last");
        assert!(got.len() < 20, "paging does not end");
    }
    assert_eq!(got, all);
    // And backwards from the end (an empty <before/>).
    let mut pages = Vec::new();
    let mut before = String::new();
    loop {
        let a = ask(
            &mut alice,
            None,
            query(
                "bw",
                &with_bob,
                &[("max", "4"), ("before", before.as_str())],
            ),
        )
        .await;
        pages.push(a.bodies());
        if a.complete() {
            break;
        }
        before = a.rsm("first").expect("first");
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(pages[0], ["m6", "m7", "m8", "m9"]);
    assert_eq!(pages.concat().len(), 10);
    pages.reverse();
    assert_eq!(pages.concat(), all);
    // Without a filter carol's message is there too, last.
    let a = ask(&mut alice, None, query("all", &[], &[("before", "")])).await;
    assert_eq!(a.bodies().last().map(String::as_str), Some("from carol"));
    // A full JID matches only that resource: alice's messages came from her session,
    // bob's went to her bare JID.
    let a = ask(
        &mut bob,
        None,
        query("full", &[("with", alice.jid.as_str())], &[]),
    )
    .await;
    assert_eq!(a.bodies(), ["m0", "m2", "m4", "m6", "m8"]);
    let a = ask(
        &mut bob,
        None,
        query("none", &[("with", "alice@localhost/other")], &[]),
    )
    .await;
    assert!(a.items.is_empty() && a.complete(), "{}", a.reply);

    // Errors: an unknown id, a bad form, a field not supported.
    let a = ask(
        &mut alice,
        None,
        query("e", &[], &[("after", "no-such-id")]),
    )
    .await;
    assert_eq!(condition(&a.reply), "item-not-found");
    let a = ask(&mut alice, None, query("e", &[("start", "yesterday")], &[])).await;
    assert_eq!(condition(&a.reply), "bad-request");
    let a = ask(&mut alice, None, query("e", &[("ids", "x")], &[])).await;
    assert_eq!(condition(&a.reply), "bad-request");
    // Bob's ids are not in alice's archive.
    let a = ask(
        &mut alice,
        None,
        query("e", &[], &[("after", bob_ids[0].as_str())]),
    )
    .await;
    assert_eq!(condition(&a.reply), "item-not-found");
}

#[tokio::test]
async fn page_size_is_capped_and_time_filters() {
    let ts = TestServer::start_with(|c| {
        c.update_section("mam", |m: &mut confab_modules::mam::MamConfig| {
            m.max_page = 5
        })
        .expect("valid");
    })
    .await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    for i in 0..3 {
        alice
            .send(&chat("bob@localhost", &format!("early{i}")))
            .await
            .expect("send");
        recv_message(&mut bob).await;
    }
    // The stamps have whole seconds: the next messages are in a later one.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let since = confab_proto::datetime::format_datetime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64,
    );
    for i in 0..4 {
        alice
            .send(&chat("bob@localhost", &format!("late{i}")))
            .await
            .expect("send");
        recv_message(&mut bob).await;
    }
    // Asking for 50 gives at most max_page.
    let a = ask(&mut bob, None, query("cap", &[], &[("max", "50")])).await;
    assert_eq!(a.items.len(), 5);
    assert!(!a.complete());
    let a = ask(
        &mut bob,
        None,
        query("start", &[("start", since.as_str())], &[]),
    )
    .await;
    assert_eq!(a.bodies(), ["late0", "late1", "late2", "late3"]);
    assert!(a.complete());
    let before_since = confab_proto::datetime::format_datetime(
        confab_proto::datetime::parse_datetime(&since).expect("stamp") - 1,
    );
    let a = ask(
        &mut bob,
        None,
        query("end", &[("end", before_since.as_str())], &[]),
    )
    .await;
    assert_eq!(a.bodies(), ["early0", "early1", "early2"]);
}

#[tokio::test]
async fn spoofed_stanza_ids_are_replaced_and_offline_messages_archived_once() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    // Bob is offline: the message is stored, archived once, with its stanza id.
    let mut m = chat("bob@localhost", "forged");
    m.push_child(
        Element::new("stanza-id", SID_NS)
            .attr("id", "forged-id")
            .attr("by", "bob@localhost"),
    );
    // An id by someone else is not the archive's business and stays.
    m.push_child(
        Element::new("stanza-id", SID_NS)
            .attr("id", "other")
            .attr("by", "room@conference.localhost"),
    );
    alice.send(&m).await.expect("send");
    ping(&mut alice).await;
    let mut bob = ts.login("bob").await;
    bob.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    let got = recv_message(&mut bob).await;
    assert_eq!(body(&got), "forged");
    let ids: Vec<_> = got
        .elements()
        .filter(|e| e.is("stanza-id", SID_NS) && e.get_attr("by") == Some("bob@localhost"))
        .collect();
    assert_eq!(ids.len(), 1, "{got}");
    let id = ids[0].get_attr("id").expect("id");
    assert_ne!(id, "forged-id");
    assert_eq!(stanza_id(&got, "room@conference.localhost"), Some("other"));
    let a = ask(&mut bob, None, query("q", &[], &[])).await;
    assert_eq!(a.bodies(), ["forged"]);
    assert_eq!(a.items[0].0, id);
    // Messages that are not archived: no body, groupchat, no-store.
    let mut hint = chat("bob@localhost", "secret");
    hint.push_child(Element::new("no-store", "urn:xmpp:hints"));
    alice.send(&hint).await.expect("send");
    assert_eq!(body(&recv_message(&mut bob).await), "secret");
    let a = ask(&mut bob, None, query("q", &[], &[])).await;
    assert_eq!(a.bodies(), ["forged"]);
    let a = ask(&mut alice, None, query("q", &[], &[])).await;
    assert_eq!(a.bodies(), ["forged"]);
}

#[tokio::test]
async fn an_archive_is_its_owners_alone_and_goes_with_the_account() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    alice
        .send(&chat("bob@localhost", "private talk"))
        .await
        .expect("send");
    recv_message(&mut bob).await;
    // Alice cannot read bob's archive.
    let a = ask(&mut alice, Some("bob@localhost"), query("x", &[], &[])).await;
    assert!(a.items.is_empty());
    assert_eq!(a.reply.get_attr("type"), Some("error"), "{}", a.reply);
    assert!(
        matches!(
            condition(&a.reply).as_str(),
            "forbidden" | "service-unavailable"
        ),
        "{}",
        a.reply
    );
    // Disco shows the features on the account.
    let info = iq(
        &mut bob,
        "get",
        Some("bob@localhost"),
        Element::new("query", ns::DISCO_INFO),
    )
    .await;
    let features: Vec<_> = info
        .get_child("query", ns::DISCO_INFO)
        .expect("info")
        .elements()
        .filter_map(|f| f.get_attr("var"))
        .collect();
    assert!(
        features.contains(&NS) && features.contains(&SID_NS),
        "{info}"
    );
    // Deleting bob deletes his archive: a new bob starts empty.
    drop(bob);
    let jid = confab_proto::BareJid::new("bob@localhost").expect("jid");
    confab_server::accounts::delete_account_live(ts.server().ctx(), &jid)
        .await
        .expect("deleted");
    ts.add_user("bob").await;
    let mut bob = ts.login_available("bob").await;
    let a = ask(&mut bob, None, query("x", &[], &[])).await;
    assert!(a.items.is_empty() && a.complete(), "{}", a.reply);
    // Alice's side is hers and stays.
    let a = ask(&mut alice, None, query("x", &[], &[])).await;
    assert_eq!(a.bodies(), ["private talk"]);
}
