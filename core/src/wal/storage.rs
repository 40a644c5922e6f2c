//! Where segments live: the [`SegmentStore`] and [`SegmentFile`] traits, and [`FsStore`],
//! the real one (files in a directory, fallocate'd, memory-mapped, fsynced).
//!
//! The writer and readers only see the traits, so the fault-injecting [`super::sim`] store can
//! stand in for the file system in crash tests.
//!
//! A segment is created under a temporary name, allocated with `fallocate` (never a sparse
//! `ftruncate`: a full disk must fail here, not as SIGBUS on a later store to the mapping),
//! optionally zero-filled, fsynced, renamed into place, and the directory fsynced. So a segment
//! file under its final name always has all its blocks.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use super::error::context;
use super::frame::Lsn;
pub use super::mode::{PRIVATE_DIR_MODE, PRIVATE_FILE_MODE};
use super::sync::SyncEngine;

/// Suffix of segment files; the stem is the segment sequence number, 20 decimal digits.
pub const SEGMENT_FILE_SUFFIX: &str = ".wal";
pub use super::share::LOCK_FILE_NAME;

mod fs_segment;

use fs_segment::{create_allocated, FsSegment};

/// The first window of bytes a writer reads ahead of its appends ([`SegmentFile::prepare_appends`]):
/// a process that appends a few records (a one-shot run) reads ahead, and later drops, only
/// this much. Each later window is twice the last, up to [`APPEND_READAHEAD_MAX_BYTES`].
pub const APPEND_READAHEAD_MIN_BYTES: usize = 16 << 10;
/// The largest window read ahead of appends. Bounded: a page cached there reads as data to
/// `SEEK_DATA`, so the next open reads it (with `pread`) to prove it zero; a whole 64 MiB
/// segment cost every open ~10 ms.
pub const APPEND_READAHEAD_MAX_BYTES: usize = 256 << 10;

/// One segment's bytes.
///
/// The writer stores into bytes past everything it has published and never touches published
/// bytes again; readers only look at published bytes. That discipline, not a lock, is what
/// keeps the shared mapping free of data races.
pub trait SegmentFile: Send + Sync {
    /// Size in bytes.
    fn len(&self) -> usize;
    /// Base of the mapping. Writable only for segments opened for writing.
    fn base_ptr(&self) -> *mut u8;
    /// Makes every byte stored so far durable.
    fn sync(&self, engine: &mut SyncEngine) -> io::Result<()>;
    /// Hints that `start..end` will not be touched soon: a file mapping drops those pages
    /// from this process's resident set (they stay in the page cache, and a later access
    /// faults them back with the same bytes). Only whole pages inside the range are dropped.
    fn release_resident(&self, _start: usize, _end: usize) {}
    /// Where the segment's zero tail starts: every byte from the returned offset on is zero,
    /// and the byte before it (if any) is not. Recovery scans only up to there, so opening
    /// costs what the log holds, not what the disk reserved. The default reads every byte.
    fn zero_from(&self) -> io::Result<usize> {
        // SAFETY: `len` bytes from the base are the segment's; callers scan before any writer
        // in this process exists.
        let bytes = unsafe { std::slice::from_raw_parts(self.base_ptr(), self.len()) };
        Ok(bytes.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1))
    }
    /// Hints that appends will soon store into the `window` bytes from `offset` on (a file
    /// segment reads them into the page cache). Returns the offset at which the writer hints
    /// again, past `offset` (the file's length: never). A failed hint costs speed only.
    fn prepare_appends(&self, _offset: usize, _window: usize) -> usize {
        self.len()
    }
    /// Hints that a scan will read the bytes `start..end` now.
    fn prepare_scan(&self, _start: usize, _end: usize) {}
    /// Hints that no byte from `from` on holds data and none will be touched soon: a file
    /// segment drops the clean, unmapped pages it holds in the page cache there (zeros read
    /// ahead for appends), so that the next open's proof of the zero tail has nothing to read.
    /// The file's bytes are the same either way.
    fn drop_cached_tail(&self, _from: usize) {}
    /// Whether the segment has no bytes (never, for a valid segment).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Borrows `file[start..end]`.
///
/// # Safety
/// No one may write to that range while the slice lives.
pub unsafe fn segment_bytes(file: &dyn SegmentFile, start: usize, end: usize) -> &[u8] {
    assert!(
        start <= end && end <= file.len(),
        "range {start}..{end} within {}",
        file.len()
    );
    // SAFETY: in bounds (checked above); the caller guarantees no concurrent writer.
    unsafe { std::slice::from_raw_parts(file.base_ptr().add(start), end - start) }
}

/// Mutably borrows `file[start..end]` for the writer.
///
/// # Safety
/// The caller must be the only writer, the range unpublished, and the file writable.
#[allow(clippy::mut_from_ref)]
pub unsafe fn segment_bytes_mut(file: &dyn SegmentFile, start: usize, end: usize) -> &mut [u8] {
    assert!(
        start <= end && end <= file.len(),
        "range {start}..{end} within {}",
        file.len()
    );
    // SAFETY: in bounds; exclusivity is the caller's promise.
    unsafe { std::slice::from_raw_parts_mut(file.base_ptr().add(start), end - start) }
}

/// A directory of segments (or a simulation of one).
pub trait SegmentStore: Send + Sync {
    /// Sequence numbers of the segments present, ascending.
    fn list(&self) -> io::Result<Vec<u64>>;
    /// Creates segment `seq` of `bytes` bytes, all allocated and durable (file and directory).
    fn create(&self, seq: u64, bytes: u64) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens an existing segment.
    fn open(&self, seq: u64, writable: bool) -> io::Result<Arc<dyn SegmentFile>>;
    /// Removes a segment, durably.
    fn remove(&self, seq: u64) -> io::Result<()>;
    /// A name for the segment in messages (its path).
    fn describe(&self, seq: u64) -> String;
    /// The log's identity and its first retained segment; `None` before the log exists.
    fn identity(&self) -> io::Result<Option<LogIdentity>>;
    /// Records the identity durably: for a new log before its first segment exists, and by
    /// retention before it removes the oldest segment (so a lost oldest segment is told
    /// apart from a retired one).
    fn set_identity(&self, identity: LogIdentity) -> io::Result<()>;
    /// A name for where the identity is kept, in messages.
    fn describe_identity(&self) -> String;
    /// What the last clean close recorded ([`CheckpointHint`]), if the store keeps one; an
    /// `InvalidData` error when it is there but damaged (no copy passes its checksum), which
    /// every scan reports as corruption naming it. [`SegmentStore::identity`] already counts
    /// the durable LSN of a valid one. Where it names a frame, an
    /// open checks that frame (checksum, LSN, kind) before starting there.
    fn checkpoint_hint(&self) -> io::Result<Option<CheckpointHint>> {
        Ok(None)
    }
    /// A name for where the hint is kept, in messages.
    fn describe_hint(&self) -> String {
        "checkpoint hint".to_string()
    }
    /// Records the hint durably (a clean close). A store without hints refuses, and the close
    /// records its durable LSN in the identity instead.
    fn set_checkpoint_hint(&self, _hint: CheckpointHint) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
    /// Whether the writer should create the next segment on a thread of its own (files take
    /// an fallocate and fsyncs; a simulated store is faster inline and deterministic).
    fn creates_in_background(&self) -> bool {
        true
    }
    /// Makes every name in the store durable (the directory's fsync). The writer calls it
    /// before it writes a header into a segment it did not create in this call: a creator
    /// killed between linking a segment and syncing the directory leaves a name a crash may
    /// still take away, and no frame may go where a crash can take it with its name. (A
    /// simulated store makes names durable as it creates them.)
    fn sync_listing(&self) -> io::Result<()> {
        Ok(())
    }
    /// Sets the store's directory back to 0700 where something changed it, and then its files
    /// back to 0600 as well; what was set back, as `path (mode was M)`.
    fn restore_private_modes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What a log is and where it starts: kept beside the segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogIdentity {
    /// Chosen when the log is created; carried by every segment header.
    pub log_id: u128,
    /// The oldest segment the log still holds: every segment from it on must be present.
    pub first_seq: u64,
    /// Every record up to this LSN was durable when this was written (when retention retires
    /// a segment; a clean close records it in the [`CheckpointHint`], which
    /// [`SegmentStore::identity`] counts in): the log must reach it. Without it, damage that
    /// wipes the end of a log, the frames that prove it durable included, would look like a
    /// crash that never wrote those records.
    pub durable_lsn: Lsn,
}

/// What a clean close records beside the log, in one small file it overwrites in place and
/// syncs: every record up to `durable_lsn` was durable (the identity's claim, without the
/// identity file's rename and directory sync), and where the close's index checkpoint frame
/// lies, which a one-shot open may start its scan from
/// ([`super::recovery::scan_log_from_checkpoint`]) instead of the head of the newest segment.
/// It carries its own checksum: a torn one is ignored, and the identity file's older claim
/// holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointHint {
    /// The log it belongs to.
    pub log_id: u128,
    /// The segment holding the frame (0: no frame recorded).
    pub seq: u64,
    /// The frame's byte offset in that segment.
    pub offset: usize,
    /// The frame's LSN.
    pub lsn: Lsn,
    /// Every record up to this LSN was durable when the hint was written.
    pub durable_lsn: Lsn,
}

/// Name of the file that holds the [`CheckpointHint`].
pub const CHECKPOINT_HINT_FILE_NAME: &str = "CHECKPOINT";
/// What the hint says before its fields.
const HINT_PREFIX: &str = "vigil-wal checkpoint ";
/// The hint file holds two copies, one per page, each rewritten in place in turn: a write torn
/// by a crash damages only the copy being written, and the other one still holds the claim
/// before it.
pub const HINT_COPY_STRIDE: usize = 4096;
/// Size of the hint file: two copies.
pub const HINT_FILE_BYTES: usize = 2 * HINT_COPY_STRIDE;

/// One copy of the hint: fixed-width text ending in the CRC32C of what precedes it.
pub fn hint_text(hint: CheckpointHint) -> String {
    let body = format!(
        "{HINT_PREFIX}{:032x} {:020} {:020} {:020} {:020}",
        hint.log_id, hint.seq, hint.offset, hint.lsn, hint.durable_lsn
    );
    let crc = super::crc32c::crc32c(body.as_bytes());
    format!("{body} {crc:08x}\n")
}

/// The whole hint file with `hint` in both copies (zero-padded pages).
pub fn hint_file(hint: CheckpointHint) -> Vec<u8> {
    let mut bytes = vec![0u8; HINT_FILE_BYTES];
    let text = hint_text(hint);
    for copy in 0..2 {
        let at = copy * HINT_COPY_STRIDE;
        bytes[at..at + text.len()].copy_from_slice(text.as_bytes());
    }
    bytes
}

/// The hint the file in the log directory `dir` holds ([`SegmentStore::checkpoint_hint`]).
pub fn read_hint_file(dir: &Path) -> io::Result<Option<CheckpointHint>> {
    FsStore::open_reader(dir)?.checkpoint_hint()
}

/// Writes the hint file of the log directory `dir` whole, both copies `hint` (tests, repair
/// tools): not synced.
pub fn write_hint_file(dir: &Path, hint: CheckpointHint) -> io::Result<()> {
    fs::write(dir.join(CHECKPOINT_HINT_FILE_NAME), hint_file(hint))
}

/// Reads one copy (its text up to the first newline); `None` when it is not one (torn, say).
fn parse_hint(bytes: &[u8]) -> Option<CheckpointHint> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&bytes[..end]).ok()?;
    let (body, crc) = line.rsplit_once(' ')?;
    let crc_ok = crc.len() == 8
        && u32::from_str_radix(crc, 16).ok()? == super::crc32c::crc32c(body.as_bytes());
    if !crc_ok {
        return None;
    }
    let mut fields = body.strip_prefix(HINT_PREFIX)?.split(' ');
    let hex = fields.next().filter(|h| h.len() == 32)?;
    let hint = CheckpointHint {
        log_id: u128::from_str_radix(hex, 16).ok()?,
        seq: fields.next()?.parse().ok()?,
        offset: fields.next()?.parse().ok()?,
        lsn: fields.next()?.parse().ok()?,
        durable_lsn: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(hint)
}

/// The two copies of a hint file's bytes, each `None` when it does not validate.
fn hint_copies(bytes: &[u8]) -> [Option<CheckpointHint>; 2] {
    [0, 1].map(|copy| {
        bytes
            .get(copy * HINT_COPY_STRIDE..(copy + 1) * HINT_COPY_STRIDE)
            .and_then(parse_hint)
    })
}

/// What the valid copies say together: the larger durable LSN (every claim was true when
/// made), and the newer checkpoint (both lie within it). Of copies of two logs (only damage
/// leaves them: a close makes the file anew for its own log), the larger claim is returned,
/// and a reader of the other log ignores it.
fn merge_copies(copies: [Option<CheckpointHint>; 2]) -> Option<CheckpointHint> {
    let mut valid = copies.into_iter().flatten();
    let first = valid.next()?;
    Some(valid.fold(first, |a, b| {
        if a.log_id != b.log_id {
            return if a.durable_lsn >= b.durable_lsn { a } else { b };
        }
        let newer = if b.lsn > a.lsn { b } else { a };
        CheckpointHint {
            durable_lsn: a.durable_lsn.max(b.durable_lsn),
            ..newer
        }
    }))
}

/// The identity as recorded, with the durable LSN a hint of the same log proves.
pub(super) fn with_hint(mut identity: LogIdentity, hint: Option<CheckpointHint>) -> LogIdentity {
    if let Some(hint) = hint.filter(|h| h.log_id == identity.log_id) {
        identity.durable_lsn = identity.durable_lsn.max(hint.durable_lsn);
    }
    identity
}

/// Name of the file that holds a log's identity.
pub const IDENTITY_FILE_NAME: &str = "IDENTITY";
/// What the identity file says before the identity, in hex.
const IDENTITY_PREFIX: &str = "vigil-wal log-id ";
/// What stands between the identity and the first retained segment.
const FIRST_SEQ_PREFIX: &str = " first-segment ";
/// What stands between the first retained segment and the durable LSN.
const DURABLE_PREFIX: &str = " durable-lsn ";

/// The identity file's text.
fn identity_text(identity: LogIdentity) -> String {
    format!(
        "{IDENTITY_PREFIX}{:032x}{FIRST_SEQ_PREFIX}{}{DURABLE_PREFIX}{}\n",
        identity.log_id, identity.first_seq, identity.durable_lsn
    )
}

/// Reads an identity file's text; `None` when it is not one.
fn parse_identity(text: &str) -> Option<LogIdentity> {
    let rest = text.strip_prefix(IDENTITY_PREFIX)?.strip_suffix('\n')?;
    let (hex, rest) = rest.split_once(FIRST_SEQ_PREFIX)?;
    let (first, durable) = rest.split_once(DURABLE_PREFIX)?;
    if hex.len() != 32 {
        return None;
    }
    Some(LogIdentity {
        log_id: u128::from_str_radix(hex, 16).ok()?,
        first_seq: first.parse().ok()?,
        durable_lsn: durable.parse().ok()?,
    })
}

/// File name of segment `seq`.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}{SEGMENT_FILE_SUFFIX}")
}

/// Segments as files in a directory.
#[derive(Debug)]
pub struct FsStore {
    dir: PathBuf,
    /// Write zeros over new segments after fallocate. Off by default: on ext4 it made
    /// fdatasync after stores through the mapping slower, not faster (see the WAL bench).
    zero_fill: bool,
    /// Held for the life of an exclusive store (`repair`): the append lock.
    _lock: Option<(super::share::AppendLock, super::share::AppendLock)>,
}

impl FsStore {
    /// Opens `dir` for a writer, one of any number in any processes: creates it if needed and
    /// removes half-created files whose creator is gone. Call it under the append lock
    /// ([`super::share::AppendLock`]): a creator that is still alive holds no lock while it
    /// allocates, so its files are told apart by the pid in their name.
    pub fn open_writer(dir: &Path, zero_fill: bool) -> io::Result<FsStore> {
        create_private_dir(dir).map_err(|e| context(e, "create WAL directory", dir))?;
        for entry in fs::read_dir(dir).map_err(|e| context(e, "list WAL directory", dir))? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(".tmp") {
                if !temporary_creator_alive(stem) {
                    fs::remove_file(entry.path())
                        .map_err(|e| context(e, "remove half-created file", &entry.path()))?;
                }
            } else {
                // Every entry is vigil's own: a symlink or another user's file was put there
                // by someone else, and vigil would write through it.
                let path = entry.path();
                let meta = fs::symlink_metadata(&path)?;
                use std::os::unix::fs::MetadataExt;
                if meta.file_type().is_symlink() || meta.uid() != euid() {
                    return Err(not_vigils(&path, &meta, "a file"));
                }
                if meta.is_file() {
                    set_mode_from(&path, &meta, PRIVATE_FILE_MODE)?;
                }
            }
        }
        // No directory fsync here: nothing above needs to survive a crash (a half-created
        // file that comes back is removed again, a mode is set again). What does need it, a
        // segment name a killed creator linked and never synced, is synced before the writer
        // first writes into such a segment (`sync_listing`, at rotation and at reuse); every
        // segment that holds a header got there that way or from `create`, which syncs.
        Ok(FsStore {
            dir: dir.to_path_buf(),
            zero_fill,
            _lock: None,
        })
    }

    /// Opens `dir` for a tool that needs the log to itself (`repair`): takes the append lock
    /// for the life of the store, failing at once if a writer is appending.
    pub fn open_exclusive(dir: &Path) -> io::Result<FsStore> {
        create_private_dir(dir).map_err(|e| context(e, "create WAL directory", dir))?;
        let writers = super::share::AppendLock::open_named(dir, super::share::WRITERS_FILE_NAME)?;
        let lock = super::share::AppendLock::open(dir)?;
        if !writers.try_lock()? || !lock.try_lock()? {
            let message = format!(
                "WAL {} is open in another writer: stop the processes that share it first",
                dir.display()
            );
            return Err(io::Error::new(io::ErrorKind::WouldBlock, message));
        }
        let mut store = FsStore::open_writer(dir, false)?;
        store._lock = Some((writers, lock));
        Ok(store)
    }

    /// Opens `dir` for reading only: no lock, no changes. Readers may run beside a writer.
    pub fn open_reader(dir: &Path) -> io::Result<FsStore> {
        fs::metadata(dir).map_err(|e| context(e, "open WAL directory", dir))?;
        Ok(FsStore {
            dir: dir.to_path_buf(),
            zero_fill: false,
            _lock: None,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment_file_name(seq))
    }

    /// Makes the file `name` hold `bytes`, whole or not at all, durably: written under a
    /// temporary name, synced, renamed into place, and the directory synced. Every caller is
    /// under the append lock, so a temporary file found is one a killed writer left.
    fn replace_whole(&self, name: &str, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let write = || -> io::Result<()> {
            let _ = fs::remove_file(&tmp);
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(PRIVATE_FILE_MODE)
                .custom_flags(libc::O_CLOEXEC)
                .open(&tmp)?;
            std::io::Write::write_all(&mut file, bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, self.dir.join(name))
        };
        if let Err(error) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(error);
        }
        sync_dir(&self.dir)
    }
}

impl SegmentStore for FsStore {
    fn list(&self) -> io::Result<Vec<u64>> {
        let mut seqs = Vec::new();
        for entry in
            fs::read_dir(&self.dir).map_err(|e| context(e, "list WAL directory", &self.dir))?
        {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(stem) = name.strip_suffix(SEGMENT_FILE_SUFFIX) {
                if stem.len() == 20 {
                    if let Ok(seq) = stem.parse::<u64>() {
                        seqs.push(seq);
                    }
                }
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    fn create(&self, seq: u64, bytes: u64) -> io::Result<Arc<dyn SegmentFile>> {
        let path = self.path(seq);
        // Named after this process, so a writer opening meanwhile knows it is not stale.
        let tmp = self.dir.join(format!(
            "{}.{}.tmp",
            segment_file_name(seq),
            std::process::id()
        ));
        let result = create_allocated(&tmp, bytes, self.zero_fill);
        if let Err(error) = result {
            let _ = fs::remove_file(&tmp);
            return Err(context(
                error,
                &format!("create segment ({bytes} bytes)"),
                &path,
            ));
        }
        // Never over a segment another process created (and may already be writing): link
        // fails where the name exists, and then that segment is the one.
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(context(error, "link new segment", &path)),
        }
        sync_dir(&self.dir)?;
        let file = self.open(seq, true)?;
        // Segments are created ahead of need (on the background thread): their first pages
        // are in the page cache before appends reach them.
        file.prepare_appends(0, APPEND_READAHEAD_MIN_BYTES);
        Ok(file)
    }

    fn open(&self, seq: u64, writable: bool) -> io::Result<Arc<dyn SegmentFile>> {
        let path = self.path(seq);
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| context(e, "open segment", &path))?;
        let len = file
            .metadata()
            .map_err(|e| context(e, "stat segment", &path))?
            .len();
        if len == 0 {
            return Err(context(
                io::Error::from(io::ErrorKind::InvalidData),
                "empty segment",
                &path,
            ));
        }
        let options = memmap2::MmapOptions::new();
        let map = if writable {
            options.map_raw(&file)
        } else {
            options.map_raw_read_only(&file)
        };
        let map = map.map_err(|e| context(e, "map segment", &path))?;
        // No speculative read-around on faults: one touch of a preallocated segment's header
        // would otherwise read megabytes of its unwritten tail into the page cache, where
        // `SEEK_DATA` sees them as data and the next open has to read them to prove them zero.
        // What is read soon is asked for explicitly ([`SegmentFile::prepare_scan`],
        // [`SegmentFile::prepare_appends`]). A failed hint costs speed, not correctness.
        let _ = map.advise(memmap2::Advice::Random);
        Ok(Arc::new(FsSegment { file, map, path }))
    }

    fn remove(&self, seq: u64) -> io::Result<()> {
        let path = self.path(seq);
        fs::remove_file(&path).map_err(|e| context(e, "remove segment", &path))?;
        sync_dir(&self.dir)
    }

    fn describe(&self, seq: u64) -> String {
        self.path(seq).display().to_string()
    }

    fn identity(&self) -> io::Result<Option<LogIdentity>> {
        let path = self.dir.join(IDENTITY_FILE_NAME);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(context(error, "read log identity", &path)),
        };
        let parsed = std::str::from_utf8(&text).ok().and_then(parse_identity);
        match parsed {
            // A damaged hint adds no claim here; the scan reports it (`scan_log`).
            Some(id) => Ok(Some(with_hint(id, self.checkpoint_hint().ok().flatten()))),
            None => Err(context(
                io::Error::new(io::ErrorKind::InvalidData, "not a log identity file"),
                "read log identity",
                &path,
            )),
        }
    }

    fn set_identity(&self, identity: LogIdentity) -> io::Result<()> {
        let path = self.dir.join(IDENTITY_FILE_NAME);
        self.replace_whole(IDENTITY_FILE_NAME, identity_text(identity).as_bytes())
            .map_err(|error| context(error, "write log identity", &path))
    }

    fn sync_listing(&self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    fn restore_private_modes(&self) -> Vec<String> {
        use std::os::unix::fs::PermissionsExt;
        let set_back = |path: &Path, meta: &fs::Metadata, mode: u32| -> Option<String> {
            let was = meta.permissions().mode() & 0o7777;
            (was != mode && set_mode_from(path, meta, mode).is_ok())
                .then(|| format!("{} (mode was {was:04o})", path.display()))
        };
        // The directory guards the files (no one else may reach them while it is 0700): one
        // stat when it is unchanged, every file as well when it is not.
        let dir = match fs::symlink_metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => set_back(&self.dir, &meta, PRIVATE_DIR_MODE),
            _ => None,
        };
        let Some(dir) = dir else {
            return Vec::new();
        };
        let mut restored = vec![dir];
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if let Ok(meta) = e.metadata() {
                    if meta.is_file() {
                        restored.extend(set_back(&e.path(), &meta, PRIVATE_FILE_MODE));
                    }
                }
            }
        }
        restored
    }

    fn checkpoint_hint(&self) -> io::Result<Option<CheckpointHint>> {
        let path = self.dir.join(CHECKPOINT_HINT_FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(context(error, "read the checkpoint hint", &path)),
        };
        // Made whole by a rename and rewritten a copy at a time: a file with no valid copy
        // was damaged, and the durable end it recorded is unknown. A file of another size
        // holding one valid line (how it was first written) counts as that one copy; the
        // next close makes it anew.
        let merged = if bytes.len() == HINT_FILE_BYTES {
            merge_copies(hint_copies(&bytes))
        } else {
            parse_hint(&bytes)
        };
        match merged {
            Some(hint) => Ok(Some(hint)),
            None => Err(context(
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "damaged: no copy of the durable end the last clean close recorded \
                         passes its checksum ({} bytes)",
                        bytes.len()
                    ),
                ),
                "read the checkpoint hint",
                &path,
            )),
        }
    }

    fn set_checkpoint_hint(&self, hint: CheckpointHint) -> io::Result<()> {
        // The first one is made whole under a temporary name, synced, renamed into place and
        // the directory synced (as the identity is); after that each close rewrites the copy
        // that holds the older claim, in place, and fdatasyncs it: one flush, no rename. Every
        // write is under the append lock.
        let path = self.dir.join(CHECKPOINT_HINT_FILE_NAME);
        let rewrite = || -> io::Result<bool> {
            let file = match OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(file) => file,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(error) => return Err(error),
            };
            let mut bytes = vec![0u8; HINT_FILE_BYTES];
            let len = file.metadata()?.len();
            if len != HINT_FILE_BYTES as u64 {
                return Ok(false); // Not one this build wrote: made anew, whole.
            }
            std::os::unix::fs::FileExt::read_exact_at(&file, &mut bytes, 0)?;
            let copies = hint_copies(&bytes);
            if copies.iter().flatten().any(|c| c.log_id != hint.log_id) {
                return Ok(false); // Another log's claim: made anew, whole, for this one.
            }
            let older = match copies {
                [None, _] => 0,
                [_, None] => 1,
                [Some(a), Some(b)] => usize::from(b.durable_lsn < a.durable_lsn),
            };
            let text = hint_text(hint);
            let at = (older * HINT_COPY_STRIDE) as u64;
            std::os::unix::fs::FileExt::write_all_at(&file, text.as_bytes(), at)?;
            file.sync_data()?;
            Ok(true)
        };
        let write = || -> io::Result<()> {
            if rewrite()? {
                return Ok(());
            }
            self.replace_whole(CHECKPOINT_HINT_FILE_NAME, &hint_file(hint))
        };
        write().map_err(|error| context(error, "write the checkpoint hint", &path))
    }

    fn describe_identity(&self) -> String {
        self.dir.join(IDENTITY_FILE_NAME).display().to_string()
    }

    fn describe_hint(&self) -> String {
        self.dir
            .join(CHECKPOINT_HINT_FILE_NAME)
            .display()
            .to_string()
    }
}

/// Creates `dir` (and missing parents) with mode 0700, and makes an existing one 0700: the
/// mode is set explicitly, so the umask cannot widen it. For directories vigil owns (the log).
/// An existing one must be a directory (not a symlink) of vigil's own user: anything else was
/// put there by someone else, and following it would have vigil (root, say) write where they
/// chose.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    // An existing directory (every open but the first) costs one stat.
    match fs::symlink_metadata(dir) {
        Ok(meta) => {
            own_directory(dir, &meta)?;
            set_mode_from(dir, &meta, PRIVATE_DIR_MODE)
        }
        Err(_) => {
            create_dir_private_if_new(dir)?;
            make_private(dir, PRIVATE_DIR_MODE)
        }
    }
}

/// The effective uid vigil runs as.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// `meta` (of `path`, not followed) is a directory of vigil's own user, or the error says
/// what it is instead.
fn own_directory(path: &Path, meta: &fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if meta.is_dir() && meta.uid() == euid() {
        return Ok(());
    }
    Err(not_vigils(path, meta, "a directory"))
}

fn not_vigils(path: &Path, meta: &fs::Metadata, what: &str) -> io::Error {
    use std::os::unix::fs::MetadataExt;
    let (is, code) = if meta.file_type().is_symlink() {
        ("a symlink".to_string(), libc::ELOOP)
    } else if meta.uid() != euid() {
        (format!("owned by uid {}", meta.uid()), libc::EPERM)
    } else if what == "a directory" {
        ("not a directory".to_string(), libc::ENOTDIR)
    } else {
        ("a directory".to_string(), libc::EISDIR)
    };
    context(
        io::Error::from_raw_os_error(code),
        &format!(
            "must be {what} of vigil's user (uid {}), but it is {is} (someone else may have put \
             it there; refusing to use it):",
            euid()
        ),
        path,
    )
}

/// The data directory the user chose: created 0700 when new; an existing one (followed if it
/// is a symlink: the user's choice) must belong to vigil's user, and loses any group or other
/// write permission, which would let others replace what vigil keeps in it.
pub fn secure_data_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    create_dir_private_if_new(dir)?;
    let meta = fs::metadata(dir)?;
    if !meta.is_dir() || meta.uid() != euid() {
        return Err(not_vigils(dir, &meta, "a directory"));
    }
    if meta.mode() & 0o022 != 0 {
        let mode = meta.mode() & 0o7777 & !0o022;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700 when it does not exist; an existing
/// directory (a data directory the user chose) keeps its mode.
pub fn create_dir_private_if_new(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    make_private(dir, PRIVATE_DIR_MODE)
}

/// Sets `path`'s permission bits to `mode` when they differ.
fn make_private(path: &Path, mode: u32) -> io::Result<()> {
    let meta = fs::metadata(path).map_err(|e| context(e, "stat", path))?;
    set_mode_from(path, &meta, mode)
}

/// Sets `path`'s permission bits to `mode` when `meta` (its metadata) says they differ.
fn set_mode_from(path: &Path, meta: &fs::Metadata, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o7777 != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| context(e, "make private", path))?;
    }
    Ok(())
}

/// fsync of a directory, so that creating, renaming or removing a file in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir).map_err(|e| context(e, "open directory", dir))?;
    handle
        .sync_all()
        .map_err(|e| context(e, "fsync directory", dir))
}

/// Whether the process that names a temporary file (`<name>.<pid>`) is still alive; files
/// of the earlier naming, without a pid, were left by a writer that held the log alone.
fn temporary_creator_alive(stem: &str) -> bool {
    stem.rsplit_once('.')
        .and_then(|(_, pid)| pid.parse::<i32>().ok())
        .is_some_and(super::share::process_exists)
}
