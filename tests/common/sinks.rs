//! Foreign mail servers that outbound delivery talks to.

use crate::common::wait_until;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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
