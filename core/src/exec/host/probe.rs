//! Which process and file syscalls the kernel offers, asked of the kernel itself.
use std::io;

fn syscall_exists(probe: impl FnOnce() -> libc::c_long) -> bool {
    let rc = probe();
    !(rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

/// clone3(NULL, 0) fails with EINVAL when the syscall exists and ENOSYS when it does not.
pub(super) fn probe_clone3() -> bool {
    // SAFETY: a zero size makes the kernel reject the call before touching the pointer.
    syscall_exists(|| unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) })
}

pub(super) fn probe_pidfd() -> bool {
    // SAFETY: pidfd_open on our own pid; the fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    if fd >= 0 {
        // SAFETY: fd is the descriptor pidfd_open just returned, owned here and closed once.
        unsafe { libc::close(fd as i32) };
        true
    } else {
        false
    }
}

pub(super) fn probe_openat2() -> bool {
    let how = super::super::fsroot::OpenHow {
        flags: (libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: 0,
    };
    // SAFETY: valid path and open_how of the published size.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            &how as *const super::super::fsroot::OpenHow,
            std::mem::size_of::<super::super::fsroot::OpenHow>(),
        )
    };
    if fd >= 0 {
        // SAFETY: fd is the descriptor openat2 just returned, owned here and closed once.
        unsafe { libc::close(fd as i32) };
        true
    } else {
        false
    }
}

pub(super) fn probe_close_range() -> bool {
    // SAFETY: closing the empty range [MAX, MAX] closes nothing.
    syscall_exists(|| unsafe { libc::syscall(libc::SYS_close_range, u32::MAX, u32::MAX, 0u32) })
}

/// Whether this process holds CAP_SYS_ADMIN (its effective set, by `capget`): what making a
/// mount namespace and mounting in it need. The kernel may still refuse (a seccomp filter of a
/// container): a job's record says so after the fact.
pub(super) fn probe_cap_sys_admin() -> bool {
    use crate::exec::caps::{CapData, CapHeader};
    const CAP_SYS_ADMIN: u32 = 21;
    let mut header = CapHeader::this_process();
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two `CapData` for version 3 into the array it is given.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    rc == 0 && data[0].effective & (1 << CAP_SYS_ADMIN) != 0
}
