//! Permanent failures and give-ups end in one RFC 3464 DSN to the sender;
//! the null sender is never bounced.

mod common;
mod outbound_util;
use common::*;
use outbound_util::*;
use std::time::Duration;

/// A sender with the local account btm0001, which receives the DSNs.
fn sender_with_account(dns: &Dnsmasq, port: u16, outbound: &str) -> TestServer {
    let s = sender(dns, port, outbound);
    s.add_user("btm0001", "pw");
    s
}

const REPORT: &[u8] = b"From: btm0001@be.test\nSubject: my report\n\nbody\n";

fn dsns(s: &TestServer) -> Vec<String> {
    mailbox(&s.data_dir(), "btm0001")
        .into_iter()
        .map(|m| String::from_utf8(m).unwrap())
        .collect()
}

#[test]
fn a_5xx_recipient_bounces_once_and_the_others_are_delivered() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=far.test,mx.far.test,10",
            "host-record=mx.far.test,127.0.0.21",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.21", port, &["--reject", "bad@far.test"]);
    let s = sender_with_account(&dns, port, "");
    inject(
        &s,
        "btm0001@be.test",
        &["ok@far.test", "bad@far.test"],
        REPORT,
    );
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got[0].0["rcpt_tos"], serde_json::json!(["ok@far.test"]));
    assert!(wait_until(Duration::from_secs(10), || !dsns(&s).is_empty()));
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
    let d = dsns(&s);
    assert_eq!(d.len(), 1, "one DSN: {d:?}");
    let dsn = &d[0];
    for want in [
        "Return-Path: <>\r\n",
        "From: Mail Delivery System <MAILER-DAEMON@mail.be.test>\r\n",
        "To: <btm0001@be.test>\r\n",
        "report-type=delivery-status",
        "Content-Type: message/delivery-status\r\n",
        "Reporting-MTA: dns; mail.be.test\r\n",
        "Arrival-Date: ",
        "Final-Recipient: rfc822; bad@far.test\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        "Diagnostic-Code: smtp; 550 5.1.1 <bad@far.test> no such user here\r\n",
        "Content-Type: text/rfc822-headers\r\n\r\nFrom: btm0001@be.test\r\nSubject: my report\r\n",
    ] {
        assert!(dsn.contains(want), "missing {want:?} in\n{dsn}");
    }
    assert!(!dsn.contains("ok@far.test"), "{dsn}");
    assert!(
        !dsn.contains("\r\nbody\r\n"),
        "only the headers are returned"
    );
}

#[test]
fn a_host_that_stays_down_bounces_after_the_queue_lifetime() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=down.test,mx.down.test,10",
            "host-record=mx.down.test,127.0.0.22",
        ],
        &[],
    );
    let s = sender_with_account(&dns, port, "queue_lifetime = \"4s\"");
    inject(&s, "btm0001@be.test", &["a@down.test"], REPORT);
    assert!(wait_until(Duration::from_secs(20), || !dsns(&s).is_empty()));
    let d = dsns(&s);
    assert_eq!(d.len(), 1);
    assert!(
        d[0].contains(
            "Final-Recipient: rfc822; a@down.test\r\nAction: failed\r\nStatus: 4.4.7\r\n"
        ),
        "{}",
        d[0]
    );
    assert!(
        d[0].contains("127.0.0.22"),
        "the connection error is reported: {}",
        d[0]
    );
    let attempts = s.log_text().matches("delivery attempt").count();
    assert!(attempts >= 2, "retried before giving up ({attempts})");
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}

#[test]
fn a_delay_warning_is_sent_once() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=late.test,mx.late.test,10",
            "host-record=mx.late.test,127.0.0.23",
        ],
        &[],
    );
    let s = sender_with_account(&dns, port, "delay_warning = \"1s\"");
    inject(&s, "btm0001@be.test", &["a@late.test"], REPORT);
    assert!(wait_until(Duration::from_secs(15), || !dsns(&s).is_empty()));
    std::thread::sleep(Duration::from_secs(3));
    let d = dsns(&s);
    assert_eq!(d.len(), 1, "once");
    assert!(
        d[0].contains("Action: delayed\r\n") && d[0].contains("Will-Retry-Until: "),
        "{}",
        d[0]
    );
    assert!(!queue_empty(&s), "still retrying");
}

#[test]
fn null_mx_and_missing_domains_bounce_at_once() {
    let dns = Dnsmasq::start(
        // RFC 7505: one MX of preference 0 pointing to the root.
        &["dns-rr=null.test,15,000000"],
        &[],
    );
    let s = sender_with_account(&dns, free_tcp_port(), "");
    inject(
        &s,
        "btm0001@be.test",
        &["a@null.test", "b@nxdomain.test"],
        REPORT,
    );
    assert!(wait_until(Duration::from_secs(10), || !dsns(&s).is_empty()));
    let d = dsns(&s);
    assert_eq!(d.len(), 1, "one DSN for both");
    assert!(
        d[0].contains(
            "Final-Recipient: rfc822; a@null.test\r\nAction: failed\r\nStatus: 5.1.10\r\n"
        ),
        "{}",
        d[0]
    );
    assert!(
        d[0].contains(
            "Final-Recipient: rfc822; b@nxdomain.test\r\nAction: failed\r\nStatus: 5.1.2\r\n"
        ),
        "{}",
        d[0]
    );
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}

#[test]
fn the_null_sender_is_never_bounced() {
    let dns = Dnsmasq::start(&["dns-rr=null.test,15,000000"], &[]);
    let s = sender_with_account(&dns, free_tcp_port(), "");
    inject(&s, "", &["a@null.test"], REPORT);
    assert!(wait_until(Duration::from_secs(10), || queue_empty(&s)));
    assert!(s.logged("not bouncing a message with the null sender"));
    assert!(dsns(&s).is_empty());
}

#[test]
fn a_remote_sender_gets_its_dsn_through_the_queue() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "dns-rr=null.test,15,000000",
            "mx-host=remote.test,mx.remote.test,10",
            "host-record=mx.remote.test,127.0.0.24",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.24", port, &[]);
    let s = sender_with_account(&dns, port, "");
    inject(&s, "someone@remote.test", &["a@null.test"], REPORT);
    let got = sink.wait_for(1, Duration::from_secs(15));
    assert_eq!(got.len(), 1, "log:\n{}", s.log_text());
    assert_eq!(got[0].0["mail_from"], "<>", "the null sender");
    assert_eq!(
        got[0].0["rcpt_tos"],
        serde_json::json!(["someone@remote.test"])
    );
    let body = String::from_utf8_lossy(&got[0].1);
    assert!(
        body.contains("Final-Recipient: rfc822; a@null.test"),
        "{body}"
    );
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}

#[test]
fn a_message_over_the_remote_size_limit_is_not_sent_and_bounces() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=small.test,mx.small.test,10",
            "host-record=mx.small.test,127.0.0.25",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.25", port, &["--size-limit", "20"]);
    let s = sender_with_account(&dns, port, "");
    inject(&s, "btm0001@be.test", &["a@small.test"], REPORT);
    assert!(wait_until(Duration::from_secs(10), || !dsns(&s).is_empty()));
    let d = dsns(&s);
    assert!(d[0].contains("Status: 5.3.4\r\n"), "{}", d[0]);
    assert!(sink.messages().is_empty());
}

#[test]
fn a_message_whose_file_vanished_bounces_at_once_without_headers() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=far.test,mx.far.test,10",
            "host-record=mx.far.test,127.0.0.28",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.28", port, &[]);
    let mut s = sender_with_account(&dns, port, "");
    s.kill();
    let id = inject(&s, "btm0001@be.test", &["a@far.test", "b@far.test"], REPORT);
    std::fs::remove_file(s.data_dir().join("queue").join(&id)).unwrap();
    s.restart();
    // The default queue lifetime is 5 days: only failing at once ends it.
    assert!(wait_until(Duration::from_secs(10), || !dsns(&s).is_empty()));
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
    let d = dsns(&s);
    assert_eq!(d.len(), 1, "one DSN: {d:?}");
    for rcpt in ["a@far.test", "b@far.test"] {
        let want = format!("Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.3.0\r\nDiagnostic-Code: smtp; 554 5.3.0 queued message file is missing\r\n");
        assert!(d[0].contains(&want), "missing {want:?} in\n{}", d[0]);
    }
    assert!(!d[0].contains("text/rfc822-headers"), "{}", d[0]);
    assert!(
        d[0].contains("could not be read, so its headers\r\nare not included"),
        "{}",
        d[0]
    );
    assert!(sink.messages().is_empty(), "nothing was sent");
    assert!(
        wait_until(Duration::from_secs(5), || s.log_text().lines().any(|l| l
            .contains("ERROR")
            && l.contains("queued message file is missing"))),
        "{}",
        s.log_text()
    );
    let dir = s.data_dir();
    assert!(
        !s.log_text().contains(dir.to_str().unwrap()),
        "no paths in the log"
    );
}

#[test]
fn mail_routed_to_our_own_mx_listener_bounces_as_a_loop() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=loop.test,mx.loop.test,10",
            "host-record=mx.loop.test,127.0.0.1",
        ],
        &[],
    );
    let listeners =
        format!("[[listener]]\nname = \"mx\"\nprotocol = \"smtp\"\nbind = \"127.0.0.1:{port}\"\nrelay_by = []\n");
    let s = TestServer::start(
        &format!(
            "{}\n[outbound]\nmx_port = {port}\nretry_schedule = [\"1s\"]\n",
            dns.config(1000)
        ),
        &listeners,
    );
    s.add_user("btm0001", "pw");
    inject(&s, "btm0001@be.test", &["a@loop.test"], REPORT);
    assert!(wait_until(Duration::from_secs(10), || !dsns(&s).is_empty()));
    let d = dsns(&s);
    // Connecting would have got our own relay refusal (5.7.1) instead.
    assert!(
        d[0].contains("Final-Recipient: rfc822; a@loop.test\r\nAction: failed\r\nStatus: 5.4.6\r\nDiagnostic-Code: smtp; 554 5.4.6 mail for loop.test loops back to myself\r\n"),
        "{}",
        d[0]
    );
    assert!(s.logged("route to ourselves"));
    assert!(wait_until(Duration::from_secs(5), || queue_empty(&s)));
}

#[test]
fn an_mx_named_like_us_ends_the_route_there() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            // We are the best MX of named.test: its worse MX must not be used.
            "mx-host=named.test,mail.be.test,10",
            "mx-host=named.test,mx2.named.test,20",
            // We are the backup MX of backup.test: only its better MX counts.
            "mx-host=backup.test,mx1.backup.test,10",
            "mx-host=backup.test,mail.be.test,20",
            "host-record=mail.be.test,127.0.0.29",
            "host-record=mx2.named.test,127.0.0.30",
            "host-record=mx1.backup.test,127.0.0.35",
        ],
        &[],
    );
    let us = SmtpSink::start("127.0.0.29", port, &[]);
    let worse = SmtpSink::start("127.0.0.30", port, &[]);
    let s = sender_with_account(&dns, port, "");
    let id = inject(
        &s,
        "btm0001@be.test",
        &["a@named.test", "b@backup.test"],
        REPORT,
    );
    assert!(wait_until(Duration::from_secs(10), || !dsns(&s).is_empty()));
    let d = dsns(&s);
    assert!(
        d[0].contains(
            "Final-Recipient: rfc822; a@named.test\r\nAction: failed\r\nStatus: 5.4.6\r\n"
        ),
        "{}",
        d[0]
    );
    assert!(!d[0].contains("b@backup.test"), "{}", d[0]);
    // The better MX of backup.test is down: retried, not bounced.
    let retried = wait_until(Duration::from_secs(5), || {
        let out = s.cli(&["queue", "show", &id], b"");
        let show = String::from_utf8_lossy(&out.stdout).to_string();
        show.lines()
            .any(|l| l.contains("b@backup.test\tpending") && l.contains("127.0.0.35"))
    });
    assert!(retried, "log:\n{}", s.log_text());
    assert!(us.messages().is_empty() && worse.messages().is_empty());
}
