//! Shutdown signals: SIGTERM and SIGINT are blocked in every thread and taken by one thread
//! with `sigwait`, which flags shutdown and wakes the accept loop through a pipe.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Server;

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread started after it).
pub fn block_shutdown_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

pub fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds, owned from here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for SIGTERM or SIGINT, then flags shutdown and wakes the accept loop. Returns the
/// signal.
pub fn spawn_signal_thread(
    set: libc::sigset_t,
    server: Arc<Server>,
    wake: OwnedFd,
) -> Result<std::thread::JoinHandle<i32>, String> {
    std::thread::Builder::new()
        .name("vigil-signals".into())
        .spawn(move || {
            let mut signal = 0;
            // SAFETY: a valid set; sigwait writes the signal number.
            while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
            server.shutting_down.store(true, Ordering::Release);
            let byte = [1u8];
            // SAFETY: one byte to our own pipe.
            unsafe { libc::write(wake.as_raw_fd(), byte.as_ptr().cast(), 1) };
            signal
        })
        .map_err(|e| format!("starting the signal thread: {e}"))
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}
