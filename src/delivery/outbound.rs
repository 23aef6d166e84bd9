//! The queue runner (SPEC NEW-2): wakes when a message is queued or a retry
//! falls due, hands each due message to one worker (never two at once),
//! which routes its recipients by domain, delivers each domain group over
//! SMTP (`transport`, limited and reused by `pool`) or locally, and has
//! `settle` record every recipient's outcome, bounce failures with one DSN
//! and remove the message once every recipient is final.
//!
//! Durability: the store is the only state. A recipient is marked delivered
//! only after the remote 250 (or the local fsync), failed only in the same
//! store call that wrote its DSN, and the message file is removed only when
//! no recipient is pending; a crash at any point leaves the message due
//! again on restart. A crash between a remote 250 and our record of it makes
//! the next run send that recipient the message again: a duplicate, never a
//! loss (RFC 5321 6.1 prefers this). On SIGTERM the runtime drops every
//! delivery at its next await: a cut-off transaction has no final dot, so
//! the remote side discards it, nothing is recorded and the recipient stays
//! pending; a store call already running completes.
//!
//! A message whose file has vanished can never be delivered: its pending
//! recipients fail at once (5.3.0) and the DSN goes out without headers.
//! A route leading back to one of our own SMTP listeners fails with 5.4.6
//! instead of connecting (see `route::Myself`).

use super::body::Body;
use super::client::Reply;
use super::pool::{Pool, Slot};
use super::route::{loop_reply, Hop, Myself, Route, Router};
use super::settle::{self, has_pending, Outcome};
use super::transport::{SendError, Session};
use crate::app::App;
use crate::store::{QueuedMessage, QueuedRecipient, RecipientState, StoreError};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tracing::Instrument;

/// The queue is scanned at least this often (retries fall due by time).
const POLL: Duration = Duration::from_secs(1);
/// Scans are at least this far apart (wake-ups in between are merged).
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(50);
/// Messages being worked on at once; more wait for the next scan. Also the
/// most one scan reads from the queue index, which is enough: of the
/// earliest-due messages it returns, those already in flight take at most
/// as many as there are slots in use.
const MAX_IN_FLIGHT: usize = 2000;
/// RFC 5321 4.5.3.1.8: servers must take 100 recipients per transaction;
/// more may be refused with 452, so larger groups are split.
const MAX_RCPTS_PER_TRANSACTION: usize = 100;
/// Addresses tried per destination host.
const MAX_ADDRS_PER_HOST: usize = 4;

struct Runner {
    app: Arc<App>,
    pool: Pool,
    router: Router,
    in_flight: Mutex<HashSet<String>>,
    /// The last scan may have left due messages unread or unstarted: a
    /// worker that finishes asks for the next scan at once.
    backlog: AtomicBool,
}

/// Runs until the process ends; `own_smtp` are the bound addresses of our
/// SMTP listeners (a route to one of them is a mail loop).
pub async fn run(app: Arc<App>, own_smtp: Vec<SocketAddr>) {
    let cfg = &app.config.outbound;
    let runner = Arc::new(Runner {
        pool: Pool::new(cfg.max_connections, cfg.max_per_destination),
        router: Router::new(Myself::new(&app.config.hostname, own_smtp)),
        app: app.clone(),
        in_flight: Mutex::default(),
        backlog: AtomicBool::new(false),
    });
    runner.clone().remove_finished().await;
    loop {
        let scanned = tokio::time::Instant::now();
        runner.clone().scan().await;
        runner.pool.reap();
        tokio::select! {
            _ = app.queue_wakeup.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
        // Under a flood of wake-ups this batches new messages instead of
        // rereading the queue index per message.
        tokio::time::sleep_until(scanned + MIN_SCAN_INTERVAL).await;
    }
}

impl Runner {
    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages left with no pending recipient by a crash after the last
    /// record and before the removal.
    async fn remove_finished(self: Arc<Self>) {
        let done = self
            .app
            .store
            .run(|s| {
                let list = s.queue.list()?;
                let mut n = 0;
                for m in list.iter().filter(|m| !has_pending(m)) {
                    n += s.queue.remove(&m.id)? as usize;
                }
                Ok(n)
            })
            .await;
        match done {
            Ok(n) if n > 0 => tracing::info!(removed = n, "finished messages left in the queue"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "checking the queue at start-up"),
        }
    }

    async fn scan(self: Arc<Self>) {
        let now = SystemTime::now();
        let due = match self
            .app
            .store
            .run(move |s| s.queue.due_ids(now, MAX_IN_FLIGHT))
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading the queue");
                return;
            }
        };
        // Set before any worker starts (and may finish).
        self.backlog
            .store(due.len() >= MAX_IN_FLIGHT, Ordering::Relaxed);
        for id in due {
            {
                let mut busy = self.in_flight();
                if busy.len() >= MAX_IN_FLIGHT {
                    self.backlog.store(true, Ordering::Relaxed);
                    break;
                }
                if !busy.insert(id.clone()) {
                    continue;
                }
            }
            let runner = self.clone();
            let span = tracing::info_span!("outbound", id = %id);
            tokio::spawn(
                async move {
                    runner.process(&id).await;
                    runner.in_flight().remove(&id);
                    if runner.backlog.load(Ordering::Relaxed) {
                        runner.app.queue_wakeup.notify_one();
                    }
                }
                .instrument(span),
            );
        }
    }

    /// One attempt at every due recipient of one message (or, when its file
    /// is gone, the end of it). The message is read after it was claimed:
    /// the scan only saw its id, and another worker may have recorded
    /// results since.
    async fn process(&self, id: &str) {
        let id2 = id.to_string();
        let loaded = self
            .app
            .store
            .run(move |s| {
                let Some(m) = s.queue.get(&id2)? else {
                    return Ok(None);
                };
                if !matches!(s.queue.open(&id2), Err(StoreError::NotFound(_))) {
                    return Ok(Some((m, true)));
                }
                // `queue delete` removes the index row before the file:
                // with the row gone too, it was deleted, not lost.
                Ok(s.queue.get(&id2)?.map(|m| (m, false)))
            })
            .await;
        let (msg, present) = match loaded {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(id, error = %e, "reading a queued message");
                return;
            }
        };
        let results = if present {
            self.attempt(&msg).await
        } else {
            lost(&msg)
        };
        match settle::record(&self.app, &msg, results).await {
            Ok(true) => self.app.queue_wakeup.notify_one(),
            Ok(false) => {}
            Err(e) => tracing::error!(id = %msg.id, error = %e, "recording delivery results"),
        }
    }

    async fn attempt(&self, msg: &QueuedMessage) -> Vec<(String, Outcome)> {
        let now = SystemTime::now();
        let mut groups: BTreeMap<String, Vec<&QueuedRecipient>> = BTreeMap::new();
        for r in &msg.recipients {
            if r.state == RecipientState::Pending && r.next_try <= now {
                groups.entry(domain_of(&r.address)).or_default().push(r);
            }
        }
        let attempts = groups.into_iter().map(|(domain, rcpts)| {
            let addrs: Vec<String> = rcpts.iter().map(|r| r.address.clone()).collect();
            async move { self.deliver_domain(msg, &domain, addrs).await }
        });
        futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    async fn deliver_domain(
        &self,
        msg: &QueuedMessage,
        domain: &str,
        rcpts: Vec<String>,
    ) -> Vec<(String, Outcome)> {
        let all = |o: Outcome| rcpts.iter().map(|a| (a.clone(), o.clone())).collect();
        if domain.is_empty() {
            return all(Outcome::Failed(Reply::new(
                553,
                "5.1.3 recipient address has no domain",
            )));
        }
        // A local domain that ended up queued is delivered here, never sent out.
        if self.app.config.is_local_domain(domain) {
            return self.deliver_local(msg, rcpts).await;
        }
        match self.router.route(&self.app, domain).await {
            Route::Fail(r) => all(Outcome::Failed(r)),
            Route::Defer(r) => all(Outcome::Deferred(r)),
            Route::Hosts(hops) => {
                let mut out = Vec::with_capacity(rcpts.len());
                for chunk in rcpts.chunks(MAX_RCPTS_PER_TRANSACTION) {
                    let chunk = chunk.to_vec();
                    out.extend(self.deliver_remote(msg, domain, &hops, chunk).await);
                }
                out
            }
        }
    }

    async fn deliver_local(
        &self,
        msg: &QueuedMessage,
        rcpts: Vec<String>,
    ) -> Vec<(String, Outcome)> {
        let (id, sender) = (msg.id.clone(), msg.sender.clone());
        let all = rcpts.clone();
        let result = self
            .app
            .store
            .run(move |s| {
                let mut out = Vec::new();
                let mut accounts = Vec::new();
                for a in rcpts {
                    match s.accounts.find(&a)? {
                        Some(acc) if !acc.disabled => {
                            // Two addresses of one account: one copy.
                            if !accounts
                                .iter()
                                .any(|x: &crate::store::Account| x.id == acc.id)
                            {
                                accounts.push(acc);
                            }
                            out.push((a, None));
                        }
                        _ => {
                            let r = Reply::new(550, format!("5.1.1 <{a}> User unknown"));
                            out.push((a, Some(Outcome::Failed(r))));
                        }
                    }
                }
                if !accounts.is_empty() {
                    let prefix = super::local::return_path(&sender);
                    let mut body = s.queue.open(&id)?;
                    s.mail
                        .deliver(&accounts, prefix.as_bytes(), &mut body, u64::MAX)?;
                }
                let ok = Reply::new(250, "2.0.0 delivered to the local mailbox");
                Ok(out
                    .into_iter()
                    .map(|(a, o)| (a, o.unwrap_or_else(|| Outcome::Delivered(ok.clone()))))
                    .collect::<Vec<_>>())
            })
            .await;
        match result {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(id = %msg.id, error = %e, "local delivery from the queue");
                let r = Reply::new(451, "4.3.0 local delivery failed");
                all.into_iter()
                    .map(|a| (a, Outcome::Deferred(r.clone())))
                    .collect()
            }
        }
    }

    /// Tries the hosts in order until one takes the transaction. RFC 5321
    /// 5.1: when one host of a preference is this server, that preference
    /// and the worse ones are not tried; if it is the best, mail loops.
    async fn deliver_remote(
        &self,
        msg: &QueuedMessage,
        domain: &str,
        hops: &[Hop],
        rcpts: Vec<String>,
    ) -> Vec<(String, Outcome)> {
        let all = |o: Outcome| rcpts.iter().map(|a| (a.clone(), o.clone())).collect();
        let mut last = Reply::new(451, "4.4.4 no host to deliver to");
        for (rank, group) in hops
            .chunk_by(|a, b| a.preference == b.preference)
            .enumerate()
        {
            let mut targets: Vec<(&Hop, Vec<IpAddr>)> = Vec::new();
            for hop in group {
                match self.router.addresses(&self.app, &hop.host).await {
                    Ok(ips) if ips.is_empty() => {
                        last = Reply::new(451, format!("4.4.4 {} has no address", hop.host));
                    }
                    Ok(ips) => targets.push((hop, ips)),
                    Err(e) => last = Reply::new(451, format!("4.4.3 {e}")),
                }
            }
            let me = targets.iter().find(|(hop, ips)| {
                ips.iter()
                    .any(|ip| self.router.is_myself(SocketAddr::new(*ip, hop.port)))
            });
            if let Some((hop, _)) = me {
                tracing::warn!(id = %msg.id, host = %hop.host, port = hop.port, "route to ourselves");
                if rank == 0 {
                    return all(Outcome::Failed(loop_reply(domain)));
                }
                break;
            }
            for (hop, ips) in targets {
                for ip in ips.into_iter().take(MAX_ADDRS_PER_HOST) {
                    let addr = SocketAddr::new(ip, hop.port);
                    match self.send_to(addr, &hop.host, msg, &rcpts).await {
                        Ok(outcomes) => return outcomes.into_iter().map(classify).collect(),
                        Err(SendError::Early(r)) => {
                            tracing::info!(id = %msg.id, %addr, reply = %r, "trying the next host");
                            last = r;
                        }
                        Err(SendError::Late(r)) => return all(Outcome::Deferred(r)),
                    }
                }
            }
        }
        all(Outcome::Deferred(last))
    }

    /// One transaction on an idle session to `addr` or a new one. A reused
    /// session the server has meanwhile closed fails early; then a fresh
    /// connection is tried.
    async fn send_to(
        &self,
        addr: SocketAddr,
        host: &str,
        msg: &QueuedMessage,
        rcpts: &[String],
    ) -> Result<Vec<(String, Reply)>, SendError> {
        // Idle sessions the server has closed meanwhile fail early and are
        // dropped; each is tried once, so this loop ends.
        let permits = loop {
            match self.pool.get(addr).await {
                Slot::Idle(conn) => match self.transact(conn, msg, rcpts).await {
                    Err(SendError::Early(r)) => {
                        tracing::debug!(%addr, reply = %r, "reused session failed")
                    }
                    other => return other,
                },
                Slot::New(p) => break p,
            }
        };
        let cfg = &self.app.config.outbound;
        let session = Session::open(addr, host, &self.app.config.hostname, cfg)
            .await
            .map_err(SendError::Early)?;
        tracing::debug!(id = %msg.id, %addr, tls = session.tls, "connected");
        self.transact(Pool::conn(session, permits), msg, rcpts)
            .await
    }

    async fn transact(
        &self,
        mut conn: super::pool::Conn,
        msg: &QueuedMessage,
        rcpts: &[String],
    ) -> Result<Vec<(String, Reply)>, SendError> {
        // RFC 1870: do not send what the server said it will not take.
        if conn.session.max_size().is_some_and(|max| msg.size > max) {
            let r = Reply::new(
                552,
                "5.3.4 message is larger than the receiving server accepts",
            );
            self.pool.put(conn);
            return Ok(rcpts.iter().map(|a| (a.clone(), r.clone())).collect());
        }
        let store = self.app.store.clone();
        let id = msg.id.clone();
        let body =
            move || Body::stream(move || store.queue.open(&id).map_err(std::io::Error::other));
        let result = conn
            .session
            .send(&msg.sender, rcpts.to_vec(), msg.size, body)
            .await;
        if result.is_ok() {
            self.pool.put(conn);
        }
        result
    }
}

/// The remote server's deciding reply for one recipient.
fn classify((address, r): (String, Reply)) -> (String, Outcome) {
    let o = if r.is_positive() {
        Outcome::Delivered(r)
    } else if r.is_permanent() {
        Outcome::Failed(r)
    } else {
        Outcome::Deferred(r)
    };
    (address, o)
}

/// Every pending recipient of a message whose file is gone fails now: it
/// can never be delivered, and waiting for the queue lifetime would only
/// delay the bounce.
fn lost(msg: &QueuedMessage) -> Vec<(String, Outcome)> {
    tracing::error!(id = %msg.id, "queued message file is missing; failing its recipients");
    let r = Reply::new(554, "5.3.0 queued message file is missing");
    msg.recipients
        .iter()
        .filter(|x| x.state == RecipientState::Pending)
        .map(|x| (x.address.clone(), Outcome::Failed(r.clone())))
        .collect()
}

/// The domain of an address, lower-case ("" when there is none).
pub(super) fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lower_case_without_the_root_dot() {
        assert_eq!(domain_of("a@Far.Test."), "far.test");
        assert_eq!(domain_of("postmaster"), "");
        assert_eq!(domain_of("\"a@b\"@c.test"), "c.test");
    }
}
