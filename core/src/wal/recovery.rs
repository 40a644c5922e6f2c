//! Recovery: the scan of every segment of a log, in order, through the one
//! [`LogScanner`](super::scan::LogScanner) that decides what the log holds. Open, verify,
//! repair and every reader run this scan; it changes nothing (the writer applies its verdict).

use std::sync::Arc;

use super::error::{LogFault, LogSkip, WalError};
use super::frame::Frame;
use super::frame::{
    decode_frame, salt_seed, Lsn, SegmentHeader, SegmentHeaderError, FRAME_ALIGN_BYTES,
    SEGMENT_FORMAT_VERSION_LEGACY, SEGMENT_HEADER_BYTES,
};
use super::record::kind::INDEX_CHECKPOINT;
use super::scan::{
    is_zero, Fault, FaultCause, FaultKind, LogScanner, RecoveryMode, Resume, SegmentVerdict,
};
use super::storage::{segment_bytes, CheckpointHint, LogIdentity, SegmentFile, SegmentStore};

/// Bytes of a segment the scan keeps mapped behind its position.
const SCAN_RESIDENT_BYTES: usize = 4 << 20;

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
    /// Before the segments a scan from the last checkpoint read ([`scan_log_from_checkpoint`]):
    /// its header and first frame were checked, its other frames not read.
    Sealed,
}

/// One segment as the scan saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentSummary {
    /// The segment's sequence number (from its file name).
    pub seq: u64,
    /// The segment's file name.
    pub segment: String,
    /// What the scan found in it.
    pub state: SegmentState,
    /// The LSN of its first frame, from its header; `None` when the header is unused or bad.
    pub first_lsn: Option<Lsn>,
    /// Frames of the log it holds.
    pub frames: u64,
    /// Byte offset just past its last accepted frame (0 when none).
    pub end_offset: usize,
    /// Size of the segment file, in bytes.
    pub bytes: usize,
    /// Every byte of the file from here on is zero (proven from its extents, see
    /// [`super::storage::SegmentFile::zero_from`]); the scan read nothing past it.
    pub zero_from: usize,
}

/// Where the valid log ends: appends continue here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogEnd {
    /// Sequence number of the segment the log ends in.
    pub seq: u64,
    /// Byte offset in it just past the last valid frame: the next frame is written here.
    pub offset: usize,
    /// Checksum of that last frame, which the next frame chains on (0 when the segment has none).
    pub last_checksum: u32,
}

/// The result of scanning every segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogScan {
    /// The recovery mode the scan applied.
    pub mode: RecoveryMode,
    /// The log's identity (0 for a log with no segments yet).
    pub log_id: u128,
    /// Segments before the first retained one, whose removal a stop interrupted.
    pub retired: Vec<u64>,
    /// Every segment scanned, in order.
    pub segments: Vec<SegmentSummary>,
    /// Frames accepted as the log, over all segments.
    pub frames: u64,
    /// The LSN of the first record of the log; `None` when it has none.
    pub first_lsn: Option<Lsn>,
    /// The LSN the next appended record gets.
    pub next_lsn: Lsn,
    /// Where appends continue; `None` when no segment holds frames of the log.
    pub end: Option<LogEnd>,
    /// The first fault found (torn tail, corruption, foreign or missing segment); `None` for a
    /// clean log. Whether it refused the open depends on `mode`.
    pub fault: Option<LogFault>,
    /// Valid frames after a torn spot, written while it was unsynced: not part of the log.
    pub dropped_unsynced_frames: u64,
    /// Byte ranges skipped to go on past damage (salvage mode only; empty otherwise).
    pub skipped: Vec<LogSkip>,
    /// The [`SegmentState::Sealed`] segments whose first frame is an index checkpoint (the
    /// others' first frames reach the visitor).
    pub sealed_prologues: Vec<u64>,
    /// The durable LSN the identity file recorded when the scan read it (0 without one): an
    /// open under the append lock takes it from here instead of reading the file again.
    pub recorded_durable_lsn: Lsn,
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
    scan_log_with(store, mode, false, visit)
}

/// As [`scan_log`], reading only the segments from the newest one that opens with an index
/// checkpoint, when the identity file proves every record before that segment durable (a
/// clean close or retention recorded it): the older segments are [`SegmentState::Sealed`],
/// their headers (identity, number, size, first LSN in order) and first frames checked, their
/// other frames not read. Where the store's checkpoint hint (written by a clean close) names
/// an index checkpoint inside the newest segment that the identity proves durable and that
/// validates where the hint says (checksum, LSN, kind), the scan starts at that frame, and
/// the bytes of the newest segment before it are not read either. What is read gets the verdict of the full scan, by the same scanner,
/// as a log whose older segments were retired; the record count (`frames`) covers what was
/// read. Anything that does not check out (no such checkpoint, an identity older than that
/// segment, a header or first frame that does not validate, a missing segment) scans the
/// whole log. For an open that needs the current state (the newest checkpoint and what
/// follows), not the history: its cost follows the newest segment, not the log's length.
pub fn scan_log_from_checkpoint(
    store: &dyn SegmentStore,
    mode: RecoveryMode,
    visit: &mut dyn FnMut(u64, usize, Frame<'_>),
) -> Result<LogScan, WalError> {
    scan_log_with(store, mode, true, visit)
}

// Longer than 70 lines on purpose: walks the segment files in order, with the identity, retirement
// and mapping steps each file needs around the scanner's verdict; one pass reads top to bottom.
fn scan_log_with(
    store: &dyn SegmentStore,
    mode: RecoveryMode,
    from_checkpoint: bool,
    visit: &mut dyn FnMut(u64, usize, Frame<'_>),
) -> Result<LogScan, WalError> {
    let mut seqs = store.list()?;
    let identity = match store.identity()? {
        Some(identity) => identity,
        None if seqs.is_empty() => LogIdentity {
            log_id: 0,
            first_seq: 1,
            durable_lsn: 0,
        },
        // Salvage reads what it can: the identity the oldest readable header claims (a log
        // of the earlier format has none: 0).
        None if mode == RecoveryMode::Salvage => LogIdentity {
            log_id: claimed_identity(store, &seqs),
            first_seq: seqs[0],
            durable_lsn: 0,
        },
        None => {
            let cause = if is_legacy(store, seqs[0]) {
                "this log was written by an earlier vigil (segment format 1), which this build \
                 does not open; `vigil wal repair` rewrites it in format 2 with every record at \
                 its LSN"
            } else {
                "the log's identity file is missing, yet segments exist"
            };
            return Err(WalError::Corrupt(LogFault {
                kind: FaultKind::Corruption,
                seq: seqs[0],
                segment: store.describe_identity(),
                offset: 0,
                expected_lsn: 1,
                cause: cause.to_string(),
            }));
        }
    };
    let log_id = identity.log_id;
    // A damaged record of the last close's durable end leaves that end unknown. The segments
    // are still read (a `--partial` reader shows them), and then the damage is the log's
    // fault, named (unless a segment's own fault comes first), which every opener refuses.
    let (hint, hint_damage) = match store.checkpoint_hint() {
        Ok(hint) => (hint, None),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => (None, Some(error)),
        Err(error) => return Err(WalError::Io(error)),
    };
    // Segments before the first retained one were being retired when the process stopped.
    let retired: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|&seq| seq < identity.first_seq)
        .collect();
    seqs.retain(|&seq| seq >= identity.first_seq);
    let opened = Opened::new(store);
    let sealed = match from_checkpoint && mode != RecoveryMode::Salvage && hint_damage.is_none() {
        true => sealed_prefix(&opened, &seqs, &identity, hint)?,
        false => None,
    };
    let start_seq = sealed.as_ref().map_or(identity.first_seq, |s| s.start_seq);
    seqs.retain(|&seq| seq >= start_seq);
    let mut scanner = LogScanner::new(mode, log_id, start_seq);
    let resume = sealed.as_ref().and_then(|s| s.resume);
    if let Some(resume) = resume {
        scanner = scanner.resuming_at(resume);
    }
    if mode == RecoveryMode::Salvage && log_id == 0 {
        scanner = scanner.reading_legacy();
    }
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
        sealed_prologues: Vec::new(),
        recorded_durable_lsn: identity.durable_lsn,
    };
    for seq in seqs {
        let file = opened.take(seq)?;
        // SAFETY: scans run before a writer exists in this process, or over a read-only
        // mapping of another process's log; nothing in this process writes these bytes.
        let bytes = unsafe { segment_bytes(&*file, 0, file.len()) };
        let name = store.describe(seq);
        // The unwritten tail of a preallocated segment is never read.
        let zero_from = file.zero_from()?;
        let from = match resume {
            Some(resume) if seq == start_seq => resume.offset.min(zero_from),
            _ => 0,
        };
        file.prepare_scan(from, zero_from);
        let mut released = 0;
        let verdict = scanner.segment_zero_from(seq, bytes, zero_from, |offset, frame| {
            visit(seq, offset, frame);
            // The resident set stays bounded on a large log: pages the scan has passed are
            // unmapped (they stay in the page cache; a later touch maps the same bytes).
            if offset - released >= SCAN_RESIDENT_BYTES {
                file.release_resident(released, offset);
                released = offset;
            }
        });
        scan.record(seq, &name, bytes.len(), zero_from, verdict);
    }
    if let Some(lost) = scanner.finish(identity.durable_lsn) {
        scan.durable_lost(store, lost);
    }
    if let Some(error) = hint_damage {
        let expected_lsn = scan.next_lsn;
        scan.fault.get_or_insert(LogFault {
            kind: FaultKind::Corruption,
            seq: 0,
            segment: store.describe_hint(),
            offset: 0,
            expected_lsn,
            cause: format!(
                "{error}; every record up to LSN {} was read, but whether the log ended later \
                 cannot be told",
                expected_lsn.saturating_sub(1)
            ),
        });
    }
    if let Some(sealed) = sealed {
        if let Some(first) = sealed.segments.first() {
            scan.first_lsn = first.first_lsn;
        }
        scan.sealed_prologues = sealed.prologues;
        let mut segments = sealed.segments;
        segments.append(&mut scan.segments);
        scan.segments = segments;
    }
    Ok(scan)
}

/// The segments a scan has opened to read, each opened (and mapped) once however many of its
/// steps look at it: the newest segments are looked at by the checks of a scan from the last
/// checkpoint and then read. At most [`OPENED_KEPT`] are kept.
struct Opened<'s> {
    store: &'s dyn SegmentStore,
    files: core::cell::RefCell<Vec<(u64, Arc<dyn SegmentFile>)>>,
}

/// Segments [`Opened`] keeps open: a scan from the last checkpoint looks at the newest one or
/// two (the last with data, the pre-created next) before it reads them; older segments are
/// each opened once, not through it.
const OPENED_KEPT: usize = 4;

impl<'s> Opened<'s> {
    fn new(store: &'s dyn SegmentStore) -> Self {
        Opened {
            store,
            files: core::cell::RefCell::new(Vec::new()),
        }
    }

    /// Segment `seq`, read-only, opened now or by an earlier step.
    fn get(&self, seq: u64) -> Result<Arc<dyn SegmentFile>, WalError> {
        let mut files = self.files.borrow_mut();
        if let Some((_, file)) = files.iter().find(|(s, _)| *s == seq) {
            return Ok(Arc::clone(file));
        }
        let file = self.store.open(seq, false)?;
        if files.len() == OPENED_KEPT {
            files.remove(0);
        }
        files.push((seq, Arc::clone(&file)));
        Ok(file)
    }

    /// Segment `seq`, which no later step looks at again (so it is not kept).
    fn take(&self, seq: u64) -> Result<Arc<dyn SegmentFile>, WalError> {
        let mut files = self.files.borrow_mut();
        match files.iter().position(|(s, _)| *s == seq) {
            Some(at) => Ok(files.remove(at).1),
            None => Ok(self.store.open(seq, false)?),
        }
    }
}

/// The segments (and the head of the first segment read) a scan from the last checkpoint
/// does not read.
struct SealedPrefix {
    /// The first segment read: the newest one, which opens with an index checkpoint or holds
    /// the one the checkpoint hint names.
    start_seq: u64,
    /// Where in `start_seq` the scan starts: the hinted checkpoint (`None`: its head).
    resume: Option<Resume>,
    segments: Vec<SegmentSummary>,
    prologues: Vec<u64>,
}

/// The header and first frame of segment `seq`, when both validate as a used segment of the
/// log `log_id` with a file of the size its header records (the frame's kind with them).
fn sealed_head(
    file: Arc<dyn SegmentFile>,
    seq: u64,
    log_id: u128,
) -> Result<Option<(SegmentHeader, Option<u16>, usize)>, WalError> {
    let len = file.len();
    if len < SEGMENT_HEADER_BYTES {
        return Ok(None);
    }
    // SAFETY: a read-only look at a segment whose frames, up to the durable LSN the identity
    // records, no writer changes any more.
    let head = unsafe { segment_bytes(&*file, 0, SEGMENT_HEADER_BYTES) };
    let Ok(header) = SegmentHeader::decode(head) else {
        return Ok(None);
    };
    if header.log_id != log_id || header.segment_seq != seq || header.segment_bytes != len as u64 {
        return Ok(None);
    }
    let first_frame = len.min(SEGMENT_HEADER_BYTES + FIRST_FRAME_BYTES_READ);
    // SAFETY: as above.
    let frames = unsafe { segment_bytes(&*file, SEGMENT_HEADER_BYTES, first_frame) };
    // Its first frame must validate too (or the full scan says what is wrong with it).
    let first = decode_frame(frames, salt_seed(header.salt))
        .ok()
        .filter(|f| f.lsn == header.first_lsn && f.prev_checksum == 0)
        .map(|f| f.kind);
    file.release_resident(0, len);
    Ok(first.map(|kind| (header, Some(kind), len)))
}

/// Bytes read at the start of a sealed segment for its first frame, and at a hinted
/// checkpoint (a longer frame just does not count as a checkpoint; a close writes none
/// longer, see [`crate::wal::log::Wal::set_closing_checkpoint`]).
pub const FIRST_FRAME_BYTES_READ: usize = 64 << 10;

/// The prefix a scan from the last checkpoint may skip, or `None` for a full scan.
fn sealed_prefix(
    opened: &Opened<'_>,
    seqs: &[u64],
    identity: &LogIdentity,
    hint: Option<CheckpointHint>,
) -> Result<Option<SealedPrefix>, WalError> {
    let first = identity.first_seq;
    // The retained segments are numbered without a gap, or the full scan says which is missing.
    let contiguous = seqs
        .iter()
        .enumerate()
        .all(|(i, &seq)| seq == first + i as u64);
    if identity.log_id == 0 || seqs.is_empty() || !contiguous {
        return Ok(None);
    }
    // The newest segment with a valid header (the last is usually the pre-created next one).
    let mut start = None;
    for &seq in seqs.iter().rev() {
        match sealed_head(opened.get(seq)?, seq, identity.log_id)? {
            Some((header, kind, _)) => {
                start = Some((seq, header, kind));
                break;
            }
            None => continue,
        }
    }
    let Some((start_seq, start_header, start_kind)) = start else {
        return Ok(None);
    };
    let resume = match hint {
        Some(hint) => hinted_checkpoint(opened, hint, start_seq, &start_header, identity)?,
        None => None,
    };
    let proven = start_header.first_lsn.saturating_sub(1) <= identity.durable_lsn;
    let head_start = start_seq != first && start_kind == Some(INDEX_CHECKPOINT) && proven;
    if resume.is_none() && !head_start {
        return Ok(None);
    }
    // Every segment after the start must be unwritten: its header all zeros.
    for &seq in seqs.iter().filter(|&&seq| seq > start_seq) {
        let file = opened.get(seq)?;
        let n = file.len().min(SEGMENT_HEADER_BYTES);
        // SAFETY: a read-only look at a header.
        if !is_zero(unsafe { segment_bytes(&*file, 0, n) }) {
            return Ok(None);
        }
    }
    let mut segments = Vec::new();
    let mut prologues = Vec::new();
    let mut last_first_lsn = 0;
    for seq in first..start_seq {
        // Each looked at once and never read: not kept (they would push the newest out).
        let file = opened.store.open(seq, false)?;
        let Some((header, kind, len)) = sealed_head(file, seq, identity.log_id)? else {
            return Ok(None);
        };
        if header.first_lsn <= last_first_lsn || header.first_lsn >= start_header.first_lsn {
            return Ok(None);
        }
        last_first_lsn = header.first_lsn;
        if kind == Some(INDEX_CHECKPOINT) {
            prologues.push(seq);
        }
        segments.push(SegmentSummary {
            seq,
            segment: opened.store.describe(seq),
            state: SegmentState::Sealed,
            first_lsn: Some(header.first_lsn),
            frames: 0,
            end_offset: 0,
            bytes: len,
            zero_from: len,
        });
    }
    // The visitor never sees the head of a segment read from a hinted checkpoint on.
    if resume.is_some() && start_kind == Some(INDEX_CHECKPOINT) {
        prologues.push(start_seq);
    }
    Ok(Some(SealedPrefix {
        start_seq,
        resume,
        segments,
        prologues,
    }))
}

/// The store's checkpoint hint, when it names an index checkpoint frame past the head of
/// segment `seq` (whose header is `header`) that the identity proves durable: its identity,
/// place, checksum, LSN and kind all check out. The scan may then start there, reading
/// nothing of the segment before it.
fn hinted_checkpoint(
    opened: &Opened<'_>,
    hint: CheckpointHint,
    seq: u64,
    header: &SegmentHeader,
    identity: &LogIdentity,
) -> Result<Option<Resume>, WalError> {
    let fits = hint.log_id == identity.log_id
        && hint.seq == seq
        && hint.offset > SEGMENT_HEADER_BYTES
        && hint.offset.is_multiple_of(FRAME_ALIGN_BYTES)
        && hint.lsn > header.first_lsn
        && hint.lsn <= identity.durable_lsn;
    if !fits {
        return Ok(None);
    }
    let file = opened.get(seq)?;
    if hint.offset >= file.len() {
        return Ok(None);
    }
    let end = file.len().min(hint.offset + FIRST_FRAME_BYTES_READ);
    // SAFETY: a read-only look at a frame up to the durable LSN, which no writer changes.
    let bytes = unsafe { segment_bytes(&*file, hint.offset, end) };
    let frame = decode_frame(bytes, salt_seed(header.salt))
        .ok()
        .filter(|f| f.lsn == hint.lsn && f.kind == INDEX_CHECKPOINT);
    Ok(frame.map(|f| Resume {
        offset: hint.offset,
        lsn: hint.lsn,
        prev_checksum: f.prev_checksum,
    }))
}

/// The log identity the oldest segment with a valid header claims (0 if none has one).
fn claimed_identity(store: &dyn SegmentStore, seqs: &[u64]) -> u128 {
    for &seq in seqs {
        let Ok(file) = store.open(seq, false) else {
            continue;
        };
        // SAFETY: a read-only look at a header no writer in this process touches.
        let head = unsafe { segment_bytes(&*file, 0, file.len().min(SEGMENT_HEADER_BYTES)) };
        if let Ok(header) = SegmentHeader::decode_with(head, true) {
            return header.log_id;
        }
    }
    0
}

/// Whether segment `seq` has a valid header of the earlier format (version 1).
fn is_legacy(store: &dyn SegmentStore, seq: u64) -> bool {
    let Ok(file) = store.open(seq, false) else {
        return false;
    };
    // SAFETY: a read-only look at a header no writer in this process touches.
    let head = unsafe { segment_bytes(&*file, 0, file.len().min(SEGMENT_HEADER_BYTES)) };
    matches!(
        SegmentHeader::decode(head),
        Err(SegmentHeaderError::UnsupportedVersion(
            SEGMENT_FORMAT_VERSION_LEGACY
        ))
    )
}

impl LogScan {
    /// The log ends before an LSN recorded as durable: whatever fault the scan found at the
    /// end is corruption, and a clean-looking end is one too.
    fn durable_lost(&mut self, store: &dyn SegmentStore, lost: Fault) {
        let cause = describe_cause(lost.cause);
        if let Some(fault) = self.fault.as_mut() {
            fault.kind = FaultKind::Corruption;
            fault.cause = format!("{}; {cause}", fault.cause);
            return;
        }
        let (seq, offset) = self.end.map_or((0, 0), |end| (end.seq, end.offset));
        self.fault = Some(LogFault {
            kind: FaultKind::Corruption,
            seq,
            segment: if seq == 0 {
                store.describe_identity()
            } else {
                store.describe(seq)
            },
            offset,
            expected_lsn: lost.expected_lsn,
            cause,
        });
    }

    /// Folds one segment's verdict into the scan of the whole log.
    // Longer than 70 lines on purpose: one match over the segment verdicts, each arm folding its
    // case into the scan report; the arms are the cases the scanner defines.
    fn record(
        &mut self,
        seq: u64,
        name: &str,
        bytes: usize,
        zero_from: usize,
        verdict: SegmentVerdict,
    ) {
        let mut summary = SegmentSummary {
            seq,
            segment: name.to_string(),
            state: SegmentState::Used,
            first_lsn: None,
            frames: 0,
            end_offset: 0,
            bytes,
            zero_from,
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
        FaultCause::Frame(error) => format!("frame does not validate ({error})"),
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
        FaultCause::DurableLost { durable_lsn } => format!(
            "the log ends before LSN {durable_lsn}, which was durable (recorded beside the \
             segments, in CHECKPOINT by a clean close or in IDENTITY by retention): its end was \
             lost"
        ),
        FaultCause::UnusedBeforeUsed => {
            "an unwritten segment stands before this one: the log is out of order".to_string()
        }
    }
}

/// What opening the log found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// What scanning the log found.
    pub scan: LogScan,
    /// Bytes zeroed at the end of the log (a torn tail, or unsynced frames after it).
    pub truncated_bytes: u64,
    /// Segments removed because they lay past the end of the log.
    pub removed_segments: Vec<u64>,
}
