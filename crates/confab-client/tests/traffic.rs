//! Opt-in XML traffic logging (`ClientOptions::log_traffic`) against an in-process
//! confabd: registering, logging in (SCRAM) and changing the password with logging on
//! writes real XML for every element, and never the passwords or the SASL exchange.

use confab_client::traffic::{REDACTED, TARGET};
use confab_client::{change_password, register_account, Client, Config};
use confab_modules::register::{RegistrationConfig, RegistrationPolicy};
use confab_proto::parser::{parse_fragment, Limits};
use confab_tests::TestServer;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

const FIRST: &str = "first-Pa55word";
const SECOND: &str = "second-Pa55word";

#[tokio::test]
async fn traffic_log_is_xml_without_secrets() {
    let ts = TestServer::start_with(|c| {
        c.update_section("registration", |r: &mut RegistrationConfig| {
            r.policy = RegistrationPolicy::Open;
            r.rate_limit_per_ip = 0;
            r.max_attempts_per_stream = 0;
        })
        .expect("registration section");
    })
    .await;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(format!("{TARGET}=debug"))
        .with_writer(captured.clone())
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .finish();
    // The test's runtime is single-threaded: the client's tasks log through this too.
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut o = ts.options("logger");
    o.password = FIRST.into();
    o.log_traffic = true;
    register_account(&Config::new(o.clone()), &[])
        .await
        .expect("registers");
    let client = Client::connect(Config::new(o.clone()))
        .await
        .expect("logs in");
    change_password(&client, SECOND)
        .await
        .expect("password changed");
    client.close().await.expect("closes");
    // Logging in with the new password: a second SCRAM exchange.
    o.password = SECOND.into();
    let client = Client::connect(Config::new(o))
        .await
        .expect("logs in again");
    client.close().await.expect("closes");

    let log = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
    for secret in [FIRST, SECOND, "n,,n=logger", "bixuPWxvZ2dlc"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    let mut elements = 0;
    let mut sasl = 0;
    for line in log.lines() {
        let (dir, xml) = line.split_once(' ').expect("direction and XML");
        assert!(dir == "SEND" || dir == "RECV", "{line}");
        if xml.starts_with("<?xml") || xml.starts_with("</stream:stream") {
            continue; // stream header and close, written as bytes
        }
        let el = parse_fragment(xml, "jabber:client", &Limits::default())
            .unwrap_or_else(|| panic!("not one XML element: {line}"));
        elements += 1;
        if el.ns.as_ref() as &str == confab_client::ns::SASL
            && ["auth", "challenge", "response", "success"].contains(&el.name.as_str())
        {
            sasl += 1;
            let text = el.text_content();
            assert!(text.is_empty() || text == REDACTED, "{line}");
        }
    }
    assert!(
        sasl >= 6,
        "two SCRAM exchanges logged (auth, challenge, response, success): {log}"
    );
    assert!(
        log.contains("jabber:iq:register"),
        "registration and password change logged"
    );
    assert!(
        log.contains("RECV <stream:features") || log.contains("RECV <features"),
        "{log}"
    );
    assert!(elements > 10, "{log}");
}
