//! The sandbox's cost: isolated /bin/true with sandbox `off`, `workspace` and `strict`, and a
//! bare `std::process::Command` spawn + wait, interleaved in one run so every side sees the same
//! machine noise. Goal: `workspace` and `strict` add at most 5% to the p50 of `off`.
//!
//! `cargo bench --bench exec_sandbox` (as root for the cgroup mode; `none` otherwise).
use std::process::Command;
use std::time::Instant;

use hdrhistogram::Histogram;
use vigil_core::exec::host::{CgroupMode, HostConfig};
use vigil_core::exec::job::{Executor, ExecutorConfig};
use vigil_core::exec::sandbox::{kernel_abi, SandboxConfig, SandboxMode};
use vigil_core::exec::{Limits, ProcessSpec};
use vigil_core::model::JobStatus;

/// Measured iterations per side.
const ITERATIONS: u32 = 400;
/// Unmeasured iterations first (page cache, dentries, lazy setup).
const WARMUP_ITERATIONS: u32 = 30;

fn pct(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:>6} us  p99 {:>6} us  p999 {:>6} us",
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999)
    )
}

fn ratio(a: &Histogram<u64>, b: &Histogram<u64>, q: f64) -> f64 {
    a.value_at_quantile(q) as f64 / b.value_at_quantile(q).max(1) as f64
}

fn main() {
    if kernel_abi() < 1 {
        println!("exec_sandbox: this kernel has no Landlock; nothing to measure");
        return;
    }
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // The data dir where vigil's default one is, beneath the home directory: the read rules are
    // rebuilt whenever a directory on the way to a denied path changes, and /tmp on a busy
    // machine changes all the time (a data dir there pays for listing it on most jobs).
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let data = match &home {
        Some(h) => tempfile::tempdir_in(h).expect("data dir"),
        None => tempfile::tempdir().expect("data dir"),
    };
    let job_root = tempfile::tempdir().expect("job root");
    let mode = if root { None } else { Some(CgroupMode::None) };
    let ex = Executor::new(ExecutorConfig {
        host: HostConfig {
            force_mode: mode,
            ..HostConfig::default()
        },
        sandbox: SandboxConfig {
            data_dir: Some(data.path().to_path_buf()),
            ..SandboxConfig::default()
        },
        ..ExecutorConfig::default()
    })
    .expect("executor");
    let spec = ProcessSpec {
        argv: vec!["/bin/true".into()],
        cwd: Some(job_root.path().to_path_buf()),
        ..ProcessSpec::default()
    };
    let limits = |m: SandboxMode| {
        let mut l = Limits {
            pids: Some(64),
            memory_bytes: Some(256 << 20),
            ..Limits::default()
        };
        l.sandbox.mode = Some(m);
        l
    };
    let sides = [
        ("off", limits(SandboxMode::Off)),
        ("workspace", limits(SandboxMode::Workspace)),
        ("strict", limits(SandboxMode::Strict)),
    ];
    println!(
        "exec_sandbox: /bin/true, {ITERATIONS} iterations per side, interleaved; cgroup mode {}, Landlock ABI {}",
        ex.host().mode.as_str(),
        kernel_abi()
    );
    let mut bare = Histogram::<u64>::new(3).expect("histogram");
    let mut hists: Vec<Histogram<u64>> = (0..sides.len())
        .map(|_| Histogram::new(3).expect("histogram"))
        .collect();
    for i in 0..(WARMUP_ITERATIONS + ITERATIONS) {
        let t = Instant::now();
        let st = Command::new("/bin/true").status().expect("spawn");
        let bare_us = t.elapsed().as_micros() as u64;
        assert!(st.success());
        if i >= WARMUP_ITERATIONS {
            bare.record(bare_us).expect("record");
        }
        // Rotate the order so no side always runs right after the bare spawn.
        for k in 0..sides.len() {
            let s = (k + i as usize) % sides.len();
            let (name, l) = &sides[s];
            let t = Instant::now();
            let r = ex.run_process_in(
                &format!("bench-sbx-{name}-{i}"),
                &spec,
                l,
                Some(job_root.path()),
                None,
            );
            let us = t.elapsed().as_micros() as u64;
            assert_eq!(r.status, JobStatus::Completed, "{name}: {r:?}");
            if i >= WARMUP_ITERATIONS {
                hists[s].record(us).expect("record");
            }
        }
    }
    println!("  baseline std::process::Command   {}", pct(&bare));
    for (s, (name, _)) in sides.iter().enumerate() {
        println!("  vigil isolated, sandbox {name:<9} {}", pct(&hists[s]));
    }
    for s in 1..sides.len() {
        println!(
            "  ratio {}/off  p50 {:.3}x  p99 {:.3}x  p999 {:.3}x",
            sides[s].0,
            ratio(&hists[s], &hists[0], 0.5),
            ratio(&hists[s], &hists[0], 0.99),
            ratio(&hists[s], &hists[0], 0.999)
        );
    }
    for (s, (name, _)) in sides.iter().enumerate() {
        println!(
            "  ratio {name}/bare  p50 {:.2}x  p99 {:.2}x",
            ratio(&hists[s], &bare, 0.5),
            ratio(&hists[s], &bare, 0.99)
        );
    }
}
