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

/// The `strict` filter: EPERM for socket(2) of any family but AF_UNIX and for the three
/// io_uring calls; everything else allowed (Landlock holds the file rules).
pub(super) fn strict_program() -> Result<Vec<libc::sock_filter>, ExecError> {
    static PROGRAM: OnceLock<Result<Vec<libc::sock_filter>, String>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| compile().map_err(|e| e.to_string()))
        .clone()
        .map_err(err)
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
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(err)?;
    let prog: BpfProgram = filter.try_into().map_err(err)?;
    Ok(prog
        .into_iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect())
}
