//! Real POP3 clients fetch mail delivered with `betomail deliver`: Python's
//! poplib (plain, STLS, implicit TLS) and fetchmail; a 20 MB message with
//! dot-led lines round-trips byte-exactly.

mod common;
use base64::Engine;
use common::*;
use std::process::Command;

/// Fetches message 1 with poplib and compares it to the stored file, then
/// deletes it; `mode` is plain, stls or ssl.
const POPLIB: &str = r#"
import poplib, ssl, sys
host, port, user, pw, mode, stored = sys.argv[1:7]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
if mode == "ssl":
    p = poplib.POP3_SSL(host, int(port), context=ctx)
else:
    p = poplib.POP3(host, int(port))
    if mode == "stls":
        assert "STLS" in p.capa(), p.capa()
        p.stls(context=ctx)
p.user(user); p.pass_(pw)
count, size = p.stat()
want = open(stored, "rb").read()
assert count == 1 and size == len(want), (count, size, len(want))
resp, lines, octets = p.retr(1)
got = b"\r\n".join(lines) + b"\r\n"
assert got == want, "content differs"
p.dele(1)
print(p.quit().decode())
"#;

fn dotted_message(to: &str) -> Vec<u8> {
    format!(
        "From: sender@be.test\nTo: {to}\nSubject: dots\n\n.a line with a leading dot\n..two\n.\n\nend\n"
    )
    .into_bytes()
}

fn poplib_round_trip(s: &TestServer, listener: &str, mode: &str) {
    s.deliver("btm0001", &dotted_message("btm0001@be.test"));
    let stored = mailbox(&s.data_dir(), "btm0001");
    assert_eq!(stored.len(), 1);
    // The script compares with a file: a copy of what the store holds.
    let want = s.dir.path().join("stored.eml");
    std::fs::write(&want, &stored[0]).unwrap();
    let out = python(
        POPLIB,
        &[
            "127.0.0.1",
            &s.port(listener).to_string(),
            "btm0001@be.test",
            "pw",
            mode,
            want.to_str().unwrap(),
        ],
    );
    assert!(out.contains("+OK"), "{out}");
    assert!(
        mailbox(&s.data_dir(), "btm0001").is_empty(),
        "DELE+QUIT deleted it"
    );
}

#[test]
fn poplib_plain_stls_and_implicit_tls() {
    let (s, _dns) = pop_server("btm0001", "pw");
    poplib_round_trip(&s, "pop", "plain");
    poplib_round_trip(&s, "pop2", "stls");
    poplib_round_trip(&s, "pop3s", "ssl");
}

/// A deterministic 20 MB multipart message: a text part with dot-led lines
/// and a base64 attachment.
fn big_message() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..15 * 1024 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let mut m = String::from(
        "From: a@be.test\nTo: btm0001@be.test\nSubject: big\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\n\
         .first\n..second\n.\n--b\nContent-Type: application/octet-stream\n\
         Content-Transfer-Encoding: base64\n\n",
    );
    for line in b64.as_bytes().chunks(76) {
        m.push_str(std::str::from_utf8(line).unwrap());
        m.push('\n');
    }
    m.push_str("--b--\n");
    m.into_bytes()
}

#[test]
fn twenty_megabytes_round_trip_byte_exactly() {
    let (s, _dns) = pop_server("btm0001", "pw");
    let message = big_message();
    assert!(message.len() > 20 * 1024 * 1024);
    s.deliver("btm0001", &message);
    let stored = mailbox(&s.data_dir(), "btm0001").remove(0);
    // What deliver stored is the message with CRLF line ends.
    let crlf: Vec<u8> = message
        .split(|&b| b == b'\n')
        .take(message.split(|&b| b == b'\n').count() - 1)
        .flat_map(|l| l.iter().copied().chain(*b"\r\n"))
        .collect();
    assert_eq!(stored, crlf);

    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    assert_eq!(c.cmd("LIST 1"), format!("+OK 1 {}", stored.len()));
    let got = pop_fetch(&mut c, "RETR 1");
    assert!(got == stored, "RETR differs from the stored message");
    let top = pop_fetch(&mut c, "TOP 1 2");
    assert!(String::from_utf8(top)
        .unwrap()
        .ends_with("\r\n\r\n--b\r\nContent-Type: text/plain\r\n"));
    c.cmd("QUIT");
}

#[test]
fn fetchmail_fetches_and_deletes() {
    let (s, _dns) = pop_server("btm0001", "pw");
    s.deliver("btm0001", &dotted_message("btm0001@be.test"));
    s.deliver(
        "btm0001",
        b"From: x@be.test\nTo: btm0001@be.test\nSubject: second\n\nhello\n",
    );
    let home = tempfile::tempdir().unwrap();
    let mbox = home.path().join("out.mbox");
    let rc = home.path().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\npoll 127.0.0.1 service {} protocol POP3 auth password\n  \
             user \"btm0001@be.test\" there password \"pw\" is \"someone\" here\n  \
             sslproto \"\" no sslcertck mda \"cat >> {}\"\n",
            s.port("pop"),
            mbox.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new("fetchmail")
        .args(["--nosyslog", "--nodetach", "-v", "-f"])
        .arg(&rc)
        .env("HOME", home.path())
        .env("FETCHMAILHOME", home.path())
        .output()
        .expect("fetchmail (apt-get install fetchmail)");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    let got = std::fs::read_to_string(&mbox).unwrap();
    assert!(got.contains("Subject: dots"), "{got}");
    assert!(got.contains("\n.a line with a leading dot\n"), "{got}");
    assert!(got.contains("\n..two\n"), "{got}");
    assert!(got.contains("Subject: second"), "{got}");
    assert!(mailbox(&s.data_dir(), "btm0001").is_empty(), "{log}");
}
