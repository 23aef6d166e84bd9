//! Mail for local users (SEED-2, SEED-13, SEED-14, SEED-15): the seed's
//! replies on the wire, per-recipient results, and the message read back
//! byte-exactly through POP3 after our Return-Path and Received headers.

mod common;
mod smtp_util;
use common::*;
use smtp_util::*;

/// Splits a stored message into (Return-Path line, Received header, rest).
fn split_trace(m: &[u8]) -> (String, String, Vec<u8>) {
    let text = m.to_vec();
    let rp_end = text.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let mut end = rp_end;
    // The Received header: its first line and its tab-continued lines.
    loop {
        let next = end + text[end..].windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        end = next;
        if text[end] != b'\t' {
            break;
        }
    }
    (
        String::from_utf8_lossy(&text[..rp_end]).into(),
        String::from_utf8_lossy(&text[rp_end..end]).into(),
        text[end..].to_vec(),
    )
}

#[test]
fn local_mail_reads_back_byte_exactly_through_pop3() {
    let s = server("");
    let body: &[u8] =
        b"From: Sender <sender@remote.test>\r\nTo: btm0001@be.test\r\nSubject: exact\r\n\
        Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n\
        8bit \xe3\x81\x82 \x1b$B$3$s\x1b(B\r\n\r\ntrailing spaces   \r\n";
    let mx = s.addr("mx");
    let script = r#"
import smtplib, sys, binascii
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=30)
s.ehlo("client.test")
r = s.sendmail("sender@remote.test", ["btm0001@be.test", "BTM0002@Be.Test"], binascii.unhexlify(sys.argv[3]))
print("refused", r)
s.quit()
"#;
    let out = python(
        script,
        &[
            &mx.ip().to_string(),
            &mx.port().to_string(),
            &hex::encode(body),
        ],
    );
    assert!(out.contains("refused {}"), "{out}");
    for (user, pass) in [("btm0001", "pass1"), ("btm0002", "pass2")] {
        let msgs = pop_messages(s.addr("pop"), user, pass);
        assert_eq!(msgs.len(), 1, "{user}");
        let (rp, received, rest) = split_trace(&msgs[0]);
        assert_eq!(rp, "Return-Path: <sender@remote.test>\r\n");
        assert!(received.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mail.be.test (betomail) with ESMTP;\r\n\t"), "{received}");
        assert!(received.ends_with(" +0000\r\n"), "{received}");
        assert_eq!(rest, body, "{user}: body changed");
    }
}

#[test]
fn seed_replies_on_the_wire() {
    let s = server("");
    let mut c = ehlo(s.addr("mx"));
    assert_eq!(
        c.cmd("MAIL FROM:<test@be,to>"),
        "553 5.1.7 <test@be,to> Illegal comma in host name part"
    );
    c.send_bytes("MAIL FROM:<test@be.to・>\r\n".as_bytes());
    assert_eq!(
        c.line(),
        "553 5.1.7 <test@be.to???> Address contained invalid control characters"
    );
    // Shift_JIS middle dot (0x81 0x45): each octet outside ASCII becomes '?'.
    c.send_bytes(b"MAIL FROM:<test@be.to\x81\x45>\r\n");
    assert_eq!(
        c.line(),
        "553 5.1.7 <test@be.to?E> Address contained invalid control characters"
    );
    assert_eq!(c.cmd("MAIL FROM:<sender@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<test@be,to>"),
        "550 5.1.1 <test@be,to> User unknown"
    );
    c.send_bytes("RCPT TO:<test@be.to・>\r\n".as_bytes());
    assert_eq!(
        c.line(),
        "553 5.1.3 <test@be.to???> Address contained invalid control characters"
    );
    assert_eq!(
        c.cmd("RCPT TO:<nobody@be.test>"),
        "550 5.1.1 <nobody@be.test> User unknown"
    );
    assert_eq!(
        c.cmd("RCPT TO:<test@be.to>"),
        "553 5.7.1 <test@be.to> Relay operation rejected"
    );
}

#[test]
fn per_recipient_results_and_mixed_local_remote() {
    let s = server("");
    let mut c = ehlo(s.addr("smtpa"));
    assert_eq!(
        c.cmd("AUTH PLAIN AGJ0bTAwMDEAcGFzczE="),
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(c.cmd("MAIL FROM:<btm0001@be.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<btm0002@be.test>"), "250 2.1.5 Ok");
    assert_eq!(
        c.cmd("RCPT TO:<ghost@be.test>"),
        "550 5.1.1 <ghost@be.test> User unknown"
    );
    assert_eq!(c.cmd("RCPT TO:<far@remote.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    let r = c.cmd("Subject: mixed\r\n\r\nhi\r\n.");
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    assert_eq!(pop_messages(s.addr("pop"), "btm0001", "pass1").len(), 0);
    let got = pop_messages(s.addr("pop"), "btm0002", "pass2");
    assert_eq!(got.len(), 1);
    let text = String::from_utf8_lossy(&got[0]);
    assert!(
        text.contains("with ESMTPA\r\n\t(authenticated as btm0001);"),
        "{text}"
    );
    let ids = queue_ids(&s);
    assert_eq!(ids.len(), 1);
    let show = String::from_utf8_lossy(&s.cli(&["queue", "show", &ids[0]], b"").stdout).to_string();
    assert!(
        show.contains("far@remote.test") && !show.contains("btm0002") && !show.contains("ghost"),
        "{show}"
    );
    // The queued copy has a Received header but no Return-Path.
    let q = std::fs::read(s.data_dir().join("queue").join(&ids[0])).unwrap();
    assert!(q.starts_with(b"Received: ") && q.ends_with(b"Subject: mixed\r\n\r\nhi\r\n"));
    let out = s.cli(&["queue", "delete", &ids[0]], b"");
    assert!(out.status.success());
    assert!(queue_ids(&s).is_empty());
}

#[test]
fn loop_protection() {
    let s = server("[limits]\nmax_received_headers = 5\n");
    let mut c = ehlo(s.addr("mx"));
    let hops = "Received: from a by b; Thu, 1 Jan 1970 00:00:00 +0000\r\n".repeat(5);
    assert_eq!(c.cmd("MAIL FROM:<x@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<btm0001@be.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    assert_eq!(
        c.cmd(&format!("{hops}Subject: loop\r\n\r\nx\r\n.")),
        "554 5.4.6 Too many hops (mail loop?)"
    );
    assert_eq!(c.cmd("MAIL FROM:<x@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<btm0001@be.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    let four = "Received: x\r\n".repeat(4);
    assert!(c.cmd(&format!("{four}\r\nok\r\n.")).starts_with("250 "));
    assert_eq!(pop_messages(s.addr("pop"), "btm0001", "pass1").len(), 1);
}

#[test]
fn store_failure_acknowledges_nothing() {
    let s = server("");
    // Deliver once so the mailbox exists, then break it: `new` becomes a file.
    s.deliver("btm0002@be.test", b"Subject: first\r\n\r\nx\r\n");
    let new = s.data_dir().join("mail/btm0002/new");
    std::fs::remove_dir_all(&new).unwrap();
    std::fs::write(&new, b"").unwrap();
    let mut c = ehlo(s.addr("smtpa"));
    assert_eq!(
        c.cmd("AUTH PLAIN AGJ0bTAwMDEAcGFzczE="),
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(c.cmd("MAIL FROM:<btm0001@be.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<far@remote.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<btm0002@be.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("RCPT TO:<btm0001@be.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    assert_eq!(
        c.cmd("Subject: t\r\n\r\nx\r\n."),
        "451 4.3.0 Temporary failure, please try again later"
    );
    // Nothing was kept: not the queued copy, not the other mailbox's.
    assert!(queue_ids(&s).is_empty());
    assert!(pop_messages(s.addr("pop"), "btm0001", "pass1").is_empty());
    let dir = s.data_dir().display().to_string();
    assert!(s.logged("message not stored"));
    let log = s.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("message not stored"))
        .expect("logged");
    assert!(!failure.contains(&dir), "a path in the log: {failure}");
}

#[test]
fn big_message_streams() {
    let s = server("");
    let mx = s.addr("mx");
    let out = python(
        r#"
import smtplib, sys
line = b"b" * 998 + b"\r\n"
msg = b"Subject: big\r\n\r\n" + line * 20000
s = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=60)
print(s.sendmail("x@remote.test", ["btm0001@be.test"], msg), len(msg))
s.quit()
"#,
        &[&mx.ip().to_string(), &mx.port().to_string()],
    );
    let size: usize = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut c = Client::connect(s.addr("pop"));
    c.line();
    c.cmd("USER btm0001");
    assert!(c.cmd("PASS pass1").starts_with("+OK"));
    let stat = c.cmd("STAT");
    let stored: usize = stat.split_whitespace().nth(2).unwrap().parse().unwrap();
    // Ours adds a Return-Path and a Received header (well under 1 KB).
    assert!(stored > size && stored < size + 1024, "{stat} vs {size}");
}
