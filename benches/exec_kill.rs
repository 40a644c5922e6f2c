//! Timeout enforcement: time from the wall deadline to every process of the job being dead, for
//! a tree of 200 `setsid`'d processes (each in its own session, so no process-group kill can
//! reach them). Goal: p99 <= 50 ms. The same-run baseline is the kill path alone (decision to
//! empty group), which shows how much is deadline wake-up latency.
//!
//! `cargo bench --bench exec_kill` (as root).
use std::time::Duration;

use hdrhistogram::Histogram;
use vigil_core::exec::host::CgroupMode;
use vigil_core::exec::job::{Executor, ExecutorConfig};
use vigil_core::exec::{Limits, ProcessSpec};
use vigil_core::model::JobStatus;

/// Processes in the tree.
const TREE_PROCESSES: u32 = 200;
/// Measured jobs per mode (each lasts the deadline).
const ITERATIONS: u32 = 30;
/// Deadline of each job: long enough for the tree to be fully started on a loaded 2-core host.
const DEADLINE_MS: u64 = 900;
/// Environment variable that sets a longer deadline where a 200-process tree takes longer than
/// DEADLINE_MS to start (the emulated VM of benches/exec_vm.rs).
const DEADLINE_ENV: &str = "VIGIL_BENCH_DEADLINE_MS";

fn main() {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: exec_kill needs root (cgroup leaves)");
        return;
    }
    let deadline_ms = std::env::var(DEADLINE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEADLINE_MS);
    let probe = Executor::new(ExecutorConfig::default()).expect("executor");
    let detected = probe.host().detected_mode;
    let mut modes = vec![(detected, ITERATIONS)];
    if detected == CgroupMode::Hybrid {
        modes.push((CgroupMode::V1, ITERATIONS));
    }
    modes.push((CgroupMode::None, ITERATIONS / 3));
    let cmd = format!("i=0; while [ $i -lt {TREE_PROCESSES} ]; do setsid sleep 1000 & i=$((i+1)); done; echo ready; wait");
    let spec = ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), cmd],
        ..ProcessSpec::default()
    };
    let limits = Limits {
        timeout: Some(Duration::from_millis(deadline_ms)),
        ..Limits::default()
    };
    println!(
        "exec_kill: {TREE_PROCESSES} setsid'd processes, deadline {deadline_ms} ms; cgroup placement {}",
        probe.host().placement.as_str()
    );
    for (mode, iterations) in modes {
        let ex = Executor::new(ExecutorConfig::with_mode(Some(mode))).expect("mode");
        let mut deadline_to_dead = Histogram::<u64>::new(3).expect("histogram");
        let mut kill_only = Histogram::<u64>::new(3).expect("histogram");
        let mut not_ready = 0;
        for i in 0..iterations {
            let r = ex.run_process(&format!("bench-kill-{i}"), &spec, &limits);
            assert_eq!(r.status, JobStatus::TimedOut, "{r:?}");
            if !r.stdout.bytes.starts_with(b"ready")
                || r.stragglers_killed < TREE_PROCESSES as usize
            {
                not_ready += 1;
                continue;
            }
            deadline_to_dead
                .record((r.deadline_to_dead_ms.unwrap_or(0.0) * 1000.0) as u64)
                .expect("record");
            kill_only
                .record((r.kill_ms.unwrap_or(0.0) * 1000.0) as u64)
                .expect("record");
        }
        let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "  {:<6} deadline->all dead  p50 {:>7.2} ms  p99 {:>7.2} ms  p999 {:>7.2} ms  (n={}, trees not fully started: {not_ready})",
            mode.as_str(),
            ms(&deadline_to_dead, 0.5),
            ms(&deadline_to_dead, 0.99),
            ms(&deadline_to_dead, 0.999),
            deadline_to_dead.len()
        );
        println!(
            "  {:<6} kill path only      p50 {:>7.2} ms  p99 {:>7.2} ms  ratio p99 total/kill {:.2}x",
            mode.as_str(),
            ms(&kill_only, 0.5),
            ms(&kill_only, 0.99),
            ms(&deadline_to_dead, 0.99) / ms(&kill_only, 0.99).max(0.001)
        );
    }
}
