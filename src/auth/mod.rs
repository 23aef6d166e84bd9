//! Credentials: password hashing (argon2id, imported crypt(3)), APOP and
//! CRAM-MD5 digests, one verification path for every protocol, a short-lived
//! cache of successful verifications, and the growing delay after failures.

pub mod failures;

pub use failures::FailureTracker;

use crate::store::{Account, Store};
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// An argon2id PHC string with a random salt (NEW-1).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks a password against an argon2 PHC string or an imported crypt(3)
/// hash (`$1$`, `$5$`, `$6$`, `$2y$`, DES).
pub fn verify_password(hash: &str, password: &str) -> bool {
    if hash.starts_with("$argon2") {
        PasswordHash::new(hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    } else if hash.is_empty() || hash.starts_with('!') || hash.starts_with('*') {
        false // a locked crypt entry
    } else {
        pwhash::unix::verify(password, hash)
    }
}

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

/// A verified (account, password) pair is remembered this long, so that a
/// mail client polling every minute does not pay for argon2 each time.
const CACHE_TTL: Duration = Duration::from_secs(300);
const CACHE_MAX: usize = 100_000;

/// Counts argon2 runs in progress: each takes ~19 MiB and a core for tens
/// of milliseconds, so a burst of logins must queue, not run all at once.
struct HashLimiter {
    running: Mutex<usize>,
    freed: std::sync::Condvar,
    max: usize,
}

impl HashLimiter {
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut n = self.running.lock().unwrap_or_else(|p| p.into_inner());
        while *n >= self.max {
            n = self.freed.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n += 1;
        drop(n);
        let out = f();
        *self.running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.freed.notify_one();
        out
    }
}

pub struct Authenticator {
    store: Store,
    hashing: HashLimiter,
    /// Keyed by the stored hash; the value is a keyed digest of the password,
    /// never the password itself.
    cache: Mutex<HashMap<String, (Instant, [u8; 32])>>,
    cache_key: [u8; 32],
    pub failures: FailureTracker,
}

impl Authenticator {
    pub fn new(store: Store, failures: FailureTracker) -> Authenticator {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            store,
            hashing: HashLimiter {
                running: Mutex::new(0),
                freed: std::sync::Condvar::new(),
                max: cores,
            },
            cache: Mutex::new(HashMap::new()),
            cache_key: rand::random(),
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

    fn password_matches(&self, hash: &str, password: &str) -> bool {
        let digest = self.keyed(hash, password);
        {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, d)) = cache.get(hash) {
                if at.elapsed() < CACHE_TTL && ct_eq(d, &digest) {
                    return true;
                }
            }
        }
        if !self.hashing.run(|| verify_password(hash, password)) {
            return false;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(hash.to_string(), (Instant::now(), digest));
        true
    }

    /// Verifies a login (name or full address, SEED-1). Blocking (argon2):
    /// call from `spawn_blocking`, or use [`Authenticator::verify_async`].
    pub fn verify(&self, login: &str, credential: &Credential, purpose: Purpose) -> AuthResult {
        let account = match self.store.accounts.find(login) {
            Ok(a) => a,
            Err(e) => return AuthResult::TempFail(e.to_string()),
        };
        let Some(account) = account.filter(|a| !a.disabled) else {
            // Same work as a real check, so timing does not tell users apart.
            if let Credential::Password(p) = credential {
                self.hashing.run(|| verify_password(dummy_hash(), p));
            }
            return AuthResult::Failed;
        };
        let ok = match credential {
            Credential::Password(p) => {
                let hash = match (purpose, &account.smtp_password_hash) {
                    (Purpose::Smtp, Some(h)) => h.as_str(),
                    _ => account.password_hash.as_str(),
                };
                self.password_matches(hash, p)
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
        };
        if ok {
            AuthResult::Ok(account)
        } else {
            AuthResult::Failed
        }
    }

    pub async fn verify_async(
        self: &std::sync::Arc<Self>,
        login: String,
        credential: Credential,
        purpose: Purpose,
    ) -> AuthResult {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.verify(&login, &credential, purpose))
            .await
            .unwrap_or_else(|e| AuthResult::TempFail(e.to_string()))
    }

    /// Whether the account can use APOP / CRAM-MD5 (it has a shared secret).
    pub fn has_secret(&self, login: &str) -> bool {
        matches!(self.store.accounts.find(login), Ok(Some(a)) if a.secret.is_some())
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("betomail timing equalizer"))
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

    #[test]
    fn argon2_and_crypt_hashes() {
        let h = hash_password("secret");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "secret"));
        assert!(!verify_password(&h, "Secret"));
        let sha512 = pwhash::sha512_crypt::hash("pw").unwrap();
        assert!(verify_password(&sha512, "pw"));
        assert!(!verify_password(&sha512, "px"));
        assert!(!verify_password("!locked", "pw"));
        assert!(!verify_password("", ""));
    }

    #[test]
    fn verify_by_name_address_and_smtp_password() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), "h").unwrap();
        store
            .accounts
            .add("btm0001", "btm0001@be.test", &hash_password("pw"))
            .unwrap();
        let auth = Authenticator::new(store.clone(), FailureTracker::new(Default::default()));
        let pw = |p: &str| Credential::Password(p.into());
        assert!(matches!(
            auth.verify("btm0001", &pw("pw"), Purpose::Pop3),
            AuthResult::Ok(_)
        ));
        // Cached path gives the same answers.
        assert!(matches!(
            auth.verify("btm0001@be.test", &pw("pw"), Purpose::Pop3),
            AuthResult::Ok(_)
        ));
        assert!(matches!(
            auth.verify("btm0001", &pw("px"), Purpose::Pop3),
            AuthResult::Failed
        ));
        assert!(matches!(
            auth.verify("nobody", &pw("pw"), Purpose::Pop3),
            AuthResult::Failed
        ));
        store
            .accounts
            .set_smtp_password("btm0001", Some(&hash_password("smtp")))
            .unwrap();
        assert!(matches!(
            auth.verify("btm0001", &pw("smtp"), Purpose::Smtp),
            AuthResult::Ok(_)
        ));
        assert!(matches!(
            auth.verify("btm0001", &pw("pw"), Purpose::Smtp),
            AuthResult::Failed
        ));
        assert!(matches!(
            auth.verify("btm0001", &pw("pw"), Purpose::Pop3),
            AuthResult::Ok(_)
        ));
        // No secret: APOP fails even with the right digest of the password.
        let apop = Credential::Apop {
            timestamp: "<1@h>".into(),
            digest: apop_digest("<1@h>", "pw"),
        };
        assert!(matches!(
            auth.verify("btm0001", &apop, Purpose::Pop3),
            AuthResult::Failed
        ));
        store.accounts.set_secret("btm0001", Some("pw")).unwrap();
        assert!(matches!(
            auth.verify("btm0001", &apop, Purpose::Pop3),
            AuthResult::Ok(_)
        ));
        store.accounts.set_disabled("btm0001", true).unwrap();
        assert!(matches!(
            auth.verify("btm0001", &pw("pw"), Purpose::Pop3),
            AuthResult::Failed
        ));
    }
}
