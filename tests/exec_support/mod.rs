//! Shared helpers of the executor tests: executors per forced cgroup mode, and the checks that a
//! job left nothing behind (no live process carrying its marker, no zombie of its session, no
//! cgroup leaf).
#![allow(dead_code)]
use std::path::PathBuf;
use std::time::{Duration, Instant};

use vigil_core::exec::host::{CgroupMode, HostConfig};
use vigil_core::exec::job::{Executor, ExecutorConfig, JobResult};
use vigil_core::exec::spawn::JOB_MARKER_ENV;
use vigil_core::exec::{Limits, ProcessSpec};

/// Parent group used by the tests: the real one (leaf names carry the owner, so a running vigil
/// and the tests never touch each other's leaves).
pub const TEST_PARENT_GROUP: &str = "vigil";

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Every mode this host can provide, best first. Prints why when none can be tested.
pub fn modes() -> Vec<CgroupMode> {
    if !is_root() {
        eprintln!("skipped: not root (cgroup leaves need root or delegation)");
        return Vec::new();
    }
    let probe = Executor::new(config(None)).expect("detect host");
    let detected = probe.host().detected_mode;
    let mut out = vec![detected];
    if detected == CgroupMode::Hybrid {
        out.push(CgroupMode::V1);
    }
    if detected != CgroupMode::None {
        out.push(CgroupMode::None);
    }
    if detected != CgroupMode::V2 {
        eprintln!("note: pure cgroup v2 with controllers is not available on this host; its code path shares the unified-hierarchy code tested in hybrid mode");
    }
    out
}

pub fn config(mode: Option<CgroupMode>) -> ExecutorConfig {
    ExecutorConfig {
        host: HostConfig {
            force_mode: mode,
            parent_group_name: TEST_PARENT_GROUP.into(),
            ..HostConfig::default()
        },
        subreaper: true,
        ..ExecutorConfig::default()
    }
}

pub fn executor(mode: CgroupMode) -> Executor {
    Executor::new(config(Some(mode))).expect("forced mode must be available")
}

pub fn sh(cmd: &str) -> ProcessSpec {
    ProcessSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        ..ProcessSpec::default()
    }
}

pub fn limits(timeout_ms: u64) -> Limits {
    Limits {
        timeout: Some(Duration::from_millis(timeout_ms)),
        max_output_bytes: 64 << 10,
        ..Limits::default()
    }
}

pub fn job_id(test: &str, mode: CgroupMode) -> String {
    format!("t-{test}-{}-{}", mode.as_str(), std::process::id())
}

/// Live processes whose environment holds the job marker.
pub fn marked_processes(job_id: &str) -> Vec<i32> {
    let needle = format!("{JOB_MARKER_ENV}={job_id}").into_bytes();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) {
            if env.split(|&b| b == 0).any(|x| x == needle) {
                out.push(pid);
            }
        }
    }
    out
}

/// (pid, ppid, session) of zombies whose session is `session`.
pub fn zombies_of_session(session: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if f.len() > 3 && f[0] == "Z" && f[3].parse::<i32>().ok() == Some(session) {
            out.push(pid);
        }
    }
    out
}

/// Leaf directories of the job still present in any test parent group.
pub fn leftover_leaves(job_id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for parent in parent_dirs() {
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            if e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&format!("{job_id}.")))
            {
                out.push(e.path());
            }
        }
    }
    out
}

fn parent_dirs() -> Vec<PathBuf> {
    let h = executor_host_dirs();
    h.into_iter().collect()
}

fn executor_host_dirs() -> Vec<PathBuf> {
    let Ok(ex) = Executor::new(config(None)) else {
        return Vec::new();
    };
    let h = ex.host();
    h.unified_parent
        .iter()
        .cloned()
        .chain(h.v1.present().map(|(_, p)| p.to_path_buf()))
        .collect()
}

/// Asserts that the job left no live process, no zombie of its session and no cgroup leaf.
/// Killed processes may take a moment to be reaped: poll for a bounded time.
pub fn assert_nothing_left(r: &JobResult, what: &str) {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let live = marked_processes(&r.job_id);
        let zombies = r.root_pid.map(zombies_of_session).unwrap_or_default();
        let leaves = leftover_leaves(&r.job_id);
        if live.is_empty() && zombies.is_empty() && leaves.is_empty() {
            return;
        }
        if Instant::now() >= until {
            panic!("{what}: left behind: live {live:?}, zombies {zombies:?}, leaves {leaves:?}; result {r:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
