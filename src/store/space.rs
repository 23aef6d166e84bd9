//! Free space in the data directory, and the reserve that lets customers
//! delete mail on a full disk.
//!
//! SMTP refuses new mail (452 4.3.1) once free space falls below
//! `[limits] smtp_min_free_disk`, so a full disk comes only from a message
//! already being received or from something else on the file system. Then
//! POP locks and relay grants must still be written (they come before every
//! deletion, SEED-6), and SQLite needs new pages for them. The reserve is a
//! preallocated file of `[limits] disk_reserve` octets in the data
//! directory: a lock or grant write that fails for lack of space shrinks it
//! by a step and retries, and it is filled up again once the disk has room,
//! as databases keep a "ballast" file. It beats preallocating SQLite pages (the WAL and a
//! checkpoint may still need new blocks) and in-memory locks (the admin CLI
//! and other processes on the same data read the locks table).

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A statvfs answer is reused this long: SMTP asks at every MAIL and RCPT.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// The reserve is given up in steps of this fraction of its size, so one
/// full disk leaves room for many lock writes, not one.
const RESERVE_STEPS: u64 = 16;

#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    reserve_path: PathBuf,
    /// `[limits] smtp_min_free_disk`; 0 until [`DiskSpace::configure`].
    min_free: AtomicU64,
    /// `[limits] disk_reserve`; 0 (no reserve) until configured.
    reserve_size: AtomicU64,
    /// Octets the reserve file holds now.
    reserve_left: Mutex<u64>,
    /// Octets available to us and when they were measured.
    cached: Mutex<Option<(Instant, u64)>>,
}

impl DiskSpace {
    pub fn new(dir: &Path) -> DiskSpace {
        DiskSpace {
            dir: dir.to_path_buf(),
            reserve_path: dir.join("reserve"),
            min_free: AtomicU64::new(0),
            reserve_size: AtomicU64::new(0),
            reserve_left: Mutex::new(0),
            cached: Mutex::new(None),
        }
    }

    /// Sets the limits and makes the reserve if the disk has room (blocking).
    pub fn configure(&self, min_free: u64, reserve: u64) {
        self.min_free.store(min_free, Ordering::Relaxed);
        self.reserve_size.store(reserve, Ordering::Relaxed);
        // What an earlier run left is counted afresh.
        *self.left() = std::fs::metadata(&self.reserve_path).map_or(0, |m| m.len());
        self.restore_reserve();
    }

    fn left(&self) -> std::sync::MutexGuard<'_, u64> {
        self.reserve_left.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Octets an unprivileged writer may still use (statvfs `f_bavail`),
    /// measured at most once per [`CACHE_FOR`]. Unknown counts as plenty:
    /// a failed statvfs must not stop mail.
    pub fn available(&self) -> u64 {
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, free)) = *cached {
            if at.elapsed() < CACHE_FOR {
                return free;
            }
        }
        let free = match statvfs_available(&self.dir) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "statvfs failed");
                u64::MAX
            }
        };
        *cached = Some((Instant::now(), free));
        free
    }

    fn forget(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Room for a message of `size` octets while keeping the minimum free.
    pub fn has_room_for(&self, size: u64) -> bool {
        self.available() >= self.min_free.load(Ordering::Relaxed).saturating_add(size)
    }

    /// Runs a lock or grant write; while it fails for lack of space, gives
    /// up a step of the reserve and runs it again. Blocking.
    pub fn with_reserve<T, E: IsDiskFull>(
        &self,
        mut write: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let result = loop {
            match write() {
                Err(e) if e.is_disk_full() && self.shrink_reserve() => continue,
                r => break r,
            }
        };
        if result.is_ok() {
            self.restore_reserve();
        }
        result
    }

    /// Frees one step of the reserve; false if nothing is left to free.
    fn shrink_reserve(&self) -> bool {
        let mut left = self.left();
        if *left == 0 {
            return false;
        }
        let step = (self.reserve_size.load(Ordering::Relaxed) / RESERVE_STEPS).max(1);
        let keep = left.saturating_sub(step);
        let shrunk = OpenOptions::new()
            .write(true)
            .open(&self.reserve_path)
            .and_then(|f| f.set_len(keep));
        *left = match shrunk {
            Ok(()) => keep,
            Err(_) => {
                let _ = std::fs::remove_file(&self.reserve_path);
                0
            }
        };
        self.forget();
        tracing::warn!(
            left = *left,
            "disk full: a lock or grant write takes from the space reserve"
        );
        true
    }

    /// Fills the reserve up again once the disk has room for the missing
    /// part and the minimum free space, so that new mail never eats into it.
    fn restore_reserve(&self) {
        let size = self.reserve_size.load(Ordering::Relaxed);
        let mut left = self.left();
        if *left >= size || !self.has_room_for(size - *left) {
            return;
        }
        match preallocate(&self.reserve_path, size) {
            Ok(()) => {
                *left = size;
                tracing::debug!(size, "space reserve in place");
            }
            Err(e) => tracing::warn!(error = %e, "making the space reserve failed"),
        }
        self.forget();
    }
}

/// Errors that say the disk (or the quota) is full.
pub trait IsDiskFull {
    fn is_disk_full(&self) -> bool;
}

impl IsDiskFull for std::io::Error {
    fn is_disk_full(&self) -> bool {
        matches!(
            self.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        )
    }
}

impl IsDiskFull for rusqlite::Error {
    fn is_disk_full(&self) -> bool {
        matches!(self, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
    }
}

fn statvfs_available(dir: &Path) -> std::io::Result<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a struct statvfs to fill.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// A file whose blocks are allocated (not sparse), so deleting it frees
/// `size` octets for sure.
fn preallocate(path: &Path, size: u64) -> std::io::Result<()> {
    let file: File = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let len = libc::off_t::try_from(size)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: an open file descriptor; posix_fallocate returns the error.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_takes_the_reserve_step_by_step_until_it_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path());
        space.configure(0, 64 * 1024);
        let reserve = dir.path().join("reserve");
        let len = || std::fs::metadata(&reserve).map_or(0, |m| m.len());
        assert_eq!(len(), 64 * 1024);
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        // Fails twice for lack of space: two steps are freed, then the
        // write succeeds; the disk has room again, so the reserve is whole.
        let mut tries = 0;
        let r: std::io::Result<u32> = space.with_reserve(|| {
            tries += 1;
            if tries <= 2 {
                assert_eq!(len(), 64 * 1024 - (tries - 1) * 4096);
                Err(full())
            } else {
                Ok(7)
            }
        });
        assert_eq!((r.unwrap(), tries), (7, 3));
        assert_eq!(len(), 64 * 1024);
        // Another error is not retried.
        let mut tries = 0;
        let r: std::io::Result<()> = space.with_reserve(|| {
            tries += 1;
            Err(std::io::Error::other("x"))
        });
        assert!(r.is_err() && tries == 1);
        // A disk that stays full spends the whole reserve, then gives up.
        let mut tries = 0;
        let r: std::io::Result<()> = space.with_reserve(|| {
            tries += 1;
            Err(full())
        });
        assert!(r.is_err());
        assert_eq!((tries, len()), (17, 0));
    }

    #[test]
    fn room_counts_the_minimum_free() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path());
        assert!(space.has_room_for(0));
        space.configure(u64::MAX, 0);
        assert!(!space.has_room_for(0));
        space.configure(1, 0);
        assert!(space.has_room_for(1000));
        assert!(!space.has_room_for(u64::MAX - 1));
    }
}
