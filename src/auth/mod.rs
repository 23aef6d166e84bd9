//! Credentials: password hashing (argon2id on a pool of workers, imported
//! crypt(3)), APOP and CRAM-MD5 digests, one verification path for every
//! protocol, a cache of successful verifications, and the growing delay
//! after failures.

pub mod failures;
pub mod hasher;

pub use failures::FailureTracker;
pub use hasher::HashPolicy;

use crate::config::AuthConfig;
use crate::store::{Account, Store};
use hasher::{Done, HashPool};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Constant-time comparison for secrets and digests.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// RFC 1939 7: MD5 of the greeting timestamp followed by the shared secret.
pub fn apop_digest(timestamp: &str, secret: &str) -> String {
    let mut h = Md5::new();
    h.update(timestamp.as_bytes());
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// RFC 2195: HMAC-MD5 of the challenge keyed with the shared secret, in hex.
pub fn cram_md5_digest(secret: &str, challenge: &str) -> String {
    let mut mac =
        Hmac::<Md5>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(challenge.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// What a client offers to prove who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    Password(String),
    /// RFC 1939 APOP: the greeting's timestamp and the client's digest.
    Apop {
        timestamp: String,
        digest: String,
    },
    /// RFC 2195 CRAM-MD5: our challenge and the client's hex digest.
    CramMd5 {
        challenge: String,
        digest: String,
    },
}

/// Which service asks: SMTP AUTH may use the separate SMTP password (SEED-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Pop3,
    Smtp,
    Web,
}

#[derive(Debug)]
pub enum AuthResult {
    Ok(Account),
    /// Unknown user, wrong password, disabled account or no shared secret:
    /// callers answer all alike so that nothing leaks which one it was.
    Failed,
    /// The store could not be read; try again later.
    TempFail(String),
}

/// The cache key: an account and which of its passwords (SEED-3).
type CacheKey = (i64, bool);

pub struct Authenticator {
    store: Store,
    pool: HashPool,
    /// A keyed digest of (stored hash, password) per account, never the
    /// password: binding the stored hash means that a password changed by
    /// another process (the CLI, another node) misses the cache at once.
    cache: quick_cache::sync::Cache<CacheKey, (Instant, [u8; 32])>,
    cache_ttl: Duration,
    cache_key: [u8; 32],
    /// A hash of the policy's cost checked for unknown users: the same work
    /// as a real check, so a reply's timing does not tell which names exist.
    dummy: String,
    pub failures: FailureTracker,
}

impl Authenticator {
    pub fn new(store: Store, cfg: &AuthConfig, failures: FailureTracker) -> Authenticator {
        let pool = HashPool::start(
            cfg.policy(),
            cfg.workers(),
            cfg.queue(),
            cfg.max_hash_memory_kib,
            cfg.max_hash_iterations,
        );
        Authenticator {
            store,
            pool,
            cache: quick_cache::sync::Cache::new(cfg.credential_cache_entries.max(1)),
            cache_ttl: cfg.credential_cache_ttl,
            cache_key: rand::random(),
            dummy: hasher::hash_now(&cfg.policy(), "betomail timing equalizer"),
            failures,
        }
    }

    fn keyed(&self, hash: &str, password: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.cache_key).expect("any key length");
        mac.update(hash.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Forgets an account's remembered passwords (after a password change,
    /// disable or delete in this process; other processes miss anyway).
    pub fn forget(&self, account_id: i64) {
        self.cache.remove(&(account_id, false));
        self.cache.remove(&(account_id, true));
    }

    /// Checks a password; a hash of an older policy (or a crypt(3) one) is
    /// replaced after a success. `Err` when no hash worker is free.
    async fn password_matches(
        &self,
        account: &Account,
        smtp: bool,
        password: &str,
    ) -> Result<bool, String> {
        let hash = match (smtp, &account.smtp_password_hash) {
            (true, Some(h)) => h.as_str(),
            _ => account.password_hash.as_str(),
        };
        let key = (account.id, smtp && account.smtp_password_hash.is_some());
        let digest = self.keyed(hash, password);
        if let Some((at, d)) = self.cache.get(&key) {
            if at.elapsed() < self.cache_ttl && ct_eq(&d, &digest) {
                // Sliding: a client polling within the TTL never pays the
                // hash again; the entry still dies with a changed hash.
                self.cache.insert(key, (Instant::now(), digest));
                return Ok(true);
            }
        }
        let rehash = self.pool.policy().needs_rehash(hash);
        let new_hash = match self.pool.verify(hash, password, rehash).await {
            Ok(Done::Verified(new)) => new,
            Ok(_) => return Ok(false),
            Err(hasher::Busy) => return Err("every password hash worker is busy".into()),
        };
        let digest = match new_hash {
            Some(new) if self.store_rehash(account, key.1, new.clone()).await => {
                self.keyed(&new, password)
            }
            _ => digest,
        };
        self.cache.insert(key, (Instant::now(), digest));
        Ok(true)
    }

    /// Stores a rehashed password unless the stored hash changed since
    /// `account` was read; true if stored. A failure only means it is
    /// rehashed at a later login.
    async fn store_rehash(&self, account: &Account, smtp: bool, hash: String) -> bool {
        let name = account.name.clone();
        let old = match (smtp, &account.smtp_password_hash) {
            (true, Some(h)) => h.clone(),
            _ => account.password_hash.clone(),
        };
        let result = self
            .store
            .run(move |s| s.accounts.replace_password_hash(&name, smtp, &old, &hash))
            .await;
        match result {
            Ok(true) => {
                tracing::info!(account = %account.name, smtp, "password rehashed to the policy");
                true
            }
            Ok(false) => {
                tracing::info!(account = %account.name, smtp, "password changed meanwhile; rehash dropped");
                false
            }
            Err(e) => {
                tracing::warn!(account = %account.name, error = %e, "rehash not stored");
                false
            }
        }
    }

    /// A login by any protocol: verifies it (name or full address, SEED-1)
    /// and throttles failures per client and per account, waiting out the
    /// delay before it returns `Failed`. The one place these rules live for
    /// POP3, SMTP AUTH and the portal.
    pub async fn login(
        &self,
        ip: std::net::IpAddr,
        login: String,
        credential: Credential,
        purpose: Purpose,
    ) -> AuthResult {
        let typed = login.clone();
        let account = match self.store.run(move |s| s.accounts.find(&login)).await {
            Ok(a) => a,
            Err(e) => return AuthResult::TempFail(e.to_string()),
        };
        let result = match &account {
            Some(a) if !a.disabled => self.check(a, &credential, purpose).await,
            _ => {
                // Same work as a real check, so timing does not tell users apart.
                if let Credential::Password(p) = &credential {
                    let _ = self.pool.verify(&self.dummy, p, false).await;
                }
                Ok(false)
            }
        };
        match (result, account) {
            (Err(busy), _) => AuthResult::TempFail(busy),
            (Ok(true), Some(a)) => {
                self.failures.succeeded(&a.name);
                AuthResult::Ok(a)
            }
            (_, found) => {
                let key = found.map_or(typed, |a| a.name);
                let delay = self.failures.failed(ip, &key);
                tracing::info!(%ip, delay_ms = delay.as_millis() as u64, "login failed");
                tokio::time::sleep(delay).await;
                AuthResult::Failed
            }
        }
    }

    /// Whether `credential` proves `account`; `Err` when no hash worker is free.
    async fn check(
        &self,
        account: &Account,
        credential: &Credential,
        purpose: Purpose,
    ) -> Result<bool, String> {
        Ok(match credential {
            Credential::Password(p) => {
                return self
                    .password_matches(account, purpose == Purpose::Smtp, p)
                    .await
            }
            Credential::Apop { timestamp, digest } => account.secret.as_deref().is_some_and(|s| {
                ct_eq(
                    apop_digest(timestamp, s).as_bytes(),
                    digest.to_ascii_lowercase().as_bytes(),
                )
            }),
            Credential::CramMd5 { challenge, digest } => {
                account.secret.as_deref().is_some_and(|s| {
                    ct_eq(
                        cram_md5_digest(s, challenge).as_bytes(),
                        digest.to_ascii_lowercase().as_bytes(),
                    )
                })
            }
        })
    }

    /// A new hash of the policy, computed on a hash worker; `None` when
    /// every worker is busy.
    pub async fn hash(&self, password: &str) -> Option<String> {
        self.pool.hash(password).await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1939_apop_example() {
        assert_eq!(
            apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf"),
            "c4c9334bac560ecc979e58001b3e22fb"
        );
    }

    #[test]
    fn rfc2195_cram_md5_example() {
        assert_eq!(
            cram_md5_digest(
                "tanstaaftanstaaf",
                "<1896.697170952@postoffice.reston.mci.net>"
            ),
            "b913a602c7eda7a495b4e6e7334d3890"
        );
    }

    fn cheap() -> AuthConfig {
        toml::from_str("argon2_memory_kib = 64\nargon2_iterations = 1\nhash_workers = 1").unwrap()
    }

    fn no_delay() -> failures::FailurePolicy {
        failures::FailurePolicy {
            base: Duration::ZERO,
            ..Default::default()
        }
    }

    fn ip() -> std::net::IpAddr {
        std::net::Ipv4Addr::LOCALHOST.into()
    }

    fn pw(p: &str) -> Credential {
        Credential::Password(p.into())
    }

    /// A login that verified the old password must not write its rehash
    /// over a password changed meanwhile (portal, admin, CLI).
    #[tokio::test]
    async fn a_rehash_does_not_undo_a_racing_password_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), "h").unwrap();
        let cfg = cheap();
        let crypt = pwhash::sha512_crypt::hash("old").unwrap();
        store.accounts.add("a", "a@be.test", &crypt).unwrap();
        store.accounts.set_smtp_password("a", Some(&crypt)).unwrap();
        let seen = store.accounts.find("a").unwrap().unwrap();
        let changed = hasher::hash_now(&cfg.policy(), "new");
        store.accounts.set_password("a", &changed).unwrap();
        store
            .accounts
            .set_smtp_password("a", Some(&changed))
            .unwrap();
        let auth = Authenticator::new(store.clone(), &cfg, FailureTracker::new(no_delay()));
        let rehash = hasher::hash_now(&cfg.policy(), "old");
        auth.store_rehash(&seen, false, rehash.clone()).await;
        auth.store_rehash(&seen, true, rehash).await;
        let now = store.accounts.find("a").unwrap().unwrap();
        assert_eq!(now.password_hash, changed);
        assert_eq!(now.smtp_password_hash.as_deref(), Some(changed.as_str()));
        // Without a race the rehash is stored.
        let fresh = hasher::hash_now(&cfg.policy(), "new");
        assert!(auth.store_rehash(&now, false, fresh.clone()).await);
        assert_eq!(
            store.accounts.find("a").unwrap().unwrap().password_hash,
            fresh
        );
    }

    #[tokio::test]
    async fn verify_by_name_address_and_smtp_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), "h").unwrap();
        let cfg = cheap();
        let hash = hasher::hash_now(&cfg.policy(), "pw");
        store
            .accounts
            .add("btm0001", "btm0001@be.test", &hash)
            .unwrap();
        let auth = Authenticator::new(store.clone(), &cfg, FailureTracker::new(no_delay()));
        let check = |login: &str, c: Credential, p: Purpose| auth.login(ip(), login.into(), c, p);
        assert!(matches!(
            check("btm0001", pw("pw"), Purpose::Pop3).await,
            AuthResult::Ok(_)
        ));
        // Cached path gives the same answers.
        assert!(matches!(
            check("btm0001@be.test", pw("pw"), Purpose::Pop3).await,
            AuthResult::Ok(_)
        ));
        assert!(matches!(
            check("btm0001", pw("px"), Purpose::Pop3).await,
            AuthResult::Failed
        ));
        assert!(matches!(
            check("nobody", pw("pw"), Purpose::Pop3).await,
            AuthResult::Failed
        ));
        let smtp = hasher::hash_now(&cfg.policy(), "smtp");
        store
            .accounts
            .set_smtp_password("btm0001", Some(&smtp))
            .unwrap();
        assert!(matches!(
            check("btm0001", pw("smtp"), Purpose::Smtp).await,
            AuthResult::Ok(_)
        ));
        assert!(matches!(
            check("btm0001", pw("pw"), Purpose::Smtp).await,
            AuthResult::Failed
        ));
        assert!(matches!(
            check("btm0001", pw("pw"), Purpose::Pop3).await,
            AuthResult::Ok(_)
        ));
        // No secret: APOP fails even with the right digest of the password.
        let apop = Credential::Apop {
            timestamp: "<1@h>".into(),
            digest: apop_digest("<1@h>", "pw"),
        };
        assert!(matches!(
            check("btm0001", apop.clone(), Purpose::Pop3).await,
            AuthResult::Failed
        ));
        store.accounts.set_secret("btm0001", Some("pw")).unwrap();
        assert!(matches!(
            check("btm0001", apop, Purpose::Pop3).await,
            AuthResult::Ok(_)
        ));
        store.accounts.set_disabled("btm0001", true).unwrap();
        assert!(matches!(
            check("btm0001", pw("pw"), Purpose::Pop3).await,
            AuthResult::Failed
        ));
    }

    /// A client polling more often than the TTL stays verified: each hit
    /// renews its entry, so steady polling never pays the hash again.
    #[tokio::test]
    async fn polling_within_the_ttl_keeps_the_entry_alive() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), "h").unwrap();
        let mut cfg = cheap();
        cfg.credential_cache_ttl = Duration::from_millis(1000);
        let id = store
            .accounts
            .add("a", "a@be.test", &hasher::hash_now(&cfg.policy(), "pw"))
            .unwrap()
            .id;
        let auth = Authenticator::new(store.clone(), &cfg, FailureTracker::new(no_delay()));
        for _ in 0..3 {
            assert!(matches!(
                auth.login(ip(), "a".into(), pw("pw"), Purpose::Pop3).await,
                AuthResult::Ok(_)
            ));
            // Renewed by this login, whether it hashed or hit the cache.
            let (at, _) = auth.cache.get(&(id, false)).unwrap();
            assert!(
                at.elapsed() < Duration::from_millis(300),
                "{:?}",
                at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
    }

    #[tokio::test]
    async fn a_password_changed_elsewhere_misses_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), "h").unwrap();
        let cfg = cheap();
        let hash = |p: &str| hasher::hash_now(&cfg.policy(), p);
        store.accounts.add("a", "a@be.test", &hash("old")).unwrap();
        let auth = Authenticator::new(store.clone(), &cfg, FailureTracker::new(no_delay()));
        assert!(matches!(
            auth.login(ip(), "a".into(), pw("old"), Purpose::Pop3).await,
            AuthResult::Ok(_)
        ));
        // As `betomail user passwd` in another process would.
        store.accounts.set_password("a", &hash("new")).unwrap();
        assert!(matches!(
            auth.login(ip(), "a".into(), pw("old"), Purpose::Pop3).await,
            AuthResult::Failed
        ));
        assert!(matches!(
            auth.login(ip(), "a".into(), pw("new"), Purpose::Pop3).await,
            AuthResult::Ok(_)
        ));
    }

    #[tokio::test]
    async fn old_hashes_are_rehashed_to_the_policy_at_login() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), "h").unwrap();
        let cfg = cheap();
        let crypt = pwhash::sha512_crypt::hash("pw").unwrap();
        store.accounts.add("a", "a@be.test", &crypt).unwrap();
        let weaker = HashPolicy {
            iterations: 1,
            memory_kib: 32,
            parallelism: 1,
        };
        store
            .accounts
            .set_smtp_password("a", Some(&hasher::hash_now(&weaker, "s")))
            .unwrap();
        let auth = Authenticator::new(store.clone(), &cfg, FailureTracker::new(no_delay()));
        assert!(matches!(
            auth.login(ip(), "a".into(), pw("px"), Purpose::Pop3).await,
            AuthResult::Failed
        ));
        assert_eq!(
            store.accounts.find("a").unwrap().unwrap().password_hash,
            crypt
        );
        assert!(matches!(
            auth.login(ip(), "a".into(), pw("pw"), Purpose::Pop3).await,
            AuthResult::Ok(_)
        ));
        assert!(matches!(
            auth.login(ip(), "a".into(), pw("s"), Purpose::Smtp).await,
            AuthResult::Ok(_)
        ));
        let a = store.accounts.find("a").unwrap().unwrap();
        let policy = cfg.policy();
        assert!(
            !policy.needs_rehash(&a.password_hash),
            "{}",
            a.password_hash
        );
        assert!(!policy.needs_rehash(a.smtp_password_hash.as_deref().unwrap()));
        // The new hashes still take the same passwords.
        assert!(hasher::verify_now(&a.password_hash, "pw"));
        assert!(hasher::verify_now(
            a.smtp_password_hash.as_deref().unwrap(),
            "s"
        ));
    }
}
