//! `vigil wal ...` end to end: the real binary over a log written by the library.
mod common;

use std::path::Path;
use std::process::{Command, Output};

use vigil_runtime::model::{JobStatus, Limits, Usage};
use vigil_runtime::wal::frame::SEGMENT_HEADER_BYTES;
use vigil_runtime::wal::log::{Retention, Wal, WalOptions};
use vigil_runtime::wal::record::{
    JobFinished, JobStarted, Record, SessionCreated, TelemetrySample,
};
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::storage::segment_file_name;
use vigil_runtime::wal::sync::SyncMethod;

fn vigil(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(common::vigil_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_log(data_dir: &Path) {
    let options = WalOptions {
        segment_bytes: 64 * 1024,
        sync_method: SyncMethod::Auto,
        recovery_mode: RecoveryMode::Tail,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        zero_fill_segments: false,
        open_from_checkpoint: false,
    };
    let wal = Wal::open(&data_dir.join("wal"), options).unwrap();
    wal.append(&Record::SessionCreated(SessionCreated {
        session: "s-1",
        unix_ms: 1,
        meta_json: "{}",
    }))
    .unwrap();
    for job_id in 0..20u64 {
        wal.append(&Record::JobStarted(JobStarted {
            job_id,
            unix_ms: 1000 + job_id,
            capability: "shell",
            args_json: r#"{"cmd":"echo hi"}"#,
            limits: Limits {
                timeout_ms: Some(2000),
                ..Limits::default()
            },
            session: Some("s-1"),
            root: None,
            telemetry_before: &[1, 2, 3],
        }))
        .unwrap();
        wal.append(&Record::JobFinished(JobFinished {
            job_id,
            unix_ms: 2000 + job_id,
            status: JobStatus::Completed,
            exit_code: Some(0),
            signal: None,
            usage: Usage {
                cpu_usage_us: 10,
                memory_peak_bytes: 4096,
                wall_ms: 3,
                oom_kills: 0,
            },
            stdout: b"hi\n",
            stdout_truncated: false,
            stderr: b"",
            stderr_truncated: false,
            error: None,
            telemetry_after: &[4, 5],
        }))
        .unwrap();
    }
    wal.append(&Record::TelemetrySample(TelemetrySample {
        unix_ms: 5,
        body: &[9; 16],
    }))
    .unwrap();
    wal.sync_all().unwrap();
}

#[test]
fn verify_dump_stats_tail_and_recover_work_on_a_healthy_log() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path());

    let verify = vigil(data.path(), &["wal", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    assert!(
        text(&verify.stdout).contains("43 records"),
        "{}",
        text(&verify.stdout)
    );

    let dump = vigil(data.path(), &["wal", "dump", "--json"]);
    assert!(dump.status.success());
    let lines: Vec<serde_json::Value> = text(&dump.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 43, "42 records and the closing checkpoint");
    assert_eq!(lines[42]["kind"], "checkpoint");
    assert_eq!(lines[0]["kind"], "session_created");
    assert_eq!(lines[1]["kind"], "job_started");
    assert_eq!(lines[1]["args"]["cmd"], "echo hi");
    assert_eq!(lines[2]["status"], "completed");
    assert_eq!(lines[2]["stdout"], "hi\n");
    assert_eq!(lines[41]["lsn"], 42);

    let stats = vigil(data.path(), &["wal", "stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats["records"], 43);
    assert_eq!(stats["records_by_kind"]["job_finished"], 20);
    assert_eq!(stats["fault"], serde_json::Value::Null);

    let tail = vigil(data.path(), &["wal", "tail", "-n", "3", "--json"]);
    let lsns: Vec<u64> = text(&tail.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["lsn"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(lsns, vec![41, 42, 43]);

    let recover = vigil(data.path(), &["wal", "recover", "--json"]);
    assert!(recover.status.success(), "{}", text(&recover.stderr));
    let recover: serde_json::Value = serde_json::from_slice(&recover.stdout).unwrap();
    assert_eq!(
        (recover["ok"].as_bool(), recover["records"].as_u64()),
        (Some(true), Some(43))
    );
}

#[test]
fn verify_fails_on_corruption_naming_segment_offset_and_lsn_and_salvage_recovers() {
    let data = tempfile::tempdir().unwrap();
    write_log(data.path());
    let segment = data.path().join("wal").join(segment_file_name(1));
    let mut bytes = std::fs::read(&segment).unwrap();
    // Damage the payload of the third frame (LSN 3).
    let mut offset = SEGMENT_HEADER_BYTES;
    for _ in 0..2 {
        let len = u32::from_le_bytes(bytes[offset + 8..offset + 12].try_into().unwrap()) as usize;
        offset += (40 + len).next_multiple_of(8);
    }
    bytes[offset + 45] ^= 0xFF;
    std::fs::write(&segment, &bytes).unwrap();

    let verify = vigil(data.path(), &["wal", "verify"]);
    assert_eq!(verify.status.code(), Some(1));
    let out = text(&verify.stdout);
    assert!(out.contains(&segment.display().to_string()), "{out}");
    assert!(
        out.contains(&format!("offset {offset}")) && out.contains("LSN 3"),
        "{out}"
    );

    let json = vigil(data.path(), &["wal", "verify", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["fault"]["kind"], "corruption");
    assert_eq!(report["fault"]["lsn"], 3);
    assert_eq!(report["fault"]["offset"], offset);

    let refused = vigil(data.path(), &["wal", "recover", "--mode", "tail"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    let salvage = vigil(
        data.path(),
        &["wal", "recover", "--mode", "salvage", "--json"],
    );
    // Salvage only reads: it says what still validates and points to repair, exiting 1
    // because the log is still damaged.
    assert_eq!(salvage.status.code(), Some(1), "{}", text(&salvage.stderr));
    let salvage: serde_json::Value = serde_json::from_slice(&salvage.stdout).unwrap();
    assert_eq!(salvage["records"], 42);
    assert_eq!(salvage["skipped"][0]["lsn"], 3);
    assert_eq!(salvage["changed"], false);
    assert_eq!(salvage["next_step"], "vigil wal repair");

    // The way out: repair keeps every valid record at its LSN, turns LSN 3 into a hole,
    // keeps the damaged segment aside, and leaves a log that verifies.
    let damaged_bytes = std::fs::read(&segment).unwrap();
    let repair = vigil(data.path(), &["wal", "repair", "--json"]);
    assert!(repair.status.success(), "{}", text(&repair.stderr));
    let report: serde_json::Value = serde_json::from_slice(&repair.stdout).unwrap();
    assert_eq!(
        report["holes"],
        serde_json::json!([{"from_lsn": 3, "to_lsn": 4}])
    );
    assert_eq!(report["kept_records"], 42);
    let kept = std::path::Path::new(report["damaged_dir"].as_str().unwrap())
        .join(segment.file_name().unwrap());
    assert_eq!(
        std::fs::read(kept).unwrap(),
        damaged_bytes,
        "damaged files kept as they were"
    );
    let verify = vigil(data.path(), &["wal", "verify"]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    let dump = vigil(data.path(), &["wal", "dump", "--json"]);
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    let lines: Vec<serde_json::Value> = text(&dump.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[2]["lsn"], 3);
    assert_eq!(lines[2]["kind"], "hole");
    let repaired = &lines[report["repair_lsn"].as_u64().unwrap() as usize - 1];
    assert_eq!(repaired["kind"], "repaired");
    assert_eq!(repaired["holes"][0]["from_lsn"], 3);
    let lsns: Vec<u64> = lines.iter().map(|l| l["lsn"].as_u64().unwrap()).collect();
    assert_eq!(
        lsns,
        (1..=lines.len() as u64).collect::<Vec<_>>(),
        "dense LSNs"
    );
}

#[test]
fn a_missing_log_is_a_clear_error_not_a_panic() {
    let data = tempfile::tempdir().unwrap();
    let out = vigil(data.path(), &["wal", "verify"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no WAL at"),
        "{}",
        text(&out.stderr)
    );
    let bad = vigil(data.path(), &["wal", "recover", "--mode", "nonsense"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn a_new_data_directory_and_its_log_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("fresh");
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 0; exec "$0" --data-dir "$1" run exec --args '{"argv":["/bin/true"]}'"#)
        .arg(common::vigil_bin())
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("wal")), 0o700, "the log directory");
    for entry in std::fs::read_dir(data.join("wal")).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

/// The README's promise: a new data directory's first job reserves 24 MiB of log (an 8 MiB
/// first segment and the 16 MiB next one, preallocated), not two 64 MiB segments.
#[test]
fn a_new_data_directory_reserves_24_mib_of_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = vigil(
        &data,
        &[
            "run",
            "exec",
            "--args",
            r#"{"argv":["/bin/true"]}"#,
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reserved: u64 = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".wal"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(reserved, 24 << 20);
}
