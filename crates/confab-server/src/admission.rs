//! Who may open a connection: the server-wide connection limit and the per-address and
//! per-network limits, shared by every listener and transport (the c2s listeners, and
//! WebSocket or BOSH sessions arriving over HTTP), and the shutdown signal they all obey.

use crate::config::LimitsSection;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// `limits.max_connections` reached.
    ServerFull,
    /// `limits.max_connections_per_ip` or `max_connections_per_subnet` reached.
    PeerLimit,
}

/// The connection limits of one server.
pub struct Admission {
    connections: Arc<Semaphore>,
    max: usize,
    peers: Arc<Mutex<PeerCounts>>,
    per_ip: usize,
    per_subnet: usize,
}

/// A connection counted against the limits until dropped.
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    _peer: PeerGuard,
}

impl Admission {
    pub fn new(limits: &LimitsSection) -> Admission {
        Admission {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            max: limits.max_connections,
            peers: Arc::default(),
            per_ip: limits.max_connections_per_ip,
            per_subnet: limits.max_connections_per_subnet,
        }
    }

    /// Counts a new connection from `peer`, or says why it may not open. Hold the result
    /// for as long as the connection (or the session it carries) lives.
    pub fn admit(&self, peer: IpAddr) -> Result<Admitted, Refused> {
        let permit = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::ServerFull)?;
        let peer = PeerGuard::acquire(&self.peers, peer, self.per_ip, self.per_subnet)
            .ok_or(Refused::PeerLimit)?;
        Ok(Admitted {
            _permit: permit,
            _peer: peer,
        })
    }

    /// Waits up to `grace` for every admitted connection to end; whether they all did.
    pub async fn all_closed(&self, grace: Duration) -> bool {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        tokio::time::timeout(grace, self.connections.acquire_many(all))
            .await
            .is_ok()
    }
}

/// Connections per address and per network (IPv4 /24, IPv6 /64).
#[derive(Default)]
struct PeerCounts {
    per_ip: HashMap<IpAddr, usize>,
    per_subnet: HashMap<IpAddr, usize>,
}

/// The network an address belongs to for `max_connections_per_subnet`.
fn subnet_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6) & !((1u128 << 64) - 1),
        )),
    }
}

/// Counts a connection against its address and network until dropped.
struct PeerGuard {
    map: Arc<Mutex<PeerCounts>>,
    ip: IpAddr,
    subnet: IpAddr,
}

impl PeerGuard {
    fn acquire(
        map: &Arc<Mutex<PeerCounts>>,
        ip: IpAddr,
        per_ip: usize,
        per_subnet: usize,
    ) -> Option<PeerGuard> {
        let ip = ip.to_canonical();
        let subnet = subnet_of(ip);
        let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
        let on_ip = m.per_ip.get(&ip).copied().unwrap_or(0);
        let on_subnet = m.per_subnet.get(&subnet).copied().unwrap_or(0);
        if on_ip >= per_ip || on_subnet >= per_subnet {
            return None;
        }
        *m.per_ip.entry(ip).or_insert(0) += 1;
        *m.per_subnet.entry(subnet).or_insert(0) += 1;
        Some(PeerGuard {
            map: map.clone(),
            ip,
            subnet,
        })
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let mut guard = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let m = &mut *guard;
        for (counts, key) in [(&mut m.per_ip, self.ip), (&mut m.per_subnet, self.subnet)] {
            if let Some(n) = counts.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn subnets_are_ipv4_24_and_ipv6_64() {
        assert_eq!(subnet_of(ip("192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(subnet_of(ip("::ffff:192.0.2.77")), ip("192.0.2.0"));
        assert_eq!(subnet_of(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    }

    #[test]
    fn by_default_one_address_or_network_cannot_take_every_slot() {
        let d = LimitsSection::default();
        assert!(d.max_connections_per_ip * 10 <= d.max_connections);
        assert!(d.max_connections_per_subnet * 10 <= d.max_connections);
        assert!(d.max_connections_per_ip <= d.max_connections_per_subnet);
    }

    #[test]
    fn a_subnet_cannot_take_every_slot() {
        let a = Admission::new(&LimitsSection {
            max_connections_per_ip: 2,
            max_connections_per_subnet: 3,
            ..Default::default()
        });
        let a1 = a.admit(ip("192.0.2.1"));
        let a2 = a.admit(ip("192.0.2.1"));
        assert!(a1.is_ok() && a2.is_ok());
        assert_eq!(
            a.admit(ip("192.0.2.1")).err(),
            Some(Refused::PeerLimit),
            "per address"
        );
        let b1 = a.admit(ip("192.0.2.2"));
        assert!(b1.is_ok());
        assert_eq!(
            a.admit(ip("192.0.2.3")).err(),
            Some(Refused::PeerLimit),
            "per /24"
        );
        assert!(a.admit(ip("198.51.100.1")).is_ok(), "other network");
        drop(a1);
        assert!(a.admit(ip("192.0.2.3")).is_ok(), "released");
    }

    #[tokio::test]
    async fn the_server_limit_counts_every_connection_until_it_ends() {
        let a = Admission::new(&LimitsSection {
            max_connections: 2,
            ..Default::default()
        });
        let one = a.admit(ip("192.0.2.1")).expect("first");
        let two = a.admit(ip("198.51.100.1")).expect("second");
        assert_eq!(a.admit(ip("203.0.113.1")).err(), Some(Refused::ServerFull));
        assert!(!a.all_closed(Duration::from_millis(20)).await);
        drop((one, two));
        assert!(a.all_closed(Duration::from_millis(20)).await);
    }
}
