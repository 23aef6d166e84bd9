use super::*;
use crate::smtp::command::parse;
use std::time::{Duration, Instant};

fn settings() -> Settings {
    Settings {
        hostname: "mail.be.test".into(),
        local_domains: vec!["be.test".into()],
        max_message_size: 1000,
        max_recipients: 3,
        max_bad_commands: 5,
        max_junk_commands: 100,
        unauthenticated_lifetime: Duration::from_secs(300),
        starttls: true,
        plaintext_auth: true,
        relay_by_auth: true,
        relay_by_grant: false,
        require_auth: false,
    }
}

fn account(name: &str, id: i64) -> Account {
    Account::for_test(name, id)
}

/// Drives a session, answering lookups from `users` and grants with `granted`.
struct Driver {
    s: Session,
    granted: bool,
}

impl Driver {
    fn new(settings: Settings) -> Driver {
        Driver {
            s: Session::new(settings, "127.0.0.2".parse().unwrap(), false),
            granted: false,
        }
    }

    fn step(&mut self, step: Step) -> Reply {
        match step {
            Step::Reply(r) | Step::Close(r) | Step::StartTls(r) => r,
            Step::Data { reply, .. } => reply,
            Step::Lookup { address } => {
                let found = ["btm0001@be.test", "btm0002@be.test", "postmaster@be.test"]
                    .iter()
                    .position(|a| a.eq_ignore_ascii_case(&address))
                    .map(|i| account(address.split('@').next().unwrap(), i as i64));
                let step = self.s.lookup_done(Ok(found));
                self.step(step)
            }
            Step::CheckGrant => {
                let step = self.s.grant_checked(Ok(self.granted));
                self.step(step)
            }
            Step::Verify { login, credential } => {
                let ok = matches!(&credential, Credential::Password(p) if p == "pw")
                    && (login == "btm0001" || login == "btm0001@be.test");
                let step = self.s.auth_done(if ok {
                    AuthResult::Ok(account("btm0001", 0))
                } else {
                    AuthResult::Failed
                });
                self.step(step)
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.cmd_bytes(line.as_bytes())
    }

    fn cmd_bytes(&mut self, line: &[u8]) -> String {
        let step = if self.s.in_auth() {
            self.s.auth_line(line)
        } else {
            self.s.handle(parse(line))
        };
        let r = self.step(step);
        format!("{} {}", r.code, r.lines.last().unwrap())
    }
}

#[test]
fn seed_replies_exactly() {
    let mut d = Driver::new(Settings {
        max_bad_commands: 10,
        ..settings()
    });
    d.cmd("EHLO c.test");
    assert_eq!(
        d.cmd("MAIL FROM:<test@be,to>"),
        "553 5.1.7 <test@be,to> Illegal comma in host name part"
    );
    assert_eq!(
        d.cmd_bytes("MAIL FROM:<test@be.to・>".as_bytes()),
        "553 5.1.7 <test@be.to???> Address contained invalid control characters"
    );
    assert_eq!(
        d.cmd_bytes(b"MAIL FROM:<test@be.to\x81\x45>"),
        "553 5.1.7 <test@be.to?E> Address contained invalid control characters"
    );
    assert_eq!(d.cmd("MAIL FROM:<someone@remote.test>"), "250 2.1.0 Ok");
    assert_eq!(
        d.cmd("RCPT TO:<test@be,to>"),
        "550 5.1.1 <test@be,to> User unknown"
    );
    assert_eq!(
        d.cmd_bytes("RCPT TO:<test@be.to・>".as_bytes()),
        "553 5.1.3 <test@be.to???> Address contained invalid control characters"
    );
    let mut d = Driver::new(settings());
    d.cmd("EHLO c.test");
    d.cmd("MAIL FROM:<someone@remote.test>");
    assert_eq!(
        d.cmd("RCPT TO:<nobody@be.test>"),
        "550 5.1.1 <nobody@be.test> User unknown"
    );
    assert_eq!(
        d.cmd("RCPT TO:<test@be.to>"),
        "553 5.7.1 <test@be.to> Relay operation rejected"
    );
    assert_eq!(d.cmd("RCPT TO:<BTM0001@Be.Test>"), "250 2.1.5 Ok");
    assert_eq!(d.cmd("DATA"), "354 End data with <CR><LF>.<CR><LF>");
}

#[test]
fn relay_tricks_refused_without_auth() {
    for trick in [
        "u%remote.test@be.test",
        "remote.test!u@be.test",
        "\"u@remote.test\"@be.test",
        "\"btm0001%remote.test\"@be.test",
        "u@[127.0.0.1]",
        "@be.test:u@remote.test",
        "u@remote.test",
        "u@REMOTE.test",
    ] {
        let mut d = Driver::new(settings());
        d.cmd("EHLO c.test");
        d.cmd("MAIL FROM:<a@remote.test>");
        assert_eq!(
            d.cmd(&format!("RCPT TO:<{trick}>")),
            format!("553 5.7.1 <{trick}> Relay operation rejected")
        );
    }
    let mut d = Driver::new(settings());
    d.cmd("EHLO c.test");
    d.cmd("MAIL FROM:<a@remote.test>");
    assert_eq!(
        d.cmd("RCPT TO:<u@be.test.>"),
        "501 5.1.3 <u@be.test.> Bad recipient address syntax"
    );
    assert_eq!(
        d.cmd("RCPT TO:<>"),
        "501 5.1.3 <> Bad recipient address syntax"
    );
}

/// Issue item 5: a literal that hides parameters was taken with 250.
#[test]
fn address_literals_follow_rfc_5321() {
    let mut d = Driver::new(settings());
    d.cmd("EHLO c.test");
    assert_ne!(
        &d.cmd("MAIL FROM:<a@[x\"> AUTH=<evil@bank.example> RET=FULL \"]>")[..3],
        "250"
    );
    assert_eq!(
        d.cmd("MAIL FROM:<a@[x\">"),
        "501 5.1.7 <a@[x\"> Bad sender address syntax"
    );
    assert_eq!(d.cmd("MAIL FROM:<a@[IPv6:::1]> AUTH=<>"), "250 2.1.0 Ok");
    assert_eq!(
        d.cmd("RCPT TO:<u@remote.test>"),
        "553 5.7.1 <u@remote.test> Relay operation rejected"
    );
}

#[test]
fn auth_then_relay_and_null_sender() {
    let mut d = Driver::new(settings());
    let ehlo = d.s.handle(parse(b"EHLO c.test"));
    let Step::Reply(r) = ehlo else { panic!() };
    assert!(r.lines.contains(&"AUTH PLAIN LOGIN CRAM-MD5".to_string()));
    assert!(r.lines.contains(&"AUTH=PLAIN LOGIN CRAM-MD5".to_string()));
    assert!(r.lines.contains(&"SIZE 1000".to_string()));
    assert_eq!(
        d.cmd("AUTH PLAIN AGJ0bTAwMDEAd3Jvbmc="),
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(d.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    assert_eq!(d.cmd("YnRtMDAwMUBiZS50ZXN0"), "334 UGFzc3dvcmQ6");
    assert_eq!(d.cmd("cHc="), "235 2.7.0 Authentication successful");
    assert_eq!(d.s.protocol(), "ESMTPA");
    assert_eq!(
        d.cmd("AUTH PLAIN AGJ0bTAwMDEAcHc="),
        "503 5.5.1 Error: already authenticated"
    );
    assert_eq!(d.cmd("MAIL FROM:<>"), "250 2.1.0 Ok");
    assert_eq!(d.cmd("RCPT TO:<u@remote.test>"), "250 2.1.5 Ok");
    assert_eq!(
        d.cmd("RCPT TO:<u%x.test@be.test>"),
        "553 5.7.1 <u%x.test@be.test> Relay operation rejected"
    );
    let Step::Data { tx, .. } = d.s.handle(parse(b"DATA")) else {
        panic!()
    };
    assert_eq!(tx.sender, "");
    assert_eq!(tx.remote, vec!["u@remote.test".to_string()]);
}

#[test]
fn auth_plain_and_cram_exchanges() {
    let mut d = Driver::new(settings());
    d.cmd("EHLO c.test");
    assert_eq!(d.cmd("AUTH PLAIN"), "334 ");
    assert_eq!(
        d.cmd("AGJ0bTAwMDEAcHc="),
        "235 2.7.0 Authentication successful"
    );
    let mut d = Driver::new(settings());
    d.cmd("EHLO c.test");
    let c = d.cmd("AUTH CRAM-MD5");
    let challenge =
        String::from_utf8(B64.decode(c.strip_prefix("334 ").unwrap()).unwrap()).unwrap();
    assert!(
        challenge.starts_with('<') && challenge.ends_with("@mail.be.test>"),
        "{challenge}"
    );
    let Step::Verify {
        login,
        credential: Credential::CramMd5 {
            challenge: c2,
            digest,
        },
    } = d.s.auth_line(B64.encode("btm0001 0123abcd").as_bytes())
    else {
        panic!()
    };
    assert_eq!(
        (login.as_str(), digest.as_str(), c2),
        ("btm0001", "0123abcd", challenge)
    );
    assert_eq!(
        d.cmd("AUTH X-UNKNOWN"),
        "504 5.5.4 Unrecognized authentication type"
    );
    assert_eq!(d.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    assert_eq!(d.cmd("*"), "501 5.0.0 Authentication cancelled");
    assert_eq!(d.cmd("AUTH PLAIN"), "334 ");
    assert_eq!(d.cmd("!!notbase64"), "501 5.5.2 Cannot decode response");
}

#[test]
fn auth_needs_tls_unless_plaintext_allowed() {
    let mut d = Driver::new(Settings {
        plaintext_auth: false,
        ..settings()
    });
    let Step::Reply(r) = d.s.handle(parse(b"EHLO c.test")) else {
        panic!()
    };
    assert!(!r.lines.iter().any(|l| l.starts_with("AUTH")));
    assert!(r.lines.contains(&"STARTTLS".to_string()));
    assert!(d
        .cmd("AUTH PLAIN AGJ0bTAwMDEAcHc=")
        .starts_with("538 5.7.11"));
    assert!(matches!(d.s.handle(parse(b"STARTTLS")), Step::StartTls(_)));
    d.s.tls_started();
    assert_eq!(
        d.cmd("MAIL FROM:<a@b.test>"),
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    let Step::Reply(r) = d.s.handle(parse(b"EHLO c.test")) else {
        panic!()
    };
    assert!(!r.lines.contains(&"STARTTLS".to_string()));
    assert!(r.lines.contains(&"AUTH=PLAIN LOGIN CRAM-MD5".to_string()));
    assert_eq!(
        d.cmd("AUTH PLAIN AGJ0bTAwMDEAcHc="),
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(d.s.protocol(), "ESMTPSA");
    assert_eq!(d.cmd("STARTTLS"), "503 5.5.1 TLS already active");
}

#[test]
fn mx_role_and_require_auth() {
    let mx = Settings {
        relay_by_auth: false,
        ..settings()
    };
    let mut d = Driver::new(mx);
    let Step::Reply(r) = d.s.handle(parse(b"EHLO c.test")) else {
        panic!()
    };
    assert!(!r.lines.iter().any(|l| l.starts_with("AUTH")));
    assert_eq!(
        d.cmd("AUTH PLAIN AGJ0bTAwMDEAcHc="),
        "502 5.5.1 AUTH not available on this service"
    );
    d.cmd("MAIL FROM:<a@remote.test>");
    assert_eq!(d.cmd("RCPT TO:<btm0002@be.test>"), "250 2.1.5 Ok");
    assert_eq!(
        d.cmd("RCPT TO:<x@remote.test>"),
        "553 5.7.1 <x@remote.test> Relay operation rejected"
    );

    let mut d = Driver::new(Settings {
        require_auth: true,
        ..settings()
    });
    d.cmd("EHLO c.test");
    assert_eq!(
        d.cmd("MAIL FROM:<a@remote.test>"),
        "530 5.7.0 Authentication required"
    );
    d.cmd("AUTH PLAIN AGJ0bTAwMDEAcHc=");
    assert_eq!(d.cmd("MAIL FROM:<a@remote.test>"), "250 2.1.0 Ok");
}

#[test]
fn pop_before_smtp_grant() {
    let pbs = Settings {
        relay_by_auth: false,
        relay_by_grant: true,
        ..settings()
    };
    let mut d = Driver::new(pbs.clone());
    d.cmd("EHLO c.test");
    d.cmd("MAIL FROM:<a@remote.test>");
    assert_eq!(
        d.cmd("RCPT TO:<x@remote.test>"),
        "553 5.7.1 <x@remote.test> Relay operation rejected"
    );
    assert_eq!(d.cmd("RCPT TO:<btm0001@be.test>"), "250 2.1.5 Ok");
    d.granted = true;
    assert_eq!(d.cmd("RCPT TO:<x@remote.test>"), "250 2.1.5 Ok");
}

#[test]
fn sequence_limits_and_bad_input() {
    let mut d = Driver::new(Settings {
        max_bad_commands: 10,
        ..settings()
    });
    assert_eq!(
        d.cmd("MAIL FROM:<a@b.test>"),
        "503 5.5.1 Error: send HELO/EHLO first"
    );
    d.cmd("HELO c.test");
    assert_eq!(
        d.cmd("RCPT TO:<btm0001@be.test>"),
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(d.cmd("DATA"), "503 5.5.1 Error: need MAIL command");
    d.cmd("MAIL FROM:<a@b.test> SIZE=1001");
    assert_eq!(d.cmd("MAIL FROM:<a@b.test> SIZE=999"), "250 2.1.0 Ok");
    assert_eq!(
        d.cmd("MAIL FROM:<a@b.test>"),
        "503 5.5.1 Error: nested MAIL command"
    );
    assert_eq!(d.cmd("DATA"), "554 5.5.1 Error: no valid recipients");
    for _ in 0..3 {
        assert_eq!(d.cmd("RCPT TO:<btm0001@be.test>"), "250 2.1.5 Ok");
    }
    assert_eq!(
        d.cmd("RCPT TO:<btm0002@be.test>"),
        "452 4.5.3 Error: too many recipients"
    );
    assert_eq!(d.cmd("RSET"), "250 2.0.0 Ok");
    assert_eq!(
        d.cmd("VRFY btm0001"),
        "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"
    );
    assert_eq!(
        d.cmd("RCPT TO:<btm0001@be.test>"),
        "503 5.5.1 Error: need MAIL command"
    );
    let mut d = Driver::new(settings());
    for _ in 0..4 {
        assert!(d.cmd("GARBAGE").starts_with("500 5.5.2"));
    }
    assert!(matches!(d.s.handle(parse(b"GARBAGE")), Step::Close(r) if r.code == 421));
}

#[test]
fn duplicate_recipients_deliver_once() {
    let mut d = Driver::new(Settings {
        max_recipients: 10,
        ..settings()
    });
    d.cmd("EHLO c.test");
    d.cmd("MAIL FROM:<a@b.test>");
    d.cmd("RCPT TO:<btm0001@be.test>");
    d.cmd("RCPT TO:<BTM0001@be.test>");
    d.cmd("RCPT TO:<postmaster>");
    let Step::Data { tx, .. } = d.s.handle(parse(b"DATA")) else {
        panic!()
    };
    assert_eq!(tx.local.len(), 2);
    assert_eq!(tx.accepted.len(), 3);
}

#[test]
fn rfc2195_cram_md5_example() {
    // RFC 2195 2: the client's response to the example challenge.
    let challenge = "<1896.697170952@postoffice.reston.mci.net>";
    let mut d = Driver::new(settings());
    d.cmd("EHLO c.test");
    d.s.auth = Some(AuthExchange::Cram(challenge.into()));
    let Step::Verify {
        login,
        credential: Credential::CramMd5 {
            challenge: c,
            digest,
        },
    } =
        d.s.auth_line(b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw")
    else {
        panic!()
    };
    assert_eq!((login.as_str(), c.as_str()), ("tim", challenge));
    assert_eq!(
        digest,
        crate::auth::cram_md5_digest("tanstaaftanstaaf", challenge)
    );
}

#[test]
fn random_input_never_panics() {
    // xorshift: deterministic garbage, biased toward command-like bytes.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words: [&[u8]; 24] = [
        b"EHLO ",
        b"HELO ",
        b"MAIL FROM:",
        b"RCPT TO:",
        b"DATA",
        b"RSET",
        b"AUTH ",
        b"PLAIN",
        b"LOGIN",
        b"CRAM-MD5",
        b"STARTTLS",
        b"<",
        b">",
        b"@",
        b"%",
        b"!",
        b"\"",
        b"be.test",
        b"[127.0.0.1]",
        b" SIZE=",
        b"=",
        b"*",
        b"\x00\xff\x81",
        b"AGJ0bTAwMDEAcHc=",
    ];
    for _ in 0..300 {
        let mut d = Driver::new(Settings {
            max_bad_commands: u32::MAX,
            relay_by_grant: true,
            ..settings()
        });
        for _ in 0..40 {
            let mut line = Vec::new();
            for _ in 0..next() % 6 {
                let r = next();
                if r % 4 == 0 {
                    line.push((r >> 8) as u8);
                } else {
                    line.extend_from_slice(words[(r >> 8) as usize % words.len()]);
                }
            }
            d.granted = next() % 2 == 0;
            let r = d.cmd_bytes(&line);
            assert!(
                r.is_ascii() && (200..600).contains(&r[..3].parse::<u16>().unwrap()),
                "{r}"
            );
        }
    }
}

#[test]
fn auth_edge_cases() {
    let mut d = Driver::new(Settings {
        max_bad_commands: 50,
        ..settings()
    });
    d.cmd("EHLO c.test");
    // RFC 4954 4: "=" is an empty initial response, which PLAIN cannot use.
    assert_eq!(d.cmd("AUTH PLAIN ="), "501 5.5.2 Malformed PLAIN response");
    assert!(!d.s.in_auth());
    // "*" cancels, as a response or as the initial response.
    assert_eq!(d.cmd("AUTH PLAIN"), "334 ");
    assert_eq!(d.cmd("*"), "501 5.0.0 Authentication cancelled");
    assert_eq!(d.cmd("AUTH LOGIN *"), "501 5.0.0 Authentication cancelled");
    assert!(!d.s.in_auth());
    // Bad base64 anywhere in the exchange ends it.
    assert_eq!(
        d.cmd("AUTH PLAIN AGJ0bTAwMDEAcHc"),
        "501 5.5.2 Cannot decode response"
    );
    assert_eq!(d.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    assert_eq!(d.cmd("YnRtMDAwMQ=="), "334 UGFzc3dvcmQ6");
    assert_eq!(d.cmd("cHc= x"), "501 5.5.2 Cannot decode response");
    assert_eq!(d.cmd("NOOP"), "250 2.0.0 Ok");
    // An overlong response line ends the exchange (RFC 4954 6): the next
    // line is a command again, not a password.
    assert_eq!(d.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    let step = d.s.too_long();
    assert_eq!(
        d.step(step).lines[0],
        "5.5.6 Authentication Exchange line is too long"
    );
    assert!(!d.s.in_auth());
    assert_eq!(d.cmd("NOOP"), "250 2.0.0 Ok");
    // Outside an exchange it is the plain line-too-long error.
    let step = d.s.too_long();
    assert_eq!(d.step(step).lines[0], "5.5.2 Error: line too long");
    // Octets that are not UTF-8 never reach the password check.
    assert!(matches!(
        d.s.handle(parse(format!("AUTH PLAIN {}", B64.encode(b"\0btm0001\0p\xffw")).as_bytes())),
        Step::Reply(r) if r.code == 535
    ));
    // Another user as authzid is refused like a wrong password.
    assert_eq!(
        d.cmd(&format!("AUTH PLAIN {}", B64.encode("other\0btm0001\0pw"))),
        "535 5.7.8 Authentication credentials invalid"
    );
    assert_eq!(
        d.cmd(&format!(
            "AUTH PLAIN {}",
            B64.encode("btm0001\0btm0001\0pw")
        )),
        "235 2.7.0 Authentication successful"
    );
    assert_eq!(
        d.cmd("AUTH PLAIN"),
        "503 5.5.1 Error: already authenticated"
    );
    // EHLO and RSET keep the authentication, end the transaction.
    d.cmd("MAIL FROM:<a@b.test>");
    assert_eq!(
        d.cmd("AUTH LOGIN"),
        "503 5.5.1 Error: already authenticated"
    );
    d.cmd("EHLO c.test");
    assert_eq!(
        d.cmd("RCPT TO:<u@remote.test>"),
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(d.cmd("MAIL FROM:<a@b.test>"), "250 2.1.0 Ok");
    assert_eq!(d.cmd("RCPT TO:<u@remote.test>"), "250 2.1.5 Ok");
}

#[test]
fn after_a_refused_data_the_transaction_goes_on_or_ends() {
    let mut d = Driver::new(Settings {
        max_bad_commands: 20,
        ..settings()
    });
    d.cmd("EHLO c.test");
    d.cmd("MAIL FROM:<a@b.test>");
    assert_eq!(
        d.cmd("RCPT TO:<nobody@be.test>"),
        "550 5.1.1 <nobody@be.test> User unknown"
    );
    // No recipient yet: the transaction stays open for more RCPTs.
    assert_eq!(d.cmd("DATA"), "554 5.5.1 Error: no valid recipients");
    assert_eq!(d.cmd("RCPT TO:<btm0001@be.test>"), "250 2.1.5 Ok");
    let Step::Data { tx, .. } = d.s.handle(parse(b"DATA")) else {
        panic!()
    };
    assert_eq!(tx.accepted, vec!["btm0001@be.test".to_string()]);
    // After the data, accepted or not, the transaction is over.
    assert_eq!(
        d.cmd("RCPT TO:<btm0001@be.test>"),
        "503 5.5.1 Error: need MAIL command"
    );
    assert_eq!(d.cmd("DATA"), "503 5.5.1 Error: need MAIL command");
    assert_eq!(d.cmd("VRFY"), "501 5.5.4 Syntax: VRFY/EXPN string");
}

#[path = "session_relay_tests.rs"]
mod relay;

/// Issue item 8: NOOP and friends do no work and cannot keep a session
/// open forever (Postfix's smtpd_junk_command_limit).
#[test]
fn junk_commands_end_the_session() {
    let mut d = Driver::new(Settings {
        max_junk_commands: 5,
        ..settings()
    });
    // The first greeting is not junk; each repeat is.
    d.cmd("EHLO c.test");
    for c in ["NOOP", "RSET", "VRFY x", "HELP", "HELO again"] {
        assert!(
            matches!(d.s.handle(parse(c.as_bytes())), Step::Reply(_)),
            "{c}"
        );
    }
    let Step::Close(r) = d.s.handle(parse(b"NOOP")) else {
        panic!("the sixth junk command is answered")
    };
    assert_eq!(
        r.to_wire(),
        "421 4.7.0 mail.be.test Error: too many junk commands\r\n"
    );

    // Each message starts the count afresh: RSET between messages is fine.
    let mut d = Driver::new(Settings {
        max_junk_commands: 2,
        ..settings()
    });
    d.cmd("EHLO c.test");
    for _ in 0..5 {
        assert_eq!(d.cmd("RSET"), "250 2.0.0 Ok");
        assert_eq!(d.cmd("NOOP"), "250 2.0.0 Ok");
        d.cmd("MAIL FROM:<a@remote.test>");
        d.cmd("RCPT TO:<btm0001@be.test>");
        assert!(matches!(d.s.handle(parse(b"DATA")), Step::Data { .. }));
    }
    // Greeting again after STARTTLS is required, not junk (RFC 3207 4.2).
    d.s.tls_started();
    assert!(matches!(d.s.handle(parse(b"EHLO c.test")), Step::Reply(_)));
}

/// Issue item 8: a session that never authenticates has a total lifetime.
#[test]
fn unauthenticated_sessions_have_a_lifetime() {
    let mut d = Driver::new(Settings {
        unauthenticated_lifetime: Duration::from_secs(60),
        ..settings()
    });
    let now = Instant::now();
    let left = d.s.lifetime_left(now).unwrap();
    assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
    assert_eq!(
        d.s.lifetime_left(now + Duration::from_secs(61)),
        Some(Duration::ZERO)
    );
    assert_eq!(
        d.s.lifetime_over().to_wire(),
        "421 4.7.0 mail.be.test Error: session too long without authentication\r\n"
    );
    d.cmd("EHLO c.test");
    d.cmd("AUTH PLAIN AGJ0bTAwMDEAcHc=");
    assert_eq!(d.s.lifetime_left(now + Duration::from_secs(3600)), None);
}
