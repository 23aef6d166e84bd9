//! The bare password hash rate of this machine: `--threads` threads each
//! hash with one reused buffer, as the server's hash workers do, for
//! `--duration`. The ceiling for first logins per second.

use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// argon2id memory in KiB (the server's `[auth] argon2_memory_kib`).
    #[arg(long, default_value_t = Params::DEFAULT_M_COST)]
    memory_kib: u32,
    #[arg(long, default_value_t = Params::DEFAULT_T_COST)]
    iterations: u32,
    #[arg(long, default_value_t = Params::DEFAULT_P_COST)]
    parallelism: u32,
    /// Default: one per core, as the server's hash workers.
    #[arg(long)]
    threads: Option<usize>,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let params = Params::new(a.memory_kib, a.iterations, a.parallelism, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
                let mut memory = vec![Block::default(); params.block_count()];
                let mut out = [0u8; 32];
                while start.elapsed() < a.duration {
                    argon2
                        .hash_password_into_with_memory(
                            b"password",
                            b"saltsalt",
                            &mut out,
                            &mut memory,
                        )
                        .expect("valid parameters");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    println!(
        "argon2id m={} t={} p={}: {n} hashes on {threads} threads in {secs:.1}s = {:.1} hashes/s ({:.1} ms of a core each)",
        a.memory_kib,
        a.iterations,
        a.parallelism,
        n as f64 / secs,
        secs * threads as f64 * 1000.0 / n.max(1) as f64
    );
    Ok(())
}
