//! The write-ahead log end to end on real files: append, group commit, reopen, rotation,
//! retention, readers, torn-tail recovery, corruption refusal, poisoning, the writer lock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vigil_runtime::wal::frame::{Frame, Lsn, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_HEADER_BYTES};
use vigil_runtime::wal::log::{Retention, Wal, WalError, WalOptions};
use vigil_runtime::wal::reader::Reader;
use vigil_runtime::wal::record::{kind, Decoded, JobInterrupted, Record};
use vigil_runtime::wal::scan::{FaultKind, RecoveryMode};
use vigil_runtime::wal::sim::{FaultPlan, SimStore};
use vigil_runtime::wal::storage::{segment_file_name, SegmentStore};
use vigil_runtime::wal::sync::SyncMethod;

fn options(segment_bytes: u64, sync_method: SyncMethod) -> WalOptions {
    WalOptions {
        segment_bytes,
        sync_method,
        recovery_mode: RecoveryMode::Tail,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        zero_fill_segments: false,
        open_from_checkpoint: false,
    }
}

fn payload(lsn_hint: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 ^ lsn_hint.wrapping_mul(31)) as u8)
        .collect()
}

/// Every frame in the log of `dir`, read as a tool would (no lock).
fn read_all(dir: &Path) -> Vec<(Lsn, u16, Vec<u8>)> {
    let mut reader = Reader::open_dir(dir, 1).unwrap();
    let mut out = Vec::new();
    let mut keep = |f: Frame<'_>| {
        if f.kind != kind::CHECKPOINT {
            out.push((f.lsn, f.kind, f.payload.to_vec()))
        }
    };
    while reader.read_batch(1000, &mut keep).unwrap() > 0 {}
    out
}

#[test]
fn appended_and_synced_records_come_back_intact_after_reopen_with_either_sync_method() {
    for method in [SyncMethod::Fdatasync, SyncMethod::Auto] {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        {
            let wal = Wal::open(dir.path(), options(64 * 1024, method)).unwrap();
            for i in 0..300u64 {
                let body = payload(i, (i as usize * 13) % 700);
                let lsn = wal.append_raw(kind::USER, &body).unwrap();
                assert_eq!(lsn, i + 1);
                expected.push((lsn, kind::USER, body));
            }
            let record = Record::JobInterrupted(JobInterrupted {
                job_id: 9,
                unix_ms: 1,
                reason: "restart",
            });
            let lsn = wal.append_durable(&record).unwrap();
            let mut buf = vec![0u8; 256];
            let len = record.encode_into(&mut buf).unwrap();
            expected.push((lsn, kind::JOB_INTERRUPTED, buf[..len].to_vec()));
            assert_eq!(wal.durable_lsn(), 301);
        }
        let wal = Wal::open(dir.path(), options(64 * 1024, method)).unwrap();
        assert_eq!(wal.recovery().scan.fault, None, "{method:?}");
        assert_eq!(
            wal.last_lsn(),
            302,
            "301 records and the closing checkpoint"
        );
        drop(wal);
        let got = read_all(dir.path());
        assert_eq!(got, expected, "{method:?}");
        let last = &got[300];
        let Ok(Decoded::Record(Record::JobInterrupted(r))) = Record::decode(last.1, &last.2) else {
            panic!("decode")
        };
        assert_eq!((r.job_id, r.reason), (9, "restart"));
    }
}

#[test]
fn records_span_rotated_segments_with_dense_lsns() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(8192, SyncMethod::Fdatasync)).unwrap();
    for i in 0..2000u64 {
        wal.append_raw(kind::USER, &payload(i, 100)).unwrap();
        if i % 97 == 0 {
            wal.sync_all().unwrap();
        }
    }
    wal.sync_all().unwrap();
    assert!(wal.stats().segments > 20, "rotated: {:?}", wal.stats());
    drop(wal);
    let got = read_all(dir.path());
    assert_eq!(got.len(), 2000);
    for (i, (lsn, _, body)) in got.iter().enumerate() {
        assert_eq!((*lsn, body), (i as u64 + 1, &payload(i as u64, 100)));
    }
}

#[test]
fn in_process_readers_see_only_durable_records_and_follow_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(16 * 1024, SyncMethod::Auto)).unwrap();
    let mut reader = wal.reader(1);
    let first = wal.append_raw(kind::USER, b"one").unwrap();
    let mut seen = Vec::new();
    assert_eq!(
        reader.read_batch(10, &mut |f| seen.push(f.lsn)).unwrap(),
        0,
        "not durable yet"
    );
    wal.sync(first).unwrap();
    assert_eq!(reader.read_batch(10, &mut |f| seen.push(f.lsn)).unwrap(), 1);
    let writer = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            for i in 0..500u64 {
                let lsn = wal.append(&Record::User(&payload(i, 200))).unwrap();
                if i % 5 == 0 || i == 499 {
                    wal.sync(lsn).unwrap();
                }
            }
        })
    };
    while seen.len() < 501 {
        reader.wait(Duration::from_millis(50));
        reader.read_batch(7, &mut |f| seen.push(f.lsn)).unwrap();
    }
    writer.join().unwrap();
    assert_eq!(seen, (1..=501).collect::<Vec<_>>());
}

#[test]
fn retention_bounds_the_segment_count_but_keeps_what_a_reader_needs() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(8192, SyncMethod::Fdatasync);
    opts.retention = Retention {
        bytes_max: None,
        segments_max: Some(4),
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    let mut reader = wal.reader(1);
    for i in 0..1500u64 {
        let lsn = wal.append(&Record::User(&payload(i, 100))).unwrap();
        if i % 25 == 0 {
            wal.sync(lsn).unwrap();
        }
    }
    wal.sync_all().unwrap();
    // The reader at LSN 1 holds everything back.
    let mut seen = Vec::new();
    while reader.read_batch(100, &mut |f| seen.push(f.lsn)).unwrap() > 0 {}
    assert_eq!(seen, (1..=1500).collect::<Vec<_>>());
    drop(reader);
    for i in 0..1500u64 {
        let lsn = wal.append(&Record::User(&payload(i, 100))).unwrap();
        if i % 25 == 0 {
            wal.sync(lsn).unwrap();
        }
    }
    wal.sync_all().unwrap();
    let count = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count();
    assert!(
        count <= 5,
        "retention keeps at most 4 segments plus the pre-created one, found {count}"
    );
    let stats = wal.stats();
    assert!(stats.first_lsn > 1000, "old segments retired: {stats:?}");
    let err = Reader::open_dir(dir.path(), 1)
        .unwrap()
        .read_batch(1, &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(err, WalError::LsnNotRetained { lsn: 1, .. }),
        "{err}"
    );
}

#[test]
fn appending_after_recovering_a_torn_tail_works_and_the_old_tail_never_reappears() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(64 * 1024, SyncMethod::Fdatasync);
    {
        let wal = Wal::open(dir.path(), opts).unwrap();
        for i in 0..50u64 {
            wal.append_raw(kind::USER, &payload(i, 64)).unwrap();
        }
        wal.sync_all().unwrap();
        for i in 50..60u64 {
            wal.append_raw(kind::USER, &payload(i, 64)).unwrap();
        }
        wal.abandon(); // The process dies here: LSNs 51..=60 were never synced.
    }
    // Tear LSN 51: part of its bytes never reached the disk.
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let frame = SEGMENT_HEADER_BYTES + 50 * (40 + 64);
    bytes[frame + 20..frame + 80].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    let strict = Wal::open(
        dir.path(),
        WalOptions {
            recovery_mode: RecoveryMode::Strict,
            ..opts
        },
    )
    .unwrap_err();
    assert!(
        matches!(&strict, WalError::Corrupt(f) if f.kind == FaultKind::TornTail),
        "{strict}"
    );
    let wal = Wal::open(dir.path(), opts).unwrap();
    let report = wal.recovery();
    let fault = report.scan.fault.clone().unwrap();
    assert_eq!(
        (fault.kind, fault.expected_lsn, fault.offset),
        (FaultKind::TornTail, 51, frame)
    );
    assert_eq!(
        report.scan.dropped_unsynced_frames, 9,
        "LSNs 52..=60 were never synced"
    );
    assert!(report.truncated_bytes > 0);
    assert_eq!(wal.last_lsn(), 50);
    for _ in 0..5 {
        wal.append_raw(kind::USER, b"new").unwrap();
    }
    wal.sync_all().unwrap();
    drop(wal);
    let again = Wal::open(
        dir.path(),
        WalOptions {
            recovery_mode: RecoveryMode::Strict,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(again.recovery().scan.fault, None, "recovered log is clean");
    drop(again);
    let got = read_all(dir.path());
    assert_eq!(got.len(), 55);
    assert!(got[..50]
        .iter()
        .enumerate()
        .all(|(i, r)| r.2 == payload(i as u64, 64)));
    assert!(
        got[50..].iter().all(|r| r.2 == b"new"),
        "the old tail never reappears"
    );
}

#[test]
fn corruption_in_the_middle_is_refused_with_its_place_and_salvage_returns_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(64 * 1024, SyncMethod::Fdatasync);
    {
        let wal = Wal::open(dir.path(), opts).unwrap();
        for i in 0..40u64 {
            wal.append_durable(&Record::User(&payload(i, 64))).unwrap();
        }
    }
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let frame = SEGMENT_HEADER_BYTES + 9 * (40 + 64);
    bytes[frame + 50] ^= 0x04;
    std::fs::write(&path, &bytes).unwrap();

    let err = Wal::open(dir.path(), opts).unwrap_err();
    let WalError::Corrupt(fault) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        (fault.kind, fault.offset, fault.expected_lsn),
        (FaultKind::Corruption, frame, 10)
    );
    let message = err.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("LSN 10"),
        "{message}"
    );

    // Salvage reads past the damage; it never opens a writer on a damaged log.
    let salvage = WalOptions {
        recovery_mode: RecoveryMode::Salvage,
        ..opts
    };
    let refused = Wal::open(dir.path(), salvage).unwrap_err();
    assert!(matches!(refused, WalError::BadOptions(_)), "{refused}");
    let store = vigil_runtime::wal::storage::FsStore::open_reader(dir.path()).unwrap();
    let mut salvaged = Vec::new();
    let scan = vigil_runtime::wal::log::scan_log(&store, RecoveryMode::Salvage, &mut |_, _, f| {
        salvaged.push(f.lsn)
    })
    .unwrap();
    assert_eq!(scan.skipped.len(), 1);
    assert_eq!(salvaged.len(), 40, "39 records and the closing checkpoint");
    assert_eq!(salvaged.last(), Some(&41));
    assert!(!salvaged.contains(&10));

    // A plain reader refuses the damaged log and says where, rather than stopping quietly.
    let Err(WalError::Corrupt(fault)) = Reader::open_dir(dir.path(), 1) else {
        panic!("a reader of a damaged log must fail")
    };
    assert_eq!((fault.offset, fault.expected_lsn), (frame, 10));
}

#[test]
fn a_failed_sync_poisons_the_log_forever_and_acknowledges_nothing() {
    let plan = FaultPlan {
        eio_at_sync: Some(3),
        ..FaultPlan::default()
    };
    let store = SimStore::new(plan, 7);
    // Opening syncs the fresh segment once; the first explicit sync is the second.
    let wal = Wal::open_with_store(
        Arc::new(store.clone()),
        options(8192, SyncMethod::Fdatasync),
    )
    .unwrap();
    let a = wal.append_raw(kind::USER, b"a").unwrap();
    wal.sync(a).unwrap();
    let b = wal.append_raw(kind::USER, b"b").unwrap();
    let err = wal.sync(b).unwrap_err();
    assert!(matches!(err, WalError::Poisoned { .. }), "{err}");
    assert!(wal.is_poisoned());
    assert_eq!(wal.durable_lsn(), a, "the failed sync acknowledged nothing");
    assert!(matches!(
        wal.append_raw(kind::USER, b"c"),
        Err(WalError::Poisoned { .. })
    ));
    assert!(
        matches!(wal.sync(a), Err(WalError::Poisoned { .. })),
        "not even what was durable"
    );
    assert!(
        matches!(wal.sync(b), Err(WalError::Poisoned { .. })),
        "no retry that pretends"
    );
}

#[test]
fn two_writers_on_one_log_interleave_with_dense_lsns_and_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let a = Wal::open(dir.path(), options(8192, SyncMethod::Fdatasync)).unwrap();
    let b = Wal::open(dir.path(), options(8192, SyncMethod::Fdatasync)).unwrap();
    let mut lsns = Vec::new();
    // Enough records to rotate through several 8 KiB segments from both writers.
    for i in 0..300u32 {
        let (writer, other) = if i % 3 == 0 { (&b, &a) } else { (&a, &b) };
        let lsn = writer.append_raw(kind::USER, &i.to_le_bytes()).unwrap();
        lsns.push(lsn);
        if i % 50 == 0 {
            other.sync(other.refresh().unwrap()).unwrap();
        }
    }
    a.sync_all().unwrap();
    b.sync_all().unwrap();
    assert_eq!(
        lsns,
        (1..=300).collect::<Vec<_>>(),
        "dense, in append order"
    );
    drop(a);
    drop(b);
    let mut reader = Reader::open_dir(dir.path(), 1).unwrap();
    let mut users = Vec::new();
    while reader
        .read_batch(64, &mut |f| {
            if f.kind == kind::USER {
                users.push(u32::from_le_bytes(f.payload.try_into().unwrap()));
            }
        })
        .unwrap()
        > 0
    {}
    assert_eq!(users, (0..300).collect::<Vec<_>>());
}

#[test]
fn a_record_larger_than_a_segment_is_refused_without_damage() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(8192, SyncMethod::Fdatasync)).unwrap();
    wal.append_durable(&Record::User(b"before")).unwrap();
    let err = wal.append_raw(kind::USER, &vec![1u8; 9000]).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::RecordTooLarge {
                payload_bytes: 9000,
                ..
            }
        ),
        "{err}"
    );
    wal.append_durable(&Record::User(b"after")).unwrap();
    drop(wal);
    let got: Vec<Vec<u8>> = read_all(dir.path()).into_iter().map(|r| r.2).collect();
    assert_eq!(got, vec![b"before".to_vec(), b"after".to_vec()]);
}

#[test]
fn many_threads_waiting_on_the_durable_watermark_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(1 << 20, SyncMethod::Auto)).unwrap();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for i in 0..200u64 {
                    let lsn = wal
                        .append_raw(kind::USER, &payload(t * 1000 + i, 128))
                        .unwrap();
                    wal.sync(lsn).unwrap();
                    assert!(wal.durable_lsn() >= lsn);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = wal.stats();
    assert_eq!(stats.durable_lsn, 1600);
    assert!(stats.syncs < 1600, "group commit shared syncs: {stats:?}");
}

#[test]
fn the_simulated_store_lists_segments_in_order() {
    let store = SimStore::new(FaultPlan::default(), 1);
    for seq in [3u64, 1, 2] {
        store.create(seq, 4096).unwrap();
    }
    assert_eq!(store.list().unwrap(), vec![1, 2, 3]);
}

#[test]
fn a_reader_without_the_lock_follows_a_live_writer_across_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), options(8192, SyncMethod::Fdatasync)).unwrap();
    let mut reader = Reader::open_dir(dir.path(), 1).unwrap();
    let writer = {
        let wal = wal.clone();
        std::thread::spawn(move || {
            for i in 0..3000u64 {
                wal.append_raw(kind::USER, &payload(i, 90)).unwrap();
            }
        })
    };
    let mut seen: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < 3000 && std::time::Instant::now() < deadline {
        let got = reader
            .read_batch(100, &mut |f| seen.push((f.lsn, f.payload.to_vec())))
            .unwrap();
        if got == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    writer.join().unwrap();
    assert_eq!(seen.len(), 3000, "followed every record written so far");
    for (i, (lsn, body)) in seen.iter().enumerate() {
        assert_eq!((*lsn, body), (i as u64 + 1, &payload(i as u64, 90)));
    }
}

/// Resident KiB of this process's mappings of files under `dir`.
fn resident_kib_under(dir: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut inside = false;
    let mut total = 0;
    for line in smaps.lines() {
        if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            inside = line.contains(dir.to_str().unwrap());
        } else if let Some(kib) = line.strip_prefix("Rss:").filter(|_| inside) {
            total += kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap();
        }
    }
    total
}

#[test]
fn the_log_keeps_only_the_pages_being_written_resident() {
    let dir = tempfile::tempdir().unwrap();
    let segment = 16 << 20;
    {
        let wal = Wal::open(dir.path(), options(segment, SyncMethod::Auto)).unwrap();
        assert!(
            resident_kib_under(dir.path()) < 256,
            "a fresh log maps its segments without faulting them in: {} KiB",
            resident_kib_under(dir.path())
        );
        // 8 MiB of records, made durable as they go: half a segment written.
        let body = payload(1, 1000);
        for i in 0..8_000u64 {
            wal.append_raw(kind::USER, &body).unwrap();
            if i % 100 == 99 {
                wal.sync_all().unwrap();
            }
        }
        wal.sync_all().unwrap();
        let resident = resident_kib_under(dir.path());
        assert!(
            resident < 1024,
            "durable pages behind the write head are released: {resident} KiB resident"
        );
    }
    // Reopening scans the tail for stray bytes, then releases it.
    let wal = Wal::open(dir.path(), options(segment, SyncMethod::Auto)).unwrap();
    let resident = resident_kib_under(dir.path());
    assert!(resident < 1024, "after recovery: {resident} KiB resident");
    assert_eq!(
        read_all(dir.path()).len(),
        8_000,
        "nothing lost by releasing pages"
    );
    drop(wal);
}

/// A closed log of `segments` used 4 KiB segments (and one pre-created).
fn log_of_segments(dir: &Path, segments: usize) {
    let wal = Wal::open(dir, options(4096, SyncMethod::Fdatasync)).unwrap();
    while wal.stats().segments < segments as u64 {
        wal.append_raw(kind::USER, &[7u8; 300]).unwrap();
    }
    wal.close().unwrap();
}

#[test]
fn a_lost_oldest_segment_is_corruption_not_retention() {
    let dir = tempfile::tempdir().unwrap();
    log_of_segments(dir.path(), 3);
    let first = dir.path().join(segment_file_name(1));
    std::fs::remove_file(&first).unwrap();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    let err = Wal::open(dir.path(), options(4096, SyncMethod::Fdatasync)).unwrap_err();
    let WalError::Corrupt(fault) = &err else {
        panic!("{err}")
    };
    assert!(fault.cause.contains("segment 1 is missing"), "{err}");
    assert!(
        Reader::open_dir(dir.path(), 1).is_err(),
        "readers refuse too"
    );
    assert_eq!(
        before,
        listing(),
        "the refused open created or removed nothing"
    );
}

#[test]
fn a_retirement_cut_short_by_a_stop_finishes_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    log_of_segments(dir.path(), 3);
    let records = read_all(dir.path());
    // Retention wrote the new first segment into the identity, then the process stopped
    // before removing segment 1.
    let identity = dir.path().join("IDENTITY");
    let text = std::fs::read_to_string(&identity).unwrap();
    std::fs::write(
        &identity,
        text.replace("first-segment 1 ", "first-segment 2 "),
    )
    .unwrap();
    let wal = Wal::open(dir.path(), options(4096, SyncMethod::Fdatasync)).unwrap();
    assert!(wal.recovery().removed_segments.contains(&1));
    assert!(!dir.path().join(segment_file_name(1)).exists());
    let first_kept = wal.first_lsn();
    drop(wal);
    let mut reader = Reader::open_dir(dir.path(), first_kept).unwrap();
    let mut kept = Vec::new();
    while reader
        .read_batch(1000, &mut |f| {
            if f.kind != kind::CHECKPOINT {
                kept.push(f.lsn)
            }
        })
        .unwrap()
        > 0
    {}
    let expected: Vec<Lsn> = records
        .iter()
        .map(|r| r.0)
        .filter(|&lsn| lsn >= first_kept)
        .collect();
    assert_eq!(kept, expected);
}

#[test]
fn log_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    // SAFETY: umask only changes this process's file creation mask.
    let old = unsafe { libc::umask(0) };
    let wal = Wal::open(&wal_dir, options(4096, SyncMethod::Fdatasync));
    // SAFETY: as above, restoring it.
    unsafe { libc::umask(old) };
    let wal = wal.unwrap();
    wal.append_raw(kind::USER, b"secret-ish").unwrap();
    wal.close().unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&wal_dir), 0o700);
    for entry in std::fs::read_dir(&wal_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn repair_keeps_every_valid_record_at_its_lsn_and_the_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let mut written = Vec::new();
    {
        let wal = Wal::open(&wal_dir, options(4096, SyncMethod::Fdatasync)).unwrap();
        while wal.stats().segments < 4 {
            let body = payload(written.len() as u64, 200);
            let lsn = wal.append_raw(kind::USER, &body).unwrap();
            written.push((lsn, body));
        }
        wal.close().unwrap();
    }
    // Damage segment 2's header: none of its frames can be trusted.
    let second = wal_dir.join(segment_file_name(2));
    let mut bytes = std::fs::read(&second).unwrap();
    bytes[20] ^= 0x01;
    std::fs::write(&second, &bytes).unwrap();
    let lost: Vec<Lsn> = {
        let store = vigil_runtime::wal::storage::FsStore::open_reader(&wal_dir).unwrap();
        let mut kept = Vec::new();
        vigil_runtime::wal::log::scan_log(&store, RecoveryMode::Salvage, &mut |_, _, f| {
            kept.push(f.lsn)
        })
        .unwrap();
        written
            .iter()
            .map(|w| w.0)
            .filter(|lsn| !kept.contains(lsn))
            .collect()
    };
    assert!(!lost.is_empty(), "segment 2 held records");
    assert!(Wal::open(&wal_dir, options(4096, SyncMethod::Fdatasync)).is_err());

    // Refused while a writer holds the log.
    {
        let other = dir.path().join("busy");
        let _writer = Wal::open(&other, options(4096, SyncMethod::Fdatasync)).unwrap();
        let refused =
            vigil_runtime::wal::repair::repair_dir(&other, options(4096, SyncMethod::Fdatasync));
        assert!(refused.is_err(), "repair beside a live writer");
    }

    let report =
        vigil_runtime::wal::repair::repair_dir(&wal_dir, options(4096, SyncMethod::Fdatasync))
            .unwrap();
    let holes: Vec<Lsn> = report
        .holes
        .iter()
        .flat_map(|&(from, to)| from..to)
        .collect();
    assert_eq!(holes, lost);
    assert_eq!(
        std::fs::read(report.damaged_dir.join(segment_file_name(2))).unwrap(),
        bytes,
        "the damaged segment is kept as it was"
    );

    // The repaired log opens as a writer, and every valid record is at its LSN, unchanged.
    let wal = Wal::open(&wal_dir, options(4096, SyncMethod::Fdatasync)).unwrap();
    assert!(wal.recovery().scan.fault.is_none());
    drop(wal);
    let mut by_lsn = std::collections::BTreeMap::new();
    let mut reader = Reader::open_dir(&wal_dir, 1).unwrap();
    while reader
        .read_batch(1000, &mut |f| {
            by_lsn.insert(f.lsn, (f.kind, f.payload.to_vec()));
        })
        .unwrap()
        > 0
    {}
    for (lsn, body) in &written {
        let (kind_found, payload_found) = &by_lsn[lsn];
        if lost.contains(lsn) {
            assert_eq!(*kind_found, kind::HOLE, "LSN {lsn}");
        } else {
            assert_eq!(
                (*kind_found, payload_found),
                (kind::USER, body),
                "LSN {lsn}"
            );
        }
    }
    let (repaired_kind, note) = &by_lsn[&report.repair_lsn];
    assert_eq!(*repaired_kind, kind::REPAIRED);
    let note: serde_json::Value = serde_json::from_slice(note).unwrap();
    assert_eq!(note["holes"][0]["from_lsn"], lost[0]);
}

#[test]
fn a_wiped_end_of_a_closed_log_is_corruption_not_a_tear() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), options(64 * 1024, SyncMethod::Fdatasync)).unwrap();
        for i in 0..100u64 {
            wal.append_raw(kind::USER, &payload(i, 100)).unwrap();
        }
        wal.close().unwrap();
    }
    // Zero the page holding the last records and the closing checkpoint: nothing after it
    // could prove they were durable, but the identity file recorded it at close.
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap();
    let page = end / 4096 * 4096;
    bytes[page..page + 4096].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let err = Wal::open(dir.path(), options(64 * 1024, SyncMethod::Fdatasync)).unwrap_err();
    let WalError::Corrupt(fault) = &err else {
        panic!("{err}")
    };
    assert_eq!(fault.kind, FaultKind::Corruption);
    assert!(fault.cause.contains("was durable"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the refused open changed nothing"
    );
}

#[test]
fn a_checkpoint_synced_with_the_last_records_leaves_the_close_no_log_sync_and_a_wiped_end_is_still_caught(
) {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(64 * 1024, SyncMethod::Fdatasync);
    let last;
    {
        let wal = Wal::open(dir.path(), opts).unwrap();
        for i in 0..100u64 {
            wal.append_raw(kind::USER, &payload(i, 100)).unwrap();
        }
        last = wal.append_checkpoint().unwrap();
        assert_eq!(last, 101);
        wal.sync(last).unwrap();
        let syncs = wal.stats().syncs;
        wal.checkpoint().unwrap();
        assert_eq!(wal.stats().syncs, syncs, "the close synced the log again");
        assert_eq!(
            wal.last_lsn(),
            last,
            "the close appended a second checkpoint"
        );
        wal.close().unwrap();
    }
    {
        let wal = Wal::open(dir.path(), opts).unwrap();
        assert_eq!(wal.recovery().scan.fault, None);
        assert_eq!(wal.last_lsn(), last, "the log ends in the one checkpoint");
        drop(wal);
    }
    assert_eq!(read_all(dir.path()).len(), 100);
    // The close still recorded the durable end beside the log: wiping the page that holds the
    // last records and the checkpoint is corruption, not a tear.
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    let end = bytes.iter().rposition(|&b| b != 0).unwrap();
    let page = end / 4096 * 4096;
    bytes[page..page + 4096].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let err = Wal::open(dir.path(), opts).unwrap_err();
    let WalError::Corrupt(fault) = &err else {
        panic!("{err}")
    };
    assert_eq!(fault.kind, FaultKind::Corruption);
    assert!(fault.cause.contains("was durable"), "{err}");
}

#[test]
fn an_unsynced_checkpoint_kept_after_a_lost_record_before_it_is_a_torn_tail() {
    let store = Arc::new(SimStore::new(FaultPlan::default(), 3));
    let opts = options(64 * 1024, SyncMethod::Fdatasync);
    {
        let wal = Wal::open_with_store(store.clone(), opts).unwrap();
        for i in 0..10u64 {
            wal.append_raw(kind::USER, &payload(i, 100)).unwrap();
        }
        wal.sync_all().unwrap();
        // Several sectors of unsynced records, then the closing checkpoint, all unsynced.
        for i in 10..30u64 {
            wal.append_raw(kind::USER, &payload(i, 100)).unwrap();
        }
        wal.append_checkpoint().unwrap();
        wal.abandon();
    }
    // Each unsynced sector is kept or dropped on its own: among these images are ones that
    // keep the checkpoint and drop records before it.
    let mut dropped_before_kept = 0;
    for seed in 0..64u64 {
        let image = Arc::new(store.crash_image(seed));
        let wal = Wal::open_with_store(image, opts)
            .unwrap_or_else(|e| panic!("seed {seed}: an unsynced tail refused the open: {e}"));
        let scan = &wal.recovery().scan;
        assert!(
            wal.last_lsn() >= 10,
            "seed {seed}: a synced record was lost"
        );
        assert!(
            scan.fault
                .as_ref()
                .is_none_or(|f| f.kind == FaultKind::TornTail),
            "seed {seed}: {:?}",
            scan.fault
        );
        dropped_before_kept += usize::from(scan.dropped_unsynced_frames > 0);
        wal.abandon();
    }
    assert!(
        dropped_before_kept > 0,
        "no image kept a frame after a dropped one"
    );
}

#[test]
fn a_following_reader_names_damage_in_records_written_after_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(64 * 1024, SyncMethod::Fdatasync);
    let wal = Wal::open(dir.path(), opts).unwrap();
    for i in 0..10u64 {
        wal.append_raw(kind::USER, &payload(i, 64)).unwrap();
    }
    wal.sync_all().unwrap();
    let mut follower = Reader::open_dir(dir.path(), 1).unwrap();
    let mut seen = Vec::new();
    while follower.read_batch(100, &mut |f| seen.push(f.lsn)).unwrap() > 0 {}
    assert_eq!(seen.len(), 10);
    // More records, made durable, then one of them is damaged on disk.
    let mut offsets = Vec::new();
    for i in 10..20u64 {
        wal.append_raw(kind::USER, &payload(i, 64)).unwrap();
        offsets.push(SEGMENT_HEADER_BYTES + i as usize * (40 + 64));
    }
    wal.close().unwrap();
    let path = dir.path().join(segment_file_name(1));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[3] + 45] ^= 0x08; // LSN 14
    std::fs::write(&path, &bytes).unwrap();
    let mut more = Vec::new();
    let err = loop {
        match follower.read_batch(100, &mut |f| more.push(f.lsn)) {
            Ok(0) => panic!("the follower stopped quietly at the damage: {more:?}"),
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    assert_eq!(
        more,
        vec![11, 12, 13],
        "records before the damage, then the error"
    );
    let WalError::Corrupt(fault) = err else {
        panic!("{err}")
    };
    assert_eq!((fault.expected_lsn, fault.offset), (14, offsets[3]));
}

#[test]
fn a_log_of_the_earlier_format_is_refused_by_name_and_repair_carries_every_record_over() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let mut written = Vec::new();
    {
        let wal = Wal::open(&wal_dir, options(4096, SyncMethod::Fdatasync)).unwrap();
        while wal.stats().segments < 3 {
            let body = payload(written.len() as u64, 150);
            written.push((wal.append_raw(kind::USER, &body).unwrap(), body));
        }
        wal.close().unwrap();
    }
    // What an earlier build wrote: format 1 headers (no identity) and no identity file.
    for entry in std::fs::read_dir(&wal_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "wal") {
            let mut bytes = std::fs::read(&path).unwrap();
            if bytes[..4] == *b"VSEG" {
                bytes[4] = 1;
                bytes[40..60].fill(0);
                let crc = vigil_runtime::wal::crc32c::crc32c(&bytes[..60]);
                bytes[60..64].copy_from_slice(&crc.to_le_bytes());
                std::fs::write(&path, &bytes).unwrap();
            }
        }
    }
    std::fs::remove_file(wal_dir.join("IDENTITY")).unwrap();
    let err = Wal::open(&wal_dir, options(4096, SyncMethod::Fdatasync)).unwrap_err();
    assert!(err.to_string().contains("earlier vigil"), "{err}");

    let report =
        vigil_runtime::wal::repair::repair_dir(&wal_dir, options(4096, SyncMethod::Fdatasync))
            .unwrap();
    assert!(report.holes.is_empty(), "{:?}", report.holes);
    let wal = Wal::open(&wal_dir, options(4096, SyncMethod::Fdatasync)).unwrap();
    drop(wal);
    let read = read_all(&wal_dir);
    for (lsn, body) in &written {
        assert!(
            read.iter()
                .any(|(l, k, p)| l == lsn && *k == kind::USER && p == body),
            "LSN {lsn} carried over"
        );
    }
}

/// Sizes of the segment files in `dir`, by sequence number.
fn segment_sizes(dir: &Path) -> Vec<(u64, u64)> {
    let mut sizes: Vec<(u64, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().ok()?;
            let seq = name.strip_suffix(".wal")?.parse().ok()?;
            Some((seq, e.metadata().unwrap().len()))
        })
        .collect();
    sizes.sort();
    sizes
}

#[test]
fn a_new_log_starts_with_small_segments_that_double_to_the_configured_size() {
    const MIB: u64 = 1 << 20;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, WalOptions::default()).unwrap();
    // A new log reserves its first segment and the next one: 24 MiB, not two of 64.
    assert_eq!(segment_sizes(&dir), vec![(1, 8 * MIB), (2, 16 * MIB)]);
    // The largest record fits the smallest segment.
    let largest = vec![7u8; RECORD_PAYLOAD_BYTES_MAX];
    let lsn = wal.append_raw(kind::USER, &largest).unwrap();
    wal.sync(lsn).unwrap();
    // 1 MiB records: past the first two segments, into the third.
    let record = vec![9u8; MIB as usize];
    let mut last = lsn;
    for _ in 0..24 {
        last = wal.append_raw(kind::USER, &record).unwrap();
    }
    wal.sync(last).unwrap();
    wal.close().unwrap();
    let sizes = segment_sizes(&dir);
    assert_eq!(
        sizes,
        vec![(1, 8 * MIB), (2, 16 * MIB), (3, 32 * MIB), (4, 64 * MIB)],
        "each segment doubles up to the configured 64 MiB"
    );
    // And they read back whole.
    let mut reader = Reader::open_dir_from_start(&dir).unwrap();
    let mut payload_bytes = 0usize;
    while reader
        .read_batch(64, &mut |frame| {
            if frame.kind == kind::USER {
                payload_bytes += frame.payload.len();
            }
        })
        .unwrap()
        > 0
    {}
    assert_eq!(payload_bytes, RECORD_PAYLOAD_BYTES_MAX + 24 * MIB as usize);
}

/// Bytes of the `.wal` files in `dir`.
fn segment_file_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn retention_counts_each_segment_at_the_size_of_its_file() {
    let dir = tempfile::tempdir().unwrap();
    // A log made with 64 KiB segments...
    let wal = Wal::open(dir.path(), options(64 << 10, SyncMethod::Fdatasync)).unwrap();
    for i in 0..3000u64 {
        wal.append(&Record::User(&payload(i, 100))).unwrap();
    }
    wal.close().unwrap();
    assert!(segment_file_bytes(dir.path()) >= 6 * (64 << 10));
    // ... opened with 16 KiB segments and a 256 KiB bound: the old files count at their size.
    let mut opts = options(16 << 10, SyncMethod::Fdatasync);
    opts.retention = Retention {
        bytes_max: Some(256 << 10),
        segments_max: None,
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    for i in 0..400u64 {
        wal.append(&Record::User(&payload(i, 100))).unwrap();
        if i % 20 == 0 {
            wal.sync_all().unwrap();
        }
    }
    wal.sync_all().unwrap();
    let held = segment_file_bytes(dir.path());
    // The bound, plus at most the active segment the bound cannot retire and the next one.
    assert!(
        held <= (256 << 10) + (64 << 10),
        "{held} bytes of segments kept"
    );
    wal.close().unwrap();
}
