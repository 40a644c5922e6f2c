//! The writer's segments: which one takes appends, which comes next, which hold the log;
//! the one header writer ([`start_segment`]); and setting the writer up from what recovery
//! found ([`recover_writer`]), changing only what the scan proved was never acknowledged.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use super::error::WalError;
use super::frame::{
    frame_bytes, salt_seed, Lsn, SegmentHeader, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES,
};
use super::recovery::{RecoveryReport, SegmentState};
use super::storage::{
    segment_bytes, segment_bytes_mut, LogIdentity, SegmentFile, SegmentStore,
    APPEND_READAHEAD_MAX_BYTES, APPEND_READAHEAD_MIN_BYTES,
};
use super::sync::{SyncEngine, SyncMethod};

/// The segment appends go to.
pub(super) struct ActiveSegment {
    pub(super) seq: u64,
    pub(super) file: Arc<dyn SegmentFile>,
    pub(super) seed: u32,
    pub(super) offset: usize,
    pub(super) first_lsn: Lsn,
    /// When `offset` reaches this, the bytes after it are read ahead again (see
    /// [`SegmentFile::prepare_appends`]).
    pub(super) read_ahead_at: usize,
    /// The window the next read-ahead asks for: small at first, twice the last each time.
    pub(super) read_ahead_bytes: usize,
}

impl ActiveSegment {
    /// Segment `seq` (with `seed`, whose first frame has `first_lsn`), taking appends at
    /// `offset`; the first append reads ahead.
    pub(super) fn new(
        seq: u64,
        file: Arc<dyn SegmentFile>,
        seed: u32,
        offset: usize,
        first_lsn: Lsn,
    ) -> ActiveSegment {
        ActiveSegment {
            seq,
            file,
            seed,
            offset,
            first_lsn,
            read_ahead_at: offset,
            read_ahead_bytes: APPEND_READAHEAD_MIN_BYTES,
        }
    }

    /// Reads ahead of the append position when it reached [`ActiveSegment::read_ahead_at`]:
    /// a system call every so many appends, never one per append.
    #[inline]
    pub(super) fn keep_read_ahead(&mut self) {
        if self.offset >= self.read_ahead_at {
            self.read_ahead();
        }
    }

    #[cold]
    #[inline(never)]
    fn read_ahead(&mut self) {
        self.read_ahead_at = self
            .file
            .prepare_appends(self.offset, self.read_ahead_bytes);
        self.read_ahead_bytes = (self.read_ahead_bytes * 2).min(APPEND_READAHEAD_MAX_BYTES);
    }
}

/// The segment after the active one, ready or being created in the background.
pub(super) enum NextSegment {
    Ready(Arc<dyn SegmentFile>),
    Pending(JoinHandle<io::Result<Arc<dyn SegmentFile>>>),
    Missing,
}

/// A segment of the log as the writer tracks it.
#[derive(Clone, Copy, Debug)]
pub(super) struct LiveSegment {
    pub(super) seq: u64,
    pub(super) first_lsn: Lsn,
    /// Its first frame is an `INDEX_CHECKPOINT`.
    pub(super) prologue: bool,
    /// The size of its file (what retention counts: a log made with other segment sizes
    /// holds files of those sizes).
    pub(super) bytes: u64,
}

pub(super) struct WriterState {
    pub(super) active: ActiveSegment,
    pub(super) next: NextSegment,
    pub(super) next_lsn: Lsn,
    pub(super) prev_checksum: u32,
    /// Segments rotated away whose bytes may not be durable yet.
    pub(super) unsynced: Vec<Arc<dyn SegmentFile>>,
    /// Segments holding the log, oldest first.
    pub(super) segments: VecDeque<LiveSegment>,
    /// The prologue frame is sealed here at a rotation (the scratch buffer holds the record
    /// that caused it).
    pub(super) prologue: Vec<u8>,
    /// A frame is sealed here before it is copied into the mapping, so a record that does
    /// not fit is found out before any byte of the segment changes.
    pub(super) scratch: Vec<u8>,
    pub(super) appends: u64,
    /// Kind of the last frame in the log (0 when empty).
    pub(super) last_kind: u16,
    /// The newest index checkpoint frame this writer knows of (appended, or found by the
    /// open's scan): segment, offset and LSN. A clean close records it as the store's
    /// [`super::storage::CheckpointHint`].
    pub(super) last_index_checkpoint: Option<(u64, usize, Lsn)>,
    /// The log's identity, written into every segment header.
    pub(super) log_id: u128,
    /// Makes a new segment's header durable at rotation (plain fdatasync: the group commit's
    /// engine belongs to the sync pass, which may be running).
    pub(super) header_sync: SyncEngine,
    /// The shared tail of a log other processes may write too (file stores): behind the
    /// writer lock with the rest, as only a writer-lock holder takes the append mutex in it.
    pub(super) tail: Option<super::share::SharedTail>,
}

/// A random salt per segment, so bytes from any earlier use never validate.
pub(super) fn random_salt() -> u64 {
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

/// Applies the scan's verdict and sets up the writer. It changes only what the scan proved
/// was never acknowledged: the torn tail of the end segment (zeroed), and segments past the
/// end whose frames were all written while the end was unsynced (zeroed and kept as the next
/// segment, or removed when a second one). A healthy pre-created segment is kept as it is.
// Longer than 70 lines on purpose: applies the recovery verdict in one ordered pass (new log, end
// segment, segments past the end, zeroing, the durability sync); each step is safe only after the
// ones before it.
pub(super) fn recover_writer(
    store: &dyn SegmentStore,
    new_segment_bytes: u64,
    engine: &mut SyncEngine,
    report: &mut RecoveryReport,
    last_kind: u16,
    prologues: &[u64],
    last_index_checkpoint: Option<(u64, usize, Lsn)>,
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
            durable_lsn: 0,
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
        let right_size =
            file.len() as u64 == super::log::segment_bytes_for(summary.seq, new_segment_bytes);
        match summary.state {
            SegmentState::Unused | SegmentState::PastEnd => {
                if summary.state == SegmentState::PastEnd {
                    // A tear the mode accepted: its frames were never durable.
                    report.truncated_bytes += zero_after(&*file, 0, summary.zero_from) as u64;
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
            SegmentState::Used | SegmentState::BadHeader | SegmentState::Sealed => {
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
            let zero_from = scan
                .segments
                .iter()
                .find(|s| s.seq == end.seq)
                .map_or(file.len(), |s| s.zero_from);
            report.truncated_bytes += zero_after(&*file, end.offset, zero_from) as u64;
            // Whatever the scan and the zeroing touched after the end is zero and untouched
            // until appends reach it.
            file.release_resident(end.offset, file.len());
            let read_ahead_at = file.prepare_appends(end.offset, APPEND_READAHEAD_MIN_BYTES);
            let seed = {
                // SAFETY: no writer runs yet.
                let head = unsafe { segment_bytes(&*file, 0, SEGMENT_HEADER_BYTES) };
                let header = SegmentHeader::decode(head).map_err(|_| {
                    io::Error::other(format!(
                        "segment {}: its header vanished",
                        super::storage::segment_file_name(end.seq)
                    ))
                })?;
                salt_seed(header.salt)
            };
            let first_lsn = scan
                .segments
                .iter()
                .find(|s| s.seq == end.seq)
                .and_then(|s| s.first_lsn)
                .unwrap_or(1);
            let active = ActiveSegment {
                read_ahead_at,
                read_ahead_bytes: APPEND_READAHEAD_MIN_BYTES * 2,
                ..ActiveSegment::new(end.seq, file, seed, end.offset, first_lsn)
            };
            (active, end.last_checksum, scan.next_lsn)
        }
        None => {
            let (seq, file) = match reuse {
                Some(file) => {
                    // Another process created it: its name is made durable before a header
                    // goes in (see `SegmentStore::sync_listing`).
                    store.sync_listing()?;
                    let seq = scan
                        .segments
                        .iter()
                        .find(|s| s.state != SegmentState::Used)
                        .map_or(1, |s| s.seq);
                    (seq, file)
                }
                None => {
                    let seq = scan
                        .segments
                        .iter()
                        .map(|s| s.seq)
                        .max()
                        .map_or(1, |m| m + 1);
                    let bytes = super::log::segment_bytes_for(seq, new_segment_bytes);
                    (seq, store.create(seq, bytes)?)
                }
            };
            let next_lsn = scan.next_lsn;
            let seed = start_segment(&*file, seq, next_lsn, log_id, engine)?;
            let active = ActiveSegment::new(seq, file, seed, SEGMENT_HEADER_BYTES, next_lsn);
            (active, 0, next_lsn)
        }
    };
    // What a killed process left in the page cache is recovered but maybe not yet on disk:
    // make it durable before anything new claims it as its synced prefix.
    let sync_recovered = !end_proven_durable(log_id, next_lsn, report);
    let mut segments = VecDeque::new();
    for summary in scan.segments.iter().filter(|s| {
        matches!(s.state, SegmentState::Used | SegmentState::Sealed) && Some(s.seq) <= end_seq
    }) {
        // A sealed segment lies before a durable LSN the identity records: nothing to sync.
        let sealed = summary.state == SegmentState::Sealed;
        if summary.seq != active.seq && sync_recovered && !sealed {
            store.open(summary.seq, false)?.sync(engine)?; // fdatasync needs no write access
        }
        segments.push_back(LiveSegment {
            seq: summary.seq,
            first_lsn: summary.first_lsn.unwrap_or(1),
            prologue: prologues.contains(&summary.seq),
            bytes: summary.bytes as u64,
        });
    }
    if end_seq.is_some() && sync_recovered {
        active.file.sync(engine)?; // a new segment's start already made it durable
    }
    if segments.back().map(|s| s.seq) != Some(active.seq) {
        segments.push_back(LiveSegment {
            seq: active.seq,
            first_lsn: active.first_lsn,
            prologue: false,
            bytes: active.file.len() as u64,
        });
    }
    let next = match next {
        Some(file) => NextSegment::Ready(file),
        None => store
            .create(
                active.seq + 1,
                super::log::segment_bytes_for(active.seq + 1, new_segment_bytes),
            )
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
        last_index_checkpoint,
        log_id,
        header_sync: SyncEngine::new(SyncMethod::Fdatasync)?,
        tail: None,
    })
}

/// True when every frame up to the log's end is already on disk, so the syncs of what recovery
/// found would only flush the device cache (one flush per segment, 0.2-3 ms each) for nothing:
/// the identity file records a durable LSN at or past the end (it is written only after a sync
/// covered that LSN: at a clean close, or by retention), and this open changed no byte of the
/// log (no torn tail was zeroed). A log a killed writer left with unsynced frames, or one whose
/// identity is older than its end, is synced as before.
///
/// The identity is the one the scan read: the open holds the append lock from the scan on, and
/// every identity write (a close, retention) takes that lock, so the file cannot have changed.
fn end_proven_durable(log_id: u128, next_lsn: Lsn, report: &RecoveryReport) -> bool {
    let scan = &report.scan;
    report.truncated_bytes == 0
        && scan.end.is_some()
        && scan.log_id == log_id
        && scan.recorded_durable_lsn >= next_lsn - 1
}

/// Writes the header of segment `seq` (a zeroed, unpublished file) starting at `first_lsn`, and
/// makes it durable before any frame goes after it: so a header that reads as zeros or does
/// not validate, with anything after it, is damage and never a tear. Returns the CRC seed.
pub(super) fn start_segment(
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

/// Zeroes everything after `offset` that is not zero already, given that every byte from
/// `zero_from` on is zero (the scan proved it); returns the bytes zeroed.
pub(super) fn zero_after(file: &dyn SegmentFile, offset: usize, zero_from: usize) -> usize {
    let end = zero_from.min(file.len());
    if offset >= end {
        return 0; // Nothing but the proven zero tail: not a byte to read.
    }
    // SAFETY: recovery runs before the writer exists.
    let tail = unsafe { segment_bytes_mut(file, offset, end) };
    let Some(last) = tail.iter().rposition(|&b| b != 0) else {
        return 0;
    };
    tail[..=last].fill(0);
    last + 1
}
