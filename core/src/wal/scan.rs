//! The recovery scan: which frames of a segment image are valid, where the log ends, and what
//! is wrong with the rest.
//!
//! no_std, no allocation: it walks a `&[u8]` and hands each valid frame to a visitor. It
//! decides nothing about files; the std layer applies the verdict (truncate, refuse, skip).
//!
//! The distinction that matters is torn tail versus corruption. After the last frame that
//! validates in order, the scan looks for any checksum-valid frame further on. None: the bad
//! bytes are a torn tail (or a clean zero tail). Some: if one of them was written when the bad
//! spot was already durable (`synced_lsn >= expected LSN`), an acknowledged part of the log has
//! gone bad: corruption, reported loudly. If every one of them was written while the bad spot
//! was still unsynced, a crash could have dropped that sector and kept later ones: still a torn
//! tail, and the dropped frames are counted in the report, never returned.

use super::frame::{
    decode_frame, has_frame_magic, salt_seed, Frame, FrameError, Lsn, SegmentHeader,
    SegmentHeaderError, FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

mod verdict;

pub use verdict::{LogScanner, Resume, SegmentVerdict};

/// How recovery treats what the scan finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Any fault, even a torn tail, refuses to open.
    Strict,
    /// Truncate a torn tail; refuse on corruption.
    #[default]
    Tail,
    /// Skip bad bytes, keep every frame that validates, and report what was skipped. The bad
    /// bytes stay where they are (nothing valid is ever overwritten), so a log opened once in
    /// salvage mode keeps needing it.
    Salvage,
}

impl RecoveryMode {
    /// Whether a log with `fault` may be opened in this mode.
    pub fn accepts(self, fault: FaultKind) -> bool {
        match self {
            RecoveryMode::Strict => false,
            RecoveryMode::Tail => fault == FaultKind::TornTail,
            RecoveryMode::Salvage => true,
        }
    }

    /// The mode's name: `strict`, `tail` or `salvage`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecoveryMode::Strict => "strict",
            RecoveryMode::Tail => "tail",
            RecoveryMode::Salvage => "salvage",
        }
    }
}

/// The two kinds of damage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Bad bytes at the end that were never durable: a crash mid-write.
    TornTail,
    /// Bad bytes where durable data was, or a valid frame out of place.
    Corruption,
}

impl FaultKind {
    /// The kind's name: `torn_tail` or `corruption`.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::TornTail => "torn_tail",
            FaultKind::Corruption => "corruption",
        }
    }
}

/// What is wrong at the first bad position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCause {
    /// The bytes are not a valid frame.
    Frame(FrameError),
    /// A valid frame with another LSN than the one expected next.
    LsnMismatch {
        /// The LSN the frame carries.
        found: Lsn,
    },
    /// A valid frame that does not chain to the frame before it.
    ChainMismatch,
    /// The segment header does not validate.
    SegmentHeader(SegmentHeaderError),
    /// A header of another log (its identity differs).
    ForeignLog {
        /// The log id the header carries.
        found: u128,
    },
    /// The header names another segment than the file it is in (swapped or renamed files).
    SegmentSeq {
        /// The segment number the header carries.
        found: u64,
    },
    /// A segment number is missing between two segments present.
    MissingSegment {
        /// The number of the first segment missing.
        seq: u64,
    },
    /// The file is not the size its header records (truncated or extended).
    SegmentSize {
        /// The size the header records, in bytes.
        header_bytes: u64,
    },
    /// The segment does not start at the LSN where the previous one ended.
    FirstLsn {
        /// The first LSN the segment's header carries.
        found: Lsn,
    },
    /// An unwritten (all-zero) segment stands before segments that hold the log.
    UnusedBeforeUsed,
    /// The log ends before an LSN recorded as durable beside it.
    DurableLost {
        /// The LSN recorded as durable, which the log no longer reaches.
        durable_lsn: Lsn,
    },
}

/// The first fault found in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Whether the damage is a torn tail or corruption.
    pub kind: FaultKind,
    /// Offset in the segment where the bad bytes start.
    pub offset: usize,
    /// The LSN that should have been there.
    pub expected_lsn: Lsn,
    /// What exactly is wrong there.
    pub cause: FaultCause,
}

/// A range salvage skipped over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SkippedRange {
    /// Offset in the segment where the skipped bytes start.
    pub offset: usize,
    /// Bytes skipped.
    pub bytes: usize,
    /// The LSN expected at the start of the range.
    pub expected_lsn: Lsn,
}

/// How many skipped ranges a report lists; more are counted in `skipped_more`.
pub const SKIPPED_RANGES_MAX: usize = 16;

/// The result of scanning the frames of one segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameScan {
    /// Frames handed to the visitor.
    pub frames: u64,
    /// Offset just past the last frame handed to the visitor: where the next frame goes.
    pub end_offset: usize,
    /// The LSN the next frame must carry.
    pub next_lsn: Lsn,
    /// The chain value the next frame must carry as `prev_checksum`.
    pub last_checksum: u32,
    /// The highest `synced_lsn` among accepted frames.
    pub max_synced_lsn: Lsn,
    /// The first fault, if any.
    pub fault: Option<Fault>,
    /// Valid frames found after a torn spot that were written while it was unsynced; never
    /// returned by tail recovery.
    pub dropped_unsynced_frames: u64,
    /// Ranges skipped in salvage mode.
    pub skipped: heapless::Vec<SkippedRange, SKIPPED_RANGES_MAX>,
    /// Skipped ranges beyond the [`SKIPPED_RANGES_MAX`] listed in `skipped`.
    pub skipped_more: u64,
}

/// What lies after a bad spot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The first valid frame (offset, LSN) with an LSN at or past the expected one.
    pub first: Option<(usize, Lsn)>,
    /// Valid frames found after the spot.
    pub valid_frames: u64,
    /// Some valid frame after the spot was written when the spot was already durable.
    pub durable_after: bool,
}

/// Looks for checksum-valid frames at 8-byte aligned offsets from `from` on.
pub fn probe(bytes: &[u8], from: usize, seed: u32, expected_lsn: Lsn) -> Probe {
    probe_before(bytes, bytes.len(), from, seed, expected_lsn)
}

/// [`probe`] over an image whose bytes from `zero_from` on are all zero: no frame starts
/// there (a frame header is never all zero), so only offsets before it are tried. A frame
/// that starts before `zero_from` is still decoded whole.
fn probe_before(
    bytes: &[u8],
    zero_from: usize,
    from: usize,
    seed: u32,
    expected_lsn: Lsn,
) -> Probe {
    let mut result = Probe {
        first: None,
        valid_frames: 0,
        durable_after: false,
    };
    let mut at = from.next_multiple_of(FRAME_ALIGN_BYTES);
    while at < zero_from && at.saturating_add(FRAME_HEADER_BYTES) <= bytes.len() {
        if has_frame_magic(bytes, at) {
            if let Ok(frame) = decode_frame(&bytes[at..], seed) {
                if frame.lsn >= expected_lsn {
                    result.first.get_or_insert((at, frame.lsn));
                    result.valid_frames += 1;
                    if frame.synced_lsn >= expected_lsn {
                        result.durable_after = true;
                        return result;
                    }
                }
                at += frame.frame_bytes;
                continue;
            }
        }
        at += FRAME_ALIGN_BYTES;
    }
    result
}

/// Scans frames from `start` (8-byte aligned) in a segment whose frames are salted with `seed`
/// and start at `first_lsn`; `visit(offset, frame)` gets every accepted frame in order.
///
/// Strict and tail modes stop at the first fault; salvage skips to the next valid frame.
pub fn scan_frames<'a, F>(
    bytes: &'a [u8],
    start: usize,
    seed: u32,
    first_lsn: Lsn,
    mode: RecoveryMode,
    visit: F,
) -> FrameScan
where
    F: FnMut(usize, Frame<'a>),
{
    scan_frames_of(
        ZeroFrom::new(bytes, bytes.len()),
        start,
        seed,
        (first_lsn, 0),
        mode,
        visit,
    )
}

/// A segment image and where its known-zero tail starts: every byte of `bytes` from
/// `zero_from` on is zero. The scan never reads there except to finish decoding a frame that
/// starts before it, and its verdict is the one it gives when it reads every byte.
#[derive(Clone, Copy)]
struct ZeroFrom<'a> {
    bytes: &'a [u8],
    zero_from: usize,
}

impl<'a> ZeroFrom<'a> {
    fn new(bytes: &'a [u8], zero_from: usize) -> ZeroFrom<'a> {
        ZeroFrom {
            bytes,
            zero_from: zero_from.min(bytes.len()),
        }
    }

    /// Whether `bytes[from..]` is all zero: only the part before `zero_from` is read.
    fn zero_after(&self, from: usize) -> bool {
        from >= self.zero_from || is_zero(&self.bytes[from..self.zero_from])
    }
}

// Longer than 70 lines on purpose: the frame walk of the recovery scan: one loop whose state
// (position, expected LSN and chain, salvage resumption) every branch updates; it is no_std and
// fuzzed as one piece.
// `(first_lsn, prev_checksum)`: what the frame at `start` must carry (0: a segment's first).
fn scan_frames_of<'a, F>(
    image: ZeroFrom<'a>,
    start: usize,
    seed: u32,
    (first_lsn, prev_checksum): (Lsn, u32),
    mode: RecoveryMode,
    mut visit: F,
) -> FrameScan
where
    F: FnMut(usize, Frame<'a>),
{
    let bytes = image.bytes;
    assert!(
        start.is_multiple_of(FRAME_ALIGN_BYTES),
        "frames start aligned"
    );
    let mut scan = FrameScan {
        end_offset: start,
        last_checksum: prev_checksum,
        ..empty_scan(first_lsn)
    };
    let mut pos = start;
    // From `zero_from` on the bytes are zero: no frame there, and the rest is a clean end.
    while pos < image.zero_from {
        let rest = &bytes[pos..];
        let cause = match decode_frame(rest, seed) {
            Ok(frame)
                if frame.lsn == scan.next_lsn && frame.prev_checksum == scan.last_checksum =>
            {
                visit(pos, frame);
                accept(&mut scan, pos, &frame);
                pos += frame.frame_bytes;
                continue;
            }
            Ok(frame) if frame.lsn != scan.next_lsn => FaultCause::LsnMismatch { found: frame.lsn },
            Ok(_) => FaultCause::ChainMismatch,
            Err(error) => FaultCause::Frame(error),
        };
        if image.zero_after(pos) {
            break; // A clean zero tail: the log simply ends here.
        }
        let after = probe_before(
            bytes,
            image.zero_from,
            pos + FRAME_ALIGN_BYTES,
            seed,
            scan.next_lsn,
        );
        let out_of_place = matches!(
            cause,
            FaultCause::LsnMismatch { .. } | FaultCause::ChainMismatch
        );
        let kind = if after.durable_after || out_of_place {
            FaultKind::Corruption
        } else {
            FaultKind::TornTail
        };
        if kind == FaultKind::TornTail {
            scan.dropped_unsynced_frames += after.valid_frames;
        }
        scan.fault.get_or_insert(Fault {
            kind,
            offset: pos,
            expected_lsn: scan.next_lsn,
            cause,
        });
        let resume = match (mode, after.first) {
            (RecoveryMode::Salvage, Some(resume)) => resume,
            _ => break,
        };
        let range = SkippedRange {
            offset: pos,
            bytes: resume.0 - pos,
            expected_lsn: scan.next_lsn,
        };
        if scan.skipped.push(range).is_err() {
            scan.skipped_more += 1;
        }
        // Salvage resumes at the next valid frame: its LSN and chain become the expectation.
        pos = resume.0;
        scan.next_lsn = resume.1;
        scan.last_checksum = match decode_frame(&bytes[pos..], seed) {
            Ok(frame) => frame.prev_checksum,
            Err(_) => unreachable_checksum(),
        };
    }
    debug_assert!(scan.end_offset <= bytes.len().max(start));
    scan
}

/// `probe` only returns offsets that decoded; this is the value used if that ever changed,
/// chosen so the frame there fails the chain check and the scan stops instead of panicking.
fn unreachable_checksum() -> u32 {
    debug_assert!(false, "probe returned an offset that does not decode");
    u32::MAX
}

fn accept(scan: &mut FrameScan, pos: usize, frame: &Frame<'_>) {
    scan.frames += 1;
    scan.end_offset = pos + frame.frame_bytes;
    scan.next_lsn = frame.lsn + 1;
    scan.last_checksum = frame.checksum;
    scan.max_synced_lsn = scan.max_synced_lsn.max(frame.synced_lsn);
}

/// The result of scanning one whole segment image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentScan {
    /// The segment's validated header.
    pub header: SegmentHeader,
    /// What scanning its frames found.
    pub frames: FrameScan,
}

/// Scans a whole segment image: validates its header, then its frames.
pub fn scan_segment<'a, F>(
    bytes: &'a [u8],
    mode: RecoveryMode,
    visit: F,
) -> Result<SegmentScan, SegmentHeaderError>
where
    F: FnMut(usize, Frame<'a>),
{
    let header = SegmentHeader::decode(bytes)?;
    let seed = salt_seed(header.salt);
    let frames = scan_frames(
        bytes,
        SEGMENT_HEADER_BYTES,
        seed,
        header.first_lsn,
        mode,
        visit,
    );
    Ok(SegmentScan { header, frames })
}

/// Whether every byte is zero. Recovery runs this over the unwritten tail of a segment (tens
/// of MiB): words at a time, which the compiler vectorizes, instead of a byte loop.
pub fn is_zero(bytes: &[u8]) -> bool {
    const CHUNK_BYTES: usize = 64;
    let mut chunks = bytes.chunks_exact(CHUNK_BYTES);
    let words_zero = chunks.by_ref().all(|chunk| {
        chunk.chunks_exact(8).fold(0u64, |acc, w| {
            acc | u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]])
        }) == 0
    });
    words_zero && chunks.remainder().iter().all(|&b| b == 0)
}

/// A frame scan that accepted nothing, expecting `lsn` after the segment header.
fn empty_scan(lsn: Lsn) -> FrameScan {
    FrameScan {
        frames: 0,
        end_offset: SEGMENT_HEADER_BYTES,
        next_lsn: lsn,
        last_checksum: 0,
        max_synced_lsn: 0,
        fault: None,
        dropped_unsynced_frames: 0,
        skipped: heapless::Vec::new(),
        skipped_more: 0,
    }
}

#[cfg(test)]
mod tests;
