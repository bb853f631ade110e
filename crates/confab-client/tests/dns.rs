//! Finding the server in DNS: a tiny DNS responder on 127.0.0.1 answers the SDK's resolver
//! (configured to ask only it), so nothing leaves the loopback.

use confab_client::dns::{
    DnsConfig, NameServerConfigGroup, ResolveHosts, Resolver, ResolverConfig, ResolverOpts,
};
use confab_client::{Client, Config, Endpoint, Error};
use confab_tests::{TcpProxy, TestServer, PASSWORD};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const DOMAIN: &str = "example.test";

/// Answers from a fixed table: (name, type) -> records; other names are NXDOMAIN.
struct Zone(HashMap<(String, RecordType), Vec<RData>>);

impl Zone {
    fn new() -> Self {
        Zone(HashMap::new())
    }

    fn srv(mut self, service: &str, priority: u16, weight: u16, port: u16, target: &str) -> Self {
        let target = Name::from_ascii(target).expect("name");
        self.0
            .entry((format!("{service}.{DOMAIN}."), RecordType::SRV))
            .or_default()
            .push(RData::SRV(SRV::new(priority, weight, port, target)));
        self
    }

    fn a(mut self, name: &str) -> Self {
        self.0
            .entry((name.to_string(), RecordType::A))
            .or_default()
            .push(RData::A(A(Ipv4Addr::LOCALHOST)));
        // The name exists: AAAA is an empty answer, not NXDOMAIN.
        self.0
            .entry((name.to_string(), RecordType::AAAA))
            .or_default();
        self
    }
}

/// Serves `zone` over UDP on 127.0.0.1 until the test ends; returns its address.
async fn responder(zone: Zone) -> SocketAddr {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind dns");
    let addr = sock.local_addr().expect("dns addr");
    let zone = Arc::new(zone);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::new();
            reply
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(query.op_code())
                .set_recursion_desired(query.recursion_desired())
                .set_recursion_available(true)
                .set_authoritative(true);
            let mut known = false;
            for q in query.queries() {
                reply.add_query(q.clone());
                let key = (q.name().to_ascii().to_lowercase(), q.query_type());
                known |= zone.0.keys().any(|(n, _)| *n == key.0);
                for rdata in zone.0.get(&key).into_iter().flatten() {
                    reply.add_answer(Record::from_rdata(q.name().clone(), 60, rdata.clone()));
                }
            }
            if !known {
                reply.set_response_code(ResponseCode::NXDomain);
            }
            if let Ok(bytes) = reply.to_vec() {
                let _ = sock.send_to(&bytes, peer).await;
            }
        }
    });
    addr
}

fn dns_config(server: SocketAddr, fallback_port: u16) -> DnsConfig {
    let config = ResolverConfig::from_parts(
        None,
        vec![],
        NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true),
    );
    let mut opts = ResolverOpts::default();
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    DnsConfig {
        resolver: Resolver::custom(config, opts),
        fallback_port,
    }
}

async fn server() -> TestServer {
    let ts = TestServer::start_with(|c| c.server.domains = vec![DOMAIN.to_string()]).await;
    ts.add_account(&format!("alice@{DOMAIN}")).await;
    ts
}

fn config(dns: DnsConfig) -> Config {
    let mut c = Config::for_domain(DOMAIN, "alice", PASSWORD);
    c.options.verify = confab_client::CertVerification::Insecure;
    c.endpoint = Endpoint::Dns(dns);
    c.connect_timeout = Duration::from_secs(10);
    c
}

/// A port nothing listens on.
async fn dead_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test]
async fn srv_records_are_tried_in_priority_order() {
    let ts = server().await;
    let starttls = TcpProxy::start(ts.addr).await;
    let direct = TcpProxy::start(ts.tls_addr).await;
    let zone = Zone::new()
        // Best priority, but nobody is there: the client goes on to the next.
        .srv(
            "_xmpps-client._tcp",
            0,
            0,
            dead_port().await,
            "dead.example.test.",
        )
        .srv(
            "_xmpp-client._tcp",
            5,
            10,
            starttls.addr.port(),
            "xmpp.example.test.",
        )
        .srv(
            "_xmpps-client._tcp",
            10,
            10,
            direct.addr.port(),
            "xmpp.example.test.",
        )
        .a("dead.example.test.")
        .a("xmpp.example.test.");
    let dns = responder(zone).await;
    let client = Client::connect(config(dns_config(dns, 1)))
        .await
        .expect("connects through SRV");
    assert_eq!(client.jid().domain().as_str(), DOMAIN);
    assert_eq!((starttls.accepted(), direct.accepted()), (1, 0));
    client.close().await.expect("close");

    // Direct TLS first at equal priority (XEP-0368).
    let zone = Zone::new()
        .srv(
            "_xmpp-client._tcp",
            0,
            0,
            starttls.addr.port(),
            "xmpp.example.test.",
        )
        .srv(
            "_xmpps-client._tcp",
            0,
            0,
            direct.addr.port(),
            "xmpp.example.test.",
        )
        .a("xmpp.example.test.");
    let dns = responder(zone).await;
    let client = Client::connect(config(dns_config(dns, 1)))
        .await
        .expect("connects with direct TLS");
    assert_eq!((starttls.accepted(), direct.accepted()), (1, 1));
    client.close().await.expect("close");
}

#[tokio::test]
async fn without_srv_records_the_domain_itself_is_tried() {
    let ts = server().await;
    let dns = responder(Zone::new().a(&format!("{DOMAIN}."))).await;
    // RFC 6120 §3.2.2 says port 5222; the test server listens elsewhere.
    let client = Client::connect(config(dns_config(dns, ts.addr.port())))
        .await
        .expect("connects to the domain's address");
    client.close().await.expect("close");
}

#[tokio::test]
async fn a_domain_that_declines_the_service_is_an_error() {
    let dns = responder(
        Zone::new()
            .srv("_xmpp-client._tcp", 0, 0, 0, ".")
            .a(&format!("{DOMAIN}.")),
    )
    .await;
    match Client::connect(config(dns_config(dns, 5222))).await {
        Err(Error::Dns(e)) => assert!(e.contains("no XMPP"), "{e}"),
        other => panic!("expected a DNS error, got {other:?}"),
    }
}
