//! SEED-8 on an SMTP listener that asks for it (off by default on SMTP):
//! a client whose reverse and forward DNS disagree is refused at connect
//! with the reason and the portal's check page; others are served.

mod common;
use common::*;

#[test]
fn fcrdns_on_an_smtp_listener() {
    let dns = Dnsmasq::start(
        &[
            "host-record=good.test,127.0.0.2",
            "ptr-record=3.0.0.127.in-addr.arpa,bad.test",
            "address=/bad.test/127.0.0.99",
        ],
        &[],
    );
    let listeners = r#"
[[listener]]
name = "mx"
protocol = "smtp"
bind = "127.0.0.1:0"
fcrdns = "refuse-mismatch"
"#;
    let s = TestServer::start(&dns.config(2000), listeners);
    let mut c = Client::connect_from("127.0.0.3", s.addr("mx"));
    assert_eq!(
        c.line(),
        "554 5.7.1 Refused: the reverse DNS name of 127.0.0.3 is bad.test, but that name does \
         not resolve back to 127.0.0.3 (forward and reverse DNS do not match). \
         See http://127.0.0.1:8080/dns-check"
    );
    assert!(c.closed());
    let mut c = Client::connect_from("127.0.0.2", s.addr("mx"));
    assert_eq!(c.line(), "220 mail.be.test ESMTP betomail");
}
