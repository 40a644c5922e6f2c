//! Creating a job's root process with its placement done before it runs a single instruction of
//! the job's program.
//!
//! The usual spawn is vfork-style (CLONE_VM|CLONE_VFORK on a stack of its own). Where the kernel
//! allows, it is clone3 with CLONE_INTO_CGROUP, which creates the child directly inside the job's
//! cgroup2 leaf: no migration, no wait. Into v1 leaves (hybrid and v1 hosts) the child moves
//! itself before it execs, by writing "0" to each leaf's `tasks` (a self-move of a single thread,
//! which the kernel does without a global lock); where clone3 or CLONE_INTO_CGROUP is refused
//! (old kernels, seccomp-filtered containers) it moves itself into the cgroup2 leaf too.
//! Without the vfork-style spawn (forced off), the child is a fork-like clone3 into the cgroup2
//! leaf, or a fork, and blocks on a pipe — the gate — until the parent has written its pid into
//! every leaf it must still be moved into; only then does it exec.
//!
//! After fork in a multi-threaded program only async-signal-safe calls are allowed in the child:
//! every C string, argv/envp array and signal set is prepared in the parent ([`PreparedCommand`]),
//! and the child only makes plain system calls, allocating nothing.
//!
//! Parts: [`command`] builds what the child needs (environment, program path, C strings) before
//! the fork; `child` is what runs in the child between the fork and exec, and the vfork-style
//! clone.
mod child;
pub mod command;
mod terminals;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use super::cgroup::CgroupLeaf;
use super::host::Host;
use super::ExecError;
use child::{child_exec, stage_name, vfork_spawn, ChildFds};
use command::cstring;

pub use command::{
    check_env_name, job_environment, ProcessSpec, DEFAULT_PATH, ENV_ALLOWED_PREFIX, ENV_ALLOWLIST,
    JOB_MARKER_ENV,
};
pub(crate) use command::{ChildIds, PreparedCommand};

/// clone3's `CLONE_INTO_CGROUP` (linux/sched.h, kernel 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// clone3's `CLONE_PIDFD` (linux/sched.h, kernel 5.2).
const CLONE_PIDFD: u64 = 0x1000;

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

/// How the root process got into the job's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// clone3 CLONE_VM|CLONE_VFORK|CLONE_INTO_CGROUP: born in the cgroup2 leaf; the child moved
    /// itself into the v1 leaves (if any) before exec.
    VforkIntoCgroup,
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
            Placement::VforkIntoCgroup => "clone3_vfork_into_cgroup",
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
    /// The job got terminals of its own (its `/dev/pts` a devpts instance of its own).
    pub private_terminals: bool,
    /// It did not, because another mount of the host's terminals could not be detached.
    pub terminals_mount_stayed: bool,
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

/// The job's stdio and the exec report pipe: the child's ends and the parent's.
struct Stdio {
    out_r: OwnedFd,
    out_w: OwnedFd,
    err_r: OwnedFd,
    err_w: OwnedFd,
    /// The child's stdin: a pipe's read end, or /dev/null.
    stdin_child: OwnedFd,
    stdin_parent: Option<OwnedFd>,
    /// EOF here means exec succeeded (CLOEXEC closed the write end); else the failed stage.
    report_r: OwnedFd,
    report_w: OwnedFd,
}

impl Stdio {
    fn open(stdin_bytes: bool) -> Result<Stdio, ExecError> {
        let (out_r, out_w) = pipe_high()?;
        let (err_r, err_w) = pipe_high()?;
        let (stdin_child, stdin_parent) = if stdin_bytes {
            let (r, w) = pipe_high()?;
            (r, Some(w))
        } else {
            (open_dev_null()?, None)
        };
        let (report_r, report_w) = pipe_high()?;
        Ok(Stdio {
            out_r,
            out_w,
            err_r,
            err_w,
            stdin_child,
            stdin_parent,
            report_r,
            report_w,
        })
    }

    /// The parent's ends (stdout, stderr, stdin, report). The child's ends close here, so EOF
    /// on the report pipe then means the child exec'd.
    fn into_parent_ends(self) -> (OwnedFd, OwnedFd, Option<OwnedFd>, OwnedFd) {
        (self.out_r, self.err_r, self.stdin_parent, self.report_r)
    }
}

/// How the child is created and placed.
struct ClonePlan<'a> {
    leaf: Option<&'a CgroupLeaf>,
    /// The cgroup2 leaf's directory fd, where clone3 may place the child into it.
    into_fd: Option<i32>,
    /// vfork-style (the default): clone3 into the cgroup2 leaf where allowed, glibc's clone
    /// else; the child moves itself into whatever leaf it was not born in.
    vfork: bool,
    /// The files a vfork-style child born in the cgroup2 leaf writes itself into (v1 leaves).
    self_place_born_in_leaf: Vec<CString>,
    /// The same, when it was not (the cgroup2 leaf's cgroup.procs as well).
    self_place_all: Vec<CString>,
}

impl<'a> ClonePlan<'a> {
    fn new(
        leaf: Option<&'a CgroupLeaf>,
        host: &Host,
        switches_user: bool,
    ) -> Result<ClonePlan<'a>, ExecError> {
        let into_fd = leaf
            .and_then(|l| l.unified_fd())
            .filter(|_| host.clone_into_cgroup);
        // A child that changes user is never vfork-style: it would run as that user on vigil's
        // own memory until exec (and its change of user sets that memory's dumpable flag), so
        // with fs.suid_dumpable=1 a process of that user could attach to it and write into
        // vigil. Fork-style, it changes user on a copy, which the change makes non-dumpable.
        let vfork = host.vfork && !switches_user;
        let files = |born_in_leaf: bool| -> Result<Vec<CString>, ExecError> {
            match (vfork, leaf) {
                (true, Some(l)) => l
                    .self_place_files(born_in_leaf)
                    .iter()
                    .map(|p| cstring("cgroup path", p.as_os_str().as_bytes()))
                    .collect(),
                _ => Ok(Vec::new()),
            }
        };
        Ok(ClonePlan {
            leaf,
            into_fd,
            vfork,
            self_place_born_in_leaf: files(true)?,
            self_place_all: files(false)?,
        })
    }

    /// The child must wait on the gate until the parent has placed it.
    fn needs_gate(&self, into: bool) -> bool {
        !self.vfork
            && self
                .leaf
                .is_some_and(|l| l.needs_v1_placement() || (l.unified_dir().is_some() && !into))
    }
}

/// A created child, not yet known to have exec'd.
struct Cloned {
    pid: i32,
    pidfd: Option<OwnedFd>,
    /// The write end of the placement gate, when the child waits on one.
    gate_w: Option<OwnedFd>,
    /// clone3 placed it into the cgroup2 leaf.
    placed_by_clone: bool,
}

/// Creates the root process, placed in `leaf` (if any) before it runs the job's program.
pub(crate) fn spawn(
    job_id: &str,
    cmd: &PreparedCommand,
    stdin_bytes: bool,
    leaf: Option<&CgroupLeaf>,
    host: &Host,
) -> Result<SpawnedChild, ExecError> {
    let stdio = Stdio::open(stdin_bytes)?;
    let plan = ClonePlan::new(leaf, host, cmd.ids.is_some())?;
    let cloned = clone_child(job_id, cmd, &stdio, &plan, host)?;
    let (out_r, err_r, stdin_parent, report_r) = stdio.into_parent_ends();
    let Cloned {
        pid,
        pidfd,
        gate_w,
        placed_by_clone,
    } = cloned;
    let placement = match leaf {
        None => Placement::NoCgroup,
        Some(_) if plan.vfork && placed_by_clone => Placement::VforkIntoCgroup,
        Some(_) if plan.vfork => Placement::VforkSelfPlaced,
        Some(_) if placed_by_clone => Placement::CloneIntoCgroup,
        Some(_) => Placement::ForkThenGate,
    };
    if let (Some(l), Some(gate_w)) = (leaf, gate_w) {
        open_gate(job_id, l, pid, gate_w, placed_by_clone)?;
    }
    let notes = read_exec_report(job_id, pid, &report_r)?;
    let pidfd = pidfd.or_else(|| {
        if !host.pidfd {
            return None;
        }
        // SAFETY: pidfd_open on our own unreaped child.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: pidfd_open returned a fresh descriptor (fd >= 0) that nothing else owns.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
    });
    Ok(SpawnedChild {
        pid,
        pidfd,
        stdout: out_r,
        stderr: err_r,
        stdin: stdin_parent,
        placement,
        private_terminals: notes.private_terminals,
        terminals_mount_stayed: notes.terminals_mount_stayed,
    })
}

/// Creates the child (vfork-style, clone3 or fork, as planned), falling back from clone3 into
/// the cgroup to placement by cgroup.procs where this kernel cannot clone into the leaf.
///
/// Tests force each fallback through `HostConfig` (`force_no_clone3`,
/// `force_no_clone_into_cgroup`, `force_no_vfork`); a refusal at run time (seccomp) takes the
/// same fallback.
fn clone_child(
    job_id: &str,
    cmd: &PreparedCommand,
    stdio: &Stdio,
    plan: &ClonePlan<'_>,
    host: &Host,
) -> Result<Cloned, ExecError> {
    // SAFETY: getpid has no preconditions.
    let parent_pid = unsafe { libc::getpid() };
    let mut attempt_into = plan.into_fd.is_some() && host.clone3;
    loop {
        let gate = if plan.needs_gate(attempt_into) {
            Some(pipe_high()?)
        } else {
            None
        };
        let fds = ChildFds {
            self_place: if attempt_into {
                &plan.self_place_born_in_leaf
            } else {
                &plan.self_place_all
            },
            stdin: stdio.stdin_child.as_raw_fd(),
            stdout: stdio.out_w.as_raw_fd(),
            stderr: stdio.err_w.as_raw_fd(),
            gate: gate.as_ref().map_or(-1, |g| g.0.as_raw_fd()),
            report: stdio.report_w.as_raw_fd(),
            parent_pid,
            close_range: host.close_range,
        };
        let mut pidfd_raw: i32 = -1;
        let spawn_err = |stage, source| ExecError::Spawn {
            job: job_id.to_string(),
            stage,
            source,
        };
        let into = plan.into_fd.filter(|_| attempt_into);
        let pid: libc::pid_t = if plan.vfork {
            match vfork_spawn(cmd, &fds, host.pidfd, into, &mut pidfd_raw) {
                Ok(pid) => pid,
                Err(e) if into.is_some() && cannot_clone_into(e) => {
                    // Refused here: glibc's clone, the child moves itself into the leaf too.
                    attempt_into = false;
                    continue;
                }
                Err(e) => {
                    return Err(spawn_err(
                        "clone(CLONE_VM|CLONE_VFORK)",
                        std::io::Error::from_raw_os_error(e),
                    ))
                }
            }
        } else if host.clone3 {
            match clone3_child(cmd, &fds, host.pidfd, into, &mut pidfd_raw) {
                Ok(pid) => pid,
                Err(e) if into.is_some() && cannot_clone_into(e) => {
                    // This kernel cannot clone into the leaf: place by writing cgroup.procs.
                    attempt_into = false;
                    continue;
                }
                Err(e) => return Err(spawn_err("clone3", std::io::Error::from_raw_os_error(e))),
            }
        } else {
            fork_child(cmd, &fds).map_err(|e| spawn_err("fork", e))?
        };
        // Registered after the clone: holding a lock across fork would serialise every spawn.
        LIVE_ROOTS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pid);
        // SAFETY: pidfd_raw was written by the kernel for this child (or stays -1).
        let pidfd = (pidfd_raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd_raw) });
        return Ok(Cloned {
            pid,
            pidfd,
            gate_w: gate.map(|g| g.1),
            placed_by_clone: attempt_into,
        });
    }
}

/// A plain fork; the child runs `child_exec`.
fn fork_child(cmd: &PreparedCommand, fds: &ChildFds<'_>) -> std::io::Result<libc::pid_t> {
    // SAFETY: the child only calls child_exec (async-signal-safe, never returns).
    let rc = unsafe { libc::fork() };
    if rc == 0 {
        // SAFETY: rc == 0: this is the freshly forked child, where child_exec must run (it never
        // returns).
        unsafe { child_exec(cmd, fds) }
    }
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

/// The errors of clone3 with CLONE_INTO_CGROUP that mean "not here", not "failed": no clone3
/// or no CLONE_INTO_CGROUP (ENOSYS, E2BIG, EINVAL), a seccomp filter refusing clone3 (ENOSYS or
/// EPERM, as container runtimes answer), a group that cannot take the child this way
/// (EOPNOTSUPP, EBUSY). The fallback then places by writing cgroup.procs, which names its own
/// error if the group truly cannot take the child.
fn cannot_clone_into(errno: i32) -> bool {
    matches!(
        errno,
        libc::EINVAL | libc::E2BIG | libc::EOPNOTSUPP | libc::EBUSY | libc::ENOSYS | libc::EPERM
    )
}

/// A fork-like clone3, into the cgroup2 directory `into` when given; the child runs
/// `child_exec`. Returns the child's pid, or the errno.
fn clone3_child(
    cmd: &PreparedCommand,
    fds: &ChildFds<'_>,
    pidfd: bool,
    into: Option<i32>,
    pidfd_out: &mut i32,
) -> Result<libc::pid_t, i32> {
    let mut args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    if pidfd {
        args.flags |= CLONE_PIDFD;
        args.pidfd = (pidfd_out as *mut i32) as u64;
    }
    if let Some(fd) = into {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd as u64;
    }
    // SAFETY: a fork-like clone3 (no CLONE_VM, no new stack): the child continues on a copy of
    // this stack and calls only child_exec, which never returns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc == 0 {
        // SAFETY: rc == 0: this is the freshly cloned child, where child_exec must run (it never
        // returns).
        unsafe { child_exec(cmd, fds) }
    }
    if rc < 0 {
        return Err(last_errno());
    }
    Ok(rc as libc::pid_t)
}

/// Moves the child (waiting on the gate) into every leaf, then opens the gate; on failure the
/// child is killed and reaped.
fn open_gate(
    job_id: &str,
    leaf: &CgroupLeaf,
    pid: i32,
    gate_w: OwnedFd,
    placed_by_clone: bool,
) -> Result<(), ExecError> {
    if let Err(e) = leaf.place(pid, placed_by_clone) {
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
    Ok(())
}

/// Waits for the exec report: EOF means exec succeeded (CLOEXEC closed the pipe); a full
/// report names the stage that failed and its errno, and the child is reaped. Before either,
/// the child may write one note: that the job got terminals of its own (the answer).
/// What the child noted on the exec-report pipe before its exec.
#[derive(Default)]
struct ChildNotes {
    private_terminals: bool,
    terminals_mount_stayed: bool,
}

fn read_exec_report(job_id: &str, pid: i32, report_r: &OwnedFd) -> Result<ChildNotes, ExecError> {
    let mut notes = ChildNotes::default();
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
        // At most one note comes, first.
        let seen = notes.private_terminals || notes.terminals_mount_stayed;
        if !seen && got > 0 {
            match report[0] {
                child::NOTE_PRIVATE_TERMINALS => notes.private_terminals = true,
                child::NOTE_TERMINALS_MOUNT_STAYED => notes.terminals_mount_stayed = true,
                _ => continue,
            }
            report.copy_within(1..got, 0);
            got -= 1;
        }
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
    Ok(notes)
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
