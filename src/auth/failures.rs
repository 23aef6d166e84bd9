//! Failed-login counting per client IP, shared by POP3, SMTP and the portal:
//! each failure doubles the delay before the next answer, up to a cap, and a
//! success or a quiet period resets it. IPv6 clients count per /64, the
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

/// Bounded: past this many tracked IPs the oldest entries are dropped.
const MAX_TRACKED: usize = 65_536;

pub struct FailureTracker {
    policy: FailurePolicy,
    counts: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureTracker {
    pub fn new(policy: FailurePolicy) -> FailureTracker {
        FailureTracker {
            policy,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Records a failure and returns how long to wait before answering it.
    pub fn failed(&self, ip: IpAddr) -> Duration {
        let ip = key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.len() >= MAX_TRACKED {
            let window = self.policy.window;
            counts.retain(|_, (_, at)| at.elapsed() < window);
            if counts.len() >= MAX_TRACKED {
                counts.clear();
            }
        }
        let entry = counts.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= self.policy.window {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = Instant::now();
        self.delay_for(entry.0)
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(ip));
    }

    /// Recent failures from `ip` (for the portal's throttle).
    pub fn recent(&self, ip: IpAddr) -> u32 {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        match counts.get(&key(ip)) {
            Some((n, at)) if at.elapsed() < self.policy.window => *n,
            _ => 0,
        }
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

    #[test]
    fn delay_grows_caps_and_resets() {
        let t = FailureTracker::new(FailurePolicy {
            base: Duration::from_millis(100),
            max: Duration::from_millis(350),
            window: Duration::from_secs(60),
        });
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        assert_eq!(t.failed(ip), Duration::from_millis(100));
        assert_eq!(t.failed(ip), Duration::from_millis(200));
        assert_eq!(t.failed(ip), Duration::from_millis(350));
        assert_eq!(t.recent(ip), 3);
        assert_eq!(t.recent("::ffff:127.0.0.2".parse().unwrap()), 3);
        t.succeeded(ip);
        assert_eq!(t.recent(ip), 0);
        assert_eq!(t.failed(ip), Duration::from_millis(100));
    }

    #[test]
    fn ipv6_counts_per_64() {
        let t = FailureTracker::new(FailurePolicy::default());
        t.failed("2001:db8:1:2::1".parse().unwrap());
        t.failed("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(t.recent("2001:db8:1:2::77".parse().unwrap()), 2);
        assert_eq!(t.recent("2001:db8:1:3::1".parse().unwrap()), 0);
        t.succeeded("2001:db8:1:2::5".parse().unwrap());
        assert_eq!(t.recent("2001:db8:1:2::1".parse().unwrap()), 0);
    }
}
