//! Opening from the newest checkpoint (`WalOptions::open_from_checkpoint`, what a one-shot
//! `vigil run` does): the open reads the newest segment, from the index checkpoint that opens
//! it, and of the older ones only their headers and first frames; what it reads gets the full
//! scan's verdict; damage it does not read fails every reader loudly; and a log whose
//! identity does not prove the older segments durable (a crash) is read whole.
mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{resident_pages, vigil_bin, vigil_output, TempDir};
use serde_json::{json, Value};
use vigil_runtime::exec::Limits;
use vigil_runtime::model::{JobState, JobStatus};
use vigil_runtime::runtime::{JobRequest, Runtime, RuntimeOptions};
use vigil_runtime::wal::frame::Lsn;
use vigil_runtime::wal::log::{Retention, Wal, WalError, WalOptions};
use vigil_runtime::wal::reader::Reader;
use vigil_runtime::wal::record::kind;
use vigil_runtime::wal::recovery::SegmentState;
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::storage::{
    hint_file, hint_text, read_hint_file, segment_file_name, write_hint_file, CheckpointHint,
    CHECKPOINT_HINT_FILE_NAME, HINT_COPY_STRIDE,
};
use vigil_runtime::wal::sync::SyncMethod;

const PAGE: usize = 4096;
const SEGMENT: u64 = 64 << 10;

fn options(from_checkpoint: bool) -> WalOptions {
    WalOptions {
        segment_bytes: SEGMENT,
        sync_method: SyncMethod::Fdatasync,
        recovery_mode: RecoveryMode::Tail,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        open_from_checkpoint: from_checkpoint,
        ..WalOptions::default()
    }
}

/// Opens `dir` with every new segment starting with an index checkpoint, and every clean
/// close ending with one (as the runtime's).
fn open(dir: &Path, from_checkpoint: bool) -> Result<(Wal, Vec<(Lsn, u16)>), WalError> {
    let mut seen = Vec::new();
    let wal = Wal::open_visiting(dir, options(from_checkpoint), &mut |f| {
        seen.push((f.lsn, f.kind))
    })?;
    wal.set_prologue(Box::new(|_| Some(br#"{"next_job_id":1}"#.to_vec())));
    wal.set_closing_checkpoint(Box::new(|_| Some(br#"{"next_job_id":1}"#.to_vec())));
    Ok((wal, seen))
}

/// A closed log of `records` user records over several 64 KiB segments; returns the
/// segments that hold frames.
fn closed_log(dir: &Path, records: u64) -> Vec<u64> {
    let (wal, _) = open(dir, false).unwrap();
    for i in 0..records {
        wal.append_raw(kind::USER, &[i as u8; 200]).unwrap();
    }
    wal.close().unwrap();
    let (wal, _) = open(dir, false).unwrap();
    let used: Vec<u64> = wal
        .recovery()
        .scan
        .segments
        .iter()
        .filter(|s| s.state == SegmentState::Used)
        .map(|s| s.seq)
        .collect();
    wal.close().unwrap();
    used
}

fn segment(dir: &Path, seq: u64) -> PathBuf {
    dir.join(segment_file_name(seq))
}

/// Pages of `path` from `from` on that are in the page cache.
fn resident_from(path: &Path, from: usize) -> usize {
    resident_pages(path, from..usize::MAX)
}

fn drop_cached(path: &Path) {
    let file = std::fs::File::open(path).unwrap();
    // SAFETY: fadvise on a descriptor we own.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
}

/// Every record of the log in `dir` from LSN 1, or the reader's error.
fn read_all(dir: &Path) -> Result<Vec<Lsn>, WalError> {
    let mut reader = Reader::open_dir(dir, 1)?;
    let mut lsns = Vec::new();
    while reader.read_batch(512, &mut |f| lsns.push(f.lsn))? > 0 {}
    Ok(lsns)
}

#[test]
fn the_open_reads_the_newest_segment_from_its_checkpoint_and_only_the_heads_of_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let used = closed_log(&dir, 1000);
    assert!(used.len() >= 4, "the test needs several segments: {used:?}");
    let newest = *used.last().unwrap();
    for &seq in &used {
        drop_cached(&segment(&dir, seq));
        assert_eq!(resident_from(&segment(&dir, seq), 0), 0);
    }
    let full_next = {
        let (wal, seen) = open(&dir, false).unwrap();
        assert_eq!(seen.first().map(|s| s.0), Some(1));
        let next = wal.last_lsn() + 1;
        wal.close().unwrap();
        next
    };
    for &seq in &used {
        drop_cached(&segment(&dir, seq));
    }
    // With the close's durable LSN but no checkpoint position recorded, the open starts at
    // the head of the newest segment.
    forget_position(&dir);
    let (wal, seen) = open(&dir, true).unwrap();
    // The visitor starts at the newest segment's checkpoint and goes to the end.
    let states: Vec<(u64, SegmentState)> = wal
        .recovery()
        .scan
        .segments
        .iter()
        .map(|s| (s.seq, s.state))
        .collect();
    let newest_first = first_lsn_of(&wal, newest);
    assert_eq!(seen.first(), Some(&(newest_first, kind::INDEX_CHECKPOINT)));
    assert_eq!(seen.last().map(|s| s.0), Some(full_next - 1));
    for &seq in &used {
        let want = if seq == newest {
            SegmentState::Used
        } else {
            SegmentState::Sealed
        };
        assert!(states.contains(&(seq, want)), "{seq}: {states:?}");
        if seq != newest {
            // Its header and first frame: the first page or two, nothing further.
            let pages = resident_from(&segment(&dir, seq), 2 * PAGE);
            assert_eq!(pages, 0, "segment {seq}: the open read its frames");
        }
    }
    assert_eq!(wal.recovery().scan.first_lsn, Some(1));
    assert_eq!(wal.recovery().scan.next_lsn, full_next);
    // Appends go on where the log ends, and the whole log reads back and verifies.
    let lsn = wal.append_raw(kind::USER, b"after").unwrap();
    assert_eq!(lsn, full_next);
    wal.close().unwrap();
    // Every record, in order, without a gap (the close adds a checkpoint after them).
    let lsns = read_all(&dir).unwrap();
    assert!(lsns.len() as u64 >= full_next, "{}", lsns.len());
    assert_eq!(lsns, (1..=lsns.len() as u64).collect::<Vec<_>>());
    let (wal, _) = open(&dir, false).unwrap();
    assert_eq!(wal.last_lsn(), lsns.len() as u64);
    wal.close().unwrap();
}

/// An open from the last checkpoint runs past damage it does not read and closes; then a
/// reader of the whole log fails, naming segment `seq` (the first damage).
fn open_past_unread_damage(dir: &Path, seq: u64) {
    let (wal, _) = open(dir, true).unwrap();
    wal.close().unwrap();
    match read_all(dir) {
        Err(WalError::Corrupt(fault)) => assert_eq!(fault.seq, seq, "{fault:?}"),
        other => panic!("a reader went over damage quietly: {other:?}"),
    }
}

/// The LSN of the first frame of segment `seq`, as the open of `wal` found it.
fn first_lsn_of(wal: &Wal, seq: u64) -> Lsn {
    wal.recovery()
        .scan
        .segments
        .iter()
        .find(|s| s.seq == seq)
        .and_then(|s| s.first_lsn)
        .unwrap()
}

/// The hint the last clean close left: (segment, offset, LSN) of its index checkpoint.
fn hint(dir: &Path) -> (u64, usize, Lsn) {
    let h = read_hint(dir);
    (h.seq, h.offset, h.lsn)
}

/// The LSN of the last record of the closed log in `dir`.
fn wal_last(dir: &Path) -> Lsn {
    *read_all(dir).unwrap().last().unwrap()
}

/// Rewrites the hint without a checkpoint position (its durable LSN kept).
fn forget_position(dir: &Path) {
    let hint = CheckpointHint {
        seq: 0,
        offset: 0,
        lsn: 0,
        ..read_hint(dir)
    };
    write_hint_file(dir, hint).unwrap();
}

fn read_hint(dir: &Path) -> CheckpointHint {
    read_hint_file(dir)
        .unwrap()
        .expect("a clean close leaves a hint")
}

#[test]
fn the_open_starts_at_the_checkpoint_the_last_close_recorded_and_reads_nothing_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let used = closed_log(&dir, 1000);
    let newest = *used.last().unwrap();
    // The close ended the log with an index checkpoint and recorded where it lies.
    let (seq, offset, lsn) = hint(&dir);
    assert_eq!(seq, newest);
    assert!(
        offset > 2 * PAGE,
        "the test needs frames before it: {offset}"
    );
    for &seq in &used {
        drop_cached(&segment(&dir, seq));
    }
    let (wal, seen) = open(&dir, true).unwrap();
    assert_eq!(
        seen,
        vec![(lsn, kind::INDEX_CHECKPOINT)],
        "only the checkpoint is read"
    );
    assert_eq!(wal.recovery().scan.first_lsn, Some(1));
    assert_eq!(wal.last_lsn(), lsn);
    // Of the newest segment, the header and first frame, then the page of the checkpoint
    // on: nothing in between.
    let file = segment(&dir, newest);
    let between = resident_pages(&file, 2 * PAGE..offset / PAGE * PAGE);
    assert_eq!(between, 0, "the open read frames before the checkpoint");
    assert!(resident_pages(&file, offset / PAGE * PAGE..offset / PAGE * PAGE + PAGE) > 0);
    // Appends go on after it; the log reads back whole and dense.
    let mut lsns = vec![wal.append_raw(kind::USER, b"after").unwrap()];
    lsns.push(wal.append_raw(kind::USER, b"after, too").unwrap());
    assert_eq!(lsns, vec![lsn + 1, lsn + 2]);
    wal.sync_all().unwrap();
    // A crash: the identity still proves the recorded checkpoint durable, so the next open
    // starts there again and reads what followed it.
    wal.abandon();
    let (wal, seen) = open(&dir, true).unwrap();
    let read: Vec<Lsn> = seen.iter().map(|s| s.0).collect();
    assert_eq!(read, vec![lsn, lsn + 1, lsn + 2]);
    wal.close().unwrap();
    let all = read_all(&dir).unwrap();
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>());
    assert!(all.len() as u64 > lsn + 2);
}

#[test]
fn a_hint_that_does_not_check_out_is_ignored_and_the_newest_segment_read_from_its_head() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let used = closed_log(&dir, 1000);
    let newest = *used.last().unwrap();
    let good = read_hint(&dir);
    let newest_head = {
        let (wal, _) = open(&dir, false).unwrap();
        let first = first_lsn_of(&wal, newest);
        wal.abandon();
        first
    };
    let (seq, offset, lsn) = (good.seq, good.offset, good.lsn);
    let bad = [
        // Another place, another LSN, one past the durable end, another segment (another
        // log and torn text below).
        CheckpointHint {
            offset: offset + 8,
            ..good
        },
        CheckpointHint {
            lsn: lsn - 1,
            ..good
        },
        CheckpointHint {
            lsn: lsn + 1,
            durable_lsn: lsn,
            ..good
        },
        CheckpointHint {
            seq: seq - 1,
            ..good
        },
    ];
    // A hint of another log proves nothing, its durable LSN included: the log is read whole.
    let foreign = CheckpointHint {
        log_id: good.log_id ^ 1,
        ..good
    };
    let cases = bad
        .iter()
        .map(|&b| (b, (newest_head, kind::INDEX_CHECKPOINT)))
        .chain([(foreign, (1, kind::USER))]);
    for (bad, first) in cases {
        write_hint_file(&dir, bad).unwrap();
        let (wal, seen) = open(&dir, true).unwrap();
        assert_eq!(seen.first(), Some(&first), "{bad:?}");
        assert_eq!(seen.last().map(|s| s.0), Some(wal.last_lsn()));
        wal.abandon();
    }
    // The good one is used, from either copy while the other is torn (half its text, or one
    // digit changed): what a crash in the middle of a close's rewrite leaves.
    let path = dir.join(CHECKPOINT_HINT_FILE_NAME);
    let whole = hint_file(good);
    let text = hint_text(good);
    let flipped = text.replacen(&format!("{offset:020}"), &format!("{:020}", offset + 8), 1);
    for copy in 0..2 {
        for torn in [&text.as_bytes()[..text.len() / 2], flipped.as_bytes()] {
            let mut bytes = whole.clone();
            let at = copy * HINT_COPY_STRIDE;
            bytes[at..at + text.len()].fill(0);
            bytes[at..at + torn.len()].copy_from_slice(torn);
            std::fs::write(&path, &bytes).unwrap();
            let (wal, seen) = open(&dir, true).unwrap();
            assert_eq!(
                seen.first(),
                Some(&(lsn, kind::INDEX_CHECKPOINT)),
                "copy {copy}"
            );
            wal.abandon();
        }
    }
    // One valid line alone (how the file was first written) is one copy: used.
    std::fs::write(&path, text.as_bytes()).unwrap();
    let (wal, seen) = open(&dir, true).unwrap();
    assert_eq!(seen.first(), Some(&(lsn, kind::INDEX_CHECKPOINT)));
    wal.abandon();
    // Both copies torn, a torn line alone, or an empty file: the durable end it recorded is
    // unknown, and every open and reader says so, naming the file, instead of trusting less.
    let mut bytes = whole.clone();
    for copy in 0..2 {
        let at = copy * HINT_COPY_STRIDE;
        bytes[at + 40] ^= 1;
    }
    for damaged in [bytes, flipped.as_bytes().to_vec(), Vec::new()] {
        std::fs::write(&path, &damaged).unwrap();
        for from_checkpoint in [true, false] {
            match open(&dir, from_checkpoint) {
                Err(error) => assert!(error.to_string().contains("CHECKPOINT"), "{error}"),
                Ok(_) => panic!("opened over a damaged hint ({} bytes)", damaged.len()),
            }
        }
        match read_all(&dir) {
            Err(error) => assert!(error.to_string().contains("CHECKPOINT"), "{error}"),
            Ok(_) => panic!("read over a damaged hint ({} bytes)", damaged.len()),
        }
    }
    // Put back whole, the log opens; its close rewrites one copy and the hint reads the new
    // claim.
    std::fs::write(&path, &whole).unwrap();
    let (wal, _) = open(&dir, true).unwrap();
    wal.append_raw(kind::USER, b"one more").unwrap();
    wal.close().unwrap();
    assert_eq!(read_hint(&dir).lsn, wal_last(&dir));
    let after = std::fs::read(&path).unwrap();
    assert_eq!(after.len(), whole.len());
    let changed = (0..2)
        .filter(|c| {
            let r = c * HINT_COPY_STRIDE..(c + 1) * HINT_COPY_STRIDE;
            after[r.clone()] != whole[r]
        })
        .count();
    assert_eq!(changed, 1, "a close rewrites one copy");
}

#[test]
fn damage_the_open_does_not_read_fails_every_reader_and_a_full_open_loudly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let used = closed_log(&dir, 1000);
    let victim = segment(&dir, used[1]);
    // A flipped byte well inside the frames of a sealed segment.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&victim)
        .unwrap();
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, 20_000).unwrap();
    file.write_all_at(&[b[0] ^ 0x40], 20_000).unwrap();
    file.sync_all().unwrap();
    drop(file);
    // The checkpoint open does not read it, and changes nothing before the end.
    open_past_unread_damage(&dir, used[1]);
    match open(&dir, false) {
        Err(WalError::Corrupt(fault)) => assert_eq!(fault.seq, used[1], "{fault:?}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the full open accepted damage"),
    }
    // Damage in the newest segment before the checkpoint the last close recorded is not
    // read by the checkpoint open either; every reader names it.
    let newest_seq = *used.last().unwrap();
    let newest = segment(&dir, newest_seq);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap();
    file.write_all_at(&[0xFF; 8], 4096).unwrap();
    drop(file);
    open_past_unread_damage(&dir, used[1]);
    // Without that position, the open reads the newest segment from its head, and refuses.
    forget_position(&dir);
    match open(&dir, true) {
        Err(WalError::Corrupt(fault)) => assert_eq!(fault.seq, newest_seq, "{fault:?}"),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("the checkpoint open accepted damage it read"),
    }
}

#[test]
fn a_log_whose_identity_does_not_prove_the_older_segments_durable_is_read_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    // A writer that syncs and then dies without closing: the identity records no durable
    // LSN past the older segments.
    let (wal, _) = open(&dir, false).unwrap();
    for i in 0..1000u64 {
        wal.append_raw(kind::USER, &[i as u8; 200]).unwrap();
    }
    wal.sync_all().unwrap();
    let last = wal.last_lsn();
    wal.abandon();
    let (wal, seen) = open(&dir, true).unwrap();
    assert_eq!(seen.first().map(|s| s.0), Some(1), "read whole");
    assert!(wal
        .recovery()
        .scan
        .segments
        .iter()
        .all(|s| s.state != SegmentState::Sealed));
    assert_eq!(wal.last_lsn(), last);
    wal.close().unwrap();
    // After that clean close, the next open reads from the newest checkpoint.
    let (wal, seen) = open(&dir, true).unwrap();
    assert_eq!(seen.first().map(|s| s.1), Some(kind::INDEX_CHECKPOINT));
    assert!(seen.first().map(|s| s.0) > Some(1));
    wal.close().unwrap();
}

/// `vigil ARGS` on the data dir `data` with 64 KiB segments: (exit code, stdout, stderr).
fn vigil(data: &Path, args: &[&str]) -> (i32, String, String) {
    vigil_output(data, &[&["--wal-segment-bytes", "64K"], args].concat())
}

fn run_json(data: &Path, args: &str) -> Value {
    let (code, out, err) = vigil(
        data,
        &["run", "exec", "--sandbox", "off", "--args", args, "--json"],
    );
    assert_eq!(code, 0, "{out} {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn one_shot_runs_continue_job_ids_and_interrupt_a_dead_servers_job_known_from_a_checkpoint() {
    let dir = TempDir::new("open-checkpoint");
    let data = dir.path().join("data");
    let first = run_json(&data, r#"{"argv":["/bin/true"]}"#);
    // A server runs a long job; one-shot runs beside it fill several segments, so the job's
    // start lies in an older segment and the newest checkpoints carry it as running.
    let socket = dir.path().join("vigil.sock");
    let sock = socket.display().to_string();
    let mut server = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["--wal-segment-bytes", "64K", "serve", "--socket", &sock])
        .env_remove("VIGIL_CGROUP_MODE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vigil serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Command::new(vigil_bin())
        .args(["call", "health", "--socket", &sock])
        .output()
        .map_or(true, |o| !o.status.success())
    {
        assert!(Instant::now() < deadline, "no server");
        assert!(server.try_wait().unwrap().is_none(), "server exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut long = Command::new(vigil_bin())
        .args([
            "run",
            "exec",
            "--socket",
            &sock,
            "--sandbox",
            "off",
            "--json",
        ])
        .args(["--args", r#"{"argv":["/bin/sleep","60"]}"#])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the server's job is logged as running.
    let deadline = Instant::now() + Duration::from_secs(30);
    let long_id = loop {
        let (_, out, _) = vigil(&data, &["jobs", "--json"]);
        let jobs: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let running = jobs.as_array().and_then(|a| {
            a.iter()
                .find(|j| j["status"] == "running")
                .map(|j| j["job_id"].as_u64().unwrap())
        });
        if let Some(id) = running {
            break id;
        }
        assert!(
            Instant::now() < deadline,
            "the server's job never showed: {out}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let big = r#"{"argv":["/bin/sh","-c","head -c 30000 /dev/zero | tr '\\0' x"]}"#;
    let mut ids = vec![first["job_id"].as_u64().unwrap()];
    for _ in 0..12 {
        let v = run_json(&data, big);
        ids.push(v["job_id"].as_u64().unwrap());
    }
    let (_, out, _) = vigil(&data, &["wal", "stats", "--json"]);
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert!(
        stats["segments_used"].as_u64().unwrap_or(0) >= 3,
        "the test needs several segments: {stats}"
    );
    // The server is alive: no one-shot run interrupted its job.
    let (_, out, _) = vigil(&data, &["job", &long_id.to_string(), "--json"]);
    assert!(out.contains("\"running\""), "{out}");
    // The server dies; the next one-shot run, which reads only the newest segment, finds
    // its job in the checkpoint, with its dead owner, and interrupts it.
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = long.kill();
    let _ = long.wait();
    let wal = data.join("wal");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&wal)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    // The pre-created next segment and the newest one with frames are read; the rest not.
    let older = &segments[..segments.len() - 2];
    assert!(older.len() >= 2, "{segments:?}");
    for p in older {
        drop_cached(p);
    }
    let v = run_json(&data, r#"{"argv":["/bin/true"]}"#);
    ids.push(v["job_id"].as_u64().unwrap());
    for p in older {
        assert_eq!(
            resident_from(p, 2 * PAGE),
            0,
            "{}: the run read it",
            p.display()
        );
    }
    let (_, out, _) = vigil(&data, &["job", &long_id.to_string(), "--json"]);
    let job: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(job["status"], "interrupted", "{job}");
    // Job ids went on without reuse, past the server's.
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "{ids:?}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(!ids.contains(&long_id));
    let (code, out, err) = vigil(&data, &["wal", "verify"]);
    assert_eq!(code, 0, "{out} {err}");
}

fn runtime_options(dir: &Path, from_checkpoint: bool) -> RuntimeOptions {
    let mut o = RuntimeOptions::new(dir);
    o.background_sampling = false;
    o.wal.segment_bytes = SEGMENT;
    o.wal.open_from_checkpoint = from_checkpoint;
    o
}

#[test]
fn a_one_shot_open_after_a_clean_close_knows_every_open_session() {
    // More open sessions than a closing checkpoint of an open from there can carry (each
    // with 800 bytes of metadata): the close must not end the log with a checkpoint that
    // leaves some out, or a one-shot run would refuse jobs naming them.
    let dir = TempDir::new("checkpoint-sessions");
    let rt = Runtime::open(runtime_options(dir.path(), false)).unwrap();
    let meta = json!({ "note": "m".repeat(800) });
    let ids: Vec<String> = (0..100)
        .map(|_| rt.create_session(&meta).unwrap().session)
        .collect();
    rt.close().unwrap();
    let rt = Runtime::open(runtime_options(dir.path(), true)).unwrap();
    let missing: Vec<&String> = ids.iter().filter(|id| rt.session(id).is_err()).collect();
    assert!(
        missing.is_empty(),
        "lost {} of {} sessions",
        missing.len(),
        ids.len()
    );
    let req = JobRequest {
        capability: "file.write".into(),
        args: json!({"path": "out.txt", "content": "x"}),
        limits: Limits::default(),
        root: dir.path().to_path_buf(),
        session: Some(ids[0].clone()),
        dry_run: false,
        require_enforcement: false,
    };
    let out = rt.run(&req).unwrap();
    assert_eq!(
        out.result.status,
        JobStatus::Completed,
        "{:?}",
        out.result.error
    );
    rt.close().unwrap();
    // With few sessions the close does end with the index checkpoint, and the next one-shot
    // open starts there and still knows them all.
    let dir = TempDir::new("checkpoint-few-sessions");
    let rt = Runtime::open(runtime_options(dir.path(), false)).unwrap();
    let ids: Vec<String> = (0..5)
        .map(|_| rt.create_session(&json!({"n": 1})).unwrap().session)
        .collect();
    rt.close().unwrap();
    let wal_dir = dir.path().join("wal");
    let hint = read_hint_file(&wal_dir).unwrap().unwrap();
    assert_ne!(hint.seq, 0, "the close recorded its checkpoint");
    let rt = Runtime::open(runtime_options(dir.path(), true)).unwrap();
    assert!(ids.iter().all(|id| rt.session(id).is_ok()));
    rt.close().unwrap();
}

#[test]
fn a_hint_of_another_log_is_replaced_whole_by_the_next_close() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    closed_log(&dir, 300);
    let good = read_hint(&dir);
    // Another log's claim, larger than this one's (a file copied in from elsewhere).
    let foreign = CheckpointHint {
        log_id: good.log_id ^ 1,
        durable_lsn: good.durable_lsn + 1000,
        ..good
    };
    write_hint_file(&dir, foreign).unwrap();
    let (wal, _) = open(&dir, false).unwrap();
    wal.append_raw(kind::USER, b"after").unwrap();
    wal.close().unwrap();
    // Rewriting one copy would leave the other log's larger claim beside this one's; the
    // close makes the file anew with this log's claim in both.
    let now = read_hint(&dir);
    assert_eq!(now.log_id, good.log_id);
    assert_eq!(now.durable_lsn, wal_last(&dir));
    let bytes = std::fs::read(dir.join(CHECKPOINT_HINT_FILE_NAME)).unwrap();
    assert_eq!(bytes, hint_file(now));
}

/// A one-shot run's close (`Runtime::close_for_exit`): the log closed as a drop would close it
/// (ending in the index checkpoint its hint names, the durable end recorded), the job's TMPDIR
/// removed, and the next open finding a clean end and the job.
#[test]
fn a_runtime_closed_for_exit_leaves_the_log_closed_and_no_tmpdir_behind() {
    let dir = TempDir::new("checkpoint-close-for-exit");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let rt = Runtime::open(runtime_options(dir.path(), true)).unwrap();
    let req = JobRequest {
        capability: "shell".into(),
        args: json!({"cmd": "echo hi > \"$TMPDIR/scratch\"; echo done"}),
        limits: Limits::default(),
        root: root.clone(),
        session: None,
        dry_run: false,
        require_enforcement: false,
    };
    let out = rt.run_last(&req).unwrap();
    assert_eq!(
        out.result.status,
        JobStatus::Completed,
        "{:?}",
        out.result.error
    );
    let job_id = out.job_id;
    let last = rt.wal().last_lsn();
    rt.close_for_exit().unwrap();
    let wal_dir = dir.path().join("wal");
    let hint = read_hint_file(&wal_dir).unwrap().unwrap();
    assert_eq!(
        (hint.lsn, hint.durable_lsn),
        (last, last),
        "the log ends in the checkpoint the hint names, durable"
    );
    let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "TMPDIRs left behind: {left:?}");
    // The next one-shot open finds a clean end; a full one has the job.
    let rt = Runtime::open(runtime_options(dir.path(), true)).unwrap();
    assert_eq!(rt.wal().recovery().truncated_bytes, 0);
    rt.close().unwrap();
    let rt = Runtime::open(runtime_options(dir.path(), false)).unwrap();
    let job = rt.job(job_id).expect("the job is in the log");
    assert_eq!(job.status, JobState::Ended(JobStatus::Completed));
    rt.close().unwrap();
}
