//! Shared pieces of the outbound end-to-end tests: a sending server that
//! routes through a test DNS server, and the queue commands they drive.
#![allow(dead_code)] // each test file uses a different part

use crate::common::*;

pub const ONE_LISTENER: &str = r#"
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:0"
"#;

/// A sending server using `dns`, MX port `port`, retries every second;
/// `outbound` adds lines to the `[outbound]` table.
pub fn sender(dns: &Dnsmasq, port: u16, outbound: &str) -> TestServer {
    TestServer::start(
        &format!(
            "{}\n[outbound]\nmx_port = {port}\nretry_schedule = [\"1s\"]\nconnect_timeout = \"2s\"\n{outbound}\n",
            dns.config(1000)
        ),
        ONE_LISTENER,
    )
}

/// Queues a message (as `queue inject`); returns its queue id.
pub fn inject(s: &TestServer, from: &str, to: &[&str], msg: &[u8]) -> String {
    let mut args = vec!["queue", "inject", "--from", from, "--to"];
    args.extend_from_slice(to);
    let out = s.cli(&args, msg);
    assert!(out.status.success(), "inject: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.trim().strip_prefix("queued as ").unwrap().to_string()
}

pub fn queue_empty(s: &TestServer) -> bool {
    let out = s.cli(&["queue", "list"], b"");
    String::from_utf8_lossy(&out.stdout).contains("0 message(s)")
}
