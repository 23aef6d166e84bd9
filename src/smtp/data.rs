//! The message after DATA: dot-unstuffing and checks line by line into a
//! bounded spool (RFC 5321 4.5.2), the trace headers we add (RFC 5321 4.4),
//! and the durable hand-off to mailboxes and the queue (SEED-15).
//!
//! Decisions: a bare LF ends a line like CRLF and is stored as CRLF, but
//! only `<CRLF>.<CRLF>` ends the data, so `<LF>.<LF>` cannot smuggle a
//! second message. Lines longer than RFC 5321's 1000 octets are kept whole
//! (as Postfix does) up to [`MAX_DATA_LINE`]; a longer line, a NUL octet or
//! too many `Received:` headers refuse the message after the data is read.
//!
//! Memory: a message stays in memory up to 512 KiB only while the process
//! wide [`MemoryBudget`] (`[limits] connection_memory_total`, shared with
//! the line buffers) lasts (8 KiB per connection are always allowed);
//! past that it goes to an unlinked spool file, written in chunks by the
//! server on the blocking pool so a slow disk never stalls the executor.

use super::reply::{self, Reply};
use super::session::Transaction;
use crate::net::{FdBudget, FdSlot, MemoryBudget, Reservation};
use crate::store::{Store, StoreError};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest line accepted inside a message, in octets.
pub const MAX_DATA_LINE: usize = 64 * 1024;
/// Messages up to this size stay in memory (budget permitting); bigger
/// ones go to a spool file.
const SPILL_AT: usize = 512 * 1024;
/// A spool file is written in chunks of this size, off the async executor.
const FILE_CHUNK: usize = 64 * 1024;
/// Buffered without asking the budget, so a message always progresses.
const FLOOR: usize = 8 * 1024;
/// Budget reservations grow in steps of this size (fewer atomic updates).
const STEP: usize = 16 * 1024;

/// The message being received: memory first, an unlinked file once it
/// passes `SPILL_AT` or the [`MemoryBudget`] is spent, so a 50 MB message
/// never sits in memory. Memory use is `buf` (reserved from the budget
/// beyond `FLOOR`); in file mode `buf` holds the chunk not yet written.
pub struct Spool {
    buf: Vec<u8>,
    file: Option<Arc<File>>,
    /// The spool file's descriptor, counted with the client connections'.
    fd: Option<FdSlot>,
    memory: Reservation,
}

/// A blocking write the server runs off the executor (`spawn_blocking`):
/// the octets for the spool file, which is created first if need be.
pub struct FileWrite {
    dir: PathBuf,
    file: Option<Arc<File>>,
    data: Vec<u8>,
}

impl FileWrite {
    pub fn run(self) -> io::Result<Arc<File>> {
        let file = match self.file {
            Some(f) => f,
            // No name (O_TMPFILE) or unlinked at once: a crash or any early
            // return leaves nothing on disk; the last close frees the blocks.
            None => Arc::new(tempfile::tempfile_in(&self.dir)?),
        };
        (&*file).write_all(&self.data)?;
        Ok(file)
    }
}

impl Spool {
    fn new(budget: Arc<MemoryBudget>) -> Spool {
        Spool {
            buf: Vec::new(),
            file: None,
            fd: None,
            memory: Reservation::new(budget),
        }
    }

    pub fn in_file(&self) -> bool {
        self.file.is_some()
    }

    /// Appends; true when the buffer should now go to the file.
    fn push(&mut self, data: &[u8]) -> bool {
        self.buf.extend_from_slice(data);
        let len = self.buf.len();
        let limit = if self.file.is_some() {
            FILE_CHUNK
        } else {
            SPILL_AT
        };
        if len > limit {
            return true;
        }
        let need = len.saturating_sub(FLOOR);
        let held = self.memory.held();
        need > held && !self.memory.resize(need.max(held + STEP))
    }

    /// The buffered octets as a blocking write; the buffer's budget is
    /// returned (the write job owns its data now).
    fn take_write(&mut self, dir: &Path) -> FileWrite {
        self.memory.release();
        FileWrite {
            dir: dir.to_path_buf(),
            file: self.file.clone(),
            data: std::mem::take(&mut self.buf),
        }
    }

    /// The whole message from its start (blocking; callable more than once).
    pub fn reader(&mut self) -> io::Result<Box<dyn Read + '_>> {
        match &self.file {
            None => Ok(Box::new(&self.buf[..])),
            Some(f) => {
                let mut f: &File = f;
                f.write_all(&self.buf)?;
                self.buf = Vec::new();
                self.memory.release();
                f.rewind()?;
                Ok(Box::new(io::BufReader::with_capacity(FILE_CHUNK, f)))
            }
        }
    }
}

/// Collects the lines of one message and what is wrong with it.
pub struct Collector {
    spool: Spool,
    dir: PathBuf,
    fds: Arc<FdBudget>,
    max_size: u64,
    size: u64,
    in_headers: bool,
    received: usize,
    nul: bool,
    too_long: bool,
    io_error: bool,
    /// The spool buffer must go to the file before more is read.
    flush_due: bool,
    /// The previous line ended in a bare LF: no end marker can follow it.
    after_bare_lf: bool,
}

impl Collector {
    pub fn new(
        spool_dir: &Path,
        max_size: u64,
        budget: Arc<MemoryBudget>,
        fds: Arc<FdBudget>,
    ) -> Collector {
        Collector {
            spool: Spool::new(budget),
            dir: spool_dir.to_path_buf(),
            fds,
            max_size,
            size: 0,
            in_headers: true,
            received: 0,
            nul: false,
            too_long: false,
            io_error: false,
            flush_due: false,
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
        self.flush_due |= self.spool.push(line);
        self.flush_due |= self.spool.push(b"\r\n");
    }

    /// The write to run (off the executor) before the next line, if any.
    pub fn pending_write(&mut self) -> Option<FileWrite> {
        let due = std::mem::take(&mut self.flush_due);
        if !due || self.io_error {
            return None;
        }
        // A new spool file needs a descriptor of the clients' share: the
        // reserve stays for the store, which must finish other messages.
        if self.spool.fd.is_none() {
            self.spool.fd = self.fds.try_take();
            if self.spool.fd.is_none() {
                tracing::warn!("no file descriptor left for a spool file");
                self.io_error = true;
                return None;
            }
        }
        Some(self.spool.take_write(&self.dir))
    }

    /// The result of a [`FileWrite`].
    pub fn written(&mut self, r: io::Result<Arc<File>>) {
        match r {
            Ok(f) => self.spool.file = Some(f),
            Err(e) => {
                tracing::error!(error = %e, "spooling a message failed");
                self.io_error = true;
            }
        }
    }

    /// A line over [`MAX_DATA_LINE`] was dropped by the reader, which does
    /// not say whether it ended in CRLF or a bare LF. A `.` after it is taken
    /// as the end (a client must not hang), so the end is ambiguous and the
    /// server closes the connection after refusing the message: whatever
    /// follows could be smuggled commands.
    pub fn line_too_long(&mut self) {
        self.too_long = true;
        self.after_bare_lf = false;
    }

    /// The end of the data may have been misread (see [`Self::line_too_long`]).
    pub fn end_is_ambiguous(&self) -> bool {
        self.too_long
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

    fn budget() -> Arc<MemoryBudget> {
        MemoryBudget::new(64 << 20)
    }

    fn fds() -> Arc<FdBudget> {
        FdBudget::new(usize::MAX)
    }

    /// Feeds lines, running the file writes inline as the server would.
    fn feed(c: &mut Collector, lines: &[&[u8]]) {
        for l in lines {
            c.line(l, false);
            if let Some(w) = c.pending_write() {
                c.written(w.run());
            }
        }
    }

    fn collect(lines: &[&[u8]], max: u64) -> Result<Vec<u8>, Reply> {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Collector::new(dir.path(), max, budget(), fds());
        feed(&mut c, lines);
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
        let mut c = Collector::new(dir.path(), 100, budget(), fds());
        assert!(c.is_end(b".", false));
        assert!(!c.is_end(b".", true));
        assert!(!c.is_end(b"..", false));
        // <LF>.<CRLF> is not the end (no SMTP smuggling).
        c.line(b"x", true);
        assert!(!c.is_end(b".", false));
        c.line(b".", false);
        assert!(c.is_end(b".", false));
        // After a dropped overlong line a "." ends the data whatever came
        // before (a client must not hang), and the end is ambiguous.
        c.line(b"y", true);
        assert!(!c.end_is_ambiguous());
        c.line_too_long();
        assert!(c.is_end(b".", false));
        assert!(c.end_is_ambiguous());
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
        let b = budget();
        let mut c = Collector::new(dir.path(), 10 << 20, b.clone(), fds());
        let line = vec![b'y'; 998];
        feed(&mut c, &vec![line.as_slice(); 2000]);
        // In file mode only the unwritten chunk is held.
        assert!(c.spool.buf.len() <= FILE_CHUNK + 1000);
        assert!(b.used() <= FILE_CHUNK);
        let (mut spool, size) = c.finish(50).unwrap();
        assert!(spool.in_file());
        assert_eq!(size, 2000 * 1000);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut n = 0;
        for _ in 0..2 {
            let mut out = Vec::new();
            spool.reader().unwrap().read_to_end(&mut out).unwrap();
            assert!(out.chunks(1000).all(|l| l.ends_with(b"\r\n")));
            n = out.len();
        }
        assert_eq!(n, 2_000_000);
        drop(spool);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn the_memory_budget_is_shared_and_returned() {
        let dir = tempfile::tempdir().unwrap();
        let b = MemoryBudget::new(300 * 1024);
        let line = vec![b'z'; 998];
        let lines = vec![line.as_slice(); 200]; // 200 KB: under SPILL_AT
        let mut first = Collector::new(dir.path(), 1 << 20, b.clone(), fds());
        feed(&mut first, &lines);
        assert!(!first.spool.in_file());
        assert!(b.used() >= 190 * 1024);
        // The budget cannot hold a second one: it goes to a file at once.
        let mut second = Collector::new(dir.path(), 1 << 20, b.clone(), fds());
        feed(&mut second, &lines);
        assert!(second.spool.in_file());
        let (mut s2, _) = second.finish(50).unwrap();
        let mut out = Vec::new();
        s2.reader().unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), 200 * 1000);
        // A refused message and a finished one give their share back.
        drop(first);
        drop(s2);
        assert_eq!(b.used(), 0);
        let mut third = Collector::new(dir.path(), 1 << 20, b.clone(), fds());
        feed(&mut third, &lines);
        assert!(!third.spool.in_file());
        // Small messages never need the budget.
        let none = MemoryBudget::new(0);
        let mut small = Collector::new(dir.path(), 1 << 20, none.clone(), fds());
        feed(&mut small, &[b"hello"]);
        assert!(!small.spool.in_file());
        let mut big = Collector::new(dir.path(), 1 << 20, none.clone(), fds());
        feed(&mut big, &vec![line.as_slice(); 20]);
        assert!(big.spool.in_file());
        assert_eq!(none.used(), 0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn no_descriptor_for_a_spool_file_is_a_temporary_failure() {
        let dir = tempfile::tempdir().unwrap();
        let none = FdBudget::new(0);
        let mut c = Collector::new(dir.path(), 10 << 20, budget(), none.clone());
        let line = vec![b'y'; 998];
        feed(&mut c, &vec![line.as_slice(); 600]);
        assert_eq!(c.finish(50).err().map(|r| r.code), Some(451));
        let one = FdBudget::new(1);
        let mut c = Collector::new(dir.path(), 10 << 20, budget(), one.clone());
        feed(&mut c, &vec![line.as_slice(); 600]);
        assert_eq!(one.used(), 1);
        let (spool, _) = c.finish(50).unwrap();
        drop(spool);
        assert_eq!(one.used(), 0);
    }

    #[test]
    fn a_failed_spool_write_is_a_temporary_failure() {
        let dir = tempfile::tempdir().unwrap();
        let b = budget();
        let mut c = Collector::new(&dir.path().join("missing"), 10 << 20, b.clone(), fds());
        let line = vec![b'y'; 998];
        feed(&mut c, &vec![line.as_slice(); 600]);
        assert_eq!(c.finish(50).err().map(|r| r.code), Some(451));
        assert_eq!(b.used(), 0);
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
