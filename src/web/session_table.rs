//! The portal's login sessions, in memory. Two bounds keep one account (or
//! many) from crowding out everyone else: `web.max_sessions_per_account`
//! (past it the account's least recently used session ends) and
//! `web.max_sessions` (past it the least recently used session of all
//! ends). Every operation is O(1) in the table size: sessions are kept in
//! order of last use, so the front is the next to expire or be evicted,
//! and an account's own list is at most `max_sessions_per_account` long.

use crate::store::Account;
use hashlink::LinkedHashMap;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct Session {
    pub account: String,
    /// The account's row id and creation time: a session outlives neither
    /// its account's deletion nor a new account that gets the same name
    /// (SQLite may hand the new one the same id).
    pub account_id: (i64, SystemTime),
    /// For the navigation only; operator pages check the stored account.
    pub admin: bool,
    pub csrf: String,
    expires: Instant,
}

/// Sizes of the table (from `[web]`).
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub lifetime: Duration,
    pub max_sessions: usize,
    pub max_per_account: usize,
}

pub struct Sessions {
    limits: SessionLimits,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Every session, least recently used first.
    by_use: LinkedHashMap<String, Session>,
    /// Each account's session ids, least recently used first.
    by_account: HashMap<String, VecDeque<String>>,
}

impl Table {
    fn remove(&mut self, id: &str) {
        let Some(s) = self.by_use.remove(id) else {
            return;
        };
        if let Some(ids) = self.by_account.get_mut(&s.account) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_account.remove(&s.account);
            }
        }
    }

    /// Ends the least recently used session of all.
    fn evict_front(&mut self) {
        if let Some(id) = self.by_use.front().map(|(id, _)| id.clone()) {
            self.remove(&id);
        }
    }

    /// Ends expired sessions; they are all at the front.
    fn purge(&mut self, now: Instant) {
        while self.by_use.front().is_some_and(|(_, s)| s.expires <= now) {
            self.evict_front();
        }
    }
}

pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

impl Sessions {
    pub fn new(limits: SessionLimits) -> Sessions {
        Sessions {
            limits,
            table: Mutex::new(Table::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session; returns its id.
    pub fn create(&self, account: &Account) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut t = self.lock();
        t.purge(now);
        let oldest_of_account = t
            .by_account
            .get(&account.name)
            .filter(|ids| ids.len() >= self.limits.max_per_account)
            .and_then(|ids| ids.front().cloned());
        if let Some(oldest) = oldest_of_account {
            t.remove(&oldest);
        }
        if t.by_use.len() >= self.limits.max_sessions {
            t.evict_front();
        }
        t.by_use.insert(
            id.clone(),
            Session {
                account: account.name.clone(),
                account_id: (account.id, account.created),
                admin: account.admin,
                csrf: random_token(),
                expires: now + self.limits.lifetime,
            },
        );
        t.by_account
            .entry(account.name.clone())
            .or_default()
            .push_back(id.clone());
        id
    }

    /// The live session for `id`, its idle lifetime renewed.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut t = self.lock();
        let s = t.by_use.to_back(id)?;
        if s.expires <= now {
            t.remove(id);
            return None;
        }
        s.expires = now + self.limits.lifetime;
        let s = s.clone();
        if let Some(ids) = t.by_account.get_mut(&s.account) {
            ids.retain(|i| i != id);
            ids.push_back(id.to_string());
        }
        Some(s)
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Ends every session of `account` except `keep` (after its password
    /// changed: whoever logged in with the old one is out).
    pub fn end_others(&self, account: &str, keep: Option<&str>) {
        let mut t = self.lock();
        let ids = t.by_account.get(account).cloned().unwrap_or_default();
        for id in ids.iter().filter(|id| Some(id.as_str()) != keep) {
            t.remove(id);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        let t = self.lock();
        assert_eq!(
            t.by_use.len(),
            t.by_account.values().map(VecDeque::len).sum::<usize>()
        );
        t.by_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(name: &str) -> Account {
        Account::for_test(name, 1)
    }

    fn sessions(lifetime: Duration, max_sessions: usize, max_per_account: usize) -> Sessions {
        Sessions::new(SessionLimits {
            lifetime,
            max_sessions,
            max_per_account,
        })
    }

    #[test]
    fn sessions_expire_and_are_removed() {
        let s = sessions(Duration::from_millis(50), 100, 10);
        let id = s.create(&account("btm0001"));
        assert_eq!(id.len(), 64);
        assert_eq!(s.touch(&id).unwrap().account, "btm0001");
        assert!(s.touch("nope").is_none());
        std::thread::sleep(Duration::from_millis(80));
        assert!(s.touch(&id).is_none());
        let id = s.create(&account("b"));
        s.remove(&id);
        assert!(s.touch(&id).is_none());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn expired_sessions_are_purged_by_the_next_login() {
        let s = sessions(Duration::from_millis(50), 100, 10);
        for name in ["a", "b", "c"] {
            s.create(&account(name));
        }
        std::thread::sleep(Duration::from_millis(80));
        s.create(&account("d"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn end_others_keeps_only_the_given_session() {
        let s = sessions(Duration::from_secs(60), 100, 10);
        let (a1, a2, b) = (
            s.create(&account("a")),
            s.create(&account("a")),
            s.create(&account("b")),
        );
        s.end_others("a", Some(&a1));
        assert!(s.touch(&a1).is_some() && s.touch(&a2).is_none() && s.touch(&b).is_some());
        s.end_others("a", None);
        assert!(s.touch(&a1).is_none());
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn one_account_keeps_at_most_its_cap_losing_its_least_recently_used() {
        let s = sessions(Duration::from_secs(60), 1000, 3);
        let other = s.create(&account("other"));
        let ids: Vec<String> = (0..3).map(|_| s.create(&account("a"))).collect();
        s.touch(&ids[0]);
        let fourth = s.create(&account("a"));
        assert!(s.touch(&ids[1]).is_none(), "least recently used of a");
        for id in [&ids[0], &ids[2], &fourth, &other] {
            assert!(s.touch(id).is_some());
        }
        // A flood of logins of one account leaves the others alone.
        for _ in 0..10_000 {
            s.create(&account("a"));
        }
        assert_eq!(s.len(), 4);
        assert!(s.touch(&other).is_some());
    }

    #[test]
    fn a_full_table_loses_its_least_recently_used_session() {
        let s = sessions(Duration::from_secs(60), 3, 10);
        let (a, b, c) = (
            s.create(&account("a")),
            s.create(&account("b")),
            s.create(&account("c")),
        );
        s.touch(&a);
        let d = s.create(&account("d"));
        assert!(s.touch(&b).is_none());
        for id in [&a, &c, &d] {
            assert!(s.touch(id).is_some());
        }
        assert_eq!(s.len(), 3);
    }
}
