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
    assert_eq!(condition(&a.reply), "item-not-found");
    let a = ask(
        &mut alice,
        None,
        query("e", &[("include-groupchat", "true")], &[]),
    )
    .await;
    assert_eq!(condition(&a.reply), "feature-not-implemented");
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
        features.contains(&NS)
            && features.contains(&SID_NS)
            && features.contains(&confab_modules::mam::EXTENDED),
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

/// Alice sends bob `n` messages `m0`… while both are online; bob's stanza ids, in order.
async fn conversation(alice: &mut ClientSession, bob: &mut ClientSession, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        alice
            .send(&chat("bob@localhost", &format!("m{i}")))
            .await
            .expect("send");
        let m = recv_message(bob).await;
        ids.push(
            stanza_id(&m, "bob@localhost")
                .expect("stanza id")
                .to_string(),
        );
    }
    ids
}

#[tokio::test]
async fn extended_queries_ids_flipped_pages_metadata_and_counts() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    // An empty archive has empty metadata.
    let meta = iq(&mut bob, "get", None, Element::new("metadata", NS)).await;
    let m = meta.get_child("metadata", NS).expect("metadata");
    assert!(m.elements().next().is_none(), "{meta}");
    let ids = conversation(&mut alice, &mut bob, 8).await;
    // after-id / before-id bound the range: the page is its oldest part.
    let a = ask(
        &mut bob,
        None,
        query(
            "r",
            &[
                ("after-id", ids[1].as_str()),
                ("before-id", ids[6].as_str()),
            ],
            &[("max", "3")],
        ),
    )
    .await;
    assert_eq!(a.bodies(), ["m2", "m3", "m4"]);
    assert!(!a.complete());
    // ids: exactly those (in archive order).
    let a = ask(
        &mut bob,
        None,
        query(
            "i",
            &[("ids", ids[5].as_str()), ("ids", ids[0].as_str())],
            &[],
        ),
    )
    .await;
    assert_eq!(a.bodies(), ["m0", "m5"]);
    // An unknown after-id is item-not-found.
    let a = ask(&mut bob, None, query("u", &[("after-id", "nope")], &[])).await;
    assert_eq!(condition(&a.reply), "item-not-found");
    // A flipped page: the same results, newest first.
    let mut q = query("f", &[], &[("max", "3"), ("before", "")]);
    q.push_child(Element::new("flip-page", NS));
    let a = ask(&mut bob, None, q).await;
    assert_eq!(a.bodies(), ["m7", "m6", "m5"]);
    // The count alone with <max>0</max>.
    let a = ask(&mut bob, None, query("c", &[], &[("max", "0")])).await;
    assert!(a.items.is_empty());
    assert_eq!(a.rsm("count").as_deref(), Some("8"));
    // No count unless asked (it costs a scan).
    let a = ask(&mut bob, None, query("n", &[], &[("max", "2")])).await;
    assert_eq!(a.rsm("count"), None);
    // Metadata: the first and the last message.
    let meta = iq(&mut bob, "get", None, Element::new("metadata", NS)).await;
    let m = meta.get_child("metadata", NS).expect("metadata");
    assert_eq!(
        m.get_child("start", NS).and_then(|e| e.get_attr("id")),
        Some(ids[0].as_str()),
        "{meta}"
    );
    assert_eq!(
        m.get_child("end", NS).and_then(|e| e.get_attr("id")),
        Some(ids[7].as_str()),
        "{meta}"
    );
    // The query form offers the extended fields.
    let form = iq(&mut bob, "get", None, Element::new("query", NS)).await;
    let form = form.to_string();
    for var in ["before-id", "after-id", "ids"] {
        assert!(
            form.contains(&format!("var='{var}'")) || form.contains(&format!("var=\"{var}\"")),
            "{form}"
        );
    }
}

#[tokio::test]
async fn counting_every_query_when_configured() {
    let ts = TestServer::start_with(|c| {
        c.update_section("mam", |m: &mut confab_modules::mam::MamConfig| {
            m.count_results = true
        })
        .expect("valid");
    })
    .await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    conversation(&mut alice, &mut bob, 5).await;
    let a = ask(
        &mut bob,
        None,
        query("c", &[], &[("max", "2"), ("before", "")]),
    )
    .await;
    assert_eq!(a.bodies(), ["m3", "m4"]);
    assert_eq!(a.rsm("count").as_deref(), Some("5"));
    let first = a
        .reply
        .get_child("fin", NS)
        .and_then(|f| f.get_child("set", RSM_NS))
        .and_then(|s| s.get_child("first", RSM_NS))
        .and_then(|f| f.get_attr("index"));
    assert_eq!(first, Some("3"), "{}", a.reply);
}

fn prefs(default: &str, always: &[&str], never: &[&str]) -> Element {
    let list = |name: &str, jids: &[&str]| {
        jids.iter().fold(Element::new(name, NS), |l, j| {
            l.child(Element::new("jid", NS).text(*j))
        })
    };
    Element::new("prefs", NS)
        .attr("default", default)
        .child(list("always", always))
        .child(list("never", never))
}

#[tokio::test]
async fn preferences_decide_what_is_archived() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob", "carol", "dave"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    let mut carol = ts.login_available("carol").await;
    let mut dave = ts.login_available("dave").await;
    // The server's default until the account sets its own.
    let p = iq(&mut bob, "get", None, Element::new("prefs", NS)).await;
    let got = p.get_child("prefs", NS).expect("prefs");
    assert_eq!(got.get_attr("default"), Some("always"), "{p}");
    assert!(got.get_child("always", NS).is_some() && got.get_child("never", NS).is_some());
    // Bob: nothing by default, always alice, never carol's phone.
    let set = iq(
        &mut bob,
        "set",
        None,
        prefs("never", &["alice@localhost"], &["carol@localhost/phone"]),
    )
    .await;
    assert_eq!(set.get_attr("type"), Some("result"), "{set}");
    let echoed = set.get_child("prefs", NS).expect("applied prefs");
    assert_eq!(echoed.get_attr("default"), Some("never"));
    for (from, text) in [
        (&mut alice, "from alice"),
        (&mut carol, "from carol"),
        (&mut dave, "from dave"),
    ] {
        from.send(&chat("bob@localhost", text)).await.expect("send");
        let m = recv_message(&mut bob).await;
        assert_eq!(body(&m), text);
        // Only what is archived carries a stanza id.
        assert_eq!(
            stanza_id(&m, "bob@localhost").is_some(),
            text == "from alice",
            "{m}"
        );
    }
    bob.send(&chat("dave@localhost", "to dave"))
        .await
        .expect("send");
    recv_message(&mut dave).await;
    let a = ask(&mut bob, None, query("p", &[], &[])).await;
    assert_eq!(a.bodies(), ["from alice"]);
    // The senders' own archives follow their own (default) preferences.
    let a = ask(&mut dave, None, query("p", &[], &[])).await;
    assert_eq!(a.bodies(), ["from dave", "to dave"]);
    // Roster: only contacts. Bob adds dave to his roster.
    iq(&mut bob, "set", None, prefs("roster", &[], &[])).await;
    let item = Element::new("query", "jabber:iq:roster")
        .child(Element::new("item", "jabber:iq:roster").attr("jid", "dave@localhost"));
    iq(&mut bob, "set", None, item).await;
    for (from, text) in [(&mut dave, "contact"), (&mut carol, "stranger")] {
        from.send(&chat("bob@localhost", text)).await.expect("send");
        assert_eq!(body(&recv_message(&mut bob).await), text);
    }
    let a = ask(&mut bob, None, query("p", &[], &[])).await;
    assert_eq!(a.bodies(), ["from alice", "contact"]);
    // The preferences are stored: a new session reads them back.
    drop(bob);
    let mut bob = ts.login_available("bob").await;
    let p = iq(&mut bob, "get", None, Element::new("prefs", NS)).await;
    assert_eq!(
        p.get_child("prefs", NS).and_then(|e| e.get_attr("default")),
        Some("roster"),
        "{p}"
    );
    // Bad preferences change nothing.
    let bad = iq(
        &mut bob,
        "set",
        None,
        Element::new("prefs", NS).attr("default", "maybe"),
    )
    .await;
    assert_eq!(condition(&bad), "bad-request");
    let p = iq(&mut bob, "get", None, Element::new("prefs", NS)).await;
    assert_eq!(
        p.get_child("prefs", NS).and_then(|e| e.get_attr("default")),
        Some("roster")
    );
}

#[tokio::test]
async fn a_client_that_read_the_archive_first_gets_no_offline_duplicates() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob", "carol"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut carol = ts.login_available("carol").await;
    // Bob's archive keeps nothing from carol.
    {
        let mut bob = ts.login("bob").await;
        iq(
            &mut bob,
            "set",
            None,
            prefs("always", &[], &["carol@localhost"]),
        )
        .await;
    }
    // While bob is offline: two archived messages and one that is not.
    for text in ["one", "two"] {
        alice
            .send(&chat("bob@localhost", text))
            .await
            .expect("send");
    }
    ping(&mut alice).await;
    carol
        .send(&chat("bob@localhost", "not archived"))
        .await
        .expect("send");
    ping(&mut carol).await;
    // A client that reads the archive first (before its initial presence)...
    let mut bob = ts.login("bob").await;
    let a = ask(&mut bob, None, query("catch-up", &[], &[])).await;
    assert_eq!(a.bodies(), ["one", "two"]);
    bob.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    // ...is sent only what the archive does not hold.
    assert_eq!(body(&recv_message(&mut bob).await), "not archived");
    assert!(no_message(&mut bob, 500).await);
    drop(bob);
    // Nor are they kept for the next session: they went.
    let mut bob = ts.login("bob").await;
    bob.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    assert!(no_message(&mut bob, 500).await);
    drop(bob);
    // A client that does not read the archive first gets its offline messages.
    alice
        .send(&chat("bob@localhost", "three"))
        .await
        .expect("send");
    ping(&mut alice).await;
    let mut bob = ts.login("bob").await;
    bob.send(&Element::new("presence", ns::CLIENT))
        .await
        .expect("presence");
    assert_eq!(body(&recv_message(&mut bob).await), "three");
}

#[tokio::test]
async fn corrections_retractions_markers_and_reactions_pass_through_and_are_archived() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    let mut original = chat("bob@localhost", "helo");
    original.set_attr("id", "orig-1");
    alice.send(&original).await.expect("send");
    recv_message(&mut bob).await;
    let payloads = [
        Element::new("replace", "urn:xmpp:message-correct:0").attr("id", "orig-1"),
        Element::new("displayed", "urn:xmpp:chat-markers:0").attr("id", "orig-1"),
        Element::new("reactions", "urn:xmpp:reactions:0")
            .attr("id", "orig-1")
            .child(Element::new("reaction", "urn:xmpp:reactions:0").text("\u{1F44D}")),
        Element::new("retract", "urn:xmpp:message-retract:1").attr("id", "orig-1"),
    ];
    for (i, p) in payloads.iter().enumerate() {
        // A correction has a body; the others go without one.
        let mut m = Element::new("message", ns::CLIENT)
            .attr("to", "bob@localhost")
            .attr("type", "chat")
            .attr("id", format!("p{i}"))
            .child(p.clone());
        if p.name == "replace" {
            m.push_child(Element::new("body", ns::CLIENT).text("hello"));
        }
        alice.send(&m).await.expect("send");
        let got = recv_message(&mut bob).await;
        assert!(got.get_child(&p.name, &p.ns).is_some(), "{got}");
        assert!(stanza_id(&got, "bob@localhost").is_some(), "{got}");
    }
    // Both archives hold all five, in order.
    for c in [&mut alice, &mut bob] {
        let a = ask(c, None, query("h", &[], &[])).await;
        let kinds: Vec<String> = a
            .items
            .iter()
            .map(|(_, m)| {
                m.elements()
                    .find(|e| e.name != "body" && e.name != "stanza-id")
                    .map(|e| e.name.to_string())
                    .unwrap_or_else(|| "body".into())
            })
            .collect();
        assert_eq!(
            kinds,
            ["body", "replace", "displayed", "reactions", "retract"]
        );
    }
}

#[tokio::test]
async fn archives_are_trimmed_to_their_cap() {
    let ts = TestServer::start_with(|c| {
        c.update_section("mam", |m: &mut confab_modules::mam::MamConfig| {
            m.max_messages = 3
        })
        .expect("valid");
    })
    .await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    conversation(&mut alice, &mut bob, 5).await;
    // The trim runs on a timer; run the server's timers once now.
    let ctx = ts.server().ctx();
    for (_, timer) in ctx.registry.timers() {
        timer.tick(ctx).await;
    }
    let a = ask(&mut bob, None, query("t", &[], &[])).await;
    assert_eq!(a.bodies(), ["m2", "m3", "m4"]);
    let a = ask(&mut alice, None, query("t", &[], &[])).await;
    assert_eq!(a.bodies(), ["m2", "m3", "m4"]);
}

#[tokio::test]
async fn a_query_finds_everything_already_delivered() {
    let ts = TestServer::start().await;
    for u in ["alice", "bob"] {
        ts.add_user(u).await;
    }
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    // Many messages at once: the archive writes them behind delivery, in batches.
    for i in 0..300 {
        alice
            .send(&chat("bob@localhost", &format!("burst {i}")))
            .await
            .expect("send");
    }
    for _ in 0..300 {
        recv_message(&mut bob).await;
    }
    // Asked right after the last delivery, the archive already holds all of them.
    let a = ask(&mut bob, None, query("n", &[], &[("max", "0")])).await;
    assert_eq!(a.rsm("count").as_deref(), Some("300"), "{}", a.reply);
    let a = ask(&mut alice, None, query("n", &[], &[("max", "0")])).await;
    assert_eq!(a.rsm("count").as_deref(), Some("300"), "{}", a.reply);
}
