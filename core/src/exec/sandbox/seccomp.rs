//! The seccomp side of `strict`: socket(2) only for AF_UNIX, no io_uring. Compiled to BPF in
//! the parent; the child installs it with one prctl.
use std::collections::BTreeMap;
use std::sync::OnceLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::exec::ExecError;

/// The kernel takes seccomp filters here and seccompiler knows this architecture.
pub(super) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let arch_ok = TargetArch::try_from(std::env::consts::ARCH).is_ok();
        // SAFETY: PR_GET_SECCOMP takes no further arguments.
        let prctl_ok = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } >= 0;
        // Read with room for the whole file at once (it reports no size; the default read
        // starts at 32 bytes and doubles: seven reads).
        let mut status = String::with_capacity(8 << 10);
        let filters = std::fs::File::open("/proc/self/status")
            .and_then(|mut f| std::io::Read::read_to_string(&mut f, &mut status))
            .is_ok_and(|_| status.contains("Seccomp_filters:"));
        arch_ok && prctl_ok && filters
    })
}

fn err(e: impl std::fmt::Display) -> ExecError {
    ExecError::Io {
        context: format!("building the job's seccomp filter: {e}"),
        source: std::io::Error::other("seccomp"),
    }
}

/// The `strict` filter: EPERM for socket(2) of any family but AF_UNIX, for the three
/// io_uring calls and for setting another process's limits ([`other_process_limits`]);
/// everything else allowed (Landlock holds the file rules).
pub(super) fn strict_program() -> Result<Vec<libc::sock_filter>, ExecError> {
    static PROGRAM: OnceLock<Result<Vec<libc::sock_filter>, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| compile().map_err(|e| e.to_string()))
        .clone()
        .map_err(err)
}

/// The filter of a root job in `workspace`: the guard below (x32 calls and `clone3` refused
/// with `ENOSYS`), then an architecture check (another arch's call kills the process, as
/// i386's `clone3` could reach `CLONE_INTO_CGROUP` too), then `prlimit64` on another process
/// refused with `EPERM` ([`other_process_limits`]); everything else allowed. A job that runs
/// as root could otherwise leave its cgroup by `clone3(CLONE_INTO_CGROUP)` into a cgroup it
/// opened for reading, which Landlock does not see (the kernel checks the target's
/// `cgroup.procs` permissions, which uid 0 owns).
pub(super) fn root_program() -> Result<Vec<libc::sock_filter>, ExecError> {
    static PROGRAM: OnceLock<Result<Vec<libc::sock_filter>, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
            let mut rules = BTreeMap::new();
            rules.insert(
                libc::SYS_prlimit64,
                other_process_limits().map_err(|e| e.to_string())?,
            );
            let filter = SeccompFilter::new(
                rules,
                SeccompAction::Allow,
                SeccompAction::Errno(libc::EPERM as u32),
                arch,
            )
            .map_err(|e| e.to_string())?;
            let prog: BpfProgram = filter
                .try_into()
                .map_err(|e: seccompiler::BackendError| e.to_string())?;
            Ok(with_guard(prog))
        })
        .clone()
        .map_err(err)
}

/// `prlimit64(pid, resource, new, old)` that sets (`new` not NULL) another process's limits
/// (`pid` not 0). The kernel lets a process set the limits of any process with its own user
/// and group ids, and Landlock's scoping covers signals, not this: a root job could otherwise
/// set vigil's open-files limit to 0, or any root process's. A job still sets its own (pid 0,
/// or `setrlimit`) and reads anyone's it may.
fn other_process_limits() -> Result<Vec<SeccompRule>, ExecError> {
    let nonzero = |arg: u8| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Qword, SeccompCmpOp::Ne, 0).map_err(err)
    };
    Ok(vec![
        SeccompRule::new(vec![nonzero(0)?, nonzero(2)?]).map_err(err)?
    ])
}

fn with_guard(prog: BpfProgram) -> Vec<libc::sock_filter> {
    let mut out = guard();
    out.extend(prog.into_iter().map(|i| libc::sock_filter {
        code: i.code,
        jt: i.jt,
        jf: i.jf,
        k: i.k,
    }));
    out
}

fn compile() -> Result<Vec<libc::sock_filter>, ExecError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(err)?;
    let not_unix = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Ne,
        libc::AF_UNIX as u64,
    )
    .map_err(err)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(
        libc::SYS_socket,
        vec![SeccompRule::new(vec![not_unix]).map_err(err)?],
    );
    // An empty rule list matches the call whatever its arguments.
    for nr in [
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        rules.insert(nr, Vec::new());
    }
    rules.insert(libc::SYS_prlimit64, other_process_limits()?);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let prog: BpfProgram = filter.try_into().map_err(err)?;
    Ok(with_guard(prog))
}

/// A guard before the compiled rules, on x86_64:
/// - x32 calls enter the kernel with the native audit arch and the syscall number with bit 30
///   set, so rules that name native numbers would let an x32 `socket(2)` or
///   `io_uring_setup(2)` through on a kernel that enables x32: every x32 call is refused with
///   `ENOSYS` (as a kernel without x32 does);
/// - `clone3(2)` is refused with `ENOSYS`, so the C library falls back to `clone(2)`: its
///   `CLONE_INTO_CGROUP` would let a root job start a process in a cgroup of its choosing
///   (Landlock does not see it; seccomp cannot read the flags, which clone3 takes in memory).
///
/// Otherwise it falls through to the compiled program, which checks the arch again (another
/// arch's call kills the process). Its jumps stay inside it, so prepending it moves nothing.
fn guard() -> Vec<libc::sock_filter> {
    #[cfg(target_arch = "x86_64")]
    {
        const X32_SYSCALL_BIT: u32 = 0x4000_0000;
        const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
        let stmt = |code: u32, k: u32| libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        };
        vec![
            // seccomp_data: nr at offset 0, arch at 4.
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4),
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                AUDIT_ARCH_X86_64,
                0,
                4,
            ),
            stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
            jump(
                libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
                X32_SYSCALL_BIT,
                1,
                0,
            ),
            jump(
                libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
                libc::SYS_clone3 as u32,
                0,
                1,
            ),
            stmt(
                libc::BPF_RET | libc::BPF_K,
                libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
            ),
        ]
    }
    #[cfg(not(target_arch = "x86_64"))]
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the program returns for one call: a classic-BPF evaluator for the instructions
    /// seccomp filters use (loads of `seccomp_data` words, conditional jumps against constants,
    /// `ja`, `ret`), enough to run the `strict` program without installing it.
    fn verdict(prog: &[libc::sock_filter], nr: u32, arch: u32, arg0: u64) -> u32 {
        verdict_args(prog, nr, arch, [arg0, 0, 0])
    }

    /// [`verdict`] with the first three arguments.
    fn verdict_args(prog: &[libc::sock_filter], nr: u32, arch: u32, args: [u64; 3]) -> u32 {
        let word = |off: u32| -> u32 {
            match off {
                0 => nr,
                4 => arch,
                16..=39 => {
                    let arg = args[((off - 16) / 8) as usize];
                    if off.is_multiple_of(8) {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                _ => 0,
            }
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            let code = u32::from(i.code);
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => acc = word(i.k),
                c if c == libc::BPF_RET | libc::BPF_K => return i.k,
                c if c == libc::BPF_JMP | libc::BPF_JA => {
                    pc += i.k as usize;
                }
                c if c & 0x07 == libc::BPF_JMP => {
                    let taken = match c & 0xf0 {
                        x if x == libc::BPF_JEQ => acc == i.k,
                        x if x == libc::BPF_JGE => acc >= i.k,
                        x if x == libc::BPF_JGT => acc > i.k,
                        x if x == libc::BPF_JSET => acc & i.k != 0,
                        other => panic!("jump {other:#x} not modelled"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("instruction {other:#x} not modelled"),
            }
            pc += 1;
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_programs_refuse_x32_calls_and_clone3_and_kill_foreign_arches() {
        let prog = strict_program().unwrap();
        let x86_64 = 0xC000_003E;
        let i386 = 0x4000_0003;
        let x32 = 0x4000_0000;
        let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
        let socket = libc::SYS_socket as u32;
        let uring = libc::SYS_io_uring_setup as u32;
        let (inet, unix) = (libc::AF_INET as u64, libc::AF_UNIX as u64);
        // Native calls: the rules as written.
        assert_eq!(verdict(&prog, socket, x86_64, inet), eperm);
        assert_eq!(
            verdict(&prog, socket, x86_64, unix),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(verdict(&prog, uring, x86_64, 0), eperm);
        assert_eq!(
            verdict(&prog, libc::SYS_read as u32, x86_64, 0),
            libc::SECCOMP_RET_ALLOW
        );
        // x32 calls, the same numbers with bit 30 set: refused whatever they are.
        assert_eq!(verdict(&prog, x32 | socket, x86_64, inet), enosys);
        assert_eq!(verdict(&prog, x32 | uring, x86_64, 0), enosys);
        assert_eq!(
            verdict(&prog, x32 | libc::SYS_read as u32, x86_64, 0),
            enosys
        );
        // clone3: refused with ENOSYS (the C library falls back to clone).
        let clone3 = libc::SYS_clone3 as u32;
        assert_eq!(verdict(&prog, clone3, x86_64, 0), enosys);
        assert_eq!(
            verdict(&prog, libc::SYS_clone as u32, x86_64, 0),
            libc::SECCOMP_RET_ALLOW
        );
        // The root job's filter in workspace: the same guard, then everything allowed.
        let root = root_program().unwrap();
        assert_eq!(verdict(&root, clone3, x86_64, 0), enosys);
        assert_eq!(verdict(&root, x32 | socket, x86_64, inet), enosys);
        assert_eq!(
            verdict(&root, socket, x86_64, inet),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(verdict(&root, uring, x86_64, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(verdict(&root, 120, i386, 0), libc::SECCOMP_RET_KILL_PROCESS);
        // prlimit64: setting another process's limits is refused; its own, or reading, not.
        let prlimit = libc::SYS_prlimit64 as u32;
        for p in [&prog, &root] {
            assert_eq!(verdict_args(p, prlimit, x86_64, [4242, 7, 0x7000]), eperm);
            assert_eq!(
                verdict_args(p, prlimit, x86_64, [1 << 32, 7, 1]),
                eperm,
                "a pid in the high word only"
            );
            assert_eq!(
                verdict_args(p, prlimit, x86_64, [0, 7, 0x7000]),
                libc::SECCOMP_RET_ALLOW
            );
            assert_eq!(
                verdict_args(p, prlimit, x86_64, [4242, 7, 0]),
                libc::SECCOMP_RET_ALLOW
            );
        }
        // i386 (`int 0x80`): another arch, the process is killed.
        assert_eq!(
            verdict(&prog, 102, i386, inet),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }
}
