//! The isolated executor: runs one job — a process tree or a file operation — under limits
//! held by the kernel (memory, pids) or by vigil's supervisor (wall time, CPU time, output),
//! and reports what happened and who held each limit ([`enforcement::Strength`]).
//!
//! Layers, bottom up:
//! - [`host`]: what this machine offers (cgroup mode, delegation, clone3/pidfd/openat2).
//! - [`cgroup`]: one leaf per job in every hierarchy in use; limits, kill, usage, stale sweep.
//! - [`spawn`]: the root process, placed in its leaf before it runs, with a clean environment.
//! - [`job`]: the [`Executor`]: from a request to a settled [`JobResult`] ([`result`]).
//! - [`enforcement`]: who holds each limit on this host.
//! - `supervise`: the supervision loop (deadline, CPU budget, output capture through `pipes`,
//!   kill, accounting); [`cancel`]: ending a job early from another thread.
//! - `reaper`: a job's processes found through /proc where no cgroup holds them, and the
//!   zombies of finished jobs reaped.
//! - `meter`: mode `none`'s own accounting of a job's processes (CPU clocks, VmHWM, VmRSS).
//! - [`fsroot`]: path resolution confined beneath a root directory.
//! - [`dumpable`]: vigil made non-dumpable, out of reach of same-uid jobs.
//! - [`fdtable`]: the descriptor table grown once at start-up, not while a job is set up.
//! - [`identity`]: the user a process job runs as (`--user`), resolved before the fork.
//! - [`capability`]: the capability trait and the built-ins `shell`, `exec`, `file.read`,
//!   `file.write`.
//!
//! This module knows nothing of the WAL, sessions or the CLI: the runtime records what
//! [`JobResult`] says, the CLI prints it.
pub mod cancel;
pub mod capability;
pub(crate) mod caps;
pub mod cgroup;
pub mod dumpable;
pub mod enforcement;
pub mod fdtable;
pub mod fsroot;
pub mod host;
pub mod identity;
pub mod job;
mod meter;
pub mod output;
pub mod peer;
mod pipes;
mod proctable;
mod reaper;
pub mod result;
pub mod sandbox;
pub mod spawn;
pub(crate) mod supervise;
mod text;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use capability::{Capability, CapabilityRegistry, JobContext};
pub use host::{CgroupMode, Host, HostConfig};
pub use job::{CancelToken, Enforcement, Executor, ExecutorConfig, JobResult};
pub use spawn::ProcessSpec;

use crate::model::{self, JobStatus};

/// Output kept per stream when the request sets no cap.
pub const OUTPUT_BYTES_DEFAULT: u64 = 1 << 20;
/// Largest output cap a request may ask for (per stream).
pub const OUTPUT_BYTES_MAX: u64 = 64 << 20;

/// Limits of one job. `None` means "not limited" for that resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline from the start of the job.
    pub timeout: Option<Duration>,
    /// CPU time of all the job's processes together.
    pub cpu_time: Option<Duration>,
    /// Memory of the job's group (no swap).
    pub memory_bytes: Option<u64>,
    /// Processes and threads alive in the group at once.
    pub pids: Option<u64>,
    /// Bytes kept per output stream (head and tail).
    pub max_output_bytes: u64,
    /// The sandbox of a process job (mode, extra writable and denied paths).
    pub sandbox: sandbox::SandboxRequest,
    /// The user a process job runs as; `None`: the executor's (`--user` of a server), else
    /// vigil's own.
    pub user: Option<identity::UserSpec>,
}

impl Limits {
    /// The wire and log form of these limits (milliseconds; the output cap always set).
    pub fn to_model(&self) -> model::Limits {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64);
        model::Limits {
            timeout_ms: ms(self.timeout),
            cpu_time_ms: ms(self.cpu_time),
            memory_bytes: self.memory_bytes,
            pids: self.pids,
            max_output_bytes: Some(self.max_output_bytes),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: None,
            cpu_time: None,
            memory_bytes: None,
            pids: None,
            max_output_bytes: OUTPUT_BYTES_DEFAULT,
            sandbox: sandbox::SandboxRequest::default(),
            user: None,
        }
    }
}

/// Longest wall-clock or CPU-time limit a request may set (a day).
pub const TIMEOUT_MS_MAX: u64 = 24 * 3_600 * 1_000;
/// Largest pids limit: the kernel's `PID_MAX_LIMIT` (4 Mi on 64-bit); `pids.max` refuses more.
pub const PIDS_MAX: u64 = 4 << 20;

/// A job's limits as a request states them (the socket protocol, the C API) and as the log
/// keeps them: the one wire [`model::Limits`], in milliseconds, bytes and counts, `None` where
/// the request leaves one out. [`RequestedLimits::check`] is the one range check of every such
/// request.
pub use crate::model::Limits as RequestedLimits;

impl RequestedLimits {
    /// Refuses the first value beyond what vigil or the kernel takes (an hour-long wall time
    /// is fine, a wall time of 2^64 ms cannot be a deadline), naming it.
    pub fn check(&self) -> Result<(), LimitOutOfRange> {
        let bounds = [
            ("timeout_ms", self.timeout_ms, TIMEOUT_MS_MAX),
            ("cpu_time_ms", self.cpu_time_ms, TIMEOUT_MS_MAX),
            ("memory_bytes", self.memory_bytes, u64::MAX),
            ("pids", self.pids, PIDS_MAX),
            ("max_output_bytes", self.max_output_bytes, OUTPUT_BYTES_MAX),
        ];
        match bounds
            .into_iter()
            .find(|(_, v, max)| v.is_some_and(|v| v > *max))
        {
            Some((name, Some(value), max)) => Err(LimitOutOfRange { name, value, max }),
            _ => Ok(()),
        }
    }

    /// `base` with each limit this request states in place of `base`'s.
    pub fn over(&self, base: &Limits) -> Limits {
        let ms = |v: Option<u64>, d: Option<Duration>| v.map(Duration::from_millis).or(d);
        Limits {
            timeout: ms(self.timeout_ms, base.timeout),
            cpu_time: ms(self.cpu_time_ms, base.cpu_time),
            memory_bytes: self.memory_bytes.or(base.memory_bytes),
            pids: self.pids.or(base.pids),
            max_output_bytes: self.max_output_bytes.unwrap_or(base.max_output_bytes),
            sandbox: base.sandbox.clone(),
            user: base.user.clone(),
        }
    }
}

/// A requested limit beyond the largest value taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOutOfRange {
    /// The limit, as requests name it (`pids`, `timeout_ms`, ...).
    pub name: &'static str,
    /// The value asked for.
    pub value: u64,
    /// The largest value taken.
    pub max: u64,
}

impl fmt::Display for LimitOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LimitOutOfRange { name, value, max } = self;
        write!(f, "{name} must be an integer from 0 to {max}, not {value}")
    }
}

impl std::error::Error for LimitOutOfRange {}

/// Everything that can stop a job from being run or supervised, with the context to act on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExecError {
    /// A job id that cannot name a cgroup directory.
    InvalidJobId(String),
    /// The request itself is malformed (bad arguments, NUL bytes, empty argv).
    InvalidRequest(String),
    /// A path escapes the root or is not a regular file: the capability refuses it.
    PathRejected {
        /// The path as the request gave it.
        path: String,
        /// Why it is refused.
        reason: String,
    },
    /// argv[0] was not found in the job's PATH.
    ProgramNotFound {
        /// argv[0].
        program: String,
        /// The PATH searched.
        path: String,
    },
    /// A cgroup interface file or directory operation failed.
    Cgroup {
        /// The file or directory.
        path: PathBuf,
        /// What was being done to it.
        action: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// The group did not empty in time after the kill.
    KillTimeout {
        /// The job's leaf group.
        leaf: String,
        /// Pids still in it.
        remaining: Vec<i32>,
    },
    /// Creating the root process failed at `stage`.
    Spawn {
        /// The job's id.
        job: String,
        /// The step that failed.
        stage: &'static str,
        /// The system's error.
        source: std::io::Error,
    },
    /// Another I/O failure.
    Io {
        /// What was being done, to which path.
        context: String,
        /// The system's error.
        source: std::io::Error,
    },
    /// A limit the policy requires cannot be enforced on this host.
    Unenforceable(String),
    /// The job cannot run as the user it names (unknown, or vigil may not switch to it).
    User(String),
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::InvalidJobId(id) => {
                write!(f, "job id {id:?} must be 1-128 characters of [A-Za-z0-9_-]")
            }
            ExecError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            ExecError::PathRejected { path, reason } => {
                write!(f, "path {path:?} rejected: {reason}")
            }
            ExecError::ProgramNotFound { program, path } => {
                write!(f, "program {program:?} not found in PATH {path:?}")
            }
            ExecError::Cgroup {
                path,
                action,
                source,
            } => write!(f, "cgroup {}: {action}: {source}", path.display()),
            ExecError::KillTimeout { leaf, remaining } => {
                write!(
                    f,
                    "cgroup leaf {leaf}: still {} process(es) after the kill: {remaining:?}",
                    remaining.len()
                )
            }
            ExecError::Spawn { job, stage, source } => write!(
                f,
                "job {job}: starting the process failed while {stage}: {source}"
            ),
            ExecError::Io { context, source } => write!(f, "{context}: {source}"),
            ExecError::Unenforceable(m) => write!(f, "cannot enforce: {m}"),
            ExecError::User(m) => write!(f, "cannot run as the requested user: {m}"),
        }
    }
}

impl std::error::Error for ExecError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecError::Cgroup { source, .. }
            | ExecError::Spawn { source, .. }
            | ExecError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl ExecError {
    /// The status of a job this error ended: `rejected` when the request itself cannot be run
    /// as asked (nothing ran), `failed` otherwise.
    pub fn job_status(&self) -> JobStatus {
        match self {
            ExecError::InvalidJobId(_)
            | ExecError::InvalidRequest(_)
            | ExecError::PathRejected { .. }
            | ExecError::Unenforceable(_)
            | ExecError::User(_) => JobStatus::Rejected,
            _ => JobStatus::Failed,
        }
    }
}
