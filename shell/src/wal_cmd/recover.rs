//! `vigil wal recover` and `vigil wal repair`.

use std::path::Path;
use std::process::ExitCode;

use serde_json::json;
use vigil_core::wal::log::{RecoveryReport, Wal, WalError, WalOptions};
use vigil_core::wal::scan::RecoveryMode;

use crate::config::Global;

use super::{census, fault_json, last_lsn, Failure, Out};

pub(super) fn recover(
    dir: &Path,
    options: WalOptions,
    mode: RecoveryMode,
    json: bool,
) -> Result<ExitCode, Failure> {
    let options = WalOptions {
        recovery_mode: mode,
        ..options
    };
    let mut out = Out::new();
    let wal = match Wal::open(dir, options) {
        Ok(wal) => wal,
        Err(WalError::Corrupt(fault)) => {
            if json {
                let value =
                    json!({"ok": false, "mode": mode.as_str(), "refused": fault.to_string()});
                out.line(&value.to_string())?;
            } else {
                out.line(&format!(
                    "recovery ({} mode) refused: {fault}",
                    mode.as_str()
                ))?;
            }
            out.flush()?;
            return Ok(ExitCode::from(1));
        }
        Err(error) => return Err(Failure::Other(error.to_string())),
    };
    let report = wal.recovery();
    let scan = &report.scan;
    if json {
        let value = json!({
            "ok": true,
            "mode": mode.as_str(),
            "records": scan.frames,
            "last_lsn": last_lsn(scan),
            "fault": fault_json(scan),
            "truncated_bytes": report.truncated_bytes,
            "dropped_unsynced_frames": scan.dropped_unsynced_frames,
            "removed_segments": report.removed_segments,
            "skipped": scan.skipped.iter().map(|s| json!({
                "segment": s.segment, "offset": s.offset, "bytes": s.bytes, "lsn": s.expected_lsn,
            })).collect::<Vec<_>>(),
            "sync_method": wal.sync_method(),
        });
        out.line(&value.to_string())?;
    } else {
        print_recover_text(&mut out, mode, report)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// The human form of `recover`'s report.
fn print_recover_text(
    out: &mut Out,
    mode: RecoveryMode,
    report: &RecoveryReport,
) -> Result<(), Failure> {
    let scan = &report.scan;
    out.line(&format!(
        "recovered {} records ({} mode), last LSN {:?}",
        scan.frames,
        mode.as_str(),
        last_lsn(scan)
    ))?;
    if let Some(fault) = &scan.fault {
        out.line(&format!("found: {fault}"))?;
    }
    out.line(&format!(
        "truncated {} bytes, dropped {} unsynced frames, removed {} segments past the end",
        report.truncated_bytes,
        scan.dropped_unsynced_frames,
        report.removed_segments.len()
    ))?;
    for skip in &scan.skipped {
        out.line(&format!(
            "skipped {} bytes in {} at offset {} (expected LSN {})",
            skip.bytes, skip.segment, skip.offset, skip.expected_lsn
        ))?;
    }
    Ok(())
}

/// `recover --mode salvage`: what a repair would keep and drop; changes nothing.
pub(super) fn salvage(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
    let census = census(dir, RecoveryMode::Salvage)?;
    let scan = &census.scan;
    let damaged = scan.fault.is_some() || !scan.skipped.is_empty();
    let mut out = Out::new();
    if json {
        let value = json!({
            "ok": !damaged,
            "mode": "salvage",
            "records": scan.frames,
            "last_lsn": last_lsn(scan),
            "fault": fault_json(scan),
            "skipped": scan.skipped.iter().map(|s| json!({
                "segment": s.segment, "offset": s.offset, "bytes": s.bytes, "lsn": s.expected_lsn,
            })).collect::<Vec<_>>(),
            "changed": false,
            "next_step": damaged.then_some("vigil wal repair"),
        });
        out.line(&value.to_string())?;
    } else {
        out.line(&format!(
            "salvage: {} records still validate, last LSN {}; nothing was changed",
            scan.frames,
            last_lsn(scan).map_or("-".to_string(), |l| l.to_string())
        ))?;
        if let Some(fault) = &scan.fault {
            out.line(&format!("found: {fault}"))?;
        }
        for skip in &scan.skipped {
            out.line(&format!(
                "unreadable: {} bytes in {} at offset {} (expected LSN {})",
                skip.bytes, skip.segment, skip.offset, skip.expected_lsn
            ))?;
        }
        if damaged {
            out.line(
                "to continue: `vigil wal repair` writes a new log of these records and keeps \
                 the damaged files aside",
            )?;
        }
    }
    out.flush()?;
    Ok(if damaged {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `repair`: a new log of every valid record; the damaged files kept aside.
pub(super) fn repair(dir: &Path, json: bool, cli: &Global) -> Result<ExitCode, Failure> {
    let options = cli.wal_options();
    let report = vigil_core::wal::repair::repair_dir(dir, options).map_err(|e| e.to_string())?;
    let lost: u64 = report.holes.iter().map(|(from, to)| to - from).sum();
    let mut out = Out::new();
    if json {
        let value = json!({
            "ok": true,
            "kept_records": report.kept_records,
            "lost_records": lost,
            "holes": report.holes.iter().map(|(from, to)| json!({"from_lsn": from, "to_lsn": to})).collect::<Vec<_>>(),
            "skipped": report.skipped.iter().map(|s| json!({
                "segment": s.segment, "offset": s.offset, "bytes": s.bytes, "lsn": s.expected_lsn,
            })).collect::<Vec<_>>(),
            "repair_lsn": report.repair_lsn,
            "damaged_dir": report.damaged_dir.display().to_string(),
            "old_log_id": format!("{:032x}", report.old_log_id),
            "new_log_id": format!("{:032x}", report.new_log_id),
        });
        out.line(&value.to_string())?;
    } else {
        out.line(&format!(
            "repaired: kept {} records at their LSNs, lost {lost}; the repair is recorded at LSN {}",
            report.kept_records, report.repair_lsn
        ))?;
        for (from, to) in &report.holes {
            out.line(&format!("lost: LSN {from}..{}", to - 1))?;
        }
        out.line(&format!(
            "the damaged files are kept in {}",
            report.damaged_dir.display()
        ))?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
