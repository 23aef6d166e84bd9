//! SMTP AUTH submission (SEED-1, SEED-3, SEED-10, SEED-12) with real
//! clients: Python smtplib and swaks.

mod common;
mod smtp_util;
use common::*;
use smtp_util::*;

const AUTH: &str = r#"
import smtplib, sys
host, port, mech, user, pw, rcpt = sys.argv[1:7]
s = smtplib.SMTP(host, int(port), timeout=30)
s.ehlo("client.test")
print("features", s.esmtp_features.get("auth", ""))
try:
    s.login(user, pw) if mech == "any" else None
    if mech != "any":
        s.user, s.password = user, pw
        code, resp = s.auth(mech, getattr(s, "auth_" + mech.lower().replace("-", "_")))
    print("auth ok")
except smtplib.SMTPAuthenticationError as e:
    print("auth failed", e.smtp_code, e.smtp_error.decode())
    s.quit(); sys.exit(0)
s.mail("btm0001@be.test")
code, msg = s.rcpt(rcpt)
print("rcpt", code, msg.decode())
code, msg = s.data(b"Subject: auth test\r\n\r\nbody\r\n")
print("data", code, msg.decode())
s.quit()
"#;

fn auth(s: &TestServer, mech: &str, user: &str, pw: &str) -> String {
    let a = s.addr("smtpa");
    python(
        AUTH,
        &[
            &a.ip().to_string(),
            &a.port().to_string(),
            mech,
            user,
            pw,
            "friend@remote.test",
        ],
    )
}

#[test]
fn plain_login_cram_md5_by_name_and_address() {
    let s = server("");
    let out = s.cli(
        &["user", "secret", "btm0001", "--secret-stdin"],
        b"tanstaaf\n",
    );
    assert!(out.status.success(), "{out:?}");
    for (mech, pw) in [
        ("PLAIN", "pass1"),
        ("LOGIN", "pass1"),
        ("CRAM-MD5", "tanstaaf"),
    ] {
        for user in ["btm0001", "btm0001@be.test", "BTM0001@BE.TEST"] {
            let out = auth(&s, mech, user, pw);
            assert!(
                out.contains("features  PLAIN LOGIN CRAM-MD5")
                    || out.contains("PLAIN LOGIN CRAM-MD5"),
                "{out}"
            );
            assert!(out.contains("auth ok"), "{mech} {user}: {out}");
            assert!(out.contains("rcpt 250 2.1.5 Ok"), "{out}");
            assert!(out.contains("data 250 2.0.0 Ok: queued as "), "{out}");
        }
    }
    // CRAM-MD5 needs a shared secret; btm0002 has none.
    let out = auth(&s, "CRAM-MD5", "btm0002", "pass2");
    assert!(
        out.contains("auth failed 535 5.7.8 Authentication credentials invalid"),
        "{out}"
    );
    assert_eq!(queue_ids(&s).len(), 9);
    let out = s.cli(&["queue", "show", &queue_ids(&s)[0]], b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("friend@remote.test") && text.contains("pending"),
        "{text}"
    );
}

#[test]
fn separate_smtp_password_and_failures() {
    let s = server("[limits]\nauth_failure_delay = \"200ms\"\n");
    assert!(auth(&s, "PLAIN", "btm0001", "wrong")
        .contains("auth failed 535 5.7.8 Authentication credentials invalid"));
    let out = s.cli(
        &["user", "smtp-password", "btm0001", "--password-stdin"],
        b"smtp-secret\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(auth(&s, "LOGIN", "btm0001", "smtp-secret").contains("auth ok"));
    // SEED-3: once issued, the SMTP password replaces the account password here.
    assert!(auth(&s, "PLAIN", "btm0001", "pass1").contains("auth failed 535"));
    // The delay grows with each failure from one IP.
    let t = std::time::Instant::now();
    assert!(auth(&s, "PLAIN", "btm0002", "nope").contains("auth failed 535"));
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn relay_refused_without_auth_on_every_role() {
    let s = server("");
    for l in ["smtpa", "smtp", "mx"] {
        let mut c = ehlo(s.addr(l));
        assert_eq!(c.cmd("MAIL FROM:<btm0001@be.test>"), "250 2.1.0 Ok");
        assert_eq!(
            c.cmd("RCPT TO:<test@be.to>"),
            "553 5.7.1 <test@be.to> Relay operation rejected"
        );
        assert_eq!(
            c.cmd("RCPT TO:<btm0002%remote.test@be.test>"),
            "553 5.7.1 <btm0002%remote.test@be.test> Relay operation rejected"
        );
        assert_eq!(
            c.cmd("RCPT TO:<u@[127.0.0.1]>"),
            "553 5.7.1 <u@[127.0.0.1]> Relay operation rejected"
        );
        assert_eq!(
            c.cmd("RCPT TO:<@be.test:u@remote.test>"),
            "553 5.7.1 <@be.test:u@remote.test> Relay operation rejected"
        );
        // Local recipients are accepted from anyone.
        assert_eq!(c.cmd("RCPT TO:<btm0002@be.test>"), "250 2.1.5 Ok");
        assert_eq!(c.cmd("QUIT"), "221 2.0.0 Bye");
    }
    assert!(queue_ids(&s).is_empty());
}

#[test]
fn require_auth_listener_and_legacy_auth_line() {
    let s = server("");
    let mut c = Client::connect(s.addr("submission"));
    c.line();
    c.send("EHLO client.test\r\n");
    let ehlo = c.smtp_reply();
    // tls = starttls and no plaintext_auth: AUTH only after STARTTLS.
    assert!(ehlo.iter().any(|l| l == "250-STARTTLS"), "{ehlo:?}");
    assert!(!ehlo.iter().any(|l| l.contains("AUTH")), "{ehlo:?}");
    assert_eq!(
        c.cmd("MAIL FROM:<btm0001@be.test>"),
        "530 5.7.0 Authentication required"
    );

    let mut c = Client::connect(s.addr("smtpa"));
    c.line();
    c.send("EHLO client.test\r\n");
    let ehlo = c.smtp_reply();
    assert!(
        ehlo.contains(&"250-AUTH PLAIN LOGIN CRAM-MD5".to_string()),
        "{ehlo:?}"
    );
    assert!(
        ehlo.contains(&"250-AUTH=PLAIN LOGIN CRAM-MD5".to_string()),
        "{ehlo:?}"
    );
    assert!(ehlo.iter().any(|l| l.starts_with("250-SIZE ")), "{ehlo:?}");
}

#[test]
fn swaks_auth_over_starttls_and_null_sender() {
    let s = server("");
    let a = s.addr("submission");
    for (mech, user) in [("PLAIN", "btm0001"), ("LOGIN", "btm0001@be.test")] {
        let out = std::process::Command::new("swaks")
            .args([
                "--server",
                &a.ip().to_string(),
                "--port",
                &a.port().to_string(),
            ])
            .args([
                "--tls",
                "--auth",
                mech,
                "--auth-user",
                user,
                "--auth-password",
                "pass1",
            ])
            .args([
                "--from",
                "<>",
                "--to",
                "someone@remote.test",
                "--helo",
                "client.test",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("<~  235 2.7.0 Authentication successful"),
            "{text}"
        );
        assert!(text.contains("<~  250 2.0.0 Ok: queued as"), "{text}");
    }
    let ids = queue_ids(&s);
    assert_eq!(ids.len(), 2);
    let out = s.cli(&["queue", "show", &ids[0]], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("from:     <>"));
    // The queued copy carries our trace header with the TLS and AUTH facts.
    let file = std::fs::read(s.data_dir().join("queue").join(&ids[0])).unwrap();
    let text = String::from_utf8_lossy(&file);
    assert!(text.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby mail.be.test (betomail) with ESMTPSA\r\n\t(using TLSv1_3"), "{text}");
    assert!(text.contains("(authenticated as btm0001)"), "{text}");
}

#[test]
fn implicit_tls_submission() {
    let s = server("");
    let a = s.addr("smtps");
    let out = python(
        r#"
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL(sys.argv[1], int(sys.argv[2]), context=ctx, timeout=30)
s.ehlo("client.test")
print("starttls" in s.esmtp_features, s.esmtp_features.get("auth", "").strip())
s.login("btm0002@be.test", "pass2")
print(s.sendmail("btm0002@be.test", ["btm0001@be.test"], b"Subject: over tls\r\n\r\nx\r\n"))
s.quit()
"#,
        &[&a.ip().to_string(), &a.port().to_string()],
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["False PLAIN LOGIN CRAM-MD5 PLAIN LOGIN CRAM-MD5", "{}"]
    );
    let got = pop_messages(s.addr("pop"), "btm0001", "pass1");
    let text = String::from_utf8_lossy(&got[0]);
    assert!(text.starts_with("Return-Path: <btm0002@be.test>\r\nReceived: from client.test ([127.0.0.1])\r\n\tby mail.be.test (betomail) with ESMTPSA\r\n\t(using TLSv1_3 "), "{text}");
    assert!(
        text.contains("\t(authenticated as btm0002)\r\n\tfor <btm0001@be.test>;\r\n"),
        "{text}"
    );
}

#[test]
fn overlong_auth_response_ends_the_exchange() {
    let s = server("");
    let mut c = ehlo(s.addr("smtpa"));
    assert_eq!(c.cmd("AUTH LOGIN"), "334 VXNlcm5hbWU6");
    // Longer than [limits] max_line_length (4096): the exchange is over and
    // the next line is a command, not the username.
    assert_eq!(
        c.cmd(&"QUFB".repeat(2000)),
        "500 5.5.6 Authentication Exchange line is too long"
    );
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
    assert_eq!(c.cmd("AUTH PLAIN ="), "501 5.5.2 Malformed PLAIN response");
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
}
