//! SEED-8 at connect, against dnsmasq on loopback: clients from 127.0.0.x
//! hosts with each kind of DNS get the greeting or the refusal.

mod common;
use common::*;

const PORTAL: &str = "portal_url = \"http://portal.be.test:8080\"\n";

fn greeting(s: &TestServer, listener: &str, from: &str) -> (String, Client) {
    let mut c = Client::connect_from(from, s.addr(listener));
    (c.line(), c)
}

#[test]
fn each_kind_of_host() {
    let (s, _dns) = pop_server_with(PORTAL, LISTENERS, FCRDNS_RECORDS, &[TIMEOUT_ZONE]);
    s.add_user("btm0001", "pw");

    let (g, mut c) = greeting(&s, "pop", "127.0.0.2");
    assert!(g.starts_with("+OK betomail POP3 ready <"), "{g}");
    c.cmd("USER btm0001");
    assert!(c.cmd("PASS pw").starts_with("+OK"));
    c.cmd("QUIT");

    let (g, mut c) = greeting(&s, "pop", "127.0.0.3");
    assert!(g.starts_with("-ERR [SYS/PERM] "), "{g}");
    assert!(g.contains("127.0.0.3") && g.contains("bad.test"), "{g}");
    assert!(g.contains("do not match"), "{g}");
    assert!(g.contains("http://portal.be.test:8080/dns-check"), "{g}");
    assert!(c.closed());

    let (g, mut c) = greeting(&s, "pop2", "127.0.0.4");
    assert!(g.starts_with("-ERR [SYS/PERM] "), "{g}");
    assert!(g.contains("127.0.0.4") && g.contains("noa.test"), "{g}");
    assert!(g.contains("no forward"), "{g}");
    assert!(c.closed());

    // No PTR at all is not refused by the default policy.
    let (g, _c) = greeting(&s, "pop", "127.0.0.5");
    assert!(g.starts_with("+OK"), "{g}");

    // A lookup that times out lets the client in by default.
    let (g, _c) = greeting(&s, "pop", "127.0.0.9");
    assert!(g.starts_with("+OK"), "{g}");
    assert!(s.logged("FCrDNS lookup failed; client let in"));

    // The refusal reaches implicit-TLS clients inside TLS.
    let out = python(
        r#"
import poplib, ssl, sys, socket
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), source_address=("127.0.0.3", 0))
t = ctx.wrap_socket(s)
print(t.recv(1000).decode())
"#,
        &["127.0.0.1", &s.port("pop3s").to_string()],
    );
    assert!(out.starts_with("-ERR [SYS/PERM] "), "{out}");
}

#[test]
fn tempfail_option_and_require_ptr() {
    let listeners = r#"
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:0"
on_dns_error = "tempfail"

[[listener]]
name = "strict"
protocol = "pop3"
bind = "127.0.0.1:0"
fcrdns = "require-ptr"

[[listener]]
name = "open"
protocol = "pop3"
bind = "127.0.0.1:0"
fcrdns = "off"
"#;
    let (s, _dns) = pop_server_with(PORTAL, listeners, FCRDNS_RECORDS, &[TIMEOUT_ZONE]);
    let (g, mut c) = greeting(&s, "pop", "127.0.0.9");
    assert!(g.starts_with("-ERR [SYS/TEMP] "), "{g}");
    assert!(g.contains("127.0.0.9"), "{g}");
    assert!(c.closed());

    let (g, _c) = greeting(&s, "strict", "127.0.0.5");
    assert!(g.starts_with("-ERR [SYS/PERM] "), "{g}");
    assert!(g.contains("127.0.0.5"), "{g}");
    let (g, _c) = greeting(&s, "strict", "127.0.0.2");
    assert!(g.starts_with("+OK"), "{g}");

    let (g, _c) = greeting(&s, "open", "127.0.0.3");
    assert!(g.starts_with("+OK"), "{g}");
}
