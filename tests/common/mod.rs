//! End-to-end test harness: starts the real `betomail` binary on ephemeral
//! loopback ports in a temporary data dir, and a real DNS server (dnsmasq)
//! on loopback with the records a test needs.
#![allow(dead_code)] // each test file uses a different part of the harness

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_betomail");

/// The usual listener set of the SPEC's example, all on port 0.
pub const LISTENERS: &str = r#"
[[listener]]
name = "pop"
protocol = "pop3"
bind = "127.0.0.1:0"
plaintext_auth = true
grants_relay = true

[[listener]]
name = "pop2"
protocol = "pop3"
bind = "127.0.0.1:0"
plaintext_auth = true

[[listener]]
name = "pop3s"
protocol = "pop3"
bind = "127.0.0.1:0"
tls = "implicit"

[[listener]]
name = "mx"
protocol = "smtp"
bind = "127.0.0.1:0"
relay_by = []

[[listener]]
name = "smtp"
protocol = "smtp"
bind = "127.0.0.1:0"
relay_by = ["pop-before-smtp"]

[[listener]]
name = "smtpa"
protocol = "smtp"
bind = "127.0.0.1:0"
relay_by = ["auth"]
plaintext_auth = true

[[listener]]
name = "web"
protocol = "http"
bind = "127.0.0.1:0"
"#;

pub struct TestServer {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    addrs: HashMap<String, SocketAddr>,
    /// Lines the server printed to stderr, collected in the background.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Soft and hard RLIMIT_NOFILE of the server process, when set.
    fd_limit: Option<u64>,
}

impl TestServer {
    /// `head` is TOML placed before the listeners (top-level keys and
    /// tables); `listeners` is the `[[listener]]` list (e.g. [`LISTENERS`]).
    /// `data_dir`, `hostname` and `local_domains` are set unless `head` does.
    pub fn start(head: &str, listeners: &str) -> TestServer {
        let mut s = Self::configure(head, listeners);
        s.spawn();
        s
    }

    /// Like [`Self::start`], under an open-file limit of `nofile` (soft and
    /// hard, so the server cannot raise it).
    pub fn start_with_fd_limit(head: &str, listeners: &str, nofile: u64) -> TestServer {
        let mut s = Self::configure(head, listeners);
        s.fd_limit = Some(nofile);
        s.spawn();
        s
    }

    fn configure(head: &str, listeners: &str) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::new();
        if !head.contains("data_dir") {
            text += &format!("data_dir = {:?}\n", dir.path().join("data"));
        }
        if !head.contains("hostname") {
            text += "hostname = \"mail.be.test\"\n";
        }
        if !head.contains("local_domains") {
            text += "local_domains = [\"be.test\"]\n";
        }
        text += head;
        if !head.contains("[dns]") {
            // Never the system resolver: tests send traffic only to loopback.
            // Nothing listens on the discard port, so lookups fail at once.
            text += "\n[dns]\nnameservers = [\"127.0.0.1:9\"]\ntimeout_ms = 300\n";
        }
        text += "\n";
        text += listeners;
        let config = dir.path().join("betomail.toml");
        std::fs::write(&config, text).unwrap();
        TestServer {
            child: None,
            dir,
            config,
            addrs: HashMap::new(),
            log: Default::default(),
            fd_limit: None,
        }
    }

    /// The SPEC's listener set with defaults.
    pub fn start_default() -> TestServer {
        Self::start("", LISTENERS)
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("BETOMAIL_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(n) = self.fd_limit {
            limit_open_files(&mut cmd, n);
        }
        let mut child = cmd.spawn().expect("starting betomail serve");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut addrs = HashMap::new();
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                // "  <name> <protocol> <addr> tls=<mode>"
                let words: Vec<&str> = line.split_whitespace().collect();
                if line.starts_with("  ") && words.len() >= 3 {
                    if let Ok(a) = words[2].parse::<SocketAddr>() {
                        addrs.insert(words[0].to_string(), a);
                    }
                }
                if line.starts_with("add an account") {
                    let _ = tx.send(addrs.clone());
                }
                line.clear();
            }
            let _ = tx.send(addrs);
        });
        self.addrs = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server did not start; log:\n{}", self.log_text()));
        if self.addrs.is_empty() {
            panic!("server printed no listeners; log:\n{}", self.log_text());
        }
        self.child = Some(child);
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        *self
            .addrs
            .get(listener)
            .unwrap_or_else(|| panic!("no listener {listener}"))
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.addr(listener).port()
    }

    /// The server process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Whether the server logged `needle` within 5 s (its stderr is read by
    /// a background thread, so a line can lag behind the reply it follows).
    pub fn logged(&self, needle: &str) -> bool {
        wait_until(Duration::from_secs(5), || self.log_text().contains(needle))
    }

    /// Runs `betomail --config <ours> ARGS` with `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &[u8]) -> Output {
        cli_with_config(&self.config, args, stdin)
    }

    pub fn add_user(&self, name: &str, password: &str) {
        let out = self.cli(
            &["user", "add", name, "--password-stdin"],
            password.as_bytes(),
        );
        assert!(out.status.success(), "user add: {out:?}");
    }

    pub fn deliver(&self, to: &str, message: &[u8]) {
        let out = self.cli(&["deliver", "--to", to], message);
        assert!(out.status.success(), "deliver: {out:?}");
    }

    /// The server process, for reading its `/proc/<pid>` entries.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// A `/proc/<pid>/status` figure in KiB, e.g. `VmRSS` or `VmHWM` (peak).
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let _ = c.wait();
        }
    }

    /// Starts again on the same config and data (ports change when 0).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

/// Runs `cmd` under an open-file limit of `n`, soft and hard.
pub fn limit_open_files(cmd: &mut Command, n: u64) {
    let limit = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: setrlimit is async-signal-safe, as pre_exec requires.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- betomail log ---\n{}", self.log_text());
        }
    }
}

pub fn cli_with_config(config: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running betomail");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// A TCP connection from a chosen loopback source address (127.0.0.x plays
/// a different client host).
pub fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src: SocketAddr = format!("{source}:0").parse().unwrap();
    sock.bind(&src.into()).unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(5))
        .unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// A line-oriented client for raw protocol tests.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub stream: TcpStream,
}

impl Client {
    pub fn connect(to: SocketAddr) -> Client {
        Self::connect_from("127.0.0.1", to)
    }

    pub fn connect_from(source: &str, to: SocketAddr) -> Client {
        let stream = connect_from(source, to);
        Client {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
        }
    }

    /// One reply line, without CRLF ("" at EOF).
    pub fn line(&mut self) -> String {
        let mut buf = Vec::new();
        self.reader.read_until(b'\n', &mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_string()
    }

    pub fn send(&mut self, data: &str) {
        self.stream.write_all(data.as_bytes()).unwrap();
    }

    pub fn send_bytes(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap();
    }

    /// Sends `cmd` + CRLF and returns the first reply line.
    pub fn cmd(&mut self, cmd: &str) -> String {
        self.send(&format!("{cmd}\r\n"));
        self.line()
    }

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

    /// An SMTP reply: all its lines, the last without '-'.
    pub fn smtp_reply(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            let more = l.as_bytes().get(3) == Some(&b'-');
            out.push(l);
            if !more {
                return out;
            }
        }
    }

    /// True when the server has closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0))
    }
}

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

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs a Python script (with args) and returns its output; panics with
/// the output on failure.
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

// ---- POP3 helpers ----

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

/// The stored files of `account`'s Maildir (new/ and cur/), oldest name first.
pub fn maildir_files(server: &TestServer, account: &str) -> Vec<PathBuf> {
    maildir_paths(&server.data_dir(), account)
}

fn maildir_paths(data_dir: &Path, account: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(data_dir.join("mail").join(account).join(sub))
                .into_iter()
                .flatten()
                .map(|e| e.unwrap().path())
        })
        .collect();
    files.sort();
    files
}

// ---- outbound delivery helpers ----

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A foreign SMTP server (aiosmtpd, `tests/support/smtp_sink.py`) on
/// `addr:port` that stores what it accepts; `args` select misbehaviour.
pub struct SmtpSink {
    child: Child,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    pub fn start(addr: &str, port: u16, args: &[&str]) -> SmtpSink {
        let dir = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--addr", addr, "--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path().join("msgs"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/install-test-deps.sh)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "READY", "smtp sink did not start");
        SmtpSink { child, dir }
    }

    /// Accepted messages in order: (envelope JSON, exact octets).
    pub fn messages(&self) -> Vec<(serde_json::Value, Vec<u8>)> {
        let dir = self.dir.path().join("msgs");
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let meta = std::fs::read_to_string(p.with_extension("json")).unwrap();
                (
                    serde_json::from_str(&meta).unwrap(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<(serde_json::Value, Vec<u8>)> {
        wait_until(timeout, || self.messages().len() >= n);
        self.messages()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The messages in a local mailbox (Maildir new/ and cur/), oldest first.
pub fn mailbox(data_dir: &Path, account: &str) -> Vec<Vec<u8>> {
    maildir_paths(data_dir, account)
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
}

/// One HTTP/1.1 answer, read whole (the portal tests).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all_headers(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends `request` as is (from `source`, e.g. "127.0.0.3", when given) and
/// reads the answer until the server closes; the request should carry
/// `Connection: close`.
pub fn http_raw(source: Option<&str>, to: SocketAddr, request: &[u8]) -> HttpResponse {
    let mut s = match source {
        Some(src) => connect_from(src, to),
        None => TcpStream::connect(to).unwrap(),
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (413) and close before the body is all sent.
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_http(&raw)
}

pub fn parse_http(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP header in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(p) = rest.windows(2).position(|w| w == b"\r\n") {
            let size =
                usize::from_str_radix(String::from_utf8_lossy(&rest[..p]).trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[p + 2..p + 2 + size]);
            rest = &rest[p + 4 + size..];
        }
        body = out;
    }
    HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    }
}

/// A cookie-keeping HTTP client for the portal, like a browser without JS.
pub struct Browser {
    pub to: SocketAddr,
    pub source: Option<String>,
    pub cookies: HashMap<String, String>,
    pub headers: Vec<(String, String)>,
}

impl Browser {
    pub fn new(to: SocketAddr) -> Browser {
        Browser {
            to,
            source: None,
            cookies: HashMap::new(),
            headers: Vec::new(),
        }
    }

    pub fn request(&mut self, method: &str, path: &str, body: &str) -> HttpResponse {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.to
        );
        if !self.cookies.is_empty() {
            let c: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            req += &format!("Cookie: {}\r\n", c.join("; "));
        }
        for (k, v) in &self.headers {
            req += &format!("{k}: {v}\r\n");
        }
        if method == "POST" {
            req += &format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            );
        }
        req += "\r\n";
        req += body;
        let res = http_raw(self.source.as_deref(), self.to, req.as_bytes());
        for c in res.all_headers("set-cookie") {
            let pair = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        res
    }

    pub fn get(&mut self, path: &str) -> HttpResponse {
        self.request("GET", path, "")
    }

    /// Posts form fields (URL-encoded here).
    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> HttpResponse {
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v)))
            .collect();
        self.request("POST", path, &body.join("&"))
    }

    /// The value of the first `name="csrf"` field of the last page.
    pub fn csrf_in(page: &str) -> String {
        let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        page[at..].split('"').next().unwrap().to_string()
    }

    /// Opens the login page and logs in; returns the CSRF token of the
    /// logged-in session (from the settings page).
    pub fn login(&mut self, login: &str, password: &str) -> String {
        let page = self.get("/login");
        let token = Self::csrf_in(&page.body);
        let res = self.post(
            "/login",
            &[("csrf", &token), ("login", login), ("password", password)],
        );
        assert_eq!(res.status, 303, "login failed: {}", res.body);
        let settings = self.get("/settings");
        assert_eq!(settings.status, 200);
        Self::csrf_in(&settings.body)
    }
}

pub fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Like [`pop_server_with`], with a 500 ms DNS timeout (the portal tests).
pub fn web_server_with(head: &str, listeners: &str, records: &[&str]) -> (TestServer, Dnsmasq) {
    let dns = Dnsmasq::start(records, &[]);
    let server = TestServer::start(&format!("{head}\n{}", dns.config(500)), listeners);
    (server, dns)
}
