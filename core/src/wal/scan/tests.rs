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

#[test]
fn a_scan_resumed_at_a_frame_gives_the_full_scans_verdict_for_what_follows_it() {
    let (image, offsets) = segment(20, 0, SALT, 4096);
    let seed = salt_seed(SALT);
    let at = |n: usize| offsets[n - 1]; // offset of LSN n
    let prev_of = |n: usize| {
        let frame = decode_frame(&image[at(n)..], seed).unwrap();
        frame.prev_checksum
    };
    let resume = |n: usize| Resume {
        offset: at(n),
        lsn: n as Lsn,
        prev_checksum: prev_of(n),
    };
    // The caller proves the zero tail from the data's end, as the file layer does.
    let run_to = |image: &[u8], r: Resume, zero_from: usize| {
        let mut seen = vec![];
        let mut scanner = LogScanner::new(RecoveryMode::Tail, 1, 1).resuming_at(r);
        let verdict = scanner.segment_zero_from(1, image, zero_from, |_, f| seen.push(f.lsn));
        (seen, verdict)
    };
    let run = |image: &[u8], r: Resume| run_to(image, r, offsets[20]);
    // Intact: exactly the frames from LSN 12 on, the same end as the whole scan, no fault;
    // the bytes before the resume point are not read (damage there changes nothing).
    let mut damaged_before = image.clone();
    damaged_before[at(5) + 20] ^= 0xFF;
    for img in [&image, &damaged_before] {
        let (seen, verdict) = run(img, resume(12));
        assert_eq!(seen, (12..=20).collect::<Vec<_>>());
        let SegmentVerdict::Used { frames, .. } = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(frames.fault, None);
        assert_eq!(frames.end_offset, offsets[20]);
        assert_eq!(frames.next_lsn, 21);
    }
    // Damage after the resume point: the same fault the whole scan finds, at the same place.
    let mut damaged_after = image.clone();
    damaged_after[at(15) + 20] ^= 0xFF;
    let (seen, verdict) = run(&damaged_after, resume(12));
    assert_eq!(seen, vec![12, 13, 14]);
    let whole = scan_segment(&damaged_after, RecoveryMode::Tail, |_, _| {}).unwrap();
    let SegmentVerdict::Used { frames, .. } = verdict else {
        panic!("{verdict:?}")
    };
    assert_eq!(frames.fault, whole.frames.fault);
    assert_eq!(frames.end_offset, whole.frames.end_offset);
    // A resume point whose frame does not validate (wrong LSN or chain) is corruption at that
    // offset, never a torn tail that would cut the log there.
    // Zeros where the frame was said to be are no end of the log either.
    let zeros = Resume {
        offset: offsets[20] + 64,
        ..resume(12)
    };
    for (bad, zero_from) in [
        (
            Resume {
                lsn: 13,
                ..resume(12)
            },
            offsets[20],
        ),
        (
            Resume {
                prev_checksum: prev_of(12) ^ 1,
                ..resume(12)
            },
            offsets[20],
        ),
        (zeros, image.len()),
    ] {
        let (seen, verdict) = run_to(&image, bad, zero_from);
        assert!(seen.is_empty());
        let SegmentVerdict::Used { frames, .. } = verdict else {
            panic!("{verdict:?}")
        };
        let fault = frames.fault.expect("a fault");
        assert_eq!(
            (fault.kind, fault.offset),
            (FaultKind::Corruption, bad.offset)
        );
    }
    // A resume point that does not fit the segment (inside the header, unaligned, past the
    // data, an LSN before the segment's first) is ignored: the segment is read whole.
    for ignored in [
        Resume {
            offset: 8,
            ..resume(12)
        },
        Resume {
            offset: at(12) + 1,
            ..resume(12)
        },
        Resume {
            offset: offsets[20],
            ..resume(12)
        },
        Resume {
            lsn: 0,
            ..resume(12)
        },
    ] {
        let (seen, _) = run(&image, ignored);
        assert_eq!(seen, (1..=20).collect::<Vec<_>>(), "{ignored:?}");
    }
}
