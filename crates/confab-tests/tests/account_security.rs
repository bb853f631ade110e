//! Accounts under attack: a deleted account keeps nothing alive, and an unknown account
//! looks like a real one to a SCRAM prober.

use base64::Engine;
use confab_proto::{ns, StreamErrorCondition};
use confab_server::config::Config;
use confab_tests::*;

const B64: base64::engine::general_purpose::GeneralPurpose =
    base64::engine::general_purpose::STANDARD;

fn plaintext_auth(c: &mut Config) {
    c.c2s.require_tls = false;
    c.c2s.allow_plain_without_tls = true;
}

/// A raw stream that authenticated with PLAIN and has not bound a resource.
async fn authenticated_unbound(ts: &TestServer, user: &str) -> Raw {
    ts.authenticated_raw(user).await
}

fn bind_request() -> String {
    format!(
        "<iq type='set' id='b1'><bind xmlns='{}'><resource>r</resource></bind></iq>",
        ns::BIND
    )
}

fn jid(user: &str) -> confab_proto::BareJid {
    confab_proto::BareJid::new(&format!("{user}@{DOMAIN}")).expect("jid")
}

#[tokio::test]
async fn deleting_an_account_ends_its_streams_that_have_not_bound() {
    let ts = TestServer::start_with(plaintext_auth).await;
    ts.add_user("alice").await;
    let mut r = authenticated_unbound(&ts, "alice").await;
    confab_server::accounts::delete_account_live(ts.server().ctx(), &jid("alice"))
        .await
        .expect("deleted");
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::NotAuthorized
    );
}

#[tokio::test]
async fn a_name_deleted_and_registered_again_is_not_the_old_stream_s_account() {
    let ts = TestServer::start_with(plaintext_auth).await;
    ts.add_user("alice").await;
    let mut r = authenticated_unbound(&ts, "alice").await;
    // Deleted behind the running server's back (e.g. in the database), then registered
    // anew by someone else: the old stream must not bind into the new owner's account.
    let stores = &ts.server().ctx().stores;
    confab_server::accounts::delete(stores, &jid("alice"))
        .await
        .expect("deleted");
    ts.add_user("alice").await;
    r.send(&bind_request()).await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::NotAuthorized
    );
    assert_eq!(ts.server().ctx().router.session_count(), 0);
    // The new owner logs in normally.
    ts.login("alice").await;
}

/// The salt and iteration count a SCRAM-SHA-256 server-first message shows for `user`.
async fn scram_first(addr: std::net::SocketAddr, user: &str) -> (String, String) {
    let mut r = Raw::connect(addr).await;
    r.open().await;
    let first = B64.encode(format!("n,,n={user},r=abcdefghijklmnop"));
    r.send(&format!(
        "<auth xmlns='{}' mechanism='SCRAM-SHA-256'>{first}</auth>",
        ns::SASL
    ))
    .await;
    let e = r.element().await;
    assert!(e.is("challenge", ns::SASL), "{e}");
    let text = B64.decode(e.text_content().trim()).expect("base64");
    let text = String::from_utf8(text).expect("utf-8");
    let field = |k: &str| {
        text.split(',')
            .find_map(|f| f.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .to_string()
    };
    (field("s="), field("i="))
}

#[tokio::test]
async fn unknown_users_look_like_real_ones_to_a_scram_prober() {
    init_logs();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || {
        let mut c = test_config(dir.path());
        plaintext_auth(&mut c);
        // Accounts were made with 4096 iterations; the configuration has changed since.
        c.auth.scram_iterations = 10_000;
        c
    };
    let server = start_server(config(), Vec::new()).await.expect("start");
    let ctx = server.ctx().clone();
    for user in ["alice", "bob", "carol"] {
        confab_server::accounts::create(&ctx.stores, &jid(user), PASSWORD, 4096)
            .await
            .expect("user");
    }
    drop(ctx);
    server.shutdown().await;
    // Restarted: the decoy shows what real accounts show, and the same salt as before.
    let server = start_server(config(), Vec::new()).await.expect("start");
    let addr = server.c2s_addr().expect("addr");
    let (_, real_iterations) = scram_first(addr, "alice").await;
    let (ghost_salt, ghost_iterations) = scram_first(addr, "ghost").await;
    assert_eq!(real_iterations, "4096");
    assert_eq!(ghost_iterations, real_iterations);
    assert_eq!(scram_first(addr, "ghost").await.0, ghost_salt);
    server.shutdown().await;
    let server = start_server(config(), Vec::new()).await.expect("restart");
    let addr = server.c2s_addr().expect("addr");
    assert_eq!(
        scram_first(addr, "ghost").await.0,
        ghost_salt,
        "the decoy salt changed across a restart"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn password_checks_do_not_stall_other_sessions() {
    // The test runtime has one thread, shared by the server and its clients: key derivation
    // on it would stop every other session for as long as it runs.
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let slow = jid("slow");
    // Stored with many iterations, so verifying a PLAIN password takes long.
    confab_server::accounts::create(&ts.server().ctx().stores, &slow, PASSWORD, 400_000)
        .await
        .expect("user");
    let mut alice = ts.login("alice").await;
    let mut o = ts.options("slow");
    o.mechanism = Some(confab_proto::sasl::Mechanism::Plain);
    let started = std::time::Instant::now();
    let login = tokio::spawn(async move { confab_stream::client::connect(&o).await });
    let mut slowest = std::time::Duration::ZERO;
    while !login.is_finished() {
        let t = std::time::Instant::now();
        ping(&mut alice).await;
        slowest = slowest.max(t.elapsed());
    }
    let took = started.elapsed();
    login.await.expect("task").expect("login");
    assert!(
        slowest * 3 < took,
        "a ping waited {slowest:?} during a {took:?} login"
    );
}

#[tokio::test]
async fn a_bind_whose_answer_cannot_be_written_leaves_no_session() {
    let ts = TestServer::start_with(plaintext_auth).await;
    ts.add_user("alice").await;
    for _ in 0..20 {
        let mut r = authenticated_unbound(&ts, "alice").await;
        r.send(&bind_request()).await;
        // Reset, not closed: the server's answer to the bind fails to write.
        if let confab_stream::Transport::Tcp(tcp) = r.stream.get_ref() {
            socket2::SockRef::from(tcp)
                .set_linger(Some(std::time::Duration::ZERO))
                .expect("linger");
        }
        drop(r);
    }
    let ctx = ts.server().ctx();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while ctx.router.session_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} sessions outlived their connections",
            ctx.router.session_count()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn replies_a_client_does_not_read_end_its_session_after_the_write_timeout() {
    let ts = TestServer::start_with(|c| {
        c.c2s.write_timeout = 2;
        c.limits.read_rate = 0;
    })
    .await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let jid = alice.jid.clone();
    // Each of these gets an error reply echoing its payload, written straight back; alice
    // reads none of them.
    let body = "p".repeat(100 * 1024);
    // Once the server stops reading, sending blocks too: bounded, so a server that never
    // closes fails the test below instead of hanging it.
    let sending = async {
        for _ in 0..200 {
            let bad = confab_proto::xml::Element::new("message", ns::CLIENT)
                .attr("to", "a@b@c")
                .child(confab_proto::xml::Element::new("body", ns::CLIENT).text(body.clone()));
            if alice.send(&bad).await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), sending).await;
    let ctx = ts.server().ctx();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while ctx.router.resource_bound(&jid) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a session blocked on writing its own replies was never closed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
