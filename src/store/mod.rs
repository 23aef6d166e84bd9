//! Storage behind traits. The embedded backend (`sqlite` + `maildir`) keeps
//! everything in one data directory; a shared backend (PostgreSQL) is a new
//! module implementing the same traits.
//!
//! The traits are synchronous: every backend does blocking I/O (files,
//! SQLite, a blocking PostgreSQL client), so async callers wrap calls in
//! `tokio::task::spawn_blocking` (see [`Store::run`]).

pub mod maildir;
pub mod queue;
pub mod sqlite;

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("message too large")]
    TooLarge,
    /// Every store slot stayed taken for the configured wait: the server is
    /// saturated and the caller answers with a temporary error.
    #[error("the store is busy")]
    Busy,
}

impl StoreError {
    /// Disk full and similar: the client should retry later (4xx), not give up.
    pub fn is_temporary(&self) -> bool {
        !matches!(self, StoreError::Invalid(_) | StoreError::TooLarge)
    }
}

/// One mail account (SEED-1).
#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    /// Login name, e.g. `btm0001`; also the Maildir folder name.
    pub name: String,
    /// Full address at a local domain, e.g. `btm0001@be.to`.
    pub address: String,
    /// PHC string (argon2id) or an imported crypt(3) hash.
    pub password_hash: String,
    /// The separate SMTP AUTH password (SEED-3), when the operator issued one.
    pub smtp_password_hash: Option<String>,
    /// Plaintext-equivalent shared secret for APOP and CRAM-MD5 (NEW-1).
    pub secret: Option<String>,
    pub disabled: bool,
    pub admin: bool,
    pub created: SystemTime,
}

#[cfg(test)]
impl Account {
    /// A plain account `<name>@be.test` for unit tests.
    pub fn for_test(name: &str, id: i64) -> Account {
        Account {
            id,
            name: name.into(),
            address: format!("{name}@be.test"),
            password_hash: String::new(),
            smtp_password_hash: None,
            secret: None,
            disabled: false,
            admin: false,
            created: SystemTime::now(),
        }
    }
}

pub trait AccountStore: Send + Sync {
    /// By login name or full address, case-insensitively (SEED-1).
    fn find(&self, login: &str) -> Result<Option<Account>>;
    fn add(&self, name: &str, address: &str, password_hash: &str) -> Result<Account>;
    fn set_password(&self, name: &str, password_hash: &str) -> Result<()>;
    fn set_smtp_password(&self, name: &str, hash: Option<&str>) -> Result<()>;
    fn set_secret(&self, name: &str, secret: Option<&str>) -> Result<()>;
    fn set_disabled(&self, name: &str, disabled: bool) -> Result<()>;
    fn set_admin(&self, name: &str, admin: bool) -> Result<()>;
    /// Returns false when there was no such account.
    fn delete(&self, name: &str) -> Result<bool>;
    fn list(&self) -> Result<Vec<Account>>;
}

/// A message in a mailbox, as listed at the start of a POP3 session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageInfo {
    /// Stable, never reused, printable ASCII, at most 70 octets (RFC 1939 UIDL).
    pub uid: String,
    /// Exact octets that RETR sends before dot-stuffing (CRLF line ends).
    pub size: u64,
    /// Arrival time.
    pub received: SystemTime,
    /// Where the backend finds it (for Maildir, the path below the mailbox).
    pub locator: String,
}

pub trait MailStore: Send + Sync {
    /// Writes `prefix` then `body` (bare LF becomes CRLF; a final CRLF is
    /// ensured) into every listed mailbox, atomically and durably: when it
    /// returns Ok, the message is fsync'ed and visible in all of them, and a
    /// reader never sees part of it. Fails with `TooLarge` past `max_size`.
    fn deliver(
        &self,
        accounts: &[Account],
        prefix: &[u8],
        body: &mut dyn Read,
        max_size: u64,
    ) -> Result<()>;
    /// Oldest first.
    fn list(&self, account: &Account) -> Result<Vec<MessageInfo>>;
    /// The stored octets of one message (already CRLF).
    fn open(&self, account: &Account, msg: &MessageInfo) -> Result<Box<dyn Read + Send>>;
    /// Deletes the listed messages; ones already gone are not an error.
    fn delete(&self, account: &Account, msgs: &[MessageInfo]) -> Result<()>;
    /// Removes the whole mailbox (account deletion).
    fn remove_mailbox(&self, account: &Account) -> Result<()>;
}

/// Who holds a POP lock; unique per session across nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockInfo {
    pub account: String,
    pub owner: String,
    pub peer: Option<IpAddr>,
    pub acquired: SystemTime,
    pub expires: SystemTime,
}

/// Mailbox locks (SEED-6). A lock lives until released or until `expires`;
/// the holder refreshes it while its session is alive, so a lock of a dead
/// process or node lapses by itself. A failed attempt never extends a lock.
pub trait LockStore: Send + Sync {
    fn try_lock(
        &self,
        account: &str,
        owner: &str,
        peer: Option<IpAddr>,
        ttl: std::time::Duration,
    ) -> Result<bool>;
    /// Extends the holder's own lock; false if it is no longer the holder.
    fn refresh(&self, account: &str, owner: &str, ttl: std::time::Duration) -> Result<bool>;
    fn release(&self, account: &str, owner: &str) -> Result<()>;
    /// Live locks only.
    fn list(&self) -> Result<Vec<LockInfo>>;
    /// Operator's override; true if a lock was removed.
    fn clear(&self, account: &str) -> Result<bool>;
    /// Who holds the account's lock now, if anyone.
    fn holder(&self, account: &str) -> Result<Option<LockInfo>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub ip: IpAddr,
    pub account: String,
    pub until: SystemTime,
}

/// POP-before-SMTP grants (SEED-9, SEED-11).
pub trait GrantStore: Send + Sync {
    /// Records or renews the grant for `ip`.
    fn grant(&self, ip: IpAddr, account: &str, until: SystemTime) -> Result<()>;
    /// The live grant for `ip` at `now`, if any.
    fn active(&self, ip: IpAddr, now: SystemTime) -> Result<Option<Grant>>;
    fn list(&self, now: SystemTime) -> Result<Vec<Grant>>;
    /// Removes grants expired before `now`; returns how many.
    fn purge(&self, now: SystemTime) -> Result<usize>;
}

pub use queue::{QueueStats, QueueStore, QueuedMessage, QueuedRecipient, RecipientState};

/// All stores, shared by every listener and background task.
#[derive(Clone)]
pub struct Store {
    pub accounts: Arc<dyn AccountStore>,
    pub mail: Arc<dyn MailStore>,
    pub locks: Arc<dyn LockStore>,
    pub grants: Arc<dyn GrantStore>,
    pub queue: Arc<dyn QueueStore>,
    calls: Arc<CallGate>,
}

/// Store calls run on tokio's blocking threads; this bounds how many run at
/// once, so that a flood of one kind of work (logins, say) cannot take every
/// thread, and a caller that cannot get a slot in time fails fast.
struct CallGate {
    slots: tokio::sync::Semaphore,
    wait: std::time::Duration,
}

/// Store calls at once unless [`Store::bound_calls`] says otherwise: SQLite
/// serialises writers anyway, so more threads would only wait on its lock.
const DEFAULT_STORE_CALLS: usize = 32;
const DEFAULT_STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

impl Store {
    /// The embedded backend: SQLite and Maildir under `data_dir`.
    pub fn open_embedded(data_dir: &Path, hostname: &str) -> Result<Store> {
        // Password hashes, APOP secrets (NEW-1) and everyone's mail live
        // here: a new data directory is for the server's user only.
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(data_dir)?;
        let db = Arc::new(sqlite::Db::open(&data_dir.join("betomail.sqlite3"))?);
        let mail = Arc::new(maildir::Maildirs::new(data_dir.join("mail"), hostname)?);
        let queue = Arc::new(queue::SqliteQueue::new(db.clone(), data_dir.join("queue"))?);
        Ok(Store {
            accounts: db.clone(),
            mail,
            locks: db.clone(),
            grants: db,
            queue,
            calls: Arc::new(CallGate {
                slots: tokio::sync::Semaphore::new(DEFAULT_STORE_CALLS),
                wait: DEFAULT_STORE_WAIT,
            }),
        })
    }

    /// At most `calls` store calls run at once; a call that waits longer
    /// than `wait` for its turn fails with [`StoreError::Busy`].
    pub fn bound_calls(mut self, calls: usize, wait: std::time::Duration) -> Store {
        self.calls = Arc::new(CallGate {
            slots: tokio::sync::Semaphore::new(calls),
            wait,
        });
        self
    }

    /// Runs blocking store work off the async executor, within the store's
    /// bound on calls at once.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let gate = &self.calls;
        let slot = match tokio::time::timeout(gate.wait, gate.slots.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => return Err(StoreError::Busy),
        };
        let store = self.clone();
        let result = tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Invalid(format!("store task failed: {e}")));
        drop(slot);
        result?
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_data_dir_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("a/data");
        super::Store::open_embedded(&data, "h").unwrap();
        let mode = std::fs::metadata(&data).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
