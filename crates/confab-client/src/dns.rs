//! Finding a domain's XMPP server: DNS SRV records for direct TLS (`_xmpps-client._tcp`,
//! XEP-0368) and STARTTLS (`_xmpp-client._tcp`, RFC 6120 §3.2.1), tried in RFC 2782 order,
//! else the domain's own addresses on port 5222 (RFC 6120 §3.2.2).

use crate::error::Error;
use confab_stream::client::TlsMode;
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::{ResolveError, TokioResolver};
use rand::Rng;
use std::net::SocketAddr;

/// The resolver's configuration types (from `hickory-resolver`), to point the SDK at a
/// given name server.
pub use hickory_resolver::config::{
    NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};

/// Where [`crate::Client::connect`] connects.
#[derive(Clone, Debug, Default)]
pub enum Endpoint {
    /// `ClientOptions::addr` with `ClientOptions::tls`; no DNS.
    #[default]
    Address,
    /// The server of `ClientOptions::domain`, found in DNS.
    Dns(DnsConfig),
}

/// Which resolver answers the SRV and address queries.
#[derive(Clone, Debug, Default)]
pub enum Resolver {
    /// The system's configuration (`/etc/resolv.conf` on Unix).
    #[default]
    System,
    /// These name servers and options (boxed: they are large); see [`Resolver::custom`].
    Custom(Box<(ResolverConfig, ResolverOpts)>),
}

impl Resolver {
    /// A resolver asking the name servers of `config`, with `opts`.
    pub fn custom(config: ResolverConfig, opts: ResolverOpts) -> Self {
        Resolver::Custom(Box::new((config, opts)))
    }
}

/// How to look a domain's server up.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// The resolver to ask.
    pub resolver: Resolver,
    /// The port tried on the domain's own addresses when it has no SRV records (5222 by
    /// RFC 6120 §3.2.2).
    pub fallback_port: u16,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            resolver: Resolver::System,
            fallback_port: 5222,
        }
    }
}

/// One place to try: an address and how TLS starts there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// Direct TLS (from an `_xmpps-client` record) or STARTTLS.
    pub tls: TlsMode,
}

/// An SRV record as used here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub target: String,
    pub port: u16,
    pub tls: TlsMode,
}

fn resolver(cfg: &DnsConfig) -> Result<TokioResolver, Error> {
    let provider = TokioConnectionProvider::default();
    Ok(match &cfg.resolver {
        Resolver::System => TokioResolver::builder(provider)
            .map_err(|e| Error::Dns(e.to_string()))?
            .build(),
        Resolver::Custom(c) => TokioResolver::builder_with_config(c.0.clone(), provider)
            .with_options(c.1.clone())
            .build(),
    })
}

/// The places to try for `domain`, best first.
pub(crate) async fn resolve(domain: &str, cfg: &DnsConfig) -> Result<Vec<Target>, Error> {
    let r = resolver(cfg)?;
    // Absolute names, so no search domain is appended.
    let mut records = Vec::new();
    let mut offered_none = false;
    for (service, tls) in [
        ("_xmpps-client._tcp", TlsMode::Direct),
        ("_xmpp-client._tcp", TlsMode::StartTls),
    ] {
        match r.srv_lookup(format!("{service}.{domain}.")).await {
            Ok(found) => {
                for s in found.iter() {
                    let target = s.target().to_ascii();
                    // RFC 2782: a target of "." means the service is decidedly not there.
                    if target == "." {
                        offered_none = true;
                        continue;
                    }
                    records.push(Srv {
                        priority: s.priority(),
                        weight: s.weight(),
                        target,
                        port: s.port(),
                        tls,
                    });
                }
            }
            Err(e) if no_records(&e) => {}
            Err(e) => tracing::debug!(domain, service, error = %e, "SRV lookup failed"),
        }
    }
    if records.is_empty() {
        if offered_none {
            return Err(Error::Dns(format!(
                "{domain} offers no XMPP client service"
            )));
        }
        let ips = r
            .lookup_ip(format!("{domain}."))
            .await
            .map_err(|e| Error::Dns(format!("{domain}: {e}")))?;
        return Ok(ips
            .iter()
            .map(|ip| Target {
                addr: SocketAddr::new(ip, cfg.fallback_port),
                tls: TlsMode::StartTls,
            })
            .collect());
    }
    let mut targets = Vec::new();
    let ordered = order(records, &mut rand::thread_rng());
    for s in ordered {
        match r.lookup_ip(s.target.as_str()).await {
            Ok(ips) => targets.extend(ips.iter().map(|ip| Target {
                addr: SocketAddr::new(ip, s.port),
                tls: s.tls,
            })),
            Err(e) => tracing::debug!(target = s.target, error = %e, "SRV target has no address"),
        }
    }
    if targets.is_empty() {
        return Err(Error::Dns(format!(
            "no SRV target of {domain} has an address"
        )));
    }
    Ok(targets)
}

fn no_records(e: &ResolveError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

/// RFC 2782 order: lower priority first; within a priority a weighted random draw, direct
/// TLS before STARTTLS at equal priority (XEP-0368 §3: it saves a round trip).
pub(crate) fn order(mut records: Vec<Srv>, rng: &mut impl Rng) -> Vec<Srv> {
    let rank = |s: &Srv| (s.priority, u8::from(s.tls != TlsMode::Direct));
    records.sort_by_key(rank);
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let key = rank(&records[0]);
        let n = records.iter().take_while(|s| rank(s) == key).count();
        let mut group: Vec<Srv> = records.drain(..n).collect();
        // Zero weights first, as RFC 2782 asks, so they are picked only by a draw of 0.
        group.sort_by_key(|s| s.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|s| u32::from(s.weight)).sum();
            let draw = rng.gen_range(0..=total);
            let mut running = 0;
            let pick = group
                .iter()
                .position(|s| {
                    running += u32::from(s.weight);
                    running >= draw
                })
                .unwrap_or(0);
            out.push(group.remove(pick));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn srv(priority: u16, weight: u16, target: &str, tls: TlsMode) -> Srv {
        Srv {
            priority,
            weight,
            target: target.into(),
            port: 5222,
            tls,
        }
    }

    #[test]
    fn priority_first_then_direct_tls_then_weight() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let records = vec![
            srv(20, 0, "late", TlsMode::StartTls),
            srv(10, 5, "starttls", TlsMode::StartTls),
            srv(10, 5, "direct", TlsMode::Direct),
            srv(5, 0, "first", TlsMode::StartTls),
        ];
        for _ in 0..20 {
            let names: Vec<_> = order(records.clone(), &mut rng)
                .into_iter()
                .map(|s| s.target)
                .collect();
            assert_eq!(names, ["first", "direct", "starttls", "late"]);
        }
    }

    #[test]
    fn weights_share_out_the_first_place() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let records = vec![
            srv(0, 90, "heavy", TlsMode::StartTls),
            srv(0, 10, "light", TlsMode::StartTls),
            srv(0, 0, "zero", TlsMode::StartTls),
        ];
        let mut firsts = std::collections::HashMap::new();
        for _ in 0..2000 {
            let o = order(records.clone(), &mut rng);
            assert_eq!(o.len(), 3);
            *firsts.entry(o[0].target.clone()).or_insert(0) += 1;
        }
        let heavy = firsts.get("heavy").copied().unwrap_or(0);
        let light = firsts.get("light").copied().unwrap_or(0);
        let zero = firsts.get("zero").copied().unwrap_or(0);
        // Expected about 1782 / 198 / 20 (a zero weight wins only on a draw of 0).
        assert!((1650..1900).contains(&heavy), "{firsts:?}");
        assert!((130..280).contains(&light), "{firsts:?}");
        assert!(zero < 60, "{firsts:?}");
    }
}
