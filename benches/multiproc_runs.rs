//! 16 concurrent one-shot `vigil run exec /bin/true` processes on one data directory, against
//! the same 16 runs on 16 separate data directories, in the same run: jobs/s of each, the
//! per-run wall latency (p50/p99/p999), and the ratio. The rounds alternate between the two so
//! that load from elsewhere hits both alike. On one data directory the runs share one log: each
//! open recovers it under the append lock and every append batch takes it.
//!
//! `cargo bench --bench multiproc_runs` (`VIGIL_MULTIPROC_ROUNDS`, default 6).
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use hdrhistogram::Histogram;
use support::vigil_bin;

const PROCESSES: usize = 16;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).unwrap()
}

fn quantiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:>8.1} ms  p99 {:>8.1} ms  p999 {:>8.1} ms",
        h.value_at_quantile(0.5) as f64 / 1e6,
        h.value_at_quantile(0.99) as f64 / 1e6,
        h.value_at_quantile(0.999) as f64 / 1e6
    )
}

/// Starts the 16 runs at once, the i-th on `dirs[i % dirs.len()]`; waits for all. Returns the
/// round's wall time in seconds; records each run's wall time into `hist`.
fn round(bin: &Path, dirs: &[PathBuf], hist: &mut Histogram<u64>) -> f64 {
    let started = Instant::now();
    let children: Vec<(Instant, std::process::Child)> = (0..PROCESSES)
        .map(|i| {
            let child = Command::new(bin)
                .env("VIGIL_DATA_DIR", &dirs[i % dirs.len()])
                .args(["run", "exec", "--args", r#"{"argv":["/bin/true"]}"#])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn vigil run");
            (Instant::now(), child)
        })
        .collect();
    for (spawned, mut child) in children {
        let status = child.wait().expect("wait vigil run");
        assert!(status.success(), "a vigil run failed");
        hist.record(spawned.elapsed().as_nanos() as u64).unwrap();
    }
    started.elapsed().as_secs_f64()
}

fn main() {
    let rounds: usize = std::env::var("VIGIL_MULTIPROC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let bin = vigil_bin();
    let tmp = tempfile::tempdir().unwrap();
    let shared = vec![tmp.path().join("shared")];
    let separate: Vec<PathBuf> = (0..PROCESSES)
        .map(|i| tmp.path().join(format!("separate-{i}")))
        .collect();
    // Warm up: each data directory's log exists before anything is timed.
    let mut warm = histogram();
    round(&bin, &shared, &mut warm);
    round(&bin, &separate, &mut warm);

    let (mut one_hist, mut many_hist) = (histogram(), histogram());
    let (mut one_seconds, mut many_seconds) = (0.0, 0.0);
    for _ in 0..rounds {
        one_seconds += round(&bin, &shared, &mut one_hist);
        many_seconds += round(&bin, &separate, &mut many_hist);
    }
    let jobs = (rounds * PROCESSES) as f64;
    let (one_rate, many_rate) = (jobs / one_seconds, jobs / many_seconds);
    println!(
        "## {PROCESSES} concurrent one-shot `vigil run exec /bin/true`, {rounds} rounds each, alternating"
    );
    println!(
        "  one data dir      {one_rate:>8.1} jobs/s   per run {}",
        quantiles(&one_hist)
    );
    println!(
        "  {PROCESSES} data dirs      {many_rate:>8.1} jobs/s   per run {}",
        quantiles(&many_hist)
    );
    println!("  ratio one/separate {:.2}", one_rate / many_rate);
}
