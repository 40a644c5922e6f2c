//! What the executor says about a finished job.
use super::enforcement::Enforcement;
use super::output::CapturedOutput;

use crate::model::JobStatus;

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
    /// A result with no process in it: a job rejected before anything ran, a file job, or a
    /// process job before its process starts.
    pub fn without_process(
        job_id: &str,
        status: JobStatus,
        error: Option<String>,
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
            error,
            enforcement,
        }
    }
}
