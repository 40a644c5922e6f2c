//! The supervisor out of a job's reach: vigil makes itself non-dumpable.
//!
//! A non-dumpable process's /proc/PID files (environ, fd, mem, maps, ...) belong to root, and
//! only a process with CAP_SYS_PTRACE may ptrace it: a job running as the same uid as vigil can
//! neither read vigil's environment, descriptors or memory nor attach to it. Jobs themselves are
//! dumpable again: execve resets the flag.
//!
//! What this does not do: a job running as root still reads those files (root owns them) and
//! may signal vigil; against root jobs, run the job as another user. A same-uid job may still
//! signal vigil (signals follow uids, not dumpability).

/// Makes the calling process non-dumpable (`prctl(PR_SET_DUMPABLE, 0)`). Idempotent; call it
/// before any job starts.
pub fn make_non_dumpable() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes one integer argument and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the calling process is dumpable (`prctl(PR_GET_DUMPABLE)`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no argument and touches no memory.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_forked_child_sees_the_flag_and_exec_resets_it() {
        // Run in a child process so the test binary itself keeps its flag.
        // SAFETY: fork in a test; the child only makes async-signal-safe calls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = super::make_non_dumpable().is_ok() && !super::is_dumpable();
            // SAFETY: _exit never returns.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
