//! Properties of the frame codec and the recovery scan over generated logs: whatever the
//! payloads, the scan returns exactly what was written; every single-byte flip is detected
//! and never returned; a cut anywhere recovers a prefix; arbitrary bytes never panic.

use proptest::prelude::*;

use vigil_runtime::wal::frame::{
    encode_frame, salt_seed, FrameMeta, SegmentHeader, SEGMENT_HEADER_BYTES,
};
use vigil_runtime::wal::scan::{scan_segment, FaultKind, RecoveryMode};

/// A segment image holding `payloads`, each written when all earlier frames were durable.
fn segment(payloads: &[Vec<u8>], salt: u64) -> (Vec<u8>, Vec<usize>) {
    let used: usize = payloads
        .iter()
        .map(|p| vigil_runtime::wal::frame::frame_bytes(p.len()))
        .sum();
    let mut image = vec![0u8; SEGMENT_HEADER_BYTES + used + 256];
    let header = SegmentHeader {
        segment_seq: 1,
        first_lsn: 1,
        salt,
        segment_bytes: image.len() as u64,
        log_id: 1,
    };
    let mut head = [0u8; SEGMENT_HEADER_BYTES];
    header.encode(&mut head);
    image[..SEGMENT_HEADER_BYTES].copy_from_slice(&head);
    let (mut pos, mut prev, mut offsets) = (SEGMENT_HEADER_BYTES, 0, vec![]);
    for (i, payload) in payloads.iter().enumerate() {
        let lsn = i as u64 + 1;
        let meta = FrameMeta {
            kind: 8,
            lsn,
            synced_lsn: lsn - 1,
            prev_checksum: prev,
        };
        let (crc, total) = encode_frame(&mut image[pos..], payload, meta, salt_seed(salt)).unwrap();
        offsets.push(pos);
        prev = crc;
        pos += total;
    }
    offsets.push(pos);
    (image, offsets)
}

fn scan(
    bytes: &[u8],
    mode: RecoveryMode,
) -> Option<(Vec<Vec<u8>>, vigil_runtime::wal::scan::SegmentScan)> {
    let mut out = Vec::new();
    let result = scan_segment(bytes, mode, |_, f| out.push(f.payload.to_vec())).ok()?;
    Some((out, result))
}

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_scan_returns_exactly_what_was_written(payloads in payloads(), salt in any::<u64>()) {
        let (image, offsets) = segment(&payloads, salt);
        let (got, result) = scan(&image, RecoveryMode::Strict).unwrap();
        prop_assert_eq!(got, payloads.clone());
        prop_assert_eq!(result.frames.fault, None);
        prop_assert_eq!(result.frames.end_offset, *offsets.last().unwrap());
    }

    #[test]
    fn any_single_byte_flip_is_detected_and_only_an_intact_prefix_returned(
        payloads in payloads(), salt in any::<u64>(), at in any::<prop::sample::Index>(), flip in 1u8..=255,
    ) {
        let (mut image, offsets) = segment(&payloads, salt);
        let used = *offsets.last().unwrap();
        let at = at.index(used);
        image[at] ^= flip;
        if let Some((got, result)) = scan(&image, RecoveryMode::Tail) {
            prop_assert!(result.frames.fault.is_some(), "flip at {} undetected", at);
            prop_assert!(got.len() < payloads.len());
            prop_assert_eq!(&got[..], &payloads[..got.len()]);
            let hit = offsets.iter().rposition(|&o| o <= at).unwrap();
            let fault = result.frames.fault.unwrap();
            let expected = if hit + 1 == payloads.len() { FaultKind::TornTail } else { FaultKind::Corruption };
            prop_assert_eq!(fault.kind, expected);
            // Salvage returns every other frame, still never the damaged one.
            let (salvaged, _) = scan(&image, RecoveryMode::Salvage).unwrap();
            let mut others = payloads.clone();
            others.remove(hit);
            prop_assert_eq!(salvaged, others);
        } else {
            prop_assert!(at < SEGMENT_HEADER_BYTES, "only a header flip refuses the segment");
        }
    }

    #[test]
    fn a_cut_anywhere_recovers_a_prefix(payloads in payloads(), salt in any::<u64>(), cut in any::<prop::sample::Index>()) {
        let (image, offsets) = segment(&payloads, salt);
        let cut = SEGMENT_HEADER_BYTES + cut.index(*offsets.last().unwrap() - SEGMENT_HEADER_BYTES + 1);
        let mut torn = image.clone();
        torn[cut..].fill(0);
        let (got, result) = scan(&torn, RecoveryMode::Tail).unwrap();
        let whole = offsets.iter().filter(|&&o| o <= cut).count() - 1;
        prop_assert!(got.len() >= whole);
        prop_assert_eq!(&got[..], &payloads[..got.len()]);
        if let Some(fault) = result.frames.fault {
            prop_assert_eq!(fault.kind, FaultKind::TornTail);
            prop_assert!(RecoveryMode::Tail.accepts(fault.kind));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_scan_the_same_twice(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        vigil_runtime::fuzzing::wal::scan(&bytes);
        vigil_runtime::fuzzing::wal::frame_decode(&bytes);
    }

    #[test]
    fn damaged_valid_segments_never_panic_and_scan_the_same_twice(
        payloads in payloads(), salt in any::<u64>(), damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
    ) {
        let (mut image, _) = segment(&payloads, salt);
        let len = image.len();
        for (at, value) in damage {
            image[at.index(len)] = value;
        }
        vigil_runtime::fuzzing::wal::scan(&image);
    }
}
