//! The server under test: the real `betomail` binary in a temporary data
//! dir, on ephemeral loopback ports, and its admin CLI.

use crate::common::wait_until;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

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
        let (ready_rx, ready_tx) = std::io::pipe().expect("a pipe");
        let ready_fd = ready_tx.as_raw_fd();
        let mut command = Command::new(BIN);
        command
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("BETOMAIL_LOG", "debug")
            .env("BETOMAIL_READY_FD", ready_fd.to_string())
            // The lines on stdout are for people; readiness is the ready line.
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // std opens pipes close-on-exec; only the server keeps this end.
        // SAFETY: fcntl is async-signal-safe, as pre_exec requires.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(ready_fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        if let Some(n) = self.fd_limit {
            limit_open_files(&mut command, n);
        }
        let mut child = command.spawn().expect("starting betomail serve");
        // Ours closed, the read below ends if the server exits before ready.
        drop(ready_tx);
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(ready_rx).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("server not ready in 30 s; log:\n{}", self.log_text()));
        self.addrs = ready_listeners(&line)
            .unwrap_or_else(|| panic!("no ready line ({line:?}); log:\n{}", self.log_text()));
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

    /// The server process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS")
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

/// The listeners named by `serve`'s ready line (README "Readiness").
fn ready_listeners(line: &str) -> Option<HashMap<String, SocketAddr>> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["ready"] != true {
        return None;
    }
    v["listeners"]
        .as_object()?
        .iter()
        .map(|(name, addr)| Some((name.clone(), addr.as_str()?.parse().ok()?)))
        .collect()
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
