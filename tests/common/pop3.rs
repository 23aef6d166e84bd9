//! POP3 client helpers and the usual POP3 test server.

use crate::common::{Client, Dnsmasq, TestServer, LISTENERS};
use std::io::BufRead;
use std::net::SocketAddr;

impl Client {
    /// Lines up to the POP3 multi-line terminator "." (not included).
    pub fn multiline(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l == "." {
                return out;
            }
            out.push(l);
        }
    }
}

/// A server on `listeners` whose resolver is a dnsmasq on loopback with
/// `records`, so FCrDNS answers fast and offline (127.0.0.1: no PTR).
pub fn pop_server_with(
    head: &str,
    listeners: &str,
    records: &[&str],
    timeouts: &[&str],
) -> (TestServer, Dnsmasq) {
    let dns = Dnsmasq::start(records, timeouts);
    let server = TestServer::start(&format!("{head}\n{}", dns.config(1000)), listeners);
    (server, dns)
}

/// The standard listeners, a short failed-login delay, and `user`/`pw`.
pub fn pop_server(user: &str, pw: &str) -> (TestServer, Dnsmasq) {
    let (s, d) = pop_server_with(
        "[limits]\nauth_failure_delay = \"20ms\"\nauth_failure_max_delay = \"100ms\"\n",
        LISTENERS,
        &[],
        &[],
    );
    s.add_user(user, pw);
    (s, d)
}

/// Connects and logs in with USER/PASS, asserting each step succeeds.
pub fn pop_login(addr: SocketAddr, user: &str, pw: &str) -> Client {
    let mut c = Client::connect(addr);
    let greeting = c.line();
    assert!(greeting.starts_with("+OK"), "{greeting}");
    assert!(c.cmd(&format!("USER {user}")).starts_with("+OK"));
    let r = c.cmd(&format!("PASS {pw}"));
    assert!(r.starts_with("+OK"), "{r}");
    c
}

/// Sends a RETR/TOP command and returns the message octets, un-stuffed.
pub fn pop_fetch(c: &mut Client, cmd: &str) -> Vec<u8> {
    let first = c.cmd(cmd);
    assert!(first.starts_with("+OK"), "{cmd}: {first}");
    let mut out = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = c.reader.read_until(b'\n', &mut line).unwrap();
        assert!(n > 0, "connection closed inside {cmd}");
        if line == b".\r\n" {
            return out;
        }
        let body = if line.starts_with(b".") {
            &line[1..]
        } else {
            &line[..]
        };
        out.extend_from_slice(body);
    }
}
