//! Opening the log costs what it holds, not what the disk reserved: the unwritten tail of a
//! preallocated segment is never read (measured as page-cache residency of the tail, which
//! any read of it, through the mapping or `pread`, would create), and the corruption rule
//! holds on that path exactly as when every byte was read.

mod common;

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use common::resident_pages;
use vigil_runtime::model::Limits;
use vigil_runtime::runtime::{IndexLoader, JobIndex};
use vigil_runtime::wal::frame::{decode_frame, salt_seed, SegmentHeader, SEGMENT_HEADER_BYTES};
use vigil_runtime::wal::log::{Retention, Wal, WalError, WalOptions};
use vigil_runtime::wal::reader::Reader;
use vigil_runtime::wal::record::{kind, JobInterrupted, JobStarted, Record};
use vigil_runtime::wal::scan::{FaultKind, RecoveryMode};
use vigil_runtime::wal::storage::{
    read_hint_file, segment_file_name, write_hint_file, CheckpointHint, APPEND_READAHEAD_MAX_BYTES,
    APPEND_READAHEAD_MIN_BYTES,
};
use vigil_runtime::wal::sync::SyncMethod;

const PAGE: usize = 4096;
/// The most the writer keeps read ahead of its append position.
const APPEND_WINDOW: usize = APPEND_READAHEAD_MAX_BYTES;

fn options(segment_bytes: u64, mode: RecoveryMode) -> WalOptions {
    WalOptions {
        segment_bytes,
        sync_method: SyncMethod::Fdatasync,
        recovery_mode: mode,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        zero_fill_segments: false,
        open_from_checkpoint: false,
    }
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// Drops the clean page-cache pages of `path` in `from..` (a hint; asserted by the caller).
fn drop_cached(path: &Path, from: usize) {
    let file = std::fs::File::open(path).unwrap();
    file.sync_all().unwrap();
    // SAFETY: fadvise on a descriptor we own.
    let rc = unsafe {
        libc::posix_fadvise(
            file.as_raw_fd(),
            from as libc::off_t,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    assert_eq!(rc, 0);
}

/// Where the log ends (segment, offset, next LSN), by the scan a reader runs.
fn log_end(dir: &Path) -> (u64, usize, u64) {
    let scan = vigil_runtime::wal::recovery::scan_log(
        &vigil_runtime::wal::storage::FsStore::open_reader(dir).unwrap(),
        RecoveryMode::Strict,
        &mut |_, _, _| {},
    )
    .unwrap();
    let end = scan.end.unwrap();
    (end.seq, end.offset, scan.next_lsn)
}

fn job_started(job_id: u64) -> Record<'static> {
    Record::JobStarted(JobStarted {
        job_id,
        unix_ms: 1_700_000_000_000 + job_id,
        capability: "exec",
        args_json: "{\"argv\":[\"/bin/true\"]}",
        limits: Limits::default(),
        session: None,
        root: None,
        telemetry_before: &[],
    })
}

fn job_ended(job_id: u64) -> Record<'static> {
    Record::JobInterrupted(JobInterrupted {
        job_id,
        unix_ms: 1_700_000_000_500 + job_id,
        reason: "test",
    })
}

#[test]
fn a_log_of_a_million_records_opens_and_lists_jobs_without_reading_its_unwritten_tail() {
    const RECORDS: u64 = 1_000_000;
    const JOBS: u64 = 200;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    {
        let wal = Wal::open(&dir, options(64 << 20, RecoveryMode::Tail)).unwrap();
        let every = RECORDS / JOBS;
        for i in 0..RECORDS - JOBS * 2 {
            if i % every == 0 {
                let job_id = i / every + 1;
                wal.append(&job_started(job_id)).unwrap();
                wal.append(&job_ended(job_id)).unwrap();
            }
            wal.append_raw(kind::USER, &i.to_le_bytes()).unwrap();
        }
        wal.close().unwrap();
    }
    let (seq, end, _) = log_end(&dir);
    let path = segment_path(&dir, seq);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let tail = end.next_multiple_of(PAGE) + PAGE;
    assert!(
        len - tail > 8 << 20,
        "the test needs a large unwritten tail"
    );
    drop_cached(&path, tail);
    assert_eq!(
        resident_pages(&path, tail..len),
        0,
        "the tail starts out of the page cache"
    );
    // The measure can fail: one read of one page of the tail shows.
    let mut one = [0u8; 1];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut one, (len - PAGE) as u64)
        .unwrap();
    assert_eq!(resident_pages(&path, tail..len), 1);
    drop_cached(&path, tail);
    assert_eq!(resident_pages(&path, tail..len), 0);

    // A reader (`vigil jobs`, `vigil wal stats`) reads no byte of the tail.
    let index = JobIndex::load_dir(tmp.path()).unwrap();
    assert_eq!(index.jobs.len() as u64, JOBS);
    assert_eq!(index.records, RECORDS);
    assert_eq!(
        resident_pages(&path, tail..len),
        0,
        "a reader read the tail"
    );

    // Opening for appends reads only a bounded window ahead of the end, and builds the index
    // in the same pass.
    let next = segment_path(&dir, seq + 1);
    let next_inode = std::fs::metadata(&next).unwrap().ino();
    let next_len = std::fs::metadata(&next).unwrap().len() as usize;
    drop_cached(&next, 0);
    assert_eq!(resident_pages(&next, 0..next_len), 0);
    let mut loader = IndexLoader::new(1);
    let wal = Wal::open_visiting(&dir, options(64 << 20, RecoveryMode::Tail), &mut |frame| {
        loader.visit(&frame)
    })
    .unwrap();
    let index = loader.finish().unwrap();
    assert_eq!(index.jobs.len() as u64, JOBS);
    assert!(index.jobs.values().all(|j| j.end_lsn.is_some()));
    assert_eq!(index.records, RECORDS);
    let window_end = (end + APPEND_WINDOW).next_multiple_of(PAGE);
    assert_eq!(
        resident_pages(&path, window_end..len),
        0,
        "the writer's open read the tail"
    );
    let summary = wal
        .recovery()
        .scan
        .segments
        .iter()
        .find(|s| s.seq == seq)
        .cloned()
        .unwrap();
    assert!(summary.zero_from <= end, "{summary:?}");
    assert_eq!(wal.recovery().truncated_bytes, 0);
    drop(wal);
    // The healthy pre-created next segment was kept as it was, not removed and recreated.
    assert_eq!(std::fs::metadata(&next).unwrap().ino(), next_inode);
    // Of the pre-created segment, the open read its header page at most.
    assert_eq!(resident_pages(&next, PAGE..next_len), 0);
}

/// A closed log of `records` durable records in 1 MiB segments (and what closing adds);
/// returns the directory, the segment holding the end, where its frames end and the next LSN.
fn small_log(records: u64) -> (tempfile::TempDir, PathBuf, PathBuf, usize, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    {
        let wal = Wal::open(&dir, options(1 << 20, RecoveryMode::Tail)).unwrap();
        for i in 0..records {
            let lsn = wal.append_raw(kind::USER, &[i as u8 | 1; 40]).unwrap();
            wal.sync(lsn).unwrap();
        }
        wal.close().unwrap();
    }
    let (seq, end, next_lsn) = log_end(&dir);
    let path = segment_path(&dir, seq);
    (tmp, dir, path, end, next_lsn)
}

fn open_error(dir: &Path, mode: RecoveryMode) -> Option<(FaultKind, usize)> {
    match Wal::open(dir, options(1 << 20, mode)) {
        Ok(_) => None,
        Err(WalError::Corrupt(fault)) => Some((fault.kind, fault.offset)),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

fn write_at(path: &Path, offset: usize, bytes: &[u8], flush: bool) {
    let file = OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset as u64).unwrap();
    if flush {
        file.sync_all().unwrap();
        drop(file);
        drop_cached(path, 0);
    }
}

#[test]
fn garbage_far_after_the_end_is_still_found() {
    for flushed in [false, true] {
        let (_tmp, dir, path, end, next_lsn) = small_log(50);
        let far = (1 << 20) - 3 * PAGE + 17;
        write_at(&path, far, &[0x5A; 9], flushed);
        // Strict refuses the stray bytes; tail mode treats them as a torn tail (no valid
        // frame after them), zeroes them and keeps every record.
        assert_eq!(
            open_error(&dir, RecoveryMode::Strict),
            Some((FaultKind::TornTail, end)),
            "flushed to disk: {flushed}"
        );
        let wal = Wal::open(&dir, options(1 << 20, RecoveryMode::Tail)).unwrap();
        assert_eq!(wal.recovery().truncated_bytes as usize, far + 9 - end);
        assert_eq!(wal.recovery().scan.next_lsn, next_lsn, "every record kept");
        drop(wal);
        let mut byte = [0u8; 9];
        std::fs::File::open(&path)
            .unwrap()
            .read_exact_at(&mut byte, far as u64)
            .unwrap();
        assert_eq!(byte, [0; 9]);
    }
}

#[test]
fn a_durable_frame_far_after_a_hole_is_corruption() {
    let (_tmp, dir, path, end, next_lsn) = small_log(60);
    let last_lsn = next_lsn - 1;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let mut image = vec![0u8; 1 << 20];
    file.read_exact_at(&mut image, 0).unwrap();
    let header = SegmentHeader::decode(&image).unwrap();
    let seed = salt_seed(header.salt);
    // Find the last frame and the offset of LSN 40.
    let (mut at, mut offsets) = (SEGMENT_HEADER_BYTES, Vec::new());
    while let Ok(frame) = decode_frame(&image[at..], seed) {
        offsets.push((frame.lsn, at, frame.frame_bytes));
        at += frame.frame_bytes;
    }
    assert_eq!(at, end);
    let &(_, cut, _) = offsets.iter().find(|o| o.0 == 40).unwrap();
    let &(_, last, bytes) = offsets.iter().find(|o| o.0 == last_lsn).unwrap();
    let frame = image[last..last + bytes].to_vec();
    // Everything from LSN 40 on becomes a real hole; the last frame lands 700 KiB in.
    let hole_from = cut.next_multiple_of(PAGE);
    file.write_all_at(&vec![0u8; hole_from - cut], cut as u64)
        .unwrap();
    // SAFETY: fallocate on a descriptor we own.
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            hole_from as libc::off_t,
            ((1 << 20) - hole_from) as libc::off_t,
        )
    };
    assert_eq!(rc, 0, "punch hole: {}", std::io::Error::last_os_error());
    let far = 700 << 10;
    file.write_all_at(&frame, far as u64).unwrap();
    file.sync_all().unwrap();
    drop(file);
    drop_cached(&path, 0);

    assert_eq!(
        open_error(&dir, RecoveryMode::Tail),
        Some((FaultKind::Corruption, cut)),
        "frames written after LSN 40 was durable prove it lost"
    );
    assert!(matches!(
        Reader::open_dir(&dir, 1),
        Err(WalError::Corrupt(ref f)) if f.kind == FaultKind::Corruption
    ));
    assert!(JobIndex::load_dir(dir.parent().unwrap()).is_err());
    // Nothing was changed by the refusals.
    let mut after = vec![0u8; frame.len()];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut after, far as u64)
        .unwrap();
    assert_eq!(after, frame);
}

#[test]
fn a_torn_tail_is_cut_and_every_record_before_it_kept() {
    let (_tmp, dir, path, end, next_lsn) = small_log(30);
    let last_lsn = next_lsn - 1;
    // Tear the last frame (zero its second half), as a crash before it was durable leaves
    // it: the identity file then records only the LSN before it as durable.
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[0u8; 24], (end - 24) as u64).unwrap();
    drop(file);
    let recorded = read_hint_file(&dir)
        .unwrap()
        .expect("a clean close leaves a hint");
    assert_eq!(recorded.durable_lsn, last_lsn);
    let hint = CheckpointHint {
        durable_lsn: last_lsn - 1,
        ..recorded
    };
    write_hint_file(&dir, hint).unwrap();
    assert_eq!(
        open_error(&dir, RecoveryMode::Strict).map(|f| f.0),
        Some(FaultKind::TornTail)
    );
    let wal = Wal::open(&dir, options(1 << 20, RecoveryMode::Tail)).unwrap();
    assert_eq!(
        wal.recovery().scan.next_lsn,
        last_lsn,
        "every record before it kept"
    );
    assert!(wal.recovery().truncated_bytes > 0);
}

#[test]
fn data_after_the_zero_header_of_a_pre_created_segment_is_damage() {
    let (_tmp, dir, path, _end, _) = small_log(10);
    let name = path.file_name().unwrap().to_str().unwrap();
    let seq: u64 = name.trim_end_matches(".wal").parse().unwrap();
    let next = segment_path(&dir, seq + 1);
    assert!(next.exists(), "the writer pre-creates the next segment");
    write_at(&next, 900 << 10, &[1], true);
    assert_eq!(
        open_error(&dir, RecoveryMode::Tail).map(|f| f.0),
        Some(FaultKind::Corruption)
    );
}

/// A writer reads a window ahead of its end into the page cache for cheap appends; a clean
/// close drops it (and the pre-created next segment's), so the next open's proof that the
/// tail is zero has no cached zeros to read back.
#[test]
fn a_clean_close_leaves_no_zeros_read_ahead_in_the_page_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, options(16 << 20, RecoveryMode::Tail)).unwrap();
    let mut last = 0;
    for i in 0..100u64 {
        last = wal.append_raw(kind::USER, &i.to_le_bytes()).unwrap();
    }
    wal.sync(last).unwrap();
    let (seq, _, _) = log_end(&dir);
    let path = segment_path(&dir, seq);
    let next = segment_path(&dir, seq + 1);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let next_len = std::fs::metadata(&next).unwrap().len() as usize;
    // While open: the window ahead of the end is cached (what the close must drop).
    let (_, end, _) = log_end(&dir);
    let past_end = end.next_multiple_of(PAGE);
    assert!(
        resident_pages(&path, past_end..len) > 0,
        "the writer reads ahead for its appends"
    );
    wal.close().unwrap();
    let (_, end, _) = log_end(&dir);
    let past_end = end.next_multiple_of(PAGE);
    assert_eq!(resident_pages(&path, past_end..len), 0, "{path:?}");
    // (The scan that found the end above read the next segment's header page.)
    assert_eq!(resident_pages(&next, PAGE..next_len), 0, "{next:?}");
}

/// Appends far into a segment find the pages ahead of them already in the page cache (the
/// read-ahead window moves with the appends), and what is cached past the end stays within
/// one window, which is what the next open's zero proof may have to read.
#[test]
fn the_read_ahead_window_moves_with_the_appends_and_stays_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let wal = Wal::open(&dir, options(16 << 20, RecoveryMode::Tail)).unwrap();
    let payload = [0x5Au8; 128];
    let mut last = 0;
    // About 4 MiB of frames: far past the window read when the segment was opened.
    for _ in 0..25_000u64 {
        last = wal.append_raw(kind::USER, &payload).unwrap();
    }
    wal.sync(last).unwrap();
    let (seq, end, _) = log_end(&dir);
    assert!(
        end > 8 * APPEND_WINDOW,
        "the appends went far into the segment"
    );
    let path = segment_path(&dir, seq);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let past_end = end.next_multiple_of(PAGE);
    let ahead = resident_pages(&path, past_end..past_end + APPEND_WINDOW / 2);
    assert!(
        ahead * 2 >= APPEND_WINDOW / 2 / PAGE,
        "pages ahead of the appends are read in ahead of them: {ahead} of {}",
        APPEND_WINDOW / 2 / PAGE
    );
    assert_eq!(
        resident_pages(&path, past_end + APPEND_WINDOW..len),
        0,
        "nothing is read ahead past one window"
    );
    wal.abandon();
}

/// A writer that appends a few records (a one-shot run's job) reads ahead a small window, not
/// the whole one: its close has less to drop, and its open less to zero. The window grows
/// with the appends (see the test above for a long run of them).
#[test]
fn a_writer_that_appends_a_few_records_reads_ahead_a_small_window() {
    let (_tmp, dir, path, _, _) = small_log(20);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    let wal = Wal::open(&dir, options(1 << 20, RecoveryMode::Tail)).unwrap();
    let mut last = 0;
    for i in 0..3u8 {
        last = wal.append_raw(kind::USER, &[i | 1; 2000]).unwrap();
    }
    wal.sync(last).unwrap();
    let (seq, end, _) = log_end(&dir);
    assert_eq!(segment_path(&dir, seq), path);
    let past_end = end.next_multiple_of(PAGE);
    assert!(
        resident_pages(&path, past_end..past_end + APPEND_READAHEAD_MIN_BYTES / 2) > 0,
        "the writer reads ahead of its appends"
    );
    let small = (end + 4 * APPEND_READAHEAD_MIN_BYTES).next_multiple_of(PAGE);
    assert!(
        small + APPEND_WINDOW / 2 < len,
        "the segment holds a whole window"
    );
    assert_eq!(
        resident_pages(&path, small..len),
        0,
        "a few appends read ahead a few pages, not {APPEND_WINDOW} bytes"
    );
    wal.close().unwrap();
}
