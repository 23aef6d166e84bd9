//! Mailboxes as Maildir (readable by Dovecot and mutt): `<root>/<name>/{tmp,new,cur}`.
//!
//! Messages are stored with CRLF line ends, so the file size is exactly what
//! POP3 RETR sends; names carry it as Dovecot does (`,S=<size>,W=<size>`), so
//! listing a mailbox needs no reads. Files that another program wrote (an
//! LDA, procmail, `doveadm save`, a copy from the old server) may have LF
//! line ends: they are read through [`CrlfReader`] and sized by what it
//! gives, so RETR and LIST agree whatever wrote the file. The UIDL of a
//! message is its unique base name, stable across sessions and never reused.

use super::{Account, MailStore, MessageInfo, Result, StoreError};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub struct Maildirs {
    root: PathBuf,
    /// Host part of unique names: '/' and ':' would break the Maildir format.
    host: String,
    counter: AtomicU64,
}

impl Maildirs {
    pub fn new(root: PathBuf, hostname: &str) -> Result<Maildirs> {
        fs::create_dir_all(&root)?;
        let host = hostname
            .chars()
            .map(|c| {
                if c == '/' || c == ':' || c == ',' {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        Ok(Maildirs {
            root,
            host,
            counter: AtomicU64::new(0),
        })
    }

    fn mailbox(&self, account: &Account) -> PathBuf {
        self.root.join(account.name.to_ascii_lowercase())
    }

    fn ensure(&self, account: &Account) -> Result<PathBuf> {
        let dir = self.mailbox(account);
        if !dir.join("cur").is_dir() {
            for sub in ["tmp", "new", "cur"] {
                fs::create_dir_all(dir.join(sub))?;
            }
            sync_dir(&self.root)?;
        }
        Ok(dir)
    }

    /// `<secs>.M<usecs>P<pid>Q<n>.<host>`: unique across processes and restarts.
    fn unique_name(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{}.M{}P{}Q{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            n,
            self.host
        )
    }
}

/// A stored file as RETR sends it: our CRLF files as they are, any other
/// through [`CrlfReader`].
fn as_sent(locator: &str, file: File) -> Box<dyn Read + Send> {
    let name = locator.rsplit('/').next().unwrap_or(locator);
    match parse_name(name) {
        Some((_, Stored::Crlf(_), _)) => Box::new(file),
        _ => Box::new(CrlfReader::new(file)),
    }
}

/// The octets [`CrlfReader`] gives for `file`.
fn crlf_size(file: File) -> std::io::Result<u64> {
    std::io::copy(&mut CrlfReader::new(file), &mut std::io::sink())
}

/// Reads a message with every bare LF turned into CRLF and a final CRLF
/// ensured: the same octets [`copy_crlf`] stores.
pub struct CrlfReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Converted octets in `buf` not yet given out start here.
    pos: usize,
    prev_cr: bool,
    /// Whatever was last given out ended with LF (or nothing was given).
    ended_lf: bool,
    any: bool,
    done: bool,
}

impl<R: Read> CrlfReader<R> {
    pub fn new(inner: R) -> Self {
        CrlfReader {
            inner,
            buf: Vec::new(),
            pos: 0,
            prev_cr: false,
            ended_lf: true,
            any: false,
            done: false,
        }
    }

    /// Refills `buf` with the next converted chunk; false at the end.
    fn fill(&mut self) -> std::io::Result<bool> {
        let mut raw = [0u8; 16 * 1024];
        self.buf.clear();
        self.pos = 0;
        while self.buf.is_empty() {
            if self.done {
                return Ok(false);
            }
            let n = match self.inner.read(&mut raw) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                self.done = true;
                if self.any && !self.ended_lf {
                    self.buf.extend_from_slice(b"\r\n");
                }
                continue;
            }
            for &b in &raw[..n] {
                if b == b'\n' && !self.prev_cr {
                    self.buf.push(b'\r');
                }
                self.buf.push(b);
                self.prev_cr = b == b'\r';
            }
            self.any = true;
            self.ended_lf = raw[n - 1] == b'\n';
        }
        Ok(true)
    }
}

impl<R: Read> Read for CrlfReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() && !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Copies `body` to `out`, turning bare LF into CRLF and ending with CRLF.
/// Returns the octets written; stops with `TooLarge` past `max`.
pub(crate) fn copy_crlf(body: &mut dyn Read, out: &mut dyn Write, max: u64) -> Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    let mut prev_cr = false;
    // Every LF is written as CRLF, so output ends in CRLF iff input ended in LF.
    let mut ends_crlf = false;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        let chunk = &buf[..n];
        let mut start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if b == b'\n'
                && !(if i == 0 {
                    prev_cr
                } else {
                    chunk[i - 1] == b'\r'
                })
            {
                out.write_all(&chunk[start..i])?;
                out.write_all(b"\r\n")?;
                written += (i - start) as u64 + 2;
                start = i + 1;
            }
        }
        out.write_all(&chunk[start..])?;
        written += (n - start) as u64;
        if written > max {
            return Err(StoreError::TooLarge);
        }
        prev_cr = chunk[n - 1] == b'\r';
        ends_crlf = chunk[n - 1] == b'\n';
    }
    if written > 0 && !ends_crlf {
        out.write_all(b"\r\n")?;
        written += 2;
    }
    Ok(written)
}

/// Writes `prefix` + CRLF-normalized `body` to a new file at `path` and
/// fsyncs it; on any failure the file is removed. Returns its size.
pub(crate) fn write_synced(
    path: &Path,
    prefix: &[u8],
    body: &mut dyn Read,
    max_size: u64,
) -> Result<u64> {
    let written = (|| -> Result<u64> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        w.write_all(prefix)?;
        let n = copy_crlf(body, &mut w, max_size.saturating_sub(prefix.len() as u64))?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        Ok(prefix.len() as u64 + n)
    })();
    if written.is_err() {
        let _ = fs::remove_file(path);
    }
    written
}

/// What a file name says of its contents.
#[derive(Debug, PartialEq, Eq)]
enum Stored {
    /// Our own CRLF file of this size.
    Crlf(u64),
    /// Possibly LF line ends; the CRLF size when the name gives it.
    Lf(Option<u64>),
}

fn parse_name(name: &str) -> Option<(String, Stored, SystemTime)> {
    if name.starts_with('.') {
        return None;
    }
    let base = name.split([',', ':']).next()?;
    let field = |key: &str| -> Option<u64> {
        name.split([',', ':'])
            .find_map(|p| p.strip_prefix(key))
            .and_then(|v| v.parse().ok())
    };
    // S= is the file's size, W= Dovecot's CRLF "virtual" size. They agree
    // for our CRLF files; W= alone is what RETR sends of an LF file.
    let size = match (field("S="), field("W=")) {
        (Some(s), Some(w)) if s == w => Stored::Crlf(s),
        (_, Some(w)) => Stored::Lf(Some(w)),
        _ => Stored::Lf(None),
    };
    let mut parts = base.split('.');
    let secs: u64 = parts.next()?.parse().unwrap_or(0);
    // Our names carry microseconds (`.M<usecs>P`): order within one second.
    let micros: u64 = parts
        .next()
        .and_then(|p| p.strip_prefix('M'))
        .and_then(|p| p.split('P').next())
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let uid = if base.len() <= 70 && base.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        base.to_string()
    } else {
        // A foreign name that UIDL cannot carry: a stable digest of it.
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(base.as_bytes()))
    };
    Some((
        uid,
        size,
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros),
    ))
}

impl MailStore for Maildirs {
    fn deliver(
        &self,
        accounts: &[Account],
        prefix: &[u8],
        body: &mut dyn Read,
        max_size: u64,
    ) -> Result<()> {
        let Some(first) = accounts.first() else {
            return Ok(());
        };
        let dirs = accounts
            .iter()
            .map(|a| self.ensure(a))
            .collect::<Result<Vec<_>>>()?;
        let base = self.unique_name();
        let tmp = dirs[0].join("tmp").join(&base);
        let size = write_synced(&tmp, prefix, body, max_size)?;
        let name = format!("{base},S={size},W={size}");
        // The file is durable before any mailbox shows it: a crash can then
        // never leave a truncated message in new/. Hard links give every
        // mailbox the same file and appear whole or not at all.
        let mut linked: Vec<PathBuf> = Vec::new();
        let result = (|| -> Result<()> {
            for dir in &dirs {
                let target = dir.join("new").join(&name);
                fs::hard_link(&tmp, &target)?;
                linked.push(target);
            }
            for dir in &dirs {
                sync_dir(&dir.join("new"))?;
            }
            Ok(())
        })();
        let _ = fs::remove_file(&tmp);
        if let Err(e) = result {
            // All or nothing: the client will retry the whole message.
            for l in &linked {
                let _ = fs::remove_file(l);
            }
            return Err(e);
        }
        tracing::debug!(mailbox = %first.name, recipients = accounts.len(), size, "delivered");
        Ok(())
    }

    fn list(&self, account: &Account) -> Result<Vec<MessageInfo>> {
        let dir = self.mailbox(account);
        let mut out = Vec::new();
        for sub in ["cur", "new"] {
            let entries = match fs::read_dir(dir.join(sub)) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for entry in entries {
                let entry = entry?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Some((uid, size, received)) = parse_name(&name) else {
                    continue;
                };
                let size = match size {
                    Stored::Crlf(s) | Stored::Lf(Some(s)) => s,
                    // Read once per listing: such files are foreign and few.
                    Stored::Lf(None) => crlf_size(File::open(entry.path())?)?,
                };
                out.push(MessageInfo {
                    uid,
                    size,
                    received,
                    locator: format!("{sub}/{name}"),
                });
            }
        }
        out.sort_by(|a, b| (a.received, &a.uid).cmp(&(b.received, &b.uid)));
        Ok(out)
    }

    fn open(&self, account: &Account, msg: &MessageInfo) -> Result<Box<dyn Read + Send>> {
        let path = self.mailbox(account).join(&msg.locator);
        match File::open(&path) {
            Ok(f) => Ok(as_sent(&msg.locator, f)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Another Maildir reader may have moved it from new/ to cur/.
                let moved = self
                    .list(account)?
                    .into_iter()
                    .find(|m| m.uid == msg.uid)
                    .ok_or_else(|| StoreError::NotFound(format!("message {}", msg.uid)))?;
                let f = File::open(self.mailbox(account).join(&moved.locator))?;
                Ok(as_sent(&moved.locator, f))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn delete(&self, account: &Account, msgs: &[MessageInfo]) -> Result<()> {
        let dir = self.mailbox(account);
        let mut current: Option<Vec<MessageInfo>> = None;
        for msg in msgs {
            match fs::remove_file(dir.join(&msg.locator)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    let list = match &current {
                        Some(l) => l,
                        None => current.insert(self.list(account)?),
                    };
                    if let Some(m) = list.iter().find(|m| m.uid == msg.uid) {
                        match fs::remove_file(dir.join(&m.locator)) {
                            Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
                            _ => {}
                        }
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        for sub in ["cur", "new"] {
            if dir.join(sub).is_dir() {
                sync_dir(&dir.join(sub))?;
            }
        }
        Ok(())
    }

    fn remove_mailbox(&self, account: &Account) -> Result<()> {
        match fs::remove_dir_all(self.mailbox(account)) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> Account {
        Account::for_test(name, 1)
    }

    fn crlf(input: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        copy_crlf(&mut &input[..], &mut out, u64::MAX).unwrap();
        out
    }

    #[test]
    fn crlf_normalization() {
        assert_eq!(crlf(b"a\nb\n"), b"a\r\nb\r\n");
        assert_eq!(crlf(b"a\r\nb"), b"a\r\nb\r\n");
        assert_eq!(crlf(b""), b"");
        assert_eq!(crlf(b"\n"), b"\r\n");
        // A CR at the end of one read and LF at the start of the next.
        let mut out = Vec::new();
        let mut r = std::io::Read::chain(&b"a\r"[..], &b"\nb"[..]);
        copy_crlf(&mut r, &mut out, u64::MAX).unwrap();
        assert_eq!(out, b"a\r\nb\r\n");
    }

    #[test]
    fn deliver_list_open_delete() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildirs::new(dir.path().to_path_buf(), "mail.be.test").unwrap();
        let (a, b) = (account("a"), account("b"));
        md.deliver(
            &[a.clone(), b.clone()],
            b"Return-Path: <x@y>\r\n",
            &mut &b"Subject: hi\n\n.dot\n"[..],
            1 << 20,
        )
        .unwrap();
        let list = md.list(&a).unwrap();
        assert_eq!(list.len(), 1);
        let mut text = Vec::new();
        md.open(&a, &list[0])
            .unwrap()
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, b"Return-Path: <x@y>\r\nSubject: hi\r\n\r\n.dot\r\n");
        assert_eq!(list[0].size, text.len() as u64);
        assert_eq!(md.list(&b).unwrap()[0].uid, list[0].uid);
        md.delete(&a, &list).unwrap();
        assert!(md.list(&a).unwrap().is_empty());
        assert_eq!(md.list(&b).unwrap().len(), 1);
        assert!(fs::read_dir(dir.path().join("a/tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn too_large_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildirs::new(dir.path().to_path_buf(), "h").unwrap();
        let a = account("a");
        let big = vec![b'x'; 5000];
        assert!(matches!(
            md.deliver(std::slice::from_ref(&a), b"", &mut &big[..], 1000),
            Err(StoreError::TooLarge)
        ));
        assert!(md.list(&a).unwrap().is_empty());
        assert!(fs::read_dir(dir.path().join("a/tmp"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn sizes_from_names() {
        let size = |n: &str| parse_name(n).unwrap().1;
        assert_eq!(size("1.M2P3Q4.h,S=57,W=57"), Stored::Crlf(57));
        assert_eq!(size("1.M2P3Q4.h,S=57,W=57:2,S"), Stored::Crlf(57));
        // Written by Dovecot with LF line ends: RETR sends the CRLF 104.
        assert_eq!(size("1.M2P3.dovecot,S=100,W=104:2,"), Stored::Lf(Some(104)));
        assert_eq!(size("1.M2P3.mutt:2,S"), Stored::Lf(None));
    }

    #[test]
    fn crlf_reader_converts_bare_lf_and_ends_with_crlf() {
        let read = |input: &[u8]| {
            let mut out = Vec::new();
            CrlfReader::new(input).read_to_end(&mut out).unwrap();
            out
        };
        assert_eq!(read(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(read(b"a\r\n"), b"a\r\n");
        assert_eq!(read(b""), b"");
        // A CR LF pair split across reads stays one pair.
        let big: Vec<u8> = [vec![b'x'; 16 * 1024 - 1], b"\r\ny\n".to_vec()].concat();
        let out = read(&big);
        assert!(out.ends_with(b"x\r\ny\r\n"), "{:?}", &out[out.len() - 8..]);
        assert_eq!(out.len(), big.len() + 1);
        // Our own CRLF files are what copy_crlf stored.
        let mut stored = Vec::new();
        copy_crlf(&mut &big[..], &mut stored, u64::MAX).unwrap();
        assert_eq!(out, stored);
    }

    #[test]
    fn files_written_by_other_programs_are_listed_and_read_as_crlf() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildirs::new(dir.path().to_path_buf(), "h").unwrap();
        let a = account("a");
        md.deliver(std::slice::from_ref(&a), b"", &mut &b"ours\n"[..], 100)
            .unwrap();
        let lf = b"Subject: lf\n\nline one\nline two\n";
        fs::write(dir.path().join("a/new/2.M1P1.procmail"), lf).unwrap();
        fs::write(dir.path().join("a/cur/3.M1P1.dovecot,S=31,W=35:2,S"), lf).unwrap();
        let listed = md.list(&a).unwrap();
        assert_eq!(listed.len(), 3);
        for m in &listed {
            let mut sent = Vec::new();
            md.open(&a, m).unwrap().read_to_end(&mut sent).unwrap();
            assert_eq!(sent.len() as u64, m.size, "{}", m.locator);
            assert!(!sent.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
            assert!(sent.ends_with(b"\r\n"));
        }
        assert_eq!(listed[1].size, 35);
    }

    #[test]
    fn uids_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildirs::new(dir.path().to_path_buf(), "h").unwrap();
        let a = account("a");
        for _ in 0..20 {
            md.deliver(std::slice::from_ref(&a), b"", &mut &b"x\n"[..], 100)
                .unwrap();
        }
        let mut uids: Vec<_> = md.list(&a).unwrap().into_iter().map(|m| m.uid).collect();
        uids.dedup();
        assert_eq!(uids.len(), 20);
    }
}
