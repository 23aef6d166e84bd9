//! Relay decisions against address tricks and session state changes
//! (SEED-11, SEED-12), on the session driver of the parent module.

use super::*;

#[test]
fn more_relay_tricks_refused_on_mx() {
    let mx = Settings {
        relay_by_auth: false,
        ..settings()
    };
    let rejected = [
        "u@be.test.evil.test", // a local domain with extra labels
        "u@evil-be.test",      // a local domain as a suffix
        "u@xn--be-8ba.test",   // punycode look-alike
        "postmaster@remote.test",
        "\"btm0001\"@remote.test",
        "@be.test,@be.test:u@remote.test",
        "u%be.test@remote.test",
        "\"u\"@[127.0.0.1]",
        "btm0001@[IPv6:::ffff:127.0.0.1]",
        "\"btm0001 \"@be.test",
        "btm0001!be.test@be.test",
    ];
    for trick in rejected {
        let mut d = Driver::new(mx.clone());
        d.cmd("EHLO c.test");
        d.cmd("MAIL FROM:<a@remote.test>");
        assert_eq!(
            d.cmd(&format!("RCPT TO:<{trick}>")),
            format!("553 5.7.1 <{trick}> Relay operation rejected"),
        );
        // Without brackets (old clients): never accepted either.
        let r = d.cmd(&format!("RCPT TO:{trick}"));
        assert!(r.starts_with('5'), "{trick}: {r}");
        assert!(matches!(d.s.handle(parse(b"DATA")), Step::Reply(r) if r.code == 554));
    }
    let mut d = Driver::new(mx);
    d.cmd("EHLO c.test");
    d.cmd("MAIL FROM:<a@remote.test>");
    // Local forms that are ours stay local, whatever their case.
    for ok in [
        "<Postmaster>",
        "<POSTMASTER@BE.TEST>",
        "<@x.test:btm0002@Be.Test>",
    ] {
        assert_eq!(d.cmd(&format!("RCPT TO:{ok}")), "250 2.1.5 Ok", "{ok}");
    }
}

#[test]
fn relay_rights_never_leak_across_state_changes() {
    let refused = "553 5.7.1 <u@remote.test> Relay operation rejected";
    let mut d = Driver::new(Settings {
        max_bad_commands: 50,
        ..settings()
    });
    d.cmd("EHLO c.test");
    // A failed or unavailable AUTH grants nothing.
    assert!(d.cmd("AUTH PLAIN AGJ0bTAwMDEAd3Jvbmc=").starts_with("535"));
    let step = d.s.auth_done(AuthResult::TempFail("db".into()));
    assert_eq!(d.step(step).code, 454);
    d.cmd("MAIL FROM:<a@remote.test>");
    assert_eq!(d.cmd("RCPT TO:<u@remote.test>"), refused);
    d.cmd("RSET");
    assert_eq!(
        d.cmd("AUTH PLAIN AGJ0bTAwMDEAcHc="),
        "235 2.7.0 Authentication successful"
    );
    d.cmd("MAIL FROM:<a@remote.test>");
    assert_eq!(d.cmd("RCPT TO:<u@remote.test>"), "250 2.1.5 Ok");
    // RFC 3207 4.2: STARTTLS forgets the authentication and the transaction.
    assert!(matches!(d.s.handle(parse(b"STARTTLS")), Step::StartTls(_)));
    d.s.tls_started();
    assert_eq!(d.s.user(), None);
    d.cmd("EHLO c.test");
    d.cmd("MAIL FROM:<a@remote.test>");
    assert_eq!(d.cmd("RCPT TO:<u@remote.test>"), refused);

    // A grant is asked for at every RCPT: one that ends mid-transaction
    // relays the recipients given before, not those after.
    let mut d = Driver::new(Settings {
        relay_by_auth: false,
        relay_by_grant: true,
        ..settings()
    });
    d.cmd("EHLO c.test");
    d.cmd("MAIL FROM:<a@remote.test>");
    d.granted = true;
    assert_eq!(d.cmd("RCPT TO:<v@remote.test>"), "250 2.1.5 Ok");
    d.granted = false;
    assert_eq!(d.cmd("RCPT TO:<u@remote.test>"), refused);
    let Step::Data { tx, .. } = d.s.handle(parse(b"DATA")) else {
        panic!()
    };
    assert_eq!(tx.remote, vec!["v@remote.test".to_string()]);
    d.cmd("MAIL FROM:<a@remote.test>");
    assert_eq!(d.cmd("RCPT TO:<u@remote.test>"), refused);
    // A store failure is a temporary refusal, never a relay.
    let Step::CheckGrant = d.s.handle(parse(b"RCPT TO:<u@remote.test>")) else {
        panic!()
    };
    let step = d.s.grant_checked(Err(()));
    assert_eq!(d.step(step).code, 451);
}
