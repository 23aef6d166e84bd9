//! End to end: a user authenticates to the submission listener (smtpa) and
//! sends to a local and two remote recipients, one of which the remote
//! server refuses. The local copy and the DSN are read over POP3; the remote
//! copies arrive byte-exactly at a foreign server (aiosmtpd) and at a second
//! betomail instance, found through MX records served by dnsmasq.

mod common;
mod smtp_util;
use common::*;
use smtp_util::*;
use std::time::Duration;

const MSG: &[u8] = b"From: btm0001@be.test\r\nTo: many\r\nSubject: end to end\r\n\r\n.a line with a leading dot\r\nbye\r\n";

fn receiver_listener(port: u16) -> String {
    format!(
        "[[listener]]\nname = \"mx\"\nprotocol = \"smtp\"\nbind = \"127.0.0.42:{port}\"\nrelay_by = []\n\n\
         [[listener]]\nname = \"pop\"\nprotocol = \"pop3\"\nbind = \"127.0.0.1:0\"\nplaintext_auth = true\nfcrdns = \"off\"\n"
    )
}

#[test]
fn submission_to_local_and_remote_recipients_with_a_bounce() {
    let port = free_tcp_port();
    let dns = Dnsmasq::start(
        &[
            "mx-host=far.test,mx.far.test,10",
            "host-record=mx.far.test,127.0.0.41",
            "mx-host=other.test,mx.other.test,10",
            "host-record=mx.other.test,127.0.0.42",
        ],
        &[],
    );
    let sink = SmtpSink::start("127.0.0.41", port, &["--reject", "bad@far.test"]);
    let receiver = TestServer::start(
        "hostname = \"mx.other.test\"\nlocal_domains = [\"other.test\"]\n",
        &receiver_listener(port),
    );
    receiver.add_user("rcv", "rpass");

    let sender = TestServer::start(
        &format!(
            "{}\n[outbound]\nmx_port = {port}\nretry_schedule = [\"1s\"]\n",
            dns.config(1000)
        ),
        SMTP_LISTENERS,
    );
    sender.add_user("btm0001", "pass1");
    sender.add_user("btm0002", "pass2");

    let smtpa = sender.addr("smtpa");
    let out = python(
        r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
s.ehlo("client.test")
s.login("btm0001", "pass1")
refused = s.sendmail("btm0001@be.test",
    ["btm0002@be.test", "ok@far.test", "rcv@other.test", "bad@far.test"],
    bytes.fromhex(sys.argv[3]))
print("refused", refused)
s.quit()
"#,
        &[
            &smtpa.ip().to_string(),
            &smtpa.port().to_string(),
            &hex::encode(MSG),
        ],
    );
    assert!(out.contains("refused {}"), "{out}");

    // The local copy, over POP3.
    let local = pop_messages(sender.addr("pop"), "btm0002", "pass2");
    assert_eq!(local.len(), 1);
    assert!(local[0].ends_with(MSG));

    // The foreign server got exactly what was queued: our Received, then the message.
    let got = sink.wait_for(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1, "log:\n{}", sender.log_text());
    assert_eq!(got[0].0["rcpt_tos"], serde_json::json!(["ok@far.test"]));
    assert!(got[0].1.starts_with(b"Received: "));
    assert!(got[0].1.ends_with(MSG));
    let queued_prefix = got[0].1[..got[0].1.len() - MSG.len()].to_vec();

    // The second betomail instance stored the same octets behind its own headers.
    assert!(
        wait_until(Duration::from_secs(20), || {
            !pop_messages(receiver.addr("pop"), "rcv", "rpass").is_empty()
        }),
        "log:\n{}",
        sender.log_text()
    );
    let remote = pop_messages(receiver.addr("pop"), "rcv", "rpass");
    assert_eq!(remote.len(), 1);
    let mut tail = queued_prefix.clone();
    tail.extend_from_slice(MSG);
    assert!(
        remote[0].ends_with(&tail),
        "{}",
        String::from_utf8_lossy(&remote[0])
    );

    // The refused recipient comes back as one DSN, readable over POP3.
    assert!(wait_until(Duration::from_secs(20), || {
        !pop_messages(sender.addr("pop"), "btm0001", "pass1").is_empty()
    }));
    let dsn = pop_messages(sender.addr("pop"), "btm0001", "pass1");
    assert_eq!(dsn.len(), 1);
    let dsn = String::from_utf8_lossy(&dsn[0]);
    assert!(
        dsn.contains(
            "Final-Recipient: rfc822; bad@far.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{dsn}"
    );
    assert!(
        dsn.contains("Diagnostic-Code: smtp; 550 5.1.1 <bad@far.test> no such user here"),
        "{dsn}"
    );
    assert!(dsn.contains("Subject: end to end\r\n"), "{dsn}");
    assert!(
        !dsn.contains("rcv@other.test") && !dsn.contains("ok@far.test"),
        "{dsn}"
    );
    assert!(wait_until(Duration::from_secs(5), || queue_ids(&sender).is_empty()));
}
