//! The failed-login throttle as an attacker meets it: counted per client
//! and per account, so that neither a valid login of one's own nor a spread
//! over many addresses resets it.

mod common;
use common::*;

const HEAD: &str = "[limits]\nauth_failure_delay = \"50ms\"\nauth_failure_max_delay = \"5s\"\n";

/// One POP3 login attempt from `source`; true when it succeeded.
fn attempt(s: &TestServer, source: &str, user: &str, pw: &str) -> bool {
    let mut c = Client::connect_from(source, s.addr("pop"));
    c.line();
    c.cmd(&format!("USER {user}"));
    let ok = c.cmd(&format!("PASS {pw}")).starts_with("+OK");
    c.cmd("QUIT");
    ok
}

/// The delays the server logged for failed logins, in order.
fn logged_delays(s: &TestServer) -> Vec<u64> {
    s.log_text()
        .lines()
        .filter(|l| l.contains("login failed") && l.contains("delay_ms="))
        .filter_map(|l| {
            let v = l.split("delay_ms=").nth(1)?;
            v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

#[test]
fn a_valid_login_between_guesses_does_not_reset_the_delay() {
    let (s, _dns) = pop_server_with(HEAD, LISTENERS, &[], &[]);
    s.add_user("mine", "my-pw");
    s.add_user("victim1", "v1");
    s.add_user("victim2", "v2");
    for victim in ["victim1", "victim2", "victim1"] {
        assert!(!attempt(&s, "127.0.0.1", victim, "guess"));
        assert!(attempt(&s, "127.0.0.1", "mine", "my-pw"));
    }
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        logged_delays(&s).len() == 3
    }));
    // Before, each success reset the client: 50, 50, 50.
    assert_eq!(logged_delays(&s), vec![50, 100, 200]);
}

#[test]
fn guesses_at_one_account_from_many_addresses_slow_down_until_the_owner_logs_in() {
    let (s, _dns) = pop_server_with(HEAD, LISTENERS, &[], &[]);
    s.add_user("victim", "right");
    for source in ["127.0.0.11", "127.0.0.12", "127.0.0.13"] {
        assert!(!attempt(&s, source, "victim", "guess"));
    }
    // Delay, never refusal: the owner still gets in, by name or address.
    assert!(attempt(&s, "127.0.0.14", "victim@be.test", "right"));
    assert!(!attempt(&s, "127.0.0.15", "victim", "guess"));
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        logged_delays(&s).len() == 4
    }));
    assert_eq!(logged_delays(&s), vec![50, 100, 200, 50]);
}
