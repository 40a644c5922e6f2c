//! Mode `none`: what a job's processes use, measured by vigil since no cgroup counts it.
//!
//! Every sample walks the job's process tree from its root (and from the job's orphans that
//! were handed to vigil as subreaper), reads each process's CPU clock (the kernel's exact
//! per-process CPU time, one `clock_gettime`) and its VmHWM and VmRSS from /proc/PID/status.
//! The job's CPU time is the sum of the last value seen of every process it ever had; its peak
//! memory is the larger of the biggest VmHWM (the kernel's own high-water mark of one process)
//! and the biggest sum of VmRSS seen at once. Both are lower bounds: a process that lives and
//! dies between two samples, or that leaves the job's session and is orphaned, is not seen.
//!
//! rusage alone cannot stand in for this: the job's root is created from vigil's own address
//! space, and the kernel carries that address space's high-water mark into the child's
//! `ru_maxrss` across exec, so it reports at least vigil's peak. It is the job's own only when
//! it exceeds vigil's own ru_maxrss read after the spawn (at least what the child carried):
//! then it is exact for the root and the descendants it waited for, and is used. A job too
//! short to be sampled and smaller than vigil has no peak measured (`None`, never vigil's).
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;

use super::proctable::{own_orphans, proc_stat};

/// Largest pid Linux hands out (PID_MAX_LIMIT): beyond it, a pid cannot name a CPU clock.
const PID_MAX: i32 = 4 << 20;
/// Processes one sample visits at most (a fork bomb cannot make a sample unbounded).
const PROCESSES_PER_SAMPLE_MAX: usize = 4_096;
/// Longest /proc/PID/status read.
const STATUS_BYTES_MAX: u64 = 8 << 10;

/// Usage of one job's processes in mode `none`.
#[derive(Debug)]
pub(crate) struct ProcessMeter {
    root: i32,
    /// Processes alive at the last sample, by (pid, start ticks): CPU time when last seen, ns.
    live_cpu_ns: BTreeMap<(i32, u64), u64>,
    /// CPU time of processes seen before and gone since (their last value), ns. Keeping only a
    /// sum keeps each sample's work to the processes alive, however many the job ran.
    retired_cpu_ns: u64,
    peak_hwm_bytes: u64,
    peak_rss_sum_bytes: u64,
    /// At least one process's memory was read.
    memory_seen: bool,
    /// vigil's own ru_maxrss once the root was created: at least what rusage may have carried
    /// over into the root's.
    spawner_high_water_bytes: Option<u64>,
}

/// The kernel's CPU clock of a whole process (every thread), in ns.
fn process_cpu_ns(pid: i32) -> Option<u64> {
    // Pid 0 would name this process's own clock, and a pid past PID_MAX would not fit.
    if !(1..=PID_MAX).contains(&pid) {
        return None;
    }
    // MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) of linux/posix-timers.h: exact run time.
    let clock = ((!pid) << 3) | 2;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a clock id and an out-parameter of the right type.
    if unsafe { libc::clock_gettime(clock as libc::clockid_t, &mut ts) } != 0 {
        return None;
    }
    Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// VmHWM and VmRSS of a live process, in bytes (a zombie has neither).
fn memory_of(pid: i32) -> Option<(u64, u64)> {
    let mut text = String::new();
    fs::File::open(format!("/proc/{pid}/status"))
        .ok()?
        .take(STATUS_BYTES_MAX)
        .read_to_string(&mut text)
        .ok()?;
    let kib = |key: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        let n = line[key.len()..].trim().strip_suffix("kB")?.trim();
        n.parse::<u64>().ok().map(|k| k.saturating_mul(1024))
    };
    Some((kib("VmHWM:")?, kib("VmRSS:")?))
}

/// vigil's own ru_maxrss (RUSAGE_SELF): at least the high-water mark of its address space,
/// which is what a child created from it carries into its own ru_maxrss across exec.
fn own_max_rss_bytes() -> Option<u64> {
    // SAFETY: an out-parameter of the right type.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into a rusage out-parameter of the right type.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return None;
    }
    Some((ru.ru_maxrss as u64).saturating_mul(1024))
}

/// Children of `pid` (all its threads').
fn children_of(pid: i32, out: &mut Vec<i32>) {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
}

impl ProcessMeter {
    /// A meter for the job whose root process `root` was just created (after its exec).
    pub(crate) fn new(root: i32) -> ProcessMeter {
        ProcessMeter {
            root,
            live_cpu_ns: BTreeMap::new(),
            retired_cpu_ns: 0,
            peak_hwm_bytes: 0,
            peak_rss_sum_bytes: 0,
            memory_seen: false,
            spawner_high_water_bytes: own_max_rss_bytes(),
        }
    }

    /// Walks the job's processes once and folds what they use into the totals.
    pub(crate) fn sample(&mut self) {
        let mut queue: Vec<i32> = vec![self.root];
        // Processes seen before stay the job's (an orphan handed to vigil keeps its pid and
        // start time); so do orphans handed to vigil from the job's session or process group.
        queue.extend(self.live_cpu_ns.keys().map(|&(p, _)| p));
        for kid in own_orphans() {
            if proc_stat(kid).is_some_and(|st| st.session == self.root || st.pgrp == self.root) {
                queue.push(kid);
            }
        }
        let mut visited = BTreeSet::new();
        let mut now_live: BTreeMap<(i32, u64), u64> = BTreeMap::new();
        let mut rss_sum = 0u64;
        while let Some(pid) = queue.pop() {
            if visited.len() >= PROCESSES_PER_SAMPLE_MAX || !visited.insert(pid) {
                continue;
            }
            let Some(st) = proc_stat(pid) else { continue };
            if st.is_dead() {
                continue;
            }
            let key = (pid, st.start_ticks);
            let before = self.live_cpu_ns.get(&key).copied().unwrap_or(0);
            now_live.insert(key, process_cpu_ns(pid).unwrap_or(0).max(before));
            if let Some((hwm, rss)) = memory_of(pid) {
                self.memory_seen = true;
                self.peak_hwm_bytes = self.peak_hwm_bytes.max(hwm);
                rss_sum = rss_sum.saturating_add(rss);
            }
            children_of(pid, &mut queue);
        }
        self.peak_rss_sum_bytes = self.peak_rss_sum_bytes.max(rss_sum);
        // Processes alive last time and not now have ended: keep what they used. When the
        // walk stopped at its bound, one not visited may still be alive: keep it as it was.
        let complete = visited.len() < PROCESSES_PER_SAMPLE_MAX;
        for (key, ns) in std::mem::take(&mut self.live_cpu_ns) {
            if now_live.contains_key(&key) {
                continue;
            }
            if complete {
                self.retired_cpu_ns = self.retired_cpu_ns.saturating_add(ns);
            } else {
                now_live.insert(key, ns);
            }
        }
        self.live_cpu_ns = now_live;
    }

    /// CPU time of every process seen, µs.
    pub(crate) fn cpu_us(&self) -> u64 {
        self.live_cpu_ns
            .values()
            .fold(self.retired_cpu_ns, |a, &ns| a.saturating_add(ns))
            / 1_000
    }

    /// Peak memory of the job: what the samples saw, and the root's `ru_maxrss` where it is
    /// provably the job's own (above vigil's high-water mark). `None` when neither is known.
    pub(crate) fn memory_peak_bytes(&self, root_max_rss_bytes: Option<u64>) -> Option<u64> {
        let sampled = self
            .memory_seen
            .then(|| self.peak_hwm_bytes.max(self.peak_rss_sum_bytes));
        let rusage = root_max_rss_bytes
            .filter(|&r| self.spawner_high_water_bytes.is_some_and(|own| r > own));
        sampled.max(rusage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_clock_and_memory_are_readable_and_plausible() {
        let me = std::process::id() as i32;
        let a = process_cpu_ns(me).expect("own CPU clock");
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let b = process_cpu_ns(me).expect("own CPU clock");
        assert!(
            b > a,
            "the CPU clock must advance while spinning: {a} -> {b}"
        );
        let (hwm, rss) = memory_of(me).expect("own status");
        assert!(hwm >= rss && rss > 0, "VmHWM {hwm} VmRSS {rss}");
    }

    #[test]
    fn a_process_that_ended_keeps_its_cpu_time_and_is_no_longer_walked() {
        let mut child = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("spawn");
        let pid = child.id() as i32;
        let mut m = ProcessMeter::new(pid);
        // Wait until the loop has burnt measurable CPU (the sleep follows it).
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while m.cpu_us() < 20_000 && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(20));
            m.sample();
        }
        let seen = m.cpu_us();
        assert!(seen >= 20_000, "the loop's CPU was measured: {seen} us");
        assert!(m.memory_peak_bytes(None).is_some());
        child.kill().expect("kill");
        child.wait().expect("reap");
        m.sample();
        assert!(m.live_cpu_ns.is_empty(), "{:?}", m.live_cpu_ns);
        assert!(m.cpu_us() >= seen, "{} < {seen}", m.cpu_us());
    }

    #[test]
    fn rusage_counts_only_above_the_spawners_high_water_mark() {
        let mut m = ProcessMeter::new(i32::MAX);
        m.spawner_high_water_bytes = Some(100 << 20);
        assert_eq!(m.memory_peak_bytes(None), None);
        assert_eq!(m.memory_peak_bytes(Some(100 << 20)), None, "may be vigil's");
        assert_eq!(m.memory_peak_bytes(Some(300 << 20)), Some(300 << 20));
        m.memory_seen = true;
        m.peak_hwm_bytes = 2 << 20;
        m.peak_rss_sum_bytes = 3 << 20;
        assert_eq!(m.memory_peak_bytes(Some(100 << 20)), Some(3 << 20));
        m.spawner_high_water_bytes = None;
        assert_eq!(m.memory_peak_bytes(Some(300 << 20)), Some(3 << 20));
    }

    #[test]
    fn a_vanished_process_or_an_impossible_pid_reads_as_nothing() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id() as i32;
        child.wait().expect("reap");
        assert_eq!(process_cpu_ns(pid), None);
        assert_eq!(memory_of(pid), None);
        for bad in [0, -1, i32::MAX, i32::MIN] {
            assert_eq!(process_cpu_ns(bad), None, "pid {bad}");
        }
    }
}
