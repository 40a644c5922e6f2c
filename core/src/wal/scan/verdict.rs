//! The scan of a whole log: the [`LogScanner`] carried from segment to segment, and the
//! [`SegmentVerdict`] it gives each one.

use super::super::frame::{
    decode_frame, salt_seed, Frame, Lsn, SegmentHeader, SegmentHeaderError, FRAME_ALIGN_BYTES,
    SEGMENT_HEADER_BYTES,
};
use super::{
    empty_scan, probe_before, scan_frames_of, Fault, FaultCause, FaultKind, FrameScan, Probe,
    RecoveryMode, ZeroFrom,
};

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
    /// Where the frames of the first segment scanned are read from, if not its head.
    resume: Option<Resume>,
}

/// A scan that starts at a frame inside its first segment (an index checkpoint a clean close
/// recorded): the offset of that frame, its LSN and the checksum it chains on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    /// Byte offset of the frame in the segment (8-byte aligned, past the header).
    pub offset: usize,
    /// The frame's LSN.
    pub lsn: Lsn,
    /// The checksum of the frame before it, which it carries.
    pub prev_checksum: u32,
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
            resume: None,
        }
    }

    /// This scan reads the frames of its first segment from `resume` on, not from the head:
    /// the bytes before it are not read (the caller proved them durable and checked the frame
    /// there). A resume point that does not fit the segment's header (before the first frame,
    /// unaligned, or an LSN before the segment's first) is ignored and the segment is read
    /// whole. A frame there that does not validate is corruption, never a torn tail.
    pub fn resuming_at(mut self, resume: Resume) -> LogScanner {
        self.resume = Some(resume);
        self
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
    // Longer than 70 lines on purpose: the verdict on one segment is a chain of checks in the order
    // a crash can leave them (numbering, header, identity, place, frames, past the end); each
    // depends on the ones before, so it is kept as one decision.
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
        let resume = self.resume.take().filter(|r| {
            r.offset >= SEGMENT_HEADER_BYTES
                && r.offset.is_multiple_of(FRAME_ALIGN_BYTES)
                && r.offset < image.zero_from
                && r.lsn >= header.first_lsn
                && segment_fault.is_none()
        });
        let (start, from) = match resume {
            Some(r) => (r.offset, (r.lsn, r.prev_checksum)),
            None => (SEGMENT_HEADER_BYTES, (header.first_lsn, 0)),
        };
        let mut frames = scan_frames_of(image, start, seed, from, self.mode, visit);
        if let Some(r) = resume.filter(|_| frames.frames == 0) {
            // The frame resumed at was checked before: bytes there that fail now (or zeros,
            // which would otherwise read as a clean end) are not what the caller checked,
            // which no crash explains: corruption at that offset, never an end of the log.
            let cause = match decode_frame(&bytes[r.offset..], seed) {
                Err(error) => FaultCause::Frame(error),
                Ok(frame) if frame.lsn != r.lsn => FaultCause::LsnMismatch { found: frame.lsn },
                Ok(_) => FaultCause::ChainMismatch,
            };
            let fault = frames.fault.get_or_insert(Fault {
                kind: FaultKind::Corruption,
                offset: r.offset,
                expected_lsn: r.lsn,
                cause,
            });
            fault.kind = FaultKind::Corruption;
            frames.dropped_unsynced_frames = 0;
            if self.mode != RecoveryMode::Salvage {
                self.stopped_at = Some(r.lsn);
            }
        }
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
