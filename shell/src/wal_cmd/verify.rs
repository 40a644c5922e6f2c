//! `vigil wal verify` and `vigil wal stats`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use vigil_core::wal::log::SegmentState;
use vigil_core::wal::scan::{FaultKind, RecoveryMode};

use crate::damage::{damaged_message, fault_data, EXIT_DAMAGED};

use super::{census, corrupt, fault_json, last_lsn, Census, Failure, Out};

pub(super) fn verify(dir: &Path, json: bool, strict: bool) -> Result<ExitCode, Failure> {
    let census = match census(dir, RecoveryMode::Tail) {
        // Damage that stops the scan itself (a missing identity, say) is a report too.
        Err(Failure::Damaged(fault)) if json => {
            let value =
                json!({"ok": false, "dir": dir.display().to_string(), "fault": fault_data(&fault)});
            let mut out = Out::new();
            out.line(&value.to_string())?;
            out.flush()?;
            return Ok(ExitCode::from(EXIT_DAMAGED));
        }
        census => census?,
    };
    let scan = &census.scan;
    let corrupt = corrupt(scan);
    let torn = scan
        .fault
        .as_ref()
        .is_some_and(|f| f.kind == FaultKind::TornTail);
    let failed = corrupt || !census.malformed.is_empty() || (strict && torn);
    let mut out = Out::new();
    if json {
        let value = json!({
            "ok": !failed,
            "dir": dir.display().to_string(),
            "segments": scan.segments.len(),
            "records": scan.frames,
            "first_lsn": scan.first_lsn,
            "last_lsn": last_lsn(scan),
            "fault": fault_json(scan),
            "dropped_unsynced_frames": scan.dropped_unsynced_frames,
            "malformed": census.malformed.iter().map(|(lsn, e)| json!({"lsn": lsn, "error": e})).collect::<Vec<_>>(),
        });
        out.line(&value.to_string())?;
    } else {
        print_verify_text(&mut out, dir, &census, failed)?;
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The human form of `verify`'s report.
fn print_verify_text(
    out: &mut Out,
    dir: &Path,
    census: &Census,
    failed: bool,
) -> Result<(), Failure> {
    let scan = &census.scan;
    out.line(&format!(
        "{}: {} segments, {} records, LSN {}..{}",
        dir.display(),
        scan.segments.len(),
        scan.frames,
        scan.first_lsn.map_or("-".to_string(), |l| l.to_string()),
        last_lsn(scan).map_or("-".to_string(), |l| l.to_string()),
    ))?;
    if let Some(fault) = &scan.fault {
        out.line(&fault.to_string())?;
        if fault.kind == FaultKind::TornTail {
            out.line(&format!(
                "a torn tail is what a crash leaves; opening the log truncates it \
                 ({} unsynced frames after it are dropped)",
                scan.dropped_unsynced_frames
            ))?;
        }
    }
    for (lsn, error) in &census.malformed {
        out.line(&format!(
            "LSN {lsn}: checksum-valid frame whose record does not decode: {error}"
        ))?;
    }
    out.line(if failed {
        "verify: FAILED"
    } else {
        "verify: ok"
    })?;
    Ok(())
}

/// The log's statistics; exits 1 when the log is damaged (the statistics then cover only the
/// records before the damage, and the `health`/`fault` field says where it is).
pub(super) fn stats(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
    let census = census(dir, RecoveryMode::Tail)?;
    let scan = &census.scan;
    let disk_bytes: usize = scan.segments.iter().map(|s| s.bytes).sum();
    let used_bytes: usize = scan.segments.iter().map(|s| s.end_offset).sum();
    let count = |state| scan.segments.iter().filter(|s| s.state == state).count();
    let mut out = Out::new();
    if json {
        let value = json!({
            "dir": dir.display().to_string(),
            "segments": scan.segments.len(),
            "segments_used": count(SegmentState::Used),
            "segments_preallocated": count(SegmentState::Unused),
            "disk_bytes": disk_bytes,
            "log_bytes": used_bytes,
            "records": scan.frames,
            "first_lsn": scan.first_lsn,
            "last_lsn": last_lsn(scan),
            "records_by_kind": census.kinds,
            "fault": fault_json(scan),
        });
        out.line(&value.to_string())?;
    } else {
        out.line(&format!("dir          {}", dir.display()))?;
        out.line(&format!(
            "segments     {} ({} used, {} pre-allocated)",
            scan.segments.len(),
            count(SegmentState::Used),
            count(SegmentState::Unused)
        ))?;
        out.line(&format!(
            "disk bytes   {disk_bytes} ({used_bytes} holding records)"
        ))?;
        out.line(&format!(
            "records \
                     {}",
            scan.frames
        ))?;
        out.line(&format!(
            "LSN range    {}..{}",
            scan.first_lsn.map_or("-".to_string(), |l| l.to_string()),
            last_lsn(scan).map_or("-".to_string(), |l| l.to_string())
        ))?;
        for (kind, n) in &census.kinds {
            out.line(&format!("  {kind:<20} {n}"))?;
        }
        match &scan.fault {
            None => out.line("health       ok")?,
            Some(fault) => out.line(&format!("health       {fault}"))?,
        }
    }
    out.flush()?;
    if let Some(fault) = scan.fault.as_ref().filter(|_| corrupt(scan)) {
        eprintln!("vigil wal stats: {}", damaged_message(fault));
        return Ok(ExitCode::from(EXIT_DAMAGED));
    }
    Ok(ExitCode::SUCCESS)
}
