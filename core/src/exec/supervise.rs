//! Supervision of one process job: start it in its leaf, feed stdin, drain stdout and stderr
//! concurrently into capped buffers, wait for the root with a monotonic deadline (ppoll with a
//! nanosecond timeout on a pidfd, never a coarse poll loop), watch the CPU budget, then kill what
//! is left of the group, wait until it is empty, account and remove it.
//!
//! A job ends when its group is empty, not when a pipe closes: once the root process exits (or a
//! limit fires) every process left in the group is killed, so a grandchild that kept the output
//! pipe open cannot hold the job. In mode `none` the group is approximated by the root's session
//! and process group, descendants, and processes carrying the job's marker variable, and vigil
//! measures the job's CPU and memory itself (`meter`).
//!
//! Each limit is labelled by who holds it ([`Strength`]): the kernel (cgroup limits), the kernel
//! per process (RLIMITs), or this supervisor while vigil lives (deadline, CPU budget, output).
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::cancel::CancelToken;
use super::cgroup::{self, CgroupLeaf};
use super::enforcement::{CPU_POLL_INTERVAL_MS, NONE_SAMPLE_INTERVAL_MS};
use super::meter::ProcessMeter;
use super::pipes::Pipes;
use super::reaper::{kill_untracked, reap_job_orphans};
use super::result::JobResult;
use super::spawn::{self, SpawnedChild};
use super::text::size_text;
use super::{ExecError, Limits};
use crate::model::JobStatus;

/// Shortest wait between CPU-budget checks as the budget runs out.
const CPU_POLL_INTERVAL_MS_MIN: u64 = 1;
/// Wake-up interval when the kernel has no pidfd to wait on.
const NO_PIDFD_POLL_INTERVAL_MS: u64 = 5;

/// How the root process ended, with its rusage (the root and the descendants it waited for).
#[derive(Debug, Clone, Copy, Default)]
struct RootExit {
    exit_code: Option<i32>,
    signal: Option<i32>,
    /// User + system CPU time from rusage.
    cpu_us: Option<u64>,
    /// rusage ru_maxrss: the largest resident set of the root or a waited-for descendant —
    /// but at least the high-water mark of the address space the root was created from
    /// (vigil's), which the kernel carries across exec. See `meter`.
    max_rss_bytes: Option<u64>,
}

/// Reap of our child `pid` (blocking or not) with wait4: `Some` once it has ended.
fn try_reap(pid: i32, block: bool) -> Option<RootExit> {
    let mut status = 0;
    loop {
        // SAFETY: wait4 on our own child with valid out-parameters.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on the job's own child pid, with status and rusage out-parameters of the
        // right type.
        let rc = unsafe {
            libc::wait4(
                pid,
                &mut status,
                if block { 0 } else { libc::WNOHANG },
                &mut ru,
            )
        };
        if rc == pid {
            let tv_us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
            let mut exit = RootExit {
                cpu_us: Some(tv_us(ru.ru_utime) + tv_us(ru.ru_stime)),
                max_rss_bytes: Some((ru.ru_maxrss as u64).saturating_mul(1024)),
                ..RootExit::default()
            };
            if libc::WIFEXITED(status) {
                exit.exit_code = Some(libc::WEXITSTATUS(status));
            } else if libc::WIFSIGNALED(status) {
                exit.signal = Some(libc::WTERMSIG(status));
            }
            return Some(exit);
        }
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if rc < 0 {
            // ECHILD: someone else reaped it; the status is lost.
            return Some(RootExit::default());
        }
        return None;
    }
}

/// A started job as the supervisor receives it.
pub(super) struct StartedJob<'a> {
    pub(super) job_id: &'a str,
    /// Clock ticks after boot just before the spawn: no process of the job started earlier.
    pub(super) since_ticks: u64,
    pub(super) child: SpawnedChild,
    /// Bytes fed to the job's stdin.
    pub(super) stdin: &'a [u8],
    /// The job's cgroup leaf (`None` in mode `none`).
    pub(super) leaf: Option<CgroupLeaf>,
    pub(super) limits: &'a Limits,
    /// When the request began: the wall deadline counts from here.
    pub(super) started: Instant,
    pub(super) cancel: Option<&'a CancelToken>,
}

/// The state of one job's supervision, from the spawn to the group being empty.
struct Supervision<'a> {
    job_id: &'a str,
    since_ticks: u64,
    /// The root process.
    pid: i32,
    pidfd: Option<OwnedFd>,
    pipes: Pipes<'a>,
    leaf: Option<CgroupLeaf>,
    limits: &'a Limits,
    cancel: Option<&'a CancelToken>,
    deadline: Option<Instant>,
    cpu_budget_us: Option<u64>,
    /// A memory limit held by a cgroup: its OOM kills end the job as a whole.
    watch_oom: bool,
    /// Mode `none`: vigil's own measurement of the job's processes.
    meter: Option<ProcessMeter>,
    sample_every: Duration,
    next_sample: Instant,
    /// How the root ended, once it has.
    root: Option<RootExit>,
}

/// What the kill leaves to account for.
struct Killed {
    /// Pids in the group when the kill began.
    members: Vec<i32>,
    /// The kill or the leaf's removal failed.
    error: Option<ExecError>,
    /// Forks the pids limit refused before the kill.
    pids_refused: Option<u64>,
}

impl<'a> Supervision<'a> {
    fn new(job: StartedJob<'a>) -> Supervision<'a> {
        let SpawnedChild {
            pid,
            pidfd,
            stdout,
            stderr,
            stdin,
            ..
        } = job.child;
        let limits = job.limits;
        let cpu_budget_us = limits.cpu_time.map(|c| c.as_micros() as u64);
        let sample_every = Duration::from_millis(if cpu_budget_us.is_some() {
            CPU_POLL_INTERVAL_MS
        } else {
            NONE_SAMPLE_INTERVAL_MS
        });
        let max_output = limits.max_output_bytes as usize;
        let mut s = Supervision {
            job_id: job.job_id,
            since_ticks: job.since_ticks,
            pid,
            pidfd,
            pipes: Pipes::new(stdout, stderr, stdin, job.stdin, max_output),
            watch_oom: limits.memory_bytes.is_some() && job.leaf.is_some(),
            // Mode none: vigil measures the job itself.
            meter: job.leaf.is_none().then(|| ProcessMeter::new(pid)),
            leaf: job.leaf,
            limits,
            cancel: job.cancel,
            deadline: limits.timeout.map(|t| job.started + t),
            cpu_budget_us,
            sample_every,
            next_sample: Instant::now(),
            root: None,
        };
        // First right after exec, so that even a job that ends at once has its own memory
        // recorded (never vigil's: see `meter`).
        if let Some(m) = s.meter.as_mut() {
            m.sample();
        }
        s.next_sample = Instant::now() + sample_every;
        s
    }

    /// Waits until the root process ends or a limit fires; returns the limit.
    fn wait_for_root_or_limit(&mut self) -> Option<&'static str> {
        while self.root.is_none() {
            if let Some(hit) = self.step() {
                return Some(hit);
            }
        }
        None
    }

    /// One round: check the limits, wait for the pipes, the root or the next check, reap.
    fn step(&mut self) -> Option<&'static str> {
        let now = Instant::now();
        if self.cancel.is_some_and(|c| c.is_cancelled()) {
            return Some("cancelled");
        }
        if self.deadline.is_some_and(|d| now >= d) {
            return Some("wall");
        }
        self.sample_if_due(now);
        let cpu_used_us = self.cpu_used_us();
        if let (Some(budget), Some(used)) = (self.cpu_budget_us, cpu_used_us) {
            if used >= budget {
                return Some("cpu_time");
            }
        }
        // v1 kills one victim on OOM; like memory.oom.group on v2, the job ends as a whole.
        if let (true, Some(l)) = (self.watch_oom, &self.leaf) {
            if l.oom_kills().is_some_and(|n| n > 0) {
                return Some("memory");
            }
        }
        let wait = self.next_wait(now, cpu_used_us);
        let wake = [self.pidfd.as_ref(), self.cancel.map(|c| c.fd.as_ref())];
        self.pipes.pump(&wake, wait);
        if let Some(c) = self.cancel {
            c.output_bytes.store(
                self.pipes.output_bytes(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        // The last look at the job's processes before the root may be reaped.
        self.sample_if_due(Instant::now());
        self.root = try_reap(self.pid, false);
        None
    }

    /// Mode `none`: samples the job's processes when the interval has passed.
    fn sample_if_due(&mut self, now: Instant) {
        if let Some(m) = self.meter.as_mut().filter(|_| now >= self.next_sample) {
            m.sample();
            self.next_sample = now + self.sample_every;
        }
    }

    /// CPU time the job has used so far, from its group or from vigil's own measurement.
    fn cpu_used_us(&self) -> Option<u64> {
        match (&self.leaf, &self.meter) {
            (Some(l), _) => l.cpu_usage_us(),
            (None, Some(m)) => Some(m.cpu_us()),
            (None, None) => None,
        }
    }

    /// How long the next wait may last: until the deadline, and no longer than the next CPU,
    /// OOM or sampling check, or the poll interval where there is no pidfd to wake on.
    fn next_wait(&self, now: Instant, cpu_used_us: Option<u64>) -> Option<Duration> {
        let mut wait = self.deadline.map(|d| d - now);
        let mut cap_wait = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
        if let (Some(budget), Some(used)) = (self.cpu_budget_us, cpu_used_us) {
            cap_wait(cpu_poll_wait(budget - used));
        }
        if self.watch_oom {
            cap_wait(Duration::from_millis(CPU_POLL_INTERVAL_MS));
        }
        if self.meter.is_some() {
            cap_wait(self.next_sample.saturating_duration_since(now));
        }
        if self.pidfd.is_none() {
            cap_wait(Duration::from_millis(NO_PIDFD_POLL_INTERVAL_MS));
        }
        wait
    }

    /// Kills whatever is left of the job, waits for the group to be empty and reaps the root.
    fn kill_what_is_left(&mut self) -> Killed {
        // Forks the pids limit refused, counted before the kill sets pids.max to 0 (the kill's
        // own refusals are not the limit's).
        let mut killed = Killed {
            members: Vec::new(),
            error: None,
            pids_refused: self.leaf.as_ref().and_then(|l| l.pids_limit_hits()),
        };
        match &self.leaf {
            Some(l) if !l.is_empty() => match l.kill_all() {
                Ok(m) => killed.members = m,
                Err(e) => killed.error = Some(e),
            },
            Some(_) => {}
            None => killed.members = kill_untracked(Some(self.pid), self.job_id, self.since_ticks),
        }
        if self.root.is_none() {
            self.root = try_reap(self.pid, true);
        }
        spawn::forget_root(self.pid);
        killed
    }

    /// The group's usage, then the leaf removed (unless the kill failed: dropping the leaf
    /// tries again). Also whether the leaf was removed: the kernel removes a cgroup only when
    /// no process is left in it, so that proves every process of the job gone.
    fn account_and_remove(&mut self, killed: &mut Killed) -> (cgroup::CgroupUsage, bool) {
        let mut usage = self.leaf.as_ref().map(|l| l.usage()).unwrap_or_default();
        usage.pids_limit_hits = killed.pids_refused;
        let mut removed = false;
        if let Some(l) = self.leaf.take() {
            if killed.error.is_none() {
                match l.remove() {
                    Ok(()) => removed = true,
                    Err(e) => killed.error = Some(e),
                }
            }
        }
        (usage, removed)
    }
}

/// Supervises a started job to its end and fills in `result`; `subreaper`: vigil is the
/// child subreaper, so the job's orphans come back to it to be reaped. True when the job's
/// cgroup leaf was removed at the end (the kernel's proof that none of its processes is
/// left).
pub(super) fn supervise(job: StartedJob<'_>, subreaper: bool, result: &mut JobResult) -> bool {
    let mut s = Supervision::new(job);
    result.root_pid = Some(s.pid);
    crate::phase::mark("sup.setup");
    let limit_hit = s.wait_for_root_or_limit();
    if let Some(m) = s.meter.as_mut().filter(|_| limit_hit.is_none()) {
        // The root ended on its own: orphans still running are measured once more before
        // they are killed. Not when a limit fired: the kill must not wait for a walk.
        m.sample();
    }
    crate::phase::mark("sup.wait_root");
    let kill_from = Instant::now();
    let mut killed = s.kill_what_is_left();
    crate::phase::mark("sup.kill_rest");
    let dead_at = Instant::now();
    result.kill_ms = Some((dead_at - kill_from).as_secs_f64() * 1e3);
    if let (Some("wall"), Some(d)) = (limit_hit, s.deadline) {
        result.deadline_to_dead_ms = Some(dead_at.saturating_duration_since(d).as_secs_f64() * 1e3);
    }
    result.stragglers_killed = killed.members.iter().filter(|&&p| p != s.pid).count();
    // Every writer is gone: read to EOF (bounded, in case a write end was passed outside).
    s.pipes.drain_to_eof();
    crate::phase::mark("sup.drain");
    let (usage, group_gone) = s.account_and_remove(&mut killed);
    crate::phase::mark("sup.account_remove");
    if subreaper {
        reap_job_orphans(s.pid, &killed.members);
    }
    crate::phase::mark("sup.reap_orphans");
    (result.stdout, result.stderr) = s.pipes.finish();
    let end = Ending {
        root: s.root.unwrap_or_default(),
        usage,
        meter: s.meter.as_ref(),
        limit_hit,
        kill_error: killed.error,
    };
    settle(s.job_id, end, s.limits, result);
    group_gone
}

/// What is known when a job's processes are all gone, for [`settle`].
struct Ending<'a> {
    root: RootExit,
    /// The group's usage (cgroup modes).
    usage: cgroup::CgroupUsage,
    /// vigil's own measurements (mode `none`).
    meter: Option<&'a ProcessMeter>,
    /// The limit that ended the job early, if one did.
    limit_hit: Option<&'static str>,
    /// The kill or the leaf's removal failed.
    kill_error: Option<ExecError>,
}

/// Fills in how the job ended: exit status, usage, which limit ended it (one noticed only
/// now: CPU time over budget at the end, an OOM kill, an allocation RLIMIT_AS refused), the
/// status and the message. The output must already be in `result`.
fn settle(job_id: &str, end: Ending<'_>, limits: &Limits, result: &mut JobResult) {
    let Ending {
        root,
        usage,
        meter,
        mut limit_hit,
        kill_error,
    } = end;
    result.exit_code = root.exit_code;
    result.signal = root.signal;
    match meter {
        // No group: what vigil measured of the job's processes, and the root's rusage for CPU
        // (the root and the descendants it waited for); ru_maxrss only where it is provably
        // the job's own (see `meter`).
        Some(m) => {
            result.cpu_usage_us = Some(m.cpu_us().max(root.cpu_us.unwrap_or(0)));
            result.memory_peak_bytes = m.memory_peak_bytes(root.max_rss_bytes);
        }
        None => {
            result.cpu_usage_us = usage.cpu_usage_us;
            result.memory_peak_bytes = usage.memory_peak_bytes;
        }
    }
    result.pids_limit_hit = usage.pids_limit_hits.is_some_and(|n| n > 0);
    let cpu_budget_us = limits.cpu_time.map(|c| c.as_micros() as u64);
    if limit_hit.is_none()
        && cpu_budget_us.is_some_and(|b| {
            result.cpu_usage_us.is_some_and(|u| u >= b) || root.signal == Some(libc::SIGXCPU)
        })
    {
        limit_hit = Some("cpu_time");
    }
    if limit_hit.is_none() && usage.oom_kills.is_some_and(|n| n > 0) {
        limit_hit = Some("memory");
    }
    let memory_refused = limit_hit.is_none()
        && meter.is_some()
        && limits.memory_bytes.is_some()
        && root.exit_code != Some(0)
        && allocation_refused(&result.stderr.bytes);
    if memory_refused {
        limit_hit = Some("memory");
    }
    result.limit_hit = limit_hit;
    result.status = match limit_hit {
        Some("wall") | Some("cpu_time") => JobStatus::TimedOut,
        Some("cancelled") => JobStatus::Interrupted,
        // RLIMIT_AS refused memory: the job failed, nothing killed it.
        Some(_) if memory_refused => JobStatus::Failed,
        Some(_) => JobStatus::OomKilled,
        None if root.exit_code == Some(0) => JobStatus::Completed,
        None => JobStatus::Failed,
    };
    result.error = end_message(
        job_id,
        limit_hit,
        kill_error,
        memory_refused,
        limits,
        result,
    );
}

/// How long to wait before the next CPU-budget check with `left_us` of the budget left: the
/// poll interval, or less as the budget runs out (every online CPU could be spending it).
fn cpu_poll_wait(left_us: u64) -> Duration {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    Duration::from_micros((left_us / cpus).clamp(
        CPU_POLL_INTERVAL_MS_MIN * 1_000,
        CPU_POLL_INTERVAL_MS * 1_000,
    ))
}

/// What programs print when an allocation fails (ENOMEM's message, and the runtimes' own):
/// how a job that RLIMIT_AS stopped is told from one that failed for another reason.
const ALLOCATION_FAILURE_MESSAGES: &[&[u8]] = &[
    b"cannot allocate memory",
    b"memoryerror",
    b"out of memory",
    b"memory exhausted",
    b"bad_alloc",
    b"memory allocation of",
    b"failed to allocate",
    b"allocation failed",
    b"not enough memory",
];

/// True when `stderr` says an allocation failed.
fn allocation_refused(stderr: &[u8]) -> bool {
    let lower = stderr.to_ascii_lowercase();
    ALLOCATION_FAILURE_MESSAGES
        .iter()
        .any(|m| lower.windows(m.len()).any(|w| w == *m))
}

/// The human message of a finished job: what ended it, or `None` when it completed.
fn end_message(
    job_id: &str,
    limit_hit: Option<&'static str>,
    kill_error: Option<ExecError>,
    memory_refused: bool,
    limits: &Limits,
    result: &JobResult,
) -> Option<String> {
    let memory = limits.memory_bytes.map_or("?".into(), size_text);
    let ms = |d: Option<Duration>| d.map_or(0, |t| t.as_millis());
    Some(match (limit_hit, kill_error) {
        (_, Some(e)) => format!("job {job_id}: {e}"),
        (Some("wall"), _) => format!(
            "wall-clock limit of {} ms reached; {}",
            ms(limits.timeout),
            killed_text(result)
        ),
        (Some("cpu_time"), _) => format!(
            "CPU-time budget of {} ms used up ({} ms used); {}",
            ms(limits.cpu_time),
            result.cpu_usage_us.unwrap_or(0) / 1_000,
            killed_text(result)
        ),
        (Some("cancelled"), _) => format!("cancelled by request; {}", killed_text(result)),
        (Some(_), _) if memory_refused => format!(
            "memory limit of {memory} reached: RLIMIT_AS refused an allocation, and then the job {}",
            exit_text(result.exit_code, result.signal)
        ),
        (Some(_), _) => format!("memory limit of {memory} reached; the kernel killed the job"),
        (None, None) if result.exit_code == Some(0) => return None,
        (None, None) => exit_text(result.exit_code, result.signal),
    })
}

/// What the kill of a job that was ended did, as far as vigil can tell: every process, when
/// the kernel proved its cgroup empty; those still in its cgroup, when the job ran as root
/// without a sandbox (it may have left it); those vigil found, without a cgroup.
pub(crate) fn killed_text(result: &JobResult) -> &'static str {
    let e = &result.enforcement;
    if e.notices
        .iter()
        .any(|n| n == super::enforcement::ROOT_LEAVES_CGROUP_NOTICE)
    {
        "every process still in the job's cgroup was killed (it ran as root without a sandbox, \
         so it may have left its cgroup: see the notice)"
    } else if !e.kill_complete {
        "every process of the job vigil found was killed (best effort: no cgroup proves none \
         is left)"
    } else {
        "every process of the job was killed"
    }
}

fn exit_text(exit_code: Option<i32>, signal: Option<i32>) -> String {
    match (exit_code, signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "ended with an unknown status".to_string(),
    }
}
