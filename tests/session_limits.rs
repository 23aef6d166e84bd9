//! Sessions that do no work end (issue item 8): a client that never logs in
//! is closed when `limits.unauthenticated_session_lifetime` runs out, however
//! often it sends NOOP or CAPA; and `limits.max_junk_commands` no-op commands
//! close any session. POP3 and SMTP, with short limits.

mod common;
mod smtp_util;
use common::*;
use smtp_util::*;
use std::time::{Duration, Instant};

/// Sends `cmd` every 300 ms (well inside the 30 s idle timeout) until the
/// server closes; returns the last line and how long the session lasted.
fn keep_alive(c: &mut Client, cmd: &str, multiline: bool) -> (String, Duration) {
    let t = Instant::now();
    loop {
        assert!(t.elapsed() < Duration::from_secs(20), "never closed");
        c.send(&format!("{cmd}\r\n"));
        let line = c.line();
        if !line.starts_with('+') && !line.starts_with("250") {
            return (line, t.elapsed());
        }
        if multiline {
            c.multiline();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn unauthenticated_sessions_end_at_their_lifetime() {
    let s = server(
        "[limits]\npop3_idle_timeout = \"30s\"\nsmtp_idle_timeout = \"30s\"\n\
         unauthenticated_session_lifetime = \"2s\"\n",
    );
    let mut c = Client::connect(s.addr("pop"));
    assert!(c.line().starts_with("+OK"));
    let (last, lasted) = keep_alive(&mut c, "CAPA", true);
    assert_eq!(
        last,
        "-ERR [SYS/TEMP] Too long without logging in, closing connection."
    );
    assert!(
        lasted >= Duration::from_millis(1500) && lasted < Duration::from_secs(5),
        "{lasted:?}"
    );
    assert!(c.closed());

    let mut c = ehlo(s.addr("mx"));
    let (last, lasted) = keep_alive(&mut c, "NOOP", false);
    assert_eq!(
        last,
        "421 4.7.0 mail.be.test Error: session too long without authentication"
    );
    assert!(lasted < Duration::from_secs(5), "{lasted:?}");
    assert!(c.closed());

    // Logged in, the lifetime no longer applies.
    let mut c = pop_login(s.addr("pop"), "btm0001", "pass1");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.cmd("STAT"), "+OK 0 0");
    c.cmd("QUIT");
    let mut c = ehlo(s.addr("smtpa"));
    assert_eq!(
        c.cmd("AUTH PLAIN AGJ0bTAwMDEAcGFzczE="),
        "235 2.7.0 Authentication successful"
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
}

#[test]
fn junk_commands_close_the_session() {
    let s = server("[limits]\nmax_junk_commands = 20\n");
    let mut c = Client::connect(s.addr("pop"));
    c.line();
    for _ in 0..20 {
        assert_eq!(c.cmd("CAPA"), "+OK Capability list follows");
        c.multiline();
    }
    assert_eq!(
        c.cmd("CAPA"),
        "-ERR Too many commands without effect, closing connection."
    );
    assert!(c.closed());

    let mut c = ehlo(s.addr("mx"));
    for _ in 0..10 {
        assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
        assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    }
    assert_eq!(
        c.cmd("NOOP"),
        "421 4.7.0 mail.be.test Error: too many junk commands"
    );
    assert!(c.closed());
}
