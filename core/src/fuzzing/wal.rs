//! Bodies of the WAL fuzz targets, as plain functions so a stable test can replay the corpus.
//!
//! Each asserts the properties the target checks: no panic on any bytes, only checksum-valid
//! frames come out, and scanning is idempotent.

use crate::wal::frame::{decode_frame, Frame, Lsn, SEGMENT_HEADER_BYTES};
use crate::wal::record::Record;
use crate::wal::scan::{Fault, FaultKind, LogScanner, RecoveryMode, Resume, SegmentVerdict};

/// Frame decode on arbitrary bytes: a frame that validates decodes the same twice, and its
/// record decode never panics.
pub fn frame_decode(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let seed = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let bytes = &data[4..];
    if let Ok(frame) = decode_frame(bytes, seed) {
        assert!(frame.frame_bytes <= bytes.len());
        assert_eq!(decode_frame(bytes, seed), Ok(frame));
        let _ = Record::decode(frame.kind, frame.payload);
    }
}

/// Most segments one `scan` input is split into.
const SCAN_SEGMENTS_MAX: usize = 4;

/// The log scanner ([`LogScanner`], what every open, verify and reader runs) over an arbitrary
/// log: the first byte says into how many segment images (1 to 4) the rest is split; the log's
/// identity is the one the first image claims. In every mode: no panic, accepted frames come in
/// increasing LSN order (dense unless salvage skipped), each inside its image, and scanning is
/// idempotent.
pub fn scan(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count) % SCAN_SEGMENTS_MAX + 1;
    let size = rest.len() / count;
    let mut images: [&[u8]; SCAN_SEGMENTS_MAX] = [&[]; SCAN_SEGMENTS_MAX];
    for (i, image) in images.iter_mut().take(count).enumerate() {
        *image = &rest[i * size..(i + 1) * size];
    }
    let images = &images[..count];
    let log_id = images[0]
        .get(40..56)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u128::from_le_bytes);
    for mode in [
        RecoveryMode::Strict,
        RecoveryMode::Tail,
        RecoveryMode::Salvage,
    ] {
        let first = scan_log_images(images, mode, log_id, false);
        assert_eq!(
            first,
            scan_log_images(images, mode, log_id, false),
            "idempotent"
        );
        // Opening proves where each file's zero tail starts and scans only up to there: the
        // same verdicts as reading every byte.
        assert_eq!(
            first,
            scan_log_images(images, mode, log_id, true),
            "a known zero tail changes nothing"
        );
        if mode != RecoveryMode::Salvage {
            resumed_matches_whole(images[0], mode, log_id, count);
        }
    }
}

/// A scan resumed at a frame the whole scan of the segment accepted (as a one-shot open does
/// at a hinted checkpoint) visits exactly the frames the whole scan visits from there, and
/// ends with the same verdict: the same end, next LSN and fault. (No allocation: the frames
/// are compared by count and a digest of their places, LSNs and chain.)
fn resumed_matches_whole(image: &[u8], mode: RecoveryMode, log_id: u128, pick: usize) {
    let zero_from = image.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1);
    let whole_scan = |visit: &mut dyn FnMut(usize, Frame<'_>)| {
        LogScanner::new(mode, log_id, 1).segment_zero_from(1, image, zero_from, visit)
    };
    let mut count = 0usize;
    let whole = whole_scan(&mut |_, _| count += 1);
    let SegmentVerdict::Used { frames: whole, .. } = whole else {
        return;
    };
    if count == 0 {
        return;
    }
    let k = pick % count;
    let digest = |h: u64, offset: usize, f: &Frame<'_>| {
        h.wrapping_mul(0x100_0000_01b3)
            ^ (offset as u64) << 24
            ^ f.lsn
            ^ u64::from(f.prev_checksum) << 32
    };
    let (mut i, mut resume, mut want) = (0usize, None, (0usize, 0u64));
    whole_scan(&mut |o, f| {
        if i == k {
            resume = Some(Resume {
                offset: o,
                lsn: f.lsn,
                prev_checksum: f.prev_checksum,
            });
        }
        if i >= k {
            want = (want.0 + 1, digest(want.1, o, &f));
        }
        i += 1;
    });
    let Some(resume) = resume else {
        return;
    };
    let mut got = (0usize, 0u64);
    let resumed = LogScanner::new(mode, log_id, 1)
        .resuming_at(resume)
        .segment_zero_from(1, image, zero_from, |o, f| {
            got = (got.0 + 1, digest(got.1, o, &f));
        });
    assert_eq!(got, want, "the frames from the resume point");
    let SegmentVerdict::Used { frames, .. } = resumed else {
        panic!("a resumed scan of a used segment: {resumed:?}");
    };
    assert_eq!(
        (frames.end_offset, frames.next_lsn, frames.fault),
        (whole.end_offset, whole.next_lsn, whole.fault),
        "the verdict from the resume point"
    );
}

/// One scan of `images` as segments 1, 2, ...; returns (frames, last LSN, verdicts' digest).
/// With `zero_tails`, each image is scanned as one whose bytes after its last non-zero byte
/// are known to be zero, as opening a log file does.
fn scan_log_images(
    images: &[&[u8]],
    mode: RecoveryMode,
    log_id: u128,
    zero_tails: bool,
) -> (u64, Lsn, u64) {
    let mut scanner = LogScanner::new(mode, log_id, 1);
    let (mut frames, mut last_lsn, mut digest) = (0u64, 0 as Lsn, 0u64);
    for (i, image) in images.iter().enumerate() {
        let seq = i as u64 + 1;
        let (was_stopped, frames_before) = (scanner.stopped(), frames);
        let zero_from = if zero_tails {
            image.iter().rposition(|&b| b != 0).map_or(0, |at| at + 1)
        } else {
            image.len()
        };
        let verdict =
            scanner.segment_zero_from(seq, image, zero_from, |offset, frame: Frame<'_>| {
                if frames > 0 {
                    assert!(frame.lsn > last_lsn, "LSNs increase");
                    if mode != RecoveryMode::Salvage {
                        assert_eq!(frame.lsn, last_lsn + 1, "LSNs are dense");
                    }
                }
                assert!(
                    offset >= SEGMENT_HEADER_BYTES && offset + frame.frame_bytes <= image.len()
                );
                let _ = Record::decode(frame.kind, frame.payload);
                last_lsn = frame.lsn;
                frames += 1;
            });
        digest = digest.wrapping_mul(31).wrapping_add(match &verdict {
            SegmentVerdict::Used { frames, fault, .. } => {
                assert!(frames.end_offset <= image.len().max(SEGMENT_HEADER_BYTES));
                if mode == RecoveryMode::Strict && frames.fault.is_none() && fault.is_none() {
                    // A clean segment has nothing but zeros after its end.
                    assert!(image[frames.end_offset..].iter().all(|&b| b == 0));
                }
                let fault_digest = frames.fault.or(*fault).map_or(0, |f| fault_digest(&f));
                frames.frames ^ (frames.end_offset as u64) << 20 ^ fault_digest.rotate_left(7)
            }
            SegmentVerdict::Unused => 1,
            SegmentVerdict::PastEnd { probe } => {
                2 ^ u64::from(probe.durable_after) << 1 ^ probe.valid_frames << 8
            }
            SegmentVerdict::Damaged(fault) => 3 ^ fault_digest(fault),
        });
        if was_stopped {
            assert_eq!(frames, frames_before, "nothing is accepted past a stop");
            assert!(
                !matches!(verdict, SegmentVerdict::Used { .. }),
                "{verdict:?}"
            );
        }
    }
    (frames, last_lsn, digest)
}

/// What a fault says, folded into a digest: its kind, place and expected LSN.
fn fault_digest(fault: &Fault) -> u64 {
    let kind = match fault.kind {
        FaultKind::TornTail => 1u64,
        FaultKind::Corruption => 2,
    };
    kind ^ (fault.offset as u64) << 2 ^ fault.expected_lsn << 34
}

#[cfg(feature = "std")]
pub use self::ops::operations;

#[cfg(feature = "std")]
mod ops {
    use std::sync::Arc;

    use crate::wal::frame::Lsn;
    use crate::wal::log::{Wal, WalError, WalOptions};
    use crate::wal::reader::Reader;
    use crate::wal::scan::RecoveryMode;
    use crate::wal::sim::{FaultPlan, SimStore, SECTOR_BYTES};
    use crate::wal::storage::SegmentStore;
    use crate::wal::sync::SyncMethod;

    /// An operation sequence over the simulated store, through the real open and recovery
    /// path: appends, syncs, crashes (torn sectors), and damage to a closed log (bit flips
    /// anywhere, zeroed sectors, truncation, a lost, swapped or foreign segment). After a crash
    /// every acknowledged record comes back intact; after damage the open either gives back
    /// every acknowledged record intact or refuses, naming corruption, and changes nothing.
    /// Half the inputs (by the seed) open from the newest checkpoint
    /// (`WalOptions::open_from_checkpoint`, every segment starting with one): such an open
    /// does not read the frames of older segments, so damage there may pass it, but then a
    /// reader of the whole log fails loudly, and nothing acknowledged reads back altered.
    // Longer than 70 lines on purpose: one operation interpreter over the fuzz input, one arm per
    // operation, with the model of acknowledged records they all update.
    pub fn operations(data: &[u8]) {
        let mut bytes = data.iter().copied();
        let seed = u64::from(bytes.next().unwrap_or(0)) << 8 | u64::from(bytes.next().unwrap_or(0));
        let eio = bytes
            .next()
            .filter(|b| b % 4 == 0)
            .map(|b| u64::from(b / 4 % 16) + 2);
        let plan = FaultPlan {
            crash_at_sync: None,
            eio_at_sync: eio,
            enospc_from_create: None,
        };
        let options = WalOptions {
            segment_bytes: 4096,
            sync_method: SyncMethod::Fdatasync,
            recovery_mode: RecoveryMode::Tail,
            open_from_checkpoint: seed & 1 == 1,
            ..WalOptions::default()
        };
        let mut store = SimStore::new(plan, seed);
        let mut acked: Vec<(Lsn, Vec<u8>)> = Vec::new();
        let Ok(mut wal) = open(&store, options) else {
            return;
        };
        let mut pending: Vec<(Lsn, Vec<u8>)> = Vec::new();
        let mut crashes = 0u64;
        while let Some(op) = bytes.next() {
            match op % 8 {
                0..=3 => {
                    let len = usize::from(op / 8) * 13 % 700;
                    let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ op).collect();
                    if let Ok(lsn) = wal.append_raw(8, &payload) {
                        pending.push((lsn, payload));
                    }
                }
                4 => {
                    if wal.sync_all().is_ok() {
                        acked.append(&mut pending);
                    } else {
                        pending.clear();
                    }
                }
                5 => {
                    wal.abandon();
                    crashes += 1;
                    store = store.crash_image(seed ^ crashes);
                    pending.clear();
                    wal = reopen_after_crash(&store, options, &acked);
                }
                _ => {
                    if wal.close().is_ok() {
                        acked.append(&mut pending);
                    } else {
                        // A failed sync: what the disk holds is what a crash leaves.
                        crashes += 1;
                        store = store.crash_image(seed ^ crashes);
                        pending.clear();
                        wal = reopen_after_crash(&store, options, &acked);
                        continue;
                    }
                    let what = bytes.next().unwrap_or(0);
                    let at = usize::from(bytes.next().unwrap_or(0)) << 4
                        | usize::from(bytes.next().unwrap_or(0) & 0x0F);
                    damage(&store, what, at, seed);
                    let before = store.durable_images();
                    match open(&store, options) {
                        Ok(reopened) => {
                            if !check(&store, &acked, options.open_from_checkpoint) {
                                return; // Damage the open did not read, found by the reader.
                            }
                            wal = reopened;
                        }
                        Err(WalError::Corrupt(_)) => {
                            assert!(
                                store.durable_images() == before,
                                "an open that refuses a damaged log changes nothing"
                            );
                            assert!(
                                Reader::over_store(Arc::new(store.clone()), 1).is_err(),
                                "readers refuse what the writer refuses"
                            );
                            return;
                        }
                        // The planned EIO can strike the open's own syncs: a loud failure.
                        Err(WalError::Io(_)) if eio.is_some() => return,
                        Err(error) => {
                            panic!("open after damage failed, not as corruption: {error}")
                        }
                    }
                }
            }
        }
    }

    /// Opens the log in `store`; every new segment starts with an index checkpoint, and a
    /// clean close ends the log with one (which an open from the last checkpoint starts at).
    fn open(store: &SimStore, options: WalOptions) -> Result<Wal, WalError> {
        let wal = Wal::open_with_store(Arc::new(store.clone()), options)?;
        wal.set_prologue(Box::new(|_| Some(b"checkpoint".to_vec())));
        wal.set_closing_checkpoint(Box::new(|_| Some(b"closing checkpoint".to_vec())));
        Ok(wal)
    }

    fn reopen_after_crash(store: &SimStore, options: WalOptions, acked: &[(Lsn, Vec<u8>)]) -> Wal {
        match open(store, options) {
            Ok(wal) => {
                assert!(check(store, acked, false), "a crash is not damage");
                wal
            }
            Err(error) => panic!("recovery after crash failed: {error}"),
        }
    }

    /// Damages a closed log's files: `what` picks the kind and the segment, `at` the place.
    fn damage(store: &SimStore, what: u8, at: usize, seed: u64) {
        let images = store.durable_images();
        if images.is_empty() {
            return;
        }
        let pick = usize::from(what / 8) % images.len();
        let (seq, mut image) = images[pick].clone();
        match what % 8 {
            0 | 1 => {
                let at = at % image.len().max(1);
                if let Some(byte) = image.get_mut(at) {
                    *byte ^= 1 << (what % 8);
                }
                store.put_image(seq, image);
            }
            2 => {
                let start = (at % image.len().max(1)) & !(SECTOR_BYTES - 1);
                let end = (start + SECTOR_BYTES).min(image.len());
                image[start..end].fill(0);
                store.put_image(seq, image);
            }
            3 => {
                image.truncate(at % image.len().max(1));
                store.put_image(seq, image);
            }
            4 => {
                // Retention records the first segment it keeps, so any loss is a gap.
                let _ = store.remove(seq);
            }
            5 => {
                let other = images[(pick + 1) % images.len()].clone();
                store.put_image(seq, other.1);
                store.put_image(other.0, image);
            }
            _ => {
                if let Some(foreign) = foreign_segment(seed, image.len()) {
                    store.put_image(seq, foreign);
                }
            }
        }
    }

    /// Segment 1 of another log, of `bytes` bytes.
    fn foreign_segment(seed: u64, bytes: usize) -> Option<Vec<u8>> {
        let other = SimStore::new(FaultPlan::default(), seed ^ 0xF0F0);
        let options = WalOptions {
            segment_bytes: bytes as u64,
            sync_method: SyncMethod::Fdatasync,
            ..WalOptions::default()
        };
        let wal = Wal::open_with_store(Arc::new(other.clone()), options).ok()?;
        for n in 0..3u8 {
            wal.append_raw(8, &[n; 24]).ok()?;
        }
        wal.close().ok()?;
        other.durable_image(1)
    }

    /// Every acknowledged record reads back intact from LSN 1. When `unread_damage` (an open
    /// that did not read every segment), a reader may instead fail, loudly, with corruption:
    /// false then.
    fn check(store: &SimStore, acked: &[(Lsn, Vec<u8>)], unread_damage: bool) -> bool {
        let loud = |error: WalError| {
            assert!(
                unread_damage && matches!(error, WalError::Corrupt(_)),
                "a recovered log does not read back: {error}"
            );
            false
        };
        let mut reader = match Reader::over_store(Arc::new(store.clone()), 1) {
            Ok(reader) => reader,
            Err(error) => return loud(error),
        };
        let mut seen: Vec<(Lsn, Vec<u8>)> = Vec::new();
        loop {
            let n = match reader.read_batch(256, &mut |frame| {
                seen.push((frame.lsn, frame.payload.to_vec()))
            }) {
                Ok(n) => n,
                Err(error) => return loud(error),
            };
            if n == 0 {
                break;
            }
        }
        for (lsn, payload) in acked {
            let found = seen.iter().find(|(l, _)| l == lsn);
            assert_eq!(
                found.map(|f| &f.1),
                Some(payload),
                "acknowledged LSN {lsn} lost or altered"
            );
        }
        true
    }
}
