//! Outbound connection limits and reuse: a global cap on connections
//! (outbound.max_connections), a cap per destination address
//! (outbound.max_per_destination), and idle sessions kept for a few seconds
//! so several messages to one host share a connection.

use super::transport::Session;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// How long an idle session is kept (Postfix keeps them 2 s by default;
/// a queue flush of many messages fits in this window).
const IDLE_MAX: Duration = Duration::from_secs(5);

/// A session with the permits it occupies; dropping it frees them.
pub struct Conn {
    pub session: Session,
    idle_since: Instant,
    _global: OwnedSemaphorePermit,
    _host: OwnedSemaphorePermit,
}

pub struct Pool {
    global: Arc<Semaphore>,
    per_host: usize,
    hosts: Mutex<HashMap<SocketAddr, Arc<Dest>>>,
    idle: Mutex<HashMap<SocketAddr, Vec<Conn>>>,
    /// Wakes tasks waiting for the global cap: an idle session can be closed.
    idle_added: Notify,
}

/// One destination address: its connection limit, and a signal for tasks
/// waiting on that limit that a session came back and can be reused.
struct Dest {
    limit: Arc<Semaphore>,
    returned: Notify,
}

/// The two permits a new connection needs.
pub struct Permits(OwnedSemaphorePermit, OwnedSemaphorePermit);

/// What a delivery gets from the pool.
pub enum Slot {
    Idle(Conn),
    New(Permits),
}

impl Pool {
    pub fn new(max_connections: usize, per_host: usize) -> Pool {
        Pool {
            global: Arc::new(Semaphore::new(max_connections.max(1))),
            per_host: per_host.max(1),
            hosts: Mutex::default(),
            idle: Mutex::default(),
            idle_added: Notify::new(),
        }
    }

    /// A live idle session to `addr`, most recently used first.
    fn take_idle(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        while let Some(c) = list.pop() {
            if c.idle_since.elapsed() < IDLE_MAX {
                return Some(c);
            }
        }
        None
    }

    pub fn put(&self, mut conn: Conn) {
        if !conn.session.reusable() {
            return;
        }
        let addr = conn.session.peer;
        conn.idle_since = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr)
            .or_default()
            .push(conn);
        self.dest(addr).returned.notify_one();
        self.idle_added.notify_waiters();
    }

    fn dest(&self, addr: SocketAddr) -> Arc<Dest> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .entry(addr)
            .or_insert_with(|| {
                Arc::new(Dest {
                    limit: Arc::new(Semaphore::new(self.per_host)),
                    returned: Notify::new(),
                })
            })
            .clone()
    }

    /// An idle session to `addr`, or room for a new one, whichever comes
    /// first: a task waiting on the per-destination limit takes a session
    /// another task just finished with, instead of waiting for it to close.
    pub async fn get(&self, addr: SocketAddr) -> Slot {
        let dest = self.dest(addr);
        let host = loop {
            let returned = dest.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(c) = self.take_idle(addr) {
                return Slot::Idle(c);
            }
            tokio::select! {
                p = dest.limit.clone().acquire_owned() => break p.expect("never closed"),
                _ = returned => {}
            }
        };
        Slot::New(self.global(host).await)
    }

    /// When the global cap is taken by idle sessions, the oldest idle one
    /// is closed to make room.
    async fn global(&self, host: OwnedSemaphorePermit) -> Permits {
        loop {
            let idle_added = self.idle_added.notified();
            tokio::pin!(idle_added);
            idle_added.as_mut().enable();
            if let Ok(g) = self.global.clone().try_acquire_owned() {
                return Permits(g, host);
            }
            // Its permit comes back when its QUIT is done (another task may
            // take it first; then the next idle session is closed).
            if let Some(c) = self.evict_oldest() {
                close(c);
            }
            tokio::select! {
                g = self.global.clone().acquire_owned() => {
                    return Permits(g.expect("never closed"), host);
                }
                _ = idle_added => {}
            }
        }
    }

    pub fn conn(session: Session, p: Permits) -> Conn {
        Conn {
            session,
            idle_since: Instant::now(),
            _global: p.0,
            _host: p.1,
        }
    }

    fn evict_oldest(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let addr = idle
            .iter()
            .filter_map(|(a, l)| l.first().map(|c| (*a, c.idle_since)))
            .min_by_key(|(_, t)| *t)?
            .0;
        let list = idle.get_mut(&addr)?;
        let c = list.remove(0);
        if list.is_empty() {
            idle.remove(&addr);
        }
        Some(c)
    }

    /// Closes sessions idle too long and forgets unused per-host limits.
    pub fn reap(&self) {
        let mut stale = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            for list in idle.values_mut() {
                let (old, keep): (Vec<Conn>, Vec<Conn>) = list
                    .drain(..)
                    .partition(|c| c.idle_since.elapsed() >= IDLE_MAX);
                *list = keep;
                stale.extend(old);
            }
            idle.retain(|_, l| !l.is_empty());
        }
        stale.into_iter().for_each(close);
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts
            .retain(|_, d| Arc::strong_count(d) > 1 || d.limit.available_permits() < self.per_host);
    }
}

/// QUIT in the background; the permits are freed when it is done.
fn close(mut c: Conn) {
    tokio::spawn(async move { c.session.quit().await });
}
