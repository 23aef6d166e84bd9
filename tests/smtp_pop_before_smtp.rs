//! POP-before-SMTP (SEED-9, SEED-11) with real clients: a poplib login on
//! `pop` opens relay for that client IP only, `pop2` grants nothing, grants
//! expire, and a DATA under way when the grant expires still completes.

mod common;
mod smtp_util;
use common::*;
use smtp_util::*;
use std::time::Duration;

const REMOTE: &str = "friend@remote.test";

#[test]
fn pop_login_opens_relay_for_that_ip_only() {
    let s = server("");
    let smtp = s.addr("smtp");
    let refused = "553 5.7.1 <friend@remote.test> Relay operation rejected";
    assert!(smtplib_send_from("127.0.0.2", smtp, "btm0001@be.test", REMOTE).contains(refused));
    pop_login_from("127.0.0.2", s.addr("pop"), "btm0001", "pass1");
    let out = smtplib_send_from("127.0.0.2", smtp, "btm0001@be.test", REMOTE);
    assert!(
        out.contains("250 2.1.5 Ok") && out.contains("250 2.0.0 Ok: queued as"),
        "{out}"
    );
    assert!(smtplib_send_from("127.0.0.3", smtp, "btm0001@be.test", REMOTE).contains(refused));
    // The grant is for the POP-before-SMTP listener; smtpa still wants AUTH.
    assert!(
        smtplib_send_from("127.0.0.2", s.addr("smtpa"), "btm0001@be.test", REMOTE)
            .contains(refused)
    );
    assert_eq!(queue_ids(&s).len(), 1);
}

#[test]
fn pop2_login_grants_nothing() {
    let s = server("");
    pop_login_from("127.0.0.4", s.addr("pop2"), "btm0002@be.test", "pass2");
    let out = smtplib_send_from("127.0.0.4", s.addr("smtp"), "btm0002@be.test", REMOTE);
    assert!(
        out.contains("553 5.7.1 <friend@remote.test> Relay operation rejected"),
        "{out}"
    );
    let grants = s.cli(&["grants"], b"");
    assert!(!String::from_utf8_lossy(&grants.stdout).contains("127.0.0.4"));
}

#[test]
fn grant_expires() {
    let s = server("[relay]\npop_before_smtp_seconds = 2\n");
    pop_login_from("127.0.0.5", s.addr("pop"), "btm0001", "pass1");
    assert!(
        smtplib_send_from("127.0.0.5", s.addr("smtp"), "btm0001@be.test", REMOTE)
            .contains("250 2.1.5 Ok")
    );
    std::thread::sleep(Duration::from_millis(2500));
    let out = smtplib_send_from("127.0.0.5", s.addr("smtp"), "btm0001@be.test", REMOTE);
    assert!(
        out.contains("553 5.7.1 <friend@remote.test> Relay operation rejected"),
        "{out}"
    );
    // A new login renews it.
    pop_login_from("127.0.0.5", s.addr("pop"), "btm0001", "pass1");
    assert!(
        smtplib_send_from("127.0.0.5", s.addr("smtp"), "btm0001@be.test", REMOTE)
            .contains("250 2.1.5 Ok")
    );
}

#[test]
fn data_that_outlives_the_grant_completes() {
    let s = server("[relay]\npop_before_smtp_seconds = 2\n");
    pop_login_from("127.0.0.6", s.addr("pop"), "btm0001", "pass1");
    let mut c = Client::connect_from("127.0.0.6", s.addr("smtp"));
    assert!(c.line().starts_with("220 "));
    c.send("EHLO client.test\r\n");
    c.smtp_reply();
    assert_eq!(c.cmd("MAIL FROM:<btm0001@be.test>"), "250 2.1.0 Ok");
    assert_eq!(c.cmd(&format!("RCPT TO:<{REMOTE}>")), "250 2.1.5 Ok");
    assert_eq!(c.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
    c.send("Subject: slow upload\r\n\r\n");
    // A slow client: the message takes longer than the grant lives.
    for i in 0..6 {
        c.send(&format!("part {i} {}\r\n", "x".repeat(70)));
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = c.cmd(".");
    assert!(r.starts_with("250 2.0.0 Ok: queued as "), "{r}");
    // The next transaction on the same connection needs a live grant again.
    assert_eq!(c.cmd("MAIL FROM:<btm0001@be.test>"), "250 2.1.0 Ok");
    assert_eq!(
        c.cmd(&format!("RCPT TO:<{REMOTE}>")),
        "553 5.7.1 <friend@remote.test> Relay operation rejected"
    );
    let ids = queue_ids(&s);
    assert_eq!(ids.len(), 1);
    let body = std::fs::read(s.data_dir().join("queue").join(&ids[0])).unwrap();
    assert!(body.ends_with(format!("part 5 {}\r\n", "x".repeat(70)).as_bytes()));
}

#[test]
fn a_disabled_account_grant_stops_relaying() {
    let s = server("");
    pop_login_from("127.0.0.7", s.addr("pop"), "btm0001", "pass1");
    assert!(
        smtplib_send_from("127.0.0.7", s.addr("smtp"), "btm0001@be.test", REMOTE)
            .contains("250 2.1.5 Ok")
    );
    // An operator shutting an abused account off also shuts its relay.
    assert!(s.cli(&["user", "disable", "btm0001"], b"").status.success());
    let out = smtplib_send_from("127.0.0.7", s.addr("smtp"), "btm0001@be.test", REMOTE);
    assert!(
        out.contains("553 5.7.1 <friend@remote.test> Relay operation rejected"),
        "{out}"
    );
    assert_eq!(queue_ids(&s).len(), 1);
}
