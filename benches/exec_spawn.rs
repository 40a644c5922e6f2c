//! Isolated run of /bin/true (leaf create in every hierarchy, placement before exec, supervise,
//! account, kill check, remove) against a bare `std::process::Command` spawn + wait, in the same
//! run, interleaved so both see the same machine noise. Goal: p50 ratio <= 1.25.
//!
//! `cargo bench --bench exec_spawn` (as root for the cgroup modes).
use std::process::Command;
use std::time::Instant;

use hdrhistogram::Histogram;
use vigil_core::exec::host::CgroupMode;
use vigil_core::exec::job::{Executor, ExecutorConfig};
use vigil_core::exec::{Limits, ProcessSpec};
use vigil_core::model::JobStatus;

/// Measured iterations per side and mode.
const ITERATIONS: u32 = 400;
/// Unmeasured iterations first (page cache, dentries, lazy cgroup setup).
const WARMUP_ITERATIONS: u32 = 30;

fn pct(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:>6} us  p99 {:>6} us  p999 {:>6} us",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999)
    )
}

fn main() {
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let probe = Executor::new(ExecutorConfig::default()).expect("executor");
    let detected = probe.host().detected_mode;
    let mut modes = vec![detected];
    if detected == CgroupMode::Hybrid {
        modes.push(CgroupMode::V1);
    }
    if detected != CgroupMode::None {
        modes.push(CgroupMode::None);
    }
    if !root {
        eprintln!("note: not root; only mode none is measured");
        modes = vec![CgroupMode::None];
    }
    let spec = ProcessSpec {
        argv: vec!["/bin/true".into()],
        ..ProcessSpec::default()
    };
    let limits = Limits {
        pids: Some(64),
        memory_bytes: Some(256 << 20),
        ..Limits::default()
    };
    println!(
        "exec_spawn: /bin/true, {ITERATIONS} iterations per side, interleaved; cgroup placement {}",
        probe.host().placement.as_str()
    );
    for mode in modes {
        let ex = Executor::new(ExecutorConfig::with_mode(Some(mode))).expect("mode");
        let mut bare = Histogram::<u64>::new(3).expect("histogram");
        let mut isolated = Histogram::<u64>::new(3).expect("histogram");
        for i in 0..(WARMUP_ITERATIONS + ITERATIONS) {
            let t = Instant::now();
            let st = Command::new("/bin/true").status().expect("spawn");
            let bare_us = t.elapsed().as_micros() as u64;
            assert!(st.success());
            let t = Instant::now();
            let r = ex.run_process(&format!("bench-spawn-{i}"), &spec, &limits);
            let iso_us = t.elapsed().as_micros() as u64;
            assert_eq!(r.status, JobStatus::Completed, "{r:?}");
            if i >= WARMUP_ITERATIONS {
                bare.record(bare_us).expect("record");
                isolated.record(iso_us).expect("record");
            }
        }
        println!("  baseline std::process::Command       {}", pct(&bare));
        println!(
            "  vigil isolated ({:<6})              {}",
            mode.as_str(),
            pct(&isolated)
        );
        println!(
            "  ratio isolated/bare ({:<6})  p50 {:.2}x  p99 {:.2}x",
            mode.as_str(),
            isolated.value_at_quantile(0.5) as f64 / bare.value_at_quantile(0.5).max(1) as f64,
            isolated.value_at_quantile(0.99) as f64 / bare.value_at_quantile(0.99).max(1) as f64
        );
    }
}
