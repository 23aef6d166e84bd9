//! Outbound delivery end to end: a betomail `serve` delivers its queue via
//! a real DNS server (dnsmasq) to foreign SMTP servers (aiosmtpd) on
//! 127.0.0.x, all sharing one port per test (`[outbound] mx_port`).

mod common;
mod outbound_util;
use common::*;
use outbound_util::*;
use std::time::Duration;

const MSG: &[u8] = b"From: u@be.test\nTo: a@far.test\nSubject: hello\n\n.leading dot\n..two dots\n\xe6\x97\xa5\xe6\x9c\xac 8-bit\nlast line\n";

fn crlf(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &c in b {
        if c == b'\n' {
            out.push(b'\r');
        }
        out.push(c);
    }
    out
}

#[test]
fn delivers_byte_exact_via_mx_with_one_transaction_per_domain() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=far.test,mx.far.test,10",
            "host-record=mx.far.test,127.0.0.11",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.11", port, &[]);
    let s = sender(&dns, port, "");
    inject(&s, "u@be.test", &["a@far.test", "b@FAR.test"], MSG);
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    let (env, body) = &got[0];
    assert_eq!(body, &crlf(MSG));
    assert_eq!(env["mail_from"], "u@be.test");
    // Paths go out as the address grammar prints them: domains lower-case
    // (RFC 5321 2.4: case-insensitive), local parts as given.
    assert_eq!(
        env["rcpt_tos"],
        serde_json::json!(["a@far.test", "b@far.test"])
    );
    let opts = env["mail_options"].to_string();
    assert!(
        opts.contains("SIZE=") && opts.contains("BODY=8BITMIME"),
        "{opts}"
    );
    assert_eq!(env["helo"], "mail.be.test");
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.messages().len(), 1, "sent once");
}

#[test]
fn tempfail_is_retried_then_delivered() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=slow.test,mx.slow.test,10",
            "host-record=mx.slow.test,127.0.0.12",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.12", port, &["--tempfail", "1"]);
    let s = sender(&dns, port, "");
    let id = inject(&s, "u@be.test", &["a@slow.test"], MSG);
    // The first attempt gets 451 and is recorded with its reply.
    assert!(wait_until(Duration::from_secs(10), || {
        let out = s.cli(&["queue", "show", &id], b"");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.contains("451 4.3.0 please try again later") || !out.status.success()
    }));
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    assert_eq!(got[0].1, crlf(MSG));
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}

#[test]
fn falls_back_to_the_second_mx_when_the_first_is_down() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=two.test,mx1.two.test,10",
            "mx-host=two.test,mx2.two.test,20",
            "host-record=mx1.two.test,127.0.0.13",
            "host-record=mx2.two.test,127.0.0.14",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.14", port, &[]);
    let s = sender(&dns, port, "");
    inject(&s, "u@be.test", &["a@two.test"], MSG);
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    assert!(s.logged("127.0.0.13"), "first MX was tried");
}

#[test]
fn no_mx_falls_back_to_the_address_record() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(&["host-record=plain.test,127.0.0.15"], &[]);
    let sink = SmtpSink::start("127.0.0.15", port, &[]);
    let s = sender(&dns, port, "");
    inject(&s, "u@be.test", &["a@plain.test"], MSG);
    assert_eq!(sink.wait_for(1, Duration::from_secs(15)).len(), 1);
}

#[test]
fn opportunistic_starttls_accepts_a_self_signed_certificate() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=tls.test,mx.tls.test,10",
            "host-record=mx.tls.test,127.0.0.16",
        ],
        &[],
    );
    let certdir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["sink.test".into()]).unwrap();
    let (cp, kp) = (certdir.path().join("c.pem"), certdir.path().join("k.pem"));
    std::fs::write(&cp, cert.cert.pem()).unwrap();
    std::fs::write(&kp, cert.key_pair.serialize_pem()).unwrap();
    let sink = SmtpSink::start(
        "127.0.0.16",
        port,
        &[
            "--tls-cert",
            cp.to_str().unwrap(),
            "--tls-key",
            kp.to_str().unwrap(),
        ],
    );
    // The default is opportunistic.
    let s = sender(&dns, port, "");
    inject(&s, "u@be.test", &["a@tls.test"], MSG);
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    assert_eq!(got[0].0["tls"], true);
    assert_eq!(got[0].1, crlf(MSG));
}

#[test]
fn required_tls_does_not_send_in_plaintext() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=notls.test,mx.notls.test,10",
            "host-record=mx.notls.test,127.0.0.17",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.17", port, &[]);
    let s = sender(&dns, port, "tls = \"required\"");
    let id = inject(&s, "u@be.test", &["a@notls.test"], MSG);
    assert!(wait_until(Duration::from_secs(10), || {
        let out = s.cli(&["queue", "show", &id], b"");
        String::from_utf8_lossy(&out.stdout).contains("4.7.4")
    }));
    assert!(sink.messages().is_empty());
}

#[test]
fn smarthost_overrides_mx_routing() {
    let port = free_tcp_port();
    // nowhere.test has no DNS at all: only the smarthost can take it.
    let dns = Dnsmasq::start(&[], &[]);
    let sink = SmtpSink::start("127.0.0.18", port, &[]);
    let s = sender(&dns, port, &format!("smarthost = \"127.0.0.18:{port}\""));
    inject(&s, "u@be.test", &["a@nowhere.test"], MSG);
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    assert_eq!(got[0].0["rcpt_tos"], serde_json::json!(["a@nowhere.test"]));
}

#[test]
fn local_recipients_in_the_queue_are_delivered_locally() {
    let dns = Dnsmasq::start(&[], &[]);
    let s = sender(&dns, free_tcp_port(), "");
    s.add_user("btm0001", "pw");
    inject(&s, "x@far.test", &["btm0001@be.test"], MSG);
    assert!(wait_until(Duration::from_secs(10), || !mailbox(
        &s.data_dir(),
        "btm0001"
    )
    .is_empty()));
    let mb = mailbox(&s.data_dir(), "btm0001");
    let mut expected = b"Return-Path: <x@far.test>\r\n".to_vec();
    expected.extend_from_slice(&crlf(MSG));
    assert_eq!(mb, vec![expected]);
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}

#[test]
fn queue_stats_counts_by_state() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=down.test,mx.down.test,10",
            "host-record=mx.down.test,127.0.0.19",
        ],
        &[],
    );
    let s = sender(&dns, port, "");
    inject(&s, "u@be.test", &["a@down.test", "b@down.test"], MSG);
    let out = s.cli(&["queue", "stats", "--json"], b"");
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(st["messages"], 1);
    assert_eq!(st["pending"], 2);
    assert!(st["oldest_age_seconds"].as_u64().unwrap() < 60);
}

#[test]
fn a_silent_server_times_out_and_the_next_mx_takes_the_message() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=mute.test,mx1.mute.test,10",
            "mx-host=mute.test,mx2.mute.test,20",
            "host-record=mx1.mute.test,127.0.0.26",
            "host-record=mx2.mute.test,127.0.0.27",
        ],
        &[],
    );
    // Accepts connections and never says a word (no 220 greeting).
    let mute = std::net::TcpListener::bind(("127.0.0.26", port)).unwrap();
    let held = std::thread::spawn(move || {
        let conns: Vec<_> = mute.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(8));
        drop(conns);
    });
    let sink = SmtpSink::start("127.0.0.27", port, &[]);
    let s = sender(&dns, port, "command_timeout = \"2s\"");
    inject(&s, "u@be.test", &["a@mute.test"], MSG);
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    assert!(s.logged("timed out"), "the first MX timed out");
    held.join().unwrap();
}
