//! Failed-login counting per client IP and per account, shared by POP3,
//! SMTP and the portal: each failure doubles the delay before the next
//! answer, up to a cap; a quiet period resets it. IPv6 clients count per /64, the
//! block one subscriber gets: otherwise every guess could come from a fresh
//! address and never be slowed down.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct FailurePolicy {
    pub base: Duration,
    pub max: Duration,
    /// Failures older than this are forgotten.
    pub window: Duration,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(15),
            window: Duration::from_secs(15 * 60),
        }
    }
}

/// Bounded: past this many tracked IPs (or accounts) the stale entries,
/// then all, are dropped.
const MAX_TRACKED: usize = 65_536;

/// Recent failures per key, forgotten after the policy's window.
struct Counts<K>(Mutex<HashMap<K, (u32, Instant)>>);

impl<K: std::hash::Hash + Eq> Counts<K> {
    fn new() -> Self {
        Counts(Mutex::new(HashMap::new()))
    }

    fn add(&self, key: K, window: Duration) -> u32 {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_TRACKED {
            counts.retain(|_, (_, at)| at.elapsed() < window);
            if counts.len() >= MAX_TRACKED {
                counts.clear();
            }
        }
        let entry = counts.entry(key).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= window {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        entry.0
    }

    fn get(&self, key: &K, window: Duration) -> u32 {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get(key) {
            Some((n, at)) if at.elapsed() < window => *n,
            _ => 0,
        }
    }

    fn clear(&self, key: &K) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Failed logins counted per client (IPv4 address or IPv6 /64) and per
/// account. A success clears only its account's count: otherwise one valid
/// login (any customer has one) would reset the client's count between
/// guesses at other accounts. The account's count slows guesses spread over
/// many addresses; it only delays answers, so nobody can lock a customer out.
pub struct FailureTracker {
    policy: FailurePolicy,
    by_ip: Counts<IpAddr>,
    by_account: Counts<String>,
}

impl FailureTracker {
    pub fn new(policy: FailurePolicy) -> FailureTracker {
        FailureTracker {
            policy,
            by_ip: Counts::new(),
            by_account: Counts::new(),
        }
    }

    /// Records a failed login as `account` (the account's name, or the
    /// login as typed when there is no such account) and returns how long
    /// to wait before answering it.
    pub fn failed(&self, ip: IpAddr, account: &str) -> Duration {
        let window = self.policy.window;
        let by_ip = self.by_ip.add(key(ip), window);
        let by_account = self.by_account.add(account.to_ascii_lowercase(), window);
        self.delay_for(by_ip.max(by_account))
    }

    /// A successful login forgets the account's failures, not the client's.
    pub fn succeeded(&self, account: &str) {
        self.by_account.clear(&account.to_ascii_lowercase());
    }

    /// Recent failures from `ip` (for the portal's throttle).
    pub fn recent(&self, ip: IpAddr) -> u32 {
        self.by_ip.get(&key(ip), self.policy.window)
    }

    fn delay_for(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        self.policy.base.saturating_mul(factor).min(self.policy.max)
    }
}

/// The counting key: an IPv4 address, or the /64 of an IPv6 one (also the
/// per-client connection limit's, so one subscriber is one client there too).
pub fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> FailureTracker {
        FailureTracker::new(FailurePolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(350),
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn delay_grows_and_caps() {
        let t = tracker();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(t.failed(ip, "a"), Duration::from_millis(100));
        assert_eq!(t.failed(ip, "b"), Duration::from_millis(200));
        assert_eq!(t.failed(ip, "c"), Duration::from_millis(350));
        assert_eq!(t.recent(ip), 3);
        assert_eq!(t.recent("::ffff:127.0.0.2".parse().unwrap()), 3);
    }

    #[test]
    fn a_success_does_not_reset_the_client_between_guesses() {
        let t = tracker();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        t.failed(ip, "victim1");
        t.succeeded("mine");
        assert_eq!(t.failed(ip, "victim2"), Duration::from_millis(200));
        t.succeeded("mine");
        assert_eq!(t.recent(ip), 2);
    }

    #[test]
    fn guesses_at_one_account_from_many_addresses_slow_down() {
        let t = tracker();
        for (n, want) in [(1, 100), (2, 200), (3, 350)] {
            let ip: IpAddr = format!("10.0.0.{n}").parse().unwrap();
            assert_eq!(t.failed(ip, "Victim"), Duration::from_millis(want));
        }
        // The owner's success clears the account, and a fresh address is
        // then answered without delay growth from the account.
        t.succeeded("victim");
        assert_eq!(
            t.failed("10.0.0.9".parse().unwrap(), "victim"),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = FailureTracker::new(FailurePolicy::default());
        t.failed("2001:db8:1:2::1".parse().unwrap(), "a");
        t.failed("2001:db8:1:2:ffff::9".parse().unwrap(), "b");
        assert_eq!(t.recent("2001:db8:1:2::77".parse().unwrap()), 2);
        assert_eq!(t.recent("2001:db8:1:3::1".parse().unwrap()), 0);
    }
}
