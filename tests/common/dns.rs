//! A real DNS server (dnsmasq) on loopback, for the end-to-end DNS tests.
//! Logic tests of DNS verdicts run in-process on the scripted resolver of
//! `betomail::dns` instead.

use crate::common::free_udp_port;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Client hosts for FCrDNS tests (SEED-8), by source address:
/// 127.0.0.2 pass, .3 mismatch (PTR bad.test -> 127.0.0.99), .4 PTR without
/// A/AAAA, .5 no PTR, .6 two PTR names of which the second matches; queries
/// for [`TIMEOUT_ZONE`] (127.0.0.9) are never answered.
pub const FCRDNS_RECORDS: &[&str] = &[
    "host-record=good.test,127.0.0.2",
    "ptr-record=3.0.0.127.in-addr.arpa,bad.test",
    "address=/bad.test/127.0.0.99",
    "ptr-record=4.0.0.127.in-addr.arpa,noa.test",
    "ptr-record=6.0.0.127.in-addr.arpa,other.test",
    "ptr-record=6.0.0.127.in-addr.arpa,multi.test",
    "address=/other.test/127.0.0.98",
    "address=/multi.test/127.0.0.6",
];
pub const TIMEOUT_ZONE: &str = "9.0.0.127.in-addr.arpa";

/// dnsmasq on a loopback port, authoritative for `.test` and
/// `127.in-addr.arpa`, answering only from the records it is given.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    /// Queries forwarded here are never answered (a timing-out DNS server).
    _blackhole: UdpSocket,
}

impl Dnsmasq {
    /// `records` are dnsmasq option lines, e.g. `host-record=ok.test,127.0.0.2`
    /// or `ptr-record=3.0.0.127.in-addr.arpa,bad.test`. Reverse zones listed
    /// in `timeouts` (e.g. `9.0.0.127.in-addr.arpa`) never get an answer.
    pub fn start(records: &[&str], timeouts: &[&str]) -> Dnsmasq {
        let dir = tempfile::tempdir().unwrap();
        let blackhole = UdpSocket::bind("127.0.0.1:0").unwrap();
        let hole = blackhole.local_addr().unwrap().port();
        let mut conf = String::from("local=/test/\nlocal=/127.in-addr.arpa/\n");
        for r in records {
            conf += r;
            conf += "\n";
        }
        for t in timeouts {
            conf += &format!("server=/{t}/127.0.0.1#{hole}\n");
        }
        let conf_path = dir.path().join("dnsmasq.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // The port is free when chosen but another process (or its TCP twin
        // in TIME-WAIT) may hold it by the time dnsmasq binds: try again.
        for _ in 0..10 {
            let port = free_udp_port();
            let mut child = Command::new(dnsmasq_path())
                .args([
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                    "--user=root",
                    "--pid-file=",
                    "--cache-size=0",
                    "--log-queries",
                    "--log-facility=-",
                ])
                .arg(format!("--port={port}"))
                .arg(format!("--conf-file={}", conf_path.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting dnsmasq (apt-get install dnsmasq-base)");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            if answers(addr, &mut child) {
                return Dnsmasq {
                    child,
                    addr,
                    _dir: dir,
                    _blackhole: blackhole,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }

    /// The `[dns]` table pointing betomail at this server.
    pub fn config(&self, timeout_ms: u64) -> String {
        format!(
            "[dns]\nnameservers = [\"{}\"]\ntimeout_ms = {timeout_ms}\n",
            self.addr
        )
    }
}

/// Whether a DNS server at `addr` answers a query before `child` exits.
fn answers(addr: SocketAddr, child: &mut Child) -> bool {
    // A minimal query for "x.test A"; any answer means it is up.
    let q: &[u8] =
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01x\x04test\x00\x00\x01\x00\x01";
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        let _ = sock.send_to(q, addr);
        let mut buf = [0u8; 512];
        if sock.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn dnsmasq_path() -> &'static str {
    if Path::new("/usr/sbin/dnsmasq").exists() {
        "/usr/sbin/dnsmasq"
    } else {
        "dnsmasq"
    }
}
