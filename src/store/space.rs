//! Free space in the data directory, and the reserve that lets customers
//! delete mail on a full disk.
//!
//! SMTP refuses new mail (452 4.3.1) once free space falls below
//! `[limits] smtp_min_free_disk`, so a full disk comes only from a message
//! already being received or from something else on the file system. Then
//! POP locks and relay grants must still be written (they come before every
//! deletion, SEED-6), and SQLite needs new pages for them. The reserve is a
//! preallocated file of `[limits] disk_reserve` octets in the data
//! directory: a lock or grant write that fails for lack of space deletes it
//! and retries, and it is made again once the disk has room, as databases
//! keep a "ballast" file. It beats preallocating SQLite pages (the WAL and a
//! checkpoint may still need new blocks) and in-memory locks (the admin CLI
//! and other processes on the same data read the locks table).

use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A statvfs answer is reused this long: SMTP asks at every MAIL and RCPT.
const CACHE_FOR: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    reserve_path: PathBuf,
    /// `[limits] smtp_min_free_disk`; 0 until [`DiskSpace::configure`].
    min_free: AtomicU64,
    /// `[limits] disk_reserve`; 0 (no reserve) until configured.
    reserve_size: AtomicU64,
    /// The reserve was given up and is to be made again.
    reserve_spent: AtomicBool,
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
            reserve_spent: AtomicBool::new(true),
            cached: Mutex::new(None),
        }
    }

    /// Sets the limits and makes the reserve if the disk has room (blocking).
    pub fn configure(&self, min_free: u64, reserve: u64) {
        self.min_free.store(min_free, Ordering::Relaxed);
        self.reserve_size.store(reserve, Ordering::Relaxed);
        self.reserve_spent.store(true, Ordering::Relaxed);
        self.restore_reserve();
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

    /// Runs a lock or grant write; if it fails for lack of space and the
    /// reserve is there, gives the reserve up and runs it once more.
    /// Blocking.
    pub fn with_reserve<T, E: IsDiskFull>(
        &self,
        mut write: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let result = match write() {
            Err(e) if e.is_disk_full() && self.release_reserve() => write(),
            r => r,
        };
        if result.is_ok() && self.reserve_spent.load(Ordering::Relaxed) {
            self.restore_reserve();
        }
        result
    }

    /// Deletes the reserve; false if there was none to give.
    fn release_reserve(&self) -> bool {
        if self.reserve_spent.swap(true, Ordering::Relaxed) {
            return false;
        }
        let released = std::fs::remove_file(&self.reserve_path).is_ok();
        self.forget();
        tracing::warn!(
            released,
            "disk full: the space reserve is given up for a lock or grant write"
        );
        released
    }

    /// Makes the reserve again once the disk has room for it and the
    /// minimum free space, so that new mail never eats into it.
    fn restore_reserve(&self) {
        let size = self.reserve_size.load(Ordering::Relaxed);
        if size == 0 || !self.has_room_for(size) {
            return;
        }
        if self.reserve_spent.swap(false, Ordering::Relaxed) {
            match preallocate(&self.reserve_path, size) {
                Ok(()) => tracing::info!(size, "space reserve in place"),
                Err(e) => {
                    self.reserve_spent.store(true, Ordering::Relaxed);
                    let _ = std::fs::remove_file(&self.reserve_path);
                    tracing::warn!(error = %e, "making the space reserve failed");
                }
            }
            self.forget();
        }
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
    fn the_reserve_is_given_once_for_a_full_disk_and_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path());
        space.configure(0, 64 * 1024);
        let reserve = dir.path().join("reserve");
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 64 * 1024);
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        // Full, reserve given, the retry succeeds; then it is made again.
        let mut tries = 0;
        let r: std::io::Result<u32> = space.with_reserve(|| {
            tries += 1;
            if tries == 1 {
                Err(full())
            } else {
                Ok(7)
            }
        });
        assert_eq!((r.unwrap(), tries), (7, 2));
        assert!(reserve.exists());
        // Another error is not retried; neither is a full disk without a reserve.
        let mut tries = 0;
        let r: std::io::Result<()> = space.with_reserve(|| {
            tries += 1;
            Err(std::io::Error::other("x"))
        });
        assert!(r.is_err() && tries == 1);
        std::fs::remove_file(&reserve).unwrap();
        space.reserve_spent.store(true, Ordering::Relaxed);
        space.reserve_size.store(u64::MAX / 2, Ordering::Relaxed); // no room to remake
        let mut tries = 0;
        let r: std::io::Result<()> = space.with_reserve(|| {
            tries += 1;
            Err(full())
        });
        assert!(r.is_err() && tries == 1);
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
