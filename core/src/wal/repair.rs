//! The way out of a damaged log: `repair` writes a new log of every record that still
//! validates, each at its old LSN, and moves the damaged files aside. Nothing is deleted.
//!
//! The new log is written next to the old one and closed (durable, with its closing
//! checkpoint) before anything moves; then the two directories trade places in one atomic
//! `renameat2(RENAME_EXCHANGE)`, so at every instant the log directory holds a whole log; then
//! the damaged one gets its final name. Every record repair could not recover becomes a
//! `HOLE` frame, so LSNs stay dense and job records, event cursors and the job index keep
//! meaning what they meant; a `REPAIRED` frame at the end says what happened.
//!
//! It holds the old log's writer lock throughout, so it refuses while a writer is live.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::frame::Lsn;
use super::log::{scan_log, LogSkip, Wal, WalError, WalOptions};
use super::record::kind;
use super::scan::RecoveryMode;
use super::storage::{sync_dir, FsStore};

/// Most `HOLE` frames one repair writes. A larger gap means the LSNs themselves are not to be
/// trusted (a forged frame with a far LSN): repair refuses rather than write gigabytes.
pub const HOLE_FRAMES_MAX: u64 = 1 << 20;

/// What a repair did.
#[derive(Debug, Clone)]
pub struct RepairReport {
    /// Records copied into the new log (checkpoint frames included).
    pub kept_records: u64,
    /// LSN ranges `[from, to)` no valid record was found for, written as holes.
    pub holes: Vec<(Lsn, Lsn)>,
    /// Byte ranges the salvage scan skipped.
    pub skipped: Vec<LogSkip>,
    /// Where the damaged log's files now are.
    pub damaged_dir: PathBuf,
    /// The LSN of the `REPAIRED` record.
    pub repair_lsn: Lsn,
    /// The id of the damaged log (every segment header of a log carries it).
    pub old_log_id: u128,
    /// The id of the new log the repair started; its segments carry this one.
    pub new_log_id: u128,
}

/// Repairs the log in `dir`; `options` shape the new log (segment size, retention).
// Longer than 70 lines on purpose: the repair is one ordered procedure under the old log's writer
// lock (find the first LSN, copy every valid record into a new log, record the repair, swap the
// directories); its order is what a crash mid-repair relies on.
pub fn repair_dir(dir: &Path, options: WalOptions) -> Result<RepairReport, WalError> {
    let options = WalOptions {
        recovery_mode: RecoveryMode::Tail,
        ..options
    };
    // The old log's writer lock, held until the end: no writer can open it meanwhile.
    let old = FsStore::open_exclusive(dir)?;
    let stamp = unix_ms();
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map_or_else(|| "wal".into(), |n| n.to_string_lossy().into_owned());
    let new_dir = parent.join(format!("{name}.repair-{stamp}"));
    let damaged_dir = parent.join(format!("{name}.damaged-{stamp}"));

    // First pass: find the first LSN, so the new log starts where the old one did.
    let mut first: Option<Lsn> = None;
    let probe = scan_log(&old, RecoveryMode::Salvage, &mut |_, _, frame| {
        first.get_or_insert(frame.lsn);
    })?;
    let first_lsn = probe.first_lsn.or(first).unwrap_or(1);

    let new = Wal::create_at(&new_dir, options, first_lsn)?;
    let mut expected = first_lsn;
    let mut holes = Vec::new();
    let mut kept = 0u64;
    let mut failure: Option<WalError> = None;
    let scan = scan_log(&old, RecoveryMode::Salvage, &mut |_, _, frame| {
        if failure.is_some() || frame.lsn < expected {
            return;
        }
        if frame.lsn > expected {
            if frame.lsn - expected > HOLE_FRAMES_MAX {
                failure = Some(WalError::BadOptions(format!(
                    "records {expected}..{} are missing: more than {HOLE_FRAMES_MAX}, the \
                     LSNs are not to be trusted",
                    frame.lsn
                )));
                return;
            }
            holes.push((expected, frame.lsn));
            for _ in expected..frame.lsn {
                if let Err(error) = new.append_raw(kind::HOLE, &[]) {
                    failure = Some(error);
                    return;
                }
            }
        }
        match new.append_raw(frame.kind, frame.payload) {
            Ok(lsn) if lsn == frame.lsn => kept += 1,
            Ok(lsn) => {
                failure = Some(WalError::BadOptions(format!(
                    "record {} was written at LSN {lsn}",
                    frame.lsn
                )))
            }
            Err(error) => failure = Some(error),
        }
        expected = frame.lsn + 1;
    })?;
    if let Some(error) = failure {
        drop(new);
        return Err(error);
    }
    let skipped: Vec<LogSkip> = scan.skipped.clone();
    let note = json!({
        "repaired_unix_ms": stamp,
        "old_log_id": format!("{:032x}", scan.log_id),
        "kept_records": kept,
        "holes": holes.iter().map(|(from, to)| json!({"from_lsn": from, "to_lsn": to})).collect::<Vec<_>>(),
        "skipped": skipped.iter().map(|s| json!({
            "segment": s.segment, "offset": s.offset, "bytes": s.bytes, "lsn": s.expected_lsn,
        })).collect::<Vec<_>>(),
        "fault": scan.fault.as_ref().map(|f| f.to_string()),
        "damaged_files": damaged_dir.display().to_string(),
    });
    let repair_lsn = new.append_raw(kind::REPAIRED, note.to_string().as_bytes())?;
    let new_log_id = new.log_id();
    new.close()?;

    exchange(dir, &new_dir)?;
    std::fs::rename(&new_dir, &damaged_dir).map_err(|e| {
        WalError::Io(io::Error::new(
            e.kind(),
            format!(
                "the repaired log is in place; moving the damaged one from {} to {}: {e}",
                new_dir.display(),
                damaged_dir.display()
            ),
        ))
    })?;
    sync_dir(parent)?;
    drop(old);
    Ok(RepairReport {
        kept_records: kept,
        holes,
        skipped,
        damaged_dir,
        repair_lsn,
        old_log_id: scan.log_id,
        new_log_id,
    })
}

/// Swaps two directories atomically.
fn exchange(a: &Path, b: &Path) -> Result<(), WalError> {
    let path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
    };
    let (ca, cb) = (path(a)?, path(b)?);
    // SAFETY: two valid NUL-terminated paths; renameat2 has no other preconditions.
    let done = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if done != 0 {
        let error = io::Error::last_os_error();
        return Err(WalError::Io(io::Error::new(
            error.kind(),
            format!(
                "exchanging {} with the repaired log {}: {error} (the damaged log is \
                 untouched; the repaired one is complete in the second directory)",
                a.display(),
                b.display()
            ),
        )));
    }
    Ok(())
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
