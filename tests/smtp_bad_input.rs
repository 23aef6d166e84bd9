//! Bad input on the SMTP listeners: bare LF and smuggling attempts, long
//! lines, oversize messages, NUL octets, recipient floods, pipelined
//! garbage, silent clients and plaintext pipelined after STARTTLS. Each gets
//! a clear reply and never takes the server down.

mod common;
mod smtp_util;
use common::*;
use smtp_util::*;

fn start_data(c: &mut Client) {
    assert_eq!(c.cmd("MAIL FROM:<x@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd("RCPT TO:<btm0001@be.test>"), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
}

fn mailbox(s: &TestServer) -> Vec<Vec<u8>> {
    pop_messages(s.addr("pop"), "btm0001", "pass1")
        .into_iter()
        .map(|m| {
            // Drop our Return-Path and Received lines.
            let text = String::from_utf8_lossy(&m).to_string();
            let at = text.find("\r\nSubject:").expect("subject") + 2;
            m[at..].to_vec()
        })
        .collect()
}

#[test]
fn bare_lf_is_a_line_end_but_never_ends_data() {
    let s = server("");
    let mut c = ehlo(s.addr("mx"));
    start_data(&mut c);
    // Smuggling attempts: <LF>.<LF>, <LF>.<CRLF> and <CRLF>.<LF> end nothing.
    c.send("Subject: one\nline\n.\nMAIL FROM:<evil@remote.test>\r\n.\nRCPT TO:<btm0002@be.test>\n.\r\nDATA\r\n");
    let r = c.cmd(".");
    assert!(r.starts_with("250 2.0.0 Ok"), "{r}");
    assert_eq!(
        c.cmd("RCPT TO:<btm0001@be.test>"),
        "503 5.5.1 Error: need MAIL command"
    );
    let got = mailbox(&s);
    assert_eq!(got.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&got[0]),
        "Subject: one\r\nline\r\n\r\nMAIL FROM:<evil@remote.test>\r\n\r\nRCPT TO:<btm0002@be.test>\r\n\r\nDATA\r\n"
    );
    assert!(pop_messages(s.addr("pop"), "btm0002", "pass2").is_empty());
}

#[test]
fn long_lines_size_and_nul() {
    let s = server("max_message_size = 20000\n");
    let mut c = ehlo(s.addr("mx"));
    // Lines over RFC 5321's 1000 octets are kept whole.
    start_data(&mut c);
    let long = "y".repeat(5000);
    assert!(c
        .cmd(&format!("Subject: long\r\n\r\n{long}\r\n."))
        .starts_with("250 "));
    // SIZE declared too big: refused at MAIL.
    assert_eq!(
        c.cmd("MAIL FROM:<x@remote.test> SIZE=20001"),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    // Not declared: read to the end, then refused.
    start_data(&mut c);
    let line = "z".repeat(998);
    let mut big = String::from("Subject: big\r\n\r\n");
    for _ in 0..30 {
        big += &line;
        big += "\r\n";
    }
    assert_eq!(
        c.cmd(&format!("{big}.")),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    // A line longer than the DATA line limit.
    start_data(&mut c);
    c.send(&format!(
        "Subject: huge line\r\n\r\n{}\r\n",
        "w".repeat(70_000)
    ));
    assert!(c
        .cmd(".")
        .starts_with("554 5.6.0 Message contains a line longer than"));
    // Its end is ambiguous (see an_overlong_line_cannot_smuggle_commands).
    assert!(c.closed());
    let mut c = ehlo(s.addr("mx"));
    start_data(&mut c);
    c.send_bytes(b"Subject: nul\r\n\r\na\0b\r\n");
    assert_eq!(c.cmd("."), "554 5.6.0 Message contains NUL characters");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
    let got = mailbox(&s);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0],
        format!("Subject: long\r\n\r\n{long}\r\n").into_bytes()
    );
}

#[test]
fn an_overlong_line_cannot_smuggle_commands() {
    let s = server("");
    let mut c = ehlo(s.addr("mx"));
    start_data(&mut c);
    // The reader drops an overlong line without telling how it ended: if
    // it ended in a bare LF, the "." after it is no end for a sender that
    // follows RFC 5321, and what comes next must never run as commands.
    c.send(&format!(
        "Subject: huge\r\n\r\n{}\n.\r\nMAIL FROM:<evil@remote.test>\r\n\
         RCPT TO:<btm0002@be.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n",
        "w".repeat(70_000)
    ));
    assert!(c
        .line()
        .starts_with("554 5.6.0 Message contains a line longer than"));
    assert!(c.closed(), "the session went on after the ambiguous end");
    assert!(pop_messages(s.addr("pop"), "btm0002", "pass2").is_empty());
}

#[test]
fn ten_thousand_recipients() {
    let s = server("");
    let mut c = ehlo(s.addr("mx"));
    assert_eq!(c.cmd("MAIL FROM:<x@remote.test>"), "250 2.1.0 Ok");
    let rcpts = "RCPT TO:<btm0001@be.test>\r\n".repeat(10_000);
    let mut writer = c.stream.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        writer.write_all(rcpts.as_bytes()).unwrap();
    });
    let mut ok = 0;
    let mut full = 0;
    for _ in 0..10_000 {
        match c.line().as_str() {
            "250 2.1.5 Ok" => ok += 1,
            "452 4.5.3 Error: too many recipients" => full += 1,
            other => panic!("unexpected {other}"),
        }
    }
    t.join().unwrap();
    assert_eq!((ok, full), (1000, 9000));
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    assert!(c.cmd("Subject: many\r\n\r\nx\r\n.").starts_with("250 "));
    // Every recipient was the same mailbox: one copy.
    assert_eq!(mailbox(&s).len(), 1);
}

#[test]
fn pipelined_garbage_and_overlong_commands_close_the_session() {
    let s = server("");
    let mut c = Client::connect(s.addr("mx"));
    c.line();
    let mut junk = Vec::new();
    junk.extend_from_slice(&vec![b'A'; 10_000]);
    junk.extend_from_slice(b"\r\n\x00\x01\x02\xff\r\n");
    for i in 0..50 {
        junk.extend_from_slice(format!("GARBAGE {i}\r\n").as_bytes());
    }
    c.send_bytes(&junk);
    assert_eq!(c.line(), "500 5.5.2 Error: line too long");
    assert_eq!(c.line(), "500 5.5.2 Error: command not recognized");
    for _ in 0..7 {
        assert_eq!(c.line(), "500 5.5.2 Error: command not recognized");
    }
    assert_eq!(c.line(), "421 4.7.0 mail.be.test Error: too many errors");
    assert!(c.closed());
    // Others are still served.
    let mut c = ehlo(s.addr("mx"));
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
}

#[test]
fn silent_client_times_out() {
    let s = server("[limits]\nsmtp_idle_timeout = \"1s\"\n");
    let mut c = Client::connect(s.addr("mx"));
    assert!(c.line().starts_with("220 "));
    let t = std::time::Instant::now();
    assert_eq!(c.line(), "421 4.4.2 mail.be.test Error: timeout exceeded");
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    assert!(c.closed());
    // Also in the middle of DATA: nothing is delivered.
    let mut c = ehlo(s.addr("mx"));
    start_data(&mut c);
    c.send("Subject: cut\r\n\r\npartial");
    assert_eq!(c.line(), "421 4.4.2 mail.be.test Error: timeout exceeded");
    assert!(c.closed());
    assert!(mailbox(&s).is_empty());
}

#[test]
fn plaintext_pipelined_after_starttls_is_discarded() {
    let s = server("");
    let a = s.addr("mx");
    let out = python(
        r#"
import socket, ssl, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        l = f.readline().decode().rstrip("\r\n"); lines.append(l)
        if l[3:4] != "-": return lines
reply()
s.sendall(b"EHLO client.test\r\n"); reply()
s.sendall(b"STARTTLS\r\nMAIL FROM:<evil@remote.test>\r\nRCPT TO:<btm0001@be.test>\r\n")
print(reply()[-1])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="mail.be.test")
tf = t.makefile("rb")
def treply():
    lines = []
    while True:
        l = tf.readline().decode().rstrip("\r\n"); lines.append(l)
        if l[3:4] != "-": return lines
t.sendall(b"EHLO client.test\r\n"); e = treply()
print("starttls offered again" if "250-STARTTLS" in e else "no starttls")
t.sendall(b"RCPT TO:<btm0001@be.test>\r\n"); print(treply()[-1])
t.sendall(b"QUIT\r\n"); print(treply()[-1])
"#,
        &[&a.ip().to_string(), &a.port().to_string()],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "220 2.0.0 Ready to start TLS",
            "no starttls",
            "503 5.5.1 Error: need MAIL command",
            "221 2.0.0 Bye"
        ]
    );
}

/// Spool files of any process (open descriptors; unlinked ones included).
fn open_spool_files(spool: &std::path::Path) -> usize {
    let mut n = 0;
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.starts_with(spool)) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn spent_memory_budget_spools_to_files_that_never_outlive_the_message() {
    let s = server("max_message_size = 200000\n[limits]\nconnection_memory_total = 0\n");
    let spool = s.data_dir().join("spool");
    let line = "q".repeat(998);
    let body = |n: usize| format!("Subject: s\r\n\r\n{}", format!("{line}\r\n").repeat(n));
    let mut c = ehlo(s.addr("mx"));
    // Small messages need no budget; a 50 KB one goes to a file at once.
    start_data(&mut c);
    assert!(c.cmd(&format!("{}.", body(2))).starts_with("250 "));
    start_data(&mut c);
    assert!(c.cmd(&format!("{}.", body(50))).starts_with("250 "));
    // Too big: read to the end, refused, its file gone.
    start_data(&mut c);
    assert!(c.cmd(&format!("{}.", body(250))).starts_with("552 "));
    // A client that leaves mid-message: the open file is unlinked, and
    // closed when the connection ends.
    let mut gone = ehlo(s.addr("mx"));
    start_data(&mut gone);
    gone.send(&body(100));
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        open_spool_files(&spool) == 1
    }));
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    drop(gone);
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        open_spool_files(&spool) == 0
    }));
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        s.log_text().matches("message accepted").count() >= 2
    }));
    let log = s.log_text();
    let accepted: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("message accepted"))
        .collect();
    assert_eq!(accepted.len(), 2, "{log}");
    assert!(accepted[0].contains("spooled=\"memory\""), "{log}");
    assert!(accepted[1].contains("spooled=\"file\""), "{log}");
    assert_eq!(mailbox(&s).len(), 2);
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0);
    // A name left by a crash is gone after a restart.
    let mut s = s;
    std::fs::write(spool.join("spool.1.1"), "half a message").unwrap();
    s.restart();
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        std::fs::read_dir(&spool).unwrap().count() == 0
    }));
}

/// 2,000 connections (20 addresses × 100) each start a message and send
/// 60 KiB without a line end: the line buffers come out of the one memory
/// budget, so the server's peak RSS stays bounded, the clients past the
/// budget get a 421, and a normal message is still delivered meanwhile.
#[test]
fn unterminated_lines_in_data_stay_within_the_memory_budget() {
    const HOSTS: usize = 20;
    const PER_HOST: usize = 100;
    let s = server(
        "[limits]\nconnection_limit_exempt = []\nmax_connections_per_ip = 100\n\
         connection_memory_total = 8388608\n",
    );
    let mx = s.addr("mx");
    let start_kib = s.status_kib("VmRSS");
    let junk = vec![b'j'; 60 * 1024];
    let mut held = Vec::new();
    for i in 0..HOSTS * PER_HOST {
        let mut c = Client::connect_from(&format!("127.0.0.{}", 10 + i % HOSTS), mx);
        c.stream
            .set_write_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        // RFC 2920: the commands up to DATA may go in one group.
        c.send("EHLO client.test\r\nMAIL FROM:<x@remote.test>\r\nRCPT TO:<btm0001@be.test>\r\nDATA\r\n");
        // A refused client may be closed before all of it is written.
        let _ = std::io::Write::write_all(&mut c.stream, &junk);
        held.push(c);
    }
    // A normal message goes through meanwhile.
    let mut ok = ehlo(mx);
    start_data(&mut ok);
    assert!(ok
        .cmd("Subject: fine\r\n\r\nhello\r\n.")
        .starts_with("250 "));
    // Wait for the server to have read what it will read.
    let mut last = 0;
    let mut steady = 0;
    for _ in 0..80 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let now = s.status_kib("VmRSS");
        steady = if now.abs_diff(last) < 1024 {
            steady + 1
        } else {
            0
        };
        last = now;
        if steady == 4 {
            break;
        }
    }
    let peak_kib = s.status_kib("VmHWM");
    eprintln!("RSS at start {start_kib} KiB, peak {peak_kib} KiB, settled {last} KiB");
    assert!(peak_kib < 96 * 1024, "peak RSS {peak_kib} KiB");
    let mut refused = 0;
    for c in &mut held {
        c.stream
            .set_read_timeout(Some(std::time::Duration::from_millis(20)))
            .unwrap();
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut c.reader, &mut text);
        if text.contains("\r\n421 4.3.2 ") {
            refused += 1;
        }
    }
    eprintln!("{refused} of {} refused", held.len());
    assert!(refused > HOSTS * PER_HOST / 2, "only {refused} refused");
}
