//! DNS: the forward-confirmed reverse DNS check of SEED-8 (with a verdict
//! cache), and the MX / address lookups of outbound delivery. All through
//! one hickory resolver pointed at the configured nameservers.

use crate::config::{DnsConfig, FcrdnsMode, OnDnsError};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, Protocol, ResolverConfig, ResolverOpts,
};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::TokioAsyncResolver;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The outcome of SEED-8's check for one IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A PTR name resolves back to the IP.
    Pass,
    /// No PTR record at all.
    NoPtr,
    /// PTR names resolve, but none to this IP.
    Mismatch,
    /// PTR names exist but none has an A/AAAA record.
    NoForward,
    /// A lookup timed out or failed (SERVFAIL): not a mismatch.
    Temperror,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::NoPtr => "no-ptr",
            Verdict::Mismatch => "mismatch",
            Verdict::NoForward => "no-forward",
            Verdict::Temperror => "temperror",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FcrdnsReport {
    pub ip: IpAddr,
    /// PTR names without the trailing dot.
    pub ptr: Vec<String>,
    /// Forward addresses of each PTR name that was looked up.
    pub forward: BTreeMap<String, Vec<IpAddr>>,
    pub verdict: Verdict,
}

impl FcrdnsReport {
    /// One English sentence naming the IP, the PTR name and what is wrong.
    pub fn reason(&self) -> String {
        let ip = self.ip;
        let names = self.ptr.join(", ");
        match self.verdict {
            Verdict::Pass => format!("{ip} has reverse name {names}, which resolves back to {ip}"),
            Verdict::NoPtr => format!("{ip} has no reverse DNS (PTR) name"),
            Verdict::Mismatch => format!(
                "the reverse DNS name of {ip} is {names}, but that name does not resolve back to {ip} (forward and reverse DNS do not match)"
            ),
            Verdict::NoForward => format!(
                "the reverse DNS name of {ip} is {names}, but that name has no forward (A/AAAA) record"
            ),
            Verdict::Temperror => {
                format!("the DNS lookup for {ip} failed temporarily (timeout or server failure)")
            }
        }
    }
}

/// The JSON of `GET /api/dns-check` and `check-dns --json` (SPEC interface).
pub fn api_json(report: &FcrdnsReport, refused: bool) -> serde_json::Value {
    serde_json::json!({
        "ip": report.ip.to_string(),
        "ptr": report.ptr,
        "forward": report.forward.iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|a| a.to_string()).collect::<Vec<_>>()))
            .collect::<BTreeMap<_, _>>(),
        "verdict": report.verdict.as_str(),
        "refused": refused,
        "reason": report.reason(),
    })
}

/// What a listener does with a client, given its FCrDNS mode (SEED-8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Refuse,
    TempFail,
}

pub fn decide(report: &FcrdnsReport, mode: FcrdnsMode, on_error: OnDnsError) -> Decision {
    match (mode, report.verdict) {
        (FcrdnsMode::Off, _) => Decision::Allow,
        (_, Verdict::Pass) => Decision::Allow,
        (_, Verdict::Mismatch | Verdict::NoForward) => Decision::Refuse,
        (FcrdnsMode::RefuseMismatch, Verdict::NoPtr) => Decision::Allow,
        (FcrdnsMode::RequirePtr, Verdict::NoPtr) => Decision::Refuse,
        (_, Verdict::Temperror) => match on_error {
            OnDnsError::Allow => Decision::Allow,
            OnDnsError::Tempfail => Decision::TempFail,
        },
    }
}

/// An MX target in the order to try it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    pub host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    /// Sorted by preference; hosts of equal preference in random order.
    Hosts(Vec<MxHost>),
    /// No MX: deliver to the domain's own A/AAAA (RFC 5321 5.1).
    NoMx,
    /// RFC 7505 null MX: the domain accepts no mail.
    NullMx,
    /// The domain does not exist.
    NoDomain,
}

#[derive(Debug, thiserror::Error)]
#[error("DNS lookup failed temporarily: {0}")]
pub struct TempDnsError(pub String);

pub struct Dns {
    resolver: TokioAsyncResolver,
    cache: Mutex<HashMap<IpAddr, (Instant, FcrdnsReport)>>,
    cache_ttl: Duration,
    max_ptr: usize,
}

/// Bounded so a flood of distinct client IPs cannot grow memory.
const CACHE_MAX: usize = 100_000;

enum Lookup<T> {
    Found(T),
    NoRecords { nxdomain: bool },
    Temp(String),
}

fn classify<T>(r: Result<T, ResolveError>) -> Lookup<T> {
    match r {
        Ok(v) => Lookup::Found(v),
        Err(e) => match e.kind() {
            ResolveErrorKind::NoRecordsFound { response_code, .. }
                if matches!(*response_code, ResponseCode::NXDomain | ResponseCode::NoError) =>
            {
                Lookup::NoRecords {
                    nxdomain: *response_code == ResponseCode::NXDomain,
                }
            }
            _ => Lookup::Temp(e.to_string()),
        },
    }
}

impl Dns {
    pub fn new(cfg: &DnsConfig) -> Result<Dns, TempDnsError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(cfg.timeout_ms);
        opts.attempts = 1;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.ndots = 0;
        let resolver = if cfg.nameservers.is_empty() {
            let (conf, mut sys_opts) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| TempDnsError(format!("reading the system resolver: {e}")))?;
            sys_opts.timeout = opts.timeout;
            sys_opts.ip_strategy = opts.ip_strategy;
            TokioAsyncResolver::tokio(conf, sys_opts)
        } else {
            let mut conf = ResolverConfig::new();
            for ns in &cfg.nameservers {
                conf.add_name_server(NameServerConfig::new(*ns, Protocol::Udp));
            }
            // Only the configured servers answer: /etc/hosts would shadow them.
            opts.use_hosts_file = false;
            TokioAsyncResolver::tokio(conf, opts)
        };
        Ok(Dns {
            resolver,
            cache: Mutex::new(HashMap::new()),
            cache_ttl: Duration::from_secs(cfg.cache_seconds),
            max_ptr: cfg.max_ptr_names.max(1),
        })
    }

    /// SEED-8's check, cached per IP (temporary failures are not cached).
    pub async fn fcrdns(&self, ip: IpAddr) -> FcrdnsReport {
        let ip = ip.to_canonical();
        if let Some((at, report)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip)
        {
            if at.elapsed() < self.cache_ttl {
                return report.clone();
            }
        }
        let report = self.fcrdns_uncached(ip).await;
        if report.verdict != Verdict::Temperror && !self.cache_ttl.is_zero() {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHE_MAX {
                let ttl = self.cache_ttl;
                cache.retain(|_, (at, _)| at.elapsed() < ttl);
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(ip, (Instant::now(), report.clone()));
        }
        report
    }

    async fn fcrdns_uncached(&self, ip: IpAddr) -> FcrdnsReport {
        let mut report = FcrdnsReport {
            ip,
            ptr: Vec::new(),
            forward: BTreeMap::new(),
            verdict: Verdict::NoPtr,
        };
        let names: Vec<String> = match classify(self.resolver.reverse_lookup(ip).await) {
            Lookup::Found(l) => l
                .iter()
                .map(|n| n.to_utf8().trim_end_matches('.').to_string())
                .collect(),
            Lookup::NoRecords { .. } => return report,
            Lookup::Temp(e) => {
                tracing::info!(%ip, error = %e, "PTR lookup failed");
                report.verdict = Verdict::Temperror;
                return report;
            }
        };
        if names.is_empty() {
            return report;
        }
        report.ptr = names;
        let mut temp = false;
        let mut any_forward = false;
        for name in report.ptr.iter().take(self.max_ptr) {
            let fqdn = format!("{name}.");
            match classify(self.resolver.lookup_ip(fqdn.as_str()).await) {
                Lookup::Found(l) => {
                    let addrs: Vec<IpAddr> = l.iter().map(|a| a.to_canonical()).collect();
                    any_forward |= !addrs.is_empty();
                    let hit = addrs.contains(&ip);
                    report.forward.insert(name.clone(), addrs);
                    if hit {
                        report.verdict = Verdict::Pass;
                        return report;
                    }
                }
                Lookup::NoRecords { .. } => {
                    report.forward.insert(name.clone(), Vec::new());
                }
                Lookup::Temp(e) => {
                    tracing::info!(%ip, name, error = %e, "forward lookup failed");
                    temp = true;
                }
            }
        }
        report.verdict = if temp {
            Verdict::Temperror
        } else if any_forward {
            Verdict::Mismatch
        } else {
            Verdict::NoForward
        };
        report
    }

    /// MX hosts of `domain` for delivery (RFC 5321 5.1, RFC 7505).
    pub async fn mx(&self, domain: &str) -> Result<MxAnswer, TempDnsError> {
        let fqdn = format!("{}.", domain.trim_end_matches('.'));
        match classify(self.resolver.mx_lookup(fqdn.as_str()).await) {
            Lookup::Found(l) => {
                let mut hosts: Vec<MxHost> = l
                    .iter()
                    .map(|mx| MxHost {
                        preference: mx.preference(),
                        host: mx.exchange().to_utf8().trim_end_matches('.').to_string(),
                    })
                    .collect();
                if hosts.len() == 1 && hosts[0].host.is_empty() {
                    return Ok(MxAnswer::NullMx);
                }
                hosts.retain(|h| !h.host.is_empty());
                use rand::seq::SliceRandom;
                hosts.shuffle(&mut rand::thread_rng());
                hosts.sort_by_key(|h| h.preference);
                Ok(MxAnswer::Hosts(hosts))
            }
            Lookup::NoRecords { nxdomain: true } => Ok(MxAnswer::NoDomain),
            Lookup::NoRecords { nxdomain: false } => Ok(MxAnswer::NoMx),
            Lookup::Temp(e) => Err(TempDnsError(e)),
        }
    }

    /// A/AAAA of a host; an empty list when it has none.
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, TempDnsError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fqdn = format!("{}.", host.trim_end_matches('.'));
        match classify(self.resolver.lookup_ip(fqdn.as_str()).await) {
            Lookup::Found(l) => Ok(l.iter().collect()),
            Lookup::NoRecords { .. } => Ok(Vec::new()),
            Lookup::Temp(e) => Err(TempDnsError(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(verdict: Verdict) -> FcrdnsReport {
        FcrdnsReport {
            ip: "127.0.0.3".parse().unwrap(),
            ptr: vec!["bad.example".into()],
            forward: BTreeMap::new(),
            verdict,
        }
    }

    #[test]
    fn decisions_follow_seed_8() {
        use Decision::*;
        use FcrdnsMode::*;
        let allow = OnDnsError::Allow;
        assert_eq!(decide(&report(Verdict::Pass), RefuseMismatch, allow), Allow);
        assert_eq!(
            decide(&report(Verdict::Mismatch), RefuseMismatch, allow),
            Refuse
        );
        assert_eq!(
            decide(&report(Verdict::NoForward), RefuseMismatch, allow),
            Refuse
        );
        assert_eq!(decide(&report(Verdict::NoPtr), RefuseMismatch, allow), Allow);
        assert_eq!(decide(&report(Verdict::NoPtr), RequirePtr, allow), Refuse);
        assert_eq!(decide(&report(Verdict::Mismatch), Off, allow), Allow);
        assert_eq!(
            decide(&report(Verdict::Temperror), RefuseMismatch, allow),
            Allow
        );
        assert_eq!(
            decide(
                &report(Verdict::Temperror),
                RefuseMismatch,
                OnDnsError::Tempfail
            ),
            TempFail
        );
    }

    #[test]
    fn reasons_name_ip_and_ptr() {
        let r = report(Verdict::Mismatch).reason();
        assert!(r.contains("127.0.0.3") && r.contains("bad.example"), "{r}");
    }
}
