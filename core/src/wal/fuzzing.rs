//! Bodies of the WAL fuzz targets, as plain functions so a stable test can replay the corpus.
//!
//! Each asserts the properties the target checks: no panic on any bytes, only checksum-valid
//! frames come out, and scanning is idempotent.

use super::frame::{decode_frame, Frame, SEGMENT_HEADER_BYTES};
use super::record::Record;
use super::scan::{scan_segment, RecoveryMode};

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

/// The recovery scan on an arbitrary segment image, in every mode.
pub fn scan(data: &[u8]) {
    for mode in [
        RecoveryMode::Strict,
        RecoveryMode::Tail,
        RecoveryMode::Salvage,
    ] {
        let mut first: [(u64, usize); 64] = [(0, 0); 64];
        let mut count = 0usize;
        let mut last_lsn = 0u64;
        let result = scan_segment(data, mode, |offset, frame: Frame<'_>| {
            assert!(frame.lsn > last_lsn || count == 0, "LSNs increase");
            last_lsn = frame.lsn;
            assert!(offset >= SEGMENT_HEADER_BYTES && offset + frame.frame_bytes <= data.len());
            if count < first.len() {
                first[count] = (frame.lsn, offset);
            }
            count += 1;
            let _ = Record::decode(frame.kind, frame.payload);
        });
        let Ok(result) = result else { continue };
        assert_eq!(result.frames.frames as usize, count);
        assert!(result.frames.end_offset <= data.len().max(SEGMENT_HEADER_BYTES));
        // Idempotent: the same bytes give the same verdict.
        let mut again = 0usize;
        let second = scan_segment(data, mode, |offset, frame| {
            if again < first.len() {
                assert_eq!(first[again], (frame.lsn, offset));
            }
            again += 1;
        });
        assert_eq!(second.ok(), Some(result.clone()));
        assert_eq!(again, count);
        if mode == RecoveryMode::Strict && result.frames.fault.is_none() {
            // A clean log has nothing but zeros after its end.
            assert!(data[result.frames.end_offset..].iter().all(|&b| b == 0));
        }
    }
}

#[cfg(feature = "std")]
pub use self::ops::operations;

#[cfg(feature = "std")]
mod ops {
    use std::sync::Arc;

    use crate::wal::frame::Lsn;
    use crate::wal::log::{Wal, WalOptions};
    use crate::wal::reader::Reader;
    use crate::wal::scan::RecoveryMode;
    use crate::wal::sim::{FaultPlan, SimStore};
    use crate::wal::sync::SyncMethod;

    /// An operation sequence over the simulated store, with crashes: every acknowledged record
    /// must come back intact after each crash.
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
            ..WalOptions::default()
        };
        let mut store = SimStore::new(plan, seed);
        let mut acked: Vec<(Lsn, Vec<u8>)> = Vec::new();
        let Ok(mut wal) = Wal::open_with_store(Arc::new(store.clone()), options) else {
            return;
        };
        let mut pending: Vec<(Lsn, Vec<u8>)> = Vec::new();
        let mut crashes = 0u64;
        for op in bytes {
            match op % 4 {
                0 | 1 => {
                    let len = usize::from(op / 4) * 7 % 600;
                    let payload: Vec<u8> = (0..len).map(|i| (i as u8) ^ op).collect();
                    if let Ok(lsn) = wal.append_raw(8, &payload) {
                        pending.push((lsn, payload));
                    }
                }
                2 => {
                    if wal.sync_all().is_ok() {
                        acked.append(&mut pending);
                    } else {
                        pending.clear();
                    }
                }
                _ => {
                    wal.abandon();
                    crashes += 1;
                    store = store.crash_image(seed ^ crashes);
                    pending.clear();
                    wal = match Wal::open_with_store(Arc::new(store.clone()), options) {
                        Ok(wal) => wal,
                        Err(error) => panic!("recovery after crash failed: {error}"),
                    };
                    check(&store, &acked);
                }
            }
        }
    }

    fn check(store: &SimStore, acked: &[(Lsn, Vec<u8>)]) {
        let mut reader = match Reader::over_store(Arc::new(store.clone()), 1) {
            Ok(reader) => reader,
            Err(error) => panic!("a recovered log does not read back: {error}"),
        };
        let mut seen: Vec<(Lsn, Vec<u8>)> = Vec::new();
        loop {
            let n = reader
                .read_batch(256, &mut |frame| {
                    seen.push((frame.lsn, frame.payload.to_vec()))
                })
                .unwrap();
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
    }
}
