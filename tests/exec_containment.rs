//! Double-fork and setsid containment holds every time, not most of the time: the escape runs
//! 50 times in every cgroup mode this host provides, while busy-looping processes keep every
//! CPU loaded, and not one process of any run survives it.
mod exec_support;

use std::process::{Child, Command};

use exec_support::*;
use vigil_core::exec::host::CgroupMode;
use vigil_core::model::JobStatus;

/// Runs of the escape per mode.
const RUNS: usize = 50;
/// A double fork, a triple fork whose middle processes exit at once, a setsid orphan, and a
/// burst of ten double forks still under way when the root exits (so the kill runs while the
/// job's processes are forking and dying).
const ESCAPE: &str =
    "(sh -c 'sleep 300 &' &); (sh -c \"(sh -c 'sleep 300 &' &)\" &); (setsid sleep 300 &); \
     for i in 1 2 3 4 5 6 7 8 9 10; do (sh -c 'sleep 300 & sleep 300 &' &); done; echo started";

/// One busy-looping process per CPU, killed when dropped.
struct CpuHog(Vec<Child>);

impl CpuHog {
    fn start() -> CpuHog {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        CpuHog(
            (0..cpus)
                .map(|_| {
                    Command::new("/bin/sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("start a CPU hog")
                })
                .collect(),
        )
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn modes_here() -> Vec<CgroupMode> {
    let mut ms = modes();
    if ms.is_empty() {
        // Without root only mode none is available; it is the one that needs this most.
        ms.push(CgroupMode::None);
    }
    ms
}

#[test]
fn double_fork_and_setsid_escapes_never_survive_under_a_cpu_hog() {
    let _hog = CpuHog::start();
    for mode in modes_here() {
        let ex = executor(mode);
        for i in 0..RUNS {
            let id = format!("{}-{i}", job_id("contain", mode));
            let r = ex.run_process(&id, &sh(ESCAPE), &limits(10_000));
            assert_eq!(r.status, JobStatus::Completed, "{mode:?} run {i}: {r:?}");
            assert_eq!(r.stdout.bytes, b"started\n", "{mode:?} run {i}");
            assert_nothing_left(&r, &format!("double fork ({mode:?}, run {i})"));
        }
    }
}
