//! Growing the process's descriptor table once, at start-up, instead of while a job is being set
//! up.
//!
//! The kernel grows a table that is full by allocating a larger one; when the table is shared by
//! more than one thread it then waits for an RCU grace period before freeing the old one (5-12 ms
//! measured on a hybrid host). A job's Landlock read rules hold one O_PATH descriptor per entry
//! beside the path to each denied directory (several hundred for a data dir in a crowded /tmp),
//! opened after the sampler thread started: each doubling past 256 cost a grace period inside
//! `vigil run`. Grown while the process has one thread, the table is copied and freed at once.
//!
//! What this does not do: it reserves slots, not descriptors (RLIMIT_NOFILE still bounds them),
//! and a table that outgrows the reserve grows as before.

/// Slots reserved (8 bytes each, plus two bitmaps): room for the read rules of several hundred
/// entries and every other descriptor of a job.
pub const FD_TABLE_SLOTS_RESERVED: u64 = 1024;

/// Grows the descriptor table to [`FD_TABLE_SLOTS_RESERVED`] slots (fewer if the soft
/// RLIMIT_NOFILE is lower) by duplicating a descriptor to the last slot and closing it. Cheap
/// (three system calls) and without a wait only while the process has a single thread: call it
/// first thing in `main`. Returns the table's size as the kernel then reports it in
/// `/proc/self/status` terms (the highest slot reserved, plus one), or the error.
pub fn reserve_fd_table() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let slots = FD_TABLE_SLOTS_RESERVED.min(limit.rlim_cur);
    if slots < 2 {
        return Ok(slots);
    }
    let top = (slots - 1) as libc::c_int;
    // SAFETY: a fresh descriptor, closed below.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: F_DUPFD_CLOEXEC on our own descriptor: the lowest free slot at or above `top`.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, top) };
    let err = std::io::Error::last_os_error();
    // SAFETY: closing the descriptors opened here (a failed dup returned -1: nothing to close).
    unsafe {
        if high >= 0 {
            libc::close(high);
        }
        libc::close(fd);
    }
    if high < 0 {
        return Err(err);
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's own figure: `FDSize` in /proc/self/status.
    fn fd_table_slots() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("FDSize:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn the_table_holds_the_reserved_slots_and_no_descriptor_is_left_open() {
        let slots = reserve_fd_table().unwrap();
        assert!(slots >= 2, "RLIMIT_NOFILE too low to test: {slots}");
        assert!(
            fd_table_slots() >= slots,
            "table of {} slots after reserving {slots}",
            fd_table_slots()
        );
        // Which descriptors are open, before and after, in a child of its own: other tests'
        // threads open and close descriptors in this process meanwhile. The child makes only
        // system calls (no allocation) and says by its exit status.
        // SAFETY: fork; the child runs fcntl, open and close only, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let open = || {
                let mut set = [false; FD_TABLE_SLOTS_RESERVED as usize];
                for (fd, slot) in set.iter_mut().enumerate() {
                    // SAFETY: F_GETFD on any number only reports whether it is open.
                    *slot = unsafe { libc::fcntl(fd as libc::c_int, libc::F_GETFD) } >= 0;
                }
                set
            };
            let before = open();
            let code = match reserve_fd_table() {
                Ok(_) if open() == before => 0,
                Ok(_) => 1,
                Err(_) => 2,
            };
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "{status}");
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "1: a descriptor left open, 2: failed"
        );
    }
}
