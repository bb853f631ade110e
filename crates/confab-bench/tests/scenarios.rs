//! Every scenario, briefly, against an in-process confabd on loopback: the counts must add
//! up (all registered, all logins succeeded, sent == delivered with nothing lost, every
//! idle session answering its ping, every room occupant and every contact getting every
//! message and status change, every stored message delivered at login, every churned
//! session back). Timings are reported, never asserted.

use confab_bench::opts::{CommonOpts, MechArg, TlsArg};
use confab_bench::scenarios::muc::MucOpts;
use confab_bench::scenarios::offline::OfflineOpts;
use confab_bench::scenarios::presence::{PresenceOpts, RosterSetup};
use confab_bench::scenarios::reconnect::ReconnectOpts;
use confab_bench::scenarios::{chat::ChatOpts, idle::IdleOpts, login::LoginOpts};
use confab_bench::{run, Report, Scenario};
use std::net::SocketAddr;
use std::path::Path;

const USERS: usize = 20;

/// Starts an in-process confabd on ephemeral loopback ports: STARTTLS and direct TLS
/// (self-signed certificate), plaintext authentication allowed, open in-band registration
/// without a practical per-IP limit, the MUC service without its per-occupant message rate. The one place that knows the server's API, so a
/// change there is adapted here only. Returns the server and its STARTTLS and direct TLS
/// addresses.
async fn start_server(dir: &Path) -> (confab_server::Server, SocketAddr, SocketAddr) {
    use confab_modules::register::{RegistrationConfig, RegistrationPolicy};
    use confab_server::config::Config;
    let mut c = Config::default();
    c.server.domains = vec!["localhost".into()];
    c.server.data_dir = dir.to_path_buf();
    c.c2s.interfaces = vec!["127.0.0.1".into()];
    c.c2s.port = 0;
    c.c2s.tls_port = 0;
    c.c2s.require_tls = false;
    c.c2s.allow_plain_without_tls = true;
    c.http.interfaces = vec!["127.0.0.1".into()];
    c.http.port = 0;
    c.http.tls_port = 0;
    c.limits.max_connections_per_ip = 5000;
    c.limits.max_connections_per_subnet = 5000;
    c.update_section("registration", |r: &mut RegistrationConfig| {
        r.policy = RegistrationPolicy::Open;
        r.rate_limit_per_ip = 100_000;
    })
    .expect("registration section");
    c.update_section("muc", |m: &mut confab_muc::config::MucConfig| {
        m.message_rate = 0.0;
    })
    .expect("muc section");
    let mut modules = confab_modules::all();
    modules.extend(confab_muc::all());
    let server = confab_server::Server::start(c, modules)
        .await
        .expect("server starts");
    let addr = server.c2s_addr().expect("STARTTLS endpoint");
    let tls_addr = server.c2s_tls_addr().expect("direct TLS endpoint");
    (server, addr, tls_addr)
}

fn common(addr: SocketAddr, duration: f64) -> CommonOpts {
    CommonOpts {
        server: addr.to_string(),
        domain: "localhost".into(),
        tls: TlsArg::Starttls,
        mechanism: MechArg::ScramSha1,
        users: USERS,
        user_prefix: "bench".into(),
        password: "bench-password-0".into(),
        duration,
        concurrency: 5,
        timeout: 30.0,
        quiet: true,
        ..CommonOpts::default()
    }
}

async fn ok(s: Scenario) -> Report {
    let r = run(&s).await.expect("scenario runs");
    // Shown with --nocapture; handy when a count is off.
    println!("{}", r.summary());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_against_confabd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, addr, tls_addr) = start_server(dir.path()).await;

    // register: all new, then all existing (repeatable runs).
    let r = ok(Scenario::Register {
        common: common(addr, 60.0),
    })
    .await;
    assert_eq!(r.count("registered"), USERS as u64, "{:?}", r.errors);
    assert_eq!(r.count("failed"), 0);
    let r = ok(Scenario::Register {
        common: common(addr, 60.0),
    })
    .await;
    assert_eq!(r.count("existing"), USERS as u64, "{:?}", r.errors);
    assert_eq!(r.count("registered") + r.count("failed"), 0);

    // login: STARTTLS + SCRAM-SHA-1, then direct TLS + SCRAM-SHA-256, then plaintext PLAIN.
    let r = ok(Scenario::Login {
        common: common(addr, 60.0),
        opts: LoginOpts { count: Some(20) },
    })
    .await;
    assert_eq!(r.count("ok"), 20, "{:?}", r.errors);
    assert_eq!(r.count("failed") + r.count("close_failed"), 0);
    assert_eq!(r.latency["login"].count, 20);
    for (tls, mechanism, at) in [
        (TlsArg::Direct, MechArg::ScramSha256, tls_addr),
        (TlsArg::None, MechArg::Plain, addr),
    ] {
        let r = ok(Scenario::Login {
            common: CommonOpts {
                tls,
                mechanism,
                ..common(at, 60.0)
            },
            opts: LoginOpts { count: Some(5) },
        })
        .await;
        assert_eq!(r.count("ok"), 5, "{tls:?} {mechanism:?}: {:?}", r.errors);
    }

    // chat, closed loop: 5 pairs, 10 in flight, about a second; the "server" is this
    // process, so its CPU time is ours.
    let r = ok(Scenario::Chat {
        common: CommonOpts {
            cpu_pid: Some(std::process::id()),
            ..common(addr, 1.0)
        },
        opts: ChatOpts {
            pairs: 5,
            window: 10,
            ..ChatOpts::default()
        },
    })
    .await;
    assert_eq!(r.count("pairs"), 5, "{:?}", r.errors);
    assert!(r.count("sent") > 0);
    assert_eq!(r.count("sent"), r.count("delivered"), "{:?}", r.errors);
    assert_eq!(r.count("lost"), 0);
    assert_eq!(r.count("out_of_order") + r.count("bounced"), 0);
    assert_eq!(r.latency["delivery"].count, r.count("delivered"));
    assert!(r.server_cpu["server_cpu_us_per_message"] >= 0.0);

    // chat, open loop at 200 msgs/s for a second: exactly 200 messages scheduled.
    let r = ok(Scenario::Chat {
        common: common(addr, 1.0),
        opts: ChatOpts {
            pairs: 5,
            rate: Some(200),
            ..ChatOpts::default()
        },
    })
    .await;
    assert_eq!(r.count("scheduled"), 200, "{:?}", r.errors);
    assert_eq!(r.count("sent"), 200);
    assert_eq!(r.count("delivered"), 200);
    assert_eq!(r.count("lost"), 0);
    assert_eq!(r.latency["scheduler_lag"].count, 200);
    assert_eq!(r.latency["send_lag"].count, 200);
    assert_eq!(r.latency["delivery"].count, 200);

    // idle: 20 sessions held; the "server" is this process, so its RSS is ours.
    let json = dir.path().join("idle.json");
    let r = ok(Scenario::Idle {
        common: CommonOpts {
            json: Some(json.clone()),
            ..common(addr, 0.5)
        },
        opts: IdleOpts {
            sessions: Some(20),
            pid: Some(std::process::id()),
            settle: 0.1,
        },
    })
    .await;
    assert_eq!(r.count("connected"), 20, "{:?}", r.errors);
    assert_eq!(r.count("answered"), 20, "{:?}", r.errors);
    assert_eq!(r.count("dropped") + r.count("unanswered"), 0);
    let rss = r.server_rss.as_ref().expect("RSS measured");
    assert_eq!(rss.sessions, 20);
    assert!(rss.before_kib > 0 && rss.after_kib > 0);

    // The JSON carries the scenario, options (never the password), counts and RSS.
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
    assert_eq!(v["scenario"], "idle");
    assert_eq!(v["options"]["sessions"], 20);
    assert_eq!(v["options"]["tls"], "starttls");
    assert!(v["options"].get("password").is_none());
    assert_eq!(v["counts"]["answered"], 20);
    assert!(v["server_rss"]["kib_per_session"].is_number());
    assert!(v["latency"]["ping"]["p99_us"].is_number());

    // Two idle runs at once on the same accounts (as two load processes are run to hold
    // more sessions than one process may): neither replaces the other's sessions.
    let idle = || Scenario::Idle {
        common: common(addr, 1.0),
        opts: IdleOpts {
            sessions: Some(20),
            pid: None,
            settle: 0.1,
        },
    };
    let (a, b) = tokio::join!(ok(idle()), ok(idle()));
    for r in [&a, &b] {
        assert_eq!(r.count("connected"), 20, "{:?}", r.errors);
        assert_eq!(r.count("answered"), 20, "{:?}", r.errors);
        assert_eq!(
            r.count("dropped") + r.count("unanswered"),
            0,
            "{:?}",
            r.errors
        );
    }

    fan_out_scenarios(addr).await;
    server.shutdown().await;
}

/// A fan-out run checked whole: something sent, every due copy delivered, none extra.
fn all_delivered(r: &Report) {
    assert!(r.count("sent") > 0, "{:?}", r.errors);
    assert_eq!(r.count("delivered"), r.count("expected"), "{:?}", r.errors);
    assert_eq!(r.count("lost") + r.count("extra"), 0, "{:?}", r.counts);
    assert_eq!(r.count("incomplete_receivers"), 0);
    assert_eq!(r.count("out_of_order") + r.count("bounced"), 0);
    assert_eq!(r.latency["delivery"].count, r.count("delivered"));
}

/// muc, presence, offline and reconnect (the accounts exist: registered above).
async fn fan_out_scenarios(addr: SocketAddr) {
    // muc, closed loop: 8 occupants, 3 senders; each message to all 8 (the sender too).
    let r = ok(Scenario::Muc {
        common: common(addr, 1.0),
        opts: MucOpts {
            occupants: 8,
            senders: 3,
            ..MucOpts::default()
        },
    })
    .await;
    assert_eq!(r.count("joined"), 8, "{:?}", r.errors);
    all_delivered(&r);
    assert_eq!(r.count("expected"), r.count("sent") * 8);

    // muc, open loop: 100 messages in a second over 2 senders.
    let r = ok(Scenario::Muc {
        common: common(addr, 1.0),
        opts: MucOpts {
            occupants: 6,
            senders: 2,
            rate: Some(100),
            ..MucOpts::default()
        },
    })
    .await;
    assert_eq!(r.count("scheduled"), 100, "{:?}", r.errors);
    assert_eq!(r.count("sent"), 100);
    all_delivered(&r);
    assert_eq!(r.count("delivered"), 600);

    // presence: 10 accounts, 4 contacts each; handshake, then again on the rosters as
    // they are.
    for setup in [RosterSetup::Handshake, RosterSetup::Assume] {
        let r = ok(Scenario::Presence {
            common: CommonOpts {
                users: 10,
                ..common(addr, 1.0)
            },
            opts: PresenceOpts {
                contacts: 4,
                setup,
                ..PresenceOpts::default()
            },
        })
        .await;
        if setup == RosterSetup::Handshake {
            assert_eq!(r.count("subscriptions_approved"), 40, "{:?}", r.errors);
        }
        assert_eq!(r.count("logged_in"), 10, "{:?}", r.errors);
        assert_eq!(r.count("contacts_seen_at_login"), 40, "{:?}", r.errors);
        all_delivered(&r);
        assert_eq!(r.count("expected"), r.count("sent") * 4);
    }

    // offline: 6 recipients × 15 messages from 2 senders, then delivered at login.
    let r = ok(Scenario::Offline {
        common: common(addr, 1.0),
        opts: OfflineOpts {
            recipients: 6,
            messages: 15,
            senders: 2,
            ..OfflineOpts::default()
        },
    })
    .await;
    assert_eq!(r.count("sent"), 90, "{:?}", r.errors);
    assert_eq!(r.count("delivered"), 90, "{:?}", r.errors);
    assert_eq!(
        r.count("lost") + r.count("bounced") + r.count("out_of_order"),
        0
    );
    assert_eq!(r.count("recipients_complete"), 6);
    assert_eq!(r.count("stale"), 0);

    // reconnect: 10 sessions churned for a second, 3 at a time; then at 50/s.
    for rate in [None, Some(50)] {
        let r = ok(Scenario::Reconnect {
            common: CommonOpts {
                concurrency: 3,
                ..common(addr, 1.0)
            },
            opts: ReconnectOpts {
                sessions: Some(10),
                rate,
                count: None,
            },
        })
        .await;
        assert_eq!(r.count("held"), 10, "{:?}", r.errors);
        assert!(r.count("reconnected") > 0);
        assert_eq!(
            r.count("failed") + r.count("close_failed"),
            0,
            "{:?}",
            r.errors
        );
        assert_eq!(r.count("answered_at_end"), 10, "{:?}", r.errors);
        if rate.is_some() {
            // At most the 50 due within the second.
            assert!(r.count("reconnected") <= 50, "{:?}", r.counts);
        }
    }
}

#[tokio::test]
async fn remote_servers_are_refused() {
    // Nothing is sent: the address is refused before any connection.
    let s = Scenario::Login {
        common: common("192.0.2.1:5222".parse().expect("addr"), 1.0),
        opts: LoginOpts::default(),
    };
    assert!(matches!(
        run(&s).await,
        Err(confab_bench::BenchError::Usage(_))
    ));
}
