//! The writer: opening, appending, the sync pass, rotation and retention.
//!
//! Appends copy a sealed frame into the active segment's mapping under the writer lock and
//! return its LSN at once. [`Wal::sync`] returns when everything up to an LSN is durable,
//! through the group commit ([`super::commit`]): one sync pass syncs every segment with
//! unsynced bytes and covers every caller waiting at that time.
//!
//! Opening runs the recovery scan ([`super::recovery`]) and sets the writer up from its
//! verdict ([`super::segments`]); rotation writes each new segment's header through the one
//! header writer and opens it with the prologue frame (the runtime's index checkpoint), so
//! retention can retire old segments without losing what the index needs.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::commit::GroupCommit;
pub use super::error::{LogFault, LogSkip, WalError};
use super::frame::{Frame, Lsn, LSN_MAX, SEGMENT_HEADER_BYTES};
use super::reader::Reader;
use super::record::{kind, Record};
pub use super::recovery::{
    scan_log, scan_log_from_checkpoint, LogEnd, LogScan, RecoveryReport, SegmentState,
    SegmentSummary,
};
use super::scan::RecoveryMode;
use super::segments::{recover_writer, NextSegment, WriterState};
use super::share::{Held, SharedTail};
use super::storage::{FsStore, SegmentFile, SegmentStore};
use super::sync::{SyncEngine, SyncMethod};
use crate::histogram::Buckets;

mod append;
mod cross;
mod live_tail;
mod rotation;
mod sync_pass;

use append::copy_payload;
pub use append::Appender;
use cross::{tail_state, Cross};
pub use cross::{Followed, Follower};
pub use rotation::segment_bytes_for;

/// Default segment size.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Size of a new log's first segment when [`WalOptions::segment_bytes`] is larger: each next
/// one doubles until it reaches that size (8, 16, 32, 64 MiB by default), so a log that holds
/// a few jobs reserves 24 MiB of disk, not two full segments. It holds the largest record.
pub const SEGMENT_BYTES_FIRST: u64 = 8 * 1024 * 1024;
/// Smallest segment accepted: a header and a few frames.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Largest segment accepted (the mapping must fit comfortably in the address space).
pub const SEGMENT_BYTES_MAX: u64 = 1 << 32;

/// How much old log to keep. Retention only removes whole segments that are durable, that no
/// reader still needs, and never the active one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many bytes of segments (counted as segments × segment size, the
    /// pre-created next one included); `None`: no byte bound. 4 GiB by default.
    pub bytes_max: Option<u64>,
    /// Keep at most this many segment files (the pre-created next one included); `None`: no count
    /// bound (the default).
    pub segments_max: Option<u64>,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            bytes_max: Some(4 << 30),
            segments_max: None,
        }
    }
}

/// How a log is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Size of a segment file, in bytes, [`SEGMENT_BYTES_MIN`]..=[`SEGMENT_BYTES_MAX`]
    /// ([`SEGMENT_BYTES_DEFAULT`] by default); a new log's first segments are smaller (see
    /// [`segment_bytes_for`]). A record must fit in one segment of this size.
    pub segment_bytes: u64,
    /// How appends are made durable (fdatasync, O_DSYNC, ...).
    pub sync_method: SyncMethod,
    /// What recovery accepts when the log is opened: a torn tail, corruption, neither.
    pub recovery_mode: RecoveryMode,
    /// How much old log to keep.
    pub retention: Retention,
    /// Write zeros over new segments (see [`FsStore`]); only for the file store.
    pub zero_fill_segments: bool,
    /// Open reading only from the newest segment that opens with an index checkpoint, when
    /// the identity file proves everything before it durable
    /// ([`super::recovery::scan_log_from_checkpoint`]): the open costs what that segment
    /// holds, not the log's length, and the visitor of [`Wal::open_visiting`] sees that
    /// checkpoint first. For a process that needs the current state, not the history (a
    /// one-shot run); off by default.
    pub open_from_checkpoint: bool,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            sync_method: SyncMethod::Auto,
            recovery_mode: RecoveryMode::Tail,
            retention: Retention::default(),
            // Measured on ext4: stores through a mapping into blocks that were zero-written
            // with pwrite make each later fdatasync ~3x slower than into fallocate'd blocks
            // (benches/wal_bench.rs, "durable"), so plain fallocate is the default.
            zero_fill_segments: false,
            open_from_checkpoint: false,
        }
    }
}

/// Produces the payload of the frame that opens each new segment (see [`Wal::set_prologue`]).
pub type Prologue = Box<dyn Fn(usize) -> Option<Vec<u8>> + Send + Sync>;

struct SyncState {
    engine: SyncEngine,
    /// Files to sync in the current pass; capacity is kept, so steady state allocates nothing.
    files: Vec<Arc<dyn SegmentFile>>,
    syncs: u64,
    latency: SyncLatency,
    /// (segment seq, offset): the active segment's pages before the offset were released
    /// from the resident set after a sync.
    released: (u64, usize),
}

/// Upper bounds, in microseconds, of the sync-latency buckets in [`WalStats`].
pub static SYNC_LATENCY_BOUNDS_US: [u64; 15] = [
    25,
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    1_000_000,
    u64::MAX,
];
const _: () = assert!(crate::histogram::bounds_are_valid(&SYNC_LATENCY_BOUNDS_US));

/// How long group-commit sync passes took, in microseconds.
pub type SyncLatency = Buckets<15>;

pub(crate) struct Shared {
    store: Arc<dyn SegmentStore>,
    options: WalOptions,
    writer: Mutex<WriterState>,
    commit: GroupCommit,
    last_lsn: AtomicU64,
    /// The last LSN learned from another process's appends (0: none yet).
    foreign_lsn: AtomicU64,
    /// Set by [`Wal::abandon`]: drop without the closing checkpoint.
    abandoned: AtomicBool,
    /// [`Shared::finish`] began (it runs once).
    finishing: AtomicBool,
    /// [`Shared::finish`] appended and synced what a close does: appends after this are a
    /// misuse.
    finished: AtomicBool,
    sync: Mutex<SyncState>,
    sync_method: &'static str,
    /// Next LSN each live in-process reader still needs.
    readers: Mutex<Vec<Arc<AtomicU64>>>,
    recovery: RecoveryReport,
    log_id: u128,
    prologue: Mutex<Option<Prologue>>,
    /// The payload of the index checkpoint a clean close ends the log with.
    closing: Mutex<Option<Prologue>>,
    /// The durable LSN the identity file records.
    identity_durable_lsn: AtomicU64,
    /// The lock and shared tail of a log other processes may write too (file stores).
    cross: Option<Cross>,
    follower: Mutex<Option<Follower>>,
    /// The next number [`Wal::claim_number`] hands out (changed under the writer lock).
    counter: AtomicU64,
}

/// The write-ahead log. Cheap to clone; all clones share one writer.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("last_lsn", &self.last_lsn())
            .field("durable_lsn", &self.durable_lsn())
            .field("sync_method", &self.shared.sync_method)
            .finish()
    }
}

/// Counters for `stats`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalStats {
    /// The LSN of the last record appended (0 when the log has none yet).
    pub last_lsn: Lsn,
    /// Every record up to this LSN is durable (synced).
    pub durable_lsn: Lsn,
    /// The LSN of the oldest record the log still holds (retention removes older ones).
    pub first_lsn: Lsn,
    /// Segment files the log holds.
    pub segments: u64,
    /// Size of every segment file, in bytes.
    pub segment_bytes: u64,
    /// Records appended through this `Wal` since it was opened (not those of other processes).
    pub appends: u64,
    /// Group-commit sync passes run by this `Wal` since it was opened.
    pub syncs: u64,
    /// How long those sync passes took, in µs buckets.
    pub sync_latency: SyncLatency,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a WAL lock would be a bug; the state it guards is still
    // consistent at every await point, so keep serving rather than cascading panics.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Wal {
    /// Opens (creating if needed) the log in `dir`, recovering it first. Any number of
    /// writers, in this process or others, may have it open at once: appends from all of
    /// them go into the one log with dense LSNs (see [`super::share`]).
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        Wal::open_visiting(dir, options, &mut |_| {})
    }

    /// As [`Wal::open`], handing every record the recovery scan keeps to `visit`, in LSN
    /// order, from the first the log holds: what the log holds is read once, not once to
    /// recover and again to index. Frames the scan cuts away (a torn tail) are never
    /// handed out; if the open fails, what was handed out means nothing.
    pub fn open_visiting(
        dir: &Path,
        options: WalOptions,
        visit: &mut dyn FnMut(Frame<'_>),
    ) -> Result<Wal, WalError> {
        let cross = Cross::open(dir)?;
        crate::phase::mark("wal.cross_open");
        let zero_fill = options.zero_fill_segments;
        Wal::open_inner(
            &|| {
                let store: Arc<dyn SegmentStore> = Arc::new(FsStore::open_writer(dir, zero_fill)?);
                Ok(store)
            },
            options,
            1,
            Some(cross),
            visit,
        )
    }

    /// Creates a new log in `dir` (which must hold no segments) whose first record will have
    /// LSN `first_lsn`: `repair` rebuilds a log with every record at its old LSN.
    pub fn create_at(dir: &Path, options: WalOptions, first_lsn: Lsn) -> Result<Wal, WalError> {
        let cross = Cross::open(dir)?;
        let zero_fill = options.zero_fill_segments;
        Wal::open_inner(
            &|| {
                let store = FsStore::open_writer(dir, zero_fill)?;
                if !store.list()?.is_empty() || store.identity()?.is_some() {
                    return Err(WalError::BadOptions(format!(
                        "{} already holds a log",
                        dir.display()
                    )));
                }
                let store: Arc<dyn SegmentStore> = Arc::new(store);
                Ok(store)
            },
            options,
            first_lsn.clamp(1, LSN_MAX),
            Some(cross),
            &mut |_| {},
        )
    }

    /// Opens a log over any store (the simulated one in crash tests).
    pub fn open_with_store(
        store: Arc<dyn SegmentStore>,
        options: WalOptions,
    ) -> Result<Wal, WalError> {
        Wal::open_inner(&|| Ok(store.clone()), options, 1, None, &mut |_| {})
    }

    /// Opens (recovering) the log in the store `make_store` returns; a new log starts at
    /// `first_lsn`. With `cross`, the store is made, the log recovered and the tail
    /// published under the append lock: no other process appends meanwhile.
    // Longer than 70 lines on purpose: opening is one ordered sequence under the append lock (make
    // the store, recover, check the mode, set up the writer and its state, publish the tail); its
    // order is what other processes rely on.
    fn open_inner(
        make_store: &dyn Fn() -> Result<Arc<dyn SegmentStore>, WalError>,
        options: WalOptions,
        first_lsn: Lsn,
        cross: Option<(Cross, SharedTail)>,
        visit: &mut dyn FnMut(Frame<'_>),
    ) -> Result<Wal, WalError> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&options.segment_bytes) {
            let message = format!(
                "segment_bytes {} outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                options.segment_bytes
            );
            return Err(WalError::BadOptions(message));
        }
        if options.recovery_mode == RecoveryMode::Salvage {
            // Salvage keeps frames that follow damage; appending after them would build on a
            // log no other mode can open. Salvage is for reading and for `repair`.
            return Err(WalError::BadOptions(
                "the writer does not open in salvage mode: read with salvage, or write a new \
                 log of every valid record with `vigil wal repair`"
                    .to_string(),
            ));
        }
        let mut engine = SyncEngine::new(options.sync_method)?;
        crate::phase::mark("wal.sync_engine");
        let (cross, mut tail) = cross.unzip();
        if let Some(cross) = &cross {
            cross.lock.lock().map_err(WalError::Io)?;
        }
        crate::phase::mark("wal.lock");
        let held = cross.as_ref().map(|cross| Held(&cross.lock));
        // Appends take the mutex alone: recovery holds it too, so none runs meanwhile.
        let mutex = match tail.as_ref() {
            Some(tail) => Some(tail.hold().map_err(WalError::Io)?.0),
            None => None,
        };
        let store = make_store()?;
        crate::phase::mark("wal.store");
        let mut last_kind = 0u16;
        let mut prologues = Vec::new();
        let scan_fn = if options.open_from_checkpoint {
            scan_log_from_checkpoint
        } else {
            scan_log
        };
        let mut last_index_checkpoint = None;
        let scan = scan_fn(&*store, options.recovery_mode, &mut |seq, offset, frame| {
            last_kind = frame.kind;
            if frame.kind == kind::INDEX_CHECKPOINT {
                if offset == SEGMENT_HEADER_BYTES {
                    prologues.push(seq);
                }
                last_index_checkpoint = Some((seq, offset, frame.lsn));
            }
            visit(frame);
        })?;
        prologues.extend_from_slice(&scan.sealed_prologues);
        crate::phase::mark("wal.scan");
        if let Some(fault) = &scan.fault {
            if !options.recovery_mode.accepts(fault.kind) {
                return Err(WalError::Corrupt(fault.clone()));
            }
        }
        let mut report = RecoveryReport {
            scan,
            truncated_bytes: 0,
            removed_segments: Vec::new(),
        };
        if report.scan.end.is_none() {
            report.scan.next_lsn = first_lsn;
        }
        let mut writer = recover_writer(
            &*store,
            options.segment_bytes,
            &mut engine,
            &mut report,
            last_kind,
            &prologues,
            last_index_checkpoint,
        )?;
        crate::phase::mark("wal.recover_writer");
        let next_lsn = writer.next_lsn;
        let log_id = writer.log_id;
        let mut counter = 0;
        if let Some(tail) = tail.as_mut() {
            tail.enter();
            counter = tail.read(log_id).map_or(0, |(_, state)| state.counter);
            tail.publish(log_id, tail_state(&writer, counter));
        }
        drop(mutex);
        drop(held);
        writer.tail = tail;
        crate::phase::mark("wal.tail");
        let shared = Shared {
            cross,
            follower: Mutex::new(None),
            counter: AtomicU64::new(counter),
            log_id,
            prologue: Mutex::new(None),
            closing: Mutex::new(None),
            identity_durable_lsn: AtomicU64::new(0),
            store,
            options,
            writer: Mutex::new(writer),
            commit: GroupCommit::new(next_lsn - 1),
            last_lsn: AtomicU64::new(next_lsn - 1),
            foreign_lsn: AtomicU64::new(0),
            abandoned: AtomicBool::new(false),
            finishing: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            sync_method: engine.method_name(),
            sync: Mutex::new(SyncState {
                engine,
                files: Vec::with_capacity(16),
                syncs: 0,
                latency: Buckets::new(&SYNC_LATENCY_BOUNDS_US),
                released: (0, 0),
            }),
            readers: Mutex::new(Vec::new()),
            recovery: report,
        };
        Ok(Wal {
            shared: Arc::new(shared),
        })
    }

    /// Appends a record; returns its LSN. Not durable until [`Wal::sync`] covers it.
    pub fn append(&self, record: &Record<'_>) -> Result<Lsn, WalError> {
        self.append_with(record.kind(), |out| {
            record.encode_into(out).map_err(WalError::Encode)
        })
    }

    /// Appends a frame of `kind` with `payload` as it is (the C API's opaque records).
    pub fn append_raw(&self, kind: u16, payload: &[u8]) -> Result<Lsn, WalError> {
        self.append_with(kind, |out| copy_payload(out, payload))
    }

    /// Appends and waits until the record is durable.
    pub fn append_durable(&self, record: &Record<'_>) -> Result<Lsn, WalError> {
        let lsn = self.append(record)?;
        self.sync(lsn)?;
        Ok(lsn)
    }

    fn append_with(
        &self,
        kind: u16,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, WalError>,
    ) -> Result<Lsn, WalError> {
        self.shared.append_frame(kind, encode, |_| {})
    }

    /// Appends a record and runs `then(lsn)` while no other append can come between: the
    /// runtime applies the record to its job index there, so the index checkpoint written at
    /// a rotation covers exactly the records before it.
    pub fn append_then(
        &self,
        record: &Record<'_>,
        then: impl FnOnce(Lsn),
    ) -> Result<Lsn, WalError> {
        self.shared.append_frame(
            record.kind(),
            |out| record.encode_into(out).map_err(WalError::Encode),
            then,
        )
    }

    /// Sets what is written as the first frame of every new segment: `prologue(budget)`
    /// returns the payload of an `INDEX_CHECKPOINT` frame of at most `budget` bytes (or
    /// nothing). It runs under the writer lock. From then on retention retires a segment only
    /// when the segment after it begins with such a frame, so nothing the prologue carries
    /// forward is ever lost.
    pub fn set_prologue(&self, prologue: Prologue) {
        *lock(&self.shared.prologue) = Some(prologue);
    }

    /// Sets what a clean close ends the log with: `closing(budget)` returns the payload of
    /// an `INDEX_CHECKPOINT` frame of at most `budget` bytes that carries everything a reader
    /// starting there needs (the runtime's whole job index), or nothing when that does not fit,
    /// and the close writes a plain checkpoint frame instead. It runs under the writer lock.
    /// The close records where that frame lies, and a one-shot open starts there
    /// ([`WalOptions::open_from_checkpoint`]).
    pub fn set_closing_checkpoint(&self, closing: Prologue) {
        *lock(&self.shared.closing) = Some(closing);
    }

    /// Sets what sees the frames other processes append to this log: it runs under the
    /// writer lock, once per foreign frame, in LSN order, before this process appends after
    /// them (the runtime keeps its job index current with it).
    pub fn set_follower(&self, follower: Follower) {
        *lock(&self.shared.follower) = Some(follower);
    }

    /// Brings this writer up to date with what other processes appended (the follower sees
    /// it); returns the last LSN of the log.
    pub fn refresh(&self) -> Result<Lsn, WalError> {
        self.shared.locked(|_| Ok(()))?;
        Ok(self.last_lsn())
    }

    /// A number no other call, in any process sharing this log, ever returns: at least
    /// `floor()`, which runs under the append lock once this writer is up to date (the
    /// runtime's job ids: its index's next id is the floor).
    pub fn claim_number(&self, floor: impl FnOnce() -> u64) -> Result<u64, WalError> {
        self.shared.locked(|_| {
            let number = self.shared.counter.load(Ordering::Acquire).max(floor());
            self.shared
                .counter
                .store(number.saturating_add(1), Ordering::Release);
            Ok(number)
        })
    }

    /// Appends several records with no other append, from this process or another, between
    /// them; `batch` gets an [`Appender`].
    pub fn append_batch<T>(
        &self,
        batch: impl FnOnce(&mut Appender<'_>) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        self.shared.locked(|writer| {
            batch(&mut Appender {
                shared: &self.shared,
                writer,
            })
        })
    }

    /// The first LSN the log still holds (older segments were retired).
    pub fn first_lsn(&self) -> Lsn {
        let writer = lock(&self.shared.writer);
        writer
            .segments
            .front()
            .map_or(writer.next_lsn, |s| s.first_lsn)
    }

    /// Makes everything durable, records that in the log (a checkpoint frame) and closes.
    /// Dropping the last handle does the same but cannot report failure.
    pub fn close(self) -> Result<(), WalError> {
        self.shared.checkpoint()
    }

    /// Lets go of the log as dropping its last handle does (the closing checkpoint and its
    /// record of the durable end, the segment being created waited for, the read-ahead past
    /// the end dropped), now, whatever other handles exist: for a process about to exit, with
    /// no other thread using the log, that leaves the rest to the kernel. Errors as
    /// [`Wal::close`] does (a poisoned log included). Appending after it is a misuse (a debug
    /// build panics): nothing of the log is closed again.
    pub fn finish(&self) -> Result<(), WalError> {
        self.shared.finish()
    }

    /// Appends the checkpoint frame a close writes, without waiting for it to be durable: for
    /// a caller whose last records are about to be synced and that closes the log right after
    /// (a one-shot CLI run), so one flush covers both. A close that then finds the log ending
    /// in it appends no second checkpoint and syncs nothing more of the log. Frames appended
    /// after it make it an ordinary frame in the middle, as after [`Wal::checkpoint`].
    ///
    /// With a closing checkpoint set ([`Wal::set_closing_checkpoint`]) whose payload fits, it
    /// is an index checkpoint, which the close records as where the next open from the last
    /// checkpoint may start.
    ///
    /// It carries the durable LSN of its own append like every frame, so a crash that keeps it
    /// and drops an unsynced frame before it is still a torn tail, never corruption.
    pub fn append_checkpoint(&self) -> Result<Lsn, WalError> {
        self.shared.append_closing_checkpoint()
    }

    /// Makes everything durable and writes a checkpoint, as [`Wal::close`] does, without
    /// giving up the log: for a server that shuts down while other threads may still hold it.
    /// Appends after it are allowed (and make it an ordinary frame in the middle).
    pub fn checkpoint(&self) -> Result<(), WalError> {
        self.shared.checkpoint()
    }

    /// Lets go of the log as a killed process would: no final sync, no checkpoint. For crash
    /// tests; what was not synced may or may not survive, exactly as after a real crash.
    pub fn abandon(self) {
        self.shared.abandoned.store(true, Ordering::Release);
    }

    /// Returns when every record up to `lsn` is durable. Many callers may wait at once; one
    /// sync covers all of them.
    pub fn sync(&self, lsn: Lsn) -> Result<(), WalError> {
        self.shared.sync_to(lsn)
    }

    /// Sets the log's directory back to 0700 and its files to 0600 where something (a job that
    /// runs as the same user) changed them; what was set back.
    pub fn restore_private_modes(&self) -> Vec<String> {
        self.shared.store.restore_private_modes()
    }

    /// Makes everything appended so far durable.
    pub fn sync_all(&self) -> Result<Lsn, WalError> {
        let lsn = self.last_lsn();
        self.sync(lsn)?;
        Ok(lsn)
    }

    /// The LSN of the last appended record (0 for an empty log).
    pub fn last_lsn(&self) -> Lsn {
        self.shared.last_lsn.load(Ordering::Acquire)
    }

    /// Every record up to this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.commit.durable_lsn()
    }

    /// Whether a sync has failed.
    pub fn is_poisoned(&self) -> bool {
        self.shared.commit.is_poisoned()
    }

    /// The log's identity (carried by every segment header).
    pub fn log_id(&self) -> u128 {
        self.shared.log_id
    }

    /// "io_uring" or "fdatasync".
    pub fn sync_method(&self) -> &'static str {
        self.shared.sync_method
    }

    /// What opening the log found and did.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.shared.recovery
    }

    /// A reader of durable records from `from` on, registered so retention keeps what it needs.
    pub fn reader(&self, from: Lsn) -> Reader {
        Reader::in_process(self.shared.clone(), from)
    }

    /// Counters.
    pub fn stats(&self) -> WalStats {
        // The sync lock is taken alone: a sync pass takes it before the writer lock.
        let (syncs, sync_latency) = {
            let sync = lock(&self.shared.sync);
            (sync.syncs, sync.latency)
        };
        let writer = lock(&self.shared.writer);
        WalStats {
            last_lsn: self.last_lsn(),
            durable_lsn: self.durable_lsn(),
            first_lsn: writer
                .segments
                .front()
                .map_or(writer.next_lsn, |s| s.first_lsn),
            segments: writer.segments.len() as u64,
            segment_bytes: self.shared.options.segment_bytes,
            appends: writer.appends,
            syncs,
            sync_latency,
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl Shared {
    /// What letting go of the log does, once (later calls do nothing): the closing
    /// checkpoint and its record of the durable end (unless abandoned or poisoned; its error is
    /// the result), then the segment being created waited for, and the zeros read ahead past
    /// the end dropped from the page cache.
    fn finish(&self) -> Result<(), WalError> {
        if self.finishing.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let closed = if self.abandoned.load(Ordering::Acquire) {
            Ok(())
        } else {
            // A poisoned log's checkpoint fails with the poison: what was appended since the
            // failed sync may be lost, which the caller must learn.
            self.checkpoint()
        };
        self.finished.store(true, Ordering::Release);
        let mut writer = lock(&self.writer);
        if let NextSegment::Pending(handle) =
            std::mem::replace(&mut writer.next, NextSegment::Missing)
        {
            if let Ok(Ok(next)) = handle.join() {
                writer.next = NextSegment::Ready(next);
            }
        }
        if !self.abandoned.load(Ordering::Acquire) {
            // What was read ahead for appends past the end is zeros no one needs now: dropped,
            // so the next open proves the zero tail without reading it back.
            writer.active.file.drop_cached_tail(writer.active.offset);
            match &writer.next {
                NextSegment::Ready(next) => next.drop_cached_tail(0),
                // Shared with other processes, the next segment is taken by its name.
                _ => {
                    if let Ok(next) = self.store.open(writer.active.seq + 1, false) {
                        next.drop_cached_tail(0);
                    }
                }
            }
        }
        closed
    }
}
