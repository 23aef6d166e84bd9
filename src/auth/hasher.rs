//! Password hashing on a fixed set of worker threads. Each worker owns one
//! argon2 working buffer for its whole life, so a login storm costs at most
//! `workers x policy memory`, never an allocation per login (glibc kept every
//! freed 19 MiB buffer: 1,000 first logins once left 13 GB resident).
//! Callers wait asynchronously in a bounded queue; a full queue is answered
//! at once ([`Busy`]) instead of piling up threads or memory.

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The argon2id parameters new hashes get (`[auth]` in the config); a stored
/// hash with other parameters is rehashed at its next successful login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashPolicy {
    /// Memory in KiB (argon2 m).
    pub memory_kib: u32,
    /// Passes over the memory (argon2 t).
    pub iterations: u32,
    /// Lanes (argon2 p).
    pub parallelism: u32,
}

impl Default for HashPolicy {
    /// OWASP's minimum for argon2id: 19 MiB, two passes, one lane.
    fn default() -> Self {
        HashPolicy {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
            parallelism: Params::DEFAULT_P_COST,
        }
    }
}

impl HashPolicy {
    pub fn params(&self) -> Result<Params, argon2::Error> {
        Params::new(self.memory_kib, self.iterations, self.parallelism, None)
    }

    /// Whether `hash` should be replaced by one of this policy: an imported
    /// crypt(3) hash, another argon2 variant, or other parameters.
    pub fn needs_rehash(&self, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return true;
        };
        let same = |name: &str, want: u32| parsed.params.get_decimal(name) == Some(want);
        parsed.algorithm != argon2::ARGON2ID_IDENT
            || parsed.version != Some(Version::V0x13.into())
            || !same("m", self.memory_kib)
            || !same("t", self.iterations)
            || !same("p", self.parallelism)
    }
}

/// One worker's argon2 memory, reused for every job that fits in it.
struct Workspace {
    blocks: Vec<Block>,
    /// Hashes that need more than `blocks` (imported with a costlier
    /// policy) get a buffer of their own up to this many KiB.
    max_kib: u32,
    /// Stored hashes with more argon2 passes than this are not checked:
    /// one imported hash must not hold a worker for minutes per login.
    max_iterations: u32,
}

impl Workspace {
    fn run(
        &mut self,
        ctx: &Argon2<'_>,
        params: &Params,
        pwd: &[u8],
        salt: &[u8],
        out: &mut [u8],
    ) -> Result<(), argon2::Error> {
        let need = params.block_count();
        if need <= self.blocks.len() {
            return ctx.hash_password_into_with_memory(pwd, salt, out, &mut self.blocks[..]);
        }
        if params.m_cost() > self.max_kib {
            return Err(argon2::Error::MemoryTooMuch);
        }
        ctx.hash_password_into_with_memory(pwd, salt, out, vec![Block::default(); need])
    }

    /// An argon2id PHC string of `policy` with a random salt (NEW-1).
    fn hash(&mut self, policy: &HashPolicy, password: &str) -> Result<String, argon2::Error> {
        let params = policy.params()?;
        let ctx = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let mut salt_bytes = [0u8; 64];
        let salt_bytes = salt
            .decode_b64(&mut salt_bytes)
            .map_err(|_| argon2::Error::SaltTooShort)?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        self.run(&ctx, &params, password.as_bytes(), salt_bytes, &mut out)?;
        let phc = PasswordHash {
            algorithm: argon2::ARGON2ID_IDENT,
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|_| argon2::Error::OutputTooShort)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(|_| argon2::Error::OutputTooShort)?),
        };
        Ok(phc.to_string())
    }

    /// Checks a password against an argon2 PHC string (in our buffer) or an
    /// imported crypt(3) hash (`$1$`, `$5$`, `$6$`, `$2y$`, DES).
    fn verify(&mut self, hash: &str, password: &str) -> bool {
        if hash.starts_with("$argon2") {
            return self.verify_argon2(hash, password).unwrap_or(false);
        }
        if hash.is_empty() || hash.starts_with('!') || hash.starts_with('*') {
            return false; // a locked crypt entry
        }
        pwhash::unix::verify(password, hash)
    }

    fn verify_argon2(&mut self, hash: &str, password: &str) -> Option<bool> {
        let parsed = PasswordHash::new(hash).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let version = match parsed.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&parsed).ok()?;
        if params.t_cost() > self.max_iterations {
            tracing::warn!(
                t = params.t_cost(),
                "a stored password hash exceeds auth.max_hash_iterations; not checked"
            );
            return Some(false);
        }
        let expected = parsed.hash?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut salt).ok()?;
        let ctx = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        if let Err(e) = self.run(&ctx, &params, password.as_bytes(), salt, &mut out) {
            tracing::warn!(error = %e, "a stored password hash cannot be checked");
            return Some(false);
        }
        Some(super::ct_eq(&out, expected.as_bytes()))
    }
}

/// What a worker is asked to do.
enum Job {
    /// Check `password` against `hash`; when it matches and `rehash` is set,
    /// also hash it anew with the policy (returned as `Verified(Some(_))`).
    Verify {
        hash: String,
        password: String,
        rehash: bool,
    },
    Hash {
        password: String,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Done {
    Verified(Option<String>),
    Mismatch,
    Hashed(String),
    Error,
}

/// The queue is full: the caller answers with a temporary error at once.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

type Task = (Job, oneshot::Sender<Done>);

pub struct HashPool {
    queue: SyncSender<Task>,
    policy: HashPolicy,
}

impl HashPool {
    /// Starts `workers` threads, each with a buffer of the policy's memory,
    /// behind a queue of `queue` waiting jobs.
    /// Stored hashes are checked up to `max_kib` of memory and
    /// `max_iterations` passes.
    pub fn start(
        policy: HashPolicy,
        workers: usize,
        queue: usize,
        max_kib: u32,
        max_iterations: u32,
    ) -> HashPool {
        let (tx, rx) = sync_channel::<Task>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("hash-{n}"))
                .spawn(move || worker(policy, max_kib, max_iterations, rx))
                .expect("spawning a password hashing thread");
        }
        HashPool { queue: tx, policy }
    }

    pub fn policy(&self) -> &HashPolicy {
        &self.policy
    }

    async fn submit(&self, job: Job) -> Result<Done, Busy> {
        let (tx, rx) = oneshot::channel();
        match self.queue.try_send((job, tx)) {
            Ok(()) => Ok(rx.await.unwrap_or(Done::Error)),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(Busy),
        }
    }

    pub async fn verify(&self, hash: &str, password: &str, rehash: bool) -> Result<Done, Busy> {
        self.submit(Job::Verify {
            hash: hash.to_string(),
            password: password.to_string(),
            rehash,
        })
        .await
    }

    /// A new hash of the policy, computed on a worker.
    pub async fn hash(&self, password: &str) -> Result<Option<String>, Busy> {
        let done = self
            .submit(Job::Hash {
                password: password.to_string(),
            })
            .await?;
        Ok(match done {
            Done::Hashed(h) => Some(h),
            _ => None,
        })
    }
}

fn worker(policy: HashPolicy, max_kib: u32, max_iterations: u32, rx: Arc<Mutex<Receiver<Task>>>) {
    let blocks = policy.params().map_or(0, |p| p.block_count());
    let mut ws = Workspace {
        blocks: vec![Block::default(); blocks],
        max_kib,
        max_iterations,
    };
    loop {
        // One worker waits on the queue at a time; the others on the lock.
        let task = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((job, reply)) = task else {
            return; // the pool is gone
        };
        let done = match job {
            Job::Verify {
                hash,
                password,
                rehash,
            } => {
                if !ws.verify(&hash, &password) {
                    Done::Mismatch
                } else if rehash {
                    Done::Verified(ws.hash(&policy, &password).ok())
                } else {
                    Done::Verified(None)
                }
            }
            Job::Hash { password } => match ws.hash(&policy, &password) {
                Ok(h) => Done::Hashed(h),
                Err(e) => {
                    tracing::error!(error = %e, "password hashing failed");
                    Done::Error
                }
            },
        };
        let _ = reply.send(done);
    }
}

/// A hash of `policy` computed on the calling thread: for admin commands,
/// which run one at a time.
pub fn hash_now(policy: &HashPolicy, password: &str) -> String {
    let blocks = policy.params().map_or(0, |p| p.block_count());
    Workspace {
        blocks: vec![Block::default(); blocks],
        max_kib: policy.memory_kib,
        max_iterations: policy.iterations,
    }
    .hash(policy, password)
    .expect("a validated hash policy cannot fail")
}

/// Checks a password on the calling thread (tests and admin commands).
pub fn verify_now(hash: &str, password: &str) -> bool {
    Workspace {
        blocks: Vec::new(),
        max_kib: u32::MAX,
        max_iterations: u32::MAX,
    }
    .verify(hash, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashPolicy {
        HashPolicy {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[test]
    fn our_hashes_are_standard_phc_strings() {
        let h = hash_now(&cheap(), "secret");
        assert!(h.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{h}");
        // The argon2 crate's own verifier agrees with ours, both ways.
        use argon2::PasswordVerifier;
        let parsed = PasswordHash::new(&h).unwrap();
        assert!(Argon2::default()
            .verify_password(b"secret", &parsed)
            .is_ok());
        assert!(verify_now(&h, "secret"));
        assert!(!verify_now(&h, "Secret"));
        let theirs = {
            use argon2::PasswordHasher;
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            Argon2::default()
                .hash_password(b"pw", &salt)
                .unwrap()
                .to_string()
        };
        assert!(verify_now(&theirs, "pw"));
        assert!(!verify_now(&theirs, "px"));
    }

    #[test]
    fn crypt_hashes_and_locked_entries() {
        let sha512 = pwhash::sha512_crypt::hash("pw").unwrap();
        assert!(verify_now(&sha512, "pw"));
        assert!(!verify_now(&sha512, "px"));
        assert!(!verify_now("!locked", "pw"));
        assert!(!verify_now("", ""));
    }

    #[test]
    fn rehash_is_needed_for_other_parameters_and_crypt() {
        let policy = cheap();
        assert!(!policy.needs_rehash(&hash_now(&policy, "pw")));
        let stronger = HashPolicy {
            iterations: 2,
            ..policy
        };
        assert!(stronger.needs_rehash(&hash_now(&policy, "pw")));
        assert!(policy.needs_rehash(&pwhash::sha512_crypt::hash("pw").unwrap()));
    }

    #[test]
    fn a_hash_costlier_than_the_limit_is_refused() {
        let costly = HashPolicy {
            memory_kib: 256,
            ..cheap()
        };
        let h = hash_now(&costly, "pw");
        let mut ws = Workspace {
            blocks: vec![Block::default(); 64],
            max_kib: 128,
            max_iterations: 1,
        };
        assert!(!ws.verify(&h, "pw"));
        ws.max_kib = 256;
        assert!(ws.verify(&h, "pw"));
        // Passes too: a hash of t=3 is refused under a bound of 2.
        let slow = hash_now(
            &HashPolicy {
                iterations: 3,
                ..cheap()
            },
            "pw",
        );
        ws.max_iterations = 2;
        assert!(!ws.verify(&slow, "pw"));
        ws.max_iterations = 3;
        assert!(ws.verify(&slow, "pw"));
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_at_once() {
        // A queue of one that no worker drains.
        let (queue, _undrained) = sync_channel(1);
        let pool = HashPool {
            queue,
            policy: cheap(),
        };
        let (tx, _) = oneshot::channel();
        let filler = Job::Hash {
            password: "x".into(),
        };
        pool.queue.try_send((filler, tx)).ok().unwrap();
        assert_eq!(pool.verify("$argon2id$", "pw", false).await, Err(Busy));
        assert_eq!(pool.hash("pw").await, Err(Busy));
    }

    #[tokio::test]
    async fn workers_verify_rehash_and_hash() {
        let pool = HashPool::start(cheap(), 2, 8, 64, 1);
        let old = pwhash::sha512_crypt::hash("pw").unwrap();
        let Ok(Done::Verified(Some(new))) = pool.verify(&old, "pw", true).await else {
            panic!("crypt hash not verified and rehashed");
        };
        assert!(!cheap().needs_rehash(&new));
        assert_eq!(
            pool.verify(&new, "pw", false).await,
            Ok(Done::Verified(None))
        );
        assert_eq!(pool.verify(&new, "px", true).await, Ok(Done::Mismatch));
        let fresh = pool.hash("x").await.unwrap().unwrap();
        assert!(verify_now(&fresh, "x"));
    }
}
