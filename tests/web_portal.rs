//! The web portal over real HTTP: every route, login sessions and their
//! cookies, CSRF, bad input, limits, languages and the operator pages.

mod common;
use common::*;

const LIMITS: &str = "[limits]\nauth_failure_delay = \"10ms\"\nauth_failure_max_delay = \"20ms\"\n";

fn server() -> (TestServer, Dnsmasq) {
    let (s, d) = web_server_with(LIMITS, LISTENERS, &[]);
    s.add_user("btm0001", "secret-pw1");
    (s, d)
}

fn assert_security_headers(r: &HttpResponse) {
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert!(r
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
}

#[test]
fn public_pages_languages_and_not_found() {
    let (s, _d) = server();
    let mut b = Browser::new(s.addr("web"));
    let home = b.get("/");
    assert_eq!(home.status, 200);
    assert_security_headers(&home);
    assert!(home.body.contains("<html lang=\"en\">"), "{}", home.body);

    b.headers
        .push(("Accept-Language".into(), "ja,en;q=0.8".into()));
    let home = b.get("/");
    assert!(home.body.contains("<html lang=\"ja\">"));
    assert!(home.body.contains("メールサポート"));
    // ?lang= wins and is remembered in a cookie.
    let r = b.get("/faq?lang=en");
    assert!(r.body.contains("<html lang=\"en\">"));
    let c = r.header("set-cookie").unwrap();
    assert!(c.starts_with("bt_lang=en;"), "{c}");
    assert!(b.get("/dns-check").body.contains("<html lang=\"en\">"));

    let css = b.get("/style.css");
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert!(css.body.contains("@media"));

    let nf = b.get("/no/such/page?%3Cscript%3E");
    assert_eq!(nf.status, 404);
    assert!(!nf.body.contains("<script>"));
    assert_eq!(b.request("DELETE", "/faq", "").status, 405);
}

#[test]
fn faq_has_every_seed_entry_and_exact_replies() {
    let (s, _d) = server();
    let mut b = Browser::new(s.addr("web"));
    for lang in ["ja", "en"] {
        let faq = b.get(&format!("/faq?lang={lang}")).body;
        for id in [
            "Q1", "Q2", "Q3", "Q4", "Q5", "S1", "S2", "S3", "S4", "S5", "J1", "J2", "J3", "J4",
            "J5",
        ] {
            assert!(faq.contains(&format!("id=\"{id}\"")), "{lang} {id}");
        }
        for reply in [
            "550 5.1.1 &lt;test@be,test&gt; User unknown",
            "553 5.7.1 &lt;test@example.com&gt; Relay operation rejected",
            "553 5.1.7 &lt;test@be.test???&gt; Address contained invalid control characters",
            "553 5.1.7 &lt;test@be,test&gt; Illegal comma in host name part",
            "-ERR [AUTH] Password supplied for &quot;btm0001&quot; is incorrect",
            "-ERR [IN-USE] btm0001 lock busy! Is another session active?",
            "-ERR [SYS/PERM]",
        ] {
            assert!(faq.contains(reply), "{lang}: {reply}");
        }
    }
    assert!(b
        .get("/faq?lang=ja")
        .body
        .contains("DNSの正引きと逆引きが一致していないので、修正してほしい。"));
}

#[test]
fn login_cookie_flags_session_and_logout() {
    let (s, _d) = server();
    let mut b = Browser::new(s.addr("web"));
    // Not logged in: the customer pages send to the login page.
    for path in ["/settings", "/mail", "/mail/view?uid=x", "/admin"] {
        let r = b.get(path);
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/login"));
    }
    let page = b.get("/login");
    let token = Browser::csrf_in(&page.body);
    let lc = page.header("set-cookie").unwrap();
    assert!(
        lc.contains("HttpOnly") && lc.contains("SameSite=Strict"),
        "{lc}"
    );

    let bad = b.post(
        "/login",
        &[
            ("csrf", &token),
            ("login", "btm0001"),
            ("password", "wrong"),
        ],
    );
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("incorrect"));
    assert!(bad.body.contains("value=\"btm0001\""));
    let unknown = b.post(
        "/login",
        &[
            ("csrf", &Browser::csrf_in(&bad.body)),
            ("login", "<b>nobody</b>"),
            ("password", "x"),
        ],
    );
    assert_eq!(unknown.status, 401);
    assert!(
        unknown.body.contains("&lt;b&gt;nobody&lt;/b&gt;") && !unknown.body.contains("<b>nobody")
    );

    // Login by full address (SEED-1).
    let token = Browser::csrf_in(&unknown.body);
    let ok = b.post(
        "/login",
        &[
            ("csrf", &token),
            ("login", "BTM0001@be.test"),
            ("password", "secret-pw1"),
        ],
    );
    assert_eq!(ok.status, 303);
    assert_eq!(ok.header("location"), Some("/settings"));
    let cookie = ok
        .all_headers("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("bt_session="))
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    // No fixed Max-Age: the server ends the session after an idle hour, so
    // an active user is not logged out an hour after logging in.
    assert!(!cookie.contains("Max-Age"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let id = cookie
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("bt_session=");
    assert_eq!(id.len(), 64);
    assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));

    let settings = b.get("/settings");
    assert_eq!(settings.status, 200);
    assert!(settings.body.contains("btm0001@be.test"));
    assert_eq!(b.get("/login").status, 303);

    // Logout needs the session's CSRF token.
    let csrf = Browser::csrf_in(&settings.body);
    assert_eq!(b.post("/logout", &[]).status, 403);
    assert_eq!(b.post("/logout", &[("csrf", "0000")]).status, 403);
    let out = b.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(out.status, 303);
    assert_eq!(b.get("/settings").status, 303);
    // The old id is dead even if a client keeps sending it.
    b.cookies.insert("bt_session".into(), id.to_string());
    assert_eq!(b.get("/settings").status, 303);
    // A forged id is just "not logged in".
    b.cookies.insert("bt_session".into(), "00".repeat(32));
    assert_eq!(b.get("/mail").status, 303);
}

#[test]
fn login_csrf_garbage_and_body_limits() {
    let (s, _d) = server();
    let mut b = Browser::new(s.addr("web"));
    // No login form token: refused without checking the password.
    let r = b.post(
        "/login",
        &[("login", "btm0001"), ("password", "secret-pw1")],
    );
    assert_eq!(r.status, 403);
    let token = Browser::csrf_in(&b.get("/login").body);
    let r = b.post(
        "/login",
        &[
            ("csrf", "x"),
            ("login", "btm0001"),
            ("password", "secret-pw1"),
        ],
    );
    assert_eq!(r.status, 403);
    // Garbage bodies.
    let token2 = Browser::csrf_in(&b.get("/login").body);
    assert_ne!(token, token2);
    for body in [
        "%%%&&&===",
        "\u{0}\u{1}binary\u{7f}",
        "login=&password=",
        "a=b&a=c&&&",
    ] {
        let r = b.request("POST", "/login", body);
        assert!(matches!(r.status, 400 | 403), "{body:?}: {}", r.status);
    }
    let r = b.request(
        "POST",
        "/login",
        &format!("csrf={token2}&login=%FF%FE&password=%00"),
    );
    assert!(matches!(r.status, 400 | 401 | 403), "{}", r.status);

    // Too large: 413 before anything is read.
    let big = format!("csrf=x&login={}", "a".repeat(40_000));
    assert_eq!(b.request("POST", "/login", &big).status, 413);
    // A huge announced length is refused without waiting for the body.
    let huge =
        "POST /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 100000000\r\n\r\n";
    assert_eq!(http_raw(None, s.addr("web"), huge.as_bytes()).status, 413);
    // Not HTTP at all.
    let mut c = std::net::TcpStream::connect(s.addr("web")).unwrap();
    use std::io::{Read, Write};
    c.write_all(b"\x16\x03\x01garbage\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 400"),
        "{out:?}"
    );
    // The server still answers.
    assert_eq!(b.get("/").status, 200);
}

#[test]
fn repeated_failures_throttle_logins_from_that_ip() {
    let (s, _d) = server();
    // One login attempt with a fresh form; its status.
    let attempt = |b: &mut Browser, password: &str| {
        let token = Browser::csrf_in(&b.get("/login").body);
        b.post(
            "/login",
            &[
                ("csrf", &token),
                ("login", "btm0001"),
                ("password", password),
            ],
        )
        .status
    };
    let mut b = Browser::new(s.addr("web"));
    b.source = Some("127.0.0.7".into());
    let statuses: Vec<u16> = (0..11).map(|_| attempt(&mut b, "nope")).collect();
    assert_eq!(statuses.last(), Some(&429));
    // Even the right password is refused from that IP for now...
    assert_eq!(attempt(&mut b, "secret-pw1"), 429);
    // ...while another IP logs in at once.
    let mut other = Browser::new(s.addr("web"));
    other.login("btm0001", "secret-pw1");

    // The count is shared with the protocol servers: POP3 failures from an
    // address throttle the portal for it too.
    for _ in 0..10 {
        let mut c = Client::connect_from("127.0.0.6", s.addr("pop"));
        c.line();
        c.cmd("USER btm0001");
        assert!(c.cmd("PASS wrong").starts_with("-ERR [AUTH]"));
    }
    let mut b = Browser::new(s.addr("web"));
    b.source = Some("127.0.0.6".into());
    assert_eq!(attempt(&mut b, "secret-pw1"), 429);
}

#[test]
fn settings_change_password_and_smtp_password() {
    let (s, _d) = server();
    s.add_user("btm0002", "pw-of-0002");
    let mut b = Browser::new(s.addr("web"));
    let csrf = b.login("btm0001", "secret-pw1");
    let page = b.get("/settings").body;
    // Servers from the config: POP, SMTP AUTH, POP-before-SMTP, not the MX.
    assert!(page.contains("Incoming (POP3)") && page.contains("Outgoing (SMTP AUTH)"));
    assert!(page.contains("Outgoing (POP-before-SMTP)"));
    assert!(page.contains("mail.be.test"));
    assert!(page.contains("has no POP-before-SMTP grant"), "{page}");

    // A POP login from this IP opens POP-before-SMTP; the page shows until when.
    let mut pop = pop_login(s.addr("pop"), "btm0001", "secret-pw1");
    pop.cmd("QUIT");
    let page = b.get("/settings").body;
    assert!(
        page.contains("may send with POP-before-SMTP until"),
        "{page}"
    );

    // Another browser logged in with the old password.
    let mut stale = Browser::new(s.addr("web"));
    stale.login("btm0001", "secret-pw1");

    // CSRF is required.
    let fields = [
        ("current", "secret-pw1"),
        ("new", "new-pass-22"),
        ("new2", "new-pass-22"),
    ];
    assert_eq!(b.post("/settings/password", &fields).status, 403);
    let mut change = |current: &str, new: &str, new2: &str| {
        let f = [("current", current), ("new", new), ("new2", new2)];
        let mut with = vec![("csrf", csrf.as_str())];
        with.extend_from_slice(&f);
        b.post("/settings/password", &with)
    };
    // Mismatch, too short, wrong current.
    assert_eq!(change("secret-pw1", "aaaaaaaa1", "aaaaaaaa2").status, 400);
    assert_eq!(change("secret-pw1", "short", "short").status, 400);
    let r = change("bad", "new-pass-22", "new-pass-22");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("current password is incorrect"));
    let r = change("secret-pw1", "new-pass-22", "new-pass-22");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Your password was changed"));
    // This session goes on; the one that logged in with the old password ends.
    assert_eq!(b.get("/settings").status, 200);
    assert_eq!(stale.get("/settings").status, 303);
    // The new password works for POP3 too; the old one no longer does.
    pop_login(s.addr("pop"), "btm0001", "new-pass-22").cmd("QUIT");
    let mut other = Browser::new(s.addr("web"));
    other.login("btm0001", "new-pass-22");

    // Issue an SMTP AUTH password: shown once, then only its existence.
    let r = b.post(
        "/settings/smtp-password",
        &[("csrf", &csrf), ("action", "issue")],
    );
    assert_eq!(r.status, 200);
    let at = r.body.find("class=\"secret\">").unwrap() + 15;
    let pw = &r.body[at..at + 16];
    assert!(pw.bytes().all(|c| c.is_ascii_alphanumeric()), "{pw}");
    let list = s.cli(&["user", "list"], b"");
    assert!(String::from_utf8_lossy(&list.stdout).contains("smtp-password"));
    assert!(!b.get("/settings").body.contains(pw));
    let r = b.post(
        "/settings/smtp-password",
        &[("csrf", &csrf), ("action", "revoke")],
    );
    assert_eq!(r.status, 200);
    let list = s.cli(&["user", "list"], b"");
    assert!(!String::from_utf8_lossy(&list.stdout).contains("smtp-password"));
    let r = b.post(
        "/settings/smtp-password",
        &[("csrf", &csrf), ("action", "<x>")],
    );
    assert_eq!(r.status, 400);
    assert_eq!(
        b.post("/settings/smtp-password", &[("action", "issue")])
            .status,
        403
    );

    // A disabled account's session ends.
    assert!(s.cli(&["user", "disable", "btm0001"], b"").status.success());
    assert_eq!(b.get("/settings").status, 303);

    // So does one whose account was deleted, even when a new account gets
    // the same name.
    let mut gone = Browser::new(s.addr("web"));
    gone.login("btm0002", "pw-of-0002");
    assert!(s.cli(&["user", "del", "btm0002"], b"").status.success());
    s.add_user("btm0002", "pw-of-the-new-0002");
    assert_eq!(gone.get("/settings").status, 303);
}

#[test]
fn remote_mail_lists_pages_views_and_deletes() {
    let (s, _d) = server();
    for i in 0..30 {
        s.deliver(
            "btm0001",
            format!("From: Sender {i} <s{i}@example.jp>\nSubject: note {i:02} <b>\nDate: Tue, 1 Oct 2002 10:00:00 +0900\n\nbody {i}\n").as_bytes(),
        );
    }
    s.deliver(
        "btm0001",
        b"From: =?UTF-8?B?5bGx55Sw?= <y@example.jp>\nSubject: =?UTF-8?B?6KuL5rGC5pu4?=\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\nhi\n--x--\n",
    );
    let mut b = Browser::new(s.addr("web"));
    let csrf = b.login("btm0001", "secret-pw1");
    let first = b.get("/mail").body;
    assert!(first.contains("31 message(s)"), "{first}");
    // Newest first, decoded, escaped, with the attachment flag.
    assert!(first.contains("山田 &lt;y@example.jp&gt;") && first.contains("請求書"));
    assert!(first.contains(">attachment<"));
    assert!(first.contains("note 29 &lt;b&gt;") && !first.contains("note 29 <b>"));
    assert!(!first.contains("note 00"));
    assert!(first.contains("1 / 2"));
    let second = b.get("/mail?page=2").body;
    assert!(second.contains("note 00") && second.contains("2 / 2"));
    for q in [
        "page=0",
        "page=-1",
        "page=abc",
        "page=99999999999999999999",
        "page=5",
    ] {
        assert_eq!(b.get(&format!("/mail?{q}")).status, 200, "{q}");
    }

    // Headers of one message.
    let uid = {
        let at = second.rfind("name=\"uid\" value=\"").unwrap() + 18;
        second[at..].split('"').next().unwrap().to_string()
    };
    let view = b.get(&format!("/mail/view?uid={}", form_escape(&uid)));
    assert_eq!(view.status, 200);
    assert!(view.body.contains("Subject: note 00 &lt;b&gt;"));
    assert!(!view.body.contains("body 0"), "only the header is shown");
    assert_eq!(b.get("/mail/view?uid=nope").status, 404);
    assert_eq!(b.get("/mail/view").status, 404);

    // Delete: CSRF, nothing chosen, unknown ids, then the real one.
    assert_eq!(b.post("/mail/delete", &[("uid", &uid)]).status, 403);
    assert_eq!(b.post("/mail/delete", &[("csrf", &csrf)]).status, 400);
    let r = b.post(
        "/mail/delete",
        &[
            ("csrf", &csrf),
            ("uid", "../../etc/passwd"),
            ("uid", "x\u{0}"),
        ],
    );
    assert_eq!(r.status, 303);
    assert!(r.header("location").unwrap().contains("deleted=0"));
    let r = b.post(
        "/mail/delete",
        &[("csrf", &csrf), ("uid", &uid), ("page", "2")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/mail?page=2&deleted=1"));
    let after = b.get("/mail?page=2&deleted=1").body;
    assert!(after.contains("Deleted 1 message(s)."));
    assert!(after.contains("30 message(s)"));
    assert_eq!(mailbox(&s.data_dir(), "btm0001").len(), 30);
    // The web let go of the POP lock.
    pop_login(s.addr("pop"), "btm0001", "secret-pw1").cmd("QUIT");
}

#[test]
fn remote_mail_honors_the_pop_lock() {
    let (s, _d) = server();
    s.deliver("btm0001", b"Subject: stuck\n\nbody\n");
    let mut b = Browser::new(s.addr("web"));
    let csrf = b.login("btm0001", "secret-pw1");
    let list = b.get("/mail").body;
    let at = list.find("name=\"uid\" value=\"").unwrap() + 18;
    let uid = list[at..].split('"').next().unwrap().to_string();

    let mut pop = pop_login(s.addr("pop"), "btm0001", "secret-pw1");
    let page = b.get("/mail").body;
    assert!(
        page.contains("A mail program is checking this mailbox"),
        "{page}"
    );
    assert!(page.contains("lock busy! Is another session active?"));
    let r = b.post("/mail/delete", &[("csrf", &csrf), ("uid", &uid)]);
    assert_eq!(r.status, 409);
    assert!(r.body.contains("frees the lock the moment"));
    assert_eq!(mailbox(&s.data_dir(), "btm0001").len(), 1);

    // The POP session ends: the lock is gone at once and the delete works.
    pop.cmd("QUIT");
    let r = b.post("/mail/delete", &[("csrf", &csrf), ("uid", &uid)]);
    assert_eq!(r.status, 303);
    assert!(mailbox(&s.data_dir(), "btm0001").is_empty());
}

#[test]
fn operator_pages_and_metrics() {
    let (s, _d) = server();
    let out = s.cli(
        &["user", "add", "boss", "--admin", "--password-stdin"],
        b"boss-pass-1",
    );
    assert!(out.status.success());
    // A customer gets 403 on every operator route.
    let mut user = Browser::new(s.addr("web"));
    let ucsrf = user.login("btm0001", "secret-pw1");
    assert_eq!(user.get("/admin").status, 403);
    for path in ["/admin/accounts", "/admin/locks", "/admin/queue"] {
        let r = user.post(
            path,
            &[("csrf", &ucsrf), ("name", "btm0001"), ("action", "disable")],
        );
        assert_eq!(r.status, 403, "{path}");
    }
    assert!(!String::from_utf8_lossy(&s.cli(&["user", "list"], b"").stdout).contains("disabled"));

    let mut admin = Browser::new(s.addr("web"));
    let csrf = admin.login("boss", "boss-pass-1");
    let page = admin.get("/admin");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<a href=\"/admin\">"));
    assert!(!user.get("/settings").body.contains("<a href=\"/admin\">"));
    assert!(page.body.contains("btm0001@be.test") && page.body.contains("Accounts (2)"));
    assert_eq!(
        admin
            .get("/admin?q=boss")
            .body
            .matches("reset password")
            .count(),
        1
    );

    // Add (password generated, shown once), with the CLI's validation.
    let r = admin.post(
        "/admin/accounts",
        &[("csrf", &csrf), ("action", "add"), ("name", "btm0002")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let at = r.body.find("class=\"secret\">").unwrap() + 15;
    let pw = r.body[at..at + 16].to_string();
    pop_login(s.addr("pop"), "btm0002@be.test", &pw).cmd("QUIT");
    let r = admin.post(
        "/admin/accounts",
        &[("csrf", &csrf), ("action", "add"), ("name", "Bad Name<>")],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("must be 1-64") && !r.body.contains("Bad Name<>"));
    let r = admin.post(
        "/admin/accounts",
        &[
            ("csrf", &csrf),
            ("action", "add"),
            ("name", "x1"),
            ("address", "x1@elsewhere.example"),
        ],
    );
    assert_eq!(r.status, 400);
    let r = admin.post(
        "/admin/accounts",
        &[
            ("csrf", &csrf),
            ("action", "add"),
            ("name", "x1"),
            ("address", "x\r\nBcc: victim@remote.test\r\nX: <a@be.test"),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not a valid address"), "{}", r.body);
    assert_eq!(
        admin
            .post("/admin/accounts", &[("action", "add"), ("name", "x2")])
            .status,
        403
    );

    // Disable / enable / reset (which ends the account's portal sessions).
    let r = admin.post(
        "/admin/accounts",
        &[("csrf", &csrf), ("action", "disable"), ("name", "btm0002")],
    );
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&s.cli(&["user", "list"], b"").stdout).contains("disabled"));
    admin.post(
        "/admin/accounts",
        &[("csrf", &csrf), ("action", "enable"), ("name", "btm0002")],
    );
    let mut victim = Browser::new(s.addr("web"));
    victim.login("btm0002", &pw);
    assert_eq!(victim.get("/settings").status, 200);
    let r = admin.post(
        "/admin/accounts",
        &[("csrf", &csrf), ("action", "reset"), ("name", "btm0002")],
    );
    let at = r.body.find("class=\"secret\">").unwrap() + 15;
    let pw2 = r.body[at..at + 16].to_string();
    assert_ne!(pw, pw2);
    assert_eq!(victim.get("/settings").status, 303);
    // Generated passwords are shown, never logged.
    assert!(s.logged("new password for btm0002"));
    let log = s.log_text();
    assert!(!log.contains(&pw) && !log.contains(&pw2) && !log.contains("boss-pass-1"));
    pop_login(s.addr("pop"), "btm0002", &pw2).cmd("QUIT");
    let r = admin.post(
        "/admin/accounts",
        &[("csrf", &csrf), ("action", "reset"), ("name", "ghost")],
    );
    assert_eq!(r.status, 400);
    let r = admin.post(
        "/admin/accounts",
        &[("csrf", &csrf), ("action", "explode"), ("name", "btm0002")],
    );
    assert_eq!(r.status, 400);

    // Locks: a POP session shows up and the operator clears it.
    let _pop = pop_login(s.addr("pop"), "btm0001", "secret-pw1");
    let page = admin.get("/admin").body;
    assert!(page.contains(
        "name=\"name\" value=\"btm0001\"><button class=\"small danger\" type=\"submit\">clear"
    ));
    let metrics = admin.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert!(
        metrics.body.contains("betomail_pop_locks 1"),
        "{}",
        metrics.body
    );
    assert!(metrics.body.contains("betomail_relay_grants 1"));
    assert!(metrics
        .body
        .contains("betomail_accounts{state=\"enabled\"} 3"));
    assert!(metrics
        .body
        .contains("betomail_queue_recipients{state=\"pending\"} 0"));
    let r = admin.post(
        "/admin/locks",
        &[("csrf", &csrf), ("name", "btm0001@be.test")],
    );
    assert!(r.body.contains("lock of btm0001 cleared"));
    assert!(admin.get("/metrics").body.contains("betomail_pop_locks 0"));
    assert!(page.contains("POP-before-SMTP grants") && page.contains("127.0.0.1"));

    // Queue operations on an unknown id are clear errors.
    for action in ["retry", "delete"] {
        let r = admin.post(
            "/admin/queue",
            &[("csrf", &csrf), ("id", "nope"), ("action", action)],
        );
        assert_eq!(r.status, 400);
        assert!(r.body.contains("no queued message nope"));
    }
}

#[test]
fn forwarded_for_only_from_trusted_proxies() {
    let head = format!("{LIMITS}[web]\ntrusted_proxies = [\"127.0.0.1\"]\n");
    let (s, _d) = web_server_with(&head, LISTENERS, &[]);
    let mut b = Browser::new(s.addr("web"));
    b.headers
        .push(("X-Forwarded-For".into(), "1.2.3.4, 127.0.0.9".into()));
    let v: serde_json::Value = serde_json::from_str(&b.get("/api/dns-check").body).unwrap();
    assert_eq!(v["ip"], "127.0.0.9");
    assert!(b
        .get("/dns-check")
        .body
        .contains("reported by our own proxy"));
    // Metrics are for the operator: not for a visitor from elsewhere.
    let mut visitor = Browser::new(s.addr("web"));
    visitor
        .headers
        .push(("X-Forwarded-For".into(), "192.0.2.5".into()));
    assert_eq!(visitor.get("/metrics").status, 303);
    assert_eq!(b.get("/metrics").status, 200);
    // What nginx's $proxy_add_x_forwarded_for makes of a client that sends
    // its own junk entry: the client is still the rightmost untrusted hop.
    let mut junk = Browser::new(s.addr("web"));
    junk.headers
        .push(("X-Forwarded-For".into(), "junk, 198.51.100.7".into()));
    assert_eq!(junk.get("/metrics").status, 303);
    let v: serde_json::Value = serde_json::from_str(&junk.get("/api/dns-check").body).unwrap();
    assert_eq!(v["ip"], "198.51.100.7");
    // An unparsable client entry is refused, never read as the proxy itself.
    junk.headers = vec![("X-Forwarded-For".into(), "198.51.100.7, junk".into())];
    let r = junk.get("/metrics");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(junk.get("/login").status, 400);
    // A proxy that terminates HTTPS says so: cookies become Secure.
    b.headers.push(("X-Forwarded-Proto".into(), "https".into()));
    let login = b.get("/login");
    assert!(login.header("set-cookie").unwrap().contains("Secure"));
    // From an address that is not a trusted proxy, the headers are ignored.
    b.source = Some("127.0.0.8".into());
    let login = b.get("/login");
    assert!(!login.header("set-cookie").unwrap().contains("Secure"));
    let v: serde_json::Value = serde_json::from_str(&b.get("/api/dns-check").body).unwrap();
    assert_eq!(v["ip"], "127.0.0.8");
    assert!(!b
        .get("/dns-check")
        .body
        .contains("reported by our own proxy"));
}

#[test]
fn https_listener_sets_secure_cookies() {
    let listeners = format!(
        "{LISTENERS}\n[[listener]]\nname = \"webs\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\n"
    );
    let (s, _d) = web_server_with(LIMITS, &listeners, &[]);
    s.add_user("btm0001", "secret-pw1");
    let out = python(
        r#"
import ssl, sys, urllib.request, http.cookiejar, re
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
base = "https://" + sys.argv[1]
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a): return None
jar = http.cookiejar.CookieJar()
op = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), urllib.request.HTTPCookieProcessor(jar), NoRedirect)
page = op.open(base + "/login").read().decode()
token = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
data = ("csrf=%s&login=btm0001&password=secret-pw1" % token).encode()
try:
    op.open(base + "/login", data)
except urllib.error.HTTPError as e:
    print(e.code); print("\n".join(e.headers.get_all("Set-Cookie")))
"#,
        &[&s.addr("webs").to_string()],
    );
    assert!(out.starts_with("303"), "{out}");
    let cookie = out.lines().find(|l| l.starts_with("bt_session=")).unwrap();
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
}

/// Follows the language switch of `page` (the answer to a request for
/// `path`) and returns the page it leads to, after at most one redirect.
fn follow_lang_link(b: &mut Browser, path: &str, page: &HttpResponse) -> HttpResponse {
    let at = page.body.find("hreflang=").expect("a language link");
    let tag = &page.body[page.body[..at].rfind("<a href=\"").unwrap() + 9..at];
    let href = tag.split('"').next().unwrap().replace("&amp;", "&");
    let target = match href.strip_prefix('?') {
        Some(q) => format!("{}?{q}", path.split('?').next().unwrap()),
        None => href,
    };
    let r = b.get(&target);
    match r.header("location") {
        Some(to) if r.status == 303 => b.get(to),
        _ => r,
    }
}

#[test]
fn every_page_answering_a_post_links_to_a_page_in_the_other_language() {
    let (s, _d) = server();
    assert!(s
        .cli(
            &["user", "add", "boss", "--admin", "--password-stdin"],
            b"boss-pass-1"
        )
        .status
        .success());
    s.deliver("btm0001", b"Subject: stuck\n\nbody\n");
    let mut b = Browser::new(s.addr("web"));
    let csrf = b.login("btm0001", "secret-pw1");
    let list = b.get("/mail").body;
    let at = list.find("name=\"uid\" value=\"").unwrap() + 18;
    let uid = list[at..].split('"').next().unwrap().to_string();
    let pop = pop_login(s.addr("pop"), "btm0001", "secret-pw1");
    let mut answers = vec![
        (
            "/mail/delete",
            b.post("/mail/delete", &[("csrf", &csrf), ("uid", &uid)]),
        ),
        (
            "/settings/password",
            b.post(
                "/settings/password",
                &[("csrf", &csrf), ("current", "wrong")],
            ),
        ),
        (
            "/settings/smtp-password",
            b.post(
                "/settings/smtp-password",
                &[("csrf", &csrf), ("action", "set")],
            ),
        ),
    ];
    assert_eq!(answers[0].1.status, 409, "the delete-conflict page");
    for (path, page) in answers.drain(..) {
        assert!(page.body.contains("<html lang=\"en\">"), "{path}");
        let other = follow_lang_link(&mut b, path, &page);
        assert_eq!(other.status, 200, "{path}: {}", other.body);
        assert!(other.body.contains("<html lang=\"ja\">"), "{path}");
        b.get("/?lang=en");
    }
    drop(pop);

    let mut admin = Browser::new(s.addr("web"));
    let csrf = admin.login("boss", "boss-pass-1");
    for (path, fields) in [
        (
            "/admin/accounts",
            [("action", "disable"), ("name", "btm0001")],
        ),
        ("/admin/locks", [("name", "btm0001"), ("x", "")]),
        ("/admin/queue", [("id", "nope"), ("action", "retry")]),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let page = admin.post(path, &form);
        assert!(
            page.body.contains("<html lang=\"en\">"),
            "{path}: {}",
            page.body
        );
        let other = follow_lang_link(&mut admin, path, &page);
        assert_eq!(other.status, 200, "{path}: {}", other.body);
        assert!(other.body.contains("<html lang=\"ja\">"), "{path}");
        admin.get("/?lang=en");
    }

    // A failed login, and a GET page whose query says what it shows.
    let mut visitor = Browser::new(s.addr("web"));
    let token = Browser::csrf_in(&visitor.get("/login").body);
    let page = visitor.post(
        "/login",
        &[("csrf", &token), ("login", "x"), ("password", "y")],
    );
    assert_eq!(follow_lang_link(&mut visitor, "/login", &page).status, 200);
    let path = "/admin?q=boss";
    let page = admin.get(path);
    let other = follow_lang_link(&mut admin, path, &page);
    assert!(other.body.contains("<html lang=\"ja\">"));
    assert_eq!(
        other.body.matches("reset password").count(),
        1,
        "the search is kept"
    );
}

#[test]
fn logins_of_one_account_replace_its_oldest_sessions() {
    let (s, _d) = server();
    s.add_user("btm0002", "pw-of-0002");
    let mut other = Browser::new(s.addr("web"));
    other.login("btm0002", "pw-of-0002");
    // Default `web.max_sessions_per_account` is 10.
    let mut browsers: Vec<Browser> = (0..10)
        .map(|_| {
            let mut b = Browser::new(s.addr("web"));
            b.login("btm0001", "secret-pw1");
            b
        })
        .collect();
    // The first browser stays active: the least recently used one goes.
    assert_eq!(browsers[0].get("/settings").status, 200);
    let mut newest = Browser::new(s.addr("web"));
    newest.login("btm0001", "secret-pw1");
    assert_eq!(browsers[1].get("/settings").status, 303, "evicted");
    assert_eq!(browsers[0].get("/settings").status, 200);
    for b in &mut browsers[2..] {
        assert_eq!(b.get("/settings").status, 200);
    }
    // Another account's session is untouched.
    assert_eq!(other.get("/settings").status, 200);
}

/// 1,000 connections each park 60 KB of an unfinished request head: each
/// is answered 431 (or closed) once past `web.max_header_bytes`, the
/// server's memory stays bounded, and a normal visitor is served meanwhile.
#[test]
fn unfinished_request_heads_are_bounded() {
    use std::io::{Read, Write};
    use std::time::Duration;
    const CONNECTIONS: usize = 1000;
    let (s, _d) = server();
    let addr = s.addr("web");
    assert_eq!(Browser::new(addr).get("/").status, 200);
    let before = s.rss_kib();
    let pad = vec![b'a'; 60 * 1024];
    let mut parked: Vec<std::net::TcpStream> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
            // The server may answer and close before all of it is sent.
            let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ");
            let _ = c.write_all(&pad);
            c
        })
        .collect();
    let grown = s.rss_kib().saturating_sub(before);
    assert_eq!(Browser::new(addr).get("/faq").status, 200);
    // Before the bound: about 90 KiB per connection (88 MiB here).
    assert!(grown < 40 * 1024, "RSS grew by {grown} KiB");
    let mut refused = 0;
    for c in &mut parked {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        if answer.is_empty() || answer.starts_with(b"HTTP/1.1 431") {
            refused += 1;
        }
    }
    assert_eq!(refused, CONNECTIONS);
    eprintln!("RSS before {before} KiB, grown by {grown} KiB with {CONNECTIONS} heads");
}
