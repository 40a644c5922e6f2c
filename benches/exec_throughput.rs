//! Jobs per second with 8 concurrent short jobs (`/bin/sh -c 'echo ok'`), against the same
//! workload run with bare `std::process::Command` from 8 threads, in the same run.
//!
//! `cargo bench --bench exec_throughput` (as root for the cgroup modes).
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vigil_core::exec::host::CgroupMode;
use vigil_core::exec::job::{Executor, ExecutorConfig};
use vigil_core::exec::{Limits, ProcessSpec};
use vigil_core::model::JobStatus;

/// Concurrent jobs.
const CONCURRENCY: usize = 8;
/// How long each side runs.
const RUN_DURATION_MS: u64 = 3_000;

fn bare_rate() -> f64 {
    let done = AtomicU64::new(0);
    let until = Instant::now() + Duration::from_millis(RUN_DURATION_MS);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY {
            s.spawn(|| {
                while Instant::now() < until {
                    let out = Command::new("/bin/sh")
                        .args(["-c", "echo ok"])
                        .output()
                        .expect("spawn");
                    assert!(out.status.success());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

fn vigil_rate(ex: &Executor, tag: &str) -> f64 {
    let done = AtomicU64::new(0);
    let spec = ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), "echo ok".into()],
        ..ProcessSpec::default()
    };
    let limits = Limits {
        timeout: Some(Duration::from_secs(10)),
        pids: Some(64),
        memory_bytes: Some(256 << 20),
        ..Limits::default()
    };
    let until = Instant::now() + Duration::from_millis(RUN_DURATION_MS);
    let t = Instant::now();
    std::thread::scope(|s| {
        for w in 0..CONCURRENCY {
            let (done, spec, limits) = (&done, &spec, &limits);
            s.spawn(move || {
                let mut i = 0u64;
                while Instant::now() < until {
                    let r = ex.run_process(&format!("bench-tp-{tag}-{w}-{i}"), spec, limits);
                    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
                    assert_eq!(r.stdout.bytes, b"ok\n");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64()
}

fn main() {
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let detected = Executor::new(ExecutorConfig::default())
        .expect("executor")
        .host()
        .detected_mode;
    let mut modes = if root {
        vec![detected]
    } else {
        vec![CgroupMode::None]
    };
    if root && detected == CgroupMode::Hybrid {
        modes.push(CgroupMode::V1);
    }
    println!("exec_throughput: {CONCURRENCY} concurrent `sh -c 'echo ok'` jobs, {RUN_DURATION_MS} ms per side");
    for mode in modes {
        let ex = Executor::new(ExecutorConfig::with_mode(Some(mode))).expect("mode");
        let bare = bare_rate();
        let iso = vigil_rate(&ex, mode.as_str());
        println!("  baseline std::process::Command  {bare:>8.0} jobs/s");
        println!(
            "  vigil isolated ({:<6})         {iso:>8.0} jobs/s   ratio vigil/bare {:.2}x",
            mode.as_str(),
            iso / bare.max(1e-9)
        );
    }
}
