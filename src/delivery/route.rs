//! Where mail for a domain goes (RFC 5321 5.1): the smarthost if one is
//! configured, else the MX hosts by preference (random among equals, done
//! by `Dns::mx`), else the domain's own A/AAAA. A null MX (RFC 7505) or a
//! domain that does not exist fails the recipients for good.

use super::client::Reply;
use crate::app::App;
use crate::dns::{MxAnswer, TempDnsError};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a positive MX or address answer is reused. A queue run sends
/// many messages to the same few domains; re-asking the resolver for each
/// costs more than the SMTP transaction. Short, so DNS changes apply soon.
const CACHE_TTL: Duration = Duration::from_secs(30);
/// Entries before the cache is emptied (bounded memory).
const CACHE_MAX: usize = 10_000;

type Cache<T> = Mutex<HashMap<String, (Instant, T)>>;

/// Routes and host addresses, with a short positive cache.
#[derive(Default)]
pub struct Router {
    routes: Cache<Vec<(String, u16)>>,
    addrs: Cache<Vec<IpAddr>>,
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
    pub async fn route(&self, app: &App, domain: &str) -> Route {
        if let Some(hosts) = cached(&self.routes, domain) {
            return Route::Hosts(hosts);
        }
        let r = route(app, domain).await;
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
}

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Hosts to try in order, with the port.
    Hosts(Vec<(String, u16)>),
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

async fn route(app: &App, domain: &str) -> Route {
    let cfg = &app.config.outbound;
    if let Some(relay) = &cfg.smarthost {
        return match parse_host_port(relay) {
            Some(hp) => Route::Hosts(vec![hp]),
            None => Route::Defer(Reply::new(451, "4.3.5 outbound.smarthost is not host:port")),
        };
    }
    let port = cfg.mx_port;
    match app.dns.mx(domain).await {
        Ok(MxAnswer::Hosts(hosts)) if !hosts.is_empty() => {
            Route::Hosts(hosts.into_iter().map(|h| (h.host, port)).collect())
        }
        // RFC 5321 5.1: no MX means the domain itself is the host.
        Ok(MxAnswer::Hosts(_)) | Ok(MxAnswer::NoMx) => {
            Route::Hosts(vec![(domain.to_string(), port)])
        }
        Ok(MxAnswer::NullMx) => Route::Fail(Reply::new(
            556,
            format!("5.1.10 {domain} does not accept mail (null MX, RFC 7505)"),
        )),
        Ok(MxAnswer::NoDomain) => Route::Fail(Reply::new(
            550,
            format!("5.1.2 domain {domain} does not exist"),
        )),
        Err(e) => Route::Defer(Reply::new(451, format!("4.4.3 {e}"))),
    }
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
}
