//! One log, many processes: the append lock and the shared tail.
//!
//! Any number of processes (one-shot CLI runs, a server, C hosts) write the same log. As in
//! SQLite's WAL mode, each append batch runs under a short exclusive lock, and the lock holder
//! finds the log's end through a small shared index of the tail:
//!
//! - The append lock: a process-shared, robust pthread mutex in the `TAIL` page, taken per
//!   batch and released when the batch is in the segment. Uncontended it costs two atomic
//!   instructions, no system call; when its holder dies the kernel hands it to the next
//!   locker with `EOWNERDEAD`, which checks everything the dead holder may have left.
//!   Opening also holds [`AppendLock`] (`flock` on the `LOCK` file, through a descriptor of
//!   the writer's own), under which a new `TAIL` file's mutex is initialised exactly once.
//! - [`SharedTail`]: the `TAIL` file, mapped shared. It holds two checksummed slots (the
//!   active segment, the write offset, the next LSN, the checksum the next frame chains to,
//!   and a counter the log's users draw unique numbers from), written alternately, so a
//!   holder that dies mid-update leaves the other slot intact; and a word the holder sets
//!   while it holds the lock, so the next holder knows when the previous one died mid-batch.
//!
//! The tail is a hint, never trusted blindly: the holder continues from its own view of the
//! log, follows the frame chain over what others appended (into the segments they rotated
//! to), and checks that it reached at least where the tail says. What a dead holder left
//! past the chain is not part of the log: it never reached a sync, so it was never
//! acknowledged.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::crc32c::crc32c;
use super::error::context;
use super::frame::Lsn;
use super::mode::PRIVATE_FILE_MODE;

/// Name of the lock file appends are serialised on.
pub const LOCK_FILE_NAME: &str = "LOCK";
/// Name of the file every open writer holds a shared lock on for its life (so a tool that
/// needs the log to itself, `repair`, can tell that none is open).
pub const WRITERS_FILE_NAME: &str = "WRITERS";
/// Name of the shared tail file.
pub const TAIL_FILE_NAME: &str = "TAIL";
/// Size of the tail file: one page.
const TAIL_FILE_BYTES: usize = 4096;
const TAIL_MAGIC: u32 = 0x5441_4956; // "VIAT"
const TAIL_VERSION: u32 = 1;
/// Where the "held by" word lives, and the two slots.
const HOLDER_AT: usize = 0;
const SLOT_AT: [usize; 2] = [64, 192];
const SLOT_BYTES: usize = 72;
/// The word that says the mutex is initialised, and the mutex.
const MUTEX_READY_AT: usize = 512;
const MUTEX_AT: usize = 576;
const MUTEX_READY: u64 = 0x5845_5455_4d5f_4c47; // "GL_MUTEX"

/// The exclusive lock one append batch runs under.
#[derive(Debug)]
pub struct AppendLock {
    file: File,
}

/// Opens (creating, private to the owner, never truncated) a file the log's processes share.
fn open_private(path: &Path, what: &str) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(PRIVATE_FILE_MODE)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // Never followed: vigil (root, say) would write where whoever put it there chose.
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{what} {}: a symlink, where vigil keeps a file of its own; someone else may \
                     have put it there; refusing to use it",
                    path.display()
                ),
            ),
            _ => context(e, what, path),
        })
}

impl AppendLock {
    /// Opens (creating) the lock file in `dir`; takes no lock.
    pub fn open(dir: &Path) -> io::Result<AppendLock> {
        AppendLock::open_named(dir, LOCK_FILE_NAME)
    }

    /// Opens (creating) the lock file `name` in `dir`; takes no lock.
    pub fn open_named(dir: &Path, name: &str) -> io::Result<AppendLock> {
        let file = open_private(&dir.join(name), "open lock file")?;
        Ok(AppendLock { file })
    }

    /// Waits for the lock.
    pub fn lock(&self) -> io::Result<()> {
        self.flock(libc::LOCK_EX)
    }

    /// Takes the lock shared (beside other shared holders), failing at once if it is held
    /// exclusively.
    pub fn try_lock_shared(&self) -> io::Result<bool> {
        match self.flock(libc::LOCK_SH | libc::LOCK_NB) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes the lock if no one holds it; false if someone does.
    pub fn try_lock(&self) -> io::Result<bool> {
        match self.flock(libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Releases the lock.
    pub fn unlock(&self) {
        let _ = self.flock(libc::LOCK_UN);
    }

    fn flock(&self, operation: libc::c_int) -> io::Result<()> {
        loop {
            // SAFETY: flock on a descriptor we own.
            if unsafe { libc::flock(self.file.as_raw_fd(), operation) } == 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

/// Releases an [`AppendLock`] when dropped (a panic under the lock must not keep every other
/// process waiting for this one to exit).
pub(super) struct Held<'a>(pub(super) &'a AppendLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// Where the log ends, as the last lock holder published it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailState {
    /// Sequence number of the segment the log ends in.
    pub seq: u64,
    /// Byte offset in that segment where the next frame goes.
    pub offset: u64,
    /// The LSN the next appended record gets.
    pub next_lsn: Lsn,
    /// Checksum of the last frame of that segment, which the next frame chains on (0 when the
    /// segment has no frame yet).
    pub prev_checksum: u32,
    /// The next value of the log's shared counter (see `Wal::claim_number`).
    pub counter: u64,
}

/// The shared tail file, mapped.
pub struct SharedTail {
    map: memmap2::MmapRaw,
    _file: File,
    /// The generation this process last read or published: when the newest slot still has
    /// it and no holder died, nothing changed since.
    seen: u64,
    /// What [`SharedTail::enter`] writes into the holder word: this process's id when the
    /// tail was opened (never 0), taken once, as `getpid` is a system call and `enter` runs
    /// on every append. Only its being non-zero means anything (a child forked after the
    /// open writes its parent's id: still a mark).
    holder_mark: u64,
}

impl std::fmt::Debug for SharedTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTail").finish_non_exhaustive()
    }
}

impl SharedTail {
    /// Opens (creating, all blocks allocated) the tail file in `dir`.
    pub fn open(dir: &Path) -> io::Result<SharedTail> {
        let path = dir.join(TAIL_FILE_NAME);
        let file = open_private(&path, "open tail file")?;
        // Allocated, never sparse: a store into the mapping cannot fail for want of space.
        // Growing an existing file of the right size changes nothing.
        // SAFETY: fallocate on a descriptor we own (mode 0: allocate, extend the size).
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, TAIL_FILE_BYTES as libc::off_t) } != 0 {
            return Err(context(
                io::Error::last_os_error(),
                "allocate tail file",
                &path,
            ));
        }
        let len = file
            .metadata()
            .map_err(|e| context(e, "stat tail file", &path))?
            .len();
        if len < TAIL_FILE_BYTES as u64 {
            return Err(context(
                io::Error::from(io::ErrorKind::InvalidData),
                "tail file too short",
                &path,
            ));
        }
        let map = memmap2::MmapOptions::new()
            .len(TAIL_FILE_BYTES)
            .map_raw(&file)
            .map_err(|e| context(e, "map tail file", &path))?;
        const _: () = assert!(
            MUTEX_AT + std::mem::size_of::<libc::pthread_mutex_t>() <= TAIL_FILE_BYTES
                && MUTEX_AT.is_multiple_of(64)
        );
        Ok(SharedTail {
            map,
            _file: file,
            seen: 0,
            holder_mark: u64::from(std::process::id()).max(1),
        })
    }

    fn mutex(&self) -> *mut libc::pthread_mutex_t {
        // SAFETY: in bounds (asserted above) and 64-byte aligned in a page-aligned mapping.
        unsafe { self.map.as_mut_ptr().add(MUTEX_AT).cast() }
    }

    /// Initialises the append mutex of a new tail file, and afresh whenever the opener is
    /// `alone`: no other writer, of any build, has the log open (it took the `WRITERS` lock
    /// exclusively under the [`AppendLock`]), so no process holds the mutex or waits on it.
    /// Call with the [`AppendLock`] held (every opening writer does, before it uses the mutex).
    ///
    /// The mutex lives in a file: if its page reached the disk while a holder had it and the
    /// machine then went down, it comes back locked by a thread no kernel will ever report
    /// dead (the robust-futex hand-over runs when a thread exits, which a crash skips), and
    /// every lock would wait forever. The first writer to open the log after that is alone,
    /// and starts from a fresh mutex; the holder mark beside it still tells the next holder
    /// that the last one may have died mid-batch.
    pub fn init_mutex(&mut self, alone: bool) -> io::Result<()> {
        let ready = &self.bytes()[MUTEX_READY_AT..MUTEX_READY_AT + 8];
        if u64::from_le_bytes(ready.try_into().unwrap_or([0; 8])) == MUTEX_READY && !alone {
            return Ok(());
        }
        // SAFETY: attribute and mutex initialisation on memory no one uses yet (no writer
        // takes the mutex before the ready word is set, under the file lock we hold).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut attr))?;
            let set = check(libc::pthread_mutexattr_setpshared(
                &mut attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|_| {
                check(libc::pthread_mutexattr_setrobust(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|_| check(libc::pthread_mutex_init(self.mutex(), &attr)));
            libc::pthread_mutexattr_destroy(&mut attr);
            set?;
        }
        self.bytes()[MUTEX_READY_AT..MUTEX_READY_AT + 8]
            .copy_from_slice(&MUTEX_READY.to_le_bytes());
        Ok(())
    }

    /// Takes the append mutex and returns without releasing it (tests: a holder the machine
    /// lost). The mutex stays held by this thread until the process exits.
    #[doc(hidden)]
    pub fn hold_forever(&self) -> io::Result<()> {
        let (held, _) = self.hold()?;
        std::mem::forget(held);
        Ok(())
    }

    /// Takes the append mutex until the returned guard drops; the flag is true when its last
    /// holder died holding it (the state it guards must then be checked, not trusted).
    pub(super) fn hold(&self) -> io::Result<(MutexHeld, bool)> {
        let mutex = self.mutex();
        // SAFETY: an initialised process-shared mutex in our mapping.
        match unsafe { libc::pthread_mutex_lock(mutex) } {
            0 => Ok((MutexHeld(mutex), false)),
            libc::EOWNERDEAD => {
                let held = MutexHeld(mutex);
                // SAFETY: we hold it; marking it consistent keeps it usable after unlock.
                check(unsafe { libc::pthread_mutex_consistent(mutex) })?;
                Ok((held, true))
            }
            error => Err(io::Error::from_raw_os_error(error)),
        }
    }

    /// The generation of the newest slot, unchecked; equal to [`SharedTail::seen`] when no
    /// one published since this process did.
    pub fn peek_generation(&mut self) -> u64 {
        let bytes = self.bytes();
        SLOT_AT
            .iter()
            .map(|&at| u64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap_or([0; 8])))
            .max()
            .unwrap_or(0)
    }

    /// The generation this process last read or published.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is TAIL_FILE_BYTES long; only the append-lock holder touches it,
        // and `&mut self` keeps this process to one user at a time.
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr(), TAIL_FILE_BYTES) }
    }

    /// Marks the tail as being updated by this process; returns whether the previous holder
    /// left it marked (it died holding the lock, maybe mid-batch). Call with the lock held.
    pub fn enter(&mut self) -> bool {
        let mark = self.holder_mark;
        let word = &mut self.bytes()[HOLDER_AT..HOLDER_AT + 8];
        let previous = u64::from_le_bytes(word.try_into().unwrap_or([0; 8]));
        word.copy_from_slice(&mark.to_le_bytes());
        previous != 0
    }

    /// The newest valid slot for log `log_id`, if any. Call with the lock held.
    pub fn read(&mut self, log_id: u128) -> Option<(u64, TailState)> {
        let bytes = self.bytes();
        let newest = SLOT_AT
            .iter()
            .filter_map(|&at| decode_slot(&bytes[at..at + SLOT_BYTES], log_id))
            .max_by_key(|(generation, _)| *generation);
        self.seen = newest.map_or(0, |(generation, _)| generation);
        newest
    }

    /// Publishes `state` in the older slot and clears the holder mark. Call with the lock held.
    pub fn publish(&mut self, log_id: u128, state: TailState) {
        let generation = self.peek_generation().max(self.seen).wrapping_add(1).max(1);
        self.seen = generation;
        let at = SLOT_AT[(generation % 2) as usize];
        let mut slot = [0u8; SLOT_BYTES];
        encode_slot(&mut slot, generation, log_id, state);
        let bytes = self.bytes();
        bytes[at..at + SLOT_BYTES].copy_from_slice(&slot);
        bytes[HOLDER_AT..HOLDER_AT + 8].fill(0);
    }
}

fn encode_slot(out: &mut [u8; SLOT_BYTES], generation: u64, log_id: u128, state: TailState) {
    out[0..4].copy_from_slice(&TAIL_MAGIC.to_le_bytes());
    out[4..8].copy_from_slice(&TAIL_VERSION.to_le_bytes());
    out[8..16].copy_from_slice(&generation.to_le_bytes());
    out[16..32].copy_from_slice(&log_id.to_le_bytes());
    out[32..40].copy_from_slice(&state.seq.to_le_bytes());
    out[40..48].copy_from_slice(&state.offset.to_le_bytes());
    out[48..56].copy_from_slice(&state.next_lsn.to_le_bytes());
    out[56..64].copy_from_slice(&state.counter.to_le_bytes());
    out[64..68].copy_from_slice(&state.prev_checksum.to_le_bytes());
    let crc = crc32c(&out[..68]);
    out[68..72].copy_from_slice(&crc.to_le_bytes());
}

fn decode_slot(bytes: &[u8], log_id: u128) -> Option<(u64, TailState)> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?));
    if u32_at(0)? != TAIL_MAGIC || u32_at(4)? != TAIL_VERSION {
        return None;
    }
    if crc32c(bytes.get(..68)?) != u32_at(68)? {
        return None;
    }
    let id = u128::from_le_bytes(bytes.get(16..32)?.try_into().ok()?);
    if id != log_id {
        return None;
    }
    let state = TailState {
        seq: u64_at(32)?,
        offset: u64_at(40)?,
        next_lsn: u64_at(48)?,
        counter: u64_at(56)?,
        prev_checksum: u32_at(64)?,
    };
    Some((u64_at(8)?, state))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    match rc {
        0 => Ok(()),
        error => Err(io::Error::from_raw_os_error(error)),
    }
}

/// Holds the append mutex; releases it when dropped (a panic under it must not keep every
/// other process waiting). Dropped by the thread that took it, before the tail it lives in.
pub(super) struct MutexHeld(*mut libc::pthread_mutex_t);

impl Drop for MutexHeld {
    fn drop(&mut self) {
        // SAFETY: this thread holds the mutex, which lives as long as the mapping.
        unsafe { libc::pthread_mutex_unlock(self.0) };
    }
}

/// Whether process `pid` exists (a temporary file named after a dead one is stale).
pub(super) fn process_exists(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-share-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_torn_slot_leaves_the_previous_state_and_a_dead_holder_is_seen() {
        let dir = temp_dir("tail");
        let mut tail = SharedTail::open(&dir).unwrap();
        assert_eq!(tail.read(7), None, "a new file holds no state");
        assert!(!tail.enter());
        let first = TailState {
            seq: 1,
            offset: 128,
            next_lsn: 3,
            prev_checksum: 9,
            counter: 4,
        };
        tail.publish(7, first);
        assert_eq!(tail.read(7).map(|(_, s)| s), Some(first));
        assert_eq!(tail.read(8), None, "another log's state is not taken");
        assert!(!tail.enter(), "the last holder released cleanly");
        let second = TailState {
            next_lsn: 4,
            offset: 256,
            ..first
        };
        tail.publish(7, second);
        assert_eq!(tail.read(7).map(|(_, s)| s), Some(second));
        // A holder dies while writing a slot: that slot is torn, the other one stands.
        assert!(!tail.enter());
        let (generation, _) = tail.read(7).unwrap();
        let torn_at = SLOT_AT[(generation % 2) as usize];
        tail.bytes()[torn_at + 40] ^= 0xff;
        let mut reopened = SharedTail::open(&dir).unwrap();
        assert!(reopened.enter(), "the dead holder's mark is seen");
        assert_eq!(reopened.read(7).map(|(_, s)| s), Some(first));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_holder_that_dies_hands_the_mutex_on_marked() {
        let dir = temp_dir("mutex");
        let mut tail = SharedTail::open(&dir).unwrap();
        tail.init_mutex(true).unwrap();
        let (held, died) = tail.hold().unwrap();
        assert!(!died);
        drop(held);
        // A child takes it and exits without releasing it.
        // SAFETY: the child only locks the mutex and leaves at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match tail.hold() {
                Ok((held, _)) => {
                    std::mem::forget(held);
                    0
                }
                Err(_) => 1,
            };
            // SAFETY: leaving the child without running anything of the parent's.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert_eq!(libc::WEXITSTATUS(status), 0);
        // Another writer has the log open: the mutex is kept as it is.
        let mut reopened = SharedTail::open(&dir).unwrap();
        reopened.init_mutex(false).unwrap();
        let (held, died) = reopened.hold().unwrap();
        assert!(died, "the next holder learns its holder died");
        drop(held);
        let (held, died) = reopened.hold().unwrap();
        assert!(!died, "and it is consistent again");
        drop(held);
        // A writer that opens alone starts from a fresh mutex: a holder a crash lost never
        // hands it on. The holder mark still says the last holder may have died mid-batch.
        // SAFETY: the child only locks the mutex, marks the tail and leaves at once.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let code = match reopened.hold() {
                Ok((held, _)) => {
                    reopened.enter();
                    std::mem::forget(held);
                    0
                }
                Err(_) => 1,
            };
            // SAFETY: leaving the child without running anything of the parent's.
            unsafe { libc::_exit(code) };
        }
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        let mut fresh = SharedTail::open(&dir).unwrap();
        fresh.init_mutex(true).unwrap();
        let (held, died) = fresh.hold().unwrap();
        assert!(!died, "a fresh mutex");
        assert!(fresh.enter(), "the holder mark is kept");
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_handles_in_one_process_exclude_each_other() {
        let dir = temp_dir("lock");
        let a = AppendLock::open(&dir).unwrap();
        let b = AppendLock::open(&dir).unwrap();
        a.lock().unwrap();
        assert!(!b.try_lock().unwrap());
        a.unlock();
        assert!(b.try_lock().unwrap());
        b.unlock();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
