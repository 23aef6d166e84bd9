//! The operator's queue page: a message relayed through SMTP AUTH to a
//! domain whose DNS never answers stays queued; the portal lists it, makes
//! it due again and deletes it, as `betomail queue retry|delete` do.

mod common;
use common::*;

#[test]
fn operator_lists_retries_and_deletes_queued_mail() {
    let dns = Dnsmasq::start(&[], &["remote.test"]);
    let s = TestServer::start(&dns.config(300), LISTENERS);
    s.add_user("btm0001", "secret-pw1");
    let out = s.cli(
        &["user", "add", "boss", "--admin", "--password-stdin"],
        b"boss-pass-1",
    );
    assert!(out.status.success());
    let smtpa = s.addr("smtpa");
    python(
        r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
s.ehlo("client.test")
s.login("btm0001", "secret-pw1")
s.sendmail("btm0001@be.test", ["friend@remote.test"], b"Subject: queued\r\n\r\nhello\r\n")
s.quit()
"#,
        &[&smtpa.ip().to_string(), &smtpa.port().to_string()],
    );

    let mut admin = Browser::new(s.addr("web"));
    let csrf = admin.login("boss", "boss-pass-1");
    let page = admin.get("/admin").body;
    assert!(page.contains("Queue (1)"), "{page}");
    assert!(page.contains("friend@remote.test") && page.contains("btm0001@be.test"));
    let at = page.find("name=\"id\" value=\"").unwrap() + 17;
    let id = page[at..].split('"').next().unwrap().to_string();
    let metrics = admin.get("/metrics").body;
    assert!(metrics.contains("betomail_queue_messages 1"), "{metrics}");

    let r = admin.post(
        "/admin/queue",
        &[("csrf", &csrf), ("id", &id), ("action", "retry")],
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(&format!("recipient(s) of {id} due now")),
        "{}",
        r.body
    );

    let r = admin.post(
        "/admin/queue",
        &[("csrf", &csrf), ("id", &id), ("action", "delete")],
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!("deleted {id}")));
    assert!(r.body.contains("Queue (0)"));
    let out = s.cli(&["queue", "list"], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 message(s)"));
    assert!(admin
        .get("/metrics")
        .body
        .contains("betomail_queue_messages 0"));
}
