//! Where mail for a domain goes (RFC 5321 5.1): the smarthost if one is
//! configured, else the MX hosts by preference (random among equals, done
//! by `Dns::mx`), else the domain's own A/AAAA. A null MX (RFC 7505) or a
//! domain that does not exist fails the recipients for good, and so does a
//! route back to this server (`Myself`): Postfix's "mail for X loops back
//! to myself".

use super::client::Reply;
use crate::app::App;
use crate::dns::{MxAnswer, MxHost, TempDnsError};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a positive MX or address answer is reused. A queue run sends
/// many messages to the same few domains; re-asking the resolver for each
/// costs more than the SMTP transaction. Short, so DNS changes apply soon.
/// Fixed, not the records' TTL: `Dns` does not return TTLs, and 30 s is
/// below the TTL of nearly every MX in use.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Entries before the cache is emptied (bounded memory).
const CACHE_MAX: usize = 10_000;

type Cache<T> = Mutex<HashMap<String, (Instant, T)>>;

/// Routes and host addresses, with a short positive cache.
pub struct Router {
    myself: Myself,
    routes: Cache<Vec<Hop>>,
    addrs: Cache<Vec<IpAddr>>,
}

/// One host to try, with the port and its MX preference (0 for the
/// smarthost and the implicit MX of a domain without MX records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub port: u16,
    pub preference: u16,
}

fn cached<T: Clone>(m: &Cache<T>, key: &str) -> Option<T> {
    let m = m.lock().unwrap_or_else(|e| e.into_inner());
    m.get(key)
        .filter(|(t, _)| t.elapsed() < CACHE_TTL)
        .map(|(_, v)| v.clone())
}

fn remember<T>(m: &Cache<T>, key: &str, v: T) {
    let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() >= CACHE_MAX {
        m.clear();
    }
    m.insert(key.to_string(), (Instant::now(), v));
}

impl Router {
    pub fn new(myself: Myself) -> Router {
        Router {
            myself,
            routes: Mutex::default(),
            addrs: Mutex::default(),
        }
    }

    pub async fn route(&self, app: &App, domain: &str) -> Route {
        if let Some(hosts) = cached(&self.routes, domain) {
            return Route::Hosts(hosts);
        }
        let r = route(app, &self.myself, domain).await;
        if let Route::Hosts(h) = &r {
            remember(&self.routes, domain, h.clone());
        }
        r
    }

    /// A/AAAA of `host`; an empty list when it has none.
    pub async fn addresses(&self, app: &App, host: &str) -> Result<Vec<IpAddr>, TempDnsError> {
        if let Some(a) = cached(&self.addrs, host) {
            return Ok(a);
        }
        let a = app.dns.addresses(host).await?;
        if !a.is_empty() {
            remember(&self.addrs, host, a.clone());
        }
        Ok(a)
    }

    pub fn is_myself(&self, addr: SocketAddr) -> bool {
        self.myself.is_address(addr)
    }
}

/// What identifies this server as a destination: its host name and the
/// addresses its SMTP listeners are bound to.
pub struct Myself {
    hostname: String,
    listeners: Vec<SocketAddr>,
}

impl Myself {
    pub fn new(hostname: &str, listeners: Vec<SocketAddr>) -> Myself {
        Myself {
            hostname: hostname.trim_end_matches('.').to_ascii_lowercase(),
            listeners,
        }
    }

    fn is_name(&self, host: &str) -> bool {
        host.trim_end_matches('.')
            .eq_ignore_ascii_case(&self.hostname)
    }

    /// One of our SMTP listeners would take a connection to `addr`; one
    /// bound to 0.0.0.0 or :: takes any local address on its port.
    pub fn is_address(&self, addr: SocketAddr) -> bool {
        let ip = addr.ip().to_canonical();
        self.listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip().to_canonical() == ip || (l.ip().is_unspecified() && is_local(ip)))
        })
    }
}

/// Whether `ip` is an address of this machine. The kernel picks a local
/// destination itself as the source of a (traffic-free) UDP connect, and
/// all of 127.0.0.0/8 and the unspecified address reach this host.
fn is_local(ip: IpAddr) -> bool {
    if ip.is_loopback() || ip.is_unspecified() {
        return true;
    }
    let any: IpAddr = match ip {
        IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    UdpSocket::bind((any, 0))
        .and_then(|s| s.connect((ip, 9)).and_then(|()| s.local_addr()))
        .is_ok_and(|local| local.ip() == ip)
}

/// RFC 5321 5.1 (and Postfix's wording): the reply when the best route
/// for `domain` leads back here.
pub fn loop_reply(domain: &str) -> Reply {
    Reply::new(554, format!("5.4.6 mail for {domain} loops back to myself"))
}

/// RFC 5321 5.1: when this host is one of the MX hosts, only the more
/// preferred ones may be tried; those of its preference or worse are dropped.
fn above_myself(hosts: Vec<MxHost>, myself: &Myself) -> Vec<MxHost> {
    match hosts.iter().find(|h| myself.is_name(&h.host)) {
        Some(me) => {
            let mine = me.preference;
            hosts.into_iter().filter(|h| h.preference < mine).collect()
        }
        None => hosts,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Hosts to try in order (by preference).
    Hosts(Vec<Hop>),
    /// Permanent failure for every recipient of the domain.
    Fail(Reply),
    /// Try again later (DNS trouble).
    Defer(Reply),
}

/// Splits `host:port` (also `[v6]:port`); the port defaults to 25.
pub fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let s = s.trim();
    let (host, port) = match s.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => (s, 25),
        Some((h, p)) => (h, p.parse().ok()?),
        None => (s, 25),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

async fn route(app: &App, myself: &Myself, domain: &str) -> Route {
    let cfg = &app.config.outbound;
    if let Some(relay) = &cfg.smarthost {
        return match parse_host_port(relay) {
            Some((host, port)) => Route::Hosts(vec![Hop {
                host,
                port,
                preference: 0,
            }]),
            None => Route::Defer(Reply::new(451, "4.3.5 outbound.smarthost is not host:port")),
        };
    }
    let port = cfg.mx_port;
    let hosts = match app.dns.mx(domain).await {
        Ok(MxAnswer::Hosts(hosts)) if !hosts.is_empty() => {
            let hosts = above_myself(hosts, myself);
            if hosts.is_empty() {
                return Route::Fail(loop_reply(domain));
            }
            hosts
        }
        // RFC 5321 5.1: no MX means the domain itself is the host.
        Ok(MxAnswer::Hosts(_)) | Ok(MxAnswer::NoMx) if myself.is_name(domain) => {
            return Route::Fail(loop_reply(domain))
        }
        Ok(MxAnswer::Hosts(_)) | Ok(MxAnswer::NoMx) => vec![MxHost {
            preference: 0,
            host: domain.to_string(),
        }],
        Ok(MxAnswer::NullMx) => {
            return Route::Fail(Reply::new(
                556,
                format!("5.1.10 {domain} does not accept mail (null MX, RFC 7505)"),
            ))
        }
        Ok(MxAnswer::NoDomain) => {
            return Route::Fail(Reply::new(
                550,
                format!("5.1.2 domain {domain} does not exist"),
            ))
        }
        Err(e) => return Route::Defer(Reply::new(451, format!("4.4.3 {e}"))),
    };
    Route::Hosts(
        hosts
            .into_iter()
            .map(|h| Hop {
                host: h.host,
                port,
                preference: h.preference,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port() {
        assert_eq!(
            parse_host_port("relay.test:2525"),
            Some(("relay.test".into(), 2525))
        );
        assert_eq!(
            parse_host_port("relay.test"),
            Some(("relay.test".into(), 25))
        );
        assert_eq!(parse_host_port("[::1]:26"), Some(("::1".into(), 26)));
        assert_eq!(parse_host_port("::1"), Some(("::1".into(), 25)));
        assert_eq!(parse_host_port("relay.test:x"), None);
        assert_eq!(parse_host_port(":25"), None);
    }

    fn mx(list: &[(u16, &str)]) -> Vec<MxHost> {
        list.iter()
            .map(|(p, h)| MxHost {
                preference: *p,
                host: h.to_string(),
            })
            .collect()
    }

    #[test]
    fn mx_hosts_at_or_below_our_own_preference_are_dropped() {
        let me = Myself::new("Mail.Be.Test.", vec![]);
        let hosts = mx(&[
            (5, "a.test"),
            (10, "b.test"),
            (10, "mail.be.test."),
            (20, "c.test"),
        ]);
        assert_eq!(above_myself(hosts, &me), mx(&[(5, "a.test")]));
        assert!(above_myself(mx(&[(10, "MAIL.be.test")]), &me).is_empty());
        let others = mx(&[(10, "a.test"), (20, "b.test")]);
        assert_eq!(above_myself(others.clone(), &me), others);
    }

    #[test]
    fn own_listener_addresses_match_by_ip_and_port() {
        let me = Myself::new(
            "mail.be.test",
            vec![
                "127.0.0.1:2525".parse().unwrap(),
                "[::]:2600".parse().unwrap(),
            ],
        );
        let at = |s: &str| me.is_address(s.parse().unwrap());
        assert!(at("127.0.0.1:2525"));
        assert!(at("[::ffff:127.0.0.1]:2525"));
        assert!(!at("127.0.0.1:2526"), "another port is another server");
        assert!(
            !at("127.0.0.2:2525"),
            "a specific bind matches only its address"
        );
        // The wildcard listener takes every local address on its port.
        assert!(at("127.0.0.7:2600"));
        assert!(at("[::1]:2600"));
        assert!(at("0.0.0.0:2600"));
        assert!(!at("127.0.0.7:2601"));
        assert!(!at("192.0.2.1:2600"), "TEST-NET-1 is not ours");
    }
}
