//! The accept loop: one task per connection, at most `max_connections` at
//! once (more wait in the kernel backlog) and at most
//! `max_connections_per_ip` from one client, so neither a flood nor one
//! greedy host can exhaust memory or lock others out. A client is an IPv4
//! address or an IPv6 /64, as for failed logins: a subscriber's /64 holds
//! more addresses than any limit. Every connection also holds a slot of the
//! process's [`FdBudget`], so the process never runs out of descriptors for
//! refusing clients or for storing their mail.

use super::fds::{out_of_descriptors, refuse, FdBudget};
use crate::auth::failures::key as client_key;
use crate::config::Limits;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Open connections per client (see [`client_key`]); an entry lives while
/// its count is > 0.
#[derive(Default)]
struct PerIp(Mutex<HashMap<IpAddr, usize>>);

/// Holds one slot of a client IP; frees it when the connection ends.
struct IpSlot {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpSlot> {
        let ip = client_key(ip);
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// What a refused client is told, in the listener's protocol.
pub struct Refusals {
    /// Its address (or /64) has `max_connections_per_ip` open already.
    pub per_client: &'static [u8],
    /// The process's descriptors for clients are spent ([`FdBudget`]).
    pub busy: &'static [u8],
}

/// Runs `handler` for each accepted connection, which holds one slot of
/// `fds` while it runs. A client over its per-IP limit, or arriving when
/// `fds` is spent, gets the matching refusal and is closed without reaching
/// the handler.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    limits: &Limits,
    fds: Arc<FdBudget>,
    refusals: Refusals,
    handler: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let max_per_ip = limits.max_connections_per_ip;
    let exempt = limits.connection_limit_exempt.clone();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((tcp, peer)) => {
                let Some(fd) = fds.try_take() else {
                    fds.note_refused();
                    refuse(tcp, refusals.busy);
                    continue;
                };
                let ip = peer.ip().to_canonical();
                let slot = if exempt.iter().any(|n| n.contains(&ip)) {
                    None
                } else {
                    match per_ip.take(ip, max_per_ip) {
                        Some(slot) => Some(slot),
                        None => {
                            tracing::info!(%peer, "too many connections from one address");
                            refuse(tcp, refusals.per_client);
                            continue;
                        }
                    }
                };
                let fut = handler(tcp, peer);
                tokio::spawn(async move {
                    fut.await;
                    drop((slot, fd, permit));
                });
            }
            Err(e) if out_of_descriptors(&e) => {
                if !fds.refuse_with_spare(&listener, refusals.busy).await {
                    tracing::warn!(error = %e, "accept failed: out of file descriptors");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn ipv6_clients_count_per_64() {
        let table = Arc::new(PerIp::default());
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let a = table.take(ip("2001:db8:1:2::1"), 2).unwrap();
        let _b = table.take(ip("2001:db8:1:2:ffff::9"), 2).unwrap();
        assert!(table.take(ip("2001:db8:1:2::77"), 2).is_none());
        // Another /64 and IPv4 addresses are clients of their own.
        assert!(table.take(ip("2001:db8:1:3::1"), 2).is_some());
        let _c = table.take(ip("127.0.0.2"), 1).unwrap();
        assert!(table.take(ip("127.0.0.3"), 1).is_some());
        assert!(table.take(ip("::ffff:127.0.0.2"), 1).is_none());
        drop(a);
        assert!(table.take(ip("2001:db8:1:2::5"), 2).is_some());
    }

    const REFUSALS: Refusals = Refusals {
        per_client: b"busy\r\n",
        busy: b"full\r\n",
    };

    /// Greets each client and holds it until the client closes.
    async fn serve_hello(l: TcpListener, limits: &Limits, fds: Arc<FdBudget>) {
        accept_loop(l, limits, fds, REFUSALS, |mut s, _| async move {
            let _ = s.write_all(b"hello\r\n").await;
            let mut b = [0u8; 1];
            let _ = s.read(&mut b).await;
        })
        .await
    }

    async fn first_line(c: &mut TcpStream) -> String {
        let mut buf = vec![0u8; 16];
        let n = c.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn spent_descriptors_refuse_at_once_until_one_is_freed() {
        let limits = Limits::default();
        let fds = FdBudget::new(2);
        let held = fds.try_take();
        let fds2 = fds.clone();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { serve_hello(l, &limits, fds2).await });
        let mut a = TcpStream::connect(addr).await.unwrap();
        assert_eq!(first_line(&mut a).await, "hello\r\n");
        let mut b = TcpStream::connect(addr).await.unwrap();
        assert_eq!(first_line(&mut b).await, "full\r\n");
        assert_eq!(fds.used(), 2);
        drop(held);
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(first_line(&mut c).await, "hello\r\n");
    }

    #[tokio::test]
    async fn one_address_gets_only_its_share() {
        let mut limits: Limits = toml::from_str("max_connections_per_ip = 2").unwrap();
        limits.connection_limit_exempt.clear();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { serve_hello(l, &limits, FdBudget::new(usize::MAX)).await });
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        assert_eq!(first_line(&mut a).await, "hello\r\n");
        assert_eq!(first_line(&mut b).await, "hello\r\n");
        let mut c = TcpStream::connect(addr).await.unwrap();
        assert_eq!(first_line(&mut c).await, "busy\r\n");
        // A slot is freed when its connection ends.
        drop(a);
        let mut ok = false;
        for _ in 0..50 {
            let mut d = TcpStream::connect(addr).await.unwrap();
            if first_line(&mut d).await == "hello\r\n" {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "the freed slot was never given out again");
    }
}
