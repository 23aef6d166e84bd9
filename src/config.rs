//! The one TOML configuration file, its embedded default, and validation.
//!
//! Every limit and timeout is a named value with a documented default so that
//! operators can see and change it. A bad file is reported with the key path
//! (`listener[2].fcrdns`) and the reason, never a panic.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration used when `serve` gets no `--config`: every role on its
/// own unprivileged loopback port, data in `./betomail-data`.
pub const EMBEDDED_DEFAULT: &str = r#"
hostname = "localhost"
data_dir = "betomail-data"
local_domains = ["be.test"]
portal_url = "http://127.0.0.1:8080"

# Loopback-only listeners: plaintext login is allowed so that a first test
# with any client works without TLS. Never copy this to a public bind.
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:1110"
plaintext_auth = true
grants_relay = true

[[listener]]
name = "pop2"
protocol = "pop3"
bind = "127.0.0.1:1111"
plaintext_auth = true

[[listener]]
name = "pop3s"
protocol = "pop3"
bind = "127.0.0.1:1995"
tls = "implicit"
grants_relay = true

[[listener]]
name = "mx"
protocol = "smtp"
bind = "127.0.0.1:1025"
relay_by = []

[[listener]]
name = "smtp"
protocol = "smtp"
bind = "127.0.0.1:1026"
relay_by = ["pop-before-smtp"]

[[listener]]
name = "smtpa"
protocol = "smtp"
bind = "127.0.0.1:1587"
relay_by = ["auth"]
plaintext_auth = true

[[listener]]
name = "web"
protocol = "http"
bind = "127.0.0.1:8080"
"#;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Our name in greetings, Received headers, Maildir file names and EHLO.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Relative paths are taken from the directory `serve` runs in.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Domains whose mail is delivered here; the first is the domain of new accounts.
    #[serde(default = "default_local_domains")]
    pub local_domains: Vec<String>,
    /// Base URL of the web portal, used in error replies that point to it.
    #[serde(default = "default_portal_url")]
    pub portal_url: String,
    /// Largest message accepted (SMTP SIZE, `deliver`), in octets.
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u64,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub relay: RelayConfig,
    #[serde(default)]
    pub outbound: OutboundConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub web: WebConfig,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<Listener>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// `ip:port` of recursive resolvers; empty means the system resolver.
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    #[serde(default = "default_dns_timeout_ms")]
    pub timeout_ms: u64,
    /// How long an FCrDNS verdict is cached per IP.
    #[serde(default = "default_dns_cache_seconds")]
    pub cache_seconds: u64,
    /// How many PTR names are tried before giving up (SEED-8).
    #[serde(default = "default_max_ptr_names")]
    pub max_ptr_names: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Lifetime of a POP-before-SMTP grant (SEED-9).
    #[serde(default = "default_pbs_seconds")]
    pub pop_before_smtp_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutboundTls {
    None,
    Opportunistic,
    Required,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    /// Port used when delivering to an MX host (tests point it elsewhere).
    #[serde(default = "default_mx_port")]
    pub mx_port: u16,
    /// Waits between attempts; the last one repeats.
    #[serde(default = "default_retry_schedule", deserialize_with = "durations")]
    pub retry_schedule: Vec<Duration>,
    #[serde(default = "default_queue_lifetime", with = "humantime_serde_compat")]
    pub queue_lifetime: Duration,
    /// A delay warning DSN is sent once after this long in the queue.
    #[serde(default = "default_delay_warning", with = "humantime_serde_compat")]
    pub delay_warning: Duration,
    /// `host:port` that takes all outbound mail instead of MX routing.
    #[serde(default)]
    pub smarthost: Option<String>,
    #[serde(default = "default_outbound_tls")]
    pub tls: OutboundTls,
    /// Simultaneous connections to one destination host.
    #[serde(default = "default_per_destination")]
    pub max_per_destination: usize,
    /// Simultaneous outbound connections in all.
    #[serde(default = "default_outbound_concurrency")]
    pub max_connections: usize,
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// RFC 5321 4.5.3.2: initial 220 (5 min), MAIL (5), RCPT (5), DATA (2),
    /// data block (3), final dot (10). One value per phase kind.
    #[serde(default = "default_command_timeout", with = "humantime_serde_compat")]
    pub command_timeout: Duration,
    #[serde(default = "default_data_timeout", with = "humantime_serde_compat")]
    pub data_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// RFC 1939 3: an autologout timer of at least 10 minutes.
    #[serde(default = "default_pop3_idle", with = "humantime_serde_compat")]
    pub pop3_idle_timeout: Duration,
    /// RFC 5321 4.5.3.2.7: the server waits at least 5 minutes for a command.
    #[serde(default = "default_smtp_idle", with = "humantime_serde_compat")]
    pub smtp_idle_timeout: Duration,
    /// Longest command line accepted, in octets (POP3 and SMTP commands).
    #[serde(default = "default_max_line")]
    pub max_line_length: usize,
    /// Unknown or malformed commands before the session is closed.
    #[serde(default = "default_max_bad_commands")]
    pub max_bad_commands: u32,
    /// No-op commands per session (SMTP NOOP, RSET, VRFY, HELP, repeated
    /// HELO/EHLO; POP3 CAPA, NOOP, RSET, AUTH without a mechanism) before
    /// it is closed, as Postfix's smtpd_junk_command_limit. SMTP restarts
    /// the count at each DATA.
    #[serde(default = "default_max_junk_commands")]
    pub max_junk_commands: u32,
    /// Total time a POP3 or SMTP session may last before logging in or
    /// authenticating; checked between commands, so a DATA transfer under
    /// way is never cut.
    #[serde(
        default = "default_unauthenticated_lifetime",
        with = "humantime_serde_compat"
    )]
    pub unauthenticated_session_lifetime: Duration,
    /// First delay after a failed login; it doubles per failure from one IP.
    #[serde(default = "default_auth_fail_delay", with = "humantime_serde_compat")]
    pub auth_failure_delay: Duration,
    /// The growing delay stops growing here.
    #[serde(default = "default_auth_fail_max", with = "humantime_serde_compat")]
    pub auth_failure_max_delay: Duration,
    /// Recipients accepted per SMTP transaction (RFC 5321 4.5.3.1.8: at least 100).
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Open connections per listener; more wait in the kernel backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Open connections per listener from one client, an IPv4 address or an
    /// IPv6 /64 (Postfix's smtpd_client_connection_count_limit); more are
    /// refused at once.
    #[serde(default = "default_max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    /// File descriptors kept out of the client connections' share of the
    /// open-file limit, for the store's Maildir, queue and database files.
    #[serde(default = "default_reserved_fds")]
    pub reserved_fds: usize,
    /// Networks without the per-IP limit (local webmail, monitoring).
    #[serde(default = "default_connection_limit_exempt")]
    pub connection_limit_exempt: Vec<ipnet::IpNet>,
    /// `Received:` headers above which a message is refused as a loop.
    #[serde(default = "default_max_received")]
    pub max_received_headers: usize,
    /// Octets all SMTP and POP3 connections together may hold in line
    /// buffers and in-memory DATA beyond each one's small base: past it a
    /// message goes straight to a spool file, and a client whose line
    /// cannot grow gets a temporary error. Formerly `smtp_memory_spool_total`.
    #[serde(
        default = "default_connection_memory_total",
        alias = "smtp_memory_spool_total"
    )]
    pub connection_memory_total: usize,
    /// Free octets in the data directory below which SMTP refuses new mail
    /// at MAIL and RCPT with 452 4.3.1 (and MAIL with a bigger SIZE=).
    #[serde(default = "default_smtp_min_free_disk")]
    pub smtp_min_free_disk: u64,
    /// Octets preallocated in the data directory (file `reserve`) and given
    /// up when the disk is full, so POP locks can still be taken and mail
    /// deleted; 0 disables it. At most `smtp_min_free_disk`, so that new
    /// mail never takes the space it frees.
    #[serde(default = "default_disk_reserve")]
    pub disk_reserve: u64,
    /// How long a `proxy_protocol` listener waits for the PROXY header.
    #[serde(
        default = "default_proxy_header_timeout",
        with = "humantime_serde_compat"
    )]
    pub proxy_header_timeout: Duration,
    /// Store calls (SQLite, Maildir) running at once on blocking threads.
    #[serde(default = "default_store_calls")]
    pub store_calls: usize,
    /// A store call that cannot start within this long fails as temporary
    /// (POP3 `[SYS/TEMP]`, SMTP 4xx, portal 503) instead of queueing on.
    #[serde(default = "default_store_wait", with = "humantime_serde_compat")]
    pub store_wait: Duration,
}

/// Password hashing and the verified-credentials cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// argon2id memory of new hashes in KiB (OWASP's minimum: 19456).
    #[serde(default = "default_argon2_memory")]
    pub argon2_memory_kib: u32,
    /// argon2id passes (t).
    #[serde(default = "default_argon2_iterations")]
    pub argon2_iterations: u32,
    /// argon2id lanes (p).
    #[serde(default = "default_argon2_parallelism")]
    pub argon2_parallelism: u32,
    /// A stored hash that needs more memory than this (an imported one) is
    /// not checked: one login must not be able to take gigabytes.
    #[serde(default = "default_max_hash_memory")]
    pub max_hash_memory_kib: u32,
    /// Likewise for argon2 passes (t): a hash of more is not checked.
    #[serde(default = "default_max_hash_iterations")]
    pub max_hash_iterations: u32,
    /// Threads that hash passwords, each with one working buffer of
    /// `argon2_memory_kib`; 0 means one per core.
    #[serde(default)]
    pub hash_workers: usize,
    /// Logins that may wait for a hash worker; past it a login gets a
    /// temporary error at once. 0 means 32 per worker.
    #[serde(default)]
    pub hash_queue: usize,
    /// How long a verified password is remembered (covers a client that
    /// polls every 15 minutes).
    #[serde(
        default = "default_credential_cache_ttl",
        with = "humantime_serde_compat"
    )]
    pub credential_cache_ttl: Duration,
    /// Remembered passwords at most (about 100 octets each).
    #[serde(default = "default_credential_cache_entries")]
    pub credential_cache_entries: usize,
}

impl AuthConfig {
    pub fn policy(&self) -> crate::auth::HashPolicy {
        crate::auth::HashPolicy {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }

    pub fn workers(&self) -> usize {
        match self.hash_workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    pub fn queue(&self) -> usize {
        match self.hash_queue {
            0 => 32 * self.workers(),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Proxies whose X-Forwarded-For is believed (SEED-16).
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// Idle lifetime of a portal login.
    #[serde(default = "default_web_session", with = "humantime_serde_compat")]
    pub session_lifetime: Duration,
    /// Octets an HTTP connection may buffer of an unfinished request head;
    /// past it the request gets 431 and the connection closes.
    #[serde(default = "default_web_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Open connections per web listener (at most `limits.max_connections`);
    /// with `max_header_bytes` this bounds the memory of request heads.
    #[serde(default = "default_web_max_connections")]
    pub max_connections: usize,
    /// Portal logins held in memory; past it the least recently used ends.
    #[serde(default = "default_web_max_sessions")]
    pub max_sessions: usize,
    /// Portal logins of one account; past it its least recently used ends.
    #[serde(default = "default_web_max_sessions_per_account")]
    pub max_sessions_per_account: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Pop3,
    Smtp,
    Http,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    None,
    Starttls,
    Implicit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FcrdnsMode {
    Off,
    RefuseMismatch,
    RequirePtr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDnsError {
    Allow,
    Tempfail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelayBy {
    Auth,
    PopBeforeSmtp,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub protocol: Protocol,
    pub bind: SocketAddr,
    /// Default: `starttls` for pop3/smtp, `none` for http.
    #[serde(default)]
    pub tls: Option<TlsMode>,
    /// Allow USER/PASS and AUTH PLAIN/LOGIN before TLS.
    #[serde(default)]
    pub plaintext_auth: bool,
    /// Default: `refuse-mismatch` on pop3, `off` elsewhere (SEED-8).
    #[serde(default)]
    pub fcrdns: Option<FcrdnsMode>,
    #[serde(default = "default_on_dns_error")]
    pub on_dns_error: OnDnsError,
    /// POP3: a login opens POP-before-SMTP for the client IP (SEED-9).
    #[serde(default)]
    pub grants_relay: bool,
    /// SMTP: what lets a client send to non-local domains.
    #[serde(default)]
    pub relay_by: Vec<RelayBy>,
    /// SMTP: 530 to MAIL before AUTH (port-587 style).
    #[serde(default)]
    pub require_auth: bool,
    /// Behind a load balancer: every connection starts with HAProxy's PROXY
    /// header (v1 or v2), whose client address every rule then uses.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// The balancers allowed to send that header; other peers are closed.
    #[serde(default)]
    pub proxy_trusted: Vec<ipnet::IpNet>,
}

impl Listener {
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.unwrap_or(match self.protocol {
            Protocol::Http => TlsMode::None,
            _ => TlsMode::Starttls,
        })
    }

    pub fn fcrdns_mode(&self) -> FcrdnsMode {
        self.fcrdns.unwrap_or(match self.protocol {
            Protocol::Pop3 => FcrdnsMode::RefuseMismatch,
            _ => FcrdnsMode::Off,
        })
    }
}

impl Config {
    /// Reads and validates a file; the error names the key and the reason.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            key: String::new(),
            reason: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::parse(&text)
    }

    pub fn embedded_default() -> Config {
        Self::parse(EMBEDDED_DEFAULT).expect("the embedded default config is valid")
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            ConfigError {
                key: if key == "." { String::new() } else { key },
                reason: inner.message().trim().to_string(),
            }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| {
            Err(ConfigError {
                key: key.to_string(),
                reason: reason.to_string(),
            })
        };
        if self.hostname.is_empty() || !self.hostname.bytes().all(is_hostname_byte) {
            return bad(
                "hostname",
                "must be a host name (letters, digits, '-', '.')",
            );
        }
        // It is echoed in POP3 refusals: one line of printable ASCII.
        let url = &self.portal_url;
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || !url.bytes().all(|b| b.is_ascii_graphic())
        {
            return bad(
                "portal_url",
                "must be an http:// or https:// URL without spaces",
            );
        }
        if self.local_domains.is_empty() {
            return bad("local_domains", "needs at least one domain");
        }
        for (i, d) in self.local_domains.iter().enumerate() {
            if d.is_empty() || !d.bytes().all(is_hostname_byte) {
                return bad(&format!("local_domains[{i}]"), "must be a domain name");
            }
        }
        if self.max_message_size < 1024 {
            return bad("max_message_size", "must be at least 1024 octets");
        }
        // Every connection waits for FCrDNS: more than a minute stalls them all.
        if !(1..=60_000).contains(&self.dns.timeout_ms) {
            return bad("dns.timeout_ms", "must be between 1 and 60000");
        }
        if self.outbound.retry_schedule.is_empty() {
            return bad("outbound.retry_schedule", "needs at least one interval");
        }
        if self.limits.max_recipients < 1 {
            return bad("limits.max_recipients", "must be at least 1");
        }
        if self.limits.pop3_idle_timeout < Duration::from_secs(1) {
            return bad("limits.pop3_idle_timeout", "must be at least 1s");
        }
        if self.limits.smtp_idle_timeout < Duration::from_secs(1) {
            return bad("limits.smtp_idle_timeout", "must be at least 1s");
        }
        if self.limits.unauthenticated_session_lifetime < Duration::from_secs(1) {
            return bad(
                "limits.unauthenticated_session_lifetime",
                "must be at least 1s",
            );
        }
        if self.limits.max_junk_commands < 1 {
            return bad("limits.max_junk_commands", "must be at least 1");
        }
        // Counts that size semaphores, buffers or clocks: a huge value would
        // panic or exhaust memory at run time instead of failing here.
        let counts = [
            ("limits.max_connections", self.limits.max_connections, 1),
            (
                "limits.max_connections_per_ip",
                self.limits.max_connections_per_ip,
                1,
            ),
            // RFC 5321 4.5.3.1.4: command lines of 512 octets.
            ("limits.max_line_length", self.limits.max_line_length, 512),
            ("limits.reserved_fds", self.limits.reserved_fds, 16),
            ("outbound.max_connections", self.outbound.max_connections, 1),
            ("limits.store_calls", self.limits.store_calls, 1),
            (
                "outbound.max_per_destination",
                self.outbound.max_per_destination,
                1,
            ),
            ("web.max_sessions", self.web.max_sessions, 1),
            // hyper's smallest read buffer.
            ("web.max_header_bytes", self.web.max_header_bytes, 8192),
            ("web.max_connections", self.web.max_connections, 1),
        ];
        for (key, value, min) in counts {
            if value < min || value > MAX_COUNT {
                return bad(key, &format!("must be between {min} and {MAX_COUNT}"));
            }
        }
        self.validate_auth()?;
        if self.limits.disk_reserve > self.limits.smtp_min_free_disk {
            return bad(
                "limits.disk_reserve",
                "must not exceed limits.smtp_min_free_disk",
            );
        }
        // A login walks its account's list: kept short.
        if !(1..=MAX_SESSIONS_PER_ACCOUNT).contains(&self.web.max_sessions_per_account) {
            return bad(
                "web.max_sessions_per_account",
                &format!("must be between 1 and {MAX_SESSIONS_PER_ACCOUNT}"),
            );
        }
        if self.relay.pop_before_smtp_seconds > MAX_DURATION.as_secs() {
            return bad("relay.pop_before_smtp_seconds", "must be at most 100 years");
        }
        let mut names = std::collections::HashSet::new();
        let mut binds = std::collections::HashSet::new();
        for (i, l) in self.listeners.iter().enumerate() {
            let key = |k: &str| format!("listener[{i}].{k}");
            if l.name.is_empty() {
                return bad(&key("name"), "must not be empty");
            }
            if !names.insert(l.name.as_str()) {
                return bad(&key("name"), "another listener has this name");
            }
            if l.bind.port() != 0 && !binds.insert(l.bind) {
                return bad(&key("bind"), "another listener binds this address");
            }
            if l.protocol != Protocol::Smtp && !l.relay_by.is_empty() {
                return bad(&key("relay_by"), "only smtp listeners relay");
            }
            if l.protocol != Protocol::Smtp && l.require_auth {
                return bad(&key("require_auth"), "only smtp listeners take this");
            }
            if l.proxy_protocol && l.proxy_trusted.is_empty() {
                return bad(
                    &key("proxy_trusted"),
                    "proxy_protocol needs the balancers' networks here",
                );
            }
            if l.protocol != Protocol::Pop3 && l.grants_relay {
                return bad(&key("grants_relay"), "only pop3 listeners grant relay");
            }
            if l.protocol == Protocol::Http && l.tls_mode() == TlsMode::Starttls {
                return bad(&key("tls"), "http takes none or implicit");
            }
        }
        Ok(())
    }

    fn validate_auth(&self) -> Result<(), ConfigError> {
        let a = &self.auth;
        let bad = |key: &str, reason: String| {
            Err(ConfigError {
                key: format!("auth.{key}"),
                reason,
            })
        };
        // 4 GiB of memory or 64 passes per login is a denial of service.
        let ranges = [
            ("argon2_memory_kib", a.argon2_memory_kib, 8, 4 << 20),
            ("argon2_iterations", a.argon2_iterations, 1, 64),
            ("argon2_parallelism", a.argon2_parallelism, 1, 64),
            ("max_hash_memory_kib", a.max_hash_memory_kib, 8, 4 << 20),
            ("max_hash_iterations", a.max_hash_iterations, 1, 64),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return bad(key, format!("must be between {min} and {max}"));
            }
        }
        if let Err(e) = a.policy().params() {
            return bad(
                "argon2_memory_kib",
                format!("not a valid argon2 setting: {e}"),
            );
        }
        if a.max_hash_memory_kib < a.argon2_memory_kib {
            return bad(
                "max_hash_memory_kib",
                "must be at least argon2_memory_kib".into(),
            );
        }
        if a.max_hash_iterations < a.argon2_iterations {
            return bad(
                "max_hash_iterations",
                "must be at least argon2_iterations".into(),
            );
        }
        if a.hash_workers > 1024 {
            return bad("hash_workers", "must be at most 1024".into());
        }
        for (key, value) in [
            ("hash_queue", a.hash_queue),
            ("credential_cache_entries", a.credential_cache_entries),
        ] {
            if value > 100 * MAX_COUNT {
                return bad(key, format!("must be at most {}", 100 * MAX_COUNT));
            }
        }
        if a.credential_cache_ttl > Duration::from_secs(7 * 86400) {
            return bad("credential_cache_ttl", "must be at most 7 days".into());
        }
        Ok(())
    }

    /// `data_dir` as an absolute path.
    pub fn data_dir(&self) -> PathBuf {
        if self.data_dir.is_absolute() {
            self.data_dir.clone()
        } else {
            std::env::current_dir()
                .map(|d| d.join(&self.data_dir))
                .unwrap_or_else(|_| self.data_dir.clone())
        }
    }

    /// The domain part of new accounts' addresses.
    pub fn primary_domain(&self) -> &str {
        &self.local_domains[0]
    }

    pub fn is_local_domain(&self, domain: &str) -> bool {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        self.local_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
    }

    /// The portal's DNS check page, linked from refusals (SEED-8).
    pub fn dns_check_url(&self) -> String {
        format!("{}/dns-check", self.portal_url.trim_end_matches('/'))
    }

    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}

/// Upper bound of connection counts and line lengths.
const MAX_COUNT: usize = 1 << 20;
const MAX_SESSIONS_PER_ACCOUNT: usize = 1000;

fn is_hostname_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'.'
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path, e.g. `listener[1].bind`; empty for the file as a whole.
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "config: {}", self.reason)
        } else {
            write!(f, "config key `{}`: {}", self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Longest duration or lifetime accepted anywhere: far beyond any sensible
/// setting, and small enough that `now + it` never overflows a clock.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86400);

/// A humantime string ("90s", "5m", "2h", "5d") up to [`MAX_DURATION`].
fn parse_duration<E: serde::de::Error>(s: &str) -> Result<Duration, E> {
    match humantime::parse_duration(s) {
        Ok(d) if d <= MAX_DURATION => Ok(d),
        Ok(_) => Err(E::custom(format!("{s:?} is longer than 100 years"))),
        Err(e) => Err(E::custom(format!("{s:?} is not a duration ({e})"))),
    }
}

/// Durations are written as humantime strings: "90s", "5m", "2h", "5d".
mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        super::parse_duration(&String::deserialize(d)?)
    }
}

fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.iter().map(|s| parse_duration(s)).collect()
}

fn default_hostname() -> String {
    "localhost".into()
}
fn default_data_dir() -> PathBuf {
    "betomail-data".into()
}
fn default_local_domains() -> Vec<String> {
    vec!["be.test".into()]
}
fn default_portal_url() -> String {
    "http://127.0.0.1:8080".into()
}
fn default_max_message_size() -> u64 {
    50_000_000
}
fn default_dns_timeout_ms() -> u64 {
    2000
}
fn default_dns_cache_seconds() -> u64 {
    300
}
fn default_max_ptr_names() -> usize {
    4
}
fn default_pbs_seconds() -> u64 {
    600
}
fn default_mx_port() -> u16 {
    25
}
fn default_retry_schedule() -> Vec<Duration> {
    [5 * 60, 15 * 60, 30 * 60, 3600, 7200]
        .into_iter()
        .map(Duration::from_secs)
        .collect()
}
fn default_queue_lifetime() -> Duration {
    Duration::from_secs(5 * 86400)
}
fn default_delay_warning() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_outbound_tls() -> OutboundTls {
    OutboundTls::Opportunistic
}
fn default_per_destination() -> usize {
    4
}
fn default_outbound_concurrency() -> usize {
    64
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_command_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_data_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_pop3_idle() -> Duration {
    Duration::from_secs(600)
}
fn default_smtp_idle() -> Duration {
    Duration::from_secs(300)
}
fn default_max_line() -> usize {
    4096
}
fn default_max_bad_commands() -> u32 {
    10
}
/// Postfix's smtpd_junk_command_limit default.
fn default_max_junk_commands() -> u32 {
    100
}
/// Postfix's SMTP client stops reusing a connection after 300 s
/// (smtp_connection_reuse_time_limit); an honest client logs in within
/// seconds.
fn default_unauthenticated_lifetime() -> Duration {
    Duration::from_secs(300)
}
fn default_auth_fail_delay() -> Duration {
    Duration::from_secs(1)
}
fn default_auth_fail_max() -> Duration {
    Duration::from_secs(15)
}
fn default_max_recipients() -> usize {
    1000
}
fn default_max_connections_per_ip() -> usize {
    50
}
fn default_reserved_fds() -> usize {
    128
}
fn default_connection_limit_exempt() -> Vec<ipnet::IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|n| n.parse().expect("valid networks"))
        .collect()
}
fn default_max_connections() -> usize {
    20_000
}
fn default_max_received() -> usize {
    50
}
fn default_connection_memory_total() -> usize {
    64 << 20
}
fn default_smtp_min_free_disk() -> u64 {
    256 << 20
}
fn default_disk_reserve() -> u64 {
    16 << 20
}
fn default_argon2_memory() -> u32 {
    19 * 1024
}
fn default_argon2_iterations() -> u32 {
    2
}
fn default_argon2_parallelism() -> u32 {
    1
}
fn default_max_hash_memory() -> u32 {
    256 * 1024
}
fn default_max_hash_iterations() -> u32 {
    16
}
fn default_credential_cache_ttl() -> Duration {
    Duration::from_secs(20 * 60)
}
fn default_credential_cache_entries() -> usize {
    2_000_000
}
fn default_proxy_header_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_store_calls() -> usize {
    32
}
fn default_store_wait() -> Duration {
    Duration::from_secs(10)
}
fn default_web_session() -> Duration {
    Duration::from_secs(3600)
}
fn default_web_max_header_bytes() -> usize {
    16 * 1024
}
fn default_web_max_connections() -> usize {
    2000
}
fn default_web_max_sessions() -> usize {
    100_000
}
fn default_web_max_sessions_per_account() -> usize {
    10
}
fn default_on_dns_error() -> OnDnsError {
    OnDnsError::Allow
}

macro_rules! default_impl {
    ($t:ty) => {
        impl Default for $t {
            fn default() -> Self {
                toml::from_str("").expect("all fields have defaults")
            }
        }
    };
}
default_impl!(DnsConfig);
default_impl!(RelayConfig);
default_impl!(OutboundConfig);
default_impl!(Limits);
default_impl!(WebConfig);
default_impl!(AuthConfig);

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
