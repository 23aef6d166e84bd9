//! The queue runner (SPEC NEW-2): wakes when a message is queued or a retry
//! falls due, hands each due message to one worker (never two at once),
//! which routes its recipients by domain, delivers each domain group over
//! SMTP (`transport`, limited and reused by `pool`) or locally, records
//! every recipient's outcome, bounces failures with one DSN and removes the
//! message once every recipient is final.
//!
//! Durability: the store is the only state. A recipient is marked delivered
//! only after the remote 250 (or the local fsync), failed only after its DSN
//! was written, and the message file is removed only when no recipient is
//! pending; a crash at any point leaves the message due again on restart.
//! A crash between a remote 250 and our record of it makes the next run send
//! that recipient the message again: a duplicate, never a loss (RFC 5321
//! 6.1 prefers this). A DSN written just before a crash may likewise repeat.

use super::client::Reply;
use super::dsn::{self, Entry, Kind};
use super::pool::{Pool, Slot};
use super::route::{Route, Router};
use super::transport::{stream_body, SendError, Session};
use crate::app::App;
use crate::store::{QueuedMessage, QueuedRecipient, RecipientState, Store};
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tracing::Instrument;

pub use super::stats::{queue_stats, QueueStats};

/// The queue is scanned at least this often (retries fall due by time).
const POLL: Duration = Duration::from_secs(1);
/// Scans are at least this far apart (wake-ups in between are merged).
const MIN_SCAN_INTERVAL: Duration = Duration::from_millis(50);
/// Messages being worked on at once; more wait for the next scan.
const MAX_IN_FLIGHT: usize = 2000;
/// RFC 5321 4.5.3.1.8: servers must take 100 recipients per transaction;
/// more may be refused with 452, so larger groups are split.
const MAX_RCPTS_PER_TRANSACTION: usize = 100;
/// Addresses tried per destination host.
const MAX_ADDRS_PER_HOST: usize = 4;

/// What one attempt decided for one recipient.
#[derive(Debug, Clone)]
enum Outcome {
    Delivered(Reply),
    Failed(Reply),
    Deferred(Reply),
}

struct Runner {
    app: Arc<App>,
    pool: Pool,
    router: Router,
    in_flight: Mutex<HashSet<String>>,
}

pub async fn run(app: Arc<App>) {
    let cfg = &app.config.outbound;
    let runner = Arc::new(Runner {
        pool: Pool::new(cfg.max_connections, cfg.max_per_destination),
        app: app.clone(),
        router: Router::default(),
        in_flight: Mutex::default(),
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
        // A scan reads every due message; under a flood of wake-ups this
        // batches new messages instead of rereading the queue per message.
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
        let due = match self.app.store.run(|s| s.queue.due(SystemTime::now())).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "reading the queue");
                return;
            }
        };
        for msg in due {
            {
                let mut busy = self.in_flight();
                if busy.len() >= MAX_IN_FLIGHT || !busy.insert(msg.id.clone()) {
                    continue;
                }
            }
            let runner = self.clone();
            let span = tracing::info_span!("outbound", id = %msg.id);
            tokio::spawn(
                async move {
                    runner.process(&msg.id).await;
                    runner.in_flight().remove(&msg.id);
                }
                .instrument(span),
            );
        }
    }

    /// One attempt at every due recipient of one message. The message is
    /// read again after it was claimed: the scan's copy may predate the
    /// records of a worker that finished in between.
    async fn process(&self, id: &str) {
        let id2 = id.to_string();
        let msg = match self.app.store.run(move |s| s.queue.get(&id2)).await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(id, error = %e, "reading a queued message");
                return;
            }
        };
        let now = SystemTime::now();
        let mut groups: BTreeMap<String, Vec<&QueuedRecipient>> = BTreeMap::new();
        for r in &msg.recipients {
            if r.state == RecipientState::Pending && r.next_try <= now {
                groups.entry(domain_of(&r.address)).or_default().push(r);
            }
        }
        let attempts = groups.into_iter().map(|(domain, rcpts)| {
            let addrs: Vec<String> = rcpts.iter().map(|r| r.address.clone()).collect();
            let msg = &msg;
            async move { self.deliver_domain(msg, &domain, addrs).await }
        });
        let results: Vec<(String, Outcome)> = futures_util::future::join_all(attempts)
            .await
            .into_iter()
            .flatten()
            .collect();
        if let Err(e) = self.record(&msg, results).await {
            tracing::error!(id = %msg.id, error = %e, "recording delivery results");
        }
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
            Route::Hosts(hosts) => {
                let mut out = Vec::with_capacity(rcpts.len());
                for chunk in rcpts.chunks(MAX_RCPTS_PER_TRANSACTION) {
                    out.extend(self.deliver_remote(msg, &hosts, chunk.to_vec()).await);
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

    /// Tries the hosts in order until one takes the transaction.
    async fn deliver_remote(
        &self,
        msg: &QueuedMessage,
        hosts: &[(String, u16)],
        rcpts: Vec<String>,
    ) -> Vec<(String, Outcome)> {
        let mut last = Reply::new(451, "4.4.4 no host to deliver to");
        for (host, port) in hosts {
            let ips = match self.router.addresses(&self.app, host).await {
                Ok(ips) if ips.is_empty() => {
                    last = Reply::new(451, format!("4.4.4 {host} has no address"));
                    continue;
                }
                Ok(ips) => ips,
                Err(e) => {
                    last = Reply::new(451, format!("4.4.3 {e}"));
                    continue;
                }
            };
            for ip in ips.into_iter().take(MAX_ADDRS_PER_HOST) {
                let addr = SocketAddr::new(ip, *port);
                match self.send_to(addr, host, msg, &rcpts).await {
                    Ok(outcomes) => {
                        return outcomes
                            .into_iter()
                            .map(|(a, r)| {
                                let o = if r.is_positive() {
                                    Outcome::Delivered(r)
                                } else if r.is_permanent() {
                                    Outcome::Failed(r)
                                } else {
                                    Outcome::Deferred(r)
                                };
                                (a, o)
                            })
                            .collect();
                    }
                    Err(SendError::Early(r)) => {
                        tracing::info!(id = %msg.id, %addr, reply = %r, "trying the next host");
                        last = r;
                    }
                    Err(SendError::Late(r)) => {
                        return rcpts
                            .into_iter()
                            .map(|a| (a, Outcome::Deferred(r.clone())))
                            .collect();
                    }
                }
            }
        }
        rcpts
            .into_iter()
            .map(|a| (a, Outcome::Deferred(last.clone())))
            .collect()
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
            move || stream_body(move || store.queue.open(&id).map_err(std::io::Error::other));
        let result = conn
            .session
            .send(&msg.sender, rcpts.to_vec(), msg.size, body)
            .await;
        if result.is_ok() {
            self.pool.put(conn);
        }
        result
    }

    /// Stores the outcomes; failures are bounced (one DSN) before they are
    /// marked failed, and the message leaves the queue when nothing is pending.
    async fn record(
        &self,
        msg: &QueuedMessage,
        results: Vec<(String, Outcome)>,
    ) -> crate::store::Result<()> {
        let cfg = &self.app.config.outbound;
        let now = SystemTime::now();
        let expires = msg.created + cfg.queue_lifetime;
        let mut rows = Vec::new();
        let mut bounced = Vec::new();
        for (addr, outcome) in results {
            let attempts = msg
                .recipients
                .iter()
                .find(|r| r.address == addr)
                .map_or(0, |r| r.attempts);
            tracing::info!(id = %msg.id, to = %addr, outcome = ?outcome, "delivery attempt");
            match outcome {
                Outcome::Delivered(r) => {
                    rows.push((addr, RecipientState::Delivered, now, r.to_string()))
                }
                Outcome::Failed(r) => bounced.push((addr, r.status(), r.to_string())),
                Outcome::Deferred(r) if now >= expires => {
                    // RFC 3463 4.4.7: delivery time expired.
                    let text = format!(
                        "{r} (gave up: in the queue longer than {})",
                        humantime::format_duration(cfg.queue_lifetime)
                    );
                    bounced.push((addr, "4.4.7".into(), text));
                }
                Outcome::Deferred(r) => {
                    let next = (now + retry_delay(&cfg.retry_schedule, attempts)).min(expires);
                    rows.push((addr, RecipientState::Pending, next, r.to_string()));
                }
            }
        }
        if !bounced.is_empty() {
            let entries: Vec<Entry> = bounced
                .iter()
                .map(|(a, status, text)| Entry {
                    address: a.clone(),
                    status: status.clone(),
                    diagnostic: text.clone(),
                })
                .collect();
            match self.notify_sender(msg, Kind::Failure, entries).await {
                Ok(()) => rows.extend(
                    bounced
                        .into_iter()
                        .map(|(a, _, t)| (a, RecipientState::Failed, now, t)),
                ),
                Err(e) => {
                    // Without its DSN a failure must not be final: try again later.
                    tracing::error!(id = %msg.id, error = %e, "writing the DSN; will retry");
                    let later = now + retry_delay(&cfg.retry_schedule, 0);
                    rows.extend(
                        bounced
                            .into_iter()
                            .map(|(a, _, t)| (a, RecipientState::Pending, later, t)),
                    );
                }
            }
        }
        // When this run settled every recipient, removing the message is the
        // one durable step needed (one commit instead of one per recipient).
        let others_pending = msg.recipients.iter().any(|r| {
            r.state == RecipientState::Pending && !rows.iter().any(|row| row.0 == r.address)
        });
        let settled = !others_pending && rows.iter().all(|r| r.1 != RecipientState::Pending);
        let id = msg.id.clone();
        let updated = self
            .app
            .store
            .run(move |s| {
                if settled {
                    s.queue.remove(&id)?;
                    return Ok(None);
                }
                for (addr, state, next, reply) in &rows {
                    s.queue.record(&id, addr, *state, *next, reply)?;
                }
                let m = s.queue.get(&id)?;
                if let Some(m) = &m {
                    if !has_pending(m) {
                        s.queue.remove(&id)?;
                        return Ok(None);
                    }
                }
                Ok(m)
            })
            .await?;
        if let Some(m) = updated {
            self.maybe_warn(&m, now).await;
        }
        Ok(())
    }

    /// RFC 3464 `Action: delayed` once, after outbound.delay_warning.
    async fn maybe_warn(&self, m: &QueuedMessage, now: SystemTime) {
        let cfg = &self.app.config.outbound;
        if m.warned || m.sender.is_empty() || now < m.created + cfg.delay_warning {
            return;
        }
        let entries = m
            .recipients
            .iter()
            .filter(|r| r.state == RecipientState::Pending)
            .map(|r| {
                let text = r.last_reply.clone().unwrap_or_default();
                let status = text
                    .split(' ')
                    .nth(1)
                    .filter(|s| s.starts_with("4."))
                    .unwrap_or("4.0.0");
                Entry {
                    address: r.address.clone(),
                    status: status.to_string(),
                    diagnostic: text.clone(),
                }
            })
            .collect();
        let kind = Kind::Delay(m.created + cfg.queue_lifetime);
        let id = m.id.clone();
        match self.notify_sender(m, kind, entries).await {
            Ok(()) => {
                if let Err(e) = self.app.store.run(move |s| s.queue.set_warned(&id)).await {
                    tracing::warn!(error = %e, "recording the delay warning");
                }
            }
            Err(e) => tracing::warn!(id = %m.id, error = %e, "writing the delay warning"),
        }
    }

    /// Sends a DSN to the envelope sender: into the mailbox when the sender
    /// is a local account, else through the queue. Never for `<>`.
    async fn notify_sender(
        &self,
        msg: &QueuedMessage,
        kind: Kind,
        entries: Vec<Entry>,
    ) -> crate::store::Result<()> {
        if msg.sender.is_empty() {
            tracing::info!(id = %msg.id, "not bouncing a message with the null sender");
            return Ok(());
        }
        let local = self.app.config.is_local_domain(&domain_of(&msg.sender));
        let hostname = self.app.config.hostname.clone();
        let msg2 = msg.clone();
        let queued = self
            .app
            .store
            .run(move |s: &Store| {
                let headers = dsn::read_headers(&mut s.queue.open(&msg2.id)?)?;
                let report = dsn::build(&hostname, kind, &msg2, &entries, &headers, SystemTime::now());
                if local {
                    let Some(acc) = s.accounts.find(&msg2.sender)? else {
                        tracing::warn!(id = %msg2.id, "DSN dropped: the local sender has no account");
                        return Ok(false);
                    };
                    let prefix = super::local::return_path("");
                    s.mail.deliver(&[acc], prefix.as_bytes(), &mut &report[..], u64::MAX)?;
                    return Ok(false);
                }
                s.queue.enqueue("", std::slice::from_ref(&msg2.sender), b"", &mut &report[..], u64::MAX)?;
                Ok(true)
            })
            .await?;
        if queued {
            self.app.queue_wakeup.notify_one();
        }
        Ok(())
    }
}

/// The wait after the `attempts`+1-th failure; the last step repeats.
fn retry_delay(schedule: &[Duration], attempts: u32) -> Duration {
    let i = (attempts as usize).min(schedule.len().saturating_sub(1));
    schedule.get(i).copied().unwrap_or(Duration::from_secs(300))
}

fn has_pending(m: &QueuedMessage) -> bool {
    m.recipients
        .iter()
        .any(|r| r.state == RecipientState::Pending)
}

/// The domain of an address, lower-case ("" when there is none).
fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_last_step_repeats() {
        let s = [Duration::from_secs(5), Duration::from_secs(60)];
        assert_eq!(retry_delay(&s, 0), Duration::from_secs(5));
        assert_eq!(retry_delay(&s, 1), Duration::from_secs(60));
        assert_eq!(retry_delay(&s, 9), Duration::from_secs(60));
        assert_eq!(retry_delay(&[], 0), Duration::from_secs(300));
    }

    #[test]
    fn domains_are_lower_case_without_the_root_dot() {
        assert_eq!(domain_of("a@Far.Test."), "far.test");
        assert_eq!(domain_of("postmaster"), "");
        assert_eq!(domain_of("\"a@b\"@c.test"), "c.test");
    }
}
