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
        first_lsn,
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

fn scan_frames_of<'a, F>(
    image: ZeroFrom<'a>,
    start: usize,
    seed: u32,
    first_lsn: Lsn,
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

/// What the scan of a whole log expects of the next segment, carried from one segment to the
/// next. The std layer feeds it every segment file in order ([`LogScanner::segment`]); the
/// fuzz targets feed it arbitrary images. It is the one place that decides what a log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogScanner {
    /// What damage the scan accepts and goes on past.
    pub mode: RecoveryMode,
    /// The identity every segment must carry.
    pub log_id: u128,
    /// The sequence number the next segment must have.
    next_seq: Option<u64>,
    /// The LSN the next frame must carry (none before the first used segment).
    next_lsn: Option<Lsn>,
    /// An unused segment was seen: any used segment after it is out of place.
    unused_seen: Option<u64>,
    /// The log ended at a fault (strict and tail modes): later segments are only probed, at
    /// this expected LSN.
    stopped_at: Option<Lsn>,
    /// Headers of the earlier format (version 1) are read too (to repair such a log).
    legacy: bool,
}

/// What one segment is, as part of the log.
// Returned once per segment and consumed at once; no_std without alloc cannot box it.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmentVerdict {
    /// Its frames (or some of them, see `frames.fault`) belong to the log.
    Used {
        /// The segment's validated header.
        header: SegmentHeader,
        /// What scanning its frames found.
        frames: FrameScan,
        /// A fault at the segment level found before its frames were scanned (salvage goes on
        /// past it).
        fault: Option<Fault>,
    },
    /// Pre-created and never written: all zeros.
    Unused,
    /// After the end of the log (a fault stopped it): only probed. `durable_after` means a
    /// frame here was written when the stop was already durable: the stop is corruption.
    PastEnd {
        /// What the probe of the segment's bytes found.
        probe: Probe,
    },
    /// The segment as a whole is damaged: none of its frames can be trusted.
    Damaged(Fault),
}

impl LogScanner {
    /// A scan of the log `log_id` whose oldest retained segment is `first_seq`.
    pub fn new(mode: RecoveryMode, log_id: u128, first_seq: u64) -> LogScanner {
        LogScanner {
            mode,
            log_id,
            next_seq: Some(first_seq),
            next_lsn: None,
            unused_seen: None,
            stopped_at: None,
            legacy: false,
        }
    }

    /// This scan also reads segments of the earlier format (version 1), whose identity is 0.
    pub fn reading_legacy(mut self) -> LogScanner {
        self.legacy = true;
        self
    }

    /// The LSN the next frame must carry (1 for a log with nothing accepted yet).
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn.unwrap_or(1)
    }

    /// Whether a fault ended the log.
    pub fn stopped(&self) -> bool {
        self.stopped_at.is_some()
    }

    /// Scans segment `seq` (its whole file image), handing accepted frames to `visit`.
    pub fn segment<'a, F>(&mut self, seq: u64, bytes: &'a [u8], visit: F) -> SegmentVerdict
    where
        F: FnMut(usize, Frame<'a>),
    {
        self.segment_zero_from(seq, bytes, bytes.len(), visit)
    }

    /// As [`LogScanner::segment`], for an image whose bytes from `zero_from` on are known to
    /// be zero (the file layer proves it from the file's extents, without reading them). The
    /// verdict is the one [`LogScanner::segment`] gives, but no byte at or after `zero_from`
    /// is read except the end of a frame that starts before it: the unwritten tail of a
    /// preallocated segment costs nothing. The claim must be true: a wrong one hides bytes.
    pub fn segment_zero_from<'a, F>(
        &mut self,
        seq: u64,
        bytes: &'a [u8],
        zero_from: usize,
        visit: F,
    ) -> SegmentVerdict
    where
        F: FnMut(usize, Frame<'a>),
    {
        let image = ZeroFrom::new(bytes, zero_from);
        let expected_seq = self.next_seq;
        self.next_seq = Some(seq.saturating_add(1));
        let expected_lsn = self.next_lsn();
        let fault = |cause| Fault {
            kind: FaultKind::Corruption,
            offset: 0,
            expected_lsn,
            cause,
        };
        // A gap in the numbering is a lost file, whatever this one holds.
        let missing = expected_seq.filter(|&s| s != seq);
        if let (Some(missing), true) = (missing, self.mode != RecoveryMode::Salvage) {
            return self.damaged(fault(FaultCause::MissingSegment { seq: missing }));
        }
        let header = match SegmentHeader::decode_with(bytes, self.legacy) {
            Ok(header) => header,
            Err(SegmentHeaderError::Unused) if image.zero_after(0) => {
                self.unused_seen.get_or_insert(seq);
                return SegmentVerdict::Unused;
            }
            // A header is durable before any frame is written after it: zeros followed by
            // data are damage, as is every header that does not validate.
            Err(error) => return self.damaged(fault(FaultCause::SegmentHeader(error))),
        };
        let seed = salt_seed(header.salt);
        if let Some(stop) = self.stopped_at {
            return SegmentVerdict::PastEnd {
                probe: probe_before(bytes, image.zero_from, SEGMENT_HEADER_BYTES, seed, stop),
            };
        }
        let mut segment_fault = None;
        let cause = if header.log_id != self.log_id {
            Some(FaultCause::ForeignLog {
                found: header.log_id,
            })
        } else if header.segment_seq != seq {
            Some(FaultCause::SegmentSeq {
                found: header.segment_seq,
            })
        } else if header.segment_bytes != bytes.len() as u64 {
            Some(FaultCause::SegmentSize {
                header_bytes: header.segment_bytes,
            })
        } else if let Some(seq) = missing {
            Some(FaultCause::MissingSegment { seq })
        } else if self.unused_seen.is_some() {
            Some(FaultCause::UnusedBeforeUsed)
        } else {
            None
        };
        if let Some(cause) = cause {
            // Identity, place and size are not something a crash can tear: whatever the
            // frames say, this file is not the segment the log needs here.
            let damaged = matches!(
                cause,
                FaultCause::ForeignLog { .. }
                    | FaultCause::SegmentSeq { .. }
                    | FaultCause::SegmentSize { .. }
            );
            if damaged || self.mode != RecoveryMode::Salvage {
                return self.damaged(fault(cause));
            }
            segment_fault = Some(fault(cause));
        }
        if self.next_lsn.is_some_and(|lsn| lsn != header.first_lsn) && segment_fault.is_none() {
            // A segment that starts past the expected LSN is what a crash leaves when the end
            // of the previous segment was never synced but this header was: a tear, unless a
            // frame here was written when that end was already durable.
            let after = probe_before(
                bytes,
                image.zero_from,
                SEGMENT_HEADER_BYTES,
                seed,
                expected_lsn,
            );
            let tear = header.first_lsn > expected_lsn && !after.durable_after;
            let kind = if tear {
                FaultKind::TornTail
            } else {
                FaultKind::Corruption
            };
            let found = Fault {
                kind,
                offset: 0,
                expected_lsn,
                cause: FaultCause::FirstLsn {
                    found: header.first_lsn,
                },
            };
            if self.mode != RecoveryMode::Salvage {
                self.stopped_at = Some(expected_lsn);
                let mut frames = empty_scan(expected_lsn);
                if tear {
                    frames.dropped_unsynced_frames = after.valid_frames;
                }
                frames.fault = Some(found);
                return SegmentVerdict::Used {
                    header,
                    frames,
                    fault: None,
                };
            }
            segment_fault = Some(found);
        }
        let frames = scan_frames_of(
            image,
            SEGMENT_HEADER_BYTES,
            seed,
            header.first_lsn,
            self.mode,
            visit,
        );
        self.next_lsn = Some(frames.next_lsn);
        if frames.fault.is_some() && self.mode != RecoveryMode::Salvage {
            self.stopped_at = Some(frames.next_lsn);
        }
        SegmentVerdict::Used {
            header,
            frames,
            fault: segment_fault,
        }
    }

    /// After the last segment: the log must reach `durable_lsn`, which was recorded as
    /// durable beside the segments. A log that ends before it lost acknowledged records,
    /// whatever the bytes at its end look like (a wiped tail leaves no frame to prove it).
    pub fn finish(&self, durable_lsn: Lsn) -> Option<Fault> {
        let next = self.next_lsn();
        (next <= durable_lsn).then_some(Fault {
            kind: FaultKind::Corruption,
            offset: 0,
            expected_lsn: next,
            cause: FaultCause::DurableLost { durable_lsn },
        })
    }

    fn damaged(&mut self, fault: Fault) -> SegmentVerdict {
        if self.mode != RecoveryMode::Salvage && self.stopped_at.is_none() {
            self.stopped_at = Some(fault.expected_lsn);
        }
        SegmentVerdict::Damaged(fault)
    }
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
mod tests {
    use super::super::frame::{encode_frame, frame_bytes, FrameMeta};
    use super::*;

    const SALT: u64 = 0x1234_5678_9ABC_DEF0;

    /// Builds a segment image with `count` frames; `synced_lag` says how far the durable
    /// watermark trailed each frame (0 = every earlier frame durable; u64::MAX = none durable).
    fn segment(count: u64, synced_lag: u64, salt: u64, bytes: usize) -> (Vec<u8>, Vec<usize>) {
        let mut image = vec![0u8; bytes];
        let header = SegmentHeader {
            segment_seq: 1,
            first_lsn: 1,
            salt,
            segment_bytes: bytes as u64,
            log_id: 1,
        };
        let mut head = [0u8; SEGMENT_HEADER_BYTES];
        header.encode(&mut head);
        image[..SEGMENT_HEADER_BYTES].copy_from_slice(&head);
        let seed = salt_seed(salt);
        let (mut pos, mut prev, mut offsets) = (SEGMENT_HEADER_BYTES, 0u32, vec![]);
        for lsn in 1..=count {
            let payload: Vec<u8> = (0..(lsn as usize * 7) % 50)
                .map(|i| (i as u8) ^ (lsn as u8))
                .collect();
            let synced = (lsn - 1).saturating_sub(synced_lag);
            let meta = FrameMeta {
                kind: 8,
                lsn,
                synced_lsn: synced,
                prev_checksum: prev,
            };
            let (crc, total) = encode_frame(&mut image[pos..], &payload, meta, seed).unwrap();
            offsets.push(pos);
            prev = crc;
            pos += total;
        }
        offsets.push(pos);
        (image, offsets)
    }

    fn lsns(bytes: &[u8], mode: RecoveryMode) -> (Vec<Lsn>, SegmentScan) {
        let mut seen = vec![];
        let scan = scan_segment(bytes, mode, |_, f| seen.push(f.lsn)).unwrap();
        (seen, scan)
    }

    #[test]
    fn an_intact_segment_with_a_zero_tail_has_no_fault() {
        let (image, offsets) = segment(20, 0, SALT, 4096);
        let (seen, scan) = lsns(&image, RecoveryMode::Strict);
        assert_eq!(seen, (1..=20).collect::<Vec<_>>());
        assert_eq!(scan.frames.fault, None);
        assert_eq!(scan.frames.end_offset, offsets[20]);
        assert_eq!(scan.frames.next_lsn, 21);
    }

    #[test]
    fn every_single_byte_flip_in_the_used_part_is_detected_and_never_returned() {
        let (image, offsets) = segment(12, 0, SALT, 1024);
        let used = offsets[12];
        for at in 0..used {
            let mut damaged = image.clone();
            damaged[at] ^= 0x01;
            match scan_segment(&damaged, RecoveryMode::Tail, |_, _| {}) {
                Err(_) => assert!(at < SEGMENT_HEADER_BYTES, "header flip at {at} only"),
                Ok(scan) => {
                    let fault = scan
                        .frames
                        .fault
                        .unwrap_or_else(|| panic!("flip at {at} undetected"));
                    let hit = offsets.iter().rposition(|&o| o <= at).unwrap();
                    assert_eq!(fault.offset, offsets[hit], "flip at {at}");
                    assert_eq!(
                        scan.frames.frames, hit as u64,
                        "only frames before the flip"
                    );
                    // Frames after a durable-era flip prove it is corruption, except after the last.
                    let expected = if hit == 11 {
                        FaultKind::TornTail
                    } else {
                        FaultKind::Corruption
                    };
                    assert_eq!(fault.kind, expected, "flip at {at}");
                }
            }
        }
    }

    #[test]
    fn truncation_at_every_offset_of_the_last_frame_recovers_the_prefix() {
        let (image, offsets) = segment(6, 0, SALT, 512);
        for cut in offsets[5]..offsets[6] {
            let mut torn = image.clone();
            torn[cut..].fill(0);
            if torn == image {
                continue; // Only zero padding was cut: the frame is intact, nothing was torn.
            }
            let (seen, scan) = lsns(&torn, RecoveryMode::Tail);
            assert_eq!(seen, vec![1, 2, 3, 4, 5], "cut at {cut}");
            assert_eq!(scan.frames.end_offset, offsets[5]);
            if cut == offsets[5] {
                assert_eq!(scan.frames.fault, None);
            } else {
                let fault = scan.frames.fault.unwrap();
                assert_eq!(
                    (fault.kind, fault.offset, fault.expected_lsn),
                    (FaultKind::TornTail, offsets[5], 6)
                );
            }
        }
    }

    #[test]
    fn garbage_instead_of_zeros_in_the_tail_is_a_torn_tail() {
        let (mut image, offsets) = segment(3, 0, SALT, 512);
        image[offsets[3] + 100] = 0x77;
        let (seen, scan) = lsns(&image, RecoveryMode::Tail);
        assert_eq!(seen, vec![1, 2, 3]);
        assert_eq!(scan.frames.fault.unwrap().kind, FaultKind::TornTail);
    }

    #[test]
    fn stale_frames_from_an_older_salt_are_rejected() {
        // An old use of the same bytes left 30 frames; the new segment wrote 5 over them.
        let (old, _) = segment(30, 0, 0xAAAA, 4096);
        let (new, offsets) = segment(5, 0, 0xBBBB, 4096);
        let mut reused = old.clone();
        reused[..offsets[5]].copy_from_slice(&new[..offsets[5]]);
        let (seen, scan) = lsns(&reused, RecoveryMode::Salvage);
        assert_eq!(
            seen,
            vec![1, 2, 3, 4, 5],
            "no stale frame returned, even by salvage"
        );
        assert_eq!(scan.frames.fault.unwrap().kind, FaultKind::TornTail);
    }

    #[test]
    fn valid_frames_after_a_bad_one_are_corruption_in_tail_and_returned_in_salvage() {
        let (mut image, offsets) = segment(10, 0, SALT, 2048);
        image[offsets[4] + FRAME_HEADER_BYTES - 1] ^= 0xFF; // frame with LSN 5
        let (seen, scan) = lsns(&image, RecoveryMode::Tail);
        assert_eq!(seen, vec![1, 2, 3, 4]);
        let fault = scan.frames.fault.unwrap();
        assert_eq!(
            (fault.kind, fault.offset, fault.expected_lsn),
            (FaultKind::Corruption, offsets[4], 5)
        );
        assert!(!RecoveryMode::Tail.accepts(fault.kind));

        let (seen, scan) = lsns(&image, RecoveryMode::Salvage);
        assert_eq!(seen, vec![1, 2, 3, 4, 6, 7, 8, 9, 10]);
        assert_eq!(scan.frames.skipped.len(), 1);
        let skipped = scan.frames.skipped[0];
        assert_eq!(
            (skipped.offset, skipped.bytes, skipped.expected_lsn),
            (offsets[4], offsets[5] - offsets[4], 5)
        );
        assert_eq!(scan.frames.next_lsn, 11);
    }

    #[test]
    fn a_hole_in_never_synced_frames_is_a_torn_tail_with_counted_drops() {
        // Nothing was durable: a crash may keep later sectors and lose earlier ones.
        let (mut image, offsets) = segment(10, u64::MAX, SALT, 2048);
        image[offsets[6]..offsets[7]].fill(0);
        let (seen, scan) = lsns(&image, RecoveryMode::Tail);
        assert_eq!(seen, (1..=6).collect::<Vec<_>>());
        let fault = scan.frames.fault.unwrap();
        assert_eq!(fault.kind, FaultKind::TornTail);
        assert_eq!(scan.frames.dropped_unsynced_frames, 3);
    }

    #[test]
    fn scanning_is_idempotent_and_truncating_a_torn_tail_gives_a_clean_log() {
        let (mut image, offsets) = segment(8, 0, SALT, 1024);
        image[offsets[7] + 3] ^= 0x40;
        let (first, scan1) = lsns(&image, RecoveryMode::Tail);
        let (second, scan2) = lsns(&image, RecoveryMode::Tail);
        assert_eq!((first.clone(), scan1.clone()), (second, scan2));
        image[scan1.frames.end_offset..].fill(0);
        let (third, scan3) = lsns(&image, RecoveryMode::Strict);
        assert_eq!(third, first);
        assert_eq!(scan3.frames.fault, None);
        assert_eq!(scan3.frames.end_offset, scan1.frames.end_offset);
    }

    #[test]
    fn is_zero_finds_a_single_set_byte_anywhere() {
        let zeros = [0u8; 203];
        assert!(is_zero(&zeros) && is_zero(&[]));
        for at in 0..zeros.len() {
            let mut bytes = zeros;
            bytes[at] = 0x80;
            assert!(!is_zero(&bytes), "byte {at}");
        }
    }

    /// Offset just past the last non-zero byte: the tightest claim the file layer can make.
    fn zero_boundary(image: &[u8]) -> usize {
        image.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1)
    }

    #[test]
    fn a_known_zero_tail_gives_the_verdict_of_reading_every_byte() {
        let (clean, offsets) = segment(10, 0, SALT, 4096);
        let mut torn = clean.clone();
        torn[offsets[9] + 5] ^= 0x10;
        let mut garbage_far = clean.clone();
        garbage_far[3000] = 0x55;
        // A durable frame far after a hole of zeros: corruption, found only past the hole.
        let (long, long_offsets) = segment(40, 0, SALT, 4096);
        let mut valid_far = long.clone();
        valid_far[long_offsets[20]..long_offsets[39]].fill(0);
        let unused = vec![0u8; 4096];
        let mut zero_header_data_after = unused.clone();
        zero_header_data_after[2000] = 1;
        let images = [
            clean,
            torn,
            garbage_far,
            valid_far,
            unused,
            zero_header_data_after,
        ];
        for mode in [
            RecoveryMode::Strict,
            RecoveryMode::Tail,
            RecoveryMode::Salvage,
        ] {
            for image in &images {
                let mut full = vec![];
                let expected = LogScanner::new(mode, 1, 1)
                    .segment(1, image, |at, frame| full.push((at, frame.lsn)));
                for zero_from in zero_boundary(image)..=image.len() {
                    let mut hinted = vec![];
                    let verdict = LogScanner::new(mode, 1, 1).segment_zero_from(
                        1,
                        image,
                        zero_from,
                        |at, frame| hinted.push((at, frame.lsn)),
                    );
                    assert_eq!(verdict, expected, "{mode:?}, zero from {zero_from}");
                    assert_eq!(hinted, full);
                }
            }
        }
    }

    #[test]
    fn frame_bytes_is_consistent_with_offsets() {
        assert_eq!(frame_bytes(0), FRAME_HEADER_BYTES);
        assert_eq!(frame_bytes(1), FRAME_HEADER_BYTES + 8);
    }
}
