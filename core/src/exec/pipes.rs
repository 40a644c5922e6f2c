//! The job's stdout and stderr drained into capped buffers and its stdin fed, all non-blocking,
//! waiting on the pipes and any other descriptors that should wake the supervisor.
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use super::output::{CappedOutput, CapturedOutput};

/// Bytes read from one pipe per wake-up, so a flood cannot starve the deadline check.
const READ_BYTES_PER_WAKE_MAX: usize = 1 << 20;
/// Scratch buffer for pipe reads.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// After the group is empty, how long vigil keeps reading pipes whose write end escaped (passed
/// to a process outside the group).
const FINAL_DRAIN_MS_MAX: u64 = 200;

/// Pipe reader state for one stream.
struct Stream {
    fd: Option<OwnedFd>,
    capture: CappedOutput,
}

impl Stream {
    /// Reads what is available (non-blocking) up to the per-wake bound; closes on EOF.
    /// `scratch` is never initialised: the kernel writes what it reads into it, and only
    /// those bytes are looked at (so a job's small output touches one page of it, not 64 KiB).
    fn drain(&mut self, scratch: &mut [MaybeUninit<u8>]) {
        let Some(fd) = &self.fd else { return };
        let mut read_total = 0usize;
        while read_total < READ_BYTES_PER_WAKE_MAX {
            // SAFETY: reading into a live scratch buffer of `scratch.len()` bytes from an owned
            // fd.
            let n =
                unsafe { libc::read(fd.as_raw_fd(), scratch.as_mut_ptr().cast(), scratch.len()) };
            if n > 0 {
                // SAFETY: the read initialised its first `n` bytes (n <= scratch.len()).
                let read = unsafe {
                    std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n as usize)
                };
                self.capture.push(read);
                read_total += n as usize;
                continue;
            }
            if n == 0 {
                self.fd = None;
                return;
            }
            let e = std::io::Error::last_os_error().raw_os_error();
            if e == Some(libc::EINTR) {
                continue;
            }
            if e != Some(libc::EAGAIN) {
                self.fd = None;
            }
            return;
        }
    }
}

/// The job's stdout and stderr being drained and its stdin being fed, all non-blocking.
pub(super) struct Pipes<'a> {
    out: Stream,
    err: Stream,
    stdin: Option<OwnedFd>,
    stdin_data: &'a [u8],
    stdin_off: usize,
    scratch: Box<[MaybeUninit<u8>]>,
}

impl<'a> Pipes<'a> {
    pub(super) fn new(
        stdout: OwnedFd,
        stderr: OwnedFd,
        stdin: Option<OwnedFd>,
        stdin_data: &'a [u8],
        cap_bytes: usize,
    ) -> Pipes<'a> {
        for fd in [Some(&stdout), Some(&stderr), stdin.as_ref()]
            .into_iter()
            .flatten()
        {
            set_nonblocking(fd.as_raw_fd());
        }
        Pipes {
            out: Stream {
                fd: Some(stdout),
                capture: CappedOutput::new(cap_bytes),
            },
            err: Stream {
                fd: Some(stderr),
                capture: CappedOutput::new(cap_bytes),
            },
            stdin,
            stdin_data,
            stdin_off: 0,
            scratch: Box::new_uninit_slice(READ_CHUNK_BYTES),
        }
    }

    /// Waits (at most `wait`; `None`: without bound) until a pipe or one of `wake` is ready,
    /// then drains what the pipes hold and feeds stdin what it takes.
    pub(super) fn pump(&mut self, wake: &[Option<&OwnedFd>], wait: Option<Duration>) {
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(5);
        let wanted = wake.iter().map(|fd| (*fd, libc::POLLIN)).chain([
            (self.out.fd.as_ref(), libc::POLLIN),
            (self.err.fd.as_ref(), libc::POLLIN),
            (self.stdin.as_ref(), libc::POLLOUT),
        ]);
        for (fd, events) in wanted {
            if let Some(fd) = fd {
                pfds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
        }
        let ts = wait.map(|w| libc::timespec {
            tv_sec: w.as_secs() as libc::time_t,
            tv_nsec: w.subsec_nanos() as libc::c_long,
        });
        // SAFETY: pfds is a live array of pollfd; ts lives across the call.
        unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
                std::ptr::null(),
            )
        };
        self.out.drain(&mut self.scratch);
        self.err.drain(&mut self.scratch);
        self.feed_stdin();
    }

    fn feed_stdin(&mut self) {
        let Some(fd) = &self.stdin else { return };
        let data = self.stdin_data;
        if self.stdin_off < data.len() {
            // SAFETY: writing from a live slice to an owned non-blocking fd.
            let n = unsafe {
                libc::write(
                    fd.as_raw_fd(),
                    data[self.stdin_off..].as_ptr().cast(),
                    data.len() - self.stdin_off,
                )
            };
            if n > 0 {
                self.stdin_off += n as usize;
            } else if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
            {
                self.stdin = None; // EPIPE: the job closed its stdin.
            }
        }
        if self.stdin_off >= data.len() {
            self.stdin = None; // EOF for the job.
        }
    }

    /// Reads to EOF once every writer is gone, for at most [`FINAL_DRAIN_MS_MAX`] (a write end
    /// may have been passed outside the job).
    pub(super) fn drain_to_eof(&mut self) {
        let until = Instant::now() + Duration::from_millis(FINAL_DRAIN_MS_MAX);
        while (self.out.fd.is_some() || self.err.fd.is_some()) && Instant::now() < until {
            let mut pfds: Vec<libc::pollfd> = [self.out.fd.as_ref(), self.err.fd.as_ref()]
                .into_iter()
                .flatten()
                .map(|f| libc::pollfd {
                    fd: f.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: live pollfd array.
            unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, 10) };
            self.out.drain(&mut self.scratch);
            self.err.drain(&mut self.scratch);
        }
    }

    /// Bytes the job has written to stdout and stderr so far (kept or not).
    pub(super) fn output_bytes(&self) -> u64 {
        self.out.capture.total_bytes() + self.err.capture.total_bytes()
    }

    /// The captured stdout and stderr.
    pub(super) fn finish(self) -> (CapturedOutput, CapturedOutput) {
        (self.out.capture.finish(), self.err.capture.finish())
    }
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an owned fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
}
