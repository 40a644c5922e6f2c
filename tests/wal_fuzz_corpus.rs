//! Replays every seed in `fuzz/corpus/wal_*/` through the fuzz target bodies, so the corpus is
//! checked on stable Rust in every test run.
//!
//! The seeds are written by `VIGIL_WAL_WRITE_CORPUS=1 cargo test --test wal_fuzz_corpus`:
//! valid segments made by the real writer over the simulated store, and damaged copies.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vigil_runtime::fuzzing;
use vigil_runtime::model::{JobStatus, Usage};
use vigil_runtime::wal::frame::{encode_frame, salt_seed, FrameMeta};
use vigil_runtime::wal::log::{Retention, Wal, WalOptions};
use vigil_runtime::wal::record::{kind, JobFinished, Record};
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::sim::{FaultPlan, SimStore};
use vigil_runtime::wal::sync::SyncMethod;

/// A fuzz target body.
type FuzzBody = fn(&[u8]);

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seeds(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_seed_replays_through_its_target_without_a_failure() {
    maybe_write_corpus();
    let targets: [(&str, FuzzBody); 3] = [
        ("wal_scan", fuzzing::wal::scan),
        ("wal_frame_decode", fuzzing::wal::frame_decode),
        ("wal_ops", fuzzing::wal::operations),
    ];
    for (target, body) in targets {
        let seeds = seeds(target);
        assert!(seeds.len() >= 3, "{target}: the seed corpus is committed");
        for (path, bytes) in seeds {
            assert!(
                bytes.len() < 64 * 1024,
                "{}: seeds stay small",
                path.display()
            );
            body(&bytes);
        }
    }
}

/// The segment images (4 KiB each) of a small real log written by the log itself, closed.
fn log_images(records: u64, sync_every: u64) -> Vec<Vec<u8>> {
    let store = SimStore::new(FaultPlan::default(), 3);
    let options = WalOptions {
        segment_bytes: 4096,
        sync_method: SyncMethod::Fdatasync,
        recovery_mode: RecoveryMode::Tail,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        zero_fill_segments: false,
        open_from_checkpoint: false,
    };
    let wal = Wal::open_with_store(Arc::new(store.clone()), options).unwrap();
    for i in 0..records {
        let record = Record::JobFinished(JobFinished {
            job_id: i,
            unix_ms: 1_700_000_000_000 + i,
            status: JobStatus::Completed,
            exit_code: Some(0),
            signal: None,
            usage: Usage {
                cpu_usage_us: 5,
                memory_peak_bytes: 4096,
                wall_ms: 1,
                oom_kills: 0,
            },
            stdout: b"ok\n",
            stdout_truncated: false,
            stderr: b"",
            stderr_truncated: false,
            error: None,
            telemetry_after: &[1, 2, 3, 4],
        });
        let lsn = wal.append(&record).unwrap();
        if (i + 1) % sync_every == 0 {
            wal.sync(lsn).unwrap();
        }
    }
    wal.append_raw(kind::USER, b"user bytes").unwrap();
    wal.close().unwrap();
    store
        .durable_images()
        .into_iter()
        .map(|(_, image)| image)
        .collect()
}

/// Writes the seed corpus when `VIGIL_WAL_WRITE_CORPUS` is set.
fn maybe_write_corpus() {
    if std::env::var_os("VIGIL_WAL_WRITE_CORPUS").is_none() {
        return;
    }
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    // wal_scan: a count byte (segments - 1), then the segment images of a real log.
    let log = |images: &[Vec<u8>]| {
        let mut input = vec![(images.len() - 1) as u8];
        for image in images {
            input.extend_from_slice(image);
        }
        input
    };
    let valid = log_images(20, 1);
    let batched = log_images(20, 7);
    let rotated = log_images(90, 5);
    assert!(rotated.len() >= 3, "the seed log spans segments");
    write("wal_scan", "valid-synced-each", &log(&valid));
    write("wal_scan", "valid-batched", &log(&batched));
    write("wal_scan", "three-segments", &log(&rotated[..3]));
    let mut torn = valid[0].clone();
    torn[1500..1700].fill(0);
    write("wal_scan", "torn-middle", &log(&[torn]));
    let mut flipped = valid[0].clone();
    flipped[300] ^= 0x20;
    write("wal_scan", "flipped-byte", &log(&[flipped]));
    let mut tail = valid[0].clone();
    let used = tail.iter().rposition(|&b| b != 0).unwrap();
    tail[used + 9] = 0x77;
    write("wal_scan", "garbage-tail", &log(&[tail]));
    let mut header = rotated[1].clone();
    header[20] ^= 0x01;
    write(
        "wal_scan",
        "bad-middle-header",
        &log(&[rotated[0].clone(), header, rotated[2].clone()]),
    );
    write(
        "wal_scan",
        "swapped",
        &log(&[rotated[1].clone(), rotated[0].clone()]),
    );
    write("wal_scan", "header-only", &log(&[valid[0][..64].to_vec()]));
    write("wal_scan", "unused", &log(&[vec![0u8; 256]]));

    let mut frame = vec![0u8; 4 + 128];
    frame[..4].copy_from_slice(&salt_seed(9).to_le_bytes());
    let meta = FrameMeta {
        kind: kind::USER,
        lsn: 1,
        synced_lsn: 0,
        prev_checksum: 0,
    };
    encode_frame(&mut frame[4..], b"hello frame", meta, salt_seed(9)).unwrap();
    write("wal_frame_decode", "valid-user", &frame);
    let mut bad = frame.clone();
    bad[20] ^= 1;
    write("wal_frame_decode", "bad-checksum", &bad);
    let mut job = vec![0u8; 4 + 512];
    job[..4].copy_from_slice(&salt_seed(1).to_le_bytes());
    let mut payload = [0u8; 400];
    let record = Record::JobFinished(JobFinished {
        job_id: 1,
        unix_ms: 2,
        status: JobStatus::TimedOut,
        exit_code: None,
        signal: Some(9),
        usage: Usage::default(),
        stdout: b"x",
        stdout_truncated: true,
        stderr: b"y",
        stderr_truncated: false,
        error: Some("deadline"),
        telemetry_after: &[],
    });
    let len = record.encode_into(&mut payload).unwrap();
    let meta = FrameMeta {
        kind: kind::JOB_FINISHED,
        lsn: 5,
        synced_lsn: 4,
        prev_checksum: 77,
    };
    encode_frame(&mut job[4..], &payload[..len], meta, salt_seed(1)).unwrap();
    write("wal_frame_decode", "valid-job-finished", &job);

    // wal_ops: seed (2 bytes), fault plan byte, then ops (op % 8: 0-3 append, 4 sync,
    // 5 crash, 6-7 close and damage with 3 more bytes: what, where).
    write(
        "wal_ops",
        "appends-syncs-crashes",
        &[1, 2, 1, 0, 8, 4, 16, 17, 4, 5, 24, 4, 5, 5, 32, 4],
    );
    write(
        "wal_ops",
        "eio-then-crash",
        &[7, 7, 8, 1, 1, 4, 1, 4, 1, 4, 5, 1, 4],
    );
    write(
        "wal_ops",
        "large-records",
        &[0, 1, 1, 248, 240, 232, 4, 5, 224, 4, 5],
    );
    let mut rotating = vec![3, 4, 1];
    for n in 0..40u8 {
        rotating.extend_from_slice(&[(n % 4) | 0x80, 4]);
    }
    for (name, what) in [
        ("flip-byte", 0u8),
        ("zero-sector", 2),
        ("truncate", 3),
        ("lose-segment", 4 + 8),
        ("swap-segments", 5),
        ("foreign-segment", 6),
    ] {
        let mut ops = rotating.clone();
        ops.extend_from_slice(&[6, what, 0x21, 0x07, 0, 4]);
        write("wal_ops", &format!("damage-{name}"), &ops);
    }
}
