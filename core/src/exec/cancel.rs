//! Cancelling a running job from another thread.
use std::os::fd::{AsRawFd, OwnedFd};

use super::ExecError;

/// Cancels a running job from another thread (`jobs.cancel`): an eventfd the supervision loop
/// polls beside the job's pipes, so cancellation is as prompt as a deadline.
#[derive(Debug, Clone)]
pub struct CancelToken {
    pub(super) fd: std::sync::Arc<OwnedFd>,
    /// Bytes the running job has written to stdout and stderr, as the supervisor last saw.
    pub(super) output_bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Result<CancelToken, ExecError> {
        use std::os::fd::FromRawFd;
        // SAFETY: eventfd with constant flags; the fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(ExecError::Io {
                context: "eventfd for job cancellation".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        // SAFETY: eventfd returned a fresh descriptor (fd >= 0) that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(CancelToken {
            fd: std::sync::Arc::new(fd),
            output_bytes: Default::default(),
        })
    }

    /// Bytes the job has written to stdout and stderr so far (progress while it runs).
    pub fn output_bytes(&self) -> u64 {
        self.output_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Asks the job to end: every process of it is killed, status `interrupted`.
    pub fn cancel(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes to an owned eventfd.
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// True once [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe { libc::poll(&mut pfd, 1, 0) == 1 }
    }
}
