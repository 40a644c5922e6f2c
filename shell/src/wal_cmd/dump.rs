//! `vigil wal dump` and `vigil wal tail` (with its cursor file).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use vigil_core::wal::frame::Lsn;
use vigil_core::wal::log::WalError;
use vigil_core::wal::reader::Reader;
use vigil_core::wal::scan::RecoveryMode;

use crate::damage::{partial_warning, read_until_damage, EXIT_DAMAGED};

use super::{census, corrupt, render, Failure, Out, BATCH_RECORDS, FOLLOW_POLL_MS};

/// Prints up to `limit` records (all, if `None`) from the reader's cursor to the end of the
/// log; returns how many. Damage is an error, never the end.
pub(super) fn print_from(
    reader: &mut Reader,
    json: bool,
    limit: Option<u64>,
    out: &mut Out,
) -> Result<u64, Failure> {
    let mut printed = 0u64;
    loop {
        let want = limit.map_or(BATCH_RECORDS, |l| {
            (l - printed).min(BATCH_RECORDS as u64) as usize
        });
        if want == 0 {
            break;
        }
        let n = print_batch(reader, json, want, out)?;
        printed += n as u64;
        if n == 0 {
            break;
        }
    }
    Ok(printed)
}

/// Prints up to `want` records from the reader's cursor and flushes them; returns how many.
pub(super) fn print_batch(
    reader: &mut Reader,
    json: bool,
    want: usize,
    out: &mut Out,
) -> Result<usize, Failure> {
    let mut failure = None;
    let n = reader.read_batch(want, &mut |frame| {
        if failure.is_none() {
            failure = out.line(&render(&frame, json)).err();
        }
    })?;
    if let Some(error) = failure {
        return Err(Failure::Other(error));
    }
    out.flush()?;
    Ok(n)
}

/// Prints the records from `from`. The reader refuses a damaged log before anything is
/// printed; with `partial`, the records readable before the damage are printed instead, then
/// the damage is named and the exit code is still 1.
pub(super) fn dump(
    dir: &Path,
    json: bool,
    partial: bool,
    from: Option<Lsn>,
    limit: Option<u64>,
) -> Result<ExitCode, Failure> {
    let mut out = Out::new();
    // No --from: start at the first record retention left in the log.
    let opened = match from {
        Some(lsn) => Reader::open_dir(dir, lsn),
        None => Reader::open_dir_from_start(dir),
    };
    let from = from.unwrap_or(1);
    match opened {
        Ok(mut reader) => {
            print_from(&mut reader, json, limit, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(WalError::Corrupt(_)) if partial => dump_readable(dir, json, from, limit, &mut out),
        Err(error) => Err(error.into()),
    }
}

/// `dump --partial` of a damaged log: the records before the damage, then the warning.
pub(super) fn dump_readable(
    dir: &Path,
    json: bool,
    from: Lsn,
    limit: Option<u64>,
    out: &mut Out,
) -> Result<ExitCode, Failure> {
    let mut printed = 0u64;
    let mut failure = None;
    let damage = read_until_damage(dir, &mut |frame| {
        if frame.lsn < from || limit.is_some_and(|l| printed >= l) || failure.is_some() {
            return;
        }
        failure = out.line(&render(&frame, json)).err();
        printed += 1;
    })?;
    if let Some(error) = failure {
        return Err(Failure::Other(error));
    }
    out.flush()?;
    match damage {
        Some(fault) => {
            eprintln!("vigil wal dump: {}", partial_warning(&fault));
            Ok(ExitCode::from(EXIT_DAMAGED))
        }
        None => Ok(ExitCode::SUCCESS),
    }
}

/// What `wal tail` was asked for.
pub(super) struct TailArgs<'a> {
    pub(super) follow: bool,
    pub(super) lines: u64,
    pub(super) json: bool,
    pub(super) from: Option<Lsn>,
    pub(super) cursor_file: Option<&'a Path>,
}

/// Prints the last `lines` records (or from `--from`, or from the saved cursor), then (with
/// `follow`) new ones as they come. A damaged log is refused before anything is printed;
/// damage met while following ends it with exit 1.
///
/// The cursor is the next LSN to print, as `events.read`'s: saved after each batch is printed
/// and flushed, so a restart neither skips nor repeats a record. (A tail killed with SIGKILL
/// between a batch and its save prints that batch again; each record carries its LSN.) A
/// cursor behind what the log still holds is an error: those records were retired unread.
pub(super) fn tail(dir: &Path, args: &TailArgs<'_>) -> Result<ExitCode, Failure> {
    let census = census(dir, RecoveryMode::Tail)?;
    if let Some(fault) = census.scan.fault.clone().filter(|_| corrupt(&census.scan)) {
        return Err(Failure::Damaged(fault));
    }
    let first = census.scan.first_lsn.unwrap_or(1);
    let end = census.scan.next_lsn.max(1);
    let saved = match args.cursor_file {
        Some(path) => read_cursor(path)?,
        None => None,
    };
    let from = match (saved, args.from) {
        (Some(lsn), _) | (None, Some(lsn)) => {
            if lsn < first {
                return Err(Failure::Other(format!(
                    "the cursor is at LSN {lsn} but the log now starts at LSN {first}: records \
                     {lsn}..{} were retired before they were read (--from {first} goes on from \
                     what the log holds)",
                    first - 1
                )));
            }
            if lsn > end {
                return Err(Failure::Other(format!(
                    "the cursor is at LSN {lsn}, past the end of the log (next LSN {end}): \
                     not this log's cursor?"
                )));
            }
            lsn
        }
        (None, None) => end.saturating_sub(args.lines).max(first),
    };
    let mut reader = Reader::open_dir(dir, from)?;
    let mut out = Out::new();
    if let (Some(path), None) = (args.cursor_file, saved) {
        // Pinned before anything is printed: a restart goes on from here, not from "the last
        // -n records" of a log that has grown meanwhile.
        save_cursor(path, from)?;
    }
    let stop = if args.follow { stop_on_signals() } else { None };
    loop {
        let n = print_batch(&mut reader, args.json, BATCH_RECORDS, &mut out)?;
        if n > 0 {
            if let Some(path) = args.cursor_file {
                save_cursor(path, reader.next_lsn())?;
            }
        }
        if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::Acquire)) {
            break;
        }
        if n == 0 {
            if !args.follow {
                break;
            }
            reader.wait(Duration::from_millis(FOLLOW_POLL_MS));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The cursor saved in `path` (`None` when there is no file yet).
pub(super) fn read_cursor(path: &Path) -> Result<Option<Lsn>, Failure> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Failure::Other(format!(
                "cursor file {}: {e}",
                path.display()
            )))
        }
    };
    match text.trim().parse::<Lsn>() {
        Ok(lsn) if lsn >= 1 => Ok(Some(lsn)),
        _ => Err(Failure::Other(format!(
            "cursor file {}: {:?} is not an LSN (the file holds the next LSN to print)",
            path.display(),
            text.chars().take(40).collect::<String>()
        ))),
    }
}

/// Replaces the cursor file atomically and durably: a temporary file beside it, written and
/// fsynced, renamed over it, the directory fsynced.
pub(super) fn save_cursor(path: &Path, lsn: Lsn) -> Result<(), Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::Other(format!("cursor file {}: {what}: {e}", path.display()))
    };
    let name = path.file_name().ok_or_else(|| {
        Failure::Other(format!("cursor file {}: not a file name", path.display()))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = std::fs::File::create(&tmp).map_err(|e| fail("create", e))?;
    file.write_all(format!("{lsn}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write", e))?;
    std::fs::rename(&tmp, path).map_err(|e| fail("rename", e))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("sync its directory", e))
}

/// From now on SIGTERM, SIGINT and SIGHUP only raise the returned flag (the follow loop ends
/// after the batch it is printing, its position saved).
pub(super) fn stop_on_signals() -> Option<&'static std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STOP: AtomicBool = AtomicBool::new(false);
    extern "C" fn raise(_: libc::c_int) {
        STOP.store(true, Ordering::Release);
    }
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: a handler that only stores to an atomic is async-signal-safe; the sigaction
        // is zeroed and its mask emptied before use.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = raise as extern "C" fn(libc::c_int) as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                return None;
            }
        }
    }
    Some(&STOP)
}
