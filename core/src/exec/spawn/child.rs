//! The child side of a spawn: what runs between the fork (or clone) and exec, with
//! async-signal-safe system calls only, and the CLONE_VM|CLONE_VFORK clone that runs it on a
//! stack of its own (clone3 into the cgroup2 leaf where the kernel allows, glibc's clone else).
use std::ffi::CString;
use std::os::fd::RawFd;

use super::command::PreparedCommand;
use super::{CloneArgs, CLONE_INTO_CGROUP, CLONE_PIDFD};

/// close_range's `CLOSE_RANGE_CLOEXEC` (linux/close_range.h, kernel 5.11).
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

/// The child reports where it failed with one of these before `_exit(127)`.
const STAGE_GATE: u8 = 1;
const STAGE_STDIO: u8 = 2;
const STAGE_CWD: u8 = 3;
const STAGE_RLIMIT: u8 = 4;
const STAGE_NO_NEW_PRIVS: u8 = 5;
const STAGE_EXEC: u8 = 6;
const STAGE_PDEATHSIG: u8 = 7;
const STAGE_PLACE: u8 = 8;
const STAGE_LANDLOCK: u8 = 9;
const STAGE_SECCOMP: u8 = 10;
const STAGE_SETGROUPS: u8 = 11;
const STAGE_SETGID: u8 = 12;
const STAGE_SETUID: u8 = 13;
const STAGE_CAPABILITIES: u8 = 14;
const STAGE_TERMINALS: u8 = 15;
/// Written to the report pipe (one byte, before exec) when the job got terminals of its own
/// ([`private_terminals`]); not a failure.
pub(super) const NOTE_PRIVATE_TERMINALS: u8 = 0xf0;
/// Written instead when another mount of the host's terminals stayed in the job's namespace
/// ([`detach_other_terminals`]): the job then runs with vigil's mounts, the host's terminals.
pub(super) const NOTE_TERMINALS_MOUNT_STAYED: u8 = 0xf1;
/// linux/landlock.h `LANDLOCK_RULE_PATH_BENEATH`.
const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
/// seccomp(2)'s `SECCOMP_SET_MODE_FILTER` via prctl's `SECCOMP_MODE_FILTER`.
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;
/// Stack of the vfork-style child (it runs only `child_exec`, a few hundred bytes deep).
const CHILD_STACK_BYTES: usize = 128 << 10;

/// The raw fds the child works with, and the cgroup.procs files it writes itself into.
pub(super) struct ChildFds<'a> {
    pub(super) self_place: &'a [CString],
    pub(super) stdin: RawFd,
    pub(super) stdout: RawFd,
    pub(super) stderr: RawFd,
    pub(super) gate: RawFd,
    pub(super) report: RawFd,
    pub(super) parent_pid: libc::pid_t,
    pub(super) close_range: bool,
}

/// The child side: async-signal-safe system calls only, never returns.
///
/// Longer than 70 lines on purpose: it is one straight sequence of system calls whose order is
/// the contract (die with vigil, get placed, reset signals, stdio, close fds, the job's user,
/// cwd, rlimits, no_new_privs, Landlock, seccomp, exec), read top to bottom in one place; it runs on the vfork-style child's
/// small stack, where every further frame is stack the child does not have to spare.
///
/// # Safety
/// Must be called only in a freshly forked/cloned child.
pub(super) unsafe fn child_exec(cmd: &PreparedCommand, fds: &ChildFds<'_>) -> ! {
    // SAFETY: (the whole function) plain system calls on fds and memory prepared before the fork.
    unsafe {
        // Die with vigil. PDEATHSIG is tied to the thread that forked us: the job's supervising
        // thread lives until the job is over.
        die_with_vigil(fds);
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
        // The job's user: groups, gid, uid, in that order (each needs the privilege the next
        // drops), as raw system calls: glibc's wrappers would signal vigil's threads, whose
        // memory a vfork-style child shares. Before the cwd (entered as the user) and the
        // sandbox (the seccomp filter need not allow these).
        if let Some(ids) = &cmd.ids {
            let n = ids.groups.len() as libc::c_long;
            if libc::syscall(libc::SYS_setgroups, n, ids.groups.as_ptr()) != 0 {
                child_fail(fds.report, STAGE_SETGROUPS);
            }
            let gid = libc::c_long::from(ids.gid);
            if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
                child_fail(fds.report, STAGE_SETGID);
            }
            let uid = libc::c_long::from(ids.uid);
            if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
                child_fail(fds.report, STAGE_SETUID);
            }
            // The change of user made this copy of vigil's memory as dumpable as
            // fs.suid_dumpable says (1: attachable by the new user until exec): not at all.
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            // A change of user clears the parent-death signal: set it again.
            die_with_vigil(fds);
        }
        enter_cwd(cmd, fds);
        // After the cwd, which the new mount namespace carries over (the cwd's descriptor was
        // opened in vigil's); going back to vigil's where a step fails resets it, so it is
        // entered again then.
        if cmd.private_terminals {
            private_terminals(cmd, fds);
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
        if cmd.drop_capabilities {
            drop_capabilities(fds);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            child_fail(fds.report, STAGE_NO_NEW_PRIVS);
        }
        // The sandbox, built before the fork: the Landlock ruleset (its fd closes at exec),
        // then the seccomp filter, last, so nothing vigil calls here is filtered.
        if cmd.landlock_fd >= 0
            && libc::syscall(libc::SYS_landlock_restrict_self, cmd.landlock_fd, 0u32) != 0
        {
            child_fail(fds.report, STAGE_LANDLOCK);
        }
        if !cmd.seccomp.is_empty() {
            let prog = libc::sock_fprog {
                len: cmd.seccomp.len() as libc::c_ushort,
                filter: cmd.seccomp.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog as libc::c_ulong,
                0,
                0,
            ) != 0
            {
                child_fail(fds.report, STAGE_SECCOMP);
            }
        }
        libc::execve(
            cmd.program.as_ptr(),
            cmd.argv_ptrs.as_ptr(),
            cmd.envp_ptrs.as_ptr(),
        );
        child_fail(fds.report, STAGE_EXEC)
    }
}

/// Leaves a root job no capability, now and after exec: the effective, permitted and
/// inheritable sets emptied by one `capset`, the ambient set cleared. Exec gives uid 0 the
/// bounding set's capabilities, but under no_new_privs (set right after this, before exec) an
/// exec never gains a capability the process does not already hold, so the job and every
/// program it runs have none. One call instead of one `PR_CAPBSET_DROP` per capability (about
/// 40, ~150 us here). Runs after the cwd is entered (as root, which may need them).
#[inline(always)]
unsafe fn drop_capabilities(fds: &ChildFds<'_>) {
    use crate::exec::caps::{CapData, CapHeader};
    // SAFETY: prctl and capset with pointers to stack structs of the kernel's layout.
    unsafe {
        // Kernels before 4.3 have no ambient set (EINVAL): nothing to clear.
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let mut header = CapHeader::this_process();
        let data = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
            child_fail(fds.report, STAGE_CAPABILITIES);
        }
    }
}

/// Gives a root job terminals of its own: a mount namespace of its own (mounts propagate into
/// it from vigil's, none out of it) with a new devpts instance on `/dev/pts`. Opening
/// `/dev/ptmx` (the host's node, which the device rules allow) then makes terminals in that
/// instance (the kernel looks `pts` up beside the `ptmx` opened), and the job sees and opens
/// no other: uid 0 may open every root-owned terminal of the host otherwise, read what is
/// typed there and write to it. Landlock knows the instance only from here: its root is added
/// to the job's ruleset (`pts_rule_access`) before the ruleset is applied (a rule on the
/// host's `/dev/pts` does not reach a mount over it). Needs CAP_SYS_ADMIN, so it runs before
/// the capabilities go. Where a step is refused (a container without CAP_SYS_ADMIN, a seccomp
/// filter of the host), the child goes back to vigil's mount namespace and says nothing: the
/// parent, which hears no [`NOTE_PRIVATE_TERMINALS`], labels the terminals as not held.
#[inline(always)]
unsafe fn private_terminals(cmd: &PreparedCommand, fds: &ChildFds<'_>) {
    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }
    const OWN_NS: &[u8] = b"/proc/self/ns/mnt\0";
    const ROOT: &[u8] = b"/\0";
    const DOT: &[u8] = b".\0";
    const DEVPTS: &[u8] = b"devpts\0";
    const PTS: &[u8] = b"/dev/pts\0";
    const OPTIONS: &[u8] = b"newinstance,ptmxmode=0666,mode=0620\0";
    let c = |b: &[u8]| b.as_ptr().cast::<libc::c_char>();
    // SAFETY: system calls on NUL-terminated constants, a stack struct of the kernel's layout
    // and fds this function owns.
    unsafe {
        let vigils = libc::open(c(OWN_NS), libc::O_RDONLY | libc::O_CLOEXEC);
        // setns() back into vigil's namespace sets the root to that namespace's: vigil's own
        // root (a chroot) is kept here to be entered again then.
        let own_root = libc::open(c(ROOT), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
        if vigils < 0 || own_root < 0 || libc::unshare(libc::CLONE_NEWNS) != 0 {
            for fd in [vigils, own_root] {
                if fd >= 0 {
                    libc::close(fd);
                }
            }
            return;
        }
        let null = std::ptr::null::<libc::c_char>();
        let mut made = libc::mount(
            null,
            c(ROOT),
            null,
            libc::MS_REC | libc::MS_SLAVE,
            null.cast(),
        ) == 0
            && libc::mount(
                c(DEVPTS),
                c(PTS),
                c(DEVPTS),
                libc::MS_NOSUID | libc::MS_NOEXEC,
                c(OPTIONS).cast(),
            ) == 0
            && {
                let detached = detach_other_terminals();
                if !detached {
                    let note = NOTE_TERMINALS_MOUNT_STAYED;
                    libc::write(fds.report, (&note as *const u8).cast(), 1);
                }
                detached
            };
        if made {
            let pts = libc::open(c(PTS), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC);
            let rule = PathBeneath {
                allowed_access: cmd.pts_rule_access,
                parent_fd: pts,
            };
            made = pts >= 0
                && libc::syscall(
                    libc::SYS_landlock_add_rule,
                    cmd.landlock_fd,
                    LANDLOCK_RULE_PATH_BENEATH,
                    &rule as *const PathBeneath,
                    0u32,
                ) == 0;
            if pts >= 0 {
                libc::close(pts);
            }
        }
        if made {
            let note = NOTE_PRIVATE_TERMINALS;
            libc::write(fds.report, (&note as *const u8).cast(), 1);
        } else if libc::setns(vigils, libc::CLONE_NEWNS) != 0
            || libc::fchdir(own_root) != 0
            || libc::chroot(c(DOT)) != 0
        {
            // Half made and no way back (to vigil's namespace and root): the job does not run.
            child_fail(fds.report, STAGE_TERMINALS);
        } else {
            enter_cwd(cmd, fds);
        }
        libc::close(vigils);
        libc::close(own_root);
    }
}

/// Detaches, in the job's own mount namespace, every other mount of the host's terminals (a
/// bind of `/dev/pts` into a chroot, a terminal bound onto a file): reads the namespace's own
/// mount table, detaches the first devpts mount off `/dev/pts` by its mount point, and reads
/// again, until the table holds none, at most [`TERMINAL_MOUNT_ROUNDS_MAX`] times. A path can
/// change under a job that renames directories while this runs, but the table cannot gain a
/// mount from the jobs (they hold no capability): only a table seen to hold none ends it. False
/// when that was not seen (a table that cannot be read whole, a mount point too long to name,
/// one that will not go): then the job gets no terminals of its own, and its record says so.
#[inline(always)]
unsafe fn detach_other_terminals() -> bool {
    use super::terminals::{
        first_other, OtherTerminals, MOUNT_POINT_BYTES_MAX, MOUNT_TABLE_BYTES_MAX,
    };
    const MOUNTINFO: &[u8] = b"/proc/self/mountinfo\0";
    let cap = MOUNT_TABLE_BYTES_MAX + 1;
    // SAFETY: an anonymous private mapping this function unmaps before it returns (the child
    // may share vigil's memory: nothing of it is left behind); reads into it stay within `cap`;
    // the slices below cover only the bytes read; umount2 takes the NUL-terminated buffer.
    unsafe {
        let buf = libc::mmap(
            std::ptr::null_mut(),
            cap,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if buf == libc::MAP_FAILED {
            return false;
        }
        let buf = buf.cast::<u8>();
        let mut point = [0u8; MOUNT_POINT_BYTES_MAX];
        let mut none_left = false;
        for _ in 0..TERMINAL_MOUNT_ROUNDS_MAX {
            let fd = libc::open(MOUNTINFO.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                break;
            }
            let mut len = 0usize;
            let whole = loop {
                let n = libc::read(fd, buf.add(len).cast(), cap - len);
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                if n <= 0 {
                    break n == 0;
                }
                len += n as usize;
                if len == cap {
                    break false; // Longer than the most read: not seen whole.
                }
            };
            libc::close(fd);
            if !whole {
                break;
            }
            match first_other(std::slice::from_raw_parts(buf, len), &mut point) {
                OtherTerminals::None => {
                    none_left = true;
                    break;
                }
                OtherTerminals::Unnamed => break,
                OtherTerminals::At(_) => {
                    // A path that no longer leads to a mount point (a directory above it was
                    // renamed since the table was read) is looked up again in a new table.
                    if libc::umount2(
                        point.as_ptr().cast(),
                        libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW,
                    ) != 0
                        && !matches!(*libc::__errno_location(), libc::EINVAL | libc::ENOENT)
                    {
                        break;
                    }
                }
            }
        }
        libc::munmap(buf.cast(), cap);
        none_left
    }
}

/// Most devpts mounts (stacked ones included) a job's namespace detaches.
const TERMINAL_MOUNT_ROUNDS_MAX: u32 = 16;

/// Enters the job's working directory (its descriptor, opened beneath the root, or its path).
#[inline(always)]
unsafe fn enter_cwd(cmd: &PreparedCommand, fds: &ChildFds<'_>) {
    // SAFETY: fchdir and chdir on a descriptor and a NUL-terminated path the command owns.
    unsafe {
        if let Some(fd) = &cmd.cwd_fd {
            if libc::fchdir(std::os::fd::AsRawFd::as_raw_fd(fd)) != 0 {
                child_fail(fds.report, STAGE_CWD);
            }
        } else if let Some(cwd) = &cmd.cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                child_fail(fds.report, STAGE_CWD);
            }
        }
    }
}

/// Sets the parent-death signal (SIGKILL). If vigil died before it took effect, our parent is
/// already someone else: give up.
#[inline(always)]
unsafe fn die_with_vigil(fds: &ChildFds<'_>) {
    // SAFETY: prctl with integer arguments, getppid and _exit are async-signal-safe.
    unsafe {
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

pub(super) fn stage_name(stage: u8) -> &'static str {
    match stage {
        STAGE_GATE => "waiting for cgroup placement",
        STAGE_STDIO => "setting up stdio",
        STAGE_CWD => "changing to the working directory",
        STAGE_RLIMIT => "setting resource limits",
        STAGE_NO_NEW_PRIVS => "setting no_new_privs",
        STAGE_EXEC => "exec",
        STAGE_PDEATHSIG => "setting the parent-death signal",
        STAGE_PLACE => "moving itself into the job's cgroup leaves",
        STAGE_LANDLOCK => "applying the Landlock ruleset",
        STAGE_SECCOMP => "installing the seccomp filter",
        STAGE_SETGROUPS => "setting the job user's groups (setgroups)",
        STAGE_SETGID => "switching to the job user's group (setresgid)",
        STAGE_SETUID => "switching to the job's user (setresuid)",
        STAGE_CAPABILITIES => "dropping a root job's capabilities",
        STAGE_TERMINALS => {
            "going back to vigil's mount namespace and root after a devpts mount failed"
        }
        _ => "unknown stage",
    }
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
        // SAFETY: an anonymous private mapping at an address the kernel picks; no memory is
        // aliased.
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

    /// The range above the guard page, for clone3 (which takes the lowest address and the size,
    /// and starts the child at their sum: page-aligned, so 16-byte aligned).
    fn usable(&self) -> (*mut libc::c_void, usize) {
        let guard = self.len - CHILD_STACK_BYTES;
        (
            (self.base as usize + guard) as *mut libc::c_void,
            CHILD_STACK_BYTES,
        )
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
    // SAFETY: this runs only in the vfork child (vfork_child is its entry point), as child_exec
    // requires.
    unsafe { child_exec(plan.cmd, plan.fds) }
}

/// CLONE_VM|CLONE_VFORK spawn: no page tables are copied and vigil's other threads take no
/// copy-on-write faults. Every signal is blocked around the clone so no handler of vigil's can
/// run on the shared memory in the child; the child resets them before unblocking.
///
/// With `into` (the cgroup2 leaf's fd) the clone is clone3 with CLONE_INTO_CGROUP: the child is
/// born in the leaf and never migrates there. Returns the child's pid, or the errno (ENOSYS
/// where this build has no clone3 entry for the architecture: the caller falls back).
pub(super) fn vfork_spawn(
    cmd: &PreparedCommand,
    fds: &ChildFds<'_>,
    pidfd: bool,
    into: Option<i32>,
    pidfd_out: &mut i32,
) -> Result<libc::pid_t, i32> {
    let stack = ChildStack::new().map_err(|e| e.raw_os_error().unwrap_or(libc::ENOMEM))?;
    let plan = VforkPlan { cmd, fds };
    let arg = &plan as *const VforkPlan<'_, '_> as *mut libc::c_void;
    // SAFETY: sigset out-parameters of the right type.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: an all-zero sigset_t is a valid value; sigfillset/pthread_sigmask fill it below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: sigset pointers to live locals; the mask is restored in this thread after the clone.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    let rc = match into {
        Some(cgroup_fd) => clone3_vfork(&stack, cgroup_fd, pidfd, pidfd_out, arg),
        None => glibc_vfork(&stack, pidfd, pidfd_out, arg),
    };
    // SAFETY: restoring the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    drop(stack);
    rc
}

/// glibc's clone on the child's stack.
fn glibc_vfork(
    stack: &ChildStack,
    pidfd: bool,
    pidfd_out: &mut i32,
    arg: *mut libc::c_void,
) -> Result<libc::pid_t, i32> {
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    if pidfd {
        flags |= CLONE_PIDFD as libc::c_int;
    }
    // SAFETY: glibc's clone runs vfork_child on the new stack; CLONE_VFORK suspends this thread
    // until the child has exec'd or exited, so the plan behind `arg` and `stack` stay valid.
    let pid = unsafe { libc::clone(vfork_child, stack.top(), flags, arg, pidfd_out as *mut i32) };
    if pid < 0 {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL))
    } else {
        Ok(pid)
    }
}

/// clone3(CLONE_VM|CLONE_VFORK|CLONE_INTO_CGROUP) on the child's stack.
fn clone3_vfork(
    stack: &ChildStack,
    cgroup_fd: i32,
    pidfd: bool,
    pidfd_out: &mut i32,
    arg: *mut libc::c_void,
) -> Result<libc::pid_t, i32> {
    let (low, len) = stack.usable();
    let mut args = CloneArgs {
        flags: (libc::CLONE_VM | libc::CLONE_VFORK) as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        stack: low as u64,
        stack_size: len as u64,
        cgroup: cgroup_fd as u64,
        ..CloneArgs::default()
    };
    if pidfd {
        args.flags |= CLONE_PIDFD;
        args.pidfd = (pidfd_out as *mut i32) as u64;
    }
    // SAFETY: the child starts on `stack` (the kernel sets its stack pointer to the top of the
    // range given) and runs only vfork_child, which never returns; CLONE_VFORK suspends this
    // thread until the child has exec'd or exited, so `args`, the plan behind `arg` and `stack`
    // stay valid for it.
    let rc = unsafe { raw_clone3(&mut args, vfork_child, arg) };
    if rc < 0 {
        Err((-rc) as i32)
    } else {
        Ok(rc as libc::pid_t)
    }
}

/// clone3 whose child starts on a stack of its own, so it cannot return from the system call
/// into Rust code (whose frame is on the parent's stack): it calls `entry(arg)` right after the
/// `syscall` instruction and exits with its result should it ever return. Returns the child's
/// pid or -errno, as the kernel does.
///
/// # Safety
/// `args` must describe a valid stack for the child (or none, without CLONE_VM); `entry` must
/// be safe to run on it with `arg`.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(
    args: &mut CloneArgs,
    entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    arg: *mut libc::c_void,
) -> isize {
    let rc: isize;
    // SAFETY: (the caller's contract) in the parent, the syscall clobbers rax (result), rcx and
    // r11 only; the child never leaves the asm block. The kernel hands the child a stack
    // pointer 16-byte aligned at the top of its stack, as the call needs.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r13",
            "call r12",
            "mov edi, eax",
            "mov eax, {exit}",
            "syscall",
            "ud2",
            "2:",
            exit = const libc::SYS_exit,
            inlateout("rax") libc::SYS_clone3 as isize => rc,
            in("rdi") args as *mut CloneArgs,
            in("rsi") std::mem::size_of::<CloneArgs>(),
            in("r12") entry,
            in("r13") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rc
}

/// No clone3 entry for this architecture yet: the caller falls back to glibc's clone.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_clone3(
    _args: &mut CloneArgs,
    _entry: extern "C" fn(*mut libc::c_void) -> libc::c_int,
    _arg: *mut libc::c_void,
) -> isize {
    -(libc::ENOSYS as isize)
}
