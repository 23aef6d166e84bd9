//! The durable outbound queue: one file per message under `<data_dir>/queue`
//! and an index of per-recipient state in SQLite.
//!
//! A message is queued by writing and fsyncing its file, then committing its
//! index rows; only then is it acknowledged. A file without index rows (a
//! crash between the two) was never acknowledged and is removed at start-up.

use super::maildir::{sync_dir, write_synced};
use super::sqlite::{from_ms, to_ms, Db};
use super::{Result, StoreError};
use rusqlite::{params, OptionalExtension};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{ErrorKind, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecipientState {
    /// Waiting for (another) attempt.
    Pending,
    Delivered,
    /// Permanently failed or expired; a DSN is owed or was sent.
    Failed,
}

impl RecipientState {
    fn as_str(self) -> &'static str {
        match self {
            RecipientState::Pending => "pending",
            RecipientState::Delivered => "delivered",
            RecipientState::Failed => "failed",
        }
    }
    fn parse(s: &str) -> RecipientState {
        match s {
            "delivered" => RecipientState::Delivered,
            "failed" => RecipientState::Failed,
            _ => RecipientState::Pending,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRecipient {
    pub address: String,
    pub state: RecipientState,
    pub attempts: u32,
    pub next_try: SystemTime,
    pub last_reply: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMessage {
    pub id: String,
    /// Envelope sender; empty for the null sender `<>`.
    pub sender: String,
    pub created: SystemTime,
    pub size: u64,
    /// A delay warning was sent.
    pub warned: bool,
    pub recipients: Vec<QueuedRecipient>,
}

/// Queue depth figures (`betomail queue stats`, `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub messages: usize,
    /// Recipients by state.
    pub pending: usize,
    pub delivered: usize,
    pub failed: usize,
    /// Pending recipients whose next try is now or past.
    pub due: usize,
    /// Age of the oldest queued message, in seconds.
    pub oldest_age_seconds: Option<u64>,
    pub bytes: u64,
}

pub trait QueueStore: Send + Sync {
    /// Counted by the store itself: monitoring must not read every message.
    fn stats(&self, now: SystemTime) -> Result<QueueStats>;
    /// Durably queues `prefix` + `body` (CRLF-normalized) for `recipients`.
    fn enqueue(
        &self,
        sender: &str,
        recipients: &[String],
        prefix: &[u8],
        body: &mut dyn Read,
        max_size: u64,
    ) -> Result<String>;
    fn list(&self) -> Result<Vec<QueuedMessage>>;
    fn get(&self, id: &str) -> Result<Option<QueuedMessage>>;
    fn open(&self, id: &str) -> Result<Box<dyn Read + Send>>;
    /// Ids of at most `limit` messages with a pending recipient whose next
    /// try is at or before `now`, the earliest next try first. Bounded so
    /// one queue scan costs the same with a backlog of millions.
    fn due_ids(&self, now: SystemTime, limit: usize) -> Result<Vec<String>>;
    /// Records the outcome of one attempt for one recipient.
    fn record(
        &self,
        id: &str,
        address: &str,
        state: RecipientState,
        next_try: SystemTime,
        reply: &str,
    ) -> Result<()>;
    fn set_warned(&self, id: &str) -> Result<()>;
    /// Makes pending recipients due now (one message, or all); returns how many messages.
    fn retry_now(&self, id: Option<&str>) -> Result<usize>;
    /// Removes a message and its file; false if there was none.
    fn remove(&self, id: &str) -> Result<bool>;
}

pub struct SqliteQueue {
    db: Arc<Db>,
    dir: PathBuf,
    counter: AtomicU64,
}

impl SqliteQueue {
    pub fn new(db: Arc<Db>, dir: PathBuf) -> Result<SqliteQueue> {
        fs::create_dir_all(&dir)?;
        let q = SqliteQueue {
            db,
            dir,
            counter: AtomicU64::new(0),
        };
        q.remove_orphans()?;
        Ok(q)
    }

    /// Files that never got index rows were never acknowledged: drop them.
    /// Only files older than a minute, so a concurrent writer is left alone.
    fn remove_orphans(&self) -> Result<()> {
        let cutoff = SystemTime::now() - std::time::Duration::from_secs(60);
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let id = name.strip_suffix(".tmp").unwrap_or(&name);
            let old = entry.metadata()?.modified().map(|m| m < cutoff)?;
            if old && (name.ends_with(".tmp") || self.get(id)?.is_none()) {
                tracing::warn!(id, "removing unacknowledged queue file");
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    fn new_id(&self) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{:x}{:05x}{:x}{:x}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        )
        .to_ascii_uppercase()
    }

    fn load(&self, ids: Vec<String>) -> Result<Vec<QueuedMessage>> {
        ids.into_iter()
            .filter_map(|id| self.get(&id).transpose())
            .collect()
    }
}

impl QueueStore for SqliteQueue {
    fn stats(&self, now: SystemTime) -> Result<QueueStats> {
        let conn = self.db.conn();
        let (messages, bytes, oldest) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created) FROM queue_messages",
            [],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            },
        )?;
        let mut st = QueueStats {
            messages: messages as usize,
            bytes: bytes as u64,
            oldest_age_seconds: oldest.map(|ms| {
                now.duration_since(from_ms(ms))
                    .unwrap_or_default()
                    .as_secs()
            }),
            ..QueueStats::default()
        };
        let mut stmt = conn.prepare(
            "SELECT state, COUNT(*), SUM(next_try <= ?1) FROM queue_recipients GROUP BY state",
        )?;
        let rows = stmt.query_map([to_ms(now)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? as usize,
                r.get::<_, i64>(2)? as usize,
            ))
        })?;
        for row in rows {
            let (state, n, due) = row?;
            match RecipientState::parse(&state) {
                RecipientState::Pending => {
                    st.pending = n;
                    st.due = due;
                }
                RecipientState::Delivered => st.delivered = n,
                RecipientState::Failed => st.failed = n,
            }
        }
        Ok(st)
    }

    fn enqueue(
        &self,
        sender: &str,
        recipients: &[String],
        prefix: &[u8],
        body: &mut dyn Read,
        max_size: u64,
    ) -> Result<String> {
        let id = self.new_id();
        let tmp = self.dir.join(format!("{id}.tmp"));
        let path = self.dir.join(&id);
        let size = write_synced(&tmp, prefix, body, max_size)?;
        if let Err(e) = fs::rename(&tmp, &path).and_then(|()| sync_dir(&self.dir)) {
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(&path);
            return Err(e.into());
        }
        let now = to_ms(SystemTime::now());
        let mut conn = self.db.conn();
        let committed = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO queue_messages (id, sender, created, size) VALUES (?1, ?2, ?3, ?4)",
                params![id, sender, now, size as i64],
            )?;
            for r in recipients {
                tx.execute(
                    "INSERT OR IGNORE INTO queue_recipients (message_id, address, state, next_try)
                     VALUES (?1, ?2, 'pending', ?3)",
                    params![id, r, now],
                )?;
            }
            tx.commit()
        })();
        if let Err(e) = committed {
            let _ = fs::remove_file(&path);
            return Err(e.into());
        }
        Ok(id)
    }

    fn list(&self) -> Result<Vec<QueuedMessage>> {
        let ids = {
            let conn = self.db.conn();
            let mut stmt = conn.prepare("SELECT id FROM queue_messages ORDER BY created, id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?
        };
        self.load(ids)
    }

    fn get(&self, id: &str) -> Result<Option<QueuedMessage>> {
        let conn = self.db.conn();
        let msg = conn
            .query_row(
                "SELECT id, sender, created, size, warned FROM queue_messages WHERE id = ?1",
                [id],
                |r| {
                    Ok(QueuedMessage {
                        id: r.get(0)?,
                        sender: r.get(1)?,
                        created: from_ms(r.get(2)?),
                        size: r.get::<_, i64>(3)? as u64,
                        warned: r.get(4)?,
                        recipients: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut msg) = msg else {
            return Ok(None);
        };
        let mut stmt = conn.prepare(
            "SELECT address, state, attempts, next_try, last_reply FROM queue_recipients
             WHERE message_id = ?1 ORDER BY address",
        )?;
        let rows = stmt.query_map([id], |r| {
            Ok(QueuedRecipient {
                address: r.get(0)?,
                state: RecipientState::parse(&r.get::<_, String>(1)?),
                attempts: r.get(2)?,
                next_try: from_ms(r.get(3)?),
                last_reply: r.get(4)?,
            })
        })?;
        msg.recipients = rows.collect::<rusqlite::Result<_>>()?;
        Ok(Some(msg))
    }

    fn open(&self, id: &str) -> Result<Box<dyn Read + Send>> {
        if id.contains(['/', '\\', '.']) {
            return Err(StoreError::Invalid(format!("bad queue id {id:?}")));
        }
        match File::open(self.dir.join(id)) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(StoreError::NotFound(format!("queued message {id}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn due_ids(&self, now: SystemTime, limit: usize) -> Result<Vec<String>> {
        // Walks the (state, next_try) index in order and stops after `limit`
        // distinct messages: no sort, no full read of the due rows.
        let conn = self.db.conn();
        let mut stmt = conn.prepare(
            "SELECT message_id FROM queue_recipients
             WHERE state = 'pending' AND next_try <= ?1 ORDER BY next_try",
        )?;
        let mut rows = stmt.query([to_ms(now)])?;
        let mut ids: Vec<String> = Vec::new();
        let mut seen = HashSet::new();
        while ids.len() < limit {
            let Some(row) = rows.next()? else { break };
            let id: String = row.get(0)?;
            if seen.insert(id.clone()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn record(
        &self,
        id: &str,
        address: &str,
        state: RecipientState,
        next_try: SystemTime,
        reply: &str,
    ) -> Result<()> {
        self.db.conn().execute(
            "UPDATE queue_recipients SET state = ?1, attempts = attempts + 1, next_try = ?2,
             last_reply = ?3 WHERE message_id = ?4 AND address = ?5",
            params![state.as_str(), to_ms(next_try), reply, id, address],
        )?;
        Ok(())
    }

    fn set_warned(&self, id: &str) -> Result<()> {
        self.db
            .conn()
            .execute("UPDATE queue_messages SET warned = 1 WHERE id = ?1", [id])?;
        Ok(())
    }

    fn retry_now(&self, id: Option<&str>) -> Result<usize> {
        let now = to_ms(SystemTime::now());
        let conn = self.db.conn();
        let n = match id {
            Some(id) => conn.execute(
                "UPDATE queue_recipients SET next_try = ?1 WHERE state = 'pending' AND message_id = ?2",
                params![now, id],
            )?,
            None => conn.execute(
                "UPDATE queue_recipients SET next_try = ?1 WHERE state = 'pending'",
                [now],
            )?,
        };
        Ok(n)
    }

    fn remove(&self, id: &str) -> Result<bool> {
        let n = self
            .db
            .conn()
            .execute("DELETE FROM queue_messages WHERE id = ?1", [id])?;
        if n > 0 && !id.contains(['/', '\\', '.']) {
            match fs::remove_file(self.dir.join(id)) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stats_count_by_state_without_reading_messages() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("q.sqlite3")).unwrap());
        let q = SqliteQueue::new(db, dir.path().join("queue")).unwrap();
        let now = SystemTime::now();
        assert_eq!(q.stats(now).unwrap(), QueueStats::default());
        let rcpts = vec!["a@x.test".to_string(), "b@y.test".to_string()];
        let id = q
            .enqueue("s@be.test", &rcpts, b"", &mut &b"x\n"[..], 1 << 20)
            .unwrap();
        q.record(&id, "a@x.test", RecipientState::Delivered, now, "250")
            .unwrap();
        let st = q.stats(SystemTime::now()).unwrap();
        assert_eq!(
            (
                st.messages,
                st.bytes,
                st.pending,
                st.due,
                st.delivered,
                st.failed
            ),
            (1, 3, 1, 1, 1, 0)
        );
        assert!(st.oldest_age_seconds.is_some());
    }

    #[test]
    fn enqueue_due_record_remove() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("q.sqlite3")).unwrap());
        let q = SqliteQueue::new(db, dir.path().join("queue")).unwrap();
        let rcpts = vec!["a@x.test".to_string(), "b@y.test".to_string()];
        let id = q
            .enqueue(
                "s@be.test",
                &rcpts,
                b"",
                &mut &b"Subject: t\n\nhi\n"[..],
                1 << 20,
            )
            .unwrap();
        let mut body = String::new();
        q.open(&id).unwrap().read_to_string(&mut body).unwrap();
        assert_eq!(body, "Subject: t\r\n\r\nhi\r\n");
        let now = SystemTime::now();
        assert_eq!(q.due_ids(now, 10).unwrap(), vec![id.clone()]);
        let later = now + Duration::from_secs(300);
        q.record(&id, "a@x.test", RecipientState::Delivered, now, "250 ok")
            .unwrap();
        q.record(&id, "b@y.test", RecipientState::Pending, later, "451 later")
            .unwrap();
        assert!(q.due_ids(now, 10).unwrap().is_empty());
        let m = q.get(&id).unwrap().unwrap();
        assert_eq!(m.recipients[1].attempts, 1);
        assert_eq!(m.recipients[1].last_reply.as_deref(), Some("451 later"));
        assert_eq!(q.retry_now(Some(&id)).unwrap(), 1);
        assert_eq!(q.due_ids(SystemTime::now(), 10).unwrap().len(), 1);
        assert!(q.remove(&id).unwrap());
        assert!(q.list().unwrap().is_empty());
        assert!(q.open(&id).is_err());
        assert!(q.open("../x").is_err());
    }

    #[test]
    fn due_ids_are_bounded_and_earliest_next_try_first() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("q.sqlite3")).unwrap());
        let q = SqliteQueue::new(db, dir.path().join("queue")).unwrap();
        let now = SystemTime::now();
        let rcpts = vec!["a@x.test".to_string(), "b@x.test".to_string()];
        let ids: Vec<String> = (0..5)
            .map(|_| q.enqueue("s@be.test", &rcpts, b"", &mut &b"x\n"[..], 1 << 20))
            .collect::<Result<_>>()
            .unwrap();
        // Next tries in the reverse order of queueing: ids[4] is due first.
        for (i, id) in ids.iter().enumerate() {
            let t = now - Duration::from_secs(10 * (i as u64 + 1));
            for r in &rcpts {
                q.record(id, r, RecipientState::Pending, t, "451 later")
                    .unwrap();
            }
        }
        // Two recipients each: a message is counted once.
        assert_eq!(
            q.due_ids(now, 3).unwrap(),
            vec![ids[4].clone(), ids[3].clone(), ids[2].clone()]
        );
        assert_eq!(q.due_ids(now, 100).unwrap().len(), 5);
        assert!(q.due_ids(now, 0).unwrap().is_empty());
        // Not yet due: ids[0] (10 s ago) is left out 15 s in the past.
        let past = q.due_ids(now - Duration::from_secs(15), 100).unwrap();
        assert_eq!(past.len(), 4);
        assert!(!past.contains(&ids[0]));
    }
}
