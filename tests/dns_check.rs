//! `betomail check-dns` against a real DNS server on loopback (SEED-8):
//! each kind of client host gets its verdict.

mod common;
use common::*;

/// Runs `betomail check-dns ARGS` with a config that uses `dns`.
fn check_dns(dns: &Dnsmasq, timeout_ms: u64, args: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n{}\n{}",
            dir.path().join("data"),
            dns.config(timeout_ms),
            LISTENERS
        ),
    )
    .unwrap();
    let mut full = vec!["check-dns"];
    full.extend_from_slice(args);
    cli_with_config(&cfg, &full, b"")
}

fn check(dns: &Dnsmasq, ip: &str, timeout_ms: u64) -> serde_json::Value {
    let out = check_dns(dns, timeout_ms, &[ip, "--json"]);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn verdicts_for_each_kind_of_host() {
    let dns = Dnsmasq::start(FCRDNS_RECORDS, &[TIMEOUT_ZONE]);

    let v = check(&dns, "127.0.0.2", 2000);
    assert_eq!(v["verdict"], "pass", "{v}");
    assert_eq!(v["ptr"][0], "good.test");
    assert_eq!(v["forward"]["good.test"][0], "127.0.0.2");
    assert_eq!(v["refused"], false);

    let v = check(&dns, "127.0.0.3", 2000);
    assert_eq!(v["verdict"], "mismatch", "{v}");
    assert_eq!(v["refused"], true);
    assert_eq!(v["forward"]["bad.test"][0], "127.0.0.99");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.contains("127.0.0.3") && reason.contains("bad.test"),
        "{reason}"
    );

    let v = check(&dns, "127.0.0.4", 2000);
    assert_eq!(v["verdict"], "no-forward", "{v}");
    assert_eq!(v["refused"], true);

    let v = check(&dns, "127.0.0.5", 2000);
    assert_eq!(v["verdict"], "no-ptr", "{v}");
    assert_eq!(v["refused"], false);

    let v = check(&dns, "127.0.0.6", 2000);
    assert_eq!(v["verdict"], "pass", "{v}");

    // A server that never answers: temporary, and let in by default.
    let v = check(&dns, "127.0.0.9", 300);
    assert_eq!(v["verdict"], "temperror", "{v}");
    assert_eq!(v["refused"], false);

    // IPv4-mapped IPv6 is checked as IPv4.
    let v = check(&dns, "::ffff:127.0.0.3", 2000);
    assert_eq!(v["verdict"], "mismatch", "{v}");
    assert_eq!(v["ip"], "127.0.0.3");
}

#[test]
fn text_output_names_listeners() {
    let dns = Dnsmasq::start(FCRDNS_RECORDS, &[]);
    let out = check_dns(&dns, 2000, &["127.0.0.3"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict:  mismatch"), "{text}");
    assert!(text.contains("listener pop: REFUSED"), "{text}");
}

/// An internationalized PTR name (xn--) is looked up as received, and shown
/// in its ASCII form: it once failed its forward lookup (refused as
/// "no-forward") and put non-ASCII text into POP3 refusals.
#[test]
fn idn_ptr_names_are_checked_and_shown_as_ascii() {
    let dns = Dnsmasq::start(
        &[
            "ptr-record=7.0.0.127.in-addr.arpa,xn--bcher-kva.test",
            "host-record=xn--bcher-kva.test,127.0.0.7",
            "ptr-record=8.0.0.127.in-addr.arpa,xn--mnchen-3ya.test",
            "address=/xn--mnchen-3ya.test/127.0.0.98",
        ],
        &[],
    );
    let v = check(&dns, "127.0.0.7", 2000);
    assert_eq!(v["verdict"], "pass", "{v}");
    assert_eq!(v["ptr"][0], "xn--bcher-kva.test");
    let v = check(&dns, "127.0.0.8", 2000);
    assert_eq!(v["verdict"], "mismatch", "{v}");
    let reason = v["reason"].as_str().unwrap();
    assert!(
        reason.is_ascii() && reason.contains("xn--mnchen-3ya.test"),
        "{reason}"
    );
}
