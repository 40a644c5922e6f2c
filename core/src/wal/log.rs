//! The writer: opening (with recovery), appending, group commit, rotation and retention.
//!
//! Appends copy a sealed frame into the active segment's mapping under the writer lock and
//! return its LSN at once. [`Wal::sync`] returns when everything up to an LSN is durable: the
//! first waiter becomes the leader and issues one fdatasync per segment with unsynced bytes
//! (one sync in flight at a time), while every other producer waits on the durable watermark;
//! whoever arrives during a sync is covered by the next one. No timer batches anything.
//!
//! A failed sync poisons the log for good: the kernel may have dropped the dirty pages it
//! failed to write, so nothing after that point can honestly be acknowledged.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use super::frame::{
    frame_bytes, salt_seed, seal_frame, Frame, FrameMeta, Lsn, SegmentHeader, SegmentHeaderError,
    FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, LSN_MAX, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use super::reader::Reader;
use super::record::{kind, Record, RecordError};
use super::scan::{Fault, FaultCause, FaultKind, LogScanner, RecoveryMode, SegmentVerdict};
use super::storage::{
    segment_bytes, segment_bytes_mut, FsStore, LogIdentity, SegmentFile, SegmentStore,
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
    pub bytes_max: Option<u64>,
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
    pub segment_bytes: u64,
    pub sync_method: SyncMethod,
    pub recovery_mode: RecoveryMode,
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

/// Everything that can go wrong, with the segment, offset and LSN where that helps.
#[derive(Debug)]
pub enum WalError {
    /// A file operation failed; the message names the path.
    Io(io::Error),
    /// The log is damaged in a way the recovery mode does not accept.
    Corrupt(LogFault),
    /// An earlier sync failed; nothing can be acknowledged any more.
    Poisoned { cause: String },
    /// The payload exceeds what a frame (or a segment) can hold.
    RecordTooLarge {
        payload_bytes: usize,
        max_bytes: usize,
    },
    /// A record that cannot be encoded.
    Encode(RecordError),
    /// An LSN that was never appended.
    LsnNotAppended { lsn: Lsn, last_lsn: Lsn },
    /// A reader asked for an LSN retention already removed.
    LsnNotRetained { lsn: Lsn, first_lsn: Lsn },
    /// Options out of range.
    BadOptions(String),
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io(error) => write!(f, "{error}"),
            WalError::Corrupt(fault) => write!(f, "{fault}"),
            WalError::Poisoned { cause } => {
                write!(f, "WAL poisoned by an earlier sync failure: {cause}")
            }
            WalError::RecordTooLarge {
                payload_bytes,
                max_bytes,
            } => {
                write!(
                    f,
                    "record of {payload_bytes} bytes exceeds the maximum of {max_bytes} bytes"
                )
            }
            WalError::Encode(error) => write!(f, "record cannot be encoded: {error:?}"),
            WalError::LsnNotAppended { lsn, last_lsn } => {
                write!(
                    f,
                    "LSN {lsn} was never appended (last appended is {last_lsn})"
                )
            }
            WalError::LsnNotRetained { lsn, first_lsn } => {
                write!(
                    f,
                    "LSN {lsn} is no longer retained (the log starts at {first_lsn})"
                )
            }
            WalError::BadOptions(message) => write!(f, "bad WAL options: {message}"),
        }
    }
}

impl std::error::Error for WalError {}

impl From<io::Error> for WalError {
    fn from(error: io::Error) -> WalError {
        WalError::Io(error)
    }
}

/// A fault found by a scan of the whole log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFault {
    pub kind: FaultKind,
    pub seq: u64,
    /// The segment's path (or simulated name).
    pub segment: String,
    pub offset: usize,
    pub expected_lsn: Lsn,
    pub cause: String,
}

impl fmt::Display for LogFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FaultKind::TornTail => "torn tail",
            FaultKind::Corruption => "corruption",
        };
        write!(
            f,
            "WAL {what} in segment {} at offset {} (expected LSN {}): {}",
            self.segment, self.offset, self.expected_lsn, self.cause
        )?;
        if self.kind == FaultKind::Corruption {
            write!(
                f,
                "; nothing was changed. `vigil wal repair` writes a new log of every valid \
                 record and keeps the damaged files aside"
            )?;
        }
        Ok(())
    }
}

/// A range salvage skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSkip {
    pub seq: u64,
    pub segment: String,
    pub offset: usize,
    pub bytes: usize,
    pub expected_lsn: Lsn,
}

/// What a scan found in one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    /// Holds frames of the log.
    Used,
    /// Pre-created, nothing written.
    Unused,
    /// Its header does not validate.
    BadHeader,
    /// Lies after the end of the log (after a fault); only probed.
    PastEnd,
}

/// One segment as the scan saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    pub seq: u64,
    pub segment: String,
    pub state: SegmentState,
    pub first_lsn: Option<Lsn>,
    pub frames: u64,
    pub end_offset: usize,
    pub bytes: usize,
}

/// Where the valid log ends: appends continue here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEnd {
    pub seq: u64,
    pub offset: usize,
    pub last_checksum: u32,
}

/// The result of scanning every segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogScan {
    pub mode: RecoveryMode,
    /// The log's identity (0 for a log with no segments yet).
    pub log_id: u128,
    /// Segments before the first retained one, whose removal a stop interrupted.
    pub retired: Vec<u64>,
    pub segments: Vec<SegmentSummary>,
    pub frames: u64,
    pub first_lsn: Option<Lsn>,
    pub next_lsn: Lsn,
    pub end: Option<LogEnd>,
    pub fault: Option<LogFault>,
    /// Valid frames after a torn spot, written while it was unsynced: not part of the log.
    pub dropped_unsynced_frames: u64,
    pub skipped: Vec<LogSkip>,
}

/// Scans every segment of `store` in order, handing each accepted frame to `visit` as
/// `(segment seq, offset, frame)`. Changes nothing. Errors only when a segment cannot be read.
///
/// The decisions are [`LogScanner`]'s (no_std, fuzzed); this only walks the files and names
/// what it finds.
pub fn scan_log(
    store: &dyn SegmentStore,
    mode: RecoveryMode,
    visit: &mut dyn FnMut(u64, usize, Frame<'_>),
) -> Result<LogScan, WalError> {
    let mut seqs = store.list()?;
    let identity = match store.identity()? {
        Some(identity) => identity,
        None if seqs.is_empty() => LogIdentity {
            log_id: 0,
            first_seq: 1,
        },
        // Salvage reads what it can: the identity the oldest readable header claims.
        None if mode == RecoveryMode::Salvage => LogIdentity {
            log_id: claimed_identity(store, &seqs),
            first_seq: seqs[0],
        },
        None => {
            return Err(WalError::Corrupt(LogFault {
                kind: FaultKind::Corruption,
                seq: seqs[0],
                segment: store.describe_identity(),
                offset: 0,
                expected_lsn: 1,
                cause: "the log's identity file is missing, yet segments exist".to_string(),
            }))
        }
    };
    let log_id = identity.log_id;
    // Segments before the first retained one were being retired when the process stopped.
    let retired: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|&seq| seq < identity.first_seq)
        .collect();
    seqs.retain(|&seq| seq >= identity.first_seq);
    let mut scanner = LogScanner::new(mode, log_id, identity.first_seq);
    let mut scan = LogScan {
        mode,
        log_id,
        retired,
        segments: Vec::new(),
        frames: 0,
        first_lsn: None,
        next_lsn: 1,
        end: None,
        fault: None,
        dropped_unsynced_frames: 0,
        skipped: Vec::new(),
    };
    for seq in seqs {
        let file = store.open(seq, false)?;
        // SAFETY: scans run before a writer exists in this process, or over a read-only
        // mapping of another process's log; nothing in this process writes these bytes.
        let bytes = unsafe { segment_bytes(&*file, 0, file.len()) };
        let name = store.describe(seq);
        let verdict = scanner.segment(seq, bytes, |offset, frame| visit(seq, offset, frame));
        scan.record(seq, &name, bytes.len(), verdict);
    }
    Ok(scan)
}

/// The log identity the oldest segment with a valid header claims (0 if none has one).
fn claimed_identity(store: &dyn SegmentStore, seqs: &[u64]) -> u128 {
    for &seq in seqs {
        let Ok(file) = store.open(seq, false) else {
            continue;
        };
        // SAFETY: a read-only look at a header no writer in this process touches.
        let head = unsafe { segment_bytes(&*file, 0, file.len().min(SEGMENT_HEADER_BYTES)) };
        if let Ok(header) = SegmentHeader::decode(head) {
            return header.log_id;
        }
    }
    0
}

impl LogScan {
    /// Folds one segment's verdict into the scan of the whole log.
    fn record(&mut self, seq: u64, name: &str, bytes: usize, verdict: SegmentVerdict) {
        let mut summary = SegmentSummary {
            seq,
            segment: name.to_string(),
            state: SegmentState::Used,
            first_lsn: None,
            frames: 0,
            end_offset: 0,
            bytes,
        };
        let fault_at = |fault: Fault| LogFault {
            kind: fault.kind,
            seq,
            segment: name.to_string(),
            offset: fault.offset,
            expected_lsn: fault.expected_lsn,
            cause: describe_cause(fault.cause),
        };
        let salvage = self.mode == RecoveryMode::Salvage;
        match verdict {
            SegmentVerdict::Unused => summary.state = SegmentState::Unused,
            SegmentVerdict::Damaged(fault) => {
                summary.state = SegmentState::BadHeader;
                if salvage {
                    self.skipped.push(LogSkip {
                        seq,
                        segment: name.to_string(),
                        offset: 0,
                        bytes,
                        expected_lsn: fault.expected_lsn,
                    });
                }
                self.fault.get_or_insert(fault_at(fault));
            }
            SegmentVerdict::PastEnd { probe } => {
                summary.state = SegmentState::PastEnd;
                if let Some(fault) = self.fault.as_mut() {
                    // Past the end: these frames are not part of the log, but if one was
                    // written when the fault's position was already durable, the fault is
                    // corruption, not a tear.
                    if probe.durable_after {
                        fault.kind = FaultKind::Corruption;
                        fault.cause = format!("{}; durable frames follow in {name}", fault.cause);
                    } else {
                        self.dropped_unsynced_frames += probe.valid_frames;
                    }
                }
            }
            SegmentVerdict::Used {
                header,
                frames,
                fault,
            } => {
                summary.first_lsn = Some(header.first_lsn);
                if let Some(fault) = fault {
                    // Salvage went on past a segment-level fault.
                    self.skipped.push(LogSkip {
                        seq,
                        segment: name.to_string(),
                        offset: 0,
                        bytes: 0,
                        expected_lsn: fault.expected_lsn,
                    });
                    self.fault.get_or_insert(fault_at(fault));
                }
                let torn_start = matches!(
                    frames.fault,
                    Some(Fault {
                        cause: FaultCause::FirstLsn { .. },
                        ..
                    })
                );
                if torn_start && !salvage {
                    // The segment begins past the end of the log: nothing of it is the log.
                    summary.state = SegmentState::PastEnd;
                } else {
                    self.first_lsn.get_or_insert(header.first_lsn);
                    summary.frames = frames.frames;
                    summary.end_offset = frames.end_offset;
                    self.frames += frames.frames;
                    self.next_lsn = frames.next_lsn;
                    self.end = Some(LogEnd {
                        seq,
                        offset: frames.end_offset,
                        last_checksum: frames.last_checksum,
                    });
                }
                self.dropped_unsynced_frames += frames.dropped_unsynced_frames;
                for range in &frames.skipped {
                    self.skipped.push(LogSkip {
                        seq,
                        segment: name.to_string(),
                        offset: range.offset,
                        bytes: range.bytes,
                        expected_lsn: range.expected_lsn,
                    });
                }
                if let Some(fault) = frames.fault {
                    self.fault.get_or_insert(fault_at(fault));
                }
            }
        }
        self.segments.push(summary);
    }
}

fn describe_cause(cause: FaultCause) -> String {
    match cause {
        FaultCause::Frame(error) => format!("frame does not validate ({error:?})"),
        FaultCause::LsnMismatch { found } => format!("valid frame with LSN {found} out of place"),
        FaultCause::ChainMismatch => "frame does not chain to the previous checksum".to_string(),
        FaultCause::SegmentHeader(SegmentHeaderError::UnsupportedVersion(version)) => format!(
            "segment format version {version} is not supported (this build reads version {})",
            super::frame::SEGMENT_FORMAT_VERSION
        ),
        FaultCause::SegmentHeader(error) => error.describe().to_string(),
        FaultCause::ForeignLog { found } => {
            format!("segment belongs to another log (identity {found:032x})")
        }
        FaultCause::SegmentSeq { found } => {
            format!("segment header says it is segment {found}: files swapped or renamed")
        }
        FaultCause::MissingSegment { seq } => format!(
            "segment {seq} is missing ({} expected before this one)",
            super::storage::segment_file_name(seq)
        ),
        FaultCause::SegmentSize { header_bytes } => {
            format!(
                "file size differs from the {header_bytes} bytes its header records (truncated?)"
            )
        }
        FaultCause::FirstLsn { found } => format!("segment starts at LSN {found}"),
        FaultCause::UnusedBeforeUsed => {
            "an unwritten segment stands before this one: the log is out of order".to_string()
        }
    }
}

/// What opening the log found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    pub scan: LogScan,
    /// Bytes zeroed at the end of the log (a torn tail, or unsynced frames after it).
    pub truncated_bytes: u64,
    /// Segments removed because they lay past the end of the log.
    pub removed_segments: Vec<u64>,
}

/// A durable, in-order position in the log shared with the group commit.
struct DurableState {
    durable_lsn: Lsn,
    syncing: bool,
    poisoned: Option<String>,
    /// Producers parked until their LSN is durable. The leader that finishes a sync unparks
    /// exactly the satisfied ones (and one more to lead the next sync): no thundering herd
    /// through a shared mutex, which on a busy two-core machine cost more than the sync.
    waiters: Vec<(Lsn, std::thread::Thread)>,
}

/// Waiters the durable state holds without reallocating.
const SYNC_WAITERS_CAPACITY: usize = 64;

/// The segment appends go to.
struct ActiveSegment {
    seq: u64,
    file: Arc<dyn SegmentFile>,
    seed: u32,
    offset: usize,
    first_lsn: Lsn,
}

/// The segment after the active one, ready or being created in the background.
enum NextSegment {
    Ready(Arc<dyn SegmentFile>),
    Pending(JoinHandle<io::Result<Arc<dyn SegmentFile>>>),
    Missing,
}

/// A segment of the log as the writer tracks it.
#[derive(Clone, Copy, Debug)]
struct LiveSegment {
    seq: u64,
    first_lsn: Lsn,
    /// Its first frame is an `INDEX_CHECKPOINT`.
    prologue: bool,
}

/// Produces the payload of the frame that opens each new segment (see [`Wal::set_prologue`]).
pub type Prologue = Box<dyn Fn(usize) -> Option<Vec<u8>> + Send + Sync>;

struct WriterState {
    active: ActiveSegment,
    next: NextSegment,
    next_lsn: Lsn,
    prev_checksum: u32,
    /// Segments rotated away whose bytes may not be durable yet.
    unsynced: Vec<Arc<dyn SegmentFile>>,
    /// Segments holding the log, oldest first.
    segments: VecDeque<LiveSegment>,
    /// The prologue frame is sealed here at a rotation (the scratch buffer holds the record
    /// that caused it).
    prologue: Vec<u8>,
    /// A frame is sealed here before it is copied into the mapping, so a record that does
    /// not fit is found out before any byte of the segment changes.
    scratch: Vec<u8>,
    appends: u64,
    /// Kind of the last frame in the log (0 when empty).
    last_kind: u16,
    /// The log's identity, written into every segment header.
    log_id: u128,
    /// Makes a new segment's header durable at rotation (plain fdatasync: the group commit's
    /// engine belongs to the sync pass, which may be running).
    header_sync: SyncEngine,
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

/// How long group-commit sync passes took, in microseconds.
pub type SyncLatency = Buckets<15>;

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn SegmentStore>,
    options: WalOptions,
    writer: Mutex<WriterState>,
    durable: Mutex<DurableState>,
    durable_changed: Condvar,
    durable_lsn: AtomicU64,
    last_lsn: AtomicU64,
    poisoned: AtomicBool,
    /// Set by [`Wal::abandon`]: drop without the closing checkpoint.
    abandoned: AtomicBool,
    sync: Mutex<SyncState>,
    sync_method: &'static str,
    /// Next LSN each live in-process reader still needs.
    readers: Mutex<Vec<Arc<AtomicU64>>>,
    recovery: RecoveryReport,
    log_id: u128,
    prologue: Mutex<Option<Prologue>>,
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
    pub last_lsn: Lsn,
    pub durable_lsn: Lsn,
    pub first_lsn: Lsn,
    pub segments: u64,
    pub segment_bytes: u64,
    pub appends: u64,
    pub syncs: u64,
    pub sync_latency: SyncLatency,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a WAL lock would be a bug; the state it guards is still
    // consistent at every await point, so keep serving rather than cascading panics.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A random salt per segment, so bytes from any earlier use never validate.
fn random_salt() -> u64 {
    let mut salt = [0u8; 8];
    // SAFETY: getrandom writes at most 8 bytes into our buffer.
    let got = unsafe { libc::getrandom(salt.as_mut_ptr().cast(), salt.len(), 0) };
    if got == 8 {
        return u64::from_le_bytes(salt);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ 0x9E37_79B9_7F4A_7C15
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` as its single writer, recovering it first.
    pub fn open(dir: &Path, options: WalOptions) -> Result<Wal, WalError> {
        let store = FsStore::open_writer(dir, options.zero_fill_segments)?;
        Wal::open_with_store(Arc::new(store), options)
    }

    /// Creates a new log in `dir` (which must hold no segments) whose first record will have
    /// LSN `first_lsn`: `repair` rebuilds a log with every record at its old LSN.
    pub fn create_at(dir: &Path, options: WalOptions, first_lsn: Lsn) -> Result<Wal, WalError> {
        let store = FsStore::open_writer(dir, options.zero_fill_segments)?;
        if !store.list()?.is_empty() || store.identity()?.is_some() {
            return Err(WalError::BadOptions(format!(
                "{} already holds a log",
                dir.display()
            )));
        }
        Wal::open_inner(Arc::new(store), options, first_lsn.clamp(1, LSN_MAX))
    }

    /// Opens a log over any store (the simulated one in crash tests).
    pub fn open_with_store(
        store: Arc<dyn SegmentStore>,
        options: WalOptions,
    ) -> Result<Wal, WalError> {
        Wal::open_inner(store, options, 1)
    }

    /// Opens (recovering) the log in `store`; a new log starts at `first_lsn`.
    fn open_inner(
        store: Arc<dyn SegmentStore>,
        options: WalOptions,
        first_lsn: Lsn,
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
        let mut last_kind = 0u16;
        let mut prologues = Vec::new();
        let scan = scan_log(&*store, options.recovery_mode, &mut |seq, offset, frame| {
            last_kind = frame.kind;
            if offset == SEGMENT_HEADER_BYTES && frame.kind == kind::INDEX_CHECKPOINT {
                prologues.push(seq);
            }
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
            &options,
            &mut engine,
            &mut report,
            last_kind,
            &prologues,
        )?;
        let next_lsn = writer.next_lsn;
        let log_id = writer.log_id;
        let shared = Shared {
            log_id,
            prologue: Mutex::new(None),
            store,
            options,
            writer: Mutex::new(writer),
            durable: Mutex::new(DurableState {
                durable_lsn: next_lsn - 1,
                syncing: false,
                poisoned: None,
                waiters: Vec::with_capacity(SYNC_WAITERS_CAPACITY),
            }),
            durable_changed: Condvar::new(),
            durable_lsn: AtomicU64::new(next_lsn - 1),
            last_lsn: AtomicU64::new(next_lsn - 1),
            poisoned: AtomicBool::new(false),
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
        self.append_with(kind, |out| {
            let dest = out
                .get_mut(..payload.len())
                .ok_or(WalError::RecordTooLarge {
                    payload_bytes: payload.len(),
                    max_bytes: RECORD_PAYLOAD_BYTES_MAX,
                })?;
            dest.copy_from_slice(payload);
            Ok(payload.len())
        })
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
        self.shared.durable_lsn.load(Ordering::Acquire)
    }

    /// Whether a sync has failed.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::Acquire)
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

impl Shared {
    /// Appends one frame; `then(lsn)` runs before the writer lock is released, so whatever it
    /// records (the runtime's job index) is in step with the log at every rotation.
    fn append_frame(
        &self,
        kind: u16,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, WalError>,
        then: impl FnOnce(Lsn),
    ) -> Result<Lsn, WalError> {
        let shared = self;
        if shared.poisoned.load(Ordering::Acquire) {
            return Err(shared.poison_error());
        }
        let mut guard = lock(&shared.writer);
        let writer = &mut *guard;
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
            synced_lsn: self.durable_lsn.load(Ordering::Acquire),
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
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poison_error());
        }
        let last_kind = lock(&self.writer).last_kind;
        if self.last_lsn.load(Ordering::Acquire) == 0 || last_kind == kind::CHECKPOINT {
            return Ok(());
        }
        self.sync_to(self.last_lsn.load(Ordering::Acquire))?;
        let lsn = self.append_frame(kind::CHECKPOINT, |_| Ok(0), |_| {})?;
        self.sync_to(lsn)
    }

    /// Records that a sync failed: nothing is acknowledged from now on, and every waiter
    /// learns it.
    fn poison(&self, cause: &str) {
        let mut durable = lock(&self.durable);
        durable.poisoned.get_or_insert_with(|| cause.to_string());
        self.poisoned.store(true, Ordering::Release);
        for (_, thread) in durable.waiters.drain(..) {
            thread.unpark();
        }
        drop(durable);
        self.durable_changed.notify_all();
    }

    fn poison_error(&self) -> WalError {
        let cause = lock(&self.durable)
            .poisoned
            .clone()
            .unwrap_or_else(|| "sync failed".to_string());
        WalError::Poisoned { cause }
    }

    pub(crate) fn durable_lsn(&self) -> Lsn {
        self.durable_lsn.load(Ordering::Acquire)
    }

    pub(crate) fn log_id(&self) -> u128 {
        self.log_id
    }

    /// Bytes of segment `seq` a reader in this process may look at.
    pub(crate) fn visible_end(&self, seq: u64, len: usize) -> usize {
        let writer = lock(&self.writer);
        if seq == writer.active.seq {
            writer.active.offset
        } else {
            len
        }
    }

    pub(crate) fn register_reader(&self, position: Arc<AtomicU64>) {
        let mut readers = lock(&self.readers);
        readers.retain(|r| Arc::strong_count(r) > 1);
        readers.push(position);
    }

    /// Waits up to `timeout` for the durable LSN to reach `lsn`; true if it did.
    pub(crate) fn wait_durable(&self, lsn: Lsn, timeout: std::time::Duration) -> bool {
        let guard = lock(&self.durable);
        let (guard, _) = self
            .durable_changed
            .wait_timeout_while(guard, timeout, |d| {
                d.durable_lsn < lsn && d.poisoned.is_none()
            })
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.durable_lsn >= lsn
    }

    fn sync_to(&self, lsn: Lsn) -> Result<(), WalError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poison_error());
        }
        if lsn <= self.durable_lsn.load(Ordering::Acquire) {
            return Ok(());
        }
        let last_lsn = self.last_lsn.load(Ordering::Acquire);
        if lsn > last_lsn {
            return Err(WalError::LsnNotAppended { lsn, last_lsn });
        }
        loop {
            let mut durable = lock(&self.durable);
            if let Some(cause) = &durable.poisoned {
                return Err(WalError::Poisoned {
                    cause: cause.clone(),
                });
            }
            if durable.durable_lsn >= lsn {
                return Ok(());
            }
            if durable.syncing {
                durable.waiters.push((lsn, std::thread::current()));
                drop(durable);
                self.park_until_called(lsn);
                continue;
            }
            durable.syncing = true;
            drop(durable);
            let result = self.sync_pass();
            let mut durable = lock(&self.durable);
            durable.syncing = false;
            match result {
                Ok(target) => {
                    assert!(
                        target >= durable.durable_lsn,
                        "the durable LSN never goes backwards"
                    );
                    durable.durable_lsn = target;
                    self.durable_lsn.store(target, Ordering::Release);
                }
                Err(error) => {
                    durable.poisoned = Some(error.to_string());
                    self.poisoned.store(true, Ordering::Release);
                }
            }
            // Wake every waiter this sync satisfied (all of them if it failed), and the first
            // unsatisfied one to lead the next sync. Every waiter registered while `syncing`
            // was set, so this pass sees it: no wakeup is lost.
            let (target, failed) = (durable.durable_lsn, durable.poisoned.is_some());
            let mut next_leader = false;
            durable.waiters.retain(|(waiting_for, thread)| {
                let wake = failed || *waiting_for <= target || !next_leader;
                next_leader |= *waiting_for > target;
                if wake {
                    thread.unpark();
                }
                !wake
            });
            drop(durable);
            self.durable_changed.notify_all();
        }
    }

    /// Parks until a finishing sync removed this thread from the waiters (or `lsn` became
    /// durable, or the log was poisoned). Spurious unparks just park again.
    fn park_until_called(&self, lsn: Lsn) {
        let me = std::thread::current().id();
        loop {
            std::thread::park();
            if self.durable_lsn.load(Ordering::Acquire) >= lsn
                || self.poisoned.load(Ordering::Acquire)
            {
                return;
            }
            if !lock(&self.durable)
                .waiters
                .iter()
                .any(|(_, thread)| thread.id() == me)
            {
                return;
            }
        }
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
                self.poison(&error.to_string());
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
            let identity = LogIdentity {
                log_id: writer.log_id,
                first_seq: following.seq,
            };
            if self.store.set_identity(identity).is_err() || self.store.remove(oldest).is_err() {
                break; // Retention is best effort; the log itself is unharmed.
            }
            writer.segments.pop_front();
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.poisoned.load(Ordering::Acquire) && !self.abandoned.load(Ordering::Acquire) {
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

/// Applies the scan's verdict and sets up the writer. It changes only what the scan proved
/// was never acknowledged: the torn tail of the end segment (zeroed), and segments past the
/// end whose frames were all written while the end was unsynced (zeroed and kept as the next
/// segment, or removed when a second one). A healthy pre-created segment is kept as it is.
fn recover_writer(
    store: &dyn SegmentStore,
    options: &WalOptions,
    engine: &mut SyncEngine,
    report: &mut RecoveryReport,
    last_kind: u16,
    prologues: &[u64],
) -> Result<WriterState, WalError> {
    let scan = report.scan.clone();
    let log_id = if scan.log_id != 0 {
        scan.log_id
    } else {
        // A new log: its identity is durable before its first segment exists.
        let id = random_log_id();
        let first_seq = scan.segments.first().map_or(1, |s| s.seq);
        store.set_identity(LogIdentity {
            log_id: id,
            first_seq,
        })?;
        id
    };
    for &seq in &scan.retired {
        store.remove(seq)?;
        report.removed_segments.push(seq);
    }
    let end_seq = scan.end.map(|end| end.seq);
    let mut next: Option<Arc<dyn SegmentFile>> = None;
    let mut reuse: Option<Arc<dyn SegmentFile>> = None;
    for summary in &scan.segments {
        if end_seq.is_some_and(|end| summary.seq <= end) {
            continue;
        }
        let wanted_seq = end_seq.map_or(summary.seq, |end| end + 1);
        let file = store.open(summary.seq, true)?;
        let right_size = file.len() as u64 == options.segment_bytes;
        match summary.state {
            SegmentState::Unused | SegmentState::PastEnd => {
                if summary.state == SegmentState::PastEnd {
                    // A tear the mode accepted: its frames were never durable.
                    report.truncated_bytes += zero_after(&*file, 0) as u64;
                    file.sync(engine)?;
                    file.release_resident(0, file.len());
                }
                let slot = if end_seq.is_some() {
                    &mut next
                } else {
                    &mut reuse
                };
                if summary.seq == wanted_seq && right_size && slot.is_none() {
                    *slot = Some(file);
                } else {
                    drop(file);
                    store.remove(summary.seq)?;
                    report.removed_segments.push(summary.seq);
                }
            }
            SegmentState::Used | SegmentState::BadHeader => {
                // Only salvage could get here, and the writer does not open in salvage mode.
                return Err(WalError::BadOptions(format!(
                    "segment {} lies past the end of the log",
                    summary.segment
                )));
            }
        }
    }
    let (active, prev_checksum, next_lsn) = match scan.end {
        Some(end) => {
            let file = store.open(end.seq, true)?;
            report.truncated_bytes += zero_after(&*file, end.offset) as u64;
            // The scan for stray bytes read the whole tail; it is zero and untouched until
            // appends reach it.
            file.release_resident(end.offset, file.len());
            let seed = {
                // SAFETY: no writer runs yet.
                let head = unsafe { segment_bytes(&*file, 0, SEGMENT_HEADER_BYTES) };
                let header = SegmentHeader::decode(head)
                    .map_err(|_| io::Error::other("segment header vanished"))?;
                salt_seed(header.salt)
            };
            let first_lsn = scan
                .segments
                .iter()
                .find(|s| s.seq == end.seq)
                .and_then(|s| s.first_lsn)
                .unwrap_or(1);
            let active = ActiveSegment {
                seq: end.seq,
                file,
                seed,
                offset: end.offset,
                first_lsn,
            };
            (active, end.last_checksum, scan.next_lsn)
        }
        None => {
            let (seq, file) = match reuse {
                Some(file) => (
                    scan.segments
                        .iter()
                        .find(|s| s.state != SegmentState::Used)
                        .map_or(1, |s| s.seq),
                    file,
                ),
                None => {
                    let seq = scan
                        .segments
                        .iter()
                        .map(|s| s.seq)
                        .max()
                        .map_or(1, |m| m + 1);
                    (seq, store.create(seq, options.segment_bytes)?)
                }
            };
            let next_lsn = scan.next_lsn;
            let seed = start_segment(&*file, seq, next_lsn, log_id, engine)?;
            let active = ActiveSegment {
                seq,
                file,
                seed,
                offset: SEGMENT_HEADER_BYTES,
                first_lsn: next_lsn,
            };
            (active, 0, next_lsn)
        }
    };
    // What a killed process left in the page cache is recovered but maybe not yet on disk:
    // make it durable before anything new claims it as its synced prefix.
    let mut segments = VecDeque::new();
    for summary in scan
        .segments
        .iter()
        .filter(|s| s.state == SegmentState::Used && Some(s.seq) <= end_seq)
    {
        if summary.seq != active.seq {
            store.open(summary.seq, false)?.sync(engine)?; // fdatasync needs no write access
        }
        segments.push_back(LiveSegment {
            seq: summary.seq,
            first_lsn: summary.first_lsn.unwrap_or(1),
            prologue: prologues.contains(&summary.seq),
        });
    }
    if end_seq.is_some() {
        active.file.sync(engine)?; // a new segment's start already made it durable
    }
    if segments.back().map(|s| s.seq) != Some(active.seq) {
        segments.push_back(LiveSegment {
            seq: active.seq,
            first_lsn: active.first_lsn,
            prologue: false,
        });
    }
    let next = match next {
        Some(file) => NextSegment::Ready(file),
        None => store
            .create(active.seq + 1, options.segment_bytes)
            .map_or(NextSegment::Missing, NextSegment::Ready),
    };
    Ok(WriterState {
        active,
        next,
        next_lsn,
        prev_checksum,
        unsynced: Vec::with_capacity(16),
        segments,
        scratch: vec![0u8; frame_bytes(RECORD_PAYLOAD_BYTES_MAX)],
        prologue: Vec::new(),
        appends: 0,
        last_kind,
        log_id,
        header_sync: SyncEngine::new(SyncMethod::Fdatasync)?,
    })
}

/// Writes the header of segment `seq` (a zeroed, unpublished file) starting at `first_lsn`, and
/// makes it durable before any frame goes after it: so a header that reads as zeros or does
/// not validate, with anything after it, is damage and never a tear. Returns the CRC seed.
fn start_segment(
    file: &dyn SegmentFile,
    seq: u64,
    first_lsn: Lsn,
    log_id: u128,
    engine: &mut SyncEngine,
) -> Result<u32, WalError> {
    let salt = random_salt();
    let header = SegmentHeader {
        segment_seq: seq,
        first_lsn,
        salt,
        segment_bytes: file.len() as u64,
        log_id,
    };
    let mut head = [0u8; SEGMENT_HEADER_BYTES];
    header.encode(&mut head);
    // SAFETY: the segment is not published yet; only the writer touches it.
    unsafe { segment_bytes_mut(file, 0, SEGMENT_HEADER_BYTES) }.copy_from_slice(&head);
    file.sync(engine)?;
    Ok(salt_seed(salt))
}

/// A random identity for a new log.
fn random_log_id() -> u128 {
    let high = u128::from(random_salt());
    let low = u128::from(random_salt());
    (high << 64 | low).max(1)
}

/// Zeroes everything after `offset` that is not zero already; returns the bytes zeroed.
fn zero_after(file: &dyn SegmentFile, offset: usize) -> usize {
    // SAFETY: recovery runs before the writer exists.
    let tail = unsafe { segment_bytes_mut(file, offset, file.len()) };
    let Some(last) = tail.iter().rposition(|&b| b != 0) else {
        return 0;
    };
    tail[..=last].fill(0);
    last + 1
}
