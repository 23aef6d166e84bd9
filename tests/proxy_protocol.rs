//! A POP3 listener behind a load balancer (`proxy_protocol = true`): the
//! client named in the PROXY header is the one FCrDNS (SEED-8) checks and
//! POP-before-SMTP (SEED-9) grants, and only the trusted balancer may
//! connect at all.

mod common;
use common::*;

const LISTENERS: &str = r#"
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:0"
plaintext_auth = true
grants_relay = true
proxy_protocol = true
proxy_trusted = ["127.0.0.1/32"]
"#;

const HEAD: &str = "[limits]\nauth_failure_delay = \"20ms\"\nproxy_header_timeout = \"1s\"\n";

/// A connection from the balancer (127.0.0.1) that first sends `header`.
fn through_balancer(s: &TestServer, header: &[u8]) -> Client {
    let mut c = Client::connect_from("127.0.0.1", s.addr("pop"));
    c.send_bytes(header);
    c
}

/// The server closed the connection without a word (a reset counts too:
/// it may close before reading what was sent).
fn closed_unanswered(c: &mut Client) -> bool {
    use std::io::Read;
    let mut b = [0u8; 1];
    matches!(c.reader.read(&mut b), Ok(0) | Err(_))
}

fn v2_tcp4(client: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1, 0x9c, 0x40, 0, 110]);
    h
}

#[test]
fn the_client_in_the_header_is_checked_and_granted() {
    let (s, _dns) = pop_server_with(HEAD, LISTENERS, FCRDNS_RECORDS, &[]);
    s.add_user("btm0001", "pw");
    // v2, as HAProxy's send-proxy-v2 sends it: 127.0.0.2 has matching DNS.
    let mut c = through_balancer(&s, &v2_tcp4([127, 0, 0, 2]));
    assert!(c.line().starts_with("+OK"));
    c.cmd("USER btm0001");
    assert!(c.cmd("PASS pw").starts_with("+OK"));
    c.cmd("QUIT");
    let grants = String::from_utf8(s.cli(&["grants"], b"").stdout).unwrap();
    assert!(grants.contains("127.0.0.2\tbtm0001"), "{grants}");
    assert!(!grants.contains("127.0.0.1\t"), "{grants}");
    // v1: 127.0.0.3's PTR name does not lead back to it (SEED-8).
    let mut c = through_balancer(&s, b"PROXY TCP4 127.0.0.3 127.0.0.1 40001 110\r\n");
    let refusal = c.line();
    assert!(refusal.starts_with("-ERR [SYS/PERM]"), "{refusal}");
    assert!(
        refusal.contains("127.0.0.3") && refusal.contains("bad.test"),
        "{refusal}"
    );
}

#[test]
fn only_the_trusted_balancer_with_a_header_is_served() {
    let (s, _dns) = pop_server_with(HEAD, LISTENERS, FCRDNS_RECORDS, &[]);
    // Another host cannot claim to be anyone.
    let mut c = Client::connect_from("127.0.0.2", s.addr("pop"));
    c.send_bytes(&v2_tcp4([127, 0, 0, 2]));
    assert!(closed_unanswered(&mut c));
    // The balancer itself must send the header first.
    let mut c = Client::connect_from("127.0.0.1", s.addr("pop"));
    c.send("CAPA and more than twelve octets\r\n");
    assert!(closed_unanswered(&mut c));
    // A balancer's health check (v1 UNKNOWN) is served as the balancer.
    let mut c = through_balancer(&s, b"PROXY UNKNOWN\r\n");
    assert!(c.line().starts_with("+OK"));
    assert!(s.logged("refused: not a trusted PROXY protocol sender"));
}
