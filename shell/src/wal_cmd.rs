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

use serde_json::Value;
use vigil_core::wal::frame::{Frame, Lsn};
use vigil_core::wal::log::{scan_log, LogFault, LogScan, WalError};
use vigil_core::wal::record::{kind as record_kind, Decoded, Record};
use vigil_core::wal::scan::{FaultKind, RecoveryMode};
use vigil_core::wal::storage::{FsStore, SegmentStore};

use vigil_core::json::{event_json, frame_json};
use vigil_core::runtime::RuntimeOptions;

use crate::config::Global;
use crate::damage::{damaged_message, fault_data, EXIT_DAMAGED};

mod dump;
mod recover;
mod verify;

use dump::{dump, tail, TailArgs};
use recover::{recover, repair, salvage};
use verify::{stats, verify};

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
    let dir = RuntimeOptions::wal_dir(&data_dir);
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
