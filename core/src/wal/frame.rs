//! The on-disk layout of a segment: one segment header, then 8-byte aligned frames.
//!
//! Owns encoding and decoding of both over byte slices (no_std, no allocation). It knows
//! nothing of files, records or recovery policy.
//!
//! Segment header (`SEGMENT_HEADER_BYTES`, little-endian), format version 2:
//! `magic u32 | version u16 | reserved u16 | segment_seq u64 | first_lsn u64 | salt u64 |
//! segment_bytes u64 | log_id u128 | reserved [u8; 4] | checksum u32` (CRC32C of the first 60
//! bytes). `log_id` is chosen when the log is created and carried by every segment, so a
//! segment of another log is recognised as foreign; `segment_bytes` is the file's size, so a
//! truncated segment is recognised as damaged. The layout is pinned by golden-byte tests.
//!
//! Frame header (`FRAME_HEADER_BYTES`), then the payload, then zero padding to 8 bytes:
//! `magic u32 | version u8 | flags u8 | kind u16 | payload_len u32 | checksum u32 | lsn u64 |
//! synced_lsn u64 | prev_checksum u32 | reserved u32`.
//!
//! The checksum is CRC32C seeded with the segment's salt over the whole frame (header with the
//! checksum field skipped, payload, padding). The salt makes stale frames from an older use of
//! the same bytes fail; `prev_checksum` chains each frame to the one before it in the segment.
//! `synced_lsn` is the durable watermark the writer knew when it wrote the frame: recovery uses
//! it to tell a crash that tore unsynced bytes (everything after the hole was written while the
//! hole was not yet durable) from corruption of data that had been acknowledged.

use super::crc32c::{crc32c, crc32c_append};

/// "VWAL" in the first four bytes of every frame.
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"VWAL");
/// "VSEG" in the first four bytes of every segment.
pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"VSEG");
/// Format version written into every frame.
pub const FORMAT_VERSION: u8 = 1;
/// Format version written into every segment header; a reader refuses any other.
pub const SEGMENT_FORMAT_VERSION: u16 = 2;
/// The segment format of earlier builds (no log identity); read only to be repaired.
pub const SEGMENT_FORMAT_VERSION_LEGACY: u16 = 1;
/// Bytes of the segment header; the first frame starts here.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Bytes of a frame header.
pub const FRAME_HEADER_BYTES: usize = 40;
/// Frames start and end on this alignment.
pub const FRAME_ALIGN_BYTES: usize = 8;
/// The largest payload one frame may carry. Large enough for a job record with bounded
/// output; small enough that a corrupt length can never make a reader look far away.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Record kinds with this bit set may be skipped by readers that do not know them.
pub const KIND_IGNORABLE_BIT: u16 = 0x8000;

/// A log sequence number: the position of a record in the log, starting at 1, +1 per record.
pub type Lsn = u64;

/// The largest LSN a valid frame or segment may carry. Far beyond any real log (2^63 records),
/// it keeps `lsn + 1` from overflowing on any input, however crafted.
pub const LSN_MAX: Lsn = u64::MAX >> 1;

/// Total bytes a frame with `payload_len` payload bytes occupies, padding included.
pub const fn frame_bytes(payload_len: usize) -> usize {
    (FRAME_HEADER_BYTES + payload_len + FRAME_ALIGN_BYTES - 1) & !(FRAME_ALIGN_BYTES - 1)
}

/// The CRC seed of a segment: every frame checksum in it starts from this value.
pub fn salt_seed(salt: u64) -> u32 {
    crc32c(&salt.to_le_bytes())
}

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Position of the segment in the log (its file name), starting at 1.
    pub segment_seq: u64,
    /// LSN of the segment's first frame.
    pub first_lsn: Lsn,
    /// Random per-segment salt mixed into every frame checksum.
    pub salt: u64,
    /// Size of the segment file in bytes.
    pub segment_bytes: u64,
    /// The identity of the log the segment belongs to.
    pub log_id: u128,
}

/// Why a segment header does not validate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentHeaderError {
    /// Fewer bytes than a header.
    Short,
    /// All zero: a pre-created segment the writer has not started.
    Unused,
    /// Magic or checksum wrong, or a field out of range.
    Invalid,
    /// A valid header of a format version this build does not read.
    UnsupportedVersion(u16),
}

impl SegmentHeaderError {
    /// What is wrong, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            SegmentHeaderError::Short => "file shorter than a segment header",
            SegmentHeaderError::Unused => "segment header is all zeros",
            SegmentHeaderError::Invalid => "segment header does not validate (magic or checksum)",
            SegmentHeaderError::UnsupportedVersion(_) => "segment format version not supported",
        }
    }
}

impl SegmentHeader {
    /// Writes the header into the first `SEGMENT_HEADER_BYTES` of `out`.
    pub fn encode(&self, out: &mut [u8; SEGMENT_HEADER_BYTES]) {
        *out = [0u8; SEGMENT_HEADER_BYTES];
        out[0..4].copy_from_slice(&SEGMENT_MAGIC.to_le_bytes());
        out[4..6].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        out[8..16].copy_from_slice(&self.segment_seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        out[24..32].copy_from_slice(&self.salt.to_le_bytes());
        out[32..40].copy_from_slice(&self.segment_bytes.to_le_bytes());
        out[40..56].copy_from_slice(&self.log_id.to_le_bytes());
        let checksum = crc32c(&out[0..60]);
        out[60..64].copy_from_slice(&checksum.to_le_bytes());
    }

    /// Reads and validates the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<SegmentHeader, SegmentHeaderError> {
        SegmentHeader::decode_with(bytes, false)
    }

    /// As [`SegmentHeader::decode`]; with `legacy`, a header of format version 1 (earlier
    /// builds: the same layout with the identity bytes reserved) is read too, with the
    /// identity those bytes hold (zero). Only `repair` reads legacy logs, to rewrite them.
    pub fn decode_with(bytes: &[u8], legacy: bool) -> Result<SegmentHeader, SegmentHeaderError> {
        let Some(head) = bytes.get(..SEGMENT_HEADER_BYTES) else {
            return Err(SegmentHeaderError::Short);
        };
        if head.iter().all(|&b| b == 0) {
            return Err(SegmentHeaderError::Unused);
        }
        let valid =
            read_u32(head, 0) == SEGMENT_MAGIC && read_u32(head, 60) == crc32c(&head[0..60]);
        if !valid {
            return Err(SegmentHeaderError::Invalid);
        }
        let version = read_u16(head, 4);
        let legacy_ok = legacy && version == SEGMENT_FORMAT_VERSION_LEGACY;
        if version != SEGMENT_FORMAT_VERSION && !legacy_ok {
            return Err(SegmentHeaderError::UnsupportedVersion(version));
        }
        let first_lsn = read_u64(head, 16);
        if first_lsn == 0 || first_lsn > LSN_MAX || read_u16(head, 6) != 0 {
            return Err(SegmentHeaderError::Invalid);
        }
        let mut log_id = [0u8; 16];
        log_id.copy_from_slice(&head[40..56]);
        Ok(SegmentHeader {
            segment_seq: read_u64(head, 8),
            first_lsn,
            salt: read_u64(head, 24),
            segment_bytes: read_u64(head, 32),
            log_id: u128::from_le_bytes(log_id),
        })
    }
}

/// The fields of a frame header a writer chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    /// The record kind (see `record::kind`); kinds with [`KIND_IGNORABLE_BIT`] set may be skipped
    /// by readers that do not know them.
    pub kind: u16,
    /// The record's LSN, 1..=[`LSN_MAX`]: the previous frame's plus one.
    pub lsn: Lsn,
    /// Every LSN up to and including this one was durable when the frame was written.
    pub synced_lsn: Lsn,
    /// Checksum of the previous frame in the segment, 0 for the first.
    pub prev_checksum: u32,
}

/// A frame that validated, borrowing its payload from the scanned bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The record kind (see `record::kind`).
    pub kind: u16,
    /// The record's LSN, 1..=[`LSN_MAX`].
    pub lsn: Lsn,
    /// Every LSN up to and including this one was durable when the frame was written.
    pub synced_lsn: Lsn,
    /// Checksum of the previous frame in the segment, 0 for the first.
    pub prev_checksum: u32,
    /// This frame's CRC32C, seeded with the segment's salt; it validated.
    pub checksum: u32,
    /// The record's encoded bytes (padding excluded), at most [`RECORD_PAYLOAD_BYTES_MAX`].
    pub payload: &'a [u8],
    /// Bytes the whole frame occupies, padding included.
    pub frame_bytes: usize,
}

/// Why bytes at a position are not a valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// Fewer bytes left than a frame header, or than the length the header claims.
    Short,
    /// The header is all zero: nothing was written here.
    Zero,
    /// The first four bytes are not [`FRAME_MAGIC`].
    BadMagic,
    /// The frame's version is not [`FORMAT_VERSION`].
    BadVersion,
    /// Reserved bits set or a length above the maximum.
    BadHeader,
    /// The checksum does not match the bytes: torn, corrupt, or a stale frame of an older use of
    /// the segment.
    BadChecksum,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            FrameError::Short => "fewer bytes than the frame needs",
            FrameError::Zero => "an all-zero header: nothing was written here",
            FrameError::BadMagic => "bad magic",
            FrameError::BadVersion => "unknown frame version",
            FrameError::BadHeader => "reserved bits set or a length out of range",
            FrameError::BadChecksum => "checksum mismatch",
        })
    }
}

impl core::error::Error for FrameError {}

/// Why a frame could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is larger than `RECORD_PAYLOAD_BYTES_MAX`.
    PayloadTooLarge {
        /// Size of the payload, in bytes.
        payload_bytes: usize,
    },
    /// The output buffer cannot hold the frame.
    BufferTooSmall {
        /// Bytes the whole frame needs, header and padding included.
        needed_bytes: usize,
    },
}

/// Writes a frame header for a payload that already sits at `out[FRAME_HEADER_BYTES..]`,
/// zeroes the padding and computes the checksum. Returns the checksum and frame size.
///
/// Splitting it this way lets a writer encode the payload straight into its destination
/// (postcard `to_slice` into the mapped segment) with no intermediate buffer.
pub fn seal_frame(
    out: &mut [u8],
    payload_len: usize,
    meta: FrameMeta,
    seed: u32,
) -> Result<(u32, usize), EncodeError> {
    if payload_len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(EncodeError::PayloadTooLarge {
            payload_bytes: payload_len,
        });
    }
    let total = frame_bytes(payload_len);
    if out.len() < total {
        return Err(EncodeError::BufferTooSmall {
            needed_bytes: total,
        });
    }
    let frame = &mut out[..total];
    frame[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    frame[4] = FORMAT_VERSION;
    frame[5] = 0;
    frame[6..8].copy_from_slice(&meta.kind.to_le_bytes());
    frame[8..12].copy_from_slice(&(payload_len as u32).to_le_bytes());
    frame[12..16].copy_from_slice(&[0u8; 4]);
    frame[16..24].copy_from_slice(&meta.lsn.to_le_bytes());
    frame[24..32].copy_from_slice(&meta.synced_lsn.to_le_bytes());
    frame[32..36].copy_from_slice(&meta.prev_checksum.to_le_bytes());
    frame[36..40].copy_from_slice(&[0u8; 4]);
    frame[FRAME_HEADER_BYTES + payload_len..].fill(0);
    let checksum = frame_checksum(frame, seed);
    frame[12..16].copy_from_slice(&checksum.to_le_bytes());
    Ok((checksum, total))
}

/// Encodes a whole frame with `payload` into `out`.
pub fn encode_frame(
    out: &mut [u8],
    payload: &[u8],
    meta: FrameMeta,
    seed: u32,
) -> Result<(u32, usize), EncodeError> {
    if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
        return Err(EncodeError::PayloadTooLarge {
            payload_bytes: payload.len(),
        });
    }
    let total = frame_bytes(payload.len());
    if out.len() < total {
        return Err(EncodeError::BufferTooSmall {
            needed_bytes: total,
        });
    }
    out[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload.len()].copy_from_slice(payload);
    seal_frame(out, payload.len(), meta, seed)
}

/// Checksum of a whole frame (header, payload, padding), skipping the checksum field.
fn frame_checksum(frame: &[u8], seed: u32) -> u32 {
    let crc = crc32c_append(seed, &frame[0..12]);
    crc32c_append(crc, &frame[16..])
}

/// Decodes and validates the frame starting at `bytes[0]`.
pub fn decode_frame(bytes: &[u8], seed: u32) -> Result<Frame<'_>, FrameError> {
    let Some(header) = bytes.get(..FRAME_HEADER_BYTES) else {
        return Err(FrameError::Short);
    };
    if header.iter().all(|&b| b == 0) {
        return Err(FrameError::Zero);
    }
    if read_u32(header, 0) != FRAME_MAGIC {
        return Err(FrameError::BadMagic);
    }
    if header[4] != FORMAT_VERSION {
        return Err(FrameError::BadVersion);
    }
    let payload_len = read_u32(header, 8) as usize;
    if header[5] != 0 || read_u32(header, 36) != 0 || payload_len > RECORD_PAYLOAD_BYTES_MAX {
        return Err(FrameError::BadHeader);
    }
    let total = frame_bytes(payload_len);
    let Some(frame) = bytes.get(..total) else {
        return Err(FrameError::Short);
    };
    let checksum = read_u32(header, 12);
    if frame_checksum(frame, seed) != checksum {
        return Err(FrameError::BadChecksum);
    }
    let (lsn, synced_lsn) = (read_u64(header, 16), read_u64(header, 24));
    if lsn == 0 || lsn > LSN_MAX || synced_lsn >= lsn {
        // Checksum-valid yet impossible: never written by this log.
        return Err(FrameError::BadHeader);
    }
    Ok(Frame {
        kind: read_u16(header, 6),
        lsn,
        synced_lsn,
        prev_checksum: read_u32(header, 32),
        checksum,
        payload: &frame[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload_len],
        frame_bytes: total,
    })
}

fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Whether the 4 bytes at `at` are the frame magic (a cheap pre-check before a full decode).
pub(crate) fn has_frame_magic(bytes: &[u8], at: usize) -> bool {
    bytes
        .get(at..at + 4)
        .is_some_and(|m| m == FRAME_MAGIC.to_le_bytes())
}

#[cfg(test)]
mod tests;
