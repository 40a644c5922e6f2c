//! The vocabulary every layer shares: how a job ended ([`JobStatus`]), where it stands
//! ([`JobState`]), which limit ended it ([`LimitHit`]), the limits it asked for ([`Limits`])
//! and what it used ([`Usage`]). No `std`, no allocation: the log, the executor, the runtime,
//! the views and the C API all import these from here, and this module imports nothing of
//! theirs.
//!
//! **The postcard encoding of these types is frozen.** The log stores [`JobStatus`],
//! [`Limits`] and [`Usage`] inside its records, and postcard encodes an enum by its variant
//! index and a struct by its field order: reordering variants or fields, or inserting one
//! anywhere but the end of an enum, changes how old logs decode. The tests
//! `job_status_variant_order_is_frozen` and `model_encoding_is_frozen` pin the bytes. Names
//! (`completed`, `timed_out`, ...) are what the CLI, the protocol and JSON use; postcard never
//! sees them.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How a job ended. Variant order is the log's encoding (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// The root process exited with code 0.
    Completed,
    /// It exited non-zero, died of a signal, or could not be started.
    Failed,
    /// The wall deadline or the CPU-time budget passed; the whole group was killed.
    TimedOut,
    /// The kernel killed a process of the job for exceeding the memory limit.
    OomKilled,
    /// The request was refused before anything ran (bad arguments, escaping path, policy).
    Rejected,
    /// vigil stopped before the job ended (recorded on restart, or a cancelled job).
    Interrupted,
}

/// Process exit code of a job that was rejected (nothing ran).
pub const EXIT_REJECTED: u8 = 2;
/// Process exit code of an interrupted job.
pub const EXIT_INTERRUPTED: u8 = 3;
/// Process exit code of a job that ran out of time (as timeout(1)).
pub const EXIT_TIMED_OUT: u8 = 124;
/// Process exit code of an OOM-killed job (128 + SIGKILL).
pub const EXIT_OOM_KILLED: u8 = 137;

impl JobStatus {
    /// Every status, in declaration order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::TimedOut,
        JobStatus::OomKilled,
        JobStatus::Rejected,
        JobStatus::Interrupted,
    ];

    /// The status with this name (`completed`, `timed_out`, ...).
    pub fn from_name(name: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// The status's name in the CLI and protocol.
    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::TimedOut => "timed_out",
            JobStatus::OomKilled => "oom_killed",
            JobStatus::Rejected => "rejected",
            JobStatus::Interrupted => "interrupted",
        }
    }

    /// The exit code of a `vigil` process that ran one job: 0 only for `completed` with exit
    /// code 0; a failed (or exit-code-less completed) job gives its own code when that is
    /// 1..=125, else 1; rejected 2, interrupted 3, timed out 124, OOM-killed 137.
    pub fn process_exit_code(self, exit_code: Option<i32>) -> u8 {
        match self {
            JobStatus::Completed if exit_code == Some(0) => 0,
            JobStatus::Completed | JobStatus::Failed => exit_code
                .filter(|c| (1..=125).contains(c))
                .map_or(1, |c| c as u8),
            JobStatus::Rejected => EXIT_REJECTED,
            JobStatus::Interrupted => EXIT_INTERRUPTED,
            JobStatus::TimedOut => EXIT_TIMED_OUT,
            JobStatus::OomKilled => EXIT_OOM_KILLED,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job stands in the index: running until its end is logged, then how it ended.
/// Spelled as one name (`running`, `completed`, ...) wherever it is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobState {
    /// Started; its end is not logged yet.
    Running,
    /// Ended so.
    Ended(JobStatus),
}

impl JobState {
    /// `running` and every status name, the values a status filter accepts.
    pub const NAMES: [&'static str; 7] = {
        let mut names = ["running"; 7];
        let mut i = 0;
        while i < JobStatus::ALL.len() {
            names[i + 1] = JobStatus::ALL[i].as_str();
            i += 1;
        }
        names
    };

    /// The state with this name (`running`, `completed`, ...).
    pub fn from_name(name: &str) -> Option<JobState> {
        if name == "running" {
            return Some(JobState::Running);
        }
        JobStatus::from_name(name).map(JobState::Ended)
    }

    /// The state a status filter names, or an error that names the valid ones.
    pub fn parse(name: &str) -> Result<JobState, UnknownState<'_>> {
        JobState::from_name(name).ok_or(UnknownState(name))
    }

    /// The state's name (`running`, `completed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Ended(s) => s.as_str(),
        }
    }
}

/// A status name that is not one: its message names the valid ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownState<'a>(pub &'a str);

impl fmt::Display for UnknownState<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown job status {:?} (valid: ", self.0)?;
        for (i, name) in JobState::NAMES.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for JobState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for JobState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = JobState;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a job state name (running, completed, failed, ...)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<JobState, E> {
                JobState::from_name(v).ok_or_else(|| E::unknown_variant(v, &JobState::NAMES))
            }
        }
        d.deserialize_str(Name)
    }
}

/// The limit that ended a job, when one did. Not stored in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitHit {
    /// The wall-clock deadline passed.
    Wall,
    /// The CPU-time budget was used up.
    CpuTime,
    /// The memory limit was exceeded.
    Memory,
    /// The job was cancelled.
    Cancelled,
}

impl LimitHit {
    /// Every limit hit, in declaration order.
    pub const ALL: [LimitHit; 4] = [
        LimitHit::Wall,
        LimitHit::CpuTime,
        LimitHit::Memory,
        LimitHit::Cancelled,
    ];

    /// The name shown in `limit_hit` (`wall`, `cpu_time`, `memory`, `cancelled`).
    pub fn as_str(self) -> &'static str {
        match self {
            LimitHit::Wall => "wall",
            LimitHit::CpuTime => "cpu_time",
            LimitHit::Memory => "memory",
            LimitHit::Cancelled => "cancelled",
        }
    }

    /// The limit hit with this name.
    pub fn from_name(name: &str) -> Option<LimitHit> {
        LimitHit::ALL.into_iter().find(|l| l.as_str() == name)
    }
}

/// Limits of a job as requested on the wire and stored in the log; `None` where no limit was
/// set. Field order is the log's encoding (see the module doc); field names are the wire's
/// (`{timeout_ms, cpu_time_ms, memory_bytes, pids, max_output_bytes}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock limit in ms: the job is killed when it runs longer.
    pub timeout_ms: Option<u64>,
    /// CPU-time budget in ms, summed over all the job's processes.
    pub cpu_time_ms: Option<u64>,
    /// Memory limit of the job's cgroup, in bytes.
    pub memory_bytes: Option<u64>,
    /// Most processes and threads the job may have at once.
    pub pids: Option<u64>,
    /// Most bytes kept of standard output, and of standard error (each on its own); what is
    /// written beyond is counted, not kept.
    pub max_output_bytes: Option<u64>,
}

/// Resources a job used, read from its cgroup. Field order is the log's encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time of all the job's processes, in µs; 0 when unmeasured.
    pub cpu_usage_us: u64,
    /// Peak memory of the job's cgroup, in bytes; 0 when unmeasured.
    pub memory_peak_bytes: u64,
    /// Wall-clock time of the job, in ms.
    pub wall_ms: u64,
    /// Processes the kernel's OOM killer killed (1 when the job ended `oom_killed`, else 0).
    pub oom_kills: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `JobStatus` is stored by variant index: the order of its variants is frozen.
    #[test]
    fn job_status_variant_order_is_frozen() {
        let names = [
            "completed",
            "failed",
            "timed_out",
            "oom_killed",
            "rejected",
            "interrupted",
        ];
        for (index, status) in JobStatus::ALL.into_iter().enumerate() {
            let mut buf = [0u8; 4];
            let bytes = postcard::to_slice(&status, &mut buf).unwrap();
            assert_eq!(bytes, &[index as u8], "{status:?}");
            assert_eq!(status.as_str(), names[index]);
        }
    }

    #[test]
    fn model_encoding_is_frozen() {
        assert!(postcard::from_bytes::<JobStatus>(&[6]).is_err());
        let mut buf = [0u8; 64];
        let limits = Limits {
            timeout_ms: Some(1500),
            cpu_time_ms: None,
            memory_bytes: Some(1 << 20),
            pids: Some(64),
            max_output_bytes: None,
        };
        let out = postcard::to_slice(&limits, &mut buf).unwrap();
        assert_eq!(out, &[1, 0xdc, 0x0b, 0, 1, 0x80, 0x80, 0x40, 1, 64, 0]);
        assert_eq!(postcard::from_bytes::<Limits>(out).ok(), Some(limits));

        let usage = Usage {
            cpu_usage_us: 300,
            memory_peak_bytes: 4096,
            wall_ms: 7,
            oom_kills: 1,
        };
        let out = postcard::to_slice(&usage, &mut buf).unwrap();
        assert_eq!(out, &[0xac, 0x02, 0x80, 0x20, 7, 1]);
        assert_eq!(postcard::from_bytes::<Usage>(out).ok(), Some(usage));
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_none() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::from_name(s.as_str()), Some(s));
            assert_eq!(JobState::from_name(s.as_str()), Some(JobState::Ended(s)));
        }
        for n in JobState::NAMES {
            assert_eq!(JobState::from_name(n).map(JobState::as_str), Some(n));
        }
        for l in LimitHit::ALL {
            assert_eq!(LimitHit::from_name(l.as_str()), Some(l));
        }
        assert_eq!(JobStatus::from_name("running"), None);
        assert_eq!(JobState::from_name("done"), None);
        assert_eq!(LimitHit::from_name("pids"), None);
        let mut text = heapless::String::<160>::new();
        core::fmt::write(
            &mut text,
            format_args!("{}", JobState::parse("done").unwrap_err()),
        )
        .unwrap();
        assert_eq!(
            text.as_str(),
            "unknown job status \"done\" (valid: running, completed, failed, timed_out, \
             oom_killed, rejected, interrupted)"
        );
        assert_eq!(JobState::parse("running"), Ok(JobState::Running));
    }

    #[test]
    fn only_completed_with_exit_code_zero_exits_zero() {
        assert_eq!(JobStatus::Completed.process_exit_code(Some(0)), 0);
        assert_eq!(JobStatus::Completed.process_exit_code(None), 1);
        assert_eq!(JobStatus::Failed.process_exit_code(Some(0)), 1);
        assert_eq!(JobStatus::Failed.process_exit_code(Some(7)), 7);
        assert_eq!(JobStatus::Failed.process_exit_code(Some(126)), 1);
        assert_eq!(JobStatus::Failed.process_exit_code(Some(-1)), 1);
        assert_eq!(JobStatus::Failed.process_exit_code(None), 1);
        assert_eq!(JobStatus::Rejected.process_exit_code(None), 2);
        assert_eq!(JobStatus::Interrupted.process_exit_code(Some(0)), 3);
        assert_eq!(JobStatus::TimedOut.process_exit_code(None), 124);
        assert_eq!(JobStatus::OomKilled.process_exit_code(None), 137);
        for s in JobStatus::ALL {
            let zero = s.process_exit_code(Some(0)) == 0 || s.process_exit_code(None) == 0;
            assert_eq!(zero, s == JobStatus::Completed, "{s}");
        }
    }
}
