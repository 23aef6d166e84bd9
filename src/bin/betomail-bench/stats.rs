//! Latency percentiles shared by every benchmark.

use std::time::Duration;

/// The value below which `p` percent of the samples fall.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn report(label: &str, samples: &mut [Duration]) {
    samples.sort();
    println!(
        "{label}: n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        samples.len(),
        percentile(samples, 50.0).as_secs_f64() * 1e3,
        percentile(samples, 99.0).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}
