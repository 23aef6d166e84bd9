//! POP3 over the wire (SEED-1, SEED-4, SEED-5, SEED-7): the commands of
//! RFC 1939, logins of every kind, and the deletion rules.

mod common;
use base64::Engine;
use betomail::auth::{apop_digest, cram_md5_digest};
use common::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn msg(subject: &str, body: &str) -> Vec<u8> {
    format!("From: a@be.test\nTo: btm0001@be.test\nSubject: {subject}\n\n{body}").into_bytes()
}

#[test]
fn commands_and_dot_stuffing() {
    let (s, _dns) = pop_server("btm0001", "pw");
    let dotted = msg("dots", ".leading dot\n..two dots\n.\nend\n");
    s.deliver("btm0001", &dotted);
    s.deliver("btm0001", &msg("second", "hello\n"));
    let stored: Vec<Vec<u8>> = mailbox(&s.data_dir(), "btm0001");
    let crlf = |m: &[u8]| String::from_utf8(m.to_vec()).unwrap().replace('\n', "\r\n");

    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    let sizes: Vec<usize> = stored.iter().map(|m| m.len()).collect();
    let total: usize = sizes.iter().sum();
    assert_eq!(c.cmd("STAT"), format!("+OK 2 {total}"));
    assert_eq!(c.cmd("LIST"), "+OK scan listing follows");
    let list = c.multiline();
    let mut listed: Vec<usize> = list
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    let mut expected = sizes.clone();
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "LIST sizes are exact octets");
    assert_eq!(c.cmd("UIDL"), "+OK unique-id listing follows");
    let uidls = c.multiline();
    assert_eq!(uidls.len(), 2);

    // Oldest first: message 1 is the dotted one.
    let got = pop_fetch(&mut c, "RETR 1");
    assert_eq!(String::from_utf8(got.clone()).unwrap(), crlf(&dotted));
    assert!(stored.contains(&got), "RETR is what deliver stored");
    let top = pop_fetch(&mut c, "top 1 1");
    assert_eq!(
        String::from_utf8(top).unwrap(),
        crlf(&msg("dots", ".leading dot\n"))
    );
    let top0 = pop_fetch(&mut c, "TOP 1 0");
    assert!(String::from_utf8(top0)
        .unwrap()
        .ends_with("Subject: dots\r\n\r\n"));
    assert_eq!(c.cmd("RETR 3"), "-ERR No such message.");
    assert_eq!(c.cmd("NOOP"), "+OK");
    assert_eq!(
        c.cmd("QUIT"),
        "+OK betomail POP3 server signing off (0 messages deleted)."
    );
    assert!(c.closed());

    // UIDLs are stable across sessions.
    let mut c = pop_login(s.addr("pop2"), "btm0001", "pw");
    c.cmd("UIDL");
    assert_eq!(c.multiline(), uidls);
}

#[test]
fn dele_needs_quit_and_new_mail_survives() {
    let (s, _dns) = pop_server("btm0001", "pw");
    s.deliver("btm0001", &msg("one", "1\n"));
    s.deliver("btm0001", &msg("two", "2\n"));

    // DELE, then drop the connection without QUIT: nothing is deleted.
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    assert_eq!(c.cmd("DELE 1"), "+OK Message 1 deleted.");
    assert_eq!(c.cmd("DELE 2"), "+OK Message 2 deleted.");
    assert!(c.cmd("STAT").starts_with("+OK 0 0"));
    drop(c);
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        let mut c = Client::connect(s.addr("pop"));
        c.line();
        c.cmd("USER btm0001");
        let ok = c.cmd("PASS pw").starts_with("+OK");
        if ok {
            c.cmd("QUIT");
        }
        ok
    }));
    assert_eq!(mailbox(&s.data_dir(), "btm0001").len(), 2);

    // RSET undoes the marks.
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    c.cmd("DELE 1");
    assert!(c.cmd("RSET").starts_with("+OK 2 messages"));
    c.cmd("QUIT");
    assert_eq!(mailbox(&s.data_dir(), "btm0001").len(), 2);

    // Mail that arrives during a session is not touched by its DELE/QUIT.
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    s.deliver("btm0001", &msg("during", "new\n"));
    assert!(
        c.cmd("STAT").starts_with("+OK 2 "),
        "snapshot taken at login"
    );
    assert_eq!(c.cmd("DELE 1"), "+OK Message 1 deleted.");
    assert_eq!(c.cmd("DELE 2"), "+OK Message 2 deleted.");
    assert_eq!(c.cmd("DELE 3"), "-ERR No such message.");
    assert_eq!(
        c.cmd("QUIT"),
        "+OK betomail POP3 server signing off (2 messages deleted)."
    );
    let left = mailbox(&s.data_dir(), "btm0001");
    assert_eq!(left.len(), 1);
    let text = String::from_utf8(left[0].clone()).unwrap();
    assert!(text.contains("Subject: during"), "{text}");
}

#[test]
fn logins_by_name_address_apop_and_sasl() {
    let (s, _dns) = pop_server("btm0001", "pw");
    let addr = s.addr("pop");
    // SEED-1: the full address works as the login name.
    pop_login(addr, "btm0001@be.test", "pw").cmd("QUIT");
    pop_login(addr, "BTM0001@BE.TEST", "pw").cmd("QUIT");

    // APOP only works with a shared secret; RFC 1939 7's example secret.
    let apop = |c: &mut Client, greeting: &str, secret: &str| {
        let ts = &greeting[greeting.find('<').unwrap()..=greeting.find('>').unwrap()];
        let digest = apop_digest(ts, secret);
        c.cmd(&format!("APOP btm0001 {digest}"))
    };
    let mut c = Client::connect(addr);
    let g = c.line();
    assert!(
        regex_like_greeting(&g),
        "greeting with an APOP timestamp: {g}"
    );
    assert_eq!(
        apop(&mut c, &g, "tanstaaf"),
        "-ERR [AUTH] Password supplied for \"btm0001\" is incorrect"
    );
    let out = s.cli(
        &["user", "secret", "btm0001", "--secret-stdin"],
        b"tanstaaf",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(apop(&mut c, &g, "tanstaaf").starts_with("+OK"));
    c.cmd("QUIT");

    // AUTH PLAIN with an initial response, and without.
    let mut c = Client::connect(addr);
    c.line();
    let plain = B64.encode("\0btm0001@be.test\0pw");
    assert!(c.cmd(&format!("AUTH PLAIN {plain}")).starts_with("+OK"));
    c.cmd("QUIT");
    let mut c = Client::connect(addr);
    c.line();
    assert_eq!(c.cmd("AUTH PLAIN"), "+ ");
    assert!(c.cmd(&B64.encode("\0btm0001\0pw")).starts_with("+OK"));
    c.cmd("QUIT");

    // CRAM-MD5 (RFC 2195) with the shared secret.
    let mut c = Client::connect(addr);
    c.line();
    let ch = c.cmd("AUTH CRAM-MD5");
    let challenge = B64.decode(ch.strip_prefix("+ ").unwrap()).unwrap();
    let digest = cram_md5_digest("tanstaaf", std::str::from_utf8(&challenge).unwrap());
    assert!(c
        .cmd(&B64.encode(format!("btm0001 {digest}")))
        .starts_with("+OK"));
    c.cmd("QUIT");
}

#[test]
fn seed5_wrong_password_and_unknown_user_read_alike() {
    let (s, _dns) = pop_server("btm0001", "pw");
    let mut c = Client::connect(s.addr("pop"));
    c.line();
    c.cmd("USER btm0001");
    assert_eq!(
        c.cmd("PASS wrong"),
        "-ERR [AUTH] Password supplied for \"btm0001\" is incorrect"
    );
    c.cmd("USER nobody@be.test");
    assert_eq!(
        c.cmd("PASS pw"),
        "-ERR [AUTH] Password supplied for \"nobody@be.test\" is incorrect"
    );
    // A SASL name with control characters and a long name are shown tamed.
    let long = "x".repeat(100);
    let r = c.cmd(&format!(
        "AUTH PLAIN {}",
        B64.encode(format!("\0ab\x1bc{long}\0pw"))
    ));
    assert_eq!(
        r,
        format!(
            "-ERR [AUTH] Password supplied for \"ab?c{}\" is incorrect",
            &long[..60]
        )
    );
    // The failure did not cost the connection.
    c.cmd("USER btm0001");
    assert!(c.cmd("PASS pw").starts_with("+OK"));
}

fn regex_like_greeting(g: &str) -> bool {
    let Some(rest) = g.strip_prefix("+OK betomail POP3 ready <") else {
        return false;
    };
    let Some((pid_nanos, host)) = rest.trim_end_matches('>').split_once('@') else {
        return false;
    };
    host == "mail.be.test" && pid_nanos.split('.').all(|p| p.parse::<u128>().is_ok())
}

/// SEED-7 with another Maildir reader (mutt, Dovecot) on the same mailbox:
/// it moves the listed messages from new/ to cur/ with flags during the
/// session. RETR, UIDL and DELE still find them, sizes stay exact.
#[test]
fn messages_moved_to_cur_by_another_reader_are_still_served_and_deleted() {
    let (s, _dns) = pop_server("btm0001", "pw");
    s.deliver("btm0001", &msg("one", "1\n"));
    s.deliver("btm0001", &msg("two", "2\n"));
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    c.send("UIDL\r\n");
    let uidl = c.multiline();
    c.send("LIST\r\n");
    let list = c.multiline();
    for f in maildir_files(&s, "btm0001") {
        let cur = f.parent().unwrap().parent().unwrap().join("cur");
        let name = f.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::rename(&f, cur.join(format!("{name}:2,S"))).unwrap();
    }
    let size: usize = list[1].split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(c.cmd("RETR 1"), format!("+OK {size} octets"));
    let body = c.multiline();
    let sent: usize = body.iter().map(|l| l.len() + 2).sum();
    assert_eq!(sent, size, "{body:?}");
    assert_eq!(c.cmd("DELE 1"), "+OK Message 1 deleted.");
    assert!(c.cmd("QUIT").contains("(1 messages deleted)"));
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    c.send("UIDL\r\n");
    let after = c.multiline();
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[1].split(' ').nth(1), uidl[2].split(' ').nth(1));
    c.cmd("QUIT");
}

/// A file that another program wrote into the Maildir with LF line ends
/// (procmail, an LDA, `doveadm save`) is sent with CRLF lines, and LIST
/// gives the octets RETR sends: curl, which waits for CRLF.CRLF, gets it.
#[test]
fn lf_files_written_by_other_programs_are_sent_as_crlf() {
    let (s, _dns) = pop_server("btm0001", "pw");
    s.deliver("btm0001", &msg("ours", "x\n"));
    let foreign = b"Subject: lf\n\n.dot line\nend\n";
    let new = s.data_dir().join("mail/btm0001/new");
    std::fs::write(new.join("1700000000.M1P1.procmail"), foreign).unwrap();
    let crlf = b"Subject: lf\r\n\r\n.dot line\r\nend\r\n";
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    assert_eq!(c.cmd("LIST 1"), format!("+OK 1 {}", crlf.len()));
    c.cmd("QUIT");
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "--login-options", "AUTH=PLAIN"])
        .arg(format!("pop3://btm0001:pw@{}/1", s.addr("pop")))
        .output()
        .expect("running curl");
    assert!(out.status.success(), "curl: {out:?}");
    assert_eq!(out.stdout, crlf);
}
