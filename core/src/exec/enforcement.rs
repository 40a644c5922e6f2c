//! Who holds each limit of a job on this host: the kernel (cgroup limits), the kernel per
//! process (RLIMITs), or vigil's supervisor while vigil lives (deadline, CPU budget, output).
use std::fs;
use std::time::Duration;

use serde::Serialize;

use super::host::{CgroupMode, Host};
use super::identity::RunAs;
use super::spawn::JOB_MARKER_ENV;
pub use super::text::{duration_text, size_text};
use super::Limits;

/// How often the supervisor checks the CPU budget against the group's usage.
pub const CPU_POLL_INTERVAL_MS: u64 = 10;
/// Mode `none`: how often the job's processes are sampled (CPU clocks, memory) when no
/// CPU budget asks for [`CPU_POLL_INTERVAL_MS`].
pub const NONE_SAMPLE_INTERVAL_MS: u64 = 50;

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
        if self.limit.starts_with("sandbox") {
            return Some(format!(
                "{} rule of sandbox {} not held: {}",
                self.limit,
                self.requested.as_deref().unwrap_or("?"),
                self.not_held_reason.as_deref().unwrap_or(&self.mechanism)
            ));
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
    /// The user a process job runs as (`None` for a file job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as: Option<RunAs>,
    /// What the job can do that no limit above stops ([`ROOT_LEAVES_CGROUP_NOTICE`]); shown
    /// by `vigil run` as `vigil: notice: ...`. Not a limit: `require_enforcement` does not
    /// refuse a job for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
}

/// Why a job running as root outside the sandbox is not confined to its cgroup (the job's
/// record and `vigil doctor` say so).
pub const ROOT_LEAVES_CGROUP_NOTICE: &str = "the job runs as root and no sandbox keeps it in its cgroup: it can write its own pid into cgroup.procs at the top of the cgroup hierarchy, or start a process there with clone3(CLONE_INTO_CGROUP), and leave its cgroup, out of reach of its memory and pids limits and of the kill; run it as another user (--user) or in a sandbox (workspace, strict) on a kernel with Landlock and seccomp";

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

/// What decides who holds each limit: the host's cgroup layout and, for memory, two facts about
/// swap. [`HostFacts::enforcement`] is a pure function of these and the requested limits.
#[derive(Debug, Clone, Copy)]
pub struct HostFacts<'a> {
    /// What the host offers and what is in use.
    pub host: &'a Host,
    /// The v1 memory hierarchy accounts swap (`memory.memsw.limit_in_bytes` exists).
    pub memsw: bool,
    /// The machine has a swap area (read only where it matters: v1 memory without memsw).
    pub swap: bool,
}

impl<'a> HostFacts<'a> {
    /// The facts of this machine for `host`.
    pub fn read(host: &'a Host) -> HostFacts<'a> {
        let memsw = host
            .v1
            .memory
            .as_ref()
            .is_some_and(|m| m.join("memory.memsw.limit_in_bytes").exists());
        let swap = host.v1.memory.is_some() && !memsw && host_has_swap();
        HostFacts { host, memsw, swap }
    }

    /// How `limits` would be held with these facts.
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
            run_as: None,
            notices: Vec::new(),
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
        let (strength, mechanism, reason) = if h.v1.memory.is_some() {
            if self.memsw {
                (
                    Strength::Kernel,
                    "memory.limit_in_bytes + memory.memsw.limit_in_bytes (no swap)".to_string(),
                    None,
                )
            } else if self.swap {
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
}

#[cfg(test)]
mod tests;
