//! `vigil wal verify|dump|stats|tail|recover|repair`: inspect and repair the write-ahead log
//! in `<data-dir>/wal/`.
//!
//! Everything but `recover` and `repair` reads without the writer's lock, so it works beside a
//! running vigil. `recover` in strict or tail mode opens the log as its writer (refused while
//! another writer holds it); in salvage mode it only reads and says what `repair` would keep.
//! `repair` writes a new log of every valid record and moves the damaged files aside. Exit
//! codes: 0 fine, 1 the log is corrupt (or recovery refused), 2 the command itself failed (no
//! log, I/O error, bad arguments).
//!
//! Every reader here answers completely or exits 1 naming the damaged segment, offset and LSN:
//! `dump` prints nothing from a damaged log (core's reader refuses it when it opens; with
//! `--partial`, it prints what is readable and then fails), `tail` refuses a damaged log,
//! `stats` reports the damage and exits 1, and `tail -f` stops with an error when its reader
//! reports damage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};
use vigil_core::wal::frame::{Frame, Lsn};
use vigil_core::wal::log::{scan_log, LogFault, LogScan, SegmentState, Wal, WalError, WalOptions};
use vigil_core::wal::reader::Reader;
use vigil_core::wal::record::{kind as record_kind, Decoded, Record};
use vigil_core::wal::scan::{FaultKind, RecoveryMode};
use vigil_core::wal::storage::{FsStore, SegmentStore};

use vigil_core::json::{event_json, frame_json};

use crate::config::Global;
use crate::damage::{
    damaged_message, fault_data, partial_warning, read_until_damage, EXIT_DAMAGED,
};

/// How often `tail -f` looks for new records.
const FOLLOW_POLL_MS: u64 = 200;
/// Records read per batch.
const BATCH_RECORDS: usize = 1024;

/// Why a command failed: the log is damaged (exit 1), or the command could not do its work
/// (exit 2).
enum Failure {
    Damaged(LogFault),
    Other(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::Other(message)
    }
}

impl From<WalError> for Failure {
    fn from(error: WalError) -> Failure {
        match error {
            WalError::Corrupt(fault) => Failure::Damaged(fault),
            error => Failure::Other(error.to_string()),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct WalArgs {
    #[command(subcommand)]
    pub command: WalCommand,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Any fault refuses to open.
    Strict,
    /// Truncate a torn tail; refuse on corruption.
    Tail,
    /// Skip bad frames and keep everything that validates.
    Salvage,
}

impl From<ModeArg> for RecoveryMode {
    fn from(mode: ModeArg) -> RecoveryMode {
        match mode {
            ModeArg::Strict => RecoveryMode::Strict,
            ModeArg::Tail => RecoveryMode::Tail,
            ModeArg::Salvage => RecoveryMode::Salvage,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum WalCommand {
    /// Check every frame and record. Exits 1 on corruption, naming segment, offset and LSN.
    Verify {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Also fail on a torn tail (which opening the log would truncate).
        #[arg(long)]
        strict: bool,
    },
    /// Print records. Exits 1, printing nothing, when the log is damaged.
    Dump {
        /// JSON Lines: one object per record.
        #[arg(long)]
        json: bool,
        /// On damage, print the records before it, then the damage on stderr (still exits 1).
        #[arg(long)]
        partial: bool,
        /// First LSN to print (default: the first the log still holds).
        #[arg(long)]
        from: Option<Lsn>,
        /// Print at most this many records.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Segments, records per kind, LSN range, health.
    Stats {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the last records; with -f, keep printing new ones. With --cursor-file, a log
    /// shipper's resumable stream: each restart goes on exactly where the last one stopped.
    Tail {
        /// Keep following new records (SIGTERM/SIGINT end it after the batch being printed,
        /// its position saved).
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the last records to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: u64,
        /// JSON Lines: one object per record.
        #[arg(long)]
        json: bool,
        /// First LSN to print: a cursor, as `events.read` takes it and answers it as
        /// `next_cursor` (instead of the last -n records).
        #[arg(long)]
        from: Option<Lsn>,
        /// Resume from the position saved in this file and save it there (the next LSN to
        /// print, replaced atomically after each batch is printed and flushed). An existing
        /// file wins over --from and -n.
        #[arg(long = "cursor-file")]
        cursor_file: Option<PathBuf>,
    },
    /// Open the log as its writer and recover it: truncate a torn tail (tail) or refuse on any
    /// fault (strict). Salvage only reads: it lists every record that still validates and
    /// what `repair` would drop, and changes nothing.
    Recover {
        #[arg(long, value_enum, default_value = "tail")]
        mode: ModeArg,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write a new log holding every record that still validates (each at its LSN; lost ones
    /// become holes), move the damaged files aside (never deleted) and record the repair in
    /// the new log. Refused while a writer holds the log.
    Repair {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: &Global, args: &WalArgs) -> ExitCode {
    let data_dir = cli.data_dir();
    let dir = wal_dir(&data_dir);
    let result = if dir.is_dir() {
        match &args.command {
            WalCommand::Verify { json, strict } => verify(&dir, *json, *strict),
            WalCommand::Dump {
                json,
                partial,
                from,
                limit,
            } => dump(&dir, *json, *partial, *from, *limit),
            WalCommand::Stats { json } => stats(&dir, *json),
            WalCommand::Tail {
                follow,
                lines,
                json,
                from,
                cursor_file,
            } => tail(
                &dir,
                &TailArgs {
                    follow: *follow,
                    lines: *lines,
                    json: *json,
                    from: *from,
                    cursor_file: cursor_file.as_deref(),
                },
            ),
            WalCommand::Recover {
                mode: ModeArg::Salvage,
                json,
            } => salvage(&dir, *json),
            WalCommand::Recover { mode, json } => {
                recover(&dir, cli.wal_options(), (*mode).into(), *json)
            }
            WalCommand::Repair { json } => repair(&dir, *json, cli),
        }
    } else {
        Err(Failure::Other(format!("no WAL at {}", dir.display())))
    };
    match result {
        Ok(code) => code,
        Err(Failure::Damaged(fault)) => {
            eprintln!("vigil wal: {}", damaged_message(&fault));
            ExitCode::from(EXIT_DAMAGED)
        }
        Err(Failure::Other(message)) => {
            eprintln!("vigil wal: {message}");
            ExitCode::from(2)
        }
    }
}

/// Output that ends quietly when the reader goes away (`| head`), instead of panicking.
struct Out(std::io::StdoutLock<'static>);

impl Out {
    fn new() -> Out {
        Out(std::io::stdout().lock())
    }

    fn line(&mut self, text: &str) -> Result<(), String> {
        match writeln!(self.0, "{text}") {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            Err(error) => Err(format!("write to stdout: {error}")),
        }
    }

    fn flush(&mut self) -> Result<(), String> {
        self.0.flush().map_err(|e| format!("write to stdout: {e}"))
    }
}

/// Scans the log read-only, counting records per kind and undecodable ones.
struct Census {
    scan: LogScan,
    kinds: std::collections::BTreeMap<String, u64>,
    malformed: Vec<(Lsn, String)>,
}

fn census(dir: &Path, mode: RecoveryMode) -> Result<Census, Failure> {
    let store = FsStore::open_reader(dir).map_err(WalError::from)?;
    let mut kinds = std::collections::BTreeMap::new();
    let mut malformed = Vec::new();
    let segments = store.list().map_err(WalError::from)?.len();
    let mut progress = Progress::new(segments);
    let scan = scan_log(&store, mode, &mut |seq, offset, frame| {
        progress.at(seq, offset);
        match Record::decode(frame.kind, frame.payload) {
            Ok(Decoded::Record(record)) => {
                *kinds.entry(record.kind_name().to_string()).or_insert(0) += 1
            }
            Ok(Decoded::Ignored { kind }) => *kinds.entry(ignored_name(kind)).or_insert(0) += 1,
            Err(error) => malformed.push((frame.lsn, error.to_string())),
        }
    })?;
    progress.done();
    Ok(Census {
        scan,
        kinds,
        malformed,
    })
}

/// A one-line progress display on stderr while a long scan runs, shown only on a terminal
/// and only once the scan has taken a moment (a small log prints nothing).
struct Progress {
    segments: usize,
    segments_seen: usize,
    last_seq: Option<u64>,
    started: std::time::Instant,
    last_draw: Option<std::time::Instant>,
    enabled: bool,
}

/// Scans shorter than this show no progress.
const PROGRESS_DELAY: Duration = Duration::from_millis(500);
/// Time between redraws.
const PROGRESS_REDRAW: Duration = Duration::from_millis(100);

impl Progress {
    fn new(segments: usize) -> Progress {
        use std::io::IsTerminal;
        Progress {
            segments,
            segments_seen: 0,
            last_seq: None,
            started: std::time::Instant::now(),
            last_draw: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn at(&mut self, seq: u64, offset: usize) {
        if self.last_seq != Some(seq) {
            self.last_seq = Some(seq);
            self.segments_seen += 1;
        }
        if !self.enabled || self.started.elapsed() < PROGRESS_DELAY {
            return;
        }
        if self
            .last_draw
            .is_some_and(|t| t.elapsed() < PROGRESS_REDRAW)
        {
            return;
        }
        self.last_draw = Some(std::time::Instant::now());
        eprint!(
            "\r\x1b[Kscanning segment {}/{} (seq {seq}, offset {} KiB), {:.1} s",
            self.segments_seen,
            self.segments,
            offset / 1024,
            self.started.elapsed().as_secs_f64()
        );
    }

    fn done(&self) {
        if self.last_draw.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

fn fault_json(scan: &LogScan) -> Value {
    scan.fault.as_ref().map_or(Value::Null, fault_data)
}

fn last_lsn(scan: &LogScan) -> Option<Lsn> {
    (scan.frames > 0).then(|| scan.next_lsn - 1)
}

/// Whether a scan met damage (a torn tail is what a crash leaves, not damage).
fn corrupt(scan: &LogScan) -> bool {
    scan.fault
        .as_ref()
        .is_some_and(|f| f.kind == FaultKind::Corruption)
}

fn verify(dir: &Path, json: bool, strict: bool) -> Result<ExitCode, Failure> {
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
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The log's statistics; exits 1 when the log is damaged (the statistics then cover only the
/// records before the damage, and the `health`/`fault` field says where it is).
fn stats(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
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

/// Prints up to `limit` records (all, if `None`) from the reader's cursor to the end of the
/// log; returns how many. Damage is an error, never the end.
fn print_from(
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
fn print_batch(
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
fn dump(
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
fn dump_readable(
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
struct TailArgs<'a> {
    follow: bool,
    lines: u64,
    json: bool,
    from: Option<Lsn>,
    cursor_file: Option<&'a Path>,
}

/// Prints the last `lines` records (or from `--from`, or from the saved cursor), then (with
/// `follow`) new ones as they come. A damaged log is refused before anything is printed;
/// damage met while following ends it with exit 1.
///
/// The cursor is the next LSN to print, as `events.read`'s: saved after each batch is printed
/// and flushed, so a restart neither skips nor repeats a record. (A tail killed with SIGKILL
/// between a batch and its save prints that batch again; each record carries its LSN.) A
/// cursor behind what the log still holds is an error: those records were retired unread.
fn tail(dir: &Path, args: &TailArgs<'_>) -> Result<ExitCode, Failure> {
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
fn read_cursor(path: &Path) -> Result<Option<Lsn>, Failure> {
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
fn save_cursor(path: &Path, lsn: Lsn) -> Result<(), Failure> {
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
fn stop_on_signals() -> Option<&'static std::sync::atomic::AtomicBool> {
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

fn recover(
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
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `recover --mode salvage`: what a repair would keep and drop; changes nothing.
fn salvage(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
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
fn repair(dir: &Path, json: bool, cli: &Global) -> Result<ExitCode, Failure> {
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

/// Name of an ignorable kind in stats.
fn ignored_name(kind: u16) -> String {
    if kind == record_kind::CHECKPOINT {
        "checkpoint".to_string()
    } else {
        format!("ignored_kind_{kind}")
    }
}

/// One record as a JSON object (for `--json`) or a human line.
fn render(frame: &Frame<'_>, json: bool) -> String {
    if json {
        event_json(frame).to_string()
    } else {
        let (name, fields) = frame_json(frame);
        format!("{:>10}  {:<18} {}", frame.lsn, name, fields)
    }
}

/// The WAL directory for a data directory (for callers that share the layout).
pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}
