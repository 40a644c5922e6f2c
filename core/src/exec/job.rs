//! Supervision of one process job: start it in its leaf, feed stdin, drain stdout and stderr
//! concurrently into capped buffers, wait for the root with a monotonic deadline (ppoll with a
//! nanosecond timeout on a pidfd, never a coarse poll loop), watch the CPU budget, then kill what
//! is left of the group, wait until it is empty, account and remove it.
//!
//! A job ends when its group is empty, not when a pipe closes: once the root process exits (or a
//! limit fires) every process left in the group is killed, so a grandchild that kept the output
//! pipe open cannot hold the job. In mode `none` the group is approximated by the root's session
//! and process group, descendants, and processes carrying the job's marker variable.
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cgroup::{self, CgroupLeaf, SweepReport, KILL_WAIT_MS_MAX};
use super::host::{CgroupMode, Host, HostConfig};
use super::output::{CappedOutput, CapturedOutput};
use super::spawn::{self, PreparedCommand, ProcessSpec, JOB_MARKER_ENV};
use super::{ExecError, Limits};

/// How often the CPU budget is checked against the group's usage.
pub const CPU_POLL_INTERVAL_MS: u64 = 10;
/// Wake-up interval when the kernel has no pidfd to wait on.
const NO_PIDFD_POLL_INTERVAL_MS: u64 = 5;
/// Bytes read from one pipe per wake-up, so a flood cannot starve the deadline check.
const READ_BYTES_PER_WAKE_MAX: usize = 1 << 20;
/// Scratch buffer for pipe reads.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// After the group is empty, how long vigil keeps reading pipes whose write end escaped (passed
/// to a process outside the group).
const FINAL_DRAIN_MS_MAX: u64 = 200;
/// Longest /proc/PID/environ read when looking for the job marker (mode none).
const ENVIRON_BYTES_MAX: u64 = 256 << 10;
/// Time to wait for killed processes' zombies to be handed to vigil (subreaper) for reaping.
const ORPHAN_REAP_MS_MAX: u64 = 20;

/// How a job ended: the same status the WAL records, so executor and log cannot disagree.
pub use crate::wal::record::JobStatus;

/// How strongly a limit is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Not asked for.
    NotRequested,
    /// The kernel holds it for the whole job.
    Kernel,
    /// Held only in part (per process, or best effort); the mechanism says how.
    Partial,
    /// Asked for but this host cannot hold it.
    NotEnforced,
}

/// One limit and how it is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitEnforcement {
    /// `wall`, `cpu_time`, `memory`, `pids`, `output`.
    pub limit: &'static str,
    /// How strongly.
    pub strength: Strength,
    /// What does it.
    pub mechanism: String,
}

/// Which limits were enforced and by what: part of every job record and of `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    /// Cgroup mode in use.
    pub mode: &'static str,
    /// How the root process was placed (set once it is started).
    pub placement: Option<&'static str>,
    /// How the job's processes are killed.
    pub kill: String,
    /// Where CPU and memory usage come from.
    pub accounting: String,
    /// One entry per limit.
    pub limits: Vec<LimitEnforcement>,
}

/// Everything known about a finished job.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// The job's id.
    pub job_id: String,
    /// How it ended.
    pub status: JobStatus,
    /// Pid of the job's root process (its session id), once started.
    pub root_pid: Option<i32>,
    /// Exit code of the root process, when it exited.
    pub exit_code: Option<i32>,
    /// Signal that killed the root process, when one did.
    pub signal: Option<i32>,
    /// The pids limit refused at least one fork.
    pub pids_limit_hit: bool,
    /// What ended the job early (`wall`, `cpu_time`, `memory`, `cancelled`), if anything.
    pub limit_hit: Option<&'static str>,
    /// CPU time of the whole group.
    pub cpu_usage_us: Option<u64>,
    /// Peak memory of the whole group.
    pub memory_peak_bytes: Option<u64>,
    /// Wall time from request to the group being empty and removed.
    pub wall_ms: u64,
    /// Time from the decision to kill to every process of the job being gone.
    pub kill_ms: Option<f64>,
    /// When the wall deadline fired: time from the deadline to every process being gone.
    pub deadline_to_dead_ms: Option<f64>,
    /// Processes still in the group when the root ended (killed by vigil).
    pub stragglers_killed: usize,
    /// Captured stdout.
    pub stdout: CapturedOutput,
    /// Captured stderr.
    pub stderr: CapturedOutput,
    /// Human message for anything that went wrong; `None` on success.
    pub error: Option<String>,
    /// Which limits were enforced and how.
    pub enforcement: Enforcement,
}

impl JobResult {
    /// A result for a job that never ran.
    pub fn refused(
        job_id: &str,
        status: JobStatus,
        error: String,
        enforcement: Enforcement,
    ) -> JobResult {
        JobResult {
            job_id: job_id.to_string(),
            status,
            root_pid: None,
            exit_code: None,
            signal: None,
            pids_limit_hit: false,
            limit_hit: None,
            cpu_usage_us: None,
            memory_peak_bytes: None,
            wall_ms: 0,
            kill_ms: None,
            deadline_to_dead_ms: None,
            stragglers_killed: 0,
            stdout: CapturedOutput::default(),
            stderr: CapturedOutput::default(),
            error: Some(error),
            enforcement,
        }
    }
}

/// How the executor is set up.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Host detection and forced modes.
    pub host: HostConfig,
    /// Make vigil a child subreaper, so orphans of jobs come back to it (and are reaped) instead
    /// of escaping to init.
    pub subreaper: bool,
    /// Refuse (status `rejected`) any job asking for a limit this host can only hold partly or
    /// not at all, instead of running it with the weaker mechanism.
    pub require_kernel_enforcement: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            host: HostConfig::default(),
            subreaper: true,
            require_kernel_enforcement: false,
        }
    }
}

impl ExecutorConfig {
    /// The default configuration, using at most the cgroup mode `mode` (`None`: the best the
    /// host offers).
    pub fn with_mode(mode: Option<CgroupMode>) -> Self {
        ExecutorConfig {
            host: HostConfig {
                force_mode: mode,
                ..HostConfig::default()
            },
            ..ExecutorConfig::default()
        }
    }
}

/// Runs jobs on this host. Cheap to share between threads (`&Executor` is all a job needs).
#[derive(Debug)]
pub struct Executor {
    host: Host,
    subreaper: bool,
    require_kernel_enforcement: bool,
}

/// Cancels a running job from another thread (`jobs.cancel`): an eventfd the supervision loop
/// polls beside the job's pipes, so cancellation is as prompt as a deadline.
#[derive(Debug, Clone)]
pub struct CancelToken {
    fd: std::sync::Arc<OwnedFd>,
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Result<CancelToken, ExecError> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd with constant flags; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(ExecError::Io {
                context: "eventfd for job cancellation".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: fresh fd.
        Ok(CancelToken {
            fd: std::sync::Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }),
        })
    }

    /// Asks the job to end: every process of it is killed, status `interrupted`.
    pub fn cancel(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes to an owned eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// True once [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }
}

/// Pipe reader state for one stream.
struct Stream {
    fd: Option<OwnedFd>,
    capture: CappedOutput,
}

impl Stream {
    /// Reads what is available (non-blocking) up to the per-wake bound; closes on EOF.
    fn drain(&mut self, scratch: &mut [u8]) {
        let Some(fd) = &self.fd else { return };
        let mut read_total = 0usize;
        while read_total < READ_BYTES_PER_WAKE_MAX {
            // SAFETY: reading into a live scratch buffer from an owned fd.
            let n =
                unsafe { libc::read(fd.as_raw_fd(), scratch.as_mut_ptr().cast(), scratch.len()) };
            if n > 0 {
                self.capture.push(&scratch[..n as usize]);
                read_total += n as usize;
                continue;
            }
            if n == 0 {
                self.fd = None;
                return;
            }
            let e = std::io::Error::last_os_error().raw_os_error();
            if e == Some(libc::EINTR) {
                continue;
            }
            if e != Some(libc::EAGAIN) {
                self.fd = None;
            }
            return;
        }
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an owned fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}

/// How the root process ended, with its rusage (the root and the descendants it waited for).
#[derive(Debug, Clone, Copy, Default)]
struct RootExit {
    exit_code: Option<i32>,
    signal: Option<i32>,
    /// User + system CPU time from rusage.
    cpu_us: Option<u64>,
    /// Largest resident set of the root or a waited-for descendant (rusage ru_maxrss).
    max_rss_bytes: Option<u64>,
}

/// Reap of our child `pid` (blocking or not) with wait4: `Some` once it has ended.
fn try_reap(pid: i32, block: bool) -> Option<RootExit> {
    let mut status = 0;
    loop {
        // SAFETY: wait4 on our own child with valid out-parameters.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
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
                max_rss_bytes: Some(ru.ru_maxrss as u64 * 1024),
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

/// The /proc/PID/stat fields vigil uses.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    state: u8,
    ppid: i32,
    pgrp: i32,
    session: i32,
    /// Clock ticks after boot at which the process started.
    start_ticks: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: fields restart after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut it = rest.split_whitespace();
    let state = it.next()?.bytes().next()?;
    let ppid = it.next()?.parse().ok()?;
    let pgrp = it.next()?.parse().ok()?;
    let session = it.next()?.parse().ok()?;
    let start_ticks = it.nth(15)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        pgrp,
        session,
        start_ticks,
    })
}

/// Now, in the clock ticks after boot that /proc/PID/stat's starttime uses (rounded down, so a
/// process started after this call never has a smaller start time).
fn boot_ticks_now() -> u64 {
    // SAFETY: out-parameter of the right type; sysconf has no preconditions.
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64 * hz + ts.tv_nsec as u64 * hz / 1_000_000_000).saturating_sub(1)
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
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

/// Live (non-zombie) processes of a job in mode `none`: its session and process group, anything
/// carrying its marker variable, and every descendant of those. Only processes started at or
/// after `since_ticks` (the job's start) can be the job's, which keeps the environment reads to
/// the few processes that are new.
pub fn untracked_job_processes(root: i32, job_id: &str, since_ticks: u64) -> Vec<i32> {
    let marker = format!("{JOB_MARKER_ENV}={job_id}").into_bytes();
    let me = std::process::id() as i32;
    let table: Vec<(i32, ProcStat)> = all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter_map(|p| proc_stat(p).map(|st| (p, st)))
        .filter(|(_, st)| st.state != b'Z' && st.start_ticks >= since_ticks)
        .collect();
    let mut set: BTreeSet<i32> = table
        .iter()
        .filter(|(p, st)| {
            let ours = root > 1 && (*p == root || st.pgrp == root || st.session == root);
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

impl Executor {
    /// Detects the host (creating vigil's parent groups) and becomes a child subreaper if asked.
    pub fn new(config: ExecutorConfig) -> Result<Executor, ExecError> {
        let host = Host::detect_with(&config.host).map_err(ExecError::Unenforceable)?;
        if config.subreaper {
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        }
        Ok(Executor {
            host,
            subreaper: config.subreaper,
            require_kernel_enforcement: config.require_kernel_enforcement,
        })
    }

    /// What the host offers and what is in use.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Kills and removes leaves left by dead vigil instances.
    pub fn sweep_stale(&self) -> SweepReport {
        cgroup::sweep_stale(&self.host)
    }

    /// How `limits` would be held on this host (before anything runs; also what `doctor` says).
    pub fn enforcement(&self, limits: &Limits) -> Enforcement {
        let h = &self.host;
        let v2 = |c: &str| h.mode == CgroupMode::V2 && h.v2_controllers.iter().any(|x| x == c);
        let kill = match h.mode {
            CgroupMode::V2 | CgroupMode::Hybrid if h.cgroup_kill => "pids.max=0, then cgroup.kill, then wait for cgroup.events populated=0".to_string(),
            CgroupMode::V2 | CgroupMode::Hybrid if h.cgroup_freeze => {
                "pids.max=0, then cgroup.freeze=1, SIGKILL every task, cgroup.freeze=0, then wait for cgroup.events populated=0".to_string()
            }
            _ if h.v1.freezer.is_some() => "pids.max=0, then freezer FROZEN, SIGKILL every task, THAWED, then wait for cgroup.procs to empty".to_string(),
            CgroupMode::None => format!(
                "SIGKILL to the session and process group, descendants and processes carrying {JOB_MARKER_ENV} (best effort: a process that clears its environment, calls setsid and is orphaned escapes)"
            ),
            _ => "SIGKILL rounds over cgroup.procs until empty (no freezer, no cgroup.kill: a fast forker can race it)".to_string(),
        };
        let accounting = match h.mode {
            CgroupMode::None => "rusage of the root and the descendants it waited for (partial: no group; peak is the largest single process)".to_string(),
            _ => {
                let cpu = if h.unified_parent.is_none() && h.v1.cpuacct.is_some() {
                    "cpuacct.usage"
                } else {
                    "cpu.stat usage_usec"
                };
                let mem = if h.v1.memory.is_some() {
                    "memory.max_usage_in_bytes, memory.oom_control oom_kill"
                } else if v2("memory") {
                    "memory.peak, memory.events oom_kill"
                } else {
                    "no memory accounting"
                };
                format!("{cpu}; {mem}")
            }
        };
        let mut limits_out = Vec::new();
        let req = |b: bool, s: Strength| if b { s } else { Strength::NotRequested };
        limits_out.push(LimitEnforcement {
            limit: "wall",
            strength: req(
                limits.timeout.is_some(),
                if h.has_cgroups() {
                    Strength::Kernel
                } else {
                    Strength::Partial
                },
            ),
            mechanism: "monotonic deadline (ppoll timeout), then the kill path".into(),
        });
        let (cpu_s, cpu_m) = if h.has_cgroups() {
            (Strength::Kernel, format!("group CPU usage checked every {CPU_POLL_INTERVAL_MS} ms, then the kill path; RLIMIT_CPU per process as a backstop"))
        } else {
            (
                Strength::Partial,
                "RLIMIT_CPU per process only (a tree of processes can exceed the budget together)"
                    .into(),
            )
        };
        limits_out.push(LimitEnforcement {
            limit: "cpu_time",
            strength: req(limits.cpu_time.is_some(), cpu_s),
            mechanism: cpu_m,
        });
        let (mem_s, mem_m) = if let Some(m) = &h.v1.memory {
            if m.join("memory.memsw.limit_in_bytes").exists() {
                (
                    Strength::Kernel,
                    "memory.limit_in_bytes + memory.memsw.limit_in_bytes (no swap)".to_string(),
                )
            } else {
                (
                    Strength::Partial,
                    "memory.limit_in_bytes (swap not limited: no memsw accounting)".to_string(),
                )
            }
        } else if v2("memory") {
            (
                Strength::Kernel,
                "memory.max + memory.swap.max=0 + memory.oom.group".to_string(),
            )
        } else if h.mode == CgroupMode::None {
            (
                Strength::Partial,
                "RLIMIT_AS per process (virtual address space, not the tree)".to_string(),
            )
        } else {
            (
                Strength::NotEnforced,
                "no memory controller available".to_string(),
            )
        };
        limits_out.push(LimitEnforcement {
            limit: "memory",
            strength: req(limits.memory_bytes.is_some(), mem_s),
            mechanism: mem_m,
        });
        let (pid_s, pid_m) = if h.v1.pids.is_some() || v2("pids") {
            (Strength::Kernel, "pids.max".to_string())
        } else {
            (
                Strength::NotEnforced,
                "no pids controller (RLIMIT_NPROC is per user and root ignores it)".to_string(),
            )
        };
        limits_out.push(LimitEnforcement {
            limit: "pids",
            strength: req(limits.pids.is_some(), pid_s),
            mechanism: pid_m,
        });
        limits_out.push(LimitEnforcement {
            limit: "output",
            strength: Strength::Kernel,
            mechanism: format!("vigil keeps the first and last {} bytes per stream; the rest is counted and dropped", limits.max_output_bytes / 2),
        });
        Enforcement {
            mode: h.mode.as_str(),
            placement: None,
            kill,
            accounting,
            limits: limits_out,
        }
    }

    /// Runs one process job to its end. Never panics; every failure is in the result.
    pub fn run_process(&self, job_id: &str, spec: &ProcessSpec, limits: &Limits) -> JobResult {
        self.run_process_cancellable(job_id, spec, limits, None)
    }

    /// [`Executor::run_process`] that ends early, status `interrupted`, when `cancel` fires.
    pub fn run_process_cancellable(
        &self,
        job_id: &str,
        spec: &ProcessSpec,
        limits: &Limits,
        cancel: Option<&CancelToken>,
    ) -> JobResult {
        let started = Instant::now();
        let mut result = JobResult::refused(
            job_id,
            JobStatus::Failed,
            String::new(),
            self.enforcement(limits),
        );
        result.error = None;
        if let Err(e) = self.run_inner(job_id, spec, limits, started, cancel, &mut result) {
            result.status = match e {
                ExecError::InvalidJobId(_)
                | ExecError::InvalidRequest(_)
                | ExecError::PathRejected { .. }
                | ExecError::Unenforceable(_) => JobStatus::Rejected,
                _ => JobStatus::Failed,
            };
            result.error = Some(e.to_string());
        }
        result.wall_ms = started.elapsed().as_millis() as u64;
        result
    }

    fn run_inner(
        &self,
        job_id: &str,
        spec: &ProcessSpec,
        limits: &Limits,
        started: Instant,
        cancel: Option<&CancelToken>,
        result: &mut JobResult,
    ) -> Result<(), ExecError> {
        cgroup::validate_job_id(job_id)?;
        if self.require_kernel_enforcement {
            if let Some(weak) = result
                .enforcement
                .limits
                .iter()
                .find(|l| matches!(l.strength, Strength::Partial | Strength::NotEnforced))
            {
                return Err(ExecError::Unenforceable(format!(
                    "policy requires kernel-enforced limits, but the {} limit is {:?} here ({})",
                    weak.limit, weak.strength, weak.mechanism
                )));
            }
        }
        if limits.max_output_bytes > super::OUTPUT_BYTES_MAX {
            return Err(ExecError::InvalidRequest(format!(
                "max_output_bytes {} exceeds {}",
                limits.max_output_bytes,
                super::OUTPUT_BYTES_MAX
            )));
        }
        let mut cmd = PreparedCommand::new(job_id, spec)?;
        if let Some(cpu) = limits.cpu_time {
            // Rounded up plus a second, so the group-wide check fires first where it exists.
            cmd.rlimit_cpu_s = Some(
                cpu.as_secs()
                    + u64::from(cpu.subsec_nanos() > 0)
                    + u64::from(self.host.has_cgroups()),
            );
        }
        if self.host.mode == CgroupMode::None {
            cmd.rlimit_as_bytes = limits.memory_bytes;
        }
        let leaf = if self.host.has_cgroups() {
            Some(CgroupLeaf::create(&self.host, job_id, limits)?)
        } else {
            None
        };
        let since_ticks = boot_ticks_now();
        let child = spawn::spawn(
            job_id,
            &cmd,
            spec.stdin.is_some(),
            leaf.as_ref(),
            &self.host,
        )?;
        result.enforcement.placement = Some(child.placement.as_str());
        self.supervise(
            job_id,
            since_ticks,
            child,
            spec.stdin.as_deref().unwrap_or(&[]),
            leaf,
            limits,
            started,
            cancel,
            result,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn supervise(
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
        let cap = limits.max_output_bytes as usize;
        let mut out = Stream {
            fd: Some(child.stdout),
            capture: CappedOutput::new(cap),
        };
        let mut err = Stream {
            fd: Some(child.stderr),
            capture: CappedOutput::new(cap),
        };
        let mut stdin = child.stdin;
        let mut stdin_off = 0usize;
        for fd in [out.fd.as_ref(), err.fd.as_ref(), stdin.as_ref()]
            .into_iter()
            .flatten()
        {
            set_nonblocking(fd.as_raw_fd());
        }
        let deadline = limits.timeout.map(|t| started + t);
        let cpu_budget_us = limits.cpu_time.map(|c| c.as_micros() as u64);
        let watch_oom = limits.memory_bytes.is_some() && leaf.is_some();
        let mut scratch = vec![0u8; READ_CHUNK_BYTES];
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
            if let (Some(budget), Some(l)) = (cpu_budget_us, &leaf) {
                if l.cpu_usage_us().is_some_and(|u| u >= budget) {
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
            if (cpu_budget_us.is_some() || watch_oom) && leaf.is_some() {
                cap_wait(Duration::from_millis(CPU_POLL_INTERVAL_MS));
            }
            if child.pidfd.is_none() {
                cap_wait(Duration::from_millis(NO_PIDFD_POLL_INTERVAL_MS));
            }
            let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(4);
            let mut push = |fd: Option<&OwnedFd>, events: i16| {
                if let Some(fd) = fd {
                    pfds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events,
                        revents: 0,
                    });
                }
            };
            push(child.pidfd.as_ref(), libc::POLLIN);
            push(cancel.map(|c| c.fd.as_ref()), libc::POLLIN);
            push(out.fd.as_ref(), libc::POLLIN);
            push(err.fd.as_ref(), libc::POLLIN);
            push(stdin.as_ref(), libc::POLLOUT);
            let ts = wait.map(|w| libc::timespec {
                tv_sec: w.as_secs() as libc::time_t,
                tv_nsec: w.subsec_nanos() as libc::c_long,
            });
            // SAFETY: pfds is a live array of pollfd; ts lives across the call.
            unsafe {
                libc::ppoll(
                    pfds.as_mut_ptr(),
                    pfds.len() as libc::nfds_t,
                    ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
                    std::ptr::null(),
                )
            };
            out.drain(&mut scratch);
            err.drain(&mut scratch);
            if let Some(fd) = &stdin {
                if stdin_off < stdin_data.len() {
                    // SAFETY: writing from a live slice to an owned non-blocking fd.
                    let n = unsafe {
                        libc::write(
                            fd.as_raw_fd(),
                            stdin_data[stdin_off..].as_ptr().cast(),
                            stdin_data.len() - stdin_off,
                        )
                    };
                    if n > 0 {
                        stdin_off += n as usize;
                    } else if n < 0
                        && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
                    {
                        stdin = None; // EPIPE: the job closed its stdin.
                    }
                }
                if stdin_off >= stdin_data.len() {
                    stdin = None; // EOF for the job.
                }
            }
            root = try_reap(pid, false);
        }

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
            None => members = kill_untracked(pid, job_id, since_ticks),
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
        let drain_until = Instant::now() + Duration::from_millis(FINAL_DRAIN_MS_MAX);
        while (out.fd.is_some() || err.fd.is_some()) && Instant::now() < drain_until {
            let mut pfds: Vec<libc::pollfd> = [out.fd.as_ref(), err.fd.as_ref()]
                .into_iter()
                .flatten()
                .map(|f| libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: live pollfd array.
            unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 10) };
            out.drain(&mut scratch);
            err.drain(&mut scratch);
        }

        let usage = leaf.as_ref().map(|l| l.usage()).unwrap_or_default();
        let leaf_absent = leaf.is_none();
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

        let root = root.unwrap_or_default();
        let (exit_code, signal) = (root.exit_code, root.signal);
        result.exit_code = exit_code;
        result.signal = signal;
        // Without a group (mode none) rusage is the next best: the root and the descendants it
        // waited for; escaped or orphaned processes are not counted.
        result.cpu_usage_us = usage.cpu_usage_us.or(root.cpu_us.filter(|_| leaf_absent));
        result.memory_peak_bytes = usage
            .memory_peak_bytes
            .or(root.max_rss_bytes.filter(|_| leaf_absent));
        result.pids_limit_hit = usage.pids_limit_hits.is_some_and(|n| n > 0);
        result.stdout = out.capture.finish();
        result.stderr = err.capture.finish();
        if limit_hit.is_none()
            && cpu_budget_us.is_some_and(|b| {
                usage.cpu_usage_us.is_some_and(|u| u >= b) || signal == Some(libc::SIGXCPU)
            })
        {
            limit_hit = Some("cpu_time");
        }
        if limit_hit.is_none() && usage.oom_kills.is_some_and(|n| n > 0) {
            limit_hit = Some("memory");
        }
        result.limit_hit = limit_hit;
        result.status = match limit_hit {
            Some("wall") | Some("cpu_time") => JobStatus::TimedOut,
            Some("cancelled") => JobStatus::Interrupted,
            Some(_) => JobStatus::OomKilled,
            None if exit_code == Some(0) => JobStatus::Completed,
            None => JobStatus::Failed,
        };
        result.error = match (limit_hit, &kill_error) {
            (_, Some(e)) => Some(format!("job {job_id}: {e}")),
            (Some("wall"), _) => Some(format!(
                "wall-clock limit of {} ms reached; every process of the job was killed",
                limits.timeout.map_or(0, |t| t.as_millis())
            )),
            (Some("cpu_time"), _) => Some(format!(
                "CPU-time budget of {} ms used up; every process of the job was killed",
                limits.cpu_time.map_or(0, |t| t.as_millis())
            )),
            (Some("cancelled"), _) => {
                Some("cancelled by request; every process of the job was killed".to_string())
            }
            (Some(_), _) => Some(format!(
                "memory limit of {} bytes reached; the kernel killed the job",
                limits.memory_bytes.unwrap_or(0)
            )),
            (None, None) if exit_code == Some(0) => None,
            (None, None) => Some(match (exit_code, signal) {
                (Some(c), _) => format!("exited with code {c}"),
                (_, Some(s)) => format!("killed by signal {s}"),
                _ => "ended with an unknown status".to_string(),
            }),
        };
        Ok(())
    }
}

/// Mode `none`: kill the job's processes in rounds until none is found alive.
fn kill_untracked(root: i32, job_id: &str, since_ticks: u64) -> Vec<i32> {
    let until = Instant::now() + Duration::from_millis(KILL_WAIT_MS_MAX);
    let mut seen = Vec::new();
    loop {
        let found = untracked_job_processes(root, job_id, since_ticks);
        if found.is_empty() || Instant::now() >= until {
            return seen;
        }
        // A negative pid names the group; never -1 or 0 (every process, or our own group).
        if root > 1 {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-root, libc::SIGKILL) };
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

/// Pids of vigil's own children (threads included), from /proc/self/task/*/children.
fn own_children() -> Vec<i32> {
    let mut kids = Vec::new();
    let Ok(tasks) = fs::read_dir("/proc/self/task") else {
        return kids;
    };
    for t in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(t.path().join("children")) {
            kids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    kids
}

/// Reaps zombies of a finished job that were handed to vigil as subreaper: children of vigil that
/// are not a running job's root and belong to the job's session or were members of its group.
fn reap_job_orphans(root: i32, members: &[i32]) {
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

impl JobResult {
    /// The JSON object of `vigil run --json` and the socket's `run` method (DESIGN.md): the
    /// contract fields first, then what vigil adds (pids limit, which limit fired, enforcement).
    /// Output bytes that are not UTF-8 are replaced (U+FFFD); `total_bytes` keeps the real count.
    pub fn to_json(&self, capability: &str, lsn: Option<u64>) -> serde_json::Value {
        serde_json::json!({
            "job_id": self.job_id,
            "capability": capability,
            "status": self.status.as_str(),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "stdout": String::from_utf8_lossy(&self.stdout.bytes),
            "stderr": String::from_utf8_lossy(&self.stderr.bytes),
            "stdout_truncated": self.stdout.truncated,
            "stderr_truncated": self.stderr.truncated,
            "stdout_total_bytes": self.stdout.total_bytes,
            "stderr_total_bytes": self.stderr.total_bytes,
            "wall_ms": self.wall_ms,
            "cpu_usage_us": self.cpu_usage_us,
            "memory_peak_bytes": self.memory_peak_bytes,
            "pids_limit_hit": self.pids_limit_hit,
            "limit_hit": self.limit_hit,
            "stragglers_killed": self.stragglers_killed,
            "lsn": lsn,
            "error": self.error,
            "enforcement": serde_json::to_value(&self.enforcement).unwrap_or(serde_json::Value::Null),
        })
    }
}

/// A fresh job id: milliseconds since the epoch, this process's pid and a counter, in hex
/// (sortable by start time, unique within a machine).
pub fn new_job_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    format!(
        "{ms:011x}-{:x}-{:x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
