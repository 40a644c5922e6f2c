//! Finding a job's processes without a cgroup (mode `none`) by scanning /proc, killing them,
//! and reaping the zombies of finished jobs handed to vigil as child subreaper.
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::time::{Duration, Instant};

use super::cgroup::KILL_WAIT_MS_MAX;
use super::proctable::{all_pids, own_children, own_orphans, proc_stat};
use super::spawn::{self, JOB_MARKER_ENV};
use crate::procfs::PidStat;

/// Longest /proc/PID/environ read when looking for the job marker (mode none).
const ENVIRON_BYTES_MAX: u64 = 256 << 10;
/// Longest wait for killed processes' zombies to be handed to vigil (subreaper) and reaped. The
/// wait ends as soon as none is on its way; under load the handover can take a while, and a
/// zombie left behind would be one nobody reaps.
const ORPHAN_REAP_MS_MAX: u64 = 2_000;

/// Now, in the clock ticks after boot that /proc/PID/stat's starttime uses (rounded down, so a
/// process started after this call never has a smaller start time).
pub(super) fn boot_ticks_now() -> u64 {
    // SAFETY: out-parameter of the right type; sysconf has no preconditions.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    // SAFETY: clock_gettime writes into a timespec out-parameter of the right type.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64 * hz + ts.tv_nsec as u64 * hz / 1_000_000_000).saturating_sub(1)
}

/// True when /proc/PID/environ holds `needle` as a whole entry.
fn environ_has(pid: i32, needle: &[u8]) -> bool {
    let Ok(f) = fs::File::open(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mut buf = Vec::new();
    if f.take(ENVIRON_BYTES_MAX).read_to_end(&mut buf).is_err() {
        return false;
    }
    buf.split(|&b| b == 0).any(|entry| entry == needle)
}

/// Live (non-zombie) processes of a job in mode `none`: the session and process group of its
/// `root` (when it has one here), anything carrying its marker variable, and every descendant
/// of those. Only processes started at or after `since_ticks` (the job's start) can be the
/// job's, which keeps the environment reads to the few processes that are new.
fn untracked_job_processes(root: Option<i32>, job_id: &str, since_ticks: u64) -> Vec<i32> {
    // Never 0 or 1 (no process, or init): a root is a real child of vigil.
    let root = root.filter(|&r| r > 1);
    let marker = format!("{JOB_MARKER_ENV}={job_id}").into_bytes();
    let me = std::process::id() as i32;
    let candidate = |p: i32| {
        proc_stat(p)
            .filter(|st| p != me && !st.is_dead() && st.start_ticks >= since_ticks)
            .map(|st| (p, st))
    };
    let listed = all_pids();
    let mut table: Vec<(i32, PidStat)> = listed.iter().filter_map(|&p| candidate(p)).collect();
    // The listing is not a snapshot: a job process listed alive may fork and die before its
    // stat is read, and its child, created after the listing, is then in neither. Such a child
    // is an orphan, and vigil is the subreaper: every orphan is vigil's child from the moment
    // its parent exits. Reading vigil's orphans after every stat closes the gap, so a scan
    // that finds nothing means the job has no live process left (while vigil is subreaper).
    for kid in own_orphans() {
        if !listed.contains(&kid) {
            table.extend(candidate(kid));
        }
    }
    let mut set: BTreeSet<i32> = table
        .iter()
        .filter(|(p, st)| {
            let ours = root.is_some_and(|r| *p == r || st.pgrp == r || st.session == r);
            ours || environ_has(*p, &marker)
        })
        .map(|t| t.0)
        .collect();
    loop {
        let before = set.len();
        for (p, st) in &table {
            if set.contains(&st.ppid) {
                set.insert(*p);
            }
        }
        if set.len() == before {
            break;
        }
    }
    set.into_iter().collect()
}

/// Mode `none`: kill the job's processes in rounds until none is found alive.
pub(super) fn kill_untracked(root: Option<i32>, job_id: &str, since_ticks: u64) -> Vec<i32> {
    let root = root.filter(|&r| r > 1);
    let until = Instant::now() + Duration::from_millis(KILL_WAIT_MS_MAX);
    let mut seen = Vec::new();
    loop {
        let found = untracked_job_processes(root, job_id, since_ticks);
        if found.is_empty() || Instant::now() >= until {
            return seen;
        }
        // A negative pid names the group; never -1 or 0 (every process, or our own group).
        if let Some(r) = root {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-r, libc::SIGKILL) };
        }
        for p in found {
            // SAFETY: as above.
            unsafe { libc::kill(p, libc::SIGKILL) };
            if !seen.contains(&p) {
                seen.push(p);
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Reaps zombies of a finished job that were handed to vigil as subreaper: children of vigil that
/// are not a running job's root and belong to the job's session or were members of its group.
pub(super) fn reap_job_orphans(root: i32, members: &[i32]) {
    let until = Instant::now() + Duration::from_millis(ORPHAN_REAP_MS_MAX);
    loop {
        let roots = spawn::LIVE_ROOTS.lock().unwrap_or_else(|p| p.into_inner());
        let mut pending = false;
        for kid in own_children() {
            if roots.contains(&kid) {
                continue;
            }
            let Some(st) = proc_stat(kid) else {
                continue;
            };
            if members.contains(&kid) || st.session == root || members.contains(&st.session) {
                if st.state == b'Z' {
                    let mut st = 0;
                    // SAFETY: waitpid on our own zombie child.
                    unsafe { libc::waitpid(kid, &mut st, libc::WNOHANG) };
                } else {
                    pending = true;
                }
            }
        }
        drop(roots);
        // Killed members whose parents have not been reaped yet will be handed to us shortly.
        let in_flight = members.iter().any(|&m| {
            proc_stat(m).is_some_and(|st| st.state != b'Z' || st.ppid != std::process::id() as i32)
        });
        if !(pending || in_flight) || Instant::now() >= until {
            return;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Kills what is left of a job whose vigil instance died: its processes that no cgroup holds,
/// found by the job's marker variable (in rounds, so one that forks meanwhile is found too);
/// returns their pids. A process that cleared its environment cannot be found this way.
pub(super) fn kill_orphans(job_id: &str) -> Vec<i32> {
    kill_untracked(None, job_id, 0)
}
