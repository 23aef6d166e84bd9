//! The embedded database: accounts, POP locks and relay grants in one SQLite
//! file (WAL mode, so several processes on one machine can share it).

use super::space::DiskSpace;
use super::{Account, AccountStore, Grant, GrantStore, LockInfo, LockStore, Result, StoreError};
use rusqlite::{params, Connection, OptionalExtension};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    address TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    smtp_password_hash TEXT,
    secret TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    admin INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    account TEXT PRIMARY KEY COLLATE NOCASE,
    owner TEXT NOT NULL,
    peer TEXT,
    acquired INTEGER NOT NULL,
    expires INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grants (
    ip TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    until INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_messages (
    id TEXT PRIMARY KEY,
    sender TEXT NOT NULL,
    created INTEGER NOT NULL,
    size INTEGER NOT NULL,
    warned INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS queue_recipients (
    message_id TEXT NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try INTEGER NOT NULL,
    last_reply TEXT,
    PRIMARY KEY (message_id, address)
);
CREATE INDEX IF NOT EXISTS queue_due ON queue_recipients(state, next_try);
"#;

/// Two connections to one file: `conn` commits durably (accounts, queue
/// index: a returned commit is on disk), `fast` serves POP locks and relay
/// grants, which are worthless after a power loss and are written on every
/// login, so their commits skip the fsync (WAL `synchronous=NORMAL`).
/// Lock and grant writes may spend the [`DiskSpace`] reserve: deleting mail
/// on a full disk needs them.
pub struct Db {
    conn: Mutex<Connection>,
    fast: Mutex<Connection>,
    space: Arc<DiskSpace>,
}

/// Milliseconds since the epoch, the unit of every stored time.
pub(crate) fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        let open = |sync: &str| -> Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(Duration::from_secs(10))?;
            conn.execute_batch(&format!(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA foreign_keys=ON;"
            ))?;
            Ok(conn)
        };
        let conn = open("FULL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db {
            conn: Mutex::new(conn),
            fast: Mutex::new(open("NORMAL")?),
            space: Arc::new(DiskSpace::new(path.parent().unwrap_or(Path::new(".")))),
        })
    }

    /// Free space where the database lives, and its reserve.
    pub fn space(&self) -> Arc<DiskSpace> {
        self.space.clone()
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fast(&self) -> MutexGuard<'_, Connection> {
        self.fast.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A lock or grant write on `conn`, which may spend the space reserve.
    fn reserved_write<T>(
        &self,
        conn: &Mutex<Connection>,
        write: impl Fn(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.space.with_reserve(|| write(&mut c))?)
    }
}

fn account_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
        address: r.get(2)?,
        password_hash: r.get(3)?,
        smtp_password_hash: r.get(4)?,
        secret: r.get(5)?,
        disabled: r.get(6)?,
        admin: r.get(7)?,
        created: from_ms(r.get(8)?),
    })
}

const ACCOUNT_COLS: &str =
    "id, name, address, password_hash, smtp_password_hash, secret, disabled, admin, created";

impl Db {
    fn update_account(&self, name: &str, sql: &str, value: &dyn rusqlite::ToSql) -> Result<()> {
        let n = self.conn().execute(sql, params![value, name])?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("account {name}")));
        }
        Ok(())
    }
}

impl AccountStore for Db {
    fn find(&self, login: &str) -> Result<Option<Account>> {
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE name = ?1 OR address = ?1");
        // Every login and RCPT reads here: not behind durable queue commits.
        Ok(self
            .fast()
            .query_row(&sql, [login], account_from_row)
            .optional()?)
    }

    fn add(&self, name: &str, address: &str, password_hash: &str) -> Result<Account> {
        let conn = self.conn();
        let created = to_ms(SystemTime::now());
        conn.execute(
            "INSERT INTO accounts (name, address, password_hash, created) VALUES (?1, ?2, ?3, ?4)",
            params![name, address, password_hash, created],
        )
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Invalid(format!("account {name} or address {address} exists"))
            }
            e => e.into(),
        })?;
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1");
        Ok(conn.query_row(&sql, [conn.last_insert_rowid()], account_from_row)?)
    }

    fn set_password(&self, name: &str, password_hash: &str) -> Result<()> {
        self.update_account(
            name,
            "UPDATE accounts SET password_hash = ?1 WHERE name = ?2",
            &password_hash,
        )
    }

    fn set_smtp_password(&self, name: &str, hash: Option<&str>) -> Result<()> {
        self.update_account(
            name,
            "UPDATE accounts SET smtp_password_hash = ?1 WHERE name = ?2",
            &hash,
        )
    }

    fn replace_password_hash(&self, name: &str, smtp: bool, old: &str, new: &str) -> Result<bool> {
        let sql = if smtp {
            "UPDATE accounts SET smtp_password_hash = ?1 WHERE name = ?2 AND smtp_password_hash = ?3"
        } else {
            "UPDATE accounts SET password_hash = ?1 WHERE name = ?2 AND password_hash = ?3"
        };
        Ok(self.conn().execute(sql, params![new, name, old])? == 1)
    }

    fn set_secret(&self, name: &str, secret: Option<&str>) -> Result<()> {
        self.update_account(
            name,
            "UPDATE accounts SET secret = ?1 WHERE name = ?2",
            &secret,
        )
    }

    fn set_disabled(&self, name: &str, disabled: bool) -> Result<()> {
        self.update_account(
            name,
            "UPDATE accounts SET disabled = ?1 WHERE name = ?2",
            &disabled,
        )
    }

    fn set_admin(&self, name: &str, admin: bool) -> Result<()> {
        self.update_account(
            name,
            "UPDATE accounts SET admin = ?1 WHERE name = ?2",
            &admin,
        )
    }

    fn delete(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM accounts WHERE name = ?1", [name])?
            > 0)
    }

    fn list(&self) -> Result<Vec<Account>> {
        let conn = self.conn();
        let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY name");
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], account_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

fn lock_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LockInfo> {
    let peer: Option<String> = r.get(2)?;
    Ok(LockInfo {
        account: r.get(0)?,
        owner: r.get(1)?,
        peer: peer.and_then(|p| p.parse().ok()),
        acquired: from_ms(r.get(3)?),
        expires: from_ms(r.get(4)?),
    })
}

impl LockStore for Db {
    fn try_lock(
        &self,
        account: &str,
        owner: &str,
        peer: Option<IpAddr>,
        ttl: Duration,
    ) -> Result<bool> {
        let now = SystemTime::now();
        let n = self.reserved_write(&self.fast, |conn| {
            let tx = conn.transaction()?;
            // Only a lapsed lock is taken over; a live one is left exactly as
            // it is, so retries never extend it (SEED-6).
            tx.execute(
                "DELETE FROM locks WHERE account = ?1 AND expires <= ?2",
                params![account, to_ms(now)],
            )?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO locks (account, owner, peer, acquired, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    account,
                    owner,
                    peer.map(|p| p.to_string()),
                    to_ms(now),
                    to_ms(now + ttl)
                ],
            )?;
            tx.commit()?;
            Ok(n)
        })?;
        Ok(n == 1)
    }

    fn refresh(&self, account: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let expires = to_ms(SystemTime::now() + ttl);
        let n = self.reserved_write(&self.fast, |c| {
            c.execute(
                "UPDATE locks SET expires = ?1 WHERE account = ?2 AND owner = ?3",
                params![expires, account, owner],
            )
        })?;
        Ok(n == 1)
    }

    fn release(&self, account: &str, owner: &str) -> Result<()> {
        self.reserved_write(&self.fast, |c| {
            c.execute(
                "DELETE FROM locks WHERE account = ?1 AND owner = ?2",
                params![account, owner],
            )
        })?;
        Ok(())
    }

    fn list(&self) -> Result<Vec<LockInfo>> {
        let conn = self.fast();
        let mut stmt = conn.prepare(
            "SELECT account, owner, peer, acquired, expires FROM locks
             WHERE expires > ?1 ORDER BY account",
        )?;
        let rows = stmt.query_map([to_ms(SystemTime::now())], lock_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn clear(&self, account: &str) -> Result<bool> {
        let n = self.reserved_write(&self.conn, |c| {
            c.execute("DELETE FROM locks WHERE account = ?1", [account])
        })?;
        Ok(n > 0)
    }

    fn holder(&self, account: &str) -> Result<Option<LockInfo>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT account, owner, peer, acquired, expires FROM locks
                 WHERE account = ?1 AND expires > ?2",
                params![account, to_ms(SystemTime::now())],
                lock_from_row,
            )
            .optional()?)
    }
}

/// IPv4-mapped IPv6 clients are the same host as their IPv4 form.
fn grant_key(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

impl GrantStore for Db {
    fn grant(&self, ip: IpAddr, account: &str, until: SystemTime) -> Result<()> {
        self.reserved_write(&self.fast, |c| {
            c.execute(
                "INSERT INTO grants (ip, account, until) VALUES (?1, ?2, ?3)
                 ON CONFLICT(ip) DO UPDATE SET account = excluded.account,
                   until = MAX(until, excluded.until)",
                params![grant_key(ip), account, to_ms(until)],
            )
        })?;
        Ok(())
    }

    fn active(&self, ip: IpAddr, now: SystemTime) -> Result<Option<Grant>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT account, until FROM grants WHERE ip = ?1 AND until > ?2",
                params![grant_key(ip), to_ms(now)],
                |r| {
                    Ok(Grant {
                        ip: ip.to_canonical(),
                        account: r.get(0)?,
                        until: from_ms(r.get(1)?),
                    })
                },
            )
            .optional()?)
    }

    fn list(&self, now: SystemTime) -> Result<Vec<Grant>> {
        let conn = self.fast();
        let mut stmt =
            conn.prepare("SELECT ip, account, until FROM grants WHERE until > ?1 ORDER BY until")?;
        let rows = stmt.query_map([to_ms(now)], |r| {
            let ip: String = r.get(0)?;
            Ok((ip, r.get::<_, String>(1)?, r.get::<_, i64>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (ip, account, until) = row?;
            if let Ok(ip) = ip.parse() {
                out.push(Grant {
                    ip,
                    account,
                    until: from_ms(until),
                });
            }
        }
        Ok(out)
    }

    fn purge(&self, now: SystemTime) -> Result<usize> {
        self.reserved_write(&self.conn, |c| {
            c.execute("DELETE FROM grants WHERE until <= ?1", [to_ms(now)])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.sqlite3")).unwrap();
        (dir, db)
    }

    #[test]
    fn accounts_by_name_or_address() {
        let (_d, db) = db();
        db.add("btm0001", "btm0001@be.test", "h").unwrap();
        assert_eq!(db.find("BTM0001").unwrap().unwrap().name, "btm0001");
        assert_eq!(db.find("btm0001@BE.test").unwrap().unwrap().name, "btm0001");
        assert!(db.find("nobody").unwrap().is_none());
        assert!(matches!(
            db.add("btm0001", "x@be.test", "h"),
            Err(StoreError::Invalid(_))
        ));
        db.set_secret("btm0001", Some("s")).unwrap();
        assert_eq!(
            db.find("btm0001").unwrap().unwrap().secret.as_deref(),
            Some("s")
        );
        assert!(db.set_password("ghost", "h").is_err());
        assert!(db.delete("btm0001").unwrap());
        assert!(!db.delete("btm0001").unwrap());
    }

    #[test]
    fn locks_are_exclusive_and_retries_do_not_extend() {
        let (_d, db) = db();
        let ttl = Duration::from_secs(60);
        assert!(db.try_lock("a", "s1", None, ttl).unwrap());
        let before = db.holder("a").unwrap().unwrap().expires;
        assert!(!db.try_lock("a", "s2", None, ttl).unwrap());
        assert_eq!(db.holder("a").unwrap().unwrap().expires, before);
        assert!(!db.refresh("a", "s2", ttl).unwrap());
        db.release("a", "s2").unwrap(); // not the holder: no effect
        assert_eq!(db.holder("a").unwrap().unwrap().owner, "s1");
        db.release("a", "s1").unwrap();
        assert!(db.try_lock("a", "s2", None, ttl).unwrap());
    }

    #[test]
    fn lapsed_lock_is_taken_over() {
        let (_d, db) = db();
        assert!(db.try_lock("a", "dead", None, Duration::ZERO).unwrap());
        assert!(db.holder("a").unwrap().is_none());
        assert!(db
            .try_lock("a", "s2", None, Duration::from_secs(5))
            .unwrap());
        assert_eq!(LockStore::list(&db).unwrap().len(), 1);
        assert!(db.clear("a").unwrap());
        assert!(LockStore::list(&db).unwrap().is_empty());
    }

    #[test]
    fn grants_expire_and_mapped_ipv6_is_ipv4() {
        let (_d, db) = db();
        let now = SystemTime::now();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        db.grant(mapped, "a", now + Duration::from_secs(600))
            .unwrap();
        assert!(db.active(ip, now).unwrap().is_some());
        assert!(db
            .active("127.0.0.3".parse().unwrap(), now)
            .unwrap()
            .is_none());
        assert!(db
            .active(ip, now + Duration::from_secs(601))
            .unwrap()
            .is_none());
        assert_eq!(db.purge(now + Duration::from_secs(601)).unwrap(), 1);
    }
}
