//! Creating a job's root process with its placement done before it runs a single instruction of
//! the job's program.
//!
//! Where the kernel allows, clone3 with CLONE_INTO_CGROUP creates the child directly inside the
//! job's cgroup2 leaf. Where a process must still be moved (v1 controller leaves on hybrid and v1
//! hosts, or no clone3), the child blocks on a pipe — the gate — until the parent has written its
//! pid into every leaf; only then does it exec.
//!
//! After fork in a multi-threaded program only async-signal-safe calls are allowed in the child:
//! every C string, argv/envp array and signal set is prepared in the parent ([`PreparedCommand`]),
//! and the child only makes plain system calls, allocating nothing.
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::cgroup::CgroupLeaf;
use super::host::Host;
use super::ExecError;

/// clone3's `CLONE_INTO_CGROUP` (linux/sched.h, kernel 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// clone3's `CLONE_PIDFD` (linux/sched.h, kernel 5.2).
const CLONE_PIDFD: u64 = 0x1000;
/// close_range's `CLOSE_RANGE_CLOEXEC` (linux/close_range.h, kernel 5.11).
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
/// Fallback bound when close_range is missing and RLIMIT_NOFILE is unlimited.
const CLOSE_FDS_MAX: u64 = 65_536;

/// The child reports where it failed with one of these before `_exit(127)`.
const STAGE_GATE: u8 = 1;
const STAGE_STDIO: u8 = 2;
const STAGE_CWD: u8 = 3;
const STAGE_RLIMIT: u8 = 4;
const STAGE_NO_NEW_PRIVS: u8 = 5;
const STAGE_EXEC: u8 = 6;
const STAGE_PDEATHSIG: u8 = 7;
const STAGE_PLACE: u8 = 8;
/// Stack of the vfork-style child (it runs only `child_exec`, a few hundred bytes deep).
const CHILD_STACK_BYTES: usize = 128 << 10;

/// clone3's argument block (linux/sched.h `struct clone_args`, CLONE_ARGS_SIZE_VER2 = 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}
const _: () = assert!(std::mem::size_of::<CloneArgs>() == 88);

/// Environment variables taken from vigil's own environment; nothing else is inherited.
///
/// `HOME`, `USER` and `SHELL` are deliberately absent: a home directory points a command at
/// dotfiles (`.netrc`, cloud credentials) the caller did not choose to expose. A request that
/// wants them passes them explicitly.
pub const ENV_ALLOWLIST: &[&str] = &["PATH", "LANG", "TZ"];
/// Prefix of further allowed variables (`LC_ALL`, `LC_CTYPE`, ...).
pub const ENV_ALLOWED_PREFIX: &str = "LC_";
/// PATH given to a job when vigil's own environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Marker variable naming the job in every process it starts (documented; used to find a job's
/// processes when no cgroup holds them).
pub const JOB_MARKER_ENV: &str = "VIGIL_JOB_ID";

/// What the job's root process runs.
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    /// Program and arguments; `argv[0]` is looked up in the job's PATH unless it holds a `/`.
    pub argv: Vec<String>,
    /// Variables added to the allowlisted environment (they win over inherited ones).
    pub env: BTreeMap<String, String>,
    /// Working directory (default: vigil's own).
    pub cwd: Option<PathBuf>,
    /// Bytes fed to stdin; `None` means /dev/null.
    pub stdin: Option<Vec<u8>>,
}

/// Everything the child needs, built before fork so the child allocates nothing.
pub(crate) struct PreparedCommand {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    cwd: Option<CString>,
    pub(crate) rlimit_cpu_s: Option<u64>,
    pub(crate) rlimit_as_bytes: Option<u64>,
    empty_sigset: libc::sigset_t,
    nofile_max: u64,
}

fn cstring(what: &str, s: &[u8]) -> Result<CString, ExecError> {
    CString::new(s).map_err(|_| ExecError::InvalidRequest(format!("{what} contains a NUL byte")))
}

/// The job's environment: allowlisted variables of vigil's own, the request's own variables,
/// then the job marker (which a request cannot replace: see [`check_env_name`]).
pub fn job_environment(job_id: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        if ENV_ALLOWLIST.contains(&k) || k.starts_with(ENV_ALLOWED_PREFIX) {
            env.insert(k.to_string(), v.to_string());
        }
    }
    env.entry("PATH".to_string())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    for (k, v) in extra {
        env.insert(k.clone(), v.clone());
    }
    env.insert(JOB_MARKER_ENV.to_string(), job_id.to_string());
    env
}

/// Finds `name` in `path_var` the way execvp would (an executable regular file).
fn resolve_program(name: &str, path_var: &str, cwd: Option<&Path>) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(dir)
        };
        let base = if dir.is_relative() {
            cwd.map(|c| c.join(dir))
                .unwrap_or_else(|| dir.to_path_buf())
        } else {
            dir.to_path_buf()
        };
        let candidate = base.join(name);
        let Ok(c) = CString::new(candidate.as_os_str().as_bytes()) else {
            continue;
        };
        // SAFETY: valid C string.
        if unsafe { libc::access(c.as_ptr(), libc::X_OK) } == 0 && candidate.is_file() {
            return Some(candidate);
        }
    }
    None
}

/// Refuses a request's environment variable that names nothing or would replace the job
/// marker: the marker is how vigil finds the job's processes where no cgroup holds them, so a
/// request that set it could hide its processes from the kill.
pub fn check_env_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Err(format!("environment variable name {name:?} is not valid"));
    }
    if name == JOB_MARKER_ENV {
        return Err(format!(
            "environment variable {JOB_MARKER_ENV} is set by vigil to name the job and cannot be set by a request"
        ));
    }
    Ok(())
}

impl PreparedCommand {
    pub(crate) fn new(job_id: &str, spec: &ProcessSpec) -> Result<PreparedCommand, ExecError> {
        let Some(first) = spec.argv.first() else {
            return Err(ExecError::InvalidRequest("argv is empty".into()));
        };
        for k in spec.env.keys() {
            check_env_name(k).map_err(ExecError::InvalidRequest)?;
        }
        let env = job_environment(job_id, &spec.env);
        let path_var = env.get("PATH").map(String::as_str).unwrap_or(DEFAULT_PATH);
        let program = resolve_program(first, path_var, spec.cwd.as_deref()).ok_or_else(|| {
            ExecError::ProgramNotFound {
                program: first.clone(),
                path: path_var.to_string(),
            }
        })?;
        let program = cstring("program path", program.as_os_str().as_bytes())?;
        let argv: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstring("an argument", a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let envp: Vec<CString> = env
            .iter()
            .map(|(k, v)| cstring("an environment value", format!("{k}={v}").as_bytes()))
            .collect::<Result<_, _>>()?;
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        let cwd = spec
            .cwd
            .as_ref()
            .map(|c| cstring("cwd", c.as_os_str().as_bytes()))
            .transpose()?;
        // SAFETY: sigemptyset initialises the set it is given.
        let mut empty_sigset: libc::sigset_t = unsafe { std::mem::zeroed() };
        unsafe { libc::sigemptyset(&mut empty_sigset) };
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: out-parameter of the right type.
        let nofile_max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
            rl.rlim_cur.min(CLOSE_FDS_MAX)
        } else {
            CLOSE_FDS_MAX
        };
        Ok(PreparedCommand {
            program,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            cwd,
            rlimit_cpu_s: None,
            rlimit_as_bytes: None,
            empty_sigset,
            nofile_max,
        })
    }
}

/// How the root process got into the job's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// clone3 CLONE_INTO_CGROUP (cgroup2) — plus the gate for v1 leaves on hybrid hosts.
    CloneIntoCgroup,
    /// fork, then the parent wrote the pid into every leaf while the child waited on the gate.
    ForkThenGate,
    /// CLONE_VM|CLONE_VFORK; the child wrote itself into every leaf before exec.
    VforkSelfPlaced,
    /// No cgroup: process group and session only.
    NoCgroup,
}

impl Placement {
    /// Stable name for records.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::CloneIntoCgroup => "clone3_into_cgroup",
            Placement::ForkThenGate => "fork_then_gate",
            Placement::VforkSelfPlaced => "vfork_self_placed_before_exec",
            Placement::NoCgroup => "none",
        }
    }
}

/// A running root process and the parent's ends of its pipes.
pub(crate) struct SpawnedChild {
    pub pid: i32,
    pub pidfd: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub stdin: Option<OwnedFd>,
    pub placement: Placement,
}

/// Root pids of running jobs: orphan reaping never touches them. Reaping only takes zombies of
/// the finished job's own session or group members, so a root registered a moment after its
/// clone is not at risk in between either.
pub(crate) static LIVE_ROOTS: Mutex<Vec<i32>> = Mutex::new(Vec::new());

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A pipe whose both ends are close-on-exec and numbered >= 3 (so the child's dup2 onto 0..2
/// never clobbers another of its sources).
fn pipe_high() -> Result<(OwnedFd, OwnedFd), ExecError> {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(ExecError::Io {
            context: "pipe2".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: both fds were just created and are owned here.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((raise_fd(r)?, raise_fd(w)?))
}

fn raise_fd(fd: OwnedFd) -> Result<OwnedFd, ExecError> {
    if fd.as_raw_fd() >= 3 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on an owned fd returns a new owned fd.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if n < 0 {
        return Err(ExecError::Io {
            context: "fcntl(F_DUPFD_CLOEXEC)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: n is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn open_dev_null() -> Result<OwnedFd, ExecError> {
    // SAFETY: constant path; the fd is owned below.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(ExecError::Io {
            context: "open /dev/null".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    // SAFETY: fresh fd.
    raise_fd(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The raw fds the child works with, and the cgroup.procs files it writes itself into.
struct ChildFds<'a> {
    self_place: &'a [CString],
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    gate: RawFd,
    report: RawFd,
    parent_pid: libc::pid_t,
    close_range: bool,
}

/// The child side: async-signal-safe system calls only, never returns.
///
/// # Safety
/// Must be called only in a freshly forked/cloned child.
unsafe fn child_exec(cmd: &PreparedCommand, fds: &ChildFds<'_>) -> ! {
    // SAFETY (whole function): plain system calls on fds and memory prepared before the fork.
    unsafe {
        // Die with vigil. PDEATHSIG is tied to the thread that forked us: the job's supervising
        // thread lives until the job is over. If vigil died before the prctl took effect, our
        // parent is already someone else: give up.
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            child_fail(fds.report, STAGE_PDEATHSIG);
        }
        if libc::getppid() != fds.parent_pid {
            libc::_exit(126);
        }
        // vfork-style spawn: the child moves itself ("0" = the writer) into every leaf before
        // it runs anything of the job.
        for path in fds.self_place {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                child_fail(fds.report, STAGE_PLACE);
            }
            libc::close(fd);
        }
        if fds.gate >= 0 {
            let mut byte = 0u8;
            loop {
                let n = libc::read(fds.gate, (&mut byte as *mut u8).cast(), 1);
                if n == 1 {
                    break;
                }
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                // The parent closed the gate without opening it: placement failed.
                child_fail(fds.report, STAGE_GATE);
            }
        }
        // Signal state is inherited across exec: start the job from defaults (Rust ignores
        // SIGPIPE in vigil itself, which must not leak into `yes | head`).
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        // Unblocked only now: after a vfork-style spawn no handler of vigil's may run here.
        libc::sigprocmask(libc::SIG_SETMASK, &cmd.empty_sigset, std::ptr::null_mut());
        libc::setsid();
        for (src, dst) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            if libc::dup2(src, dst) < 0 {
                child_fail(fds.report, STAGE_STDIO);
            }
        }
        // Every other inherited fd is closed at exec (the report pipe included, which is how the
        // parent learns that exec succeeded).
        let ranged = fds.close_range
            && libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) == 0;
        if !ranged {
            for fd in 3..cmd.nofile_max as i32 {
                if fd != fds.report {
                    libc::close(fd);
                }
            }
        }
        if let Some(cwd) = &cmd.cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                child_fail(fds.report, STAGE_CWD);
            }
        }
        if let Some(s) = cmd.rlimit_cpu_s {
            // Soft limit: SIGXCPU; hard limit one second later: SIGKILL. Per process, a backstop
            // behind the cgroup's CPU accounting.
            let rl = libc::rlimit {
                rlim_cur: s,
                rlim_max: s + 1,
            };
            if libc::setrlimit(libc::RLIMIT_CPU, &rl) != 0 {
                child_fail(fds.report, STAGE_RLIMIT);
            }
        }
        if let Some(b) = cmd.rlimit_as_bytes {
            let rl = libc::rlimit {
                rlim_cur: b,
                rlim_max: b,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &rl) != 0 {
                child_fail(fds.report, STAGE_RLIMIT);
            }
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            child_fail(fds.report, STAGE_NO_NEW_PRIVS);
        }
        libc::execve(
            cmd.program.as_ptr(),
            cmd.argv_ptrs.as_ptr(),
            cmd.envp_ptrs.as_ptr(),
        );
        child_fail(fds.report, STAGE_EXEC)
    }
}

/// Writes `[stage, errno (4 bytes LE)]` to the report pipe and exits 127.
unsafe fn child_fail(report: RawFd, stage: u8) -> ! {
    // SAFETY: errno location and write/_exit are async-signal-safe.
    unsafe {
        let e = (*libc::__errno_location()).to_le_bytes();
        let buf = [stage, e[0], e[1], e[2], e[3]];
        libc::write(report, buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    }
}

fn stage_name(stage: u8) -> &'static str {
    match stage {
        STAGE_GATE => "waiting for cgroup placement",
        STAGE_STDIO => "setting up stdio",
        STAGE_CWD => "changing to the working directory",
        STAGE_RLIMIT => "setting resource limits",
        STAGE_NO_NEW_PRIVS => "setting no_new_privs",
        STAGE_EXEC => "exec",
        STAGE_PDEATHSIG => "setting the parent-death signal",
        STAGE_PLACE => "moving itself into the job's cgroup leaves",
        _ => "unknown stage",
    }
}

/// Creates the root process, placed in `leaf` (if any) before it runs the job's program.
pub(crate) fn spawn(
    job_id: &str,
    cmd: &PreparedCommand,
    stdin_bytes: bool,
    leaf: Option<&CgroupLeaf>,
    host: &Host,
) -> Result<SpawnedChild, ExecError> {
    let (out_r, out_w) = pipe_high()?;
    let (err_r, err_w) = pipe_high()?;
    let (stdin_child, stdin_parent) = if stdin_bytes {
        let (r, w) = pipe_high()?;
        (r, Some(w))
    } else {
        (open_dev_null()?, None)
    };
    let (report_r, report_w) = pipe_high()?;
    let into_fd = leaf
        .and_then(|l| l.unified_fd())
        .filter(|_| host.clone_into_cgroup);
    let use_clone3 = host.clone3;
    let needs_gate = |into: bool| {
        leaf.is_some_and(|l| l.needs_v1_placement() || (l.unified_dir().is_some() && !into))
    };
    // SAFETY: getpid has no preconditions.
    let parent_pid = unsafe { libc::getpid() };
    // vfork-style where a migration is needed anyway (v1 leaves) or there is no cgroup; clone3
    // into the cgroup2 leaf where that alone places the child (pure v2: no migration at all).
    let use_vfork = host.vfork
        && leaf.is_none_or(|l| l.needs_v1_placement() || into_fd.is_none() || !use_clone3);
    let self_place: Vec<CString> = match (use_vfork, leaf) {
        (true, Some(l)) => l
            .procs_files()
            .iter()
            .map(|p| cstring("cgroup path", p.as_os_str().as_bytes()))
            .collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };

    let mut attempt_into = !use_vfork && into_fd.is_some() && use_clone3;
    let (pid, pidfd, gate_w, placed_by_clone) = loop {
        let gate = if !use_vfork && needs_gate(attempt_into) {
            Some(pipe_high()?)
        } else {
            None
        };
        let fds = ChildFds {
            self_place: &self_place,
            stdin: stdin_child.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: err_w.as_raw_fd(),
            gate: gate.as_ref().map_or(-1, |g| g.0.as_raw_fd()),
            report: report_w.as_raw_fd(),
            parent_pid,
            close_range: host.close_range,
        };
        let mut pidfd_raw: i32 = -1;
        let pid: libc::pid_t = if use_vfork {
            vfork_spawn(cmd, &fds, host.pidfd, &mut pidfd_raw).map_err(|source| {
                ExecError::Spawn {
                    job: job_id.to_string(),
                    stage: "clone(CLONE_VM|CLONE_VFORK)",
                    source,
                }
            })?
        } else if use_clone3 {
            let mut args = CloneArgs {
                exit_signal: libc::SIGCHLD as u64,
                ..CloneArgs::default()
            };
            if host.pidfd {
                args.flags |= CLONE_PIDFD;
                args.pidfd = (&mut pidfd_raw as *mut i32) as u64;
            }
            if attempt_into {
                args.flags |= CLONE_INTO_CGROUP;
                args.cgroup = into_fd.unwrap_or(-1) as u64;
            }
            // SAFETY: a fork-like clone3 (no CLONE_VM, no new stack): the child continues on a
            // copy of this stack and calls only child_exec, which never returns.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    &mut args as *mut CloneArgs,
                    std::mem::size_of::<CloneArgs>(),
                )
            };
            if rc == 0 {
                unsafe { child_exec(cmd, &fds) }
            }
            if rc < 0 {
                let e = last_errno();
                if attempt_into
                    && matches!(
                        e,
                        libc::EINVAL | libc::E2BIG | libc::EOPNOTSUPP | libc::EBUSY | libc::ENOSYS
                    )
                {
                    // This kernel cannot clone into the leaf: place by writing cgroup.procs.
                    attempt_into = false;
                    continue;
                }
                return Err(ExecError::Spawn {
                    job: job_id.to_string(),
                    stage: "clone3",
                    source: std::io::Error::from_raw_os_error(e),
                });
            }
            rc as libc::pid_t
        } else {
            // SAFETY: the child only calls child_exec (async-signal-safe, never returns).
            let rc = unsafe { libc::fork() };
            if rc == 0 {
                unsafe { child_exec(cmd, &fds) }
            }
            if rc < 0 {
                return Err(ExecError::Spawn {
                    job: job_id.to_string(),
                    stage: "fork",
                    source: std::io::Error::last_os_error(),
                });
            }
            rc
        };
        // Registered after the clone: holding a lock across fork would serialise every spawn.
        LIVE_ROOTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pid);
        // SAFETY: pidfd_raw was written by the kernel for this child (or stays -1).
        let pidfd = (pidfd_raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd_raw) });
        break (pid, pidfd, gate.map(|g| g.1), attempt_into);
    };
    drop((out_w, err_w, stdin_child, report_w));

    let placement = match leaf {
        None => Placement::NoCgroup,
        Some(_) if use_vfork => Placement::VforkSelfPlaced,
        Some(_) if placed_by_clone => Placement::CloneIntoCgroup,
        Some(_) => Placement::ForkThenGate,
    };
    if let (Some(l), Some(gate_w)) = (leaf, gate_w) {
        if let Err(e) = l.place(pid, placed_by_clone) {
            // Closing the gate unopened makes the child exit; kill it anyway and reap it.
            drop(gate_w);
            reap_failed_child(pid);
            return Err(e);
        }
        let byte = [1u8];
        // SAFETY: writing one byte from a live buffer to an owned fd.
        if unsafe { libc::write(gate_w.as_raw_fd(), byte.as_ptr().cast(), 1) } != 1 {
            let source = std::io::Error::last_os_error();
            reap_failed_child(pid);
            return Err(ExecError::Spawn {
                job: job_id.to_string(),
                stage: "opening the placement gate",
                source,
            });
        }
    }
    // EOF on the report pipe means exec succeeded (CLOEXEC closed it).
    let mut report = [0u8; 5];
    let mut got = 0usize;
    while got < report.len() {
        // SAFETY: reading into the unfilled part of a live buffer.
        let n = unsafe {
            libc::read(
                report_r.as_raw_fd(),
                report[got..].as_mut_ptr().cast(),
                report.len() - got,
            )
        };
        if n < 0 && last_errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    if got == report.len() {
        reap_failed_child(pid);
        let errno = i32::from_le_bytes([report[1], report[2], report[3], report[4]]);
        return Err(ExecError::Spawn {
            job: job_id.to_string(),
            stage: stage_name(report[0]),
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    let pidfd = pidfd.or_else(|| {
        if !host.pidfd {
            return None;
        }
        // SAFETY: pidfd_open on our own unreaped child.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
    });
    Ok(SpawnedChild {
        pid,
        pidfd,
        stdout: out_r,
        stderr: err_r,
        stdin: stdin_parent,
        placement,
    })
}

/// The vfork-style child's stack: mmap'd with a guard page below it.
struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    fn new() -> std::io::Result<ChildStack> {
        // SAFETY: sysconf has no preconditions; mmap of fresh anonymous memory.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = CHILD_STACK_BYTES + page;
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = ChildStack { base, len };
        // SAFETY: the lowest page of our own mapping becomes the guard.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// Highest address, 16-byte aligned (the stack grows down).
    fn top(&self) -> *mut libc::c_void {
        ((self.base as usize + self.len) & !15) as *mut libc::c_void
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; the child has exec'd or exited (CLONE_VFORK).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// What the vfork-style child reads from the (suspended) parent's stack.
struct VforkPlan<'a, 'b> {
    cmd: &'a PreparedCommand,
    fds: &'a ChildFds<'b>,
}

extern "C" fn vfork_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg is the VforkPlan on the parent's stack; the parent is suspended until this
    // child execs or exits, so the plan outlives every use here.
    let plan = unsafe { &*(arg as *const VforkPlan<'_, '_>) };
    unsafe { child_exec(plan.cmd, plan.fds) }
}

/// CLONE_VM|CLONE_VFORK spawn: no page tables are copied and vigil's other threads take no
/// copy-on-write faults. Every signal is blocked around the clone so no handler of vigil's can
/// run on the shared memory in the child; the child resets them before unblocking.
fn vfork_spawn(
    cmd: &PreparedCommand,
    fds: &ChildFds<'_>,
    pidfd: bool,
    pidfd_out: &mut i32,
) -> std::io::Result<libc::pid_t> {
    let stack = ChildStack::new()?;
    let plan = VforkPlan { cmd, fds };
    // SAFETY: sigset out-parameters of the right type.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    if pidfd {
        flags |= CLONE_PIDFD as libc::c_int;
    }
    // SAFETY: glibc's clone runs vfork_child on the new stack; CLONE_VFORK suspends this thread
    // until the child has exec'd or exited, so `plan` and `stack` stay valid for it.
    let pid = unsafe {
        libc::clone(
            vfork_child,
            stack.top(),
            flags,
            &plan as *const VforkPlan<'_, '_> as *mut libc::c_void,
            pidfd_out as *mut i32,
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        Err(err)
    } else {
        Ok(pid)
    }
}

fn reap_failed_child(pid: i32) {
    // SAFETY: our own child; kill + blocking waitpid reaps it.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0);
    }
    forget_root(pid);
}

/// Removes a reaped root from the registry.
pub(crate) fn forget_root(pid: i32) {
    let mut roots = LIVE_ROOTS.lock().unwrap_or_else(|p| p.into_inner());
    roots.retain(|&p| p != pid);
}
