//! Bad input gets clear -ERR replies, the session ends after too many bad
//! commands or when the client goes silent, and other clients are served
//! all the while.

mod common;
use common::*;
use std::time::{Duration, Instant};

const HEAD: &str = "[limits]\npop3_idle_timeout = \"2s\"\nmax_line_length = 512\nmax_bad_commands = 5\nauth_failure_delay = \"20ms\"\n";

fn server() -> (TestServer, Dnsmasq) {
    let (s, d) = pop_server_with(HEAD, LISTENERS, &[], &[]);
    s.add_user("btm0001", "pw");
    (s, d)
}

#[test]
fn garbage_gets_errors_and_the_bad_command_cap_closes() {
    let (s, _dns) = server();
    let mut c = Client::connect(s.addr("pop"));
    c.line();
    c.send(&format!("NOOP {}\r\n", "x".repeat(2000)));
    assert_eq!(c.line(), "-ERR line too long");
    c.send_bytes(b"USER bt\0m\r\n");
    assert_eq!(c.line(), "-ERR NUL byte in command.");
    assert_eq!(c.cmd("XYZZY"), "-ERR Unknown command.");
    assert_eq!(c.cmd("STAT"), "-ERR Command not valid in this state.");
    // Bare LF ends a command line too (as Dovecot accepts it).
    c.send("CAPA\n");
    assert_eq!(c.line(), "+OK Capability list follows");
    let capa = c.multiline();
    assert!(capa.contains(&"USER".to_string()), "{capa:?}");
    assert!(capa.contains(&"IMPLEMENTATION betomail".to_string()));
    // The fifth bad command ends the session.
    assert_eq!(
        c.cmd("RETR 1"),
        "-ERR Too many bad commands, closing connection."
    );
    assert!(c.closed());
}

#[test]
fn wrong_state_in_transaction_and_pipelining() {
    let (s, _dns) = server();
    s.deliver("btm0001", b"Subject: x\n\nbody\n");
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    assert_eq!(c.cmd("USER x"), "-ERR Command not valid in this state.");
    assert_eq!(
        c.cmd("APOP x 0123456789abcdef0123456789abcdef"),
        "-ERR Command not valid in this state."
    );
    assert_eq!(c.cmd("RETR 0"), "-ERR No such message.");
    assert!(c.cmd("RETR abc").starts_with("-ERR Syntax error"));
    // Pipelined commands (RFC 2449 PIPELINING) are answered in order.
    c.send("STAT\r\nLIST 1\r\nUIDL 1\r\nNOOP\r\n");
    assert!(c.line().starts_with("+OK 1 "));
    assert!(c.line().starts_with("+OK 1 "));
    assert!(c.line().starts_with("+OK 1 "));
    assert_eq!(c.line(), "+OK");
    c.cmd("QUIT");
}

#[test]
fn silent_client_times_out_while_others_are_served() {
    let (s, _dns) = server();
    let start = Instant::now();
    let mut silent = Client::connect(s.addr("pop"));
    silent.line();
    // A client sending a line that never ends is timed out as well.
    let mut partial = Client::connect(s.addr("pop"));
    partial.line();
    partial.send("NOOP");
    // Meanwhile others log in and out.
    for _ in 0..3 {
        let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
        assert!(c.cmd("STAT").starts_with("+OK"));
        c.cmd("QUIT");
    }
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(silent.line(), "-ERR Disconnected for inactivity.");
    assert!(silent.closed());
    assert_eq!(partial.line(), "-ERR Disconnected for inactivity.");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "{waited:?}"
    );

    // A session timed out in TRANSACTION keeps its mail and frees its lock.
    s.deliver("btm0001", b"Subject: x\n\nbody\n");
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    c.cmd("DELE 1");
    assert_eq!(c.line(), "-ERR Disconnected for inactivity.");
    let mut c = pop_login(s.addr("pop"), "btm0001", "pw");
    assert!(c.cmd("STAT").starts_with("+OK 1 "));
}

#[test]
fn plaintext_login_refused_before_tls() {
    let listeners = r#"
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:0"
"#;
    let (s, _dns) = pop_server_with(HEAD, listeners, &[], &[]);
    s.add_user("btm0001", "pw");
    let mut c = Client::connect(s.addr("pop"));
    c.line();
    let refusal =
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.";
    assert_eq!(c.cmd("USER btm0001"), refusal);
    assert_eq!(c.cmd("PASS pw"), refusal);
    assert_eq!(c.cmd("AUTH PLAIN AGJ0bTAwMDEAcHc="), refusal);
    assert_eq!(c.cmd("CAPA"), "+OK Capability list follows");
    let capa = c.multiline();
    assert!(!capa.contains(&"USER".to_string()), "{capa:?}");
    assert!(capa.contains(&"STLS".to_string()), "{capa:?}");
    assert!(capa.contains(&"SASL CRAM-MD5".to_string()), "{capa:?}");
}

#[test]
fn client_that_stops_reading_is_dropped_and_its_lock_freed() {
    let (s, _dns) = server();
    let line = "x".repeat(70) + "\n";
    let big = format!("Subject: big\n\n{}", line.repeat(20 * 1024 * 1024 / 71));
    s.deliver("btm0001", big.as_bytes());
    let mut stalled = pop_login(s.addr("pop"), "btm0001", "pw");
    // Ask for 20 MB and never read it: the socket buffers fill up.
    stalled.send("RETR 1\r\n");
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    let mut c = Client::connect(s.addr("pop2"));
    c.line();
    c.cmd("USER btm0001");
    assert_eq!(
        c.cmd("PASS pw"),
        "-ERR [IN-USE] btm0001 lock busy! Is another session active?"
    );
    // The write timeout (the idle timeout, 2 s) ends the stalled session.
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut c = Client::connect(s.addr("pop2"));
            c.line();
            c.cmd("USER btm0001");
            c.cmd("PASS pw").starts_with("+OK")
        }),
        "lock still held after {:?}",
        start.elapsed()
    );
    assert!(start.elapsed() >= Duration::from_millis(1500));
    drop(stalled);
}

/// Past the shared memory budget a long command line gets a temporary error
/// and the connection is closed, instead of the server growing; commands of
/// up to 1 KiB need no budget at all.
#[test]
fn a_long_line_past_the_memory_budget_gets_a_temporary_error() {
    let (s, _dns) = pop_server_with(
        "[limits]\nconnection_memory_total = 0\n",
        LISTENERS,
        &[],
        &[],
    );
    let mut c = Client::connect(s.addr("pop"));
    assert!(c.line().starts_with("+OK"));
    let short = c.cmd(&format!("NOOP {}", "n".repeat(900)));
    assert!(
        short.starts_with("-ERR ") && !short.contains("SYS/TEMP"),
        "{short}"
    );
    c.send(&format!("USER {}\r\n", "x".repeat(3000)));
    assert_eq!(c.line(), "-ERR [SYS/TEMP] Server busy, try again later");
    assert!(c.closed());
}
