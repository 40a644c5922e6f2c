use super::*;

fn meta(lsn: Lsn) -> FrameMeta {
    FrameMeta {
        kind: 8,
        lsn,
        synced_lsn: lsn - 1,
        prev_checksum: 0xABCD,
    }
}

#[test]
fn frame_round_trips_with_padding_and_alignment() {
    let seed = salt_seed(42);
    for len in 0..40 {
        let payload: [u8; 40] = core::array::from_fn(|i| i as u8 ^ 0x5A);
        let mut buf = [0xEEu8; 128];
        let (crc, total) = encode_frame(&mut buf, &payload[..len], meta(7), seed).unwrap();
        assert_eq!(total % FRAME_ALIGN_BYTES, 0);
        assert_eq!(total, frame_bytes(len));
        let frame = decode_frame(&buf, seed).unwrap();
        assert_eq!(frame.payload, &payload[..len]);
        assert_eq!((frame.lsn, frame.synced_lsn, frame.kind), (7, 6, 8));
        assert_eq!(
            (frame.checksum, frame.prev_checksum, frame.frame_bytes),
            (crc, 0xABCD, total)
        );
    }
}

#[test]
fn every_single_byte_flip_of_a_frame_is_detected() {
    let seed = salt_seed(1);
    let mut buf = [0u8; 96];
    let (_, total) = encode_frame(&mut buf, b"hello, write-ahead log", meta(3), seed).unwrap();
    for at in 0..total {
        for bit in 0..8 {
            let mut damaged = buf;
            damaged[at] ^= 1 << bit;
            assert!(
                decode_frame(&damaged[..total], seed).is_err(),
                "flip at {at} bit {bit}"
            );
        }
    }
}

#[test]
fn a_frame_under_another_salt_does_not_validate() {
    let mut buf = [0u8; 64];
    encode_frame(&mut buf, b"stale", meta(1), salt_seed(1)).unwrap();
    assert_eq!(
        decode_frame(&buf, salt_seed(2)),
        Err(FrameError::BadChecksum)
    );
}

#[test]
fn oversized_payloads_and_lengths_are_refused() {
    let mut buf = [0u8; 64];
    let too_big = RECORD_PAYLOAD_BYTES_MAX + 1;
    assert_eq!(
        seal_frame(&mut buf, too_big, meta(1), 0),
        Err(EncodeError::PayloadTooLarge {
            payload_bytes: too_big
        })
    );
    assert_eq!(
        encode_frame(&mut buf, &[0u8; 30], meta(1), 0),
        Err(EncodeError::BufferTooSmall { needed_bytes: 72 })
    );
    encode_frame(&mut buf, b"x", meta(1), 0).unwrap();
    buf[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(decode_frame(&buf, 0), Err(FrameError::BadHeader));
}

#[test]
fn checksum_valid_frames_with_impossible_lsns_are_refused() {
    let seed = salt_seed(5);
    let mut buf = [0u8; 64];
    for (lsn, synced_lsn) in [(0, 0), (u64::MAX, 0), (LSN_MAX + 1, 1), (9, 9), (9, 10)] {
        let meta = FrameMeta {
            kind: 8,
            lsn,
            synced_lsn,
            prev_checksum: 0,
        };
        encode_frame(&mut buf, b"x", meta, seed).unwrap();
        assert_eq!(
            decode_frame(&buf, seed),
            Err(FrameError::BadHeader),
            "lsn {lsn}"
        );
    }
    let header = SegmentHeader {
        segment_seq: 1,
        first_lsn: 0,
        salt: 1,
        segment_bytes: 4096,
        log_id: 7,
    };
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    header.encode(&mut bytes);
    assert_eq!(
        SegmentHeader::decode(&bytes),
        Err(SegmentHeaderError::Invalid)
    );
}

#[test]
fn segment_header_round_trips_and_rejects_damage() {
    let header = SegmentHeader {
        segment_seq: 3,
        first_lsn: 99,
        salt: 0xDEAD_BEEF,
        segment_bytes: 1 << 20,
        log_id: 0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210,
    };
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    header.encode(&mut bytes);
    assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    assert_eq!(
        SegmentHeader::decode(&[0u8; 64]),
        Err(SegmentHeaderError::Unused)
    );
    assert_eq!(
        SegmentHeader::decode(&bytes[..10]),
        Err(SegmentHeaderError::Short)
    );
    for at in 0..SEGMENT_HEADER_BYTES {
        let mut damaged = bytes;
        damaged[at] ^= 0x10;
        assert!(SegmentHeader::decode(&damaged).is_err(), "flip at {at}");
    }
}

/// The on-disk format is forever: these bytes must decode as they did when written.
#[test]
fn segment_header_golden_bytes() {
    let header = SegmentHeader {
        segment_seq: 2,
        first_lsn: 17,
        salt: 0x1122_3344_5566_7788,
        segment_bytes: 65536,
        log_id: 0x0102_0304_0506_0708_090A_0B0C_0D0E_0F10,
    };
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    header.encode(&mut bytes);
    let golden: [u8; SEGMENT_HEADER_BYTES] = [
        0x56,
        0x53,
        0x45,
        0x47,
        0x02,
        0x00,
        0x00,
        0x00, // "VSEG", version 2, reserved
        0x02,
        0,
        0,
        0,
        0,
        0,
        0,
        0, // segment_seq
        0x11,
        0,
        0,
        0,
        0,
        0,
        0,
        0, // first_lsn
        0x88,
        0x77,
        0x66,
        0x55,
        0x44,
        0x33,
        0x22,
        0x11, // salt
        0x00,
        0x00,
        0x01,
        0,
        0,
        0,
        0,
        0, // segment_bytes
        0x10,
        0x0F,
        0x0E,
        0x0D,
        0x0C,
        0x0B,
        0x0A,
        0x09, // log_id, low half
        0x08,
        0x07,
        0x06,
        0x05,
        0x04,
        0x03,
        0x02,
        0x01, // log_id, high half
        0,
        0,
        0,
        0, // reserved
        GOLDEN_HEADER_CRC[0],
        GOLDEN_HEADER_CRC[1],
        GOLDEN_HEADER_CRC[2],
        GOLDEN_HEADER_CRC[3],
    ];
    assert_eq!(bytes, golden);
    assert_eq!(SegmentHeader::decode(&golden), Ok(header));
}

/// CRC32C of the golden header's first 60 bytes.
const GOLDEN_HEADER_CRC: [u8; 4] = [50, 62, 166, 97];

#[test]
fn frame_golden_bytes() {
    let mut buf = [0u8; 56];
    let meta = FrameMeta {
        kind: 2,
        lsn: 5,
        synced_lsn: 4,
        prev_checksum: 0xA1B2_C3D4,
    };
    let (_, total) = encode_frame(&mut buf, b"golden", meta, salt_seed(9)).unwrap();
    assert_eq!(total, 48);
    let golden: [u8; 48] = GOLDEN_FRAME;
    assert_eq!(buf[..48], golden);
    let frame = decode_frame(&golden, salt_seed(9)).unwrap();
    assert_eq!(
        (frame.kind, frame.lsn, frame.payload),
        (2, 5, &b"golden"[..])
    );
}

/// A frame of kind 2, LSN 5, synced LSN 4, payload "golden", under salt 9.
const GOLDEN_FRAME: [u8; 48] = [
    0x56, 0x57, 0x41, 0x4C, 1, 0, 2, 0, // "VWAL", version 1, flags, kind 2
    6, 0, 0, 0, 44, 122, 247, 120, // payload_len, checksum
    5, 0, 0, 0, 0, 0, 0, 0, // lsn
    4, 0, 0, 0, 0, 0, 0, 0, // synced_lsn
    0xD4, 0xC3, 0xB2, 0xA1, 0, 0, 0, 0, // prev_checksum, reserved
    b'g', b'o', b'l', b'd', b'e', b'n', 0, 0, // payload, padding
];

#[test]
fn a_header_of_another_format_version_is_refused_by_name() {
    let header = SegmentHeader {
        segment_seq: 1,
        first_lsn: 1,
        salt: 3,
        segment_bytes: 4096,
        log_id: 1,
    };
    let mut bytes = [0u8; SEGMENT_HEADER_BYTES];
    header.encode(&mut bytes);
    bytes[4] = 1;
    let crc = crc32c(&bytes[0..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        SegmentHeader::decode(&bytes),
        Err(SegmentHeaderError::UnsupportedVersion(1))
    );
}
