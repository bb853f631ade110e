//! The HTTP listeners: modules' routes (`Registry::http_route`) served on `[http] port`
//! (plain) and `[http] tls_port` (TLS with the server's certificate), and modules' own
//! listeners (`Registry::http_listener`). Every request is tagged with what is known of its
//! connection (`HttpConnection`); behind a trusted reverse proxy (`[http] trusted_proxies`)
//! the client's address is the one the proxy forwarded, so logs, connection limits, session
//! listings and per-address rate limits see the client, not the proxy.

use crate::config::{ForwardedHeader, HttpSection};
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// What the server knows of one HTTP request's connection; a request extension on every
/// listener the server runs, and an extractor (`conn: HttpConnection`) for handlers.
///
/// `ConnectInfo<SocketAddr>` seen by handlers is the *client's* address (`client`, with
/// port 0 when a proxy forwarded it), so code written against it counts and logs clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpConnection {
    /// The TCP peer: a reverse proxy when one is in front.
    pub peer: SocketAddr,
    /// The client: `peer`, or the address a trusted proxy forwarded.
    pub client: SocketAddr,
    /// The connection to this server is TLS (`[http] tls_port`).
    pub tls: bool,
    /// A trusted proxy said the client reached it over HTTPS (`X-Forwarded-Proto` /
    /// `Forwarded: proto=`).
    pub forwarded_https: bool,
    /// The peer is a trusted proxy (its forwarding headers were read).
    pub via_proxy: bool,
}

impl HttpConnection {
    /// Whether the client's connection is encrypted up to this server or a trusted proxy.
    pub fn is_encrypted(&self) -> bool {
        self.tls || self.forwarded_https
    }

    /// The scheme the client used: `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.is_encrypted() {
            "https"
        } else {
            "http"
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for HttpConnection {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<HttpConnection>() {
            return Ok(*c);
        }
        // Routers served outside `Server` (tests' own): the connection as it is.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        Ok(HttpConnection {
            peer,
            client: peer,
            tls: false,
            forwarded_https: false,
            via_proxy: false,
        })
    }
}

/// An address or network (`10.0.0.0/8`, `::1`), as `[http] trusted_proxies` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not an address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}': prefix length must be 0 to {max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Hops of a forwarding header looked at, at most: a longer chain is cut (from the left,
/// the end a client controls).
const MAX_HOPS: usize = 32;

/// The trusted proxies and which header they write.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies {
    nets: Vec<Cidr>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// From `[http] trusted_proxies` / `forwarded_header` (validated with the config).
    pub fn from_config(http: &HttpSection) -> TrustedProxies {
        TrustedProxies {
            nets: http
                .trusted_proxies
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect(),
            header: http.forwarded_header,
        }
    }

    pub fn new(nets: Vec<Cidr>, header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies { nets, header }
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(ip))
    }

    /// The client's address and whether it reached the proxy over HTTPS. Only a trusted
    /// peer's headers are read; in the chain, the right-most address that is not a trusted
    /// proxy is the client (everything left of it was written by the client itself). A
    /// hop that does not parse ends the walk at the last trusted hop: what stands left of
    /// garbage cannot be believed.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> (IpAddr, bool, bool) {
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return (peer, false, false);
        }
        let (hops, https) = match self.header {
            ForwardedHeader::XForwardedFor => (
                list_values(headers, "x-forwarded-for"),
                list_values(headers, "x-forwarded-proto")
                    .last()
                    .is_some_and(|p| p.eq_ignore_ascii_case("https")),
            ),
            ForwardedHeader::Forwarded => {
                let elements = list_values(headers, "forwarded");
                let https = elements
                    .last()
                    .and_then(|e| forwarded_param(e, "proto"))
                    .is_some_and(|p| p.eq_ignore_ascii_case("https"));
                let hops = elements
                    .iter()
                    .map(|e| forwarded_param(e, "for").unwrap_or_default())
                    .collect();
                (hops, https)
            }
        };
        let mut client = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(ip) = parse_hop(hop) else {
                tracing::info!(%peer, hop = %hop.escape_debug(), "unparsable forwarded address; using the last trusted hop");
                return (client, https, true);
            };
            client = ip;
            if !self.is_trusted(ip) {
                break;
            }
        }
        (client, https, true)
    }
}

/// The comma-separated values of every instance of header `name`, in order (RFC 9110
/// §5.3: repeated headers are one list).
fn list_values(headers: &HeaderMap, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for v in headers.get_all(name) {
        let Ok(v) = v.to_str() else {
            // Not text: one hop nobody can parse.
            out.push(String::new());
            continue;
        };
        out.extend(v.split(',').map(|s| s.trim().to_string()));
    }
    out
}

/// Parameter `name` of one `Forwarded` element (`for=192.0.2.1;proto=https`), unquoted.
fn forwarded_param(element: &str, name: &str) -> Option<String> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// One hop: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = hop.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    let inner = hop.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Tags each request with its `HttpConnection` and puts the client's address in its
/// `ConnectInfo` (see `HttpConnection`).
#[derive(Clone)]
pub struct Tagger {
    pub proxies: Arc<TrustedProxies>,
    pub tls: bool,
}

/// The middleware `Tagger` is the state of.
pub async fn tag(
    axum::extract::State(t): axum::extract::State<Tagger>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let (ip, forwarded_https, via_proxy) = t.proxies.client(peer.ip(), req.headers());
        let client = if via_proxy && ip != peer.ip().to_canonical() {
            SocketAddr::new(ip, 0)
        } else {
            peer
        };
        req.extensions_mut().insert(HttpConnection {
            peer,
            client,
            tls: t.tls,
            forwarded_https,
            via_proxy,
        });
        req.extensions_mut().insert(ConnectInfo(client));
    }
    next.run(req).await
}

/// TLS handshakes under way at once on one TLS listener, at most; more connections wait
/// in the kernel's backlog.
const MAX_PENDING_HANDSHAKES: usize = 256;

/// A listener for `axum::serve` that yields connections once their TLS handshake is done.
/// The handshakes run in tasks of their own, each bounded in time, so a slow or failed one
/// holds up no other connection.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`; handshakes time out after `timeout`.
    pub fn new(
        tcp: TcpListener,
        acceptor: TlsAcceptor,
        timeout: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(5);
            loop {
                let Ok(permit) = pending.clone().acquire_owned().await else {
                    return;
                };
                let accepted = tokio::select! {
                    a = tcp.accept() => a,
                    _ = stop.changed() => return,
                };
                let (tcp, peer) = match accepted {
                    Ok(c) => {
                        backoff = Duration::from_millis(5);
                        c
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "https accept failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            // Counted until axum has taken it, so connections waiting
                            // for it are bounded too.
                            let _ = tx.send((tls, peer)).await;
                            drop(permit);
                        }
                        Ok(Err(e)) => {
                            tracing::info!(%peer, error = %e, "https: TLS handshake failed")
                        }
                        Err(_) => tracing::info!(%peer, "https: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended (shutdown): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn proxies(nets: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::new(
            nets.iter().map(|n| n.parse().expect("cidr")).collect(),
            header,
        )
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_parse_and_match() {
        let n: Cidr = "10.0.0.0/8".parse().expect("v4 net");
        assert!(n.contains(ip("10.200.1.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "mapped IPv4");
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::1")));
        let one: Cidr = "127.0.0.1".parse().expect("v4 address");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "2001:db8::/32".parse().expect("v6 net");
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("everything");
        assert!(all.contains(ip("203.0.113.9")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host.example",
            "1.2.3.4/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peers_headers_are_ignored() {
        let p = proxies(&["127.0.0.1"], ForwardedHeader::XForwardedFor);
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            p.client(ip("203.0.113.7"), &h),
            (ip("203.0.113.7"), false, false)
        );
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("127.0.0.1"), &h),
            (ip("127.0.0.1"), false, false)
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        // The client wrote "6.6.6.6" itself; the proxies appended the rest.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.4"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
        ]);
        assert_eq!(
            p.client(ip("127.0.0.1"), &h),
            (ip("198.51.100.4"), true, true)
        );
        // Every hop trusted: the left-most is the best there is.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(p.client(ip("127.0.0.1"), &h), (ip("10.9.9.9"), false, true));
        // No header: the proxy itself.
        assert_eq!(
            p.client(ip("127.0.0.1"), &HeaderMap::new()),
            (ip("127.0.0.1"), false, true)
        );
        // IPv6 and ports are accepted.
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:4711")]);
        assert_eq!(p.client(ip("::ffff:127.0.0.1"), &h).0, ip("2001:db8::7"));
    }

    #[test]
    fn malformed_hops_stop_at_the_last_trusted_one() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        for bad in [
            "1.2.3.4, garbage, 10.1.1.1",
            "1.2.3.4, , 10.1.1.1",
            "1.2.3.4,unknown,10.1.1.1",
        ] {
            let h = headers(&[("x-forwarded-for", bad)]);
            assert_eq!(p.client(ip("127.0.0.1"), &h).0, ip("10.1.1.1"), "{bad}");
        }
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(p.client(ip("127.0.0.1"), &h).0, ip("127.0.0.1"));
        // A chain longer than MAX_HOPS of trusted hops ends at the cut, never further left.
        let long = std::iter::repeat_n("10.0.0.1", 100)
            .chain(std::iter::once("10.0.0.2"))
            .collect::<Vec<_>>()
            .join(",");
        let h = headers(&[("x-forwarded-for", &format!("6.6.6.6,{long}"))]);
        assert_eq!(p.client(ip("127.0.0.1"), &h).0, ip("10.0.0.1"));
    }

    #[test]
    fn forwarded_is_read_when_configured_and_only_then() {
        let p = proxies(&["127.0.0.1"], ForwardedHeader::Forwarded);
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            (
                "forwarded",
                "for=\"[2001:db8::1]:4711\";proto=https;by=127.0.0.1",
            ),
            ("x-forwarded-for", "7.7.7.7"),
        ]);
        assert_eq!(
            p.client(ip("127.0.0.1"), &h),
            (ip("2001:db8::1"), true, true)
        );
        let h = headers(&[("forwarded", "for=_hidden, for=198.51.100.1")]);
        assert_eq!(p.client(ip("127.0.0.1"), &h).0, ip("198.51.100.1"));
        let h = headers(&[("forwarded", "proto=https")]);
        assert_eq!(p.client(ip("127.0.0.1"), &h), (ip("127.0.0.1"), true, true));
        // The X-Forwarded-For family is ignored when Forwarded is configured, and back.
        let h = headers(&[("x-forwarded-for", "7.7.7.7")]);
        assert_eq!(p.client(ip("127.0.0.1"), &h).0, ip("127.0.0.1"));
        let x = proxies(&["127.0.0.1"], ForwardedHeader::XForwardedFor);
        let h = headers(&[("forwarded", "for=7.7.7.7;proto=https")]);
        assert_eq!(
            x.client(ip("127.0.0.1"), &h),
            (ip("127.0.0.1"), false, true)
        );
    }
}
