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
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::commit::GroupCommit;
pub use super::error::{LogFault, LogSkip, WalError};
use super::frame::{
    decode_frame, frame_bytes, salt_seed, seal_frame, Frame, FrameMeta, Lsn, SegmentHeader,
    FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, LSN_MAX, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use super::reader::{LiveTail, Reader};
use super::record::{kind, Record};
pub use super::recovery::{
    scan_log, LogEnd, LogScan, RecoveryReport, SegmentState, SegmentSummary,
};
use super::scan::RecoveryMode;
use super::segments::{
    recover_writer, start_segment, zero_after, ActiveSegment, LiveSegment, NextSegment, WriterState,
};
use super::share::{AppendLock, Held, SharedTail, TailState, WRITERS_FILE_NAME};
use super::storage::{
    create_private_dir, segment_bytes, segment_bytes_mut, FsStore, LogIdentity, SegmentFile,
    SegmentStore,
};
use super::sync::{SyncEngine, SyncMethod};
use crate::histogram::Buckets;

/// Default segment size.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
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
    /// Size of every segment file, in bytes, [`SEGMENT_BYTES_MIN`]..=[`SEGMENT_BYTES_MAX`]
    /// ([`SEGMENT_BYTES_DEFAULT`] by default). A record must fit in one segment.
    pub segment_bytes: u64,
    /// How appends are made durable (fdatasync, O_DSYNC, ...).
    pub sync_method: SyncMethod,
    /// What recovery accepts when the log is opened: a torn tail, corruption, neither.
    pub recovery_mode: RecoveryMode,
    /// How much old log to keep.
    pub retention: Retention,
    /// Write zeros over new segments (see [`FsStore`]); only for the file store.
    pub zero_fill_segments: bool,
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
        }
    }
}

/// Produces the payload of the frame that opens each new segment (see [`Wal::set_prologue`]).
pub type Prologue = Box<dyn Fn(usize) -> Option<Vec<u8>> + Send + Sync>;

/// Sees every frame other processes appended, in LSN order (see [`Wal::set_follower`]).
pub type Follower = Box<dyn FnMut(Frame<'_>) + Send>;

/// What a writer shares with the other processes writing the same log (see [`super::share`]).
struct Cross {
    lock: AppendLock,
    tail: Mutex<SharedTail>,
    /// Held shared while this writer is open.
    _present: AppendLock,
}

impl Cross {
    fn open(dir: &Path) -> Result<Cross, WalError> {
        create_private_dir(dir)
            .map_err(|e| WalError::Io(super::storage::context(e, "create WAL directory", dir)))?;
        let present = AppendLock::open_named(dir, WRITERS_FILE_NAME)?;
        if !present.try_lock_shared()? {
            let message = format!(
                "WAL {} is held by a tool that needs it alone (repair)",
                dir.display()
            );
            return Err(WalError::Io(io::Error::new(
                io::ErrorKind::WouldBlock,
                message,
            )));
        }
        let lock = AppendLock::open(dir)?;
        let mut tail = SharedTail::open(dir)?;
        lock.lock()?;
        let ready = tail.init_mutex();
        lock.unlock();
        ready?;
        Ok(Cross {
            lock,
            tail: Mutex::new(tail),
            _present: present,
        })
    }
}

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
    /// Set by [`Wal::abandon`]: drop without the closing checkpoint.
    abandoned: AtomicBool,
    sync: Mutex<SyncState>,
    sync_method: &'static str,
    /// Next LSN each live in-process reader still needs.
    readers: Mutex<Vec<Arc<AtomicU64>>>,
    recovery: RecoveryReport,
    log_id: u128,
    prologue: Mutex<Option<Prologue>>,
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
    fn open_inner(
        make_store: &dyn Fn() -> Result<Arc<dyn SegmentStore>, WalError>,
        options: WalOptions,
        first_lsn: Lsn,
        cross: Option<Cross>,
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
        if let Some(cross) = &cross {
            cross.lock.lock().map_err(WalError::Io)?;
        }
        let held = cross.as_ref().map(|cross| Held(&cross.lock));
        // Appends take the mutex alone: recovery holds it too, so none runs meanwhile.
        let mut tail = cross.as_ref().map(|cross| lock(&cross.tail));
        let mutex = match tail.as_deref() {
            Some(tail) => Some(tail.hold().map_err(WalError::Io)?.0),
            None => None,
        };
        let store = make_store()?;
        let mut last_kind = 0u16;
        let mut prologues = Vec::new();
        let scan = scan_log(&*store, options.recovery_mode, &mut |seq, offset, frame| {
            last_kind = frame.kind;
            if offset == SEGMENT_HEADER_BYTES && frame.kind == kind::INDEX_CHECKPOINT {
                prologues.push(seq);
            }
            visit(frame);
        })?;
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
        let writer = recover_writer(
            &*store,
            options.segment_bytes,
            &mut engine,
            &mut report,
            last_kind,
            &prologues,
        )?;
        let next_lsn = writer.next_lsn;
        let log_id = writer.log_id;
        let mut counter = 0;
        if let Some(tail) = tail.as_deref_mut() {
            tail.enter();
            counter = tail.read(log_id).map_or(0, |(_, state)| state.counter);
            tail.publish(log_id, tail_state(&writer, counter));
        }
        drop(mutex);
        drop(tail);
        drop(held);
        let shared = Shared {
            cross,
            follower: Mutex::new(None),
            counter: AtomicU64::new(counter),
            log_id,
            prologue: Mutex::new(None),
            identity_durable_lsn: AtomicU64::new(0),
            store,
            options,
            writer: Mutex::new(writer),
            commit: GroupCommit::new(next_lsn - 1),
            last_lsn: AtomicU64::new(next_lsn - 1),
            abandoned: AtomicBool::new(false),
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

/// Appends records inside [`Wal::append_batch`].
pub struct Appender<'a> {
    shared: &'a Shared,
    writer: &'a mut WriterState,
}

impl Appender<'_> {
    /// Appends a record and runs `then(lsn)` before the batch goes on.
    pub fn append_then(
        &mut self,
        record: &Record<'_>,
        then: impl FnOnce(Lsn),
    ) -> Result<Lsn, WalError> {
        self.shared.append_locked(
            self.writer,
            record.kind(),
            |out| record.encode_into(out).map_err(WalError::Encode),
            then,
        )
    }

    /// Appends a frame of `kind` with `payload` as it is.
    pub fn append_raw(&mut self, kind: u16, payload: &[u8]) -> Result<Lsn, WalError> {
        self.shared
            .append_locked(self.writer, kind, |out| copy_payload(out, payload), |_| {})
    }
}

fn copy_payload(out: &mut [u8], payload: &[u8]) -> Result<usize, WalError> {
    let dest = out
        .get_mut(..payload.len())
        .ok_or(WalError::RecordTooLarge {
            payload_bytes: payload.len(),
            max_bytes: RECORD_PAYLOAD_BYTES_MAX,
        })?;
    dest.copy_from_slice(payload);
    Ok(payload.len())
}

/// What the tail file says of a writer's state.
fn tail_state(writer: &WriterState, counter: u64) -> TailState {
    TailState {
        seq: writer.active.seq,
        offset: writer.active.offset as u64,
        next_lsn: writer.next_lsn,
        prev_checksum: writer.prev_checksum,
        counter,
    }
}

impl Shared {
    /// Runs `f` on the writer state with this process's writer lock and, when other
    /// processes may share the log, the append lock held and the state brought up to date
    /// with what they appended; publishes the new tail before letting go.
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut WriterState) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        let mut guard = lock(&self.writer);
        let writer = &mut *guard;
        let Some(cross) = &self.cross else {
            return f(writer);
        };
        let mut tail = lock(&cross.tail);
        let (held, owner_died) = tail.hold().map_err(WalError::Io)?;
        let suspect = tail.enter() || owner_died;
        if suspect || tail.peek_generation() != tail.seen() {
            // Another process published since this one did (or died mid-batch).
            let published = tail.read(self.log_id).map(|(_, state)| state);
            // On an error the holder mark stays: the next holder checks everything.
            self.catch_up(writer, published, suspect)?;
            if let Some(state) = published {
                self.counter.fetch_max(state.counter, Ordering::AcqRel);
            }
        }
        let result = f(writer);
        tail.publish(
            self.log_id,
            tail_state(writer, self.counter.load(Ordering::Acquire)),
        );
        drop(held);
        result
    }

    /// Follows the frame chain from where this writer left off over what other processes
    /// appended, into the segments they rotated to, handing each frame to the follower. The
    /// published tail says how far that must reach; `suspect` (the last holder died holding
    /// the lock) also looks for a rotation it did not publish and clears its torn bytes.
    fn catch_up(
        &self,
        writer: &mut WriterState,
        published: Option<TailState>,
        suspect: bool,
    ) -> Result<(), WalError> {
        let mut follower = lock(&self.follower);
        loop {
            let file = writer.active.file.clone();
            // SAFETY: we hold the append lock: no process writes the log meanwhile.
            let bytes = unsafe { segment_bytes(&*file, 0, file.len()) };
            while let Some(Ok(frame)) = bytes
                .get(writer.active.offset..)
                .map(|rest| decode_frame(rest, writer.active.seed))
            {
                if frame.lsn != writer.next_lsn || frame.prev_checksum != writer.prev_checksum {
                    break;
                }
                if let Some(follow) = follower.as_mut() {
                    follow(frame);
                }
                writer.active.offset += frame.frame_bytes;
                writer.prev_checksum = frame.checksum;
                writer.next_lsn = frame.lsn + 1;
                writer.last_kind = frame.kind;
                self.last_lsn.store(frame.lsn, Ordering::Release);
            }
            let rotated = published.is_none_or(|tail| tail.seq > writer.active.seq);
            if !(rotated || suspect) || !self.follow_rotation(writer)? {
                break;
            }
        }
        let at = writer.active.offset;
        if suspect {
            // A holder died mid-frame: its bytes past the chain were never part of the log
            // (and never synced by anyone to acknowledge them). Zero them before appending.
            let file = writer.active.file.clone();
            // SAFETY: as above.
            let rest = unsafe { segment_bytes(&*file, at, file.len()) };
            if rest.iter().take(FRAME_HEADER_BYTES).any(|&b| b != 0) {
                // SAFETY: as above; nothing of these bytes is published.
                zero_after(&*file, at, file.len());
            }
        }
        if let Some(tail) = published {
            if (tail.seq, tail.next_lsn) > (writer.active.seq, writer.next_lsn) {
                return Err(WalError::Corrupt(LogFault {
                    kind: super::scan::FaultKind::Corruption,
                    seq: writer.active.seq,
                    segment: self.store.describe(writer.active.seq),
                    offset: at,
                    expected_lsn: writer.next_lsn,
                    cause: format!(
                        "the log's chain ends before LSN {} in segment {}, which another \
                         writer published",
                        tail.next_lsn, tail.seq
                    ),
                }));
            }
        }
        Ok(())
    }

    /// Moves the writer to the segment after its active one when that segment continues the
    /// log (another process rotated); false when it does not (yet).
    fn follow_rotation(&self, writer: &mut WriterState) -> Result<bool, WalError> {
        let seq = writer.active.seq + 1;
        let file = match self.store.open(seq, true) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(WalError::Io(error)),
        };
        // SAFETY: we hold the append lock: no process writes the header meanwhile.
        let head = unsafe { segment_bytes(&*file, 0, file.len().min(SEGMENT_HEADER_BYTES)) };
        let Ok(header) = SegmentHeader::decode(head) else {
            return Ok(false); // pre-created, not yet used
        };
        if header.log_id != self.log_id
            || header.segment_seq != seq
            || header.first_lsn != writer.next_lsn
        {
            return Ok(false);
        }
        let seed = salt_seed(header.salt);
        // SAFETY: as above.
        let first = unsafe { segment_bytes(&*file, 0, file.len()) }
            .get(SEGMENT_HEADER_BYTES..)
            .and_then(|rest| decode_frame(rest, seed).ok())
            .map(|frame| frame.kind);
        let old = std::mem::replace(
            &mut writer.active,
            ActiveSegment {
                seq,
                file,
                seed,
                offset: SEGMENT_HEADER_BYTES,
                first_lsn: header.first_lsn,
            },
        );
        // Its last bytes (another process's) are covered by this process's next sync too.
        writer.unsynced.push(old.file);
        writer.prev_checksum = 0;
        writer.segments.push_back(LiveSegment {
            seq,
            first_lsn: header.first_lsn,
            prologue: first == Some(kind::INDEX_CHECKPOINT),
        });
        if matches!(writer.next, NextSegment::Ready(_)) {
            // Made for a segment the log has moved past.
            writer.next = NextSegment::Missing;
        }
        Ok(true)
    }

    /// Appends one frame; `then(lsn)` runs before the writer lock is released, so whatever it
    /// records (the runtime's job index) is in step with the log at every rotation.
    fn append_frame(
        &self,
        kind: u16,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, WalError>,
        then: impl FnOnce(Lsn),
    ) -> Result<Lsn, WalError> {
        if self.commit.is_poisoned() {
            return Err(self.commit.poison_error());
        }
        self.locked(|writer| self.append_locked(writer, kind, encode, then))
    }

    /// [`Shared::append_frame`] with the locks held.
    fn append_locked(
        &self,
        writer: &mut WriterState,
        kind: u16,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, WalError>,
        then: impl FnOnce(Lsn),
    ) -> Result<Lsn, WalError> {
        let shared = self;
        if shared.commit.is_poisoned() {
            return Err(shared.commit.poison_error());
        }
        let payload_len = encode(&mut writer.scratch[FRAME_HEADER_BYTES..])?;
        let total = frame_bytes(payload_len);
        let capacity = shared.options.segment_bytes as usize - SEGMENT_HEADER_BYTES;
        if total > capacity {
            return Err(WalError::RecordTooLarge {
                payload_bytes: payload_len,
                max_bytes: capacity - FRAME_HEADER_BYTES,
            });
        }
        if writer.active.offset + total > writer.active.file.len() {
            shared.rotate(writer, total)?;
        }
        let lsn = shared.place_frame(writer, kind, payload_len, false)?;
        then(lsn);
        shared.commit.appended(lsn);
        Ok(lsn)
    }

    /// Seals the frame whose payload sits in the scratch buffer (or, with `prologue`, in the
    /// prologue buffer) and copies it to the head of the active segment, which has room.
    fn place_frame(
        &self,
        writer: &mut WriterState,
        kind: u16,
        payload_len: usize,
        prologue: bool,
    ) -> Result<Lsn, WalError> {
        let lsn = writer.next_lsn;
        let meta = FrameMeta {
            kind,
            lsn,
            synced_lsn: self.commit.durable_lsn(),
            prev_checksum: writer.prev_checksum,
        };
        let buffer = if prologue {
            &mut writer.prologue
        } else {
            &mut writer.scratch
        };
        let (checksum, total) =
            seal_frame(buffer, payload_len, meta, writer.active.seed).map_err(|_| {
                WalError::RecordTooLarge {
                    payload_bytes: payload_len,
                    max_bytes: RECORD_PAYLOAD_BYTES_MAX,
                }
            })?;
        let at = writer.active.offset;
        assert!(at.is_multiple_of(FRAME_ALIGN_BYTES) && at + total <= writer.active.file.len());
        // SAFETY: we hold the writer lock; bytes at and past `offset` are unpublished.
        let dest = unsafe { segment_bytes_mut(&*writer.active.file, at, at + total) };
        dest.copy_from_slice(&buffer[..total]);
        writer.active.offset = at + total;
        writer.prev_checksum = checksum;
        writer.next_lsn = lsn + 1;
        writer.appends += 1;
        writer.last_kind = kind;
        let previous = self.last_lsn.swap(lsn, Ordering::Release);
        assert_eq!(previous + 1, lsn, "LSNs are dense and increasing");
        Ok(lsn)
    }

    /// Makes the whole log durable and appends a checkpoint frame whose `synced_lsn` says so:
    /// without it, damage to the last synced records would be indistinguishable from a tear
    /// of unsynced ones, because no later frame would carry proof that they were durable.
    fn checkpoint(&self) -> Result<(), WalError> {
        if self.commit.is_poisoned() {
            return Err(self.commit.poison_error());
        }
        let last_kind = lock(&self.writer).last_kind;
        let last = self.last_lsn.load(Ordering::Acquire);
        if last == 0 {
            return Ok(());
        }
        self.sync_to(last)?;
        // A log that already ends in a checkpoint (one a crash left, say) needs no second one,
        // but its durable end is still recorded below.
        let lsn = if last_kind == kind::CHECKPOINT {
            last
        } else {
            let lsn = self.append_frame(kind::CHECKPOINT, |_| Ok(0), |_| {})?;
            self.sync_to(lsn)?;
            lsn
        };
        if self.identity_durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        // Beside the segments, so that losing the end of the log (this checkpoint included)
        // is seen as corruption, not taken for a crash before these records were written.
        // Under the writer (and append) lock: retention rewrites the identity too, under
        // the same lock.
        self.locked(|writer| {
            let identity = self.merged_identity(LogIdentity {
                log_id: writer.log_id,
                first_seq: writer.segments.front().map_or(writer.active.seq, |s| s.seq),
                durable_lsn: lsn,
            });
            self.store.set_identity(identity).map_err(WalError::Io)
        })?;
        self.identity_durable_lsn.store(lsn, Ordering::Release);
        Ok(())
    }

    /// Returns when every record up to `lsn` is durable (group commit).
    fn sync_to(&self, lsn: Lsn) -> Result<(), WalError> {
        let last_lsn = self.last_lsn.load(Ordering::Acquire);
        self.commit.sync_to(lsn, last_lsn, &|| self.sync_pass())
    }

    /// One group-commit pass: syncs every segment with bytes appended so far.
    fn sync_pass(&self) -> io::Result<Lsn> {
        let mut sync = lock(&self.sync);
        let sync = &mut *sync;
        let (target, active_seq, active_offset) = {
            let mut writer = lock(&self.writer);
            sync.files.append(&mut writer.unsynced);
            sync.files.push(writer.active.file.clone());
            (writer.next_lsn - 1, writer.active.seq, writer.active.offset)
        };
        sync.syncs += 1;
        let started = std::time::Instant::now();
        let mut result = Ok(target);
        let last = sync.files.len() - 1;
        for (i, file) in sync.files.drain(..).enumerate() {
            if result.is_ok() {
                if let Err(error) = file.sync(&mut sync.engine) {
                    result = Err(error);
                }
            }
            // Durable bytes behind the write head are read back only by readers, which fault
            // them in again: keep the resident set to the pages being written. A rotated
            // segment (not the last file) is behind the head entirely.
            if result.is_ok() {
                let (from, to) = if i < last {
                    (0, file.len())
                } else if sync.released.0 == active_seq {
                    (sync.released.1, active_offset)
                } else {
                    (0, active_offset)
                };
                file.release_resident(from, to);
                if i == last {
                    sync.released = (active_seq, active_offset);
                }
            }
        }
        sync.latency
            .record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        result
    }

    /// Moves appends to the next segment, opening it with the prologue frame; `room` bytes
    /// must be left after it for the frame that caused the rotation.
    fn rotate(&self, writer: &mut WriterState, room: usize) -> Result<(), WalError> {
        let seq = writer.active.seq + 1;
        let next = match std::mem::replace(&mut writer.next, NextSegment::Missing) {
            // Shared with other processes, the segment is taken by its name now: the one made
            // ahead may have been replaced meanwhile (retired, or removed by a recovery).
            pending if self.cross.is_some() => {
                if let NextSegment::Pending(handle) = pending {
                    let _ = handle.join();
                }
                self.shared_next_segment(seq)?
            }
            NextSegment::Ready(file) => file,
            NextSegment::Pending(handle) => match handle.join() {
                Ok(Ok(file)) => file,
                // The background creation failed (a full disk, say): try once more now, so
                // the error the caller sees is current.
                _ => self.store.create(seq, self.options.segment_bytes)?,
            },
            NextSegment::Missing => self.store.create(seq, self.options.segment_bytes)?,
        };
        let seed = match start_segment(
            &*next,
            seq,
            writer.next_lsn,
            writer.log_id,
            &mut writer.header_sync,
        ) {
            Ok(seed) => seed,
            Err(error) => {
                // The header may or may not be on disk: as for any failed sync, nothing can be
                // acknowledged any more.
                self.commit.poison(&error.to_string());
                return Err(error);
            }
        };
        let old = std::mem::replace(
            &mut writer.active,
            ActiveSegment {
                seq,
                file: next,
                seed,
                offset: SEGMENT_HEADER_BYTES,
                first_lsn: writer.next_lsn,
            },
        );
        writer.unsynced.push(old.file);
        writer.prev_checksum = 0;
        let prologue = self.write_prologue(writer, room)?;
        writer.segments.push_back(LiveSegment {
            seq,
            first_lsn: writer.active.first_lsn,
            prologue,
        });
        let store = self.store.clone();
        let bytes = self.options.segment_bytes;
        writer.next = if store.creates_in_background() {
            // Pre-create the following segment off the append path. If no thread can be
            // started, the next rotation creates it inline instead.
            let creator = std::thread::Builder::new()
                .name("vigil-wal-segment".to_string())
                .spawn(move || store.create(seq + 1, bytes));
            match creator {
                Ok(handle) => NextSegment::Pending(handle),
                Err(_) => NextSegment::Missing,
            }
        } else {
            store
                .create(seq + 1, bytes)
                .map_or(NextSegment::Missing, NextSegment::Ready)
        };
        self.retire_segments(writer);
        Ok(())
    }

    /// Segment `seq`, unused, for a rotation of a shared log (under the append lock, caught
    /// up): the one another process made ahead if it is there, else a new one. One that holds
    /// a header is past the end of the log (the chain does not lead into it): never part of
    /// the log, it is cleared as recovery would.
    fn shared_next_segment(&self, seq: u64) -> Result<Arc<dyn SegmentFile>, WalError> {
        let file = match self.store.open(seq, true) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.store.create(seq, self.options.segment_bytes)?
            }
            Err(error) => return Err(WalError::Io(error)),
        };
        if file.len() as u64 != self.options.segment_bytes {
            drop(file);
            self.store.remove(seq)?;
            return Ok(self.store.create(seq, self.options.segment_bytes)?);
        }
        // SAFETY: we hold the append lock; the segment is not part of the log.
        let head = unsafe { segment_bytes(&*file, 0, SEGMENT_HEADER_BYTES.min(file.len())) };
        if head.iter().any(|&b| b != 0) {
            zero_after(&*file, 0, file.len());
        }
        Ok(file)
    }

    /// The identity to record, merged with what the file says now when other processes
    /// share the log: their retention may have moved the first segment on, and their close a
    /// larger durable LSN; neither goes back.
    fn merged_identity(&self, mut identity: LogIdentity) -> LogIdentity {
        if self.cross.is_some() {
            if let Ok(Some(current)) = self.store.identity() {
                if current.log_id == identity.log_id {
                    identity.first_seq = identity.first_seq.max(current.first_seq);
                    identity.durable_lsn = identity.durable_lsn.max(current.durable_lsn);
                }
            }
        }
        identity
    }

    /// Writes the prologue frame at the head of the (new, empty) active segment, leaving
    /// `room` bytes after it. False when there is no prologue or it does not fit.
    fn write_prologue(&self, writer: &mut WriterState, room: usize) -> Result<bool, WalError> {
        let prologue = lock(&self.prologue);
        let Some(produce) = prologue.as_ref() else {
            return Ok(false);
        };
        let space = writer.active.file.len() - writer.active.offset;
        let budget = space
            .saturating_sub(room + FRAME_HEADER_BYTES + FRAME_ALIGN_BYTES)
            .min(RECORD_PAYLOAD_BYTES_MAX);
        let Some(payload) = produce(budget).filter(|p| p.len() <= budget) else {
            return Ok(false);
        };
        drop(prologue);
        let needed = frame_bytes(payload.len());
        if writer.prologue.len() < needed {
            writer.prologue.resize(needed, 0);
        }
        writer.prologue[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload.len()]
            .copy_from_slice(&payload);
        self.place_frame(writer, kind::INDEX_CHECKPOINT, payload.len(), true)?;
        Ok(true)
    }

    /// Removes the oldest segments while over the retention bounds, but only whole segments
    /// that are durable and that no reader still needs, and never the active one.
    fn retire_segments(&self, writer: &mut WriterState) {
        let retention = self.options.retention;
        let durable = self.durable_lsn();
        let reader_min = {
            let mut readers = lock(&self.readers);
            readers.retain(|r| Arc::strong_count(r) > 1);
            readers
                .iter()
                .map(|r| r.load(Ordering::Acquire))
                .min()
                .unwrap_or(Lsn::MAX)
        };
        if self.cross.is_some() {
            // Another process's retention may have retired the oldest ones already.
            if let Ok(Some(identity)) = self.store.identity() {
                while writer.segments.len() >= 2
                    && writer.segments[0].seq < identity.first_seq
                    && writer.segments[0].seq != writer.active.seq
                {
                    writer.segments.pop_front();
                }
            }
        }
        while writer.segments.len() >= 2 {
            let count = writer.segments.len() as u64 + 1; // + the pre-created next one
            let over_count = retention.segments_max.is_some_and(|max| count > max);
            let over_bytes = retention
                .bytes_max
                .is_some_and(|max| count * self.options.segment_bytes > max);
            let oldest = writer.segments[0].seq;
            let following = writer.segments[1];
            let following_first = following.first_lsn;
            let still_needed = following_first - 1 > durable || following_first > reader_min;
            // With a prologue, what it carries forward must be in the new first segment.
            let carried = following.prologue || lock(&self.prologue).is_none();
            let still_needed = still_needed || !carried;
            if !(over_count || over_bytes) || still_needed || oldest == writer.active.seq {
                break;
            }
            // The new first segment is durable in the identity before the old one goes, so a
            // lost oldest segment is never mistaken for a retired one.
            let identity = self.merged_identity(LogIdentity {
                log_id: writer.log_id,
                first_seq: following.seq,
                durable_lsn: durable,
            });
            if self.store.set_identity(identity).is_err() || self.store.remove(oldest).is_err() {
                break; // Retention is best effort; the log itself is unharmed.
            }
            writer.segments.pop_front();
        }
    }
}

impl LiveTail for Shared {
    fn store(&self) -> Arc<dyn SegmentStore> {
        self.store.clone()
    }

    fn durable_lsn(&self) -> Lsn {
        self.commit.durable_lsn()
    }

    fn log_id(&self) -> u128 {
        self.log_id
    }

    /// Bytes of segment `seq` a reader in this process may look at.
    fn visible_end(&self, seq: u64, len: usize) -> usize {
        let writer = lock(&self.writer);
        if seq == writer.active.seq {
            writer.active.offset
        } else {
            len
        }
    }

    fn register_reader(&self, position: Arc<AtomicU64>) {
        let mut readers = lock(&self.readers);
        readers.retain(|r| Arc::strong_count(r) > 1);
        readers.push(position);
    }

    /// Waits up to `timeout` for the durable LSN to reach `lsn`; true if it did.
    fn wait_durable(&self, lsn: Lsn, timeout: std::time::Duration) -> bool {
        self.commit.wait_durable(lsn, timeout)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.commit.is_poisoned() && !self.abandoned.load(Ordering::Acquire) {
            let _ = self.checkpoint();
        }
        let writer = self.writer.get_mut().unwrap_or_else(|p| p.into_inner());
        if let NextSegment::Pending(handle) =
            std::mem::replace(&mut writer.next, NextSegment::Missing)
        {
            let _ = handle.join();
        }
    }
}
