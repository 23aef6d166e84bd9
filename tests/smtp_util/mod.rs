//! Shared pieces of the SMTP end-to-end tests: the listener set (FCrDNS off
//! so no DNS is needed), a server with two accounts, and helpers that drive
//! Python's smtplib and poplib.
#![allow(dead_code)] // each test file uses a different part

use crate::common::*;
use std::net::SocketAddr;

pub const SMTP_LISTENERS: &str = r#"
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:0"
plaintext_auth = true
grants_relay = true
fcrdns = "off"

[[listener]]
name = "pop2"
protocol = "pop3"
bind = "127.0.0.1:0"
plaintext_auth = true
fcrdns = "off"

[[listener]]
name = "mx"
protocol = "smtp"
bind = "127.0.0.1:0"
relay_by = []

[[listener]]
name = "smtp"
protocol = "smtp"
bind = "127.0.0.1:0"
relay_by = ["pop-before-smtp"]

[[listener]]
name = "smtpa"
protocol = "smtp"
bind = "127.0.0.1:0"
relay_by = ["auth"]
plaintext_auth = true

[[listener]]
name = "submission"
protocol = "smtp"
bind = "127.0.0.1:0"
relay_by = ["auth"]
require_auth = true
"#;

/// Outbound mail goes to a port where nothing listens and is retried
/// hourly, so queued messages stay put while a test looks at them.
pub const HOLD_QUEUE: &str = "[outbound]\nsmarthost = \"127.0.0.1:9\"\nretry_schedule = [\"1h\"]\n";

/// A server with `btm0001` (password `pass1`) and `btm0002` (`pass2`).
pub fn server(head: &str) -> TestServer {
    let s = TestServer::start(&format!("{head}\n{HOLD_QUEUE}"), SMTP_LISTENERS);
    s.add_user("btm0001", "pass1");
    s.add_user("btm0002", "pass2");
    s
}

/// Every message in a mailbox through POP3 (poplib), as stored octets.
pub fn pop_messages(addr: SocketAddr, user: &str, pass: &str) -> Vec<Vec<u8>> {
    let out = python(
        r#"
import poplib, sys, binascii
poplib._MAXLINE = 1 << 20
p = poplib.POP3(sys.argv[1], int(sys.argv[2]), timeout=30)
p.user(sys.argv[3]); p.pass_(sys.argv[4])
n = len(p.list()[1])
for i in range(1, n + 1):
    lines = p.retr(i)[1]
    print(binascii.hexlify(b"".join(l + b"\r\n" for l in lines)).decode())
p.quit()
"#,
        &[&addr.ip().to_string(), &addr.port().to_string(), user, pass],
    );
    out.lines()
        .map(|l| hex::decode(l.trim()).unwrap())
        .collect()
}

/// A POP3 login with poplib from `source` (another loopback client host).
pub fn pop_login_from(source: &str, addr: SocketAddr, user: &str, pass: &str) {
    python(
        r#"
import poplib, socket, sys
orig = socket.create_connection
socket.create_connection = lambda a, t=None, s=None: orig(a, t, (sys.argv[1], 0))
p = poplib.POP3(sys.argv[2], int(sys.argv[3]), timeout=30)
p.user(sys.argv[4]); p.pass_(sys.argv[5]); p.quit()
"#,
        &[
            source,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            user,
            pass,
        ],
    );
}

/// smtplib from `source`: EHLO, MAIL, RCPT, DATA of a short message.
/// Prints the reply to RCPT and to DATA ("code text").
pub fn smtplib_send_from(source: &str, addr: SocketAddr, from: &str, to: &str) -> String {
    python(
        r#"
import smtplib, sys
s = smtplib.SMTP(sys.argv[2], int(sys.argv[3]), source_address=(sys.argv[1], 0), timeout=30)
s.ehlo("client.test")
s.mail(sys.argv[4])
code, msg = s.rcpt(sys.argv[5])
print(code, msg.decode())
if code == 250:
    code, msg = s.data(b"Subject: pbs\r\n\r\nhello\r\n")
    print(code, msg.decode())
s.quit()
"#,
        &[
            source,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            from,
            to,
        ],
    )
}

/// Reads one SMTP reply and returns its last line.
pub fn reply(c: &mut Client) -> String {
    c.smtp_reply().pop().unwrap_or_default()
}

/// Connects, reads the greeting and sends EHLO.
pub fn ehlo(to: SocketAddr) -> Client {
    let mut c = Client::connect(to);
    assert!(c.line().starts_with("220 "));
    c.send("EHLO client.test\r\n");
    let lines = c.smtp_reply();
    assert!(lines.last().unwrap().starts_with("250 "), "{lines:?}");
    c
}

/// Queue ids (first column of `queue list`).
pub fn queue_ids(s: &TestServer) -> Vec<String> {
    let out = s.cli(&["queue", "list"], b"");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains('\t'))
        .map(|l| l.split('\t').next().unwrap().to_string())
        .collect()
}
