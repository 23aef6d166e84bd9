//! The machine-readable ready signal of `betomail serve`, for supervisors
//! and test harnesses: when `BETOMAIL_READY_FD=N` is set, one JSON line
//! `{"ready":true,"listeners":{"<name>":"<addr>",...}}` is written to fd N
//! once every listener is bound and the background tasks are started. The
//! lines on stdout are for people and may change.

use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;

pub const READY_FD_ENV: &str = "BETOMAIL_READY_FD";

pub struct ReadySignal {
    out: File,
}

impl ReadySignal {
    /// The signal asked for by the environment, if any; checked at start so
    /// a wrong value fails before anything is served.
    pub fn from_env() -> anyhow::Result<Option<ReadySignal>> {
        match std::env::var(READY_FD_ENV) {
            Ok(value) => Self::open(&value).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// `value` is the fd number inherited from the parent.
    pub fn open(value: &str) -> anyhow::Result<ReadySignal> {
        let fd: u32 = value
            .parse()
            .with_context(|| format!("{READY_FD_ENV}={value:?}: not a file descriptor number"))?;
        // Reopened through /proc (Linux), so no fd number is taken over unchecked.
        let out = OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))
            .with_context(|| format!("{READY_FD_ENV}={fd}: cannot open that descriptor"))?;
        Ok(ReadySignal { out })
    }

    /// Writes the ready line naming each listener's bound address.
    pub fn send(mut self, listeners: &[(String, SocketAddr)]) -> anyhow::Result<()> {
        let listeners: serde_json::Map<String, serde_json::Value> = listeners
            .iter()
            .map(|(name, addr)| (name.clone(), addr.to_string().into()))
            .collect();
        let line = serde_json::json!({ "ready": true, "listeners": listeners });
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .with_context(|| format!("{READY_FD_ENV}: writing the ready line"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::os::fd::AsRawFd;

    #[test]
    fn the_ready_line_names_every_listener() {
        let (rx, tx) = std::io::pipe().unwrap();
        let signal = ReadySignal::open(&tx.as_raw_fd().to_string()).unwrap();
        drop(tx);
        let pop: SocketAddr = "127.0.0.1:1110".parse().unwrap();
        let web: SocketAddr = "[::1]:8080".parse().unwrap();
        signal
            .send(&[("pop".into(), pop), ("web".into(), web)])
            .unwrap();
        let mut line = String::new();
        BufReader::new(rx).read_line(&mut line).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ready": true, "listeners": {"pop": "127.0.0.1:1110", "web": "[::1]:8080"}})
        );
    }

    #[test]
    fn a_bad_value_is_refused_naming_the_variable() {
        for value in ["", "three", "-1", "987654"] {
            let e = format!("{:#}", ReadySignal::open(value).err().unwrap());
            assert!(e.contains(READY_FD_ENV), "{e}");
        }
    }
}
