//! `betomail check-dns` against a real DNS server on loopback (SEED-8):
//! each kind of client host gets its verdict.

mod common;
use common::*;

fn check(dns: &Dnsmasq, ip: &str, timeout_ms: u64) -> serde_json::Value {
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
    let out = cli_with_config(&cfg, &["check-dns", ip, "--json"], b"");
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
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("b.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\n{}\n{}",
            dir.path().join("d"),
            dns.config(2000),
            LISTENERS
        ),
    )
    .unwrap();
    let out = cli_with_config(&cfg, &["check-dns", "127.0.0.3"], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict:  mismatch"), "{text}");
    assert!(text.contains("listener pop: REFUSED"), "{text}");
}
