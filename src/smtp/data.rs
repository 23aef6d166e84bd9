//! The message after DATA: dot-unstuffing and checks line by line into a
//! bounded spool (RFC 5321 4.5.2), the trace headers we add (RFC 5321 4.4),
//! and the durable hand-off to mailboxes and the queue (SEED-15).
//!
//! Decisions: a bare LF ends a line like CRLF and is stored as CRLF, but
//! only `<CRLF>.<CRLF>` ends the data, so `<LF>.<LF>` cannot smuggle a
//! second message. Lines longer than RFC 5321's 1000 octets are kept whole
//! (as Postfix does) up to [`MAX_DATA_LINE`]; a longer line, a NUL octet or
//! too many `Received:` headers refuse the message after the data is read.

use super::reply::{self, Reply};
use super::session::Transaction;
use crate::store::{Store, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Longest line accepted inside a message, in octets.
pub const MAX_DATA_LINE: usize = 64 * 1024;
/// Messages up to this size stay in memory; bigger ones go to a spool file.
const SPILL_AT: usize = 512 * 1024;

/// The message being received: memory first, an unlinked file past
/// [`SPILL_AT`], so a 50 MB message never sits in memory.
pub enum Spool {
    Mem(Vec<u8>),
    File(File),
}

static SPOOL_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Spool {
    fn write(&mut self, dir: &Path, data: &[u8]) -> io::Result<()> {
        if let Spool::Mem(buf) = self {
            if buf.len() + data.len() <= SPILL_AT {
                buf.extend_from_slice(data);
                return Ok(());
            }
            // Spill: the file is unlinked at once, so a crash leaves nothing.
            let path: PathBuf = dir.join(format!(
                "spool.{}.{}",
                std::process::id(),
                SPOOL_COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            let _ = std::fs::remove_file(&path);
            f.write_all(buf)?;
            *self = Spool::File(f);
        }
        match self {
            Spool::File(f) => f.write_all(data),
            Spool::Mem(_) => Ok(()),
        }
    }

    /// The whole message from its start (callable more than once).
    pub fn reader(&mut self) -> io::Result<Box<dyn Read + '_>> {
        match self {
            Spool::Mem(buf) => Ok(Box::new(&buf[..])),
            Spool::File(f) => {
                f.rewind()?;
                Ok(Box::new(io::BufReader::with_capacity(64 * 1024, f)))
            }
        }
    }
}

/// Collects the lines of one message and what is wrong with it.
pub struct Collector {
    spool: Spool,
    dir: PathBuf,
    max_size: u64,
    size: u64,
    in_headers: bool,
    received: usize,
    nul: bool,
    too_long: bool,
    io_error: bool,
    /// The previous line ended in a bare LF: no end marker can follow it.
    after_bare_lf: bool,
}

impl Collector {
    pub fn new(spool_dir: &Path, max_size: u64) -> Collector {
        Collector {
            spool: Spool::Mem(Vec::new()),
            dir: spool_dir.to_path_buf(),
            max_size,
            size: 0,
            in_headers: true,
            received: 0,
            nul: false,
            too_long: false,
            io_error: false,
            after_bare_lf: false,
        }
    }

    /// True for the line that ends the data: exactly `<CRLF>.<CRLF>`.
    pub fn is_end(&self, line: &[u8], bare_lf: bool) -> bool {
        line == b"." && !bare_lf && !self.after_bare_lf
    }

    /// One line as read (terminator removed), not the end marker.
    pub fn line(&mut self, line: &[u8], bare_lf: bool) {
        self.after_bare_lf = bare_lf;
        // RFC 5321 4.5.2: a leading dot was doubled by the client.
        let line = line.strip_prefix(b".").unwrap_or(line);
        if self.in_headers {
            if line.is_empty() {
                self.in_headers = false;
            } else if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
                self.received += 1;
            }
        }
        if line.contains(&0) {
            self.nul = true;
        }
        self.size += line.len() as u64 + 2;
        if self.size > self.max_size || self.nul || self.io_error {
            return; // keep reading to the end, store nothing more
        }
        let r = self
            .spool
            .write(&self.dir, line)
            .and_then(|()| self.spool.write(&self.dir, b"\r\n"));
        if let Err(e) = r {
            tracing::error!(error = %e, "spooling a message failed");
            self.io_error = true;
        }
    }

    /// A line over [`MAX_DATA_LINE`] was dropped by the reader.
    pub fn line_too_long(&mut self) {
        self.too_long = true;
    }

    /// The spooled message, or the reply that refuses it.
    pub fn finish(self, max_received: usize) -> Result<(Spool, u64), Reply> {
        if self.size > self.max_size {
            return Err(reply::too_big());
        }
        if self.io_error {
            return Err(reply::temp_failure());
        }
        if self.nul {
            return Err(Reply::new(554, "5.6.0 Message contains NUL characters"));
        }
        if self.too_long {
            return Err(Reply::new(
                554,
                format!("5.6.0 Message contains a line longer than {MAX_DATA_LINE} octets"),
            ));
        }
        // Loop protection: with ours it would exceed the limit.
        if self.received >= max_received {
            return Err(Reply::new(554, "5.4.6 Too many hops (mail loop?)"));
        }
        Ok((self.spool, self.size))
    }
}

/// The facts a `Received:` header records (RFC 5321 4.4, RFC 3848).
pub struct Trace<'a> {
    pub helo: &'a str,
    pub peer: std::net::IpAddr,
    pub hostname: &'a str,
    pub protocol: &'a str,
    pub tls: Option<String>,
    pub user: Option<&'a str>,
    pub recipient: Option<&'a str>,
}

pub fn received_header(t: &Trace, now: chrono::DateTime<chrono::Utc>) -> String {
    let clean = |s: &str| reply::echo(s.as_bytes()).replace(['(', ')'], "?");
    let mut h = format!(
        "Received: from {} ([{}])\r\n\tby {} (betomail) with {}",
        clean(t.helo),
        t.peer.to_canonical(),
        t.hostname,
        t.protocol
    );
    if let Some(tls) = &t.tls {
        h += &format!("\r\n\t(using {})", clean(tls));
    }
    if let Some(u) = t.user {
        h += &format!("\r\n\t(authenticated as {})", clean(u));
    }
    if let Some(r) = t.recipient {
        h += &format!("\r\n\tfor <{}>", clean(r));
    }
    h += &format!(";\r\n\t{}\r\n", now.format("%a, %d %b %Y %H:%M:%S +0000"));
    h
}

/// Stores the message durably for every recipient of `tx` (blocking).
/// Remote recipients are queued first so that a failed local delivery can
/// take the queued copy back: the client then retries the whole message.
pub fn store_message(
    store: &Store,
    tx: &Transaction,
    received: &str,
    spool: &mut Spool,
    max_size: u64,
) -> Result<Option<String>, StoreError> {
    let max = max_size + 64 * 1024;
    let queued = if tx.remote.is_empty() {
        None
    } else {
        let mut r = spool.reader()?;
        Some(
            store
                .queue
                .enqueue(&tx.sender, &tx.remote, received.as_bytes(), &mut r, max)?,
        )
    };
    if !tx.local.is_empty() {
        let prefix = crate::delivery::local::return_path(&tx.sender) + received;
        let result = spool.reader().map_err(StoreError::from).and_then(|mut r| {
            store
                .mail
                .deliver(&tx.local, prefix.as_bytes(), &mut r, max)
        });
        if let Err(e) = result {
            if let Some(id) = &queued {
                let _ = store.queue.remove(id);
            }
            return Err(e);
        }
    }
    Ok(queued)
}

/// The reply after the final dot.
pub fn outcome_reply(result: &Result<Option<String>, StoreError>) -> Reply {
    match result {
        Ok(Some(id)) => Reply::new(250, format!("2.0.0 Ok: queued as {id}")),
        Ok(None) => Reply::new(250, "2.0.0 Ok: delivered"),
        Err(StoreError::TooLarge) => reply::too_big(),
        Err(e) if e.is_temporary() => reply::temp_failure(),
        Err(_) => Reply::new(554, "5.3.0 Message could not be stored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(lines: &[&[u8]], max: u64) -> Result<Vec<u8>, Reply> {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(dir.path(), max);
        for l in lines {
            c.line(l, false);
        }
        let (mut spool, _) = c.finish(3)?;
        let mut out = Vec::new();
        spool.reader().unwrap().read_to_end(&mut out).unwrap();
        Ok(out)
    }

    #[test]
    fn unstuffing_and_end() {
        assert_eq!(
            collect(&[b"a", b"..b", b".", b""], 100).unwrap(),
            b"a\r\n.b\r\n\r\n\r\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(dir.path(), 100);
        assert!(c.is_end(b".", false));
        assert!(!c.is_end(b".", true));
        assert!(!c.is_end(b"..", false));
        // <LF>.<CRLF> is not the end (no SMTP smuggling).
        c.line(b"x", true);
        assert!(!c.is_end(b".", false));
        c.line(b".", false);
        assert!(c.is_end(b".", false));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            collect(&[b"x".repeat(200).as_slice()], 100)
                .unwrap_err()
                .code,
            552
        );
        assert_eq!(
            collect(&[b"a\0b"], 100).unwrap_err().lines[0],
            "5.6.0 Message contains NUL characters"
        );
        let hops: Vec<&[u8]> = vec![b"Received: a", b"received: b", b"RECEIVED: c", b"", b"x"];
        assert!(collect(&hops, 1000).unwrap_err().lines[0].starts_with("5.4.6"));
        // Received lines in the body do not count.
        let body: Vec<&[u8]> = vec![b"Received: a", b"", b"Received: b", b"Received: c"];
        assert!(collect(&body, 1000).is_ok());
    }

    #[test]
    fn big_messages_spill_to_an_unlinked_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(dir.path(), 10 << 20);
        let line = vec![b'y'; 998];
        for _ in 0..2000 {
            c.line(&line, false);
        }
        let (mut spool, size) = c.finish(50).unwrap();
        assert!(matches!(spool, Spool::File(_)));
        assert_eq!(size, 2000 * 1000);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut n = 0;
        for _ in 0..2 {
            let mut out = Vec::new();
            spool.reader().unwrap().read_to_end(&mut out).unwrap();
            n = out.len();
        }
        assert_eq!(n, 2_000_000);
    }

    #[test]
    fn received_header_shape() {
        let t = Trace {
            helo: "client (evil)\r\n",
            peer: "::ffff:127.0.0.2".parse().unwrap(),
            hostname: "mail.be.test",
            protocol: "ESMTPSA",
            tls: Some("TLSv1_3 TLS13_AES_256_GCM_SHA384".into()),
            user: Some("btm0001"),
            recipient: Some("a@b.test"),
        };
        let now = chrono::DateTime::from_timestamp(0, 0).unwrap();
        assert_eq!(
            received_header(&t, now),
            "Received: from client ?evil??? ([127.0.0.2])\r\n\tby mail.be.test (betomail) with ESMTPSA\r\n\
             \t(using TLSv1_3 TLS13_AES_256_GCM_SHA384)\r\n\t(authenticated as btm0001)\r\n\tfor <a@b.test>;\r\n\
             \tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
