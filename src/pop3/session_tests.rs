//! Unit tests of the POP3 state machine, driven with command lines.

use super::*;
use std::time::{Duration, Instant, SystemTime};

const TS: &str = "<1896.697170952@dbc.mtview.ca.us>";

fn cfg(plaintext_auth: bool) -> SessionConfig {
    SessionConfig {
        timestamp: TS.into(),
        stls: true,
        plaintext_auth,
        max_bad_commands: 5,
        max_junk_commands: 100,
        unauthenticated_lifetime: Duration::from_secs(300),
    }
}

fn msg(uid: &str, size: u64) -> MessageInfo {
    MessageInfo {
        uid: uid.into(),
        size,
        received: SystemTime::UNIX_EPOCH,
        locator: format!("new/{uid}"),
    }
}

fn text(o: &Output) -> String {
    String::from_utf8(o.text.clone()).unwrap()
}

fn say(s: &mut Session, line: &str) -> Output {
    s.input(line.as_bytes())
}

/// A session logged in with two messages (100 and 200 octets).
fn logged_in() -> Session {
    let mut s = Session::new(cfg(true), false);
    assert_eq!(text(&say(&mut s, "USER btm0001")), "+OK\r\n");
    let o = say(&mut s, "PASS secret");
    assert!(o.text.is_empty());
    match o.effect {
        Some(Effect::Login {
            login,
            credential: Credential::Password(p),
        }) => {
            assert_eq!(login, "btm0001");
            assert_eq!(p, "secret");
        }
        e => panic!("{e:?}"),
    }
    let o = s.login_done(LoginResult::Ok(vec![msg("a", 100), msg("b", 200)]));
    assert_eq!(text(&o), "+OK Logged in, 2 messages (300 octets).\r\n");
    assert!(s.in_transaction());
    s
}

#[test]
fn greeting_carries_apop_timestamp() {
    let s = Session::new(cfg(true), false);
    assert_eq!(
        s.greeting(),
        format!("+OK betomail POP3 ready {TS}\r\n").into_bytes()
    );
}

#[test]
fn apop_uses_the_greeting_timestamp() {
    let mut s = Session::new(cfg(false), false);
    let o = say(&mut s, "APOP mrose c4c9334bac560ecc979e58001b3e22fb");
    match o.effect {
        Some(Effect::Login {
            login,
            credential: Credential::Apop { timestamp, digest },
        }) => {
            assert_eq!(login, "mrose");
            assert_eq!(timestamp, TS);
            // RFC 1939 7's example verifies against the secret.
            assert_eq!(crate::auth::apop_digest(&timestamp, "tanstaaf"), digest);
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn stat_list_uidl_dele_rset() {
    let mut s = logged_in();
    assert_eq!(text(&say(&mut s, "STAT")), "+OK 2 300\r\n");
    assert_eq!(
        text(&say(&mut s, "LIST")),
        "+OK scan listing follows\r\n1 100\r\n2 200\r\n.\r\n"
    );
    assert_eq!(text(&say(&mut s, "list 2")), "+OK 2 200\r\n");
    assert_eq!(text(&say(&mut s, "LIST 3")), "-ERR No such message.\r\n");
    assert_eq!(text(&say(&mut s, "LIST 0")), "-ERR No such message.\r\n");
    assert_eq!(text(&say(&mut s, "UIDL 1")), "+OK 1 a\r\n");
    assert_eq!(text(&say(&mut s, "DELE 1")), "+OK Message 1 deleted.\r\n");
    assert_eq!(text(&say(&mut s, "DELE 1")), "-ERR Message is deleted.\r\n");
    assert_eq!(text(&say(&mut s, "RETR 1")), "-ERR Message is deleted.\r\n");
    assert_eq!(text(&say(&mut s, "STAT")), "+OK 1 200\r\n");
    assert_eq!(
        text(&say(&mut s, "UIDL")),
        "+OK unique-id listing follows\r\n2 b\r\n.\r\n"
    );
    assert_eq!(
        text(&say(&mut s, "RSET")),
        "+OK 2 messages (300 octets).\r\n"
    );
    assert_eq!(text(&say(&mut s, "STAT")), "+OK 2 300\r\n");
    assert_eq!(text(&say(&mut s, "NOOP")), "+OK\r\n");
}

#[test]
fn retr_and_top_are_effects() {
    let mut s = logged_in();
    match say(&mut s, "RETR 2").effect {
        Some(Effect::Send { msg, top, ok }) => {
            assert_eq!(msg.uid, "b");
            assert_eq!(top, None);
            assert_eq!(ok, "+OK 200 octets");
        }
        e => panic!("{e:?}"),
    }
    match say(&mut s, "TOP 1 0").effect {
        Some(Effect::Send { msg, top, .. }) => {
            assert_eq!(msg.uid, "a");
            assert_eq!(top, Some(0));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn quit_commits_only_marked_messages() {
    let mut s = logged_in();
    say(&mut s, "DELE 2");
    match say(&mut s, "QUIT").effect {
        Some(Effect::Commit(m)) => assert_eq!(m, vec![msg("b", 200)]),
        e => panic!("{e:?}"),
    }
    let o = s.commit_done(Ok(1));
    assert_eq!(
        text(&o),
        "+OK betomail POP3 server signing off (1 messages deleted).\r\n"
    );
    assert!(matches!(o.effect, Some(Effect::Close)));
}

#[test]
fn quit_in_authorization_closes() {
    let mut s = Session::new(cfg(true), false);
    let o = say(&mut s, "QUIT");
    assert!(text(&o).starts_with("+OK"));
    assert!(matches!(o.effect, Some(Effect::Close)));
}

#[test]
fn seed5_and_seed6_texts() {
    let mut s = Session::new(cfg(true), false);
    say(&mut s, "USER Btm0001@be.test");
    say(&mut s, "PASS x");
    assert_eq!(
        text(&s.login_done(LoginResult::Failed)),
        "-ERR [AUTH] Password supplied for \"Btm0001@be.test\" is incorrect\r\n"
    );
    say(&mut s, "USER btm0001");
    say(&mut s, "PASS x");
    assert_eq!(
        text(&s.login_done(LoginResult::Busy)),
        "-ERR [IN-USE] btm0001 lock busy! Is another session active?\r\n"
    );
    // PASS needs a fresh USER after a failure.
    assert_eq!(text(&say(&mut s, "PASS x")), "-ERR No username given.\r\n");
}

#[test]
fn shown_name_is_printable_and_short() {
    assert_eq!(shown_name("a\u{1b}b\u{30fb}"), "a?b?");
    assert_eq!(shown_name(&"x".repeat(100)).len(), 64);
}

#[test]
fn plaintext_refused_before_tls() {
    let mut s = Session::new(cfg(false), false);
    let refusal =
        "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n";
    assert_eq!(text(&say(&mut s, "USER a")), refusal);
    assert_eq!(text(&say(&mut s, "PASS a")), refusal);
    assert_eq!(text(&say(&mut s, "AUTH PLAIN AGEAYg==")), refusal);
    assert_eq!(text(&say(&mut s, "AUTH")), "+OK\r\nCRAM-MD5\r\n.\r\n");
    let capa = text(&say(&mut s, "CAPA"));
    assert!(!capa.contains("USER"), "{capa}");
    assert!(capa.contains("SASL CRAM-MD5\r\n"), "{capa}");
    assert!(capa.contains("STLS\r\n"), "{capa}");
    let o = say(&mut s, "STLS");
    assert_eq!(text(&o), "+OK Begin TLS negotiation\r\n");
    assert!(matches!(o.effect, Some(Effect::StartTls)));
    s.tls_done();
    let capa = text(&say(&mut s, "CAPA"));
    assert!(capa.contains("USER\r\n") && capa.contains("SASL PLAIN CRAM-MD5\r\n"));
    assert!(!capa.contains("STLS"), "{capa}");
    assert_eq!(text(&say(&mut s, "USER a")), "+OK\r\n");
    assert!(text(&say(&mut s, "STLS")).starts_with("-ERR"));
}

#[test]
fn capa_lists_rfc2449_capabilities() {
    let mut s = Session::new(cfg(true), false);
    assert_eq!(
        text(&say(&mut s, "CAPA")),
        "+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\n\
         PIPELINING\r\nUSER\r\nSASL PLAIN CRAM-MD5\r\nSTLS\r\nIMPLEMENTATION betomail\r\n.\r\n"
    );
}

#[test]
fn sasl_plain_with_and_without_initial_response() {
    let mut s = Session::new(cfg(true), false);
    // base64("\0btm0001\0pw")
    let o = say(&mut s, "AUTH PLAIN AGJ0bTAwMDEAcHc=");
    assert!(
        matches!(o.effect, Some(Effect::Login { ref login, credential: Credential::Password(ref p) }) if login == "btm0001" && p == "pw")
    );
    s.login_done(LoginResult::Failed);
    assert_eq!(text(&say(&mut s, "AUTH PLAIN")), "+ \r\n");
    let o = say(&mut s, "AGJ0bTAwMDEAcHc=");
    assert!(matches!(o.effect, Some(Effect::Login { .. })));
    s.login_done(LoginResult::Failed);
    assert_eq!(text(&say(&mut s, "AUTH PLAIN")), "+ \r\n");
    assert_eq!(
        text(&say(&mut s, "*")),
        "-ERR Authentication cancelled.\r\n"
    );
    assert_eq!(
        text(&say(&mut s, "AUTH PLAIN !!!")),
        "-ERR Invalid base64 data.\r\n"
    );
    assert_eq!(
        text(&say(&mut s, "AUTH KERBEROS_V4")),
        "-ERR Unsupported authentication mechanism.\r\n"
    );
}

#[test]
fn sasl_cram_md5_rfc2195() {
    let mut s = Session::new(cfg(false), false);
    let o = say(&mut s, "AUTH CRAM-MD5");
    let line = text(&o);
    let b64 = line.strip_prefix("+ ").unwrap().trim_end();
    let challenge = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap();
    assert!(challenge.starts_with('<') && challenge.ends_with("@dbc.mtview.ca.us>"));
    let digest = crate::auth::cram_md5_digest("tanstaaftanstaaf", &challenge);
    let resp = base64::engine::general_purpose::STANDARD.encode(format!("tim {digest}"));
    match say(&mut s, &resp).effect {
        Some(Effect::Login {
            login,
            credential:
                Credential::CramMd5 {
                    challenge: c,
                    digest: d,
                },
        }) => {
            assert_eq!(login, "tim");
            assert_eq!(c, challenge);
            assert_eq!(d, digest);
        }
        e => panic!("{e:?}"),
    }
    // A second exchange gets a different challenge.
    s.login_done(LoginResult::Failed);
    assert_ne!(text(&say(&mut s, "AUTH CRAM-MD5")), line);
}

#[test]
fn wrong_state_and_bad_command_cap() {
    let mut s = Session::new(cfg(true), false);
    assert_eq!(
        text(&say(&mut s, "STAT")),
        "-ERR Command not valid in this state.\r\n"
    );
    assert_eq!(text(&say(&mut s, "FOO")), "-ERR Unknown command.\r\n");
    assert_eq!(text(&s.input(b"NOOP\0")), "-ERR NUL byte in command.\r\n");
    assert_eq!(text(&s.line_too_long()), "-ERR line too long\r\n");
    let o = say(&mut s, "RETR 1");
    assert_eq!(
        text(&o),
        "-ERR Too many bad commands, closing connection.\r\n"
    );
    assert!(matches!(o.effect, Some(Effect::Close)));

    let mut s = logged_in();
    assert_eq!(
        text(&say(&mut s, "USER x")),
        "-ERR Command not valid in this state.\r\n"
    );
    assert!(text(&say(&mut s, "STLS")).starts_with("-ERR"));
}

#[test]
fn random_input_never_panics() {
    // xorshift: deterministic garbage, biased toward command-like bytes.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "USER ",
        "PASS ",
        "APOP ",
        "AUTH ",
        "PLAIN",
        "CRAM-MD5",
        "LIST",
        "RETR ",
        "TOP ",
        "DELE ",
        "UIDL",
        "STAT",
        "RSET",
        "NOOP",
        "CAPA",
        "STLS",
        "QUIT",
        "1",
        "0",
        " ",
        "*",
        "=",
        "\0",
        "4294967296",
        "-1",
    ];
    for round in 0..200 {
        let mut s = if round % 2 == 0 {
            logged_in()
        } else {
            Session::new(cfg(round % 4 == 1), false)
        };
        for _ in 0..50 {
            let mut line = Vec::new();
            for _ in 0..(next() % 6) {
                match next() % 3 {
                    0 => line.push(next() as u8),
                    _ => line.extend_from_slice(
                        words[(next() % words.len() as u64) as usize].as_bytes(),
                    ),
                }
            }
            let o = s.input(&line);
            assert!(o.text.len() < 4096);
            match o.effect {
                Some(Effect::Close) => break,
                Some(Effect::Login { .. }) => {
                    s.login_done(LoginResult::Failed);
                }
                Some(Effect::Commit(_)) => {
                    s.commit_done(Ok(0));
                    break;
                }
                Some(Effect::StartTls) => s.tls_done(),
                _ => {}
            }
        }
    }
}

/// Issue item 8: CAPA, NOOP, RSET and AUTH lists do no work and cannot
/// keep a session (or its lock) forever.
#[test]
fn junk_commands_end_the_session() {
    let mut c = cfg(true);
    c.max_junk_commands = 3;
    let mut s = Session::new(c.clone(), false);
    for _ in 0..3 {
        let o = say(&mut s, "CAPA");
        assert!(text(&o).starts_with("+OK") && o.effect.is_none());
    }
    let o = say(&mut s, "CAPA");
    assert_eq!(
        text(&o),
        "-ERR Too many commands without effect, closing connection.\r\n"
    );
    assert!(matches!(o.effect, Some(Effect::Close)));

    // Logged in: nothing marked deleted is deleted when it closes.
    let mut s = logged_in();
    s.cfg = c;
    assert!(text(&say(&mut s, "DELE 1")).starts_with("+OK"));
    for line in ["NOOP", "RSET", "NOOP"] {
        assert!(text(&say(&mut s, line)).starts_with("+OK"), "{line}");
    }
    let o = say(&mut s, "NOOP");
    assert!(matches!(o.effect, Some(Effect::Close)), "{}", text(&o));
}

/// Issue item 8: a session that never logs in has a total lifetime.
#[test]
fn unauthenticated_sessions_have_a_lifetime() {
    let mut c = cfg(true);
    c.unauthenticated_lifetime = Duration::from_secs(60);
    let s = Session::new(c, false);
    let now = Instant::now();
    let left = s.lifetime_left(now).unwrap();
    assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
    assert_eq!(
        s.lifetime_left(now + Duration::from_secs(61)),
        Some(Duration::ZERO)
    );
    assert_eq!(
        logged_in().lifetime_left(now + Duration::from_secs(3600)),
        None
    );
}
