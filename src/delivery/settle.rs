//! Recording what one queue run decided for a message's recipients: a
//! failure is bounced (one RFC 3464 DSN) and marked failed, a deferral gets
//! its next try from the retry schedule (or gives up after the queue
//! lifetime), a delay warning goes out once, and the message leaves the
//! queue when nothing is pending.
//!
//! All of it is one store call. On shutdown the runtime lets a running
//! store call finish and drops the ones not started, so a DSN is never
//! written without the record of the failure it reports (which would send
//! it again after the restart), nor the reverse.

use super::client::Reply;
use super::dsn::{self, Entry, Kind};
use crate::app::App;
use crate::config::OutboundConfig;
use crate::store::{QueuedMessage, RecipientState, Store};
use std::time::{Duration, SystemTime};

/// What one attempt decided for one recipient.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered(Reply),
    Failed(Reply),
    Deferred(Reply),
}

/// One recipient's new state.
struct Row {
    address: String,
    state: RecipientState,
    next_try: SystemTime,
    reply: String,
}

/// What a DSN needs besides the message, fixed for the server's life.
struct Reporter {
    hostname: String,
    /// The envelope sender has a local mailbox (else the DSN is queued).
    local_sender: bool,
}

/// Stores `results`; returns whether a DSN was queued for sending out.
pub async fn record(
    app: &App,
    msg: &QueuedMessage,
    results: Vec<(String, Outcome)>,
) -> crate::store::Result<bool> {
    let cfg = app.config.outbound.clone();
    let reporter = Reporter {
        hostname: app.config.hostname.clone(),
        local_sender: app
            .config
            .is_local_domain(&super::outbound::domain_of(&msg.sender)),
    };
    let msg = msg.clone();
    app.store
        .run(move |s| settle(s, &cfg, &reporter, &msg, results, SystemTime::now()))
        .await
}

fn settle(
    s: &Store,
    cfg: &OutboundConfig,
    reporter: &Reporter,
    msg: &QueuedMessage,
    results: Vec<(String, Outcome)>,
    now: SystemTime,
) -> crate::store::Result<bool> {
    let expires = msg.created + cfg.queue_lifetime;
    let mut rows = Vec::new();
    let mut bounced = Vec::new();
    for (address, outcome) in results {
        let attempts = msg
            .recipients
            .iter()
            .find(|r| r.address == address)
            .map_or(0, |r| r.attempts);
        tracing::info!(id = %msg.id, to = %address, outcome = ?outcome, "delivery attempt");
        let row = |state, next_try, reply: String| Row {
            address: address.clone(),
            state,
            next_try,
            reply,
        };
        match outcome {
            Outcome::Delivered(r) => rows.push(row(RecipientState::Delivered, now, r.to_string())),
            Outcome::Failed(r) => bounced.push(Entry {
                address,
                status: r.status(),
                diagnostic: r.to_string(),
            }),
            Outcome::Deferred(r) if now >= expires => {
                // RFC 3463 4.4.7: delivery time expired.
                let text = format!(
                    "{r} (gave up: in the queue longer than {})",
                    humantime::format_duration(cfg.queue_lifetime)
                );
                bounced.push(Entry {
                    address,
                    status: "4.4.7".into(),
                    diagnostic: text,
                });
            }
            Outcome::Deferred(r) => {
                let next = (now + retry_delay(&cfg.retry_schedule, attempts)).min(expires);
                rows.push(row(RecipientState::Pending, next, r.to_string()));
            }
        }
    }
    let mut queued = false;
    if !bounced.is_empty() {
        // Without its DSN a failure must not be final: try again later.
        let (state, next_try) = match send_dsn(s, reporter, msg, Kind::Failure, &bounced) {
            Ok(q) => {
                queued = q;
                (RecipientState::Failed, now)
            }
            Err(e) => {
                tracing::error!(id = %msg.id, error = %e, "writing the DSN; will retry");
                let later = now + retry_delay(&cfg.retry_schedule, 0);
                (RecipientState::Pending, later)
            }
        };
        rows.extend(bounced.into_iter().map(|e| Row {
            address: e.address,
            state,
            next_try,
            reply: e.diagnostic,
        }));
    }
    // When this run settled every recipient, removing the message is the
    // one durable step needed (one commit instead of one per recipient).
    let others_pending = msg.recipients.iter().any(|r| {
        r.state == RecipientState::Pending && !rows.iter().any(|row| row.address == r.address)
    });
    if !others_pending && rows.iter().all(|r| r.state != RecipientState::Pending) {
        s.queue.remove(&msg.id)?;
        return Ok(queued);
    }
    for r in &rows {
        s.queue
            .record(&msg.id, &r.address, r.state, r.next_try, &r.reply)?;
    }
    match s.queue.get(&msg.id)? {
        Some(m) if !has_pending(&m) => {
            s.queue.remove(&msg.id)?;
        }
        Some(m) => queued |= warn_once(s, cfg, reporter, &m, now),
        None => {}
    }
    Ok(queued)
}

/// RFC 3464 `Action: delayed` once, after outbound.delay_warning.
fn warn_once(
    s: &Store,
    cfg: &OutboundConfig,
    reporter: &Reporter,
    m: &QueuedMessage,
    now: SystemTime,
) -> bool {
    if m.warned || m.sender.is_empty() || now < m.created + cfg.delay_warning {
        return false;
    }
    let entries: Vec<Entry> = m
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
    match send_dsn(s, reporter, m, kind, &entries) {
        Ok(queued) => {
            if let Err(e) = s.queue.set_warned(&m.id) {
                tracing::warn!(id = %m.id, error = %e, "recording the delay warning");
            }
            queued
        }
        Err(e) => {
            tracing::warn!(id = %m.id, error = %e, "writing the delay warning");
            false
        }
    }
}

/// Sends a DSN to the envelope sender: into the mailbox when the sender
/// is a local account, else through the queue (returns true). Never for
/// `<>`. Without the message file the DSN goes out without its headers.
fn send_dsn(
    s: &Store,
    reporter: &Reporter,
    msg: &QueuedMessage,
    kind: Kind,
    entries: &[Entry],
) -> crate::store::Result<bool> {
    if msg.sender.is_empty() {
        tracing::info!(id = %msg.id, "not bouncing a message with the null sender");
        return Ok(false);
    }
    // The report matters more than the copy of the headers: a message file
    // that is gone or unreadable must not hold the DSN back for ever.
    let headers = s
        .queue
        .open(&msg.id)
        .and_then(|mut body| Ok(dsn::read_headers(&mut body)?));
    let headers = match headers {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(id = %msg.id, error = %e, "DSN without the original headers");
            None
        }
    };
    let report = dsn::build(
        &reporter.hostname,
        kind,
        msg,
        entries,
        headers.as_deref(),
        SystemTime::now(),
    );
    if reporter.local_sender {
        let Some(acc) = s.accounts.find(&msg.sender)? else {
            tracing::warn!(id = %msg.id, "DSN dropped: the local sender has no account");
            return Ok(false);
        };
        let prefix = super::local::return_path("");
        s.mail
            .deliver(&[acc], prefix.as_bytes(), &mut &report[..], u64::MAX)?;
        return Ok(false);
    }
    s.queue.enqueue(
        "",
        std::slice::from_ref(&msg.sender),
        b"",
        &mut &report[..],
        u64::MAX,
    )?;
    Ok(true)
}

/// The wait after the `attempts`+1-th failure; the last step repeats.
fn retry_delay(schedule: &[Duration], attempts: u32) -> Duration {
    let i = (attempts as usize).min(schedule.len().saturating_sub(1));
    schedule.get(i).copied().unwrap_or(Duration::from_secs(300))
}

pub fn has_pending(m: &QueuedMessage) -> bool {
    m.recipients
        .iter()
        .any(|r| r.state == RecipientState::Pending)
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
}
