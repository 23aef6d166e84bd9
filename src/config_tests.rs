//! Unit tests of config parsing and validation.

use super::*;

#[test]
fn embedded_default_parses() {
    let c = Config::embedded_default();
    assert_eq!(c.listeners.len(), 7);
    assert_eq!(c.limits.pop3_idle_timeout, Duration::from_secs(600));
    assert_eq!(
        c.limits.unauthenticated_session_lifetime,
        Duration::from_secs(300)
    );
    assert_eq!(c.limits.max_junk_commands, 100);
    assert_eq!(
        c.listener("pop").unwrap().fcrdns_mode(),
        FcrdnsMode::RefuseMismatch
    );
    assert_eq!(c.listener("mx").unwrap().fcrdns_mode(), FcrdnsMode::Off);
}

/// `connection_memory_total` took over from `smtp_memory_spool_total`, which
/// older files still use.
#[test]
fn connection_memory_total_keeps_its_old_name() {
    let c = Config::parse("[limits]\nsmtp_memory_spool_total = 5\n").unwrap();
    assert_eq!(c.limits.connection_memory_total, 5);
    let c = Config::parse("[limits]\nconnection_memory_total = 6\n").unwrap();
    assert_eq!(c.limits.connection_memory_total, 6);
    assert_eq!(Limits::default().connection_memory_total, 64 << 20);
}

#[test]
fn spec_example_parses() {
    let text = r#"
hostname = "mail.be.test"
data_dir = "/var/lib/betomail"
local_domains = ["be.test"]
portal_url = "http://127.0.0.1:8080"
[dns]
nameservers = ["127.0.0.1:5353"]
timeout_ms = 2000
[tls]
cert = "/etc/betomail/cert.pem"
key = "/etc/betomail/key.pem"
[relay]
pop_before_smtp_seconds = 600
[outbound]
mx_port = 25
retry_schedule = ["5m", "15m", "30m", "1h", "2h"]
queue_lifetime = "5d"
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:1110"
tls = "starttls"
plaintext_auth = true
fcrdns = "refuse-mismatch"
grants_relay = true
[[listener]]
name = "smtp"
protocol = "smtp"
bind = "127.0.0.1:1026"
relay_by = ["pop-before-smtp"]
"#;
    let c = Config::parse(text).unwrap();
    assert_eq!(c.outbound.retry_schedule[3], Duration::from_secs(3600));
    assert_eq!(c.outbound.queue_lifetime, Duration::from_secs(5 * 86400));
    assert_eq!(c.dns.nameservers[0].port(), 5353);
    assert_eq!(c.listeners[1].relay_by, vec![RelayBy::PopBeforeSmtp]);
}

#[test]
fn errors_name_the_key() {
    let e = Config::parse(
        "[[listener]]\nname='a'\nprotocol='pop3'\nbind='127.0.0.1:1'\nfcrdns='maybe'\n",
    )
    .unwrap_err();
    assert_eq!(e.key, "listener[0].fcrdns");
    assert!(e.reason.contains("maybe"), "{e}");

    let e = Config::parse("[outbound]\nqueue_lifetime = 'soon'\n").unwrap_err();
    assert_eq!(e.key, "outbound.queue_lifetime");

    let e = Config::parse("bogus = 1\n").unwrap_err();
    assert!(e.reason.contains("bogus"), "{e}");

    let e = Config::parse("[[listener]]\nname='a'\nprotocol='pop3'\n").unwrap_err();
    assert!(e.reason.contains("bind"), "{e}");

    let e = Config::parse("[[listener]]\nname='a'\nprotocol='pop3'\nbind='nope'\n").unwrap_err();
    assert_eq!(e.key, "listener[0].bind");

    let two = "[[listener]]\nname='a'\nprotocol='pop3'\nbind='127.0.0.1:1'\n\
               [[listener]]\nname='a'\nprotocol='smtp'\nbind='127.0.0.1:2'\n";
    let e = Config::parse(two).unwrap_err();
    assert_eq!(e.key, "listener[1].name");

    let e = Config::parse("local_domains = []\n").unwrap_err();
    assert_eq!(e.key, "local_domains");
}

/// Values that parse but would panic or exhaust memory at run time (a
/// semaphore too large, `now + lifetime` overflowing the clock) are refused
/// at load, with the key named.
#[test]
fn out_of_range_values_are_refused() {
    let listener = "[[listener]]\nname='p'\nprotocol='pop3'\nbind='127.0.0.1:0'\n";
    let cases = [
        (
            "[limits]\nmax_connections = 9223372036854775807\n",
            "limits.max_connections",
        ),
        (
            "[limits]\nmax_line_length = 9223372036854775807\n",
            "limits.max_line_length",
        ),
        (
            "[limits]\nmax_line_length = 100\n",
            "limits.max_line_length",
        ),
        ("[limits]\nreserved_fds = 3\n", "limits.reserved_fds"),
        (
            "[outbound]\nmax_connections = 0\n",
            "outbound.max_connections",
        ),
        (
            "[limits]\nunauthenticated_session_lifetime = '0s'\n",
            "limits.unauthenticated_session_lifetime",
        ),
        (
            "[limits]\nmax_junk_commands = 0\n",
            "limits.max_junk_commands",
        ),
        (
            "[outbound]\nmax_per_destination = 0\n",
            "outbound.max_per_destination",
        ),
        (
            "[relay]\npop_before_smtp_seconds = 9223372036854775807\n",
            "relay.pop_before_smtp_seconds",
        ),
        (
            "[web]\nsession_lifetime = '400000000000y'\n",
            "web.session_lifetime",
        ),
        ("[web]\nmax_sessions = 0\n", "web.max_sessions"),
        ("[web]\nmax_header_bytes = 4096\n", "web.max_header_bytes"),
        ("[web]\nmax_connections = 0\n", "web.max_connections"),
        (
            "[web]\nmax_sessions_per_account = 0\n",
            "web.max_sessions_per_account",
        ),
        (
            "[web]\nmax_sessions_per_account = 1001\n",
            "web.max_sessions_per_account",
        ),
        (
            "[outbound]\nqueue_lifetime = '200y'\n",
            "outbound.queue_lifetime",
        ),
        (
            "[outbound]\nretry_schedule = ['1m', '200y']\n",
            "outbound.retry_schedule",
        ),
        (
            "[dns]\ntimeout_ms = 9223372036854775807\n",
            "dns.timeout_ms",
        ),
        ("[dns]\ntimeout_ms = 0\n", "dns.timeout_ms"),
        ("portal_url = \"http://x/\\r\\n+OK\"\n", "portal_url"),
        ("portal_url = \"javascript:alert(1)\"\n", "portal_url"),
    ];
    for (text, key) in cases {
        let e = Config::parse(&format!("{text}{listener}")).unwrap_err();
        assert!(e.key.starts_with(key), "{text}: {e}");
    }
    // Odd but valid: no listeners, port 0, IPv6 binds, long lifetimes.
    let c = Config::parse(
        "[web]\nsession_lifetime = '10y'\n[[listener]]\nname='p'\nprotocol='pop3'\nbind='[::1]:0'\n\
         [[listener]]\nname='q'\nprotocol='pop3'\nbind='[::1]:0'\n",
    )
    .unwrap();
    assert_eq!(c.listeners.len(), 2);
    assert!(Config::parse("").unwrap().listeners.is_empty());
}

#[test]
fn hash_policy_defaults_and_bad_values_name_the_key() {
    let c = Config::embedded_default();
    assert_eq!(c.auth.policy(), crate::auth::HashPolicy::default());
    assert_eq!(c.auth.policy().memory_kib, 19 * 1024);
    assert!(c.auth.credential_cache_ttl >= Duration::from_secs(15 * 60));
    assert!(c.auth.credential_cache_entries >= 1_000_000);
    assert_eq!(c.auth.queue(), 32 * c.auth.workers());
    let key = |text: &str| Config::parse(text).unwrap_err().key;
    assert_eq!(
        key("[auth]\nargon2_iterations = 0"),
        "auth.argon2_iterations"
    );
    assert_eq!(
        key("[auth]\nargon2_memory_kib = 5000000"),
        "auth.argon2_memory_kib"
    );
    // Valid alone, but argon2 needs 8 KiB per lane.
    assert_eq!(
        key("[auth]\nargon2_memory_kib = 16\nargon2_parallelism = 4"),
        "auth.argon2_memory_kib"
    );
    assert_eq!(
        key("[auth]\nargon2_memory_kib = 65536\nmax_hash_memory_kib = 32768"),
        "auth.max_hash_memory_kib"
    );
    assert_eq!(
        key("[auth]\nargon2_iterations = 4\nmax_hash_iterations = 3"),
        "auth.max_hash_iterations"
    );
    assert_eq!(
        key("[auth]\nmax_hash_iterations = 65"),
        "auth.max_hash_iterations"
    );
    assert_eq!(
        key("[auth]\ncredential_cache_ttl = \"30d\""),
        "auth.credential_cache_ttl"
    );
    assert_eq!(key("[limits]\nstore_calls = 0"), "limits.store_calls");
}

#[test]
fn disk_limits_default_and_the_reserve_fits_under_the_minimum() {
    let c = Config::embedded_default();
    assert_eq!(c.limits.smtp_min_free_disk, 256 << 20);
    assert_eq!(c.limits.disk_reserve, 16 << 20);
    let e = Config::parse("[limits]\nsmtp_min_free_disk = 1000\ndisk_reserve = 1001").unwrap_err();
    assert_eq!(e.key, "limits.disk_reserve");
    let c = Config::parse("[limits]\nsmtp_min_free_disk = 0\ndisk_reserve = 0").unwrap();
    assert_eq!(c.limits.smtp_min_free_disk, 0);
}

#[test]
fn proxy_protocol_needs_its_trusted_balancers() {
    let listener =
        "[[listener]]\nname='pop'\nprotocol='pop3'\nbind='127.0.0.1:0'\nproxy_protocol=true\n";
    let e = Config::parse(listener).unwrap_err();
    assert_eq!(e.key, "listener[0].proxy_trusted");
    let c = Config::parse(&format!("{listener}proxy_trusted=['10.0.0.0/8']\n")).unwrap();
    assert!(c.listeners[0].proxy_protocol);
    assert_eq!(c.limits.proxy_header_timeout, Duration::from_secs(5));
}
