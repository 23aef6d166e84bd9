//! End-to-end test harness, one file per concern:
//!
//! - `server.rs`: the `betomail serve` process under test (ready when it
//!   writes its ready line, see README "Readiness") and its admin CLI;
//! - `dns.rs`: dnsmasq on loopback for the end-to-end DNS tests;
//! - `client.rs`: a line-oriented TCP client, extended by `pop3.rs` and
//!   `smtp.rs` with each protocol's replies and helpers;
//! - `http.rs`: HTTP client and cookie-keeping `Browser` for the portal;
//! - `sinks.rs`: foreign SMTP servers that outbound delivery talks to;
//! - `mailbox.rs`: what a mailbox holds, read through the store API.
//!
//! Helpers of one area built on these live beside the tests that use them
//! (`tests/smtp_util`, `tests/outbound_util`).
//!
//! Everything is re-exported here, so tests `use common::*`.
//!
//! Each test binary compiles the whole harness and uses a different part
//! of it: what one leaves unused another uses, hence `allow(dead_code)`
//! and `allow(unused_imports)` on each module and re-export below.

use std::net::UdpSocket;
use std::process::Command;
use std::time::{Duration, Instant};

#[allow(dead_code)]
pub mod client;
#[allow(dead_code)]
pub mod dns;
#[allow(dead_code)]
pub mod http;
#[allow(dead_code)]
pub mod mailbox;
#[allow(dead_code)]
pub mod pop3;
#[allow(dead_code)]
pub mod server;
#[allow(dead_code)]
pub mod sinks;
#[allow(dead_code)]
pub mod smtp;

#[allow(unused_imports)]
pub use client::*;
#[allow(unused_imports)]
pub use dns::*;
#[allow(unused_imports)]
pub use http::*;
#[allow(unused_imports)]
pub use mailbox::*;
#[allow(unused_imports)]
pub use pop3::*;
#[allow(unused_imports)]
pub use server::*;
#[allow(unused_imports)]
pub use sinks::*;

/// Polls `f` until it is true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Runs a Python script (with args) and returns its output; panics with
/// the output on failure.
#[allow(dead_code)]
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python failed:\n{text}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[allow(dead_code)]
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
