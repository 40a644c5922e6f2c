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
use std::time::{Duration, Instant};

use super::cancel::CancelToken;
use super::cgroup::{self, CgroupLeaf};
use super::enforcement::size_text;
use super::job::Executor;
use super::meter::ProcessMeter;
use super::pipes::Pipes;
use super::reaper::{kill_untracked, reap_job_orphans};
use super::result::{JobResult, JobStatus};
use super::spawn;
use super::{ExecError, Limits};

/// How often the CPU budget is checked against the group's usage.
pub const CPU_POLL_INTERVAL_MS: u64 = 10;
/// Mode `none`: how often the job's processes are sampled (CPU clocks, memory) when no
/// CPU budget asks for [`CPU_POLL_INTERVAL_MS`].
pub const NONE_SAMPLE_INTERVAL_MS: u64 = 50;
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

impl Executor {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn supervise(
        &self,
        job_id: &str,
        since_ticks: u64,
        child: spawn::SpawnedChild,
        stdin_data: &[u8],
        leaf: Option<CgroupLeaf>,
        limits: &Limits,
        started: Instant,
        cancel: Option<&CancelToken>,
        result: &mut JobResult,
    ) -> Result<(), ExecError> {
        let pid = child.pid;
        result.root_pid = Some(pid);
        let mut pipes = Pipes::new(
            child.stdout,
            child.stderr,
            child.stdin,
            stdin_data,
            limits.max_output_bytes as usize,
        );
        let deadline = limits.timeout.map(|t| started + t);
        let cpu_budget_us = limits.cpu_time.map(|c| c.as_micros() as u64);
        let watch_oom = limits.memory_bytes.is_some() && leaf.is_some();
        // Mode none: vigil measures the job itself, first right after exec so that even a job
        // that ends at once has its own memory recorded (never vigil's: see `meter`).
        let mut meter = leaf.is_none().then(|| ProcessMeter::new(pid));
        let sample_every = Duration::from_millis(if cpu_budget_us.is_some() {
            CPU_POLL_INTERVAL_MS
        } else {
            NONE_SAMPLE_INTERVAL_MS
        });
        if let Some(m) = meter.as_mut() {
            m.sample();
        }
        let mut next_sample = Instant::now() + sample_every;
        let mut root: Option<RootExit> = None;
        let mut limit_hit: Option<&'static str> = None;

        while root.is_none() {
            let now = Instant::now();
            if cancel.is_some_and(|c| c.is_cancelled()) {
                limit_hit = Some("cancelled");
                break;
            }
            if deadline.is_some_and(|d| now >= d) {
                limit_hit = Some("wall");
                break;
            }
            if let Some(m) = meter.as_mut().filter(|_| now >= next_sample) {
                m.sample();
                next_sample = now + sample_every;
            }
            let cpu_used_us = match (&leaf, &meter) {
                (Some(l), _) => l.cpu_usage_us(),
                (None, Some(m)) => Some(m.cpu_us()),
                (None, None) => None,
            };
            if let (Some(budget), Some(used)) = (cpu_budget_us, cpu_used_us) {
                if used >= budget {
                    limit_hit = Some("cpu_time");
                    break;
                }
            }
            // v1 kills one victim on OOM; like memory.oom.group on v2, the job ends as a whole.
            if let (true, Some(l)) = (watch_oom, &leaf) {
                if l.oom_kills().is_some_and(|n| n > 0) {
                    limit_hit = Some("memory");
                    break;
                }
            }
            let mut wait = deadline.map(|d| d - now);
            let mut cap_wait = |d: Duration| wait = Some(wait.map_or(d, |w| w.min(d)));
            if let (Some(budget), Some(used)) = (cpu_budget_us, cpu_used_us) {
                cap_wait(cpu_poll_wait(budget - used));
            }
            if watch_oom {
                cap_wait(Duration::from_millis(CPU_POLL_INTERVAL_MS));
            }
            if meter.is_some() {
                cap_wait(next_sample.saturating_duration_since(now));
            }
            if child.pidfd.is_none() {
                cap_wait(Duration::from_millis(NO_PIDFD_POLL_INTERVAL_MS));
            }
            let wake = [child.pidfd.as_ref(), cancel.map(|c| c.fd.as_ref())];
            pipes.pump(&wake, wait);
            if root.is_none() {
                // The last look at the job's processes before the root may be reaped.
                if let Some(m) = meter.as_mut().filter(|_| Instant::now() >= next_sample) {
                    m.sample();
                    next_sample = Instant::now() + sample_every;
                }
            }
            root = try_reap(pid, false);
        }
        if let Some(m) = meter.as_mut().filter(|_| limit_hit.is_none()) {
            // The root ended on its own: orphans still running are measured once more before
            // they are killed. Not when a limit fired: the kill must not wait for a walk.
            m.sample();
        }

        // Forks the pids limit refused, counted before the kill sets pids.max to 0 (the kill's
        // own refusals are not the limit's).
        let pids_refused = leaf.as_ref().and_then(|l| l.pids_limit_hits());
        // Kill whatever is left and wait for the group to be empty.
        let kill_from = Instant::now();
        let mut members = Vec::new();
        let mut kill_error = None;
        match &leaf {
            Some(l) => {
                if !l.is_empty() {
                    match l.kill_all() {
                        Ok(m) => members = m,
                        Err(e) => kill_error = Some(e),
                    }
                }
            }
            None => members = kill_untracked(Some(pid), job_id, since_ticks),
        }
        if root.is_none() {
            root = try_reap(pid, true);
        }
        spawn::forget_root(pid);
        let dead_at = Instant::now();
        result.kill_ms = Some((dead_at - kill_from).as_secs_f64() * 1e3);
        if let (Some("wall"), Some(d)) = (limit_hit, deadline) {
            result.deadline_to_dead_ms =
                Some(dead_at.saturating_duration_since(d).as_secs_f64() * 1e3);
        }
        result.stragglers_killed = members.iter().filter(|&&p| p != pid).count();

        // Every writer is gone: read to EOF (bounded, in case a write end was passed outside).
        pipes.drain_to_eof();

        let mut usage = leaf.as_ref().map(|l| l.usage()).unwrap_or_default();
        usage.pids_limit_hits = pids_refused;
        if let Some(l) = leaf {
            if kill_error.is_none() {
                if let Err(e) = l.remove() {
                    kill_error = Some(e);
                }
            }
        }
        if self.subreaper {
            reap_job_orphans(pid, &members);
        }

        (result.stdout, result.stderr) = pipes.finish();
        settle(
            job_id,
            Ending {
                root: root.unwrap_or_default(),
                usage,
                meter: meter.as_ref(),
                limit_hit,
                kill_error,
            },
            limits,
            result,
        );
        Ok(())
    }
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
            "wall-clock limit of {} ms reached; every process of the job was killed",
            ms(limits.timeout)
        ),
        (Some("cpu_time"), _) => format!(
            "CPU-time budget of {} ms used up ({} ms used); every process of the job was killed",
            ms(limits.cpu_time),
            result.cpu_usage_us.unwrap_or(0) / 1_000
        ),
        (Some("cancelled"), _) => {
            "cancelled by request; every process of the job was killed".to_string()
        }
        (Some(_), _) if memory_refused => format!(
            "memory limit of {memory} reached: RLIMIT_AS refused an allocation, and then the job {}",
            exit_text(result.exit_code, result.signal)
        ),
        (Some(_), _) => format!("memory limit of {memory} reached; the kernel killed the job"),
        (None, None) if result.exit_code == Some(0) => return None,
        (None, None) => exit_text(result.exit_code, result.signal),
    })
}

fn exit_text(exit_code: Option<i32>, signal: Option<i32>) -> String {
    match (exit_code, signal) {
        (Some(c), _) => format!("exited with code {c}"),
        (_, Some(s)) => format!("killed by signal {s}"),
        _ => "ended with an unknown status".to_string(),
    }
}
