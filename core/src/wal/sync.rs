//! Making written bytes durable: fdatasync submitted through io_uring (IORING_OP_FSYNC with
//! IORING_FSYNC_DATASYNC), or the plain `fdatasync(2)` system call.
//!
//! Why fdatasync of the file is enough for bytes written through a shared mapping: on Linux
//! `msync(MS_SYNC)` itself is implemented as `vfs_fsync_range(file, start, end, datasync=1)`
//! over the mapped file range (mm/msync.c), and pages dirtied through a `MAP_SHARED` mapping
//! are ordinary dirty pages of the file's page cache, which `fdatasync` writes back and waits
//! on (`file_write_and_wait_range`) before the filesystem commits what is needed to read them.
//! So fdatasync of the whole file covers the mapping, and it is the only form io_uring offers.
//!
//! `Auto` is plain fdatasync: measured on this project's hosts (BENCHMARKS.md, `wal_bench
//! durable` and `group`), one io_uring fsync per pass was never faster than the system call for
//! a lone writer and was slower under the group commit (8 committing threads: 6.9 k vs 9.2 k
//! durable records/s in the same run), since a pass issues a single sync and waits for it
//! either way. `IoUring` stays available; it fails to open where the kernel or a sandbox
//! refuses io_uring (ENOSYS, EPERM, ...). The method in use is reported, with why, so callers
//! can say what they actually do.

use std::io;
use std::os::fd::RawFd;

/// Which system call makes data durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMethod {
    /// The faster here: plain fdatasync (see the module documentation).
    #[default]
    Auto,
    /// io_uring only; opening fails where it is unavailable.
    IoUring,
    /// Plain fdatasync(2).
    Fdatasync,
}

/// Entries in the submission queue: one sync is in flight at a time, per file.
const RING_ENTRIES: u32 = 8;

/// Issues data syncs. One per log; only the group-commit leader uses it.
pub struct SyncEngine {
    ring: Option<io_uring::IoUring>,
    /// Why `Auto` fell back, when it did.
    fallback_reason: Option<io::Error>,
}

impl std::fmt::Debug for SyncEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncEngine")
            .field("method", &self.method_name())
            .finish()
    }
}

impl SyncEngine {
    /// Sets up the chosen method.
    pub fn new(method: SyncMethod) -> io::Result<SyncEngine> {
        match method {
            SyncMethod::Fdatasync | SyncMethod::Auto => Ok(SyncEngine {
                ring: None,
                fallback_reason: None,
            }),
            SyncMethod::IoUring => Ok(SyncEngine {
                ring: Some(io_uring::IoUring::new(RING_ENTRIES)?),
                fallback_reason: None,
            }),
        }
    }

    /// "io_uring" or "fdatasync".
    pub fn method_name(&self) -> &'static str {
        if self.ring.is_some() {
            "io_uring"
        } else {
            "fdatasync"
        }
    }

    /// Why `Auto` did not use io_uring, if it did not.
    pub fn fallback_reason(&self) -> Option<&io::Error> {
        self.fallback_reason.as_ref()
    }

    /// Why `Auto` chooses what it does, for `doctor`.
    pub fn auto_reason() -> &'static str {
        "measured: plain fdatasync(2) was as fast as io_uring fsync for a lone writer and \
         faster under group commit (8 committing threads), since each sync pass issues one \
         sync and waits for it either way; io_uring is used only when asked for"
    }

    /// Makes every written byte of `fd` (through write or a shared mapping) durable.
    pub fn fdatasync(&mut self, fd: RawFd) -> io::Result<()> {
        match self.ring.as_mut() {
            Some(ring) => uring_fdatasync(ring, fd),
            None => plain_fdatasync(fd),
        }
    }
}

fn plain_fdatasync(fd: RawFd) -> io::Result<()> {
    loop {
        // SAFETY: fdatasync takes a plain descriptor; an invalid one yields EBADF.
        let rc = unsafe { libc::fdatasync(fd) };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Wake-ups without a completion one sync tolerates (each is a signal or task work cutting
/// the wait short); past this the ring is not behaving and the sync fails.
const URING_EMPTY_WAKEUPS_MAX: u32 = 1_000_000;

fn uring_fdatasync(ring: &mut io_uring::IoUring, fd: RawFd) -> io::Result<()> {
    use io_uring::{opcode, types};
    const USER_DATA: u64 = 0x0056_4947_494C;
    let entry = opcode::Fsync::new(types::Fd(fd))
        .flags(types::FsyncFlags::DATASYNC)
        .build()
        .user_data(USER_DATA);
    // SAFETY: the entry refers to no buffer; the descriptor outlives the call, which waits for
    // the completion before returning.
    unsafe { ring.submission().push(&entry) }
        .map_err(|_| io::Error::other("io_uring submission queue full"))?;
    // io_uring_enter reports a submission as a success even when a signal cut its wait
    // short, so a successful return does not mean the completion is there: wait until it is.
    // Later calls submit nothing and only wait.
    let mut empty_wakeups = 0u32;
    let completion = loop {
        if let Some(completion) = ring.completion().next() {
            break completion;
        }
        match ring.submit_and_wait(1) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
        empty_wakeups += 1;
        if empty_wakeups > URING_EMPTY_WAKEUPS_MAX {
            return Err(io::Error::other(
                "io_uring keeps returning without the sync's completion",
            ));
        }
    };
    assert_eq!(
        completion.user_data(),
        USER_DATA,
        "only one sync is ever in flight"
    );
    match completion.result() {
        result if result < 0 => Err(io::Error::from_raw_os_error(-result)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn both_methods_sync_a_real_file_and_report_themselves() {
        let dir = std::env::temp_dir().join(format!("vigil-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::File::create(dir.join("f")).unwrap();
        let mut plain = SyncEngine::new(SyncMethod::Fdatasync).unwrap();
        assert_eq!(plain.method_name(), "fdatasync");
        plain.fdatasync(file.as_raw_fd()).unwrap();
        let mut auto = SyncEngine::new(SyncMethod::Auto).unwrap();
        assert_eq!(auto.method_name(), "fdatasync", "the measured choice");
        auto.fdatasync(file.as_raw_fd()).unwrap();
        match SyncEngine::new(SyncMethod::IoUring) {
            Ok(mut ring) => {
                assert_eq!(ring.method_name(), "io_uring");
                ring.fdatasync(file.as_raw_fd()).unwrap();
                // A bad descriptor must come back as an error through the ring, not success.
                assert_eq!(
                    ring.fdatasync(-1).unwrap_err().raw_os_error(),
                    Some(libc::EBADF)
                );
            }
            Err(error) => eprintln!("io_uring unavailable here: {error}"),
        }
        assert_eq!(
            plain.fdatasync(-1).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    extern "C" fn ignore_signal(_: libc::c_int) {}

    #[test]
    fn a_signal_during_the_wait_does_not_fail_the_sync() {
        let Ok(mut engine) = SyncEngine::new(SyncMethod::IoUring) else {
            eprintln!("skipped: io_uring unavailable here");
            return;
        };
        // A handler without SA_RESTART: a signal cuts io_uring_enter's wait short after the
        // submission went in, which the kernel reports as a successful submit.
        // SAFETY: installing a handler that does nothing.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as *const () as usize;
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut());
        }
        let path = std::env::temp_dir().join(format!("vigil-sync-sig-{}", std::process::id()));
        let mut file = std::fs::File::create(&path).unwrap();
        // SAFETY: pthread_self has no failure mode.
        let target = unsafe { libc::pthread_self() } as usize;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pelter = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // SAFETY: the target thread outlives this one (joined below).
                    unsafe { libc::pthread_kill(target as libc::pthread_t, libc::SIGUSR2) };
                    std::thread::sleep(std::time::Duration::from_micros(50));
                }
            })
        };
        let mut result = Ok(());
        for i in 0..300u32 {
            use std::io::Write;
            file.write_all(&i.to_le_bytes()).unwrap();
            result = engine.fdatasync(file.as_raw_fd());
            if result.is_err() {
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        pelter.join().unwrap();
        std::fs::remove_file(&path).unwrap();
        result.unwrap();
    }
}
