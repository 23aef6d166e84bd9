//! SEED-6 mailbox locks and SEED-9 relay grants, seen from clients and the
//! admin CLI (`betomail lock list|clear`, `betomail grants`).

mod common;
use common::*;
use std::time::{Duration, Instant};

const IN_USE: &str = "-ERR [IN-USE] btm0001 lock busy! Is another session active?";

fn try_login(s: &TestServer, listener: &str, user: &str) -> (Client, String) {
    let mut c = Client::connect(s.addr(listener));
    c.line();
    c.cmd(&format!("USER {user}"));
    let r = c.cmd("PASS pw");
    (c, r)
}

fn cli_text(s: &TestServer, args: &[&str]) -> String {
    let out = s.cli(args, b"");
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn second_login_is_busy_and_a_dropped_session_frees_the_lock_at_once() {
    let (s, _dns) = pop_server("btm0001", "pw");
    s.deliver("btm0001", b"Subject: x\n\nbody\n");
    let mut first = pop_login(s.addr("pop"), "btm0001", "pw");
    assert_eq!(first.cmd("DELE 1"), "+OK Message 1 deleted.");

    let (_c, r) = try_login(&s, "pop2", "btm0001");
    assert_eq!(r, IN_USE);
    // NAME as the client sent it.
    let (_c, r) = try_login(&s, "pop", "BTM0001@be.test");
    assert_eq!(
        r,
        "-ERR [IN-USE] BTM0001@be.test lock busy! Is another session active?"
    );

    // The lock is visible to the operator while the session is active.
    let list = cli_text(&s, &["lock", "list"]);
    assert!(list.starts_with("btm0001\t"), "{list}");
    assert!(list.contains("peer 127.0.0.1"), "{list}");
    let expires_before = list.clone();

    // Retries never extend the lock.
    for _ in 0..3 {
        assert_eq!(try_login(&s, "pop", "btm0001").1, IN_USE);
    }
    assert_eq!(cli_text(&s, &["lock", "list"]), expires_before);

    // The first client vanishes without QUIT: the next login succeeds at
    // once and finds the message it had marked still there.
    drop(first);
    let start = Instant::now();
    let mut next = loop {
        let (c, r) = try_login(&s, "pop", "btm0001");
        if r.starts_with("+OK") {
            break c;
        }
        assert_eq!(r, IN_USE);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "lock not released"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(next.cmd("STAT").starts_with("+OK 1 "));
    next.cmd("QUIT");
    assert_eq!(cli_text(&s, &["lock", "list"]), "");
}

#[test]
fn operator_clears_a_lock() {
    let (s, _dns) = pop_server("btm0001", "pw");
    s.deliver("btm0001", b"Subject: x\n\nbody\n");
    let mut held = pop_login(s.addr("pop"), "btm0001", "pw");
    assert!(held.cmd("DELE 1").starts_with("+OK"));
    let out = cli_text(&s, &["lock", "clear", "btm0001@be.test"]);
    assert_eq!(out.trim(), "lock of btm0001 cleared");
    assert_eq!(cli_text(&s, &["lock", "list"]), "");
    // Another session can log in now.
    let (mut c, r) = try_login(&s, "pop2", "btm0001");
    assert!(r.starts_with("+OK"), "{r}");
    c.cmd("QUIT");
    assert_eq!(
        cli_text(&s, &["lock", "clear", "btm0001"]).trim(),
        "btm0001 was not locked"
    );
    // The session that lost its lock deletes nothing on QUIT.
    assert_eq!(
        held.cmd("QUIT"),
        "-ERR [IN-USE] Mailbox lock was lost; closing without changes."
    );
    assert_eq!(mailbox(&s.data_dir(), "btm0001").len(), 1);
}

#[test]
fn pop_grants_relay_and_pop2_does_not() {
    let (s, _dns) = pop_server("btm0001", "pw");
    s.add_user("btm0002", "pw");
    let mut c = pop_login(s.addr("pop2"), "btm0002", "pw");
    c.cmd("QUIT");
    assert_eq!(cli_text(&s, &["grants"]), "", "pop2 grants nothing");

    let (_c, r) = try_login(&s, "pop", "btm0001");
    assert!(r.starts_with("+OK"));
    let grants = cli_text(&s, &["grants"]);
    let fields: Vec<&str> = grants.trim().split('\t').collect();
    assert_eq!(fields[..2], ["127.0.0.1", "btm0001"], "{grants}");

    // A failed login grants nothing.
    let mut c = Client::connect_from("127.0.0.5", s.addr("pop"));
    c.line();
    c.cmd("USER btm0002");
    assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    assert!(!cli_text(&s, &["grants"]).contains("127.0.0.5"));
}

#[test]
fn lock_of_a_killed_server_lapses_within_a_minute() {
    let (mut s, _dns) = pop_server("btm0001", "pw");
    let _held = pop_login(s.addr("pop"), "btm0001", "pw");
    // SIGKILL: the session cannot release its lock.
    s.restart();
    let start = Instant::now();
    assert_eq!(try_login(&s, "pop", "btm0001").1, IN_USE);
    assert!(
        wait_until(Duration::from_secs(60), || try_login(&s, "pop", "btm0001")
            .1
            .starts_with("+OK")),
        "the dead session's lock did not lapse"
    );
    assert!(
        start.elapsed() < Duration::from_secs(50),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn sigterm_releases_the_locks_of_active_sessions() {
    let (mut s, _dns) = pop_server("btm0001", "pw");
    let _held = pop_login(s.addr("pop"), "btm0001", "pw");
    s.stop();
    assert_eq!(cli_text(&s, &["lock", "list"]), "");
}
