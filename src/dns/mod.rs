//! DNS: the forward-confirmed reverse DNS check of SEED-8 (with a verdict
//! cache), and the MX / address lookups of outbound delivery. The lookups
//! go through a [`Resolve`]r: hickory pointed at the configured nameservers
//! in service, a scripted one in unit tests.

use crate::config::{DnsConfig, FcrdnsMode, OnDnsError};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use hickory_resolver::config::{NameServerConfig, NameServerConfigGroup, Protocol, ResolverOpts};
use hickory_resolver::error::{ResolveError, ResolveErrorKind};
use hickory_resolver::name_server::{GenericConnector, NameServerPool, TokioRuntimeProvider};
use hickory_resolver::proto::op::{Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::proto::xfer::{DnsHandle, DnsRequestOptions};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[cfg(test)]
pub mod scripted;

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

/// Whether any POP3 listener of `config` would turn this client away (the
/// `refused` of the API): a refusal or a temporary failure.
pub fn refused_by_pop3(config: &crate::config::Config, report: &FcrdnsReport) -> bool {
    config
        .listeners
        .iter()
        .filter(|l| l.protocol == crate::config::Protocol::Pop3)
        .any(|l| decide(report, l.fcrdns_mode(), l.on_dns_error) != Decision::Allow)
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

/// The FCrDNS check and MX routing over a [`Resolve`]r.
pub struct Dns {
    resolver: Box<dyn Resolve>,
    cache: Mutex<HashMap<IpAddr, (Instant, FcrdnsReport)>>,
    cache_ttl: Duration,
    max_ptr: usize,
}

/// The lookups the FCrDNS check and MX routing need. Names are absolute.
pub trait Resolve: Send + Sync {
    /// The PTR names of `ip`.
    fn ptr(&self, ip: IpAddr) -> BoxFuture<'_, Lookup<Vec<Name>>>;
    /// The A and AAAA addresses of `name`.
    fn addrs(&self, name: Name) -> BoxFuture<'_, Lookup<Vec<IpAddr>>>;
    /// The MX records of `name` as answered, in any order; the host of a
    /// null MX (RFC 7505) is "".
    fn mx(&self, name: Name) -> BoxFuture<'_, Lookup<Vec<MxHost>>>;
}

/// Queries go to the nameservers directly, not through hickory's caching
/// resolver: that one answers every 127.0.0.0/8 PTR with "localhost"
/// (RFC 6761), and betomail must see what the DNS says for each client.
pub struct HickoryResolver {
    pool: NameServerPool<GenericConnector<TokioRuntimeProvider>>,
    timeout: Duration,
}

/// Bounded so a flood of distinct client IPs cannot grow memory.
const CACHE_MAX: usize = 100_000;

/// What one lookup found.
#[derive(Debug, Clone)]
pub enum Lookup<T> {
    Found(T),
    NoRecords { nxdomain: bool },
    Temp(String),
}

fn classify<T>(r: Result<T, ResolveError>) -> Lookup<T> {
    match r {
        Ok(v) => Lookup::Found(v),
        Err(e) => match e.kind() {
            ResolveErrorKind::NoRecordsFound { response_code, .. }
                if matches!(
                    *response_code,
                    ResponseCode::NXDomain | ResponseCode::NoError
                ) =>
            {
                Lookup::NoRecords {
                    nxdomain: *response_code == ResponseCode::NXDomain,
                }
            }
            _ => Lookup::Temp(e.to_string()),
        },
    }
}

fn absolute(name: &str) -> Option<Name> {
    Name::from_ascii(format!("{}.", name.trim_end_matches('.'))).ok()
}

/// A name as ASCII text without the trailing dot (IDNs in xn-- form).
fn ascii_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

fn reverse_name(ip: IpAddr) -> Name {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Name::from_ascii(format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]))
                .expect("a valid reverse name")
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s += &format!("{:x}.{:x}.", b & 0xf, b >> 4);
            }
            Name::from_ascii(format!("{s}ip6.arpa.")).expect("a valid reverse name")
        }
    }
}

impl HickoryResolver {
    pub fn new(cfg: &DnsConfig) -> Result<HickoryResolver, TempDnsError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(cfg.timeout_ms);
        opts.attempts = 1;
        let servers = if cfg.nameservers.is_empty() {
            let (conf, _) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| TempDnsError(format!("reading the system resolver: {e}")))?;
            NameServerConfigGroup::from(conf.name_servers().to_vec())
        } else {
            NameServerConfigGroup::from(
                cfg.nameservers
                    .iter()
                    .flat_map(|ns| {
                        // UDP, and TCP for truncated answers.
                        [
                            NameServerConfig::new(*ns, Protocol::Udp),
                            NameServerConfig::new(*ns, Protocol::Tcp),
                        ]
                    })
                    .collect::<Vec<_>>(),
            )
        };
        let pool = NameServerPool::from_config(
            servers,
            opts,
            GenericConnector::new(TokioRuntimeProvider::new()),
        );
        Ok(HickoryResolver {
            pool,
            timeout: Duration::from_millis(cfg.timeout_ms),
        })
    }

    /// One query; the records of the asked type in the answer.
    async fn query(&self, name: Name, rtype: RecordType) -> Lookup<Vec<RData>> {
        let mut q = Query::query(name, rtype);
        q.set_query_class(hickory_resolver::proto::rr::DNSClass::IN);
        let mut opts = DnsRequestOptions::default();
        opts.use_edns = true;
        let mut stream = self.pool.lookup(q, opts);
        // The pool's own timeout is per server; this bounds the whole query.
        let first = tokio::time::timeout(self.timeout * 2, stream.next()).await;
        let response = match first {
            Err(_) => return Lookup::Temp("timeout".into()),
            Ok(None) => return Lookup::Temp("no response".into()),
            Ok(Some(r)) => r,
        };
        match classify(response) {
            Lookup::Found(resp) => {
                if resp.response_code() == ResponseCode::NXDomain {
                    return Lookup::NoRecords { nxdomain: true };
                }
                if resp.response_code() != ResponseCode::NoError {
                    return Lookup::Temp(resp.response_code().to_string());
                }
                let records: Vec<RData> = resp
                    .answers()
                    .iter()
                    .filter(|r| r.record_type() == rtype)
                    .filter_map(|r| r.data().cloned())
                    .collect();
                if records.is_empty() {
                    Lookup::NoRecords { nxdomain: false }
                } else {
                    Lookup::Found(records)
                }
            }
            Lookup::NoRecords { nxdomain } => Lookup::NoRecords { nxdomain },
            Lookup::Temp(e) => Lookup::Temp(e),
        }
    }

    /// A and AAAA of an absolute name, queried together.
    async fn query_addrs(&self, name: Name) -> Lookup<Vec<IpAddr>> {
        let (a, aaaa) = tokio::join!(
            self.query(name.clone(), RecordType::A),
            self.query(name, RecordType::AAAA)
        );
        let mut addrs = Vec::new();
        let mut temp = None;
        let mut nxdomain = false;
        for l in [a, aaaa] {
            match l {
                Lookup::Found(rs) => addrs.extend(rs.into_iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                Lookup::NoRecords { nxdomain: nx } => nxdomain |= nx,
                Lookup::Temp(e) => temp = Some(e),
            }
        }
        if !addrs.is_empty() {
            Lookup::Found(addrs)
        } else if let Some(e) = temp {
            Lookup::Temp(e)
        } else {
            Lookup::NoRecords { nxdomain }
        }
    }
}

impl Resolve for HickoryResolver {
    fn ptr(&self, ip: IpAddr) -> BoxFuture<'_, Lookup<Vec<Name>>> {
        async move {
            match self.query(reverse_name(ip), RecordType::PTR).await {
                Lookup::Found(l) => Lookup::Found(
                    l.into_iter()
                        .filter_map(|r| match r {
                            RData::PTR(p) => Some(p.0),
                            _ => None,
                        })
                        .collect(),
                ),
                Lookup::NoRecords { nxdomain } => Lookup::NoRecords { nxdomain },
                Lookup::Temp(e) => Lookup::Temp(e),
            }
        }
        .boxed()
    }

    fn addrs(&self, name: Name) -> BoxFuture<'_, Lookup<Vec<IpAddr>>> {
        self.query_addrs(name).boxed()
    }

    fn mx(&self, name: Name) -> BoxFuture<'_, Lookup<Vec<MxHost>>> {
        async move {
            match self.query(name, RecordType::MX).await {
                Lookup::Found(l) => Lookup::Found(
                    l.iter()
                        .filter_map(|r| match r {
                            RData::MX(mx) => Some(MxHost {
                                preference: mx.preference(),
                                host: ascii_name(mx.exchange()),
                            }),
                            _ => None,
                        })
                        .collect(),
                ),
                Lookup::NoRecords { nxdomain } => Lookup::NoRecords { nxdomain },
                Lookup::Temp(e) => Lookup::Temp(e),
            }
        }
        .boxed()
    }
}

impl Dns {
    /// Hickory on the configured nameservers.
    pub fn new(cfg: &DnsConfig) -> Result<Dns, TempDnsError> {
        Ok(Self::with_resolver(
            Box::new(HickoryResolver::new(cfg)?),
            cfg,
        ))
    }

    pub fn with_resolver(resolver: Box<dyn Resolve>, cfg: &DnsConfig) -> Dns {
        Dns {
            resolver,
            cache: Mutex::new(HashMap::new()),
            cache_ttl: Duration::from_secs(cfg.cache_seconds),
            max_ptr: cfg.max_ptr_names.max(1),
        }
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
        // The names as received are looked up; shown, they are ASCII (an IDN
        // stays in its xn-- form, odd octets escaped): the text goes into
        // protocol replies.
        let names: Vec<Name> = match self.resolver.ptr(ip).await {
            Lookup::Found(l) => l,
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
        report.ptr = names.iter().map(ascii_name).collect();
        let mut temp = false;
        let mut any_forward = false;
        for (fqdn, name) in names.into_iter().zip(&report.ptr).take(self.max_ptr) {
            match self.resolver.addrs(fqdn).await {
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
        let fqdn = absolute(domain).ok_or_else(|| TempDnsError(format!("bad domain {domain}")))?;
        match self.resolver.mx(fqdn).await {
            Lookup::Found(mut hosts) => {
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
        let fqdn = absolute(host).ok_or_else(|| TempDnsError(format!("bad host name {host}")))?;
        match self.resolver.addrs(fqdn).await {
            Lookup::Found(l) => Ok(l),
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
        assert_eq!(
            decide(&report(Verdict::NoPtr), RefuseMismatch, allow),
            Allow
        );
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

    /// The FCrDNS check over `resolver`, with the default `[dns]` settings.
    fn dns(resolver: scripted::ScriptedResolver) -> Dns {
        let cfg: DnsConfig = toml::from_str("").unwrap();
        Dns::with_resolver(Box::new(resolver), &cfg)
    }

    async fn verdict(dns: &Dns, ip: &str) -> FcrdnsReport {
        dns.fcrdns(ip.parse().unwrap()).await
    }

    /// The client hosts of the end-to-end FCRDNS_RECORDS, scripted.
    fn hosts() -> scripted::ScriptedResolver {
        scripted::ScriptedResolver::default()
            .with_ptr("127.0.0.2", &["good.test"])
            .with_host("good.test", &["127.0.0.2"])
            .with_ptr("127.0.0.3", &["bad.test"])
            .with_host("bad.test", &["127.0.0.99"])
            .with_ptr("127.0.0.4", &["noa.test"])
            .with_ptr("127.0.0.6", &["other.test", "multi.test"])
            .with_host("other.test", &["127.0.0.98"])
            .with_host("multi.test", &["127.0.0.6"])
            .failing_ptr("127.0.0.9")
            .with_ptr("127.0.0.10", &["slow.test"])
            .failing_host("slow.test")
    }

    #[tokio::test]
    async fn verdicts_for_each_kind_of_host() {
        let dns = dns(hosts());
        let r = verdict(&dns, "127.0.0.2").await;
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        assert_eq!(r.ptr, ["good.test"]);

        let r = verdict(&dns, "127.0.0.3").await;
        assert_eq!(r.verdict, Verdict::Mismatch, "{r:?}");
        assert_eq!(
            r.forward["bad.test"],
            ["127.0.0.99".parse::<IpAddr>().unwrap()]
        );

        let r = verdict(&dns, "127.0.0.4").await;
        assert_eq!(r.verdict, Verdict::NoForward, "{r:?}");
        assert!(r.forward["noa.test"].is_empty(), "{r:?}");

        assert_eq!(verdict(&dns, "127.0.0.5").await.verdict, Verdict::NoPtr);
        assert_eq!(verdict(&dns, "127.0.0.9").await.verdict, Verdict::Temperror);
        assert_eq!(
            verdict(&dns, "127.0.0.10").await.verdict,
            Verdict::Temperror
        );
    }

    #[tokio::test]
    async fn any_ptr_name_that_resolves_back_passes() {
        let r = verdict(&dns(hosts()), "127.0.0.6").await;
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        assert_eq!(r.ptr, ["other.test", "multi.test"]);
        assert_eq!(r.forward.len(), 2, "{r:?}");
    }

    #[tokio::test]
    async fn ptr_names_past_max_ptr_names_are_not_tried() {
        let mut resolver = scripted::ScriptedResolver::default();
        let names: Vec<String> = (0..5).map(|i| format!("n{i}.test")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        resolver = resolver.with_ptr("127.0.0.7", &refs);
        for n in &names[..4] {
            resolver = resolver.with_host(n, &["127.0.0.98"]);
        }
        // Only the fifth name (past the default of 4) resolves back.
        resolver = resolver.with_host(&names[4], &["127.0.0.7"]);
        let r = verdict(&dns(resolver), "127.0.0.7").await;
        assert_eq!(r.verdict, Verdict::Mismatch, "{r:?}");
        assert_eq!(r.forward.len(), 4, "{r:?}");
    }

    #[tokio::test]
    async fn ipv4_mapped_ipv6_is_checked_as_ipv4() {
        let r = verdict(&dns(hosts()), "::ffff:127.0.0.3").await;
        assert_eq!(r.verdict, Verdict::Mismatch, "{r:?}");
        assert_eq!(r.ip, "127.0.0.3".parse::<IpAddr>().unwrap());
        let r = verdict(&dns(hosts()), "::ffff:127.0.0.2").await;
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    }

    #[tokio::test]
    async fn an_ipv6_client_passes_on_its_aaaa() {
        let resolver = scripted::ScriptedResolver::default()
            .with_ptr("2001:db8::25", &["v6.test"])
            .with_host("v6.test", &["192.0.2.1", "2001:db8::25"]);
        let r = verdict(&dns(resolver), "2001:db8::25").await;
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
    }

    #[tokio::test]
    async fn verdicts_are_cached_but_temporary_failures_are_not() {
        let dns = dns(hosts());
        verdict(&dns, "127.0.0.3").await;
        verdict(&dns, "127.0.0.9").await;
        let cached = dns.cache.lock().unwrap();
        assert!(cached.contains_key(&"127.0.0.3".parse::<IpAddr>().unwrap()));
        assert!(!cached.contains_key(&"127.0.0.9".parse::<IpAddr>().unwrap()));
    }

    #[tokio::test]
    async fn mx_answers_in_preference_order_and_null_mx() {
        let resolver = scripted::ScriptedResolver::default()
            .with_mx("far.test", &[(20, "b.far.test"), (10, "a.far.test")])
            .with_mx("null.test", &[(0, "")])
            .with_host("plain.test", &["127.0.0.28"]);
        let dns = dns(resolver);
        let hosts = |h: &[(u16, &str)]| {
            MxAnswer::Hosts(
                h.iter()
                    .map(|&(preference, host)| MxHost {
                        preference,
                        host: host.into(),
                    })
                    .collect(),
            )
        };
        assert_eq!(
            dns.mx("far.test").await.unwrap(),
            hosts(&[(10, "a.far.test"), (20, "b.far.test")])
        );
        assert_eq!(dns.mx("null.test").await.unwrap(), MxAnswer::NullMx);
        assert_eq!(dns.mx("nowhere.test").await.unwrap(), MxAnswer::NoDomain);
        assert_eq!(
            dns.addresses("plain.test").await.unwrap(),
            ["127.0.0.28".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn reasons_name_ip_and_ptr() {
        let r = report(Verdict::Mismatch).reason();
        assert!(r.contains("127.0.0.3") && r.contains("bad.example"), "{r}");
    }
}
