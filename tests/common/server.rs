//! The server under test: the real `betomail` binary in a temporary data
//! dir, on ephemeral loopback ports, and its admin CLI.

use crate::common::wait_until;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
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
}

impl TestServer {
    /// `head` is TOML placed before the listeners (top-level keys and
    /// tables); `listeners` is the `[[listener]]` list (e.g. [`LISTENERS`]).
    /// `data_dir`, `hostname` and `local_domains` are set unless `head` does.
    pub fn start(head: &str, listeners: &str) -> TestServer {
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
        let mut s = TestServer {
            child: None,
            dir,
            config,
            addrs: HashMap::new(),
            log: Default::default(),
        };
        s.spawn();
        s
    }

    /// The SPEC's listener set with defaults.
    pub fn start_default() -> TestServer {
        Self::start("", LISTENERS)
    }

    fn spawn(&mut self) {
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env("BETOMAIL_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting betomail serve");
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
