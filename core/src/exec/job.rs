//! The executor: detects the host, then runs one process job at a time per call, from request
//! to settled result. The parts live beside it: who holds each limit ([`super::enforcement`]),
//! the supervision loop (`supervise`), finding and reaping a job's processes
//! (`reaper`), the result ([`super::result`]) and cancellation ([`super::cancel`]).
use std::time::Instant;

use super::cgroup::{self, CgroupLeaf, SweepReport};
use super::enforcement::{HostFacts, ROOT_LEAVES_CGROUP_NOTICE};
use super::host::{CgroupMode, Host, HostConfig};
use super::identity::{RunAs, UserSpec};
use super::reaper::{self, boot_ticks_now};
use super::sandbox::{
    check_cwd, ReadRulesCache, ResolvedSandbox, SandboxConfig, SandboxMode, SandboxRequest,
    TmpSlots, DEFAULT_DENY_READ_HOME,
};
use super::spawn::{self, ChildIds, PreparedCommand, ProcessSpec};
use super::supervise::{supervise, StartedJob};
use super::{ExecError, Limits};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

pub use super::cancel::CancelToken;
pub use super::enforcement::{Enforcement, LimitEnforcement, Strength};
pub use super::enforcement::{CPU_POLL_INTERVAL_MS, NONE_SAMPLE_INTERVAL_MS};
pub use super::result::JobResult;
pub use super::text::{duration_text, size_text};
use crate::model::JobStatus;

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
    /// The job sandbox: default mode, floor, data dir, deny list.
    pub sandbox: SandboxConfig,
    /// The user every process job runs as (a server's `--user`); a job that names another
    /// user is refused. `None`: a job's own `user`, else vigil's.
    pub user: Option<UserSpec>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            host: HostConfig::default(),
            subreaper: true,
            require_enforcement: false,
            sandbox: SandboxConfig::default(),
            user: None,
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

/// The sandbox a job asks for, with the credentials beneath the home of the user it switches
/// to, if any, added to its deny list ([`DEFAULT_DENY_READ_HOME`]); for a job that runs as
/// root, `/dev` too ([`ROOT_DENY_READ`]).
fn job_sandbox<'a>(limits: &'a Limits, user: Option<&RunAs>) -> Cow<'a, SandboxRequest> {
    let home = user.filter(|u| u.switches()).and_then(|u| u.home.as_ref());
    let root = user.is_some_and(|u| u.uid == 0);
    if home.is_none() && !root {
        return Cow::Borrowed(&limits.sandbox);
    }
    let mut req = limits.sandbox.clone();
    if let Some(home) = home {
        req.deny_read
            .extend(DEFAULT_DENY_READ_HOME.iter().map(|p| home.join(p)));
    }
    if root {
        req.deny_read
            .extend(ROOT_DENY_READ.iter().map(PathBuf::from));
    }
    Cow::Owned(req)
}

/// What holds a sandboxed root job to its sandbox beyond Landlock's paths: its capabilities
/// (always emptied) and the root guard of its seccomp filter (where seccomp exists).
fn root_job_rules(r: &ResolvedSandbox, mount_namespace: bool) -> [LimitEnforcement; 3] {
    let requested = Some(r.mode.as_str().to_string());
    let terminals = r.abi >= 1 && mount_namespace;
    [
        LimitEnforcement {
            limit: "sandbox.capabilities",
            requested: requested.clone(),
            strength: Strength::Kernel,
            held: true,
            mechanism: "the job runs as root: its effective, permitted, inheritable and ambient \
                        capabilities are emptied before exec, under no_new_privs (no exec \
                        gives any back), and /dev is denied beyond the usual devices"
                .into(),
            not_held_reason: None,
        },
        LimitEnforcement {
            limit: "sandbox.root_guard",
            requested: requested.clone(),
            strength: if r.seccomp {
                Strength::Kernel
            } else {
                Strength::NotEnforced
            },
            held: r.seccomp,
            mechanism: "seccomp: clone3 and x32 calls refused (ENOSYS), so no process starts in \
                        another cgroup by clone3(CLONE_INTO_CGROUP); prlimit64 that sets another \
                        process's limits refused (EPERM)"
                .into(),
            not_held_reason: (!r.seccomp).then(|| {
                "no seccomp here: a root job can start a process in another cgroup with \
                 clone3(CLONE_INTO_CGROUP) and set the limits of any root process"
                    .to_string()
            }),
        },
        LimitEnforcement {
            limit: TERMINALS_LIMIT,
            requested,
            strength: if terminals {
                Strength::Kernel
            } else {
                Strength::NotEnforced
            },
            held: terminals,
            mechanism: TERMINALS_MECHANISM.into(),
            not_held_reason: (!terminals).then(|| TERMINALS_NOT_HELD.to_string()),
        },
    ]
}

/// The label of a root job's terminals ([`root_job_rules`]).
const TERMINALS_LIMIT: &str = "sandbox.terminals";
const TERMINALS_MECHANISM: &str = "a mount namespace of its own with a devpts instance of its \
     own on /dev/pts: the job sees and opens only the terminals it makes, none of the host's";
const TERMINALS_NOT_HELD: &str = "no mount namespace of its own here (vigil lacks \
     CAP_SYS_ADMIN, the kernel refused one, or no Landlock): the job may open the host's \
     root-owned terminals in /dev/pts, read what is typed there and write to them";

const TERMINALS_MOUNT_STAYED: &str = "another mount of the host's terminals (a devpts \
     mount off /dev/pts) was not seen gone from the job's mount namespace (its mount table could \
     not be read whole, a mount point was too long to name or would not go, or devpts lay \
     stacked too deep): the job runs in vigil's, and may open the host's root-owned terminals, \
     read what is typed there and write to them";

/// What a sandboxed job that runs as root may not read beyond the deny list: `/dev`, where
/// uid 0 owns the disks (whose raw blocks hold every denied file, vigil's log included), the
/// console's screen (`/dev/vcs*`) and the kernel's log; and the root-only parts of `/sys`
/// (firmware tables, debugfs, tracefs). The usual devices stay usable
/// (`/dev/null`, `/dev/zero`, `/dev/tty`, `/dev/urandom`, `/dev/pts`, ...: the sandbox's
/// device rules).
pub const ROOT_DENY_READ: &[&str] = &[
    "/dev",
    "/sys/firmware",
    "/sys/kernel/debug",
    "/sys/kernel/tracing",
];

/// One process job as [`Executor::run_process_in`] was asked to run it.
struct RunInput<'a> {
    job_id: &'a str,
    spec: &'a ProcessSpec,
    limits: &'a Limits,
    root: Option<&'a Path>,
    /// The sandbox rules the record's labels were judged from, for this root.
    resolved: Option<ResolvedSandbox>,
    started: Instant,
    cancel: Option<&'a CancelToken>,
}

/// Runs jobs on this host. Cheap to share between threads (`&Executor` is all a job needs).
#[derive(Debug)]
pub struct Executor {
    host: Host,
    subreaper: bool,
    require_enforcement: bool,
    pub(super) sandbox: SandboxConfig,
    pub(super) sandbox_reads: ReadRulesCache,
    /// TMPDIRs (and their rulesets) emptied after their job, for later jobs.
    pub(super) sandbox_slots: TmpSlots,
    pub(super) user: Option<UserSpec>,
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
            sandbox: config.sandbox,
            sandbox_reads: ReadRulesCache::default(),
            sandbox_slots: TmpSlots::default(),
            user: config.user,
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

    /// Kills what is left of a job whose vigil instance died: its processes that no cgroup
    /// holds, found by the job's marker variable; returns their pids. `job_id` is the id the job
    /// was run under. A process that cleared its environment cannot be found this way: only
    /// cgroup modes hold such a process (and [`Executor::sweep_stale`] kills those).
    pub fn kill_orphans(&self, job_id: &str) -> Vec<i32> {
        reaper::kill_orphans(job_id)
    }

    /// The paths `file.read` and `file.write` must refuse for a job with `limits`: the
    /// sandbox's deny list, the data dir and the request's `deny_read`, with the credentials
    /// beneath the home of the user it switches to; none with sandbox `off`.
    pub fn file_denied(&self, limits: &Limits) -> Result<Vec<std::path::PathBuf>, ExecError> {
        let user = self.job_user(limits)?;
        let req = job_sandbox(limits, Some(&user));
        Ok(self.sandbox.file_denied(Some(&req)))
    }

    /// How `limits` would be held on this host (before anything runs; also what `doctor` says).
    pub fn enforcement(&self, limits: &Limits) -> Enforcement {
        self.enforcement_for(limits, None, true)
    }

    /// How a job rooted at `root` would be held: the limits, and for a process job (`shell`,
    /// `exec`) each rule of its sandbox, judged against that root (a denied path beneath it
    /// cannot be denied).
    pub fn enforcement_for(
        &self,
        limits: &Limits,
        root: Option<&Path>,
        process: bool,
    ) -> Enforcement {
        self.enforcement_resolved(limits, root, process).0
    }

    /// [`Executor::enforcement_for`], with the sandbox rules it judged (a process job's), for
    /// the job to be given exactly those.
    fn enforcement_resolved(
        &self,
        limits: &Limits,
        root: Option<&Path>,
        process: bool,
    ) -> (Enforcement, Option<ResolvedSandbox>) {
        let mut e = HostFacts::read(&self.host).enforcement(limits);
        let mut resolved = None;
        if process {
            // A job refused for its user runs as no one: no user, no notice.
            let user = self.job_user(limits).ok();
            let sandbox = job_sandbox(limits, user.as_ref());
            let (rules, confines_writes, judged) = self.sandbox_judged(Some(&sandbox), root);
            e.limits.extend(rules);
            if let (Some(r), Some(user)) = (&judged, &user) {
                if user.uid == 0 && r.mode != SandboxMode::Off {
                    e.limits
                        .extend(root_job_rules(r, self.host.mount_namespace));
                }
            }
            resolved = judged;
            if let Some(user) = user {
                if user.uid == 0 && self.host.has_cgroups() && !confines_writes {
                    e.notices.push(ROOT_LEAVES_CGROUP_NOTICE.to_string());
                }
                e.run_as = Some(user);
            }
        } else if let Ok(user) = self.job_user(limits) {
            // A file job is done by a thread of vigil's as this user.
            e.run_as = Some(user);
        }
        (e, resolved)
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
        self.run_process_in(job_id, spec, limits, None, cancel)
    }

    /// [`Executor::run_process_cancellable`] for a job rooted at `root`: its `cwd` must lie
    /// beneath it (else `rejected`) and a sandbox lets it write there. Without a root, the
    /// sandbox's writable directory is the job's cwd (or vigil's own).
    pub fn run_process_in(
        &self,
        job_id: &str,
        spec: &ProcessSpec,
        limits: &Limits,
        root: Option<&Path>,
        cancel: Option<&CancelToken>,
    ) -> JobResult {
        let started = Instant::now();
        let (enforcement, resolved) = self.enforcement_resolved(limits, root, true);
        let mut result = JobResult::without_process(job_id, JobStatus::Failed, None, enforcement);
        if root.is_some() && resolved.is_none() {
            // The sandbox's rules for this root could not be judged, so the record could not
            // say who holds them: the job does not run. The error is its own, or, when the
            // root resolves now (it changed meanwhile), that.
            let user = self.job_user(limits).ok();
            let why = match self
                .sandbox
                .resolve(Some(&job_sandbox(limits, user.as_ref())), root)
            {
                Err(e) => e.to_string(),
                Ok(_) => "the job's root changed while its sandbox was being judged".to_string(),
            };
            result.status = JobStatus::Rejected;
            result.error = Some(why);
            result.wall_ms = started.elapsed().as_millis() as u64;
            return result;
        }
        let run = RunInput {
            job_id,
            spec,
            limits,
            root,
            // Judged against the job's root: the rules its sandbox gets when that is where
            // it runs (without a root, the sandbox's directory is its cwd, resolved anew).
            resolved: resolved.filter(|_| root.is_some()),
            started,
            cancel,
        };
        if let Err(e) = self.run_inner(run, &mut result) {
            result.status = e.job_status();
            result.error = Some(e.to_string());
        }
        result.wall_ms = started.elapsed().as_millis() as u64;
        result
    }

    // Longer than 70 lines on purpose: a process job's set-up in its required order (checks,
    // sandbox, command, cgroup leaf, spawn, supervision); each step uses what the ones before
    // it made and some must outlive the job (the sandbox's TMPDIR, the leaf), so it stays one
    // sequence.
    fn run_inner(&self, run: RunInput<'_>, result: &mut JobResult) -> Result<(), ExecError> {
        let RunInput {
            job_id,
            spec,
            limits,
            root,
            resolved,
            started,
            cancel,
        } = run;
        crate::phase::mark("exec_enter");
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
        // The cwd is checked by path, then opened beneath the root (openat2 RESOLVE_BENEATH)
        // for the child to enter by descriptor: a symlink swapped in between cannot take the
        // job out of its root. One that cannot be opened so is rejected.
        let mut cwd_fd = None;
        if let (Some(root), Some(cwd)) = (root, spec.cwd.as_deref()) {
            let resolved = check_cwd(root, cwd)?;
            if let Ok(root_c) = std::fs::canonicalize(root) {
                let rel = resolved
                    .strip_prefix(&root_c)
                    .map_err(|_| ExecError::PathRejected {
                        path: cwd.display().to_string(),
                        reason: format!(
                            "cwd does not exist beneath the job's root {}",
                            root_c.display()
                        ),
                    })?;
                let rel = rel.to_str().ok_or_else(|| ExecError::PathRejected {
                    path: cwd.display().to_string(),
                    reason: "cwd is not UTF-8".into(),
                })?;
                let confined = super::fsroot::ConfinedRoot::open(&root_c, self.host.openat2)?;
                cwd_fd = Some(confined.open_dir(rel).map_err(|e| match e {
                    ExecError::Io { context, source } => ExecError::Io {
                        context: format!("the working directory: {context}"),
                        source,
                    },
                    other => other,
                })?);
            }
        }
        let user = self.job_user(limits)?;
        let switch_to = Some(&user).filter(|u| u.switches());
        let here;
        let sandbox_root = match (root, spec.cwd.as_deref()) {
            (Some(r), _) => r,
            (None, Some(c)) => c,
            (None, None) => {
                here = std::env::current_dir().map_err(|source| ExecError::Io {
                    context: "the current directory".into(),
                    source,
                })?;
                here.as_path()
            }
        };
        crate::phase::mark("cwd_user");
        let mut env = spec.env.clone();
        // Held until the job is over: dropping it removes the job's TMPDIR; released after
        // the job, the TMPDIR may be emptied and reused.
        let sandbox = self.prepare_sandbox(
            job_id,
            Some(&job_sandbox(limits, Some(&user))),
            sandbox_root,
            resolved,
            switch_to,
            self.host.has_cgroups(),
            &mut env,
        )?;
        crate::phase::mark("prepare_sandbox");
        if let (Some(_), Some(fd)) = (&sandbox, &cwd_fd) {
            let cwd = spec.cwd.as_deref().unwrap_or(sandbox_root);
            super::sandbox::refuse_terminals_dir(cwd, super::sandbox::on_devpts(fd))?;
        }
        let sandboxed_spec;
        let spec = if sandbox.is_some() {
            sandboxed_spec = ProcessSpec {
                env,
                ..spec.clone()
            };
            &sandboxed_spec
        } else {
            spec
        };
        let mut cmd = PreparedCommand::new(job_id, spec)?;
        if let Some(s) = &sandbox {
            cmd.landlock_fd = s.ruleset_fd();
            cmd.seccomp = s.bpf.clone();
            cmd.pts_rule_access = s.device_access;
        }
        if let Some(cpu) = limits.cpu_time {
            // A backstop only: rounded up plus a second, so the supervisor's check, which holds
            // the budget to the millisecond, fires first.
            cmd.rlimit_cpu_s = Some(cpu.as_secs() + u64::from(cpu.subsec_nanos() > 0) + 1);
        }
        if self.host.mode == CgroupMode::None {
            cmd.rlimit_as_bytes = limits.memory_bytes;
        }
        cmd.ids = switch_to.map(ChildIds::of);
        cmd.cwd_fd = cwd_fd;
        // Landlock confines paths, not privileges: a sandboxed job that runs as root would
        // still type into other terminals (TIOCSTI), make device nodes, change files' owners
        // and capabilities, or read vigil's memory. It keeps none of root's capabilities.
        cmd.drop_capabilities = sandbox.is_some() && user.uid == 0;
        cmd.private_terminals = cmd.drop_capabilities
            && cmd.landlock_fd >= 0
            && cmd.pts_rule_access != 0
            && self.host.mount_namespace;
        crate::phase::mark("command");
        let leaf = if self.host.has_cgroups() {
            Some(CgroupLeaf::create(&self.host, job_id, limits)?)
        } else {
            None
        };
        crate::phase::mark("cgroup_leaf");
        let since_ticks = boot_ticks_now();
        let child = spawn::spawn(
            job_id,
            &cmd,
            spec.stdin.is_some(),
            leaf.as_ref(),
            &self.host,
        );
        crate::phase::mark("spawn");
        let child = child?;
        if cmd.drop_capabilities && !child.private_terminals {
            // Judged possible before the job and refused now (or not tried): the record says so.
            if let Some(l) = result
                .enforcement
                .limits
                .iter_mut()
                .find(|l| l.limit == TERMINALS_LIMIT && l.held)
            {
                l.held = false;
                l.strength = Strength::NotEnforced;
                l.not_held_reason = Some(if child.terminals_mount_stayed {
                    TERMINALS_MOUNT_STAYED.to_string()
                } else {
                    TERMINALS_NOT_HELD.to_string()
                });
            }
        }
        result.enforcement.placement = Some(child.placement.as_str());
        let job = StartedJob {
            job_id,
            since_ticks,
            child,
            stdin: spec.stdin.as_deref().unwrap_or(&[]),
            leaf,
            limits,
            started,
            cancel,
        };
        let group_gone = supervise(job, self.subreaper, result);
        crate::phase::mark("supervise");
        // The job is over: its TMPDIR goes, or is emptied for a later job when the kernel
        // proved every process of this one gone.
        if let Some(s) = sandbox {
            self.release_sandbox(s, group_gone);
        }
        crate::phase::mark("release_sandbox");
        Ok(())
    }
}
