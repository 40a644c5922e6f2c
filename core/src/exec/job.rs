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
use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::cgroup::{self, CgroupLeaf, SweepReport, KILL_WAIT_MS_MAX};
use super::host::{CgroupMode, Host, HostConfig};
use super::meter::ProcessMeter;
use super::output::{CappedOutput, CapturedOutput};
use super::spawn::{self, PreparedCommand, ProcessSpec, JOB_MARKER_ENV};
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
/// Bytes read from one pipe per wake-up, so a flood cannot starve the deadline check.
const READ_BYTES_PER_WAKE_MAX: usize = 1 << 20;
/// Scratch buffer for pipe reads.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// After the group is empty, how long vigil keeps reading pipes whose write end escaped (passed
/// to a process outside the group).
const FINAL_DRAIN_MS_MAX: u64 = 200;
/// Longest /proc/PID/environ read when looking for the job marker (mode none).
const ENVIRON_BYTES_MAX: u64 = 256 << 10;
/// Longest wait for killed processes' zombies to be handed to vigil (subreaper) and reaped. The
/// wait ends as soon as none is on its way; under load the handover can take a while, and a
/// zombie left behind would be one nobody reaps.
const ORPHAN_REAP_MS_MAX: u64 = 2_000;

/// How a job ended: the same status the WAL records, so executor and log cannot disagree.
use crate::model::JobStatus;

/// Who holds a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// Not asked for.
    NotRequested,
    /// The kernel holds it for the whole job, even if vigil dies (a cgroup limit).
    Kernel,
    /// The kernel holds it for each process on its own, even if vigil dies (an RLIMIT set on
    /// the child): a tree of processes can exceed it together.
    KernelPerProcess,
    /// vigil's supervisor holds it while vigil lives (a deadline, a polled counter, its own
    /// buffer). If vigil dies, the job runs on without it until a later vigil sweeps it.
    Supervisor,
    /// Asked for but not held at all here; the reason says why.
    NotEnforced,
}

impl Strength {
    /// The label in records and `doctor` (`kernel`, `supervisor`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::NotRequested => "not_requested",
            Strength::Kernel => "kernel",
            Strength::KernelPerProcess => "kernel_per_process",
            Strength::Supervisor => "supervisor",
            Strength::NotEnforced => "not_enforced",
        }
    }
}

/// One limit and how it is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitEnforcement {
    /// `wall`, `cpu_time`, `memory`, `pids`, `output`.
    pub limit: &'static str,
    /// The requested value as a person writes it (`64M`, `500ms`, `16`); `None` when the
    /// request set no such limit.
    pub requested: Option<String>,
    /// Who holds it.
    pub strength: Strength,
    /// The limit as requested holds for every process of the job: memory and pids held by
    /// the kernel for the whole job; wall, CPU time and output held by the supervisor with a
    /// kill that reaches every process. False for a requested limit held in part or not at all.
    pub held: bool,
    /// What does it.
    pub mechanism: String,
    /// Why a requested limit is not held (or only in part); `None` when it is held or was not
    /// requested.
    pub not_held_reason: Option<String>,
}

impl LimitEnforcement {
    /// `memory limit 64M not held: <reason>` for a requested limit that is not held.
    pub fn not_held_message(&self) -> Option<String> {
        if self.held || self.strength == Strength::NotRequested {
            return None;
        }
        Some(format!(
            "{} limit {} not held: {}",
            self.limit,
            self.requested.as_deref().unwrap_or("?"),
            self.not_held_reason.as_deref().unwrap_or(&self.mechanism)
        ))
    }
}

/// Which limits were enforced and by what: part of every job record and of `doctor`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enforcement {
    /// Cgroup mode in use.
    pub mode: &'static str,
    /// How the root process was placed (set once it is started).
    pub placement: Option<&'static str>,
    /// How the job's processes are killed (at a limit, on cancellation, when the root ends).
    pub kill: String,
    /// The kill reaches every process of the job whatever it does (a cgroup holds them all);
    /// false where vigil has to find them (mode `none`).
    pub kill_complete: bool,
    /// Where CPU and memory usage come from.
    pub accounting: String,
    /// One entry per limit.
    pub limits: Vec<LimitEnforcement>,
}

impl Enforcement {
    /// `<limit> limit <value> not held: <reason>` for each requested limit that is not held.
    pub fn not_held_messages(&self) -> Vec<String> {
        self.limits
            .iter()
            .filter_map(LimitEnforcement::not_held_message)
            .collect()
    }

    /// Why a job that requires enforcement must be refused, if it must.
    pub fn refusal(&self) -> Option<String> {
        let missing = self.not_held_messages();
        (!missing.is_empty()).then(|| {
            format!(
                "enforcement required, but {} (mode {})",
                missing.join("; "),
                self.mode
            )
        })
    }
}

fn req_strength(requested: bool, s: Strength) -> Strength {
    if requested {
        s
    } else {
        Strength::NotRequested
    }
}

/// True when /proc/swaps lists a swap area (swap that an unlimited memsw would let a job use).
fn host_has_swap() -> bool {
    fs::read_to_string("/proc/swaps").is_ok_and(|t| t.lines().count() > 1)
}

/// A byte count as a person writes it: `64M`, `1G`, `512K`, else plain bytes.
pub fn size_text(bytes: u64) -> String {
    for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A duration as a person writes it: `2s`, `500ms`.
pub fn duration_text(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
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
    /// Refuse (status `rejected`, before anything runs) any job with a requested limit that is
    /// not held here (see [`Enforcement::refusal`]), instead of running it with the weaker
    /// mechanism.
    pub require_enforcement: bool,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            host: HostConfig::default(),
            subreaper: true,
            require_enforcement: false,
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
    require_enforcement: bool,
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

/// The job's stdout and stderr being drained and its stdin being fed, all non-blocking.
struct Pipes<'a> {
    out: Stream,
    err: Stream,
    stdin: Option<OwnedFd>,
    stdin_data: &'a [u8],
    stdin_off: usize,
    scratch: Vec<u8>,
}

impl<'a> Pipes<'a> {
    fn new(
        stdout: OwnedFd,
        stderr: OwnedFd,
        stdin: Option<OwnedFd>,
        stdin_data: &'a [u8],
        cap_bytes: usize,
    ) -> Pipes<'a> {
        for fd in [Some(&stdout), Some(&stderr), stdin.as_ref()]
            .into_iter()
            .flatten()
        {
            set_nonblocking(fd.as_raw_fd());
        }
        Pipes {
            out: Stream {
                fd: Some(stdout),
                capture: CappedOutput::new(cap_bytes),
            },
            err: Stream {
                fd: Some(stderr),
                capture: CappedOutput::new(cap_bytes),
            },
            stdin,
            stdin_data,
            stdin_off: 0,
            scratch: vec![0u8; READ_CHUNK_BYTES],
        }
    }

    /// Waits (at most `wait`; `None`: without bound) until a pipe or one of `wake` is ready,
    /// then drains what the pipes hold and feeds stdin what it takes.
    fn pump(&mut self, wake: &[Option<&OwnedFd>], wait: Option<Duration>) {
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(5);
        let wanted = wake.iter().map(|fd| (*fd, libc::POLLIN)).chain([
            (self.out.fd.as_ref(), libc::POLLIN),
            (self.err.fd.as_ref(), libc::POLLIN),
            (self.stdin.as_ref(), libc::POLLOUT),
        ]);
        for (fd, events) in wanted {
            if let Some(fd) = fd {
                pfds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
        }
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
        self.out.drain(&mut self.scratch);
        self.err.drain(&mut self.scratch);
        self.feed_stdin();
    }

    fn feed_stdin(&mut self) {
        let Some(fd) = &self.stdin else { return };
        let data = self.stdin_data;
        if self.stdin_off < data.len() {
            // SAFETY: writing from a live slice to an owned non-blocking fd.
            let n = unsafe {
                libc::write(
                    fd.as_raw_fd(),
                    data[self.stdin_off..].as_ptr().cast(),
                    data.len() - self.stdin_off,
                )
            };
            if n > 0 {
                self.stdin_off += n as usize;
            } else if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
            {
                self.stdin = None; // EPIPE: the job closed its stdin.
            }
        }
        if self.stdin_off >= data.len() {
            self.stdin = None; // EOF for the job.
        }
    }

    /// Reads to EOF once every writer is gone, for at most [`FINAL_DRAIN_MS_MAX`] (a write end
    /// may have been passed outside the job).
    fn drain_to_eof(&mut self) {
        let until = Instant::now() + Duration::from_millis(FINAL_DRAIN_MS_MAX);
        while (self.out.fd.is_some() || self.err.fd.is_some()) && Instant::now() < until {
            let mut pfds: Vec<libc::pollfd> = [self.out.fd.as_ref(), self.err.fd.as_ref()]
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
            self.out.drain(&mut self.scratch);
            self.err.drain(&mut self.scratch);
        }
    }

    /// The captured stdout and stderr.
    fn finish(self) -> (CapturedOutput, CapturedOutput) {
        (self.out.capture.finish(), self.err.capture.finish())
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

/// The /proc/PID/stat fields vigil uses.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcStat {
    pub(crate) state: u8,
    pub(crate) ppid: i32,
    pub(crate) pgrp: i32,
    pub(crate) session: i32,
    /// Clock ticks after boot at which the process started.
    pub(crate) start_ticks: u64,
}

pub(crate) fn proc_stat(pid: i32) -> Option<ProcStat> {
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
    let candidate = |p: i32| {
        proc_stat(p)
            .filter(|st| p != me && st.state != b'Z' && st.start_ticks >= since_ticks)
            .map(|st| (p, st))
    };
    let listed = all_pids();
    let mut table: Vec<(i32, ProcStat)> = listed.iter().filter_map(|&p| candidate(p)).collect();
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
            require_enforcement: config.require_enforcement,
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
        let kill_complete = h.has_cgroups();
        let mut limits_out = vec![
            self.wall_enforcement(limits.timeout, kill_complete),
            self.cpu_enforcement(limits.cpu_time, kill_complete),
            self.memory_enforcement(limits.memory_bytes),
            self.pids_enforcement(limits.pids),
        ];
        limits_out.push(LimitEnforcement {
            limit: "output",
            requested: Some(size_text(limits.max_output_bytes)),
            strength: Strength::Supervisor,
            held: true,
            mechanism: format!(
                "vigil's supervisor keeps the first and last {} per stream in its own buffer; the rest is counted and dropped",
                size_text(limits.max_output_bytes / 2)
            ),
            not_held_reason: None,
        });
        Enforcement {
            mode: h.mode.as_str(),
            placement: None,
            kill: self.kill_description(),
            kill_complete,
            accounting: self.accounting_description(),
            limits: limits_out,
        }
    }

    fn kill_description(&self) -> String {
        let h = &self.host;
        match h.mode {
            CgroupMode::V2 | CgroupMode::Hybrid if h.cgroup_kill => "vigil writes pids.max=0 and cgroup.kill; the kernel kills every process in the job's group, and any it forks meanwhile; vigil waits for cgroup.events populated=0".to_string(),
            CgroupMode::V2 | CgroupMode::Hybrid if h.cgroup_freeze => {
                "vigil writes pids.max=0 and cgroup.freeze=1 (the kernel stops every process of the group), SIGKILLs every task, thaws, then waits for cgroup.events populated=0".to_string()
            }
            _ if h.v1.freezer.is_some() => "vigil writes pids.max=0 and freezer FROZEN (the kernel stops every process of the group), SIGKILLs every task, thaws, then waits for cgroup.procs to empty".to_string(),
            CgroupMode::None => format!(
                "vigil SIGKILLs the session and process group, their descendants and processes carrying {JOB_MARKER_ENV}, in rounds until none is left (best effort: a process that clears its environment, calls setsid and is orphaned escapes)"
            ),
            _ => "vigil SIGKILLs every process in cgroup.procs, in rounds until it is empty (no freezer, no cgroup.kill: a fast forker can race it)".to_string(),
        }
    }

    fn accounting_description(&self) -> String {
        let h = &self.host;
        if h.mode == CgroupMode::None {
            return format!("no group: vigil samples the job's processes it can find every {NONE_SAMPLE_INTERVAL_MS} ms or less (CPU clocks; VmHWM and VmRSS from /proc/PID/status), and the root's rusage for CPU; a lower bound");
        }
        let cpu = if h.unified_parent.is_none() && h.v1.cpuacct.is_some() {
            "cpuacct.usage"
        } else {
            "cpu.stat usage_usec"
        };
        let mem = if h.v1.memory.is_some() {
            "memory.max_usage_in_bytes, memory.oom_control oom_kill"
        } else if self.v2_controller("memory") {
            "memory.peak, memory.events oom_kill"
        } else {
            "no memory accounting"
        };
        format!("{cpu}; {mem}")
    }

    fn v2_controller(&self, c: &str) -> bool {
        self.host.mode == CgroupMode::V2 && self.host.v2_controllers.iter().any(|x| x == c)
    }

    /// Why the kill may miss a process, for limits whose end is the kill.
    fn incomplete_kill_reason() -> String {
        format!("no cgroup holds the job: the kill finds its processes by session, process group, descendants and {JOB_MARKER_ENV}, and one that leaves all of them survives")
    }

    fn wall_enforcement(&self, timeout: Option<Duration>, kill_complete: bool) -> LimitEnforcement {
        LimitEnforcement {
            limit: "wall",
            requested: timeout.map(duration_text),
            strength: req_strength(timeout.is_some(), Strength::Supervisor),
            held: timeout.is_none() || kill_complete,
            mechanism: "vigil's supervisor: monotonic deadline (ppoll timeout), then the kill path; if vigil dies, the root is killed (PDEATHSIG) and the rest runs on until a later vigil sweeps it".into(),
            not_held_reason: (timeout.is_some() && !kill_complete)
                .then(Self::incomplete_kill_reason),
        }
    }

    fn cpu_enforcement(&self, cpu: Option<Duration>, kill_complete: bool) -> LimitEnforcement {
        let source = if self.host.has_cgroups() {
            "the group's CPU usage"
        } else {
            "the CPU clocks of the job's processes it can find"
        };
        LimitEnforcement {
            limit: "cpu_time",
            requested: cpu.map(duration_text),
            strength: req_strength(cpu.is_some(), Strength::Supervisor),
            held: cpu.is_none() || kill_complete,
            mechanism: format!("vigil's supervisor reads {source} every {CPU_POLL_INTERVAL_MS} ms, then the kill path; RLIMIT_CPU on each process (the budget rounded up to whole seconds, plus one) is a kernel-held backstop that stays if vigil dies"),
            not_held_reason: (cpu.is_some() && !kill_complete).then(|| {
                format!("{}; CPU time of processes it cannot find is not counted", Self::incomplete_kill_reason())
            }),
        }
    }

    fn memory_enforcement(&self, bytes: Option<u64>) -> LimitEnforcement {
        let h = &self.host;
        let (strength, mechanism, reason) = if let Some(m) = &h.v1.memory {
            if m.join("memory.memsw.limit_in_bytes").exists() {
                (
                    Strength::Kernel,
                    "memory.limit_in_bytes + memory.memsw.limit_in_bytes (no swap)".to_string(),
                    None,
                )
            } else if host_has_swap() {
                (
                    Strength::Kernel,
                    "memory.limit_in_bytes".to_string(),
                    Some(
                        "swap is not limited (no memsw accounting: boot with swapaccount=1)"
                            .to_string(),
                    ),
                )
            } else {
                (
                    Strength::Kernel,
                    "memory.limit_in_bytes (no swap configured)".to_string(),
                    None,
                )
            }
        } else if self.v2_controller("memory") {
            (
                Strength::Kernel,
                "memory.max + memory.swap.max=0 + memory.oom.group".to_string(),
                None,
            )
        } else if h.mode == CgroupMode::None {
            (
                Strength::KernelPerProcess,
                "RLIMIT_AS on each process (virtual address space)".to_string(),
                Some("no cgroup memory controller: RLIMIT_AS bounds each process's address space, not the job's memory".to_string()),
            )
        } else {
            (
                Strength::NotEnforced,
                "none".to_string(),
                Some(self.missing_controller_reason("memory")),
            )
        };
        let requested = bytes.is_some();
        LimitEnforcement {
            limit: "memory",
            requested: bytes.map(size_text),
            strength: req_strength(requested, strength),
            held: !requested || reason.is_none(),
            mechanism,
            not_held_reason: reason.filter(|_| requested),
        }
    }

    fn pids_enforcement(&self, pids: Option<u64>) -> LimitEnforcement {
        let h = &self.host;
        let (strength, mechanism, reason) = if h.v1.pids.is_some() || self.v2_controller("pids") {
            (Strength::Kernel, "pids.max".to_string(), None)
        } else if h.mode == CgroupMode::None {
            (
                Strength::NotEnforced,
                "none".to_string(),
                Some(
                    "no cgroup pids controller (RLIMIT_NPROC counts per user, and root ignores it)"
                        .to_string(),
                ),
            )
        } else {
            (
                Strength::NotEnforced,
                "none".to_string(),
                Some(self.missing_controller_reason("pids")),
            )
        };
        let requested = pids.is_some();
        LimitEnforcement {
            limit: "pids",
            requested: pids.map(|n| n.to_string()),
            strength: req_strength(requested, strength),
            held: !requested || reason.is_none(),
            mechanism,
            not_held_reason: reason.filter(|_| requested),
        }
    }

    /// Why a cgroup mode has no `controller`: the detection notes that name it, if any.
    fn missing_controller_reason(&self, controller: &str) -> String {
        let notes: Vec<&str> = self
            .host
            .notes
            .iter()
            .filter(|n| n.contains(controller) || n.contains("subtree_control"))
            .map(String::as_str)
            .collect();
        if notes.is_empty() {
            format!("no {controller} controller is available to vigil's groups here")
        } else {
            format!(
                "no {controller} controller in vigil's groups: {}",
                notes.join("; ")
            )
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
            result.status = e.status();
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
        if self.require_enforcement {
            if let Some(why) = result.enforcement.refusal() {
                return Err(ExecError::Unenforceable(why));
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
            // A backstop only: rounded up plus a second, so the supervisor's check, which holds
            // the budget to the millisecond, fires first.
            cmd.rlimit_cpu_s = Some(cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0) + 1);
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

/// Orphans handed to vigil as subreaper (and any child of its main thread): the kernel hands
/// an orphan to the subreaper's first live thread, the main thread, so one file holds them all
/// (/proc/self/task/<pid>/children) however many threads vigil runs.
pub(crate) fn own_orphans() -> Vec<i32> {
    let path = format!("/proc/self/task/{}/children", std::process::id());
    fs::read_to_string(path)
        .map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Pids of vigil's own children (threads included), from /proc/self/task/*/children.
pub(crate) fn own_children() -> Vec<i32> {
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
    /// contract fields first, then what vigil adds (pids limit, which limit fired, the requested
    /// limits not held as `<limit> limit <value> not held: <reason>`, enforcement).
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
            "limits_not_held": self.enforcement.not_held_messages(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strength_labels_match_their_serialized_names() {
        for s in [
            Strength::NotRequested,
            Strength::Kernel,
            Strength::KernelPerProcess,
            Strength::Supervisor,
            Strength::NotEnforced,
        ] {
            assert_eq!(serde_json::to_value(s).ok(), Some(s.as_str().into()));
        }
    }

    #[test]
    fn requested_values_read_the_way_people_write_them() {
        assert_eq!(size_text(64 << 20), "64M");
        assert_eq!(size_text(1 << 30), "1G");
        assert_eq!(size_text(512 << 10), "512K");
        assert_eq!(size_text(1000), "1000");
        assert_eq!(size_text(0), "0");
        assert_eq!(duration_text(Duration::from_secs(2)), "2s");
        assert_eq!(duration_text(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_text(Duration::from_millis(0)), "0ms");
    }

    #[test]
    fn only_requested_limits_not_held_are_reported_and_refused() {
        let limit = |name, requested: Option<&str>, strength, held| LimitEnforcement {
            limit: name,
            requested: requested.map(str::to_string),
            strength,
            held,
            mechanism: "m".into(),
            not_held_reason: (!held).then(|| "why".to_string()),
        };
        let mut e = Enforcement {
            mode: "none",
            placement: None,
            kill: String::new(),
            kill_complete: false,
            accounting: String::new(),
            limits: vec![
                limit("wall", None, Strength::NotRequested, true),
                limit("memory", Some("64M"), Strength::KernelPerProcess, false),
                limit("output", Some("1M"), Strength::Supervisor, true),
            ],
        };
        assert_eq!(
            e.not_held_messages(),
            vec!["memory limit 64M not held: why".to_string()]
        );
        assert!(e
            .refusal()
            .is_some_and(|r| r.contains("memory limit 64M not held: why")));
        e.limits.remove(1);
        assert!(e.not_held_messages().is_empty());
        assert_eq!(e.refusal(), None);
    }
}
