//! File descriptors. A service's soft open-file limit (often 1024) is far
//! below what `max_connections` promises, so `serve` raises it to the hard
//! limit and sizes an [`FdBudget`] from what is left after the descriptors
//! already open, outbound connections and `[limits] reserved_fds` (the
//! store's Maildir and queue files). Client connections and SMTP spool files
//! draw from the budget; a client past it gets the protocol's "busy" reply
//! at once, and the reserve keeps a message in progress storable.

use crate::config::Config;
use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// The soft and hard RLIMIT_NOFILE.
fn nofile() -> io::Result<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r)
}

/// Raises the soft open-file limit to the hard one; (before, now).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    let r = nofile()?;
    let before = r.rlim_cur as u64;
    if r.rlim_cur < r.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: r.rlim_max,
            rlim_max: r.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok((before, nofile()?.rlim_cur as u64))
}

/// Descriptors open in this process now (Linux; 0 where unknown).
pub fn open_now() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// What the configuration asks of the open-file limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdPlan {
    /// Client connections and spool files the limit leaves room for.
    pub clients: usize,
    /// What the listeners' `limits.max_connections` add up to.
    pub wanted: usize,
}

impl FdPlan {
    pub fn new(config: &Config, limit: u64, open: usize) -> FdPlan {
        let listeners = config.listeners.len();
        let kept = open + config.outbound.max_connections + config.limits.reserved_fds;
        FdPlan {
            clients: usize::try_from(limit)
                .unwrap_or(usize::MAX)
                .saturating_sub(kept),
            wanted: listeners.saturating_mul(config.limits.max_connections),
        }
    }
}

/// Descriptors client connections and spool files may hold together.
#[derive(Debug)]
pub struct FdBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
    /// Closed to accept and refuse one client when the process is out of
    /// descriptors (EMFILE), then reopened: as nginx and libuv do.
    spare: Mutex<Option<File>>,
    /// When the last refusal was logged, and refusals since.
    refused: Mutex<(Option<Instant>, u64)>,
}

/// One descriptor of the budget, given back when dropped.
#[derive(Debug)]
pub struct FdSlot(Arc<FdBudget>);

impl Drop for FdSlot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

impl FdBudget {
    pub fn new(limit: usize) -> Arc<FdBudget> {
        Arc::new(FdBudget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
            spare: Mutex::new(File::open("/dev/null").ok()),
            refused: Mutex::new((None, 0)),
        })
    }

    /// Set once at start, when the open-file limit is known.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Release);
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn try_take(self: &Arc<Self>) -> Option<FdSlot> {
        let limit = self.limit.load(Ordering::Acquire);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < limit).then_some(u + 1)
            })
            .ok()
            .map(|_| FdSlot(self.clone()))
    }

    /// Counts a client refused for want of descriptors; warns at most once
    /// a second, with the count, so that a flood does not flood the log.
    pub fn note_refused(&self) {
        let mut r = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        r.1 += 1;
        if r.0.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
            tracing::warn!(
                refused = r.1,
                "file descriptors for clients spent: new clients refused"
            );
            *r = (Some(Instant::now()), 0);
        }
    }

    /// After EMFILE/ENFILE from accept: frees the spare descriptor so that
    /// the waiting client gets `busy` instead of hanging in the backlog.
    /// False when there was no spare to use.
    pub async fn refuse_with_spare(&self, listener: &TcpListener, busy: &[u8]) -> bool {
        let Some(spare) = self.lock_spare().take() else {
            return false;
        };
        drop(spare);
        let accepted = tokio::time::timeout(Duration::from_secs(1), listener.accept());
        if let Ok(Ok((tcp, _))) = accepted.await {
            self.note_refused();
            refuse(tcp, busy);
        }
        *self.lock_spare() = File::open("/dev/null").ok();
        true
    }

    fn lock_spare(&self) -> std::sync::MutexGuard<'_, Option<File>> {
        self.spare.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Sends a one-line refusal and closes. The write does not wait: a fresh
/// connection's send buffer always takes a line, and a refused client must
/// not hold a descriptor.
pub fn refuse(tcp: TcpStream, reply: &[u8]) {
    let _ = socket2::SockRef::from(&tcp).send(reply);
}

/// Accept errors that mean the process or system is out of descriptors.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn the_plan_subtracts_what_is_kept_and_names_the_wanted() {
        let c = Config::embedded_default();
        let plan = FdPlan::new(&c, 1024, 40);
        assert_eq!(
            plan.clients,
            1024 - 40 - c.outbound.max_connections - c.limits.reserved_fds
        );
        assert_eq!(plan.wanted, 7 * 20_000);
        assert_eq!(FdPlan::new(&c, 100, 40).clients, 0);
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let b = FdBudget::new(2);
        let one = b.try_take().unwrap();
        let _two = b.try_take().unwrap();
        assert!(b.try_take().is_none());
        drop(one);
        assert!(b.try_take().is_some());
        b.set_limit(5);
        assert_eq!(b.used(), 1);
        assert!(b.try_take().is_some());
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (before, now) = raise_nofile_limit().unwrap();
        let r = nofile().unwrap();
        assert!(now >= before);
        assert_eq!(now, r.rlim_max as u64);
    }

    #[tokio::test]
    async fn the_spare_descriptor_refuses_a_waiting_client() {
        let b = FdBudget::new(0);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        assert!(b.refuse_with_spare(&l, b"busy\r\n").await);
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"busy\r\n");
        // The spare is back for the next time.
        assert!(b.lock_spare().is_some());
    }
}
