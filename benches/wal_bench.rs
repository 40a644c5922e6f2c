//! WAL benchmarks, each against a baseline measured in the same run (these machines are noisy;
//! only same-run ratios mean anything). Run all:
//! `cargo bench --bench wal_bench`; one: `cargo bench --bench wal_bench -- durable`.
//! Sections: append, durable, group, pipeline, scan.
//! `VIGIL_WAL_BENCH_SCAN_BYTES` scales the recovery scan (default 1 GiB);
//! `VIGIL_WAL_BENCH_DIR` picks the directory (default: the system temp dir).

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use vigil_runtime::wal::crc32c::crc32c;
use vigil_runtime::wal::frame::frame_bytes;
use vigil_runtime::wal::log::{scan_log, Retention, Wal, WalOptions};
use vigil_runtime::wal::record::kind;
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::storage::FsStore;
use vigil_runtime::wal::sync::SyncMethod;

const PAYLOAD_BYTES: usize = 128;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("VIGIL_WAL_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    tempfile::tempdir_in(base).unwrap()
}

fn options(segment_bytes: u64, sync_method: SyncMethod, zero_fill: bool) -> WalOptions {
    WalOptions {
        segment_bytes,
        sync_method,
        recovery_mode: RecoveryMode::Tail,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        zero_fill_segments: zero_fill,
        open_from_checkpoint: false,
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

fn quantiles(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:>8.1} us  p99 {:>8.1} us  p999 {:>8.1} us",
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3
    )
}

fn verdict(met: bool) -> &'static str {
    if met {
        "goal MET"
    } else {
        "goal MISSED"
    }
}

/// Appends without syncing, single thread, against a raw memcpy into a mapped file.
fn append(records: u64) {
    let dir = bench_dir();
    let payload = [0xA5u8; PAYLOAD_BYTES];
    let wal = Wal::open(
        &dir.path().join("wal"),
        options(64 << 20, SyncMethod::Auto, false),
    )
    .unwrap();
    let mut sampled = histogram();
    let started = Instant::now();
    for i in 0..records {
        if i % 64 == 0 {
            let t = Instant::now();
            wal.append_raw(kind::USER, &payload).unwrap();
            sampled.record(t.elapsed().as_nanos() as u64).unwrap();
        } else {
            wal.append_raw(kind::USER, &payload).unwrap();
        }
    }
    let ours = records as f64 / started.elapsed().as_secs_f64();
    wal.abandon();

    // Baseline: the same bytes memcpy'd into a mapped, preallocated file; no frame, no CRC,
    // no lock. The ceiling for "append copies into the map".
    let frame = frame_bytes(PAYLOAD_BYTES);
    let path = dir.path().join("raw");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let bytes = records as usize * frame;
    // SAFETY: fallocate on a descriptor this bench owns; no memory is passed.
    let allocated = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
    assert_eq!(allocated, 0);
    // SAFETY: the file is ours alone for the duration.
    let mut map = unsafe { memmap2::MmapMut::map_mut(&file).unwrap() };
    let source = vec![0xA5u8; frame];
    let started = Instant::now();
    for i in 0..records as usize {
        map[i * frame..(i + 1) * frame].copy_from_slice(&source);
    }
    std::hint::black_box(&map);
    let raw = records as f64 / started.elapsed().as_secs_f64();
    println!("## append without sync: {records} records of {PAYLOAD_BYTES} B, one thread");
    println!(
        "  vigil wal      {:>12.0} rec/s   per append {}",
        ours,
        quantiles(&sampled)
    );
    println!(
        "  raw mmap copy  {:>12.0} rec/s   (baseline: memcpy of the same frame bytes)",
        raw
    );
    println!(
        "  ratio vigil/raw {:.2}   {} (>= 3.0 M rec/s)",
        ours / raw,
        verdict(ours >= 3.0e6)
    );
}

/// One writer: append + sync per record, against pwrite + fdatasync on a preallocated file.
fn durable(ops: u64) {
    let dir = bench_dir();
    let payload = [0x5Au8; PAYLOAD_BYTES];
    let frame = frame_bytes(PAYLOAD_BYTES);
    let path = dir.path().join("raw");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let raw_bytes = 64u64 << 20;
    // SAFETY: fallocate on a descriptor this bench owns; no memory is passed.
    let allocated = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, raw_bytes as libc::off_t) };
    assert_eq!(allocated, 0);
    // Preallocated means written: zeros over the whole file first, as the WAL's segments are.
    let zeros = vec![0u8; 1 << 20];
    for at in (0..raw_bytes).step_by(zeros.len()) {
        file.write_all_at(&zeros, at).unwrap();
    }
    file.sync_all().unwrap();
    let source = vec![0x5Au8; frame];
    let mut raw_offset = 0u64;

    let variants = [
        ("io_uring", SyncMethod::IoUring, false),
        ("fdatasync", SyncMethod::Fdatasync, false),
        ("zero-filled", SyncMethod::Auto, true),
    ];
    let wals: Vec<Wal> = variants
        .iter()
        .map(|(name, method, zero)| {
            Wal::open(&dir.path().join(name), options(64 << 20, *method, *zero)).unwrap()
        })
        .collect();
    let mut hists: Vec<Histogram<u64>> = (0..wals.len()).map(|_| histogram()).collect();
    let mut raw = histogram();
    // Interleave in blocks so drift in the machine hits every contender alike.
    let block = 50;
    for _ in 0..ops / block {
        for _ in 0..block {
            let t = Instant::now();
            file.write_all_at(&source, raw_offset).unwrap();
            // SAFETY: fdatasync on our own descriptor.
            assert_eq!(unsafe { libc::fdatasync(file.as_raw_fd()) }, 0);
            raw.record(t.elapsed().as_nanos() as u64).unwrap();
            raw_offset += frame as u64;
        }
        for (wal, hist) in wals.iter().zip(hists.iter_mut()) {
            for _ in 0..block {
                let t = Instant::now();
                let lsn = wal.append_raw(kind::USER, &payload).unwrap();
                wal.sync(lsn).unwrap();
                hist.record(t.elapsed().as_nanos() as u64).unwrap();
            }
        }
    }
    println!("## durable append+sync, one writer, {ops} records of {PAYLOAD_BYTES} B each synced");
    println!("  raw pwrite+fdatasync      {}", quantiles(&raw));
    for ((name, _, _), (hist, wal)) in variants.iter().zip(hists.iter().zip(&wals)) {
        let ratio = hist.value_at_quantile(0.5) as f64 / raw.value_at_quantile(0.5) as f64;
        println!(
            "  vigil ({name:<11} {:<9})  {}   p50 ratio {ratio:.2}  {} (<= 1.1)",
            wal.sync_method(),
            quantiles(hist),
            verdict(ratio <= 1.1)
        );
    }
}

/// p50 of a 128 B pwrite + fdatasync into a preallocated, zero-written file (as the durable
/// section's baseline: no extent conversion in the sync), `ops` times: the physical cost of
/// one sync here, which bounds what any log can make durable per second.
fn fdatasync_p50(dir: &Path, ops: u64) -> (u64, Histogram<u64>) {
    let path = dir.join("fdatasync-probe");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let bytes = (ops + 1) * 4096;
    // SAFETY: fallocate on a descriptor this bench owns; no memory is passed.
    let allocated = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
    assert_eq!(allocated, 0);
    file.write_all_at(&vec![0u8; bytes as usize], 0).unwrap();
    file.sync_all().unwrap();
    let record = [0x44u8; PAYLOAD_BYTES];
    let mut hist = histogram();
    for i in 0..ops {
        let t = Instant::now();
        file.write_all_at(&record, i * PAYLOAD_BYTES as u64)
            .unwrap();
        // SAFETY: fdatasync on our own descriptor.
        assert_eq!(unsafe { libc::fdatasync(file.as_raw_fd()) }, 0);
        hist.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    (hist.value_at_quantile(0.5), hist)
}

/// 8 threads each appending and waiting for durability, against okaywal doing the same and
/// against the physical limit: `threads` records per fdatasync at the p50 fdatasync latency
/// measured in the same run (before and after the contenders, both kept in the limit).
/// The contenders alternate in short slices so that load from elsewhere hits all alike. Then
/// one lone writer's append + sync latency, which the commit delay must not raise.
fn group(threads: u64, slices: u32, slice_seconds: f64) {
    let dir = bench_dir();
    let (p50_before, _) = fdatasync_p50(dir.path(), 300);
    let payload = [0x33u8; PAYLOAD_BYTES];
    let duration = Duration::from_secs_f64(slice_seconds);
    let run = |op: Arc<dyn Fn() + Send + Sync>, hist: &mut Histogram<u64>| -> (u64, f64) {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (stop, count, op) = (stop.clone(), count.clone(), op.clone());
                std::thread::spawn(move || {
                    let mut hist = histogram();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        op();
                        hist.record(t.elapsed().as_nanos() as u64).unwrap();
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    hist
                })
            })
            .collect();
        let started = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        for handle in handles {
            hist.add(handle.join().unwrap()).unwrap();
        }
        (
            count.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64(),
        )
    };
    println!(
        "## {threads} threads, each append + wait durable, {PAYLOAD_BYTES} B, {slices} alternating slices of {slice_seconds} s"
    );
    let uring = Wal::open(
        &dir.path().join("vigil"),
        options(64 << 20, SyncMethod::IoUring, false),
    )
    .unwrap();
    let plain = Wal::open(
        &dir.path().join("vigil-fdatasync"),
        options(64 << 20, SyncMethod::Fdatasync, false),
    )
    .unwrap();
    let peer =
        okaywal::WriteAheadLog::recover(dir.path().join("okaywal"), okaywal::LogVoid).unwrap();
    let op_for = |wal: &Wal| -> Arc<dyn Fn() + Send + Sync> {
        let wal = wal.clone();
        Arc::new(move || {
            let lsn = wal.append_raw(kind::USER, &payload).unwrap();
            wal.sync(lsn).unwrap();
        })
    };
    let peer_op: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        let mut entry = peer.begin_entry().unwrap();
        entry.write_chunk(&payload).unwrap();
        entry.commit().unwrap();
    });
    let contenders: Vec<(String, Arc<dyn Fn() + Send + Sync>)> = vec![
        (format!("vigil ({})", uring.sync_method()), op_for(&uring)),
        (format!("vigil ({})", plain.sync_method()), op_for(&plain)),
        ("okaywal".to_string(), peer_op),
    ];
    let mut hists: Vec<Histogram<u64>> = contenders.iter().map(|_| histogram()).collect();
    let mut totals = vec![(0u64, 0f64); contenders.len()];
    for _ in 0..slices {
        for (i, (_, op)) in contenders.iter().enumerate() {
            let (count, seconds) = run(op.clone(), &mut hists[i]);
            totals[i] = (totals[i].0 + count, totals[i].1 + seconds);
        }
    }
    let rates: Vec<f64> = totals
        .iter()
        .map(|(count, seconds)| *count as f64 / seconds)
        .collect();
    for (i, (name, _)) in contenders.iter().enumerate() {
        println!(
            "  {name:<20} {:>10.0} durable rec/s   per record {}",
            rates[i],
            quantiles(&hists[i])
        );
    }
    let (p50_after, _) = fdatasync_p50(dir.path(), 300);
    // The lone writer's append + sync p50 in a log of its own: the sync as the log's files see
    // it. The limit takes the smallest p50 seen (the highest, hardest limit).
    let lone = Wal::open(
        &dir.path().join("vigil-lone"),
        options(64 << 20, SyncMethod::Auto, false),
    )
    .unwrap();
    let mut ours = histogram();
    for _ in 0..300 {
        let t = Instant::now();
        let lsn = lone.append_raw(kind::USER, &payload).unwrap();
        lone.sync(lsn).unwrap();
        ours.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    let p50 = p50_before
        .min(p50_after)
        .min(ours.value_at_quantile(0.5))
        .max(1);
    let limit = threads as f64 * 1e9 / p50 as f64;
    println!(
        "  limit: {threads} records per fdatasync at p50 {:.1} us (raw before {:.1}, after {:.1}, lone vigil {:.1}): {limit:.0} rec/s",
        p50 as f64 / 1e3,
        p50_before as f64 / 1e3,
        p50_after as f64 / 1e3,
        ours.value_at_quantile(0.5) as f64 / 1e3
    );
    for (i, wal) in [&uring, &plain].into_iter().enumerate() {
        let stats = wal.stats();
        let ratio = rates[i] / rates[2];
        let of_limit = rates[i] / limit;
        println!(
            "  {}: {:.0}% of the limit  {} (>= 60%); ratio to okaywal {ratio:.2}; {:.1} records per sync",
            contenders[i].0,
            of_limit * 100.0,
            verdict(of_limit >= 0.6),
            stats.appends as f64 / stats.syncs.max(1) as f64
        );
    }
    println!("  okaywal: {:.0}% of the limit", rates[2] / limit * 100.0);

    // The lone writer against the raw probe: the commit delay must cost it nothing.
    let (_, raw) = fdatasync_p50(dir.path(), 300);
    let ratio = ours.value_at_quantile(0.5) as f64 / raw.value_at_quantile(0.5) as f64;
    println!(
        "  lone writer, append + sync ({}): {}",
        lone.sync_method(),
        quantiles(&ours)
    );
    println!("  lone raw pwrite + fdatasync:        {}", quantiles(&raw));
    println!("  lone writer p50 ratio {ratio:.2}");
}

/// One producer appending at full speed while a committer syncs every `every` records.
fn pipeline(records: u64, every: u64) {
    let dir = bench_dir();
    let payload = [0x77u8; PAYLOAD_BYTES];
    let wal = Wal::open(
        &dir.path().join("wal"),
        options(64 << 20, SyncMethod::Auto, false),
    )
    .unwrap();
    let target = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let committer = {
        let (wal, target, done) = (wal.clone(), target.clone(), done.clone());
        std::thread::spawn(move || {
            let mut syncs = 0u64;
            loop {
                let want = target.load(Ordering::Acquire);
                if want > wal.durable_lsn() {
                    wal.sync(want).unwrap();
                    syncs += 1;
                } else if done.load(Ordering::Acquire) && want <= wal.durable_lsn() {
                    return syncs;
                } else {
                    std::thread::yield_now();
                }
            }
        })
    };
    let started = Instant::now();
    for i in 1..=records {
        let lsn = wal.append_raw(kind::USER, &payload).unwrap();
        if i % every == 0 || i == records {
            target.store(lsn, Ordering::Release);
        }
    }
    done.store(true, Ordering::Release);
    let syncs = committer.join().unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let rate = records as f64 / elapsed;
    // Baseline: the same bytes written with one pwrite per batch and an fdatasync after each.
    let frame = frame_bytes(PAYLOAD_BYTES);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("raw"))
        .unwrap();
    let bytes = records as usize * frame;
    // SAFETY: fallocate on a descriptor this bench owns; no memory is passed.
    let allocated = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
    assert_eq!(allocated, 0);
    let batch = vec![0x77u8; every as usize * frame];
    let started = Instant::now();
    let mut at = 0u64;
    while (at as usize) < bytes {
        let n = batch.len().min(bytes - at as usize);
        file.write_all_at(&batch[..n], at).unwrap();
        // SAFETY: fdatasync on our own descriptor.
        assert_eq!(unsafe { libc::fdatasync(file.as_raw_fd()) }, 0);
        at += n as u64;
    }
    let raw = records as f64 / started.elapsed().as_secs_f64();
    println!(
        "## one producer pipelining, a sync requested every {every} records, {records} records"
    );
    println!(
        "  vigil        {rate:>12.0} durable rec/s  ({syncs} syncs, {:.0} MB/s)",
        rate * frame as f64 / 1e6
    );
    println!("  raw batches  {raw:>12.0} durable rec/s  (baseline: pwrite of {every} frames + fdatasync, serial)");
    println!(
        "  ratio vigil/raw {:.2}   {} (>= 1 M durable rec/s)",
        rate / raw,
        verdict(rate >= 1.0e6)
    );
}

/// Recovery scan of a log of `bytes` bytes (warm page cache), against bare CRC32C speed.
fn scan(bytes: u64) {
    let dir = bench_dir();
    let wal_dir = dir.path().join("wal");
    let payload = [0x42u8; PAYLOAD_BYTES];
    let records = bytes / frame_bytes(PAYLOAD_BYTES) as u64;
    {
        let wal = Wal::open(&wal_dir, options(64 << 20, SyncMethod::Auto, false)).unwrap();
        for _ in 0..records {
            wal.append_raw(kind::USER, &payload).unwrap();
        }
        wal.close().unwrap();
    }
    let store = FsStore::open_reader(&wal_dir).unwrap();
    let mut best = f64::MAX;
    let mut frames = 0;
    let mut scanned = 0usize;
    for _ in 0..3 {
        let started = Instant::now();
        let result = scan_log(&store, RecoveryMode::Tail, &mut |_, _, _| {}).unwrap();
        best = best.min(started.elapsed().as_secs_f64());
        assert!(result.fault.is_none());
        frames = result.frames;
        scanned = result.segments.iter().map(|s| s.end_offset).sum();
    }
    let gib = scanned as f64 / (1u64 << 30) as f64;
    // Baseline: CRC32C alone over the same amount of memory.
    let buffer = vec![0x42u8; 64 << 20];
    let started = Instant::now();
    let mut sink = 0u32;
    let mut done = 0usize;
    while done < scanned {
        sink ^= crc32c(&buffer[..buffer.len().min(scanned - done)]);
        done += buffer.len();
    }
    std::hint::black_box(sink);
    let crc_rate = gib / started.elapsed().as_secs_f64();
    println!(
        "## recovery scan of {:.2} GiB ({frames} records, page cache warm, best of 3)",
        gib
    );
    println!("  vigil scan_log   {:>6.2} GiB/s", gib / best);
    println!(
        "  bare crc32c      {:>6.2} GiB/s  (baseline: checksum only, no parsing)",
        crc_rate
    );
    println!(
        "  ratio scan/crc {:.2}   {} (>= 3 GiB/s warm)",
        (gib / best) / crc_rate,
        verdict(gib / best >= 3.0)
    );
    scan_cold(&wal_dir, &store);
}

/// Every segment file of the log in `dir`.
fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

/// Drops the log's (clean) pages from the page cache, so the next read comes from the disk.
fn drop_cached(dir: &Path) {
    for path in segment_files(dir) {
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: fadvise on a descriptor we own; it only changes caching.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

/// The recovery scan with a cold page cache, against reading the same files sequentially
/// from the disk (the floor: the scan reads every byte of every segment).
fn scan_cold(dir: &Path, store: &FsStore) {
    let files = segment_files(dir);
    let total: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let (mut scan_best, mut read_best) = (f64::MAX, f64::MAX);
    let mut buffer = vec![0u8; 8 << 20];
    for _ in 0..3 {
        drop_cached(dir);
        let started = Instant::now();
        let result = scan_log(store, RecoveryMode::Tail, &mut |_, _, _| {}).unwrap();
        scan_best = scan_best.min(started.elapsed().as_secs_f64());
        assert!(result.fault.is_none());
        drop_cached(dir);
        let started = Instant::now();
        for path in &files {
            let mut file = std::fs::File::open(path).unwrap();
            while std::io::Read::read(&mut file, &mut buffer).unwrap() > 0 {}
        }
        read_best = read_best.min(started.elapsed().as_secs_f64());
    }
    let gib = total as f64 / (1u64 << 30) as f64;
    println!(
        "## recovery scan, page cache cold ({:.2} GiB of segment files, best of 3)",
        gib
    );
    println!("  vigil scan_log   {:>6.2} GiB/s", gib / scan_best);
    println!(
        "  sequential read  {:>6.2} GiB/s  (baseline: read(2) of the same files, 8 MiB chunks)",
        gib / read_best
    );
    println!("  ratio scan/read {:.2}", read_best / scan_best);
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let scan_bytes: u64 = std::env::var("VIGIL_WAL_BENCH_SCAN_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 30);
    let _ = Path::new(".");
    if wanted("append") {
        append(5_000_000);
    }
    if wanted("durable") {
        durable(2000);
    }
    if wanted("group") {
        group(8, 6, 0.5);
    }
    if wanted("pipeline") {
        pipeline(4_000_000, 4096);
    }
    if wanted("scan") {
        scan(scan_bytes);
    }
}
