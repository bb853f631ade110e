//! Client-to-server streams: negotiation, authentication, binding, routing basics and every
//! bad-input path of RFC 6120, each against a real in-process server.

use confab_modules::vcard::VcardConfig;
use confab_proto::sasl::Mechanism;
use confab_proto::xml::Element;
use confab_proto::{ns, StreamErrorCondition};
use confab_stream::client::{connect, ClientError, TlsMode};
use confab_tests::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn login_with_every_mechanism_and_tls_mode() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    for mech in Mechanism::ALL {
        for mode in [TlsMode::StartTls, TlsMode::Direct] {
            let mut o = tls_opts(&ts, "alice", mode);
            o.mechanism = Some(mech);
            let s = connect(&o)
                .await
                .unwrap_or_else(|e| panic!("{} over {mode:?}: {e}", mech.name()));
            assert_eq!(s.mechanism, mech);
            assert_eq!(s.jid.to_bare().as_str(), "alice@localhost");
            s.close().await.expect("clean close");
        }
    }
    // Default choice is the strongest: SCRAM-SHA-256-PLUS.
    let s = ts.login("alice").await;
    assert_eq!(s.mechanism, Mechanism::ScramSha256Plus);
}

#[tokio::test]
async fn both_channel_binding_types_work() {
    use confab_proto::sasl::ChannelBindingType;
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    for cb in [
        ChannelBindingType::TlsExporter,
        ChannelBindingType::TlsServerEndPoint,
    ] {
        for mech in [Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus] {
            let mut o = ts.options("alice");
            o.mechanism = Some(mech);
            o.channel_binding = Some(cb);
            let s = connect(&o)
                .await
                .unwrap_or_else(|e| panic!("{} with {}: {e}", mech.name(), cb.name()));
            assert_eq!(s.mechanism, mech);
        }
    }
}

#[tokio::test]
async fn slow_reader_is_disconnected_and_senders_get_errors() {
    // Without offline storage, a message bob cannot take is bounced at once.
    let ts = TestServer::start_with(|c| {
        c.limits.outbound_queue = 8;
        c.limits.read_rate = 0;
        c.modules.disabled = vec!["offline".into()];
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut bob = ts.login_available("bob").await;
    let mut alice = ts.login_available("alice").await;
    // Bob stops reading. Alice sends far more than socket buffers and the queue hold.
    let body = "x".repeat(16 * 1024);
    let mut bounced = 0;
    for i in 0..2000 {
        let m = Element::new("message", ns::CLIENT)
            .attr("to", bob.jid.as_str())
            .attr("id", format!("m{i}"))
            .attr("type", "chat")
            .child(Element::new("body", ns::CLIENT).text(body.clone()));
        alice.send(&m).await.expect("send");
        while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(1), alice.recv()).await {
            if e.get_attr("type") == Some("error") {
                bounced += 1;
            }
        }
        if bounced > 0 {
            break;
        }
    }
    assert!(
        bounced > 0,
        "undeliverable messages must bounce, not vanish"
    );
    // Bob's session was ended: either a policy-violation stream error, or (when the server
    // was blocked writing to him) the connection is dropped.
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), bob.recv()).await {
            Ok(Ok(_)) => continue,
            Ok(Err(ClientError::Stream(e))) => {
                break e.condition == StreamErrorCondition::PolicyViolation;
            }
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    assert!(ended, "slow reader was not disconnected");
    assert!(ts
        .server()
        .ctx()
        .router
        .sessions_of(&bob.jid.to_bare())
        .is_empty());
    ping(&mut alice).await;
}

#[tokio::test]
async fn username_is_case_insensitive_and_resource_requested() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut o = ts.options("Alice");
    o.resource = Some("balcony".into());
    let s = connect(&o).await.expect("login");
    assert_eq!(s.jid.as_str(), "alice@localhost/balcony");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_are_not_authorized_with_delay() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    for (user, pw) in [("alice", "wrong"), ("nobody", "whatever")] {
        for mech in [
            Mechanism::ScramSha256,
            Mechanism::ScramSha1,
            Mechanism::Plain,
        ] {
            let mut o = ts.options(user);
            o.password = pw.into();
            o.mechanism = Some(mech);
            let started = Instant::now();
            match connect(&o).await {
                Err(ClientError::Auth(cond)) => assert_eq!(cond, "not-authorized"),
                Err(e) => panic!("unexpected error {e}"),
                Ok(_) => panic!("{user} logged in with a wrong password"),
            }
            assert!(
                started.elapsed() >= Duration::from_millis(200),
                "no failure delay"
            );
        }
    }
    // The server still serves others.
    ts.login("alice").await;
}

#[tokio::test]
async fn authzid_for_another_user_is_refused() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    for mech in [Mechanism::ScramSha256, Mechanism::Plain] {
        let mut o = ts.options("alice");
        o.mechanism = Some(mech);
        o.authzid = Some("bob@localhost".into());
        match connect(&o).await {
            Err(ClientError::Auth(cond)) => assert_eq!(cond, "invalid-authzid"),
            Err(e) => panic!("unexpected error {e}"),
            Ok(s) => panic!("logged in as {} with a foreign authzid", s.jid),
        }
        // Naming oneself is fine.
        o.authzid = Some("alice@localhost".into());
        let s = connect(&o).await.expect("own authzid");
        assert_eq!(s.jid.to_bare().as_str(), "alice@localhost");
    }
}

#[tokio::test]
async fn message_between_two_users() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut alice = ts.login_available("alice").await;
    let mut bob = ts.login_available("bob").await;
    let msg = Element::new("message", ns::CLIENT)
        .attr("to", "bob@localhost")
        .attr("type", "chat")
        .attr("id", "m1")
        .child(Element::new("body", ns::CLIENT).text("Hello <Bob> & 😀"));
    alice.send(&msg).await.expect("send");
    let got = recv(&mut bob).await;
    assert_eq!(got.name, "message");
    assert_eq!(got.get_attr("from"), Some(alice.jid.as_str()));
    assert_eq!(
        got.get_child("body", ns::CLIENT).map(|b| b.text_content()),
        Some("Hello <Bob> & 😀".to_string())
    );
    // To a full JID as well.
    let msg = Element::new("message", ns::CLIENT)
        .attr("to", alice.jid.as_str())
        .attr("type", "chat")
        .child(Element::new("body", ns::CLIENT).text("hi back"));
    bob.send(&msg).await.expect("send");
    let got = recv(&mut alice).await;
    assert_eq!(got.get_attr("from"), Some(bob.jid.as_str()));
}

#[tokio::test]
async fn messages_to_unknown_users_and_remote_domains_bounce() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login_available("alice").await;
    for (to, cond) in [
        ("nobody@localhost", "service-unavailable"),
        ("someone@remote.example", "remote-server-not-found"),
    ] {
        alice
            .send(
                &Element::new("message", ns::CLIENT)
                    .attr("to", to)
                    .attr("id", "x")
                    .child(Element::new("body", ns::CLIENT).text("hello?")),
            )
            .await
            .expect("send");
        let e = recv(&mut alice).await;
        assert_eq!(e.get_attr("type"), Some("error"), "{e}");
        assert_eq!(e.get_attr("from"), Some(to));
        let err = confab_proto::StanzaError::from_stanza(&e).expect("error child");
        assert_eq!(err.condition.as_str(), cond);
    }
}

#[tokio::test]
async fn iq_routing_rules() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login_available("alice").await;
    // Ping to the server and to no-one (own account).
    for to in [Some("localhost"), None] {
        let mut iq = Element::new("iq", ns::CLIENT)
            .attr("type", "get")
            .attr("id", "p")
            .child(Element::new("ping", ns::PING));
        if let Some(t) = to {
            iq.set_attr("to", t);
        }
        alice.send(&iq).await.expect("send");
        let r = recv(&mut alice).await;
        assert_eq!(r.get_attr("type"), Some("result"), "{r}");
        assert_eq!(r.get_attr("id"), Some("p"));
    }
    // An unhandled namespace: service-unavailable.
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .attr("type", "get")
                .attr("id", "u")
                .attr("to", "localhost")
                .child(Element::new("query", "urn:example:unknown")),
        )
        .await
        .expect("send");
    let r = recv(&mut alice).await;
    assert_eq!(r.get_attr("type"), Some("error"));
    let err = confab_proto::StanzaError::from_stanza(&r).expect("error");
    assert_eq!(err.condition.as_str(), "service-unavailable");
    // Results and errors addressed to the server get no reply at all.
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .attr("type", "result")
                .attr("id", "r")
                .attr("to", "localhost"),
        )
        .await
        .expect("send");
    assert!(nothing_arrives(&mut alice, 300).await);
    // An iq set without payload: bad-request.
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .attr("type", "set")
                .attr("id", "e")
                .attr("to", "localhost"),
        )
        .await
        .expect("send");
    let r = recv(&mut alice).await;
    let err = confab_proto::StanzaError::from_stanza(&r).expect("error");
    assert_eq!(err.condition.as_str(), "bad-request");
    // Disco and version come from modules.
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .attr("type", "get")
                .attr("id", "d")
                .attr("to", "localhost")
                .child(Element::new("query", ns::DISCO_INFO)),
        )
        .await
        .expect("send");
    let r = recv(&mut alice).await;
    let q = r.get_child("query", ns::DISCO_INFO).expect("disco result");
    let features: Vec<_> = q.elements().filter_map(|f| f.get_attr("var")).collect();
    assert!(features.contains(&ns::PING), "{features:?}");
    assert!(features.contains(&ns::VERSION), "{features:?}");
}

#[tokio::test]
async fn disabled_module_is_gone() {
    let ts = TestServer::start_with(|c| c.modules.disabled = vec!["version".into()]).await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .attr("type", "get")
                .attr("id", "v")
                .attr("to", "localhost")
                .child(Element::new("query", ns::VERSION)),
        )
        .await
        .expect("send");
    let r = recv(&mut alice).await;
    assert_eq!(r.get_attr("type"), Some("error"), "{r}");
}

#[tokio::test]
async fn binding_twice_is_not_allowed() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .attr("type", "set")
                .attr("id", "b2")
                .child(Element::new("bind", ns::BIND)),
        )
        .await
        .expect("send");
    let r = recv(&mut alice).await;
    let err = confab_proto::StanzaError::from_stanza(&r).expect("error");
    assert_eq!(err.condition.as_str(), "not-allowed");
    ping(&mut alice).await;
}

#[tokio::test]
async fn resource_conflict_policies() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut o = ts.options("alice");
    o.resource = Some("phone".into());
    let mut first = connect(&o).await.expect("first");
    let _second = connect(&o).await.expect("second replaces first");
    assert_eq!(
        expect_session_stream_error(&mut first).await,
        StreamErrorCondition::Conflict
    );

    let ts = TestServer::start_with(|c| {
        c.c2s.resource_conflict = confab_server::config::ResourceConflict::Refuse
    })
    .await;
    ts.add_user("alice").await;
    let mut o = ts.options("alice");
    o.resource = Some("phone".into());
    let mut first = connect(&o).await.expect("first");
    match connect(&o).await {
        Err(ClientError::Protocol(p)) => assert!(p.contains("conflict"), "{p}"),
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("second bind should be refused"),
    }
    ping(&mut first).await;

    let ts = TestServer::start_with(|c| {
        c.c2s.resource_conflict = confab_server::config::ResourceConflict::Random
    })
    .await;
    ts.add_user("alice").await;
    let mut o = ts.options("alice");
    o.resource = Some("phone".into());
    let first = connect(&o).await.expect("first");
    let second = connect(&o).await.expect("second gets another resource");
    assert_ne!(first.jid, second.jid);
}

#[tokio::test]
async fn forged_from_is_invalid_from() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut bob = ts.login_available("bob").await;
    let mut alice = ts.login("alice").await;
    alice
        .send(
            &Element::new("message", ns::CLIENT)
                .attr("to", "bob@localhost")
                .attr("from", "mallory@localhost/x")
                .child(Element::new("body", ns::CLIENT).text("forged")),
        )
        .await
        .expect("send");
    assert_eq!(
        expect_session_stream_error(&mut alice).await,
        StreamErrorCondition::InvalidFrom
    );
    assert!(
        nothing_arrives(&mut bob, 300).await,
        "forged message was delivered"
    );
}

#[tokio::test]
async fn malformed_xml_closes_only_that_stream() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut bob = ts.login_available("bob").await;
    let cases: [(&[u8], StreamErrorCondition); 4] = [
        (
            b"<message><body>oops</message>",
            StreamErrorCondition::NotWellFormed,
        ),
        (b"<!-- comment -->", StreamErrorCondition::RestrictedXml),
        (b"<?pi data?>", StreamErrorCondition::RestrictedXml),
        (
            b"<foo xmlns='urn:example'/>",
            StreamErrorCondition::UnsupportedStanzaType,
        ),
    ];
    for (bytes, condition) in cases {
        let mut alice = ts.login("alice").await;
        alice.stream.write_bytes(bytes).await.expect("write");
        assert_eq!(expect_session_stream_error(&mut alice).await, condition);
        // Only that stream ended.
        ping(&mut bob).await;
    }
}

#[tokio::test]
async fn oversized_and_deep_stanzas_are_policy_violations() {
    let ts = TestServer::start_with(|c| {
        c.limits.max_stanza_size = 10_000;
        // A stored vCard must fit in a stanza (checked at start).
        c.update_section("vcard", |v: &mut VcardConfig| v.max_size = 8_000)
            .expect("vcard section");
    })
    .await;
    ts.add_user("alice").await;
    ts.add_user("bob").await;
    let mut bob = ts.login_available("bob").await;
    let mut alice = ts.login("alice").await;
    let big = format!(
        "<message to='bob@localhost'><body>{}</body></message>",
        "x".repeat(20_000)
    );
    alice
        .stream
        .write_bytes(big.as_bytes())
        .await
        .expect("write");
    assert_eq!(
        expect_session_stream_error(&mut alice).await,
        StreamErrorCondition::PolicyViolation
    );
    let mut alice = ts.login("alice").await;
    let deep = "<a>".repeat(200);
    alice
        .stream
        .write_bytes(format!("<message to='bob@localhost'>{deep}").as_bytes())
        .await
        .expect("write");
    assert_eq!(
        expect_session_stream_error(&mut alice).await,
        StreamErrorCondition::PolicyViolation
    );
    assert!(nothing_arrives(&mut bob, 200).await);
    ping(&mut bob).await;
}

#[tokio::test]
async fn stream_header_errors() {
    let ts = TestServer::start().await;
    // Wrong stream namespace.
    let mut r = ts.raw().await;
    r.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' version='1.0'>").await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::InvalidNamespace
    );
    // Missing or old version.
    let mut r = ts.raw().await;
    r.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>").await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::UnsupportedVersion
    );
    // Unknown host.
    let mut r = ts.raw().await;
    r.send("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='elsewhere.example' version='1.0'>").await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::HostUnknown
    );
    // Not XML at all.
    let mut r = ts.raw().await;
    r.send("GET / HTTP/1.1\r\n\r\n").await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::NotWellFormed
    );
}

#[tokio::test]
async fn starttls_is_required_and_nothing_precedes_auth() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    // Plain-text features offer only STARTTLS, marked required.
    let mut r = ts.raw().await;
    let features = r.open().await;
    let tls = features
        .get_child("starttls", ns::TLS)
        .expect("starttls offered");
    assert!(tls.get_child("required", ns::TLS).is_some());
    assert!(
        features.get_child("mechanisms", ns::SASL).is_none(),
        "{features}"
    );
    // SASL before TLS is refused with encryption-required.
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHg=</auth>")
        .await;
    let f = r.element().await;
    assert!(f.is("failure", ns::SASL));
    assert!(
        f.get_child("encryption-required", ns::SASL).is_some(),
        "{f}"
    );
    // A stanza before authentication ends the stream.
    r.send("<message to='alice@localhost'><body>hi</body></message>")
        .await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::NotAuthorized
    );
    // A client that insists on no TLS cannot log in.
    let mut o = ts.options("alice");
    o.tls = TlsMode::None;
    assert!(connect(&o).await.is_err());
}

#[tokio::test]
async fn unsupported_mechanism_fails_and_retry_works() {
    let ts = TestServer::start_with(|c| {
        c.c2s.require_tls = false;
        c.c2s.max_auth_failures = 4;
    })
    .await;
    ts.add_user("alice").await;
    let mut r = ts.raw().await;
    let features = r.open().await;
    let mechs: Vec<String> = features
        .get_child("mechanisms", ns::SASL)
        .expect("mechanisms offered when TLS is optional")
        .elements()
        .map(|m| m.text_content())
        .collect();
    assert!(mechs.contains(&"SCRAM-SHA-256".to_string()));
    assert!(
        !mechs.contains(&"PLAIN".to_string()),
        "PLAIN offered without TLS: {mechs:?}"
    );
    assert!(!mechs.iter().any(|m| m.ends_with("-PLUS")), "{mechs:?}");
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='X-NOPE'>AA==</auth>")
        .await;
    let f = r.element().await;
    assert!(f.get_child("invalid-mechanism", ns::SASL).is_some(), "{f}");
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHg=</auth>")
        .await;
    let f = r.element().await;
    assert!(
        f.get_child("invalid-mechanism", ns::SASL).is_some(),
        "PLAIN must not work in clear: {f}"
    );
    // Bad base64.
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>!!!</auth>")
        .await;
    let f = r.element().await;
    assert!(f.get_child("incorrect-encoding", ns::SASL).is_some(), "{f}");
    // The fourth failure on a stream ends it.
    r.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>bixuPWEscj1i</auth>").await;
    let f = r.element().await;
    assert!(f.is("failure", ns::SASL), "{f}");
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::PolicyViolation
    );
}

#[tokio::test]
async fn graceful_shutdown_closes_every_stream() {
    let mut ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut a = ts.login("alice").await;
    let mut b = ts.login("alice").await;
    let server = ts.server.take().expect("server");
    let shutdown = tokio::spawn(server.shutdown());
    assert_eq!(
        expect_session_stream_error(&mut a).await,
        StreamErrorCondition::SystemShutdown
    );
    assert_eq!(
        expect_session_stream_error(&mut b).await,
        StreamErrorCondition::SystemShutdown
    );
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown finishes")
        .expect("shutdown task");
}

#[tokio::test]
async fn idle_sessions_time_out_and_keepalives_flow() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ts = TestServer::start_with(|c| {
        c.c2s.idle_timeout = 2;
        c.c2s.keepalive_interval = 1;
    })
    .await;
    ts.add_user("alice").await;
    // Raw bytes from here on: keepalives are whitespace, which the XML parser hides.
    let mut io = ts.login("alice").await.stream.into_inner();
    let mut buf = [0u8; 1024];

    // A client that answers each keepalive (with whitespace of its own) stays connected
    // well past the idle timeout.
    let started = Instant::now();
    let mut keepalives = 0;
    while started.elapsed() < Duration::from_secs(5) {
        let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut buf))
            .await
            .expect("a keepalive within 5 s")
            .unwrap_or(0);
        assert!(
            n > 0,
            "closed after {:?} although the client answered",
            started.elapsed()
        );
        let got = buf.get(..n).unwrap_or_default();
        assert!(
            got.iter().all(|b| b.is_ascii_whitespace()),
            "expected only keepalives: {}",
            String::from_utf8_lossy(got)
        );
        keepalives += 1;
        io.write_all(b" ").await.expect("answer");
        io.flush().await.expect("flush");
    }
    assert!(keepalives >= 3, "{keepalives} keepalives in 5 s");

    // A silent client is disconnected after the idle timeout.
    let silent = Instant::now();
    let mut rest = Vec::new();
    loop {
        let read = tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf))
            .await
            .expect("closed within 10 s");
        match read {
            Ok(n) if n > 0 => rest.extend_from_slice(buf.get(..n).unwrap_or_default()),
            _ => break,
        }
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("<connection-timeout"), "{rest}");
    assert!(
        silent.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        silent.elapsed()
    );
}

/// The silence checks of `common` must not take a closed session for silence.
#[tokio::test]
#[should_panic(expected = "the stream ended")]
async fn silence_checks_fail_when_the_session_is_gone() {
    let ts = TestServer::start().await;
    ts.add_user("alice").await;
    let mut a = ts.login("alice").await;
    a.stream
        .write_bytes(b"</stream:stream>")
        .await
        .expect("close");
    no_message(&mut a, 2000).await;
}

#[tokio::test]
async fn fast_senders_are_read_at_the_configured_rate() {
    let ts = TestServer::start_with(|c| {
        c.limits.read_rate = 20_000;
        c.limits.read_burst = 20_000;
    })
    .await;
    ts.add_user("alice").await;
    let mut alice = ts.login("alice").await;
    let started = Instant::now();
    // About 80 kB: 20 kB of burst, then 20 kB/s.
    let pad = "z".repeat(8_000);
    for i in 0..10 {
        alice
            .send(
                &Element::new("message", ns::CLIENT)
                    .attr("to", "localhost")
                    .attr("type", "headline")
                    .attr("id", format!("h{i}"))
                    .child(Element::new("body", ns::CLIENT).text(pad.clone())),
            )
            .await
            .expect("send");
    }
    ping(&mut alice).await;
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "not throttled: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connection_limits_per_ip() {
    let ts = TestServer::start_with(|c| c.limits.max_connections_per_ip = 2).await;
    let mut a = ts.raw().await;
    a.open().await;
    let mut b = ts.raw().await;
    b.open().await;
    // The third connection from the same address is closed at once.
    let mut c = ts.raw().await;
    c.send(&confab_stream::client::stream_header(DOMAIN)).await;
    let r = tokio::time::timeout(Duration::from_secs(5), c.stream.next_event()).await;
    assert!(
        matches!(r, Ok(Err(_))),
        "third connection was served: {r:?}"
    );
    // Closing one frees a slot.
    drop(a);
    let mut served = false;
    for _ in 0..50 {
        let mut d = ts.raw().await;
        d.send(&confab_stream::client::stream_header(DOMAIN)).await;
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), d.stream.next_event()).await
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a freed slot was not reused");
}

#[tokio::test]
async fn handshake_timeout() {
    let ts = TestServer::start_with(|c| c.c2s.handshake_timeout = 1).await;
    let mut r = ts.raw().await;
    r.open().await;
    assert_eq!(
        r.expect_stream_error().await,
        StreamErrorCondition::ConnectionTimeout
    );
}

/// Reads raw bytes until `until` appears (or the peer closes), for checks on the exact form.
async fn read_raw_until(tcp: &mut tokio::net::TcpStream, until: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains(until) {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn features_and_stream_errors_use_the_stream_prefix() {
    use tokio::io::AsyncWriteExt;
    let ts = TestServer::start().await;
    // RFC 6120 §4.8.5: the streams namespace under the header's `stream` prefix; some
    // clients accept nothing else.
    let mut tcp = tokio::net::TcpStream::connect(ts.addr)
        .await
        .expect("connect");
    tcp.write_all(confab_stream::client::stream_header(DOMAIN).as_bytes())
        .await
        .expect("header");
    let got = read_raw_until(&mut tcp, "</stream:features>").await;
    assert!(got.contains("<stream:features>"), "{got}");
    assert!(!got.contains("<features"), "{got}");
    tcp.write_all(b"<bogus/>").await.expect("write");
    let got = read_raw_until(&mut tcp, "</stream:stream>").await;
    assert!(got.contains("<stream:error>"), "{got}");
    assert!(got.contains("</stream:error></stream:stream>"), "{got}");
    assert!(!got.contains("<error xmlns='http://etherx"), "{got}");
}
