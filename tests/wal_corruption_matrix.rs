//! The corruption matrix: every kind of damage a log can suffer, times every reader of the log.
//!
//! A log is built with the real CLI (jobs run by `vigil run`, user records appended by a C
//! host), in small segments so it spans several. What every reader answers on the intact log
//! is the right answer. Then, for each damage, on a fresh copy of that log, every reader runs
//! and each cell must hold:
//! - the reader gives the complete right answer (equal to the intact one), or fails loudly: a
//!   non-zero exit with the damaged segment file named on stderr, a JSON-RPC error
//!   `LOG_DAMAGED` naming it, `VIGIL_E_CORRUPT` from C naming it. Never a shorter answer
//!   presented as success. A writer (`vigil run`, `vigil serve`, a C runtime) must refuse a
//!   damaged log, with one exception: a one-shot `vigil run` reads the newest segment (from
//!   the index checkpoint the last clean close recorded, when there is one) and only the
//!   headers and first frames of the older ones, so damage further inside an older segment,
//!   or in the newest one before that checkpoint, may let it run its job; it must then have changed nothing before the log's end,
//!   and `wal verify` must still name the damage.
//! - no panic, no death by a signal;
//! - the log is byte for byte what it was before the reader ran: an opener adds nothing to,
//!   and takes nothing from, a damaged log (but for that exception's appends).
//!
//! All cells run, then the table is printed and every failing cell is listed with its reason.
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{compile_c_host, vigil_bin, TempDir};
use serde_json::{json, Value};
use vigil_runtime::wal::log::scan_log;
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::storage::{read_hint_file, segment_file_name, FsStore, HINT_COPY_STRIDE};

/// Segment size of the test logs: small, so 40 jobs span several segments.
const SEGMENT_BYTES: u64 = 16 * 1024;
/// The cell of the one-shot `vigil run`.
const RUN_CELL: &str = "writer open: vigil run";
/// Jobs in each test log.
const JOBS: u64 = 40;
/// User records the C host appends at each of its three turns (start, middle, end).
const USER_RECORDS_PER_TURN: u64 = 5;
/// A job whose records sit in the first segment, and the last job (behind most damage).
const JOB_BEFORE: u64 = 2;
const JOB_BEHIND: u64 = JOBS;
/// Bytes of padding in each job's argument and output, so the log fills several segments.
const JOB_PAD_BYTES: usize = 300;
/// Events asked for per `events.read`, so reading the log takes several pages.
const EVENTS_PAGE: u64 = 50;
/// Exit code of the C host when a call returned VIGIL_E_CORRUPT (10 + status 10).
const C_EXIT_CORRUPT: i32 = 20;
/// JSON-RPC code of an answer refused because the log is damaged.
const LOG_DAMAGED: i64 = -32007;
/// How long a server gets to start or to stop.
const SERVER_WAIT: Duration = Duration::from_secs(20);

fn ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| v == "true")
}

// ---------------------------------------------------------------------------------------------
// Running things
// ---------------------------------------------------------------------------------------------

/// What one reader did.
struct Observed {
    /// It answered (exit 0, a JSON-RPC result).
    ok: bool,
    /// Its answer, normalised so runs on different copies compare equal.
    answer: String,
    /// Where a failure would say what went wrong (stderr, the error object).
    message: String,
    /// A panic or a death by a signal.
    crash: Option<String>,
    /// A failure of the wrong kind (not VIGIL_E_CORRUPT, not LOG_DAMAGED), however it reads.
    wrong_kind: Option<String>,
}

impl Observed {
    fn of_process(out: &Output, data_dir: &Path, answer_from_stderr: bool) -> Observed {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let crash = match out.status.signal() {
            Some(signal) => Some(format!("killed by signal {signal}")),
            None if stderr.contains("panicked") => Some(format!("panicked: {stderr}")),
            None => None,
        };
        let message = if answer_from_stderr {
            format!("{stdout}{stderr}")
        } else {
            stderr
        };
        Observed {
            ok: out.status.success(),
            answer: normalise(&stdout, data_dir),
            message,
            crash,
            wrong_kind: None,
        }
    }
}

/// `text` with the data directory's path replaced, so copies compare equal.
fn normalise(text: &str, data_dir: &Path) -> String {
    text.replace(&data_dir.display().to_string(), "<DATA>")
}

fn vigil(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--wal-segment-bytes")
        .arg(SEGMENT_BYTES.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vigil")
}

/// Runs one job whose argument and output name it and its log.
fn run_job(data_dir: &Path, log: &str, n: u64) -> Output {
    let word = format!("{log}-job-{n}-{}", "p".repeat(JOB_PAD_BYTES));
    let args = json!({"argv": ["/bin/echo", word]}).to_string();
    vigil(data_dir, &["run", "exec", "--args", &args, "--json"])
}

/// The C host (tests/c/wal_damage.c), compiled once; `None` where there is no C compiler.
fn c_host(scratch: &Path) -> Option<PathBuf> {
    if Command::new("gcc").arg("--version").output().is_err() {
        assert!(!ci(), "gcc is required under CI=true");
        eprintln!("skipped: the C reader cells (gcc is not installed)");
        return None;
    }
    let bin = scratch.join("wal_damage");
    compile_c_host("wal_damage.c", false, true, &bin);
    Some(bin)
}

fn c_host_run(host: &Path, args: &[&str]) -> Output {
    Command::new(host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run the C host")
}

// ---------------------------------------------------------------------------------------------
// The logs
// ---------------------------------------------------------------------------------------------

/// Builds a log named `log` in `data_dir`: user records, jobs, user records, jobs, user
/// records (each naming the log, so two logs never hold the same record); every writer closes
/// the log cleanly, so every record is acknowledged.
fn build_log(data_dir: &Path, log: &str, host: Option<&Path>) {
    let segment = SEGMENT_BYTES.to_string();
    let data = data_dir.to_str().expect("UTF-8 temp path");
    let append = |turn: &str| {
        if let Some(host) = host {
            let count = USER_RECORDS_PER_TURN.to_string();
            let tag = format!("{log}-{turn}");
            let out = c_host_run(host, &["append", data, &segment, &tag, &count]);
            assert!(out.status.success(), "C append: {}", text(&out.stderr));
        }
    };
    append("start");
    for n in 1..=JOBS {
        let out = run_job(data_dir, log, n);
        assert!(out.status.success(), "job {n}: {}", text(&out.stderr));
        if n == JOBS / 2 {
            append("middle");
        }
    }
    append("end");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Where one frame of the log is.
#[derive(Clone, Copy, Debug)]
struct FramePlace {
    seq: u64,
    offset: usize,
    bytes: usize,
    lsn: u64,
}

/// Every frame of an intact log, in LSN order.
fn frames_of(wal_dir: &Path) -> Vec<FramePlace> {
    let store = FsStore::open_reader(wal_dir).expect("open the log");
    let mut frames = Vec::new();
    let scan = scan_log(&store, RecoveryMode::Strict, &mut |seq, offset, frame| {
        frames.push(FramePlace {
            seq,
            offset,
            bytes: frame.frame_bytes,
            lsn: frame.lsn,
        })
    })
    .expect("scan the intact log");
    assert!(scan.fault.is_none(), "the intact log has a fault");
    frames
}

/// The bytes of every file in the log directory, by name.
fn snapshot(data_dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(data_dir.join("wal")).expect("read the log dir") {
        let entry = entry.expect("log dir entry");
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(name, std::fs::read(entry.path()).expect("read a log file"));
        }
    }
    files
}

/// What changed between two snapshots, or `None`.
fn changes(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
) -> Option<String> {
    let mut said = Vec::new();
    for (name, bytes) in before {
        match after.get(name) {
            None => said.push(format!("{name} removed")),
            Some(now) if now != bytes => said.push(format!("{name} changed")),
            Some(_) => {}
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        said.push(format!("{name} added"));
    }
    (!said.is_empty()).then(|| said.join(", "))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create a copy");
    for entry in std::fs::read_dir(from).expect("read a dir to copy") {
        let entry = entry.expect("dir entry");
        let kind = entry.file_type().expect("file type");
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Damage
// ---------------------------------------------------------------------------------------------

/// The intact log, and where its frames and segments are.
struct Pristine {
    dir: TempDir,
    frames: Vec<FramePlace>,
    /// Sequence numbers of the segments holding frames.
    used: Vec<u64>,
    /// A second log built the same way (the source of a foreign segment).
    other: TempDir,
    /// Segment and offset of the index checkpoint the last clean close recorded in the
    /// `CHECKPOINT` hint.
    hint: Option<(u64, usize)>,
}

/// The segment and offset the `CHECKPOINT` hint in `wal` names.
fn checkpoint_hint(wal: &Path) -> Option<(u64, usize)> {
    let hint = read_hint_file(wal).ok()??;
    (hint.seq != 0).then_some((hint.seq, hint.offset))
}

impl Pristine {
    fn middle_segment(&self) -> u64 {
        self.used[self.used.len() / 2]
    }

    fn last_segment(&self) -> u64 {
        self.used[self.used.len() - 1]
    }

    /// Damage at `offset` of segment `seq` lies where a one-shot run does not read: past the
    /// first frame of an older segment than the last, or of the last one before the
    /// checkpoint the last close recorded.
    fn unread_by_run(&self, seq: u64, offset: usize) -> bool {
        let first_end = self
            .frames_in(seq)
            .first()
            .map_or(usize::MAX, |f| f.offset + f.bytes);
        let before_hint = self
            .hint
            .is_some_and(|(hint_seq, hint_offset)| hint_seq == seq && offset < hint_offset);
        offset >= first_end && (seq != self.last_segment() || before_hint)
    }

    /// The LSN of the first frame of segment `seq`.
    fn first_lsn_of(&self, seq: u64) -> u64 {
        self.frames_in(seq).first().map_or(1, |f| f.lsn)
    }

    fn frames_in(&self, seq: u64) -> Vec<FramePlace> {
        self.frames
            .iter()
            .copied()
            .filter(|f| f.seq == seq)
            .collect()
    }
}

/// One kind of damage: its name, what it does to a copy of the log's directory, and the
/// segment files a loud failure may name.
struct Damage {
    name: String,
    apply: Box<dyn Fn(&Path)>,
    names: Vec<String>,
    /// Every record below this LSN is untouched: a `--partial` reader must show it.
    readable_before: u64,
    /// The damage lies in the frames of an older segment, after its first frame: a one-shot
    /// `vigil run`, which reads the newest segment and only the heads of the others, does not
    /// read it (see [`run_cell_verdict`]).
    unread_by_run: bool,
}

fn segment_path(wal: &Path, seq: u64) -> PathBuf {
    wal.join(segment_file_name(seq))
}

/// Flips the bits of one byte in place (a positioned write: a live writer's other bytes stay).
fn flip_byte(path: &Path, offset: usize) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open a segment");
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset as u64)
        .expect("read a byte");
    byte[0] ^= 0xA5;
    file.write_all_at(&byte, offset as u64)
        .expect("write a byte");
}

fn truncate(path: &Path, len: usize) {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .expect("open a segment");
    file.set_len(len as u64).expect("truncate a segment");
}

fn damages(p: &Pristine) -> Vec<Damage> {
    let names = |seqs: &[u64]| seqs.iter().map(|&s| segment_file_name(s)).collect();
    let mut list = Vec::new();
    let (first, middle, last) = (p.used[0], p.middle_segment(), p.last_segment());
    // A header byte: the low byte of the header's first-LSN field.
    for (label, seq) in [("first", first), ("middle", middle), ("last", last)] {
        list.push(Damage {
            name: format!("header byte of the {label} segment ({seq})"),
            apply: Box::new(move |wal| flip_byte(&segment_path(wal, seq), 16)),
            names: names(&[seq]),
            readable_before: p.first_lsn_of(seq),
            unread_by_run: false,
        });
    }
    let n = p.frames.len();
    for (label, frame) in [
        ("first", p.frames[0]),
        ("middle", p.frames[n / 2]),
        ("last", p.frames[n - 1]),
    ] {
        list.push(Damage {
            name: format!(
                "a byte of the {label} durable frame (segment {}, offset {})",
                frame.seq, frame.offset
            ),
            apply: Box::new(move |wal| {
                flip_byte(
                    &segment_path(wal, frame.seq),
                    frame.offset + frame.bytes / 2,
                )
            }),
            names: names(&[frame.seq]),
            readable_before: frame.lsn,
            unread_by_run: p.unread_by_run(frame.seq, frame.offset + frame.bytes / 2),
        });
    }
    list.push(Damage {
        name: format!("a zeroed 4 KiB page (segment {middle}, bytes 4096..8192)"),
        apply: Box::new(move |wal| {
            let path = segment_path(wal, middle);
            let mut bytes = std::fs::read(&path).expect("read a segment");
            bytes[4096..8192].fill(0);
            std::fs::write(&path, bytes).expect("write a segment");
        }),
        names: names(&[middle]),
        readable_before: p
            .frames_in(middle)
            .iter()
            .find(|f| f.offset + f.bytes > 4096)
            .map_or(p.first_lsn_of(middle), |f| f.lsn),
        unread_by_run: p.unread_by_run(middle, 4096),
    });
    let middle_frames = p.frames_in(middle);
    let cut_middle = middle_frames[middle_frames.len() / 2];
    let last_frames = p.frames_in(last);
    let cut_last = last_frames[last_frames.len() - 1];
    for (label, seq, len) in [
        ("inside the header", middle, 32),
        (
            "inside a frame",
            middle,
            cut_middle.offset + cut_middle.bytes / 2,
        ),
        (
            "inside the last frame",
            last,
            cut_last.offset + cut_last.bytes / 2,
        ),
    ] {
        list.push(Damage {
            name: format!("segment {seq} truncated {label} (to {len} bytes)"),
            apply: Box::new(move |wal| truncate(&segment_path(wal, seq), len)),
            names: names(&[seq]),
            readable_before: p.first_lsn_of(seq),
            unread_by_run: false,
        });
    }
    let after_middle = middle + 1;
    list.push(Damage {
        name: format!("the middle segment ({middle}) deleted"),
        apply: Box::new(move |wal| {
            std::fs::remove_file(segment_path(wal, middle)).expect("delete a segment")
        }),
        names: names(&[middle - 1, middle, after_middle]),
        readable_before: p.first_lsn_of(middle),
        unread_by_run: false,
    });
    list.push(Damage {
        name: format!("segments {middle} and {after_middle} swapped"),
        apply: Box::new(move |wal| {
            let (a, b) = (segment_path(wal, middle), segment_path(wal, after_middle));
            let aside = wal.join("swap.tmp");
            std::fs::rename(&a, &aside).expect("rename");
            std::fs::rename(&b, &a).expect("rename");
            std::fs::rename(&aside, &b).expect("rename");
        }),
        names: names(&[middle, after_middle]),
        readable_before: p.first_lsn_of(middle),
        unread_by_run: false,
    });
    list.push(Damage {
        name: "both copies of the close's durable-end record (CHECKPOINT) damaged".to_string(),
        apply: Box::new(|wal| {
            for copy in 0..2 {
                flip_byte(&wal.join("CHECKPOINT"), copy * HINT_COPY_STRIDE + 40);
            }
        }),
        names: vec!["CHECKPOINT".to_string()],
        readable_before: 1,
        unread_by_run: false,
    });
    let foreign = segment_path(&p.other.path().join("data/wal"), middle);
    list.push(Damage {
        name: format!("segment {middle} replaced by segment {middle} of another log"),
        apply: Box::new(move |wal| {
            std::fs::copy(&foreign, segment_path(wal, middle)).expect("copy a foreign segment");
        }),
        names: names(&[middle]),
        readable_before: p.first_lsn_of(middle),
        unread_by_run: false,
    });
    list
}

// ---------------------------------------------------------------------------------------------
// Readers
// ---------------------------------------------------------------------------------------------

/// A CLI reader.
struct CliReader {
    name: String,
    args: Vec<String>,
    /// verify and stats print their report, damage included, on stdout.
    reports_on_stdout: bool,
    /// A `--partial` reader: what its incomplete answer must be a part of.
    partial: Option<Partial>,
}

/// The shape of a `--partial` answer.
#[derive(Clone, Copy)]
enum Partial {
    /// A JSON array of jobs, each as in the intact list (or still `running`, its end being
    /// behind the damage).
    Jobs,
    /// JSON Lines, a prefix of the intact ones.
    Lines,
}

fn cli_readers() -> Vec<CliReader> {
    let reader = |args: &[&str], reports_on_stdout: bool, partial: Option<Partial>| CliReader {
        name: args.join(" "),
        args: args.iter().map(|a| a.to_string()).collect(),
        reports_on_stdout,
        partial,
    };
    let (before, behind) = (JOB_BEFORE.to_string(), JOB_BEHIND.to_string());
    vec![
        reader(&["wal", "verify"], true, None),
        reader(&["jobs", "--json"], false, None),
        reader(&["jobs", "--json", "--partial"], false, Some(Partial::Jobs)),
        reader(&["job", &before, "--json"], false, None),
        reader(&["job", &behind, "--json"], false, None),
        reader(&["wal", "dump", "--json"], false, None),
        reader(
            &["wal", "dump", "--json", "--partial"],
            false,
            Some(Partial::Lines),
        ),
        reader(&["wal", "tail", "--json"], false, None),
        reader(&["wal", "stats", "--json"], true, None),
    ]
}

/// Whether a `--partial` reader that failed said its answer was incomplete, showed only what
/// the intact log holds, and showed at least every record below `readable_before`.
fn check_partial(
    kind: Partial,
    observed: &Observed,
    intact: &str,
    readable_before: u64,
) -> Result<(), String> {
    if !observed.message.contains("warning") {
        return Err(format!("no warning: {}", first_line(&observed.message)));
    }
    let lsn_of = |v: &Value| v["lsn"].as_u64().unwrap_or(u64::MAX);
    match kind {
        Partial::Lines => {
            let shown: Vec<&str> = observed.answer.lines().collect();
            let right: Vec<&str> = intact.lines().collect();
            let due = right
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|r| lsn_of(r) < readable_before)
                .count();
            if !right.starts_with(&shown) {
                Err("--partial printed records the intact log does not hold".into())
            } else if shown.len() < due {
                Err(format!(
                    "--partial printed {} records; the {due} before LSN {readable_before} are readable",
                    shown.len()
                ))
            } else {
                Ok(())
            }
        }
        Partial::Jobs => {
            let parse = |t: &str| serde_json::from_str::<Vec<Value>>(t).unwrap_or_default();
            let shown: BTreeMap<u64, Value> = parse(&observed.answer)
                .into_iter()
                .map(|j| (j["job_id"].as_u64().unwrap_or(0), j))
                .collect();
            let right: BTreeMap<u64, Value> = parse(intact)
                .into_iter()
                .map(|j| (j["job_id"].as_u64().unwrap_or(0), j))
                .collect();
            for (id, job) in &shown {
                let same = right.get(id).is_some_and(|r| {
                    r == job
                        || (job["status"] == "running"
                            && r["lsn"] == job["lsn"]
                            && r["capability"] == job["capability"])
                });
                if !same {
                    return Err(format!("--partial listed job {id} unlike the intact log"));
                }
            }
            match right
                .iter()
                .find(|(id, j)| lsn_of(j) < readable_before && !shown.contains_key(id))
            {
                Some((id, _)) => Err(format!(
                    "--partial left out job {id}, started before LSN {readable_before}"
                )),
                None => Ok(()),
            }
        }
    }
}

/// A cell's verdict.
enum Verdict {
    Right,
    Loud,
    /// A one-shot run went on past damage it does not read, changing nothing before the
    /// log's end; `wal verify` still names the damage.
    RanPastUnread,
    Wrong(String),
}

/// The verdict on a one-shot `vigil run` that succeeded on damage it does not read
/// ([`Damage::unread_by_run`]): it may append its job, but only after the log's end (the
/// newest segment, a new segment after it, the identity and the shared tail), and the damage
/// must still fail `wal verify` on that copy, naming the damaged segment.
fn run_past_unread(changed: Option<&str>, damage: &Damage, last_seq: u64, copy: &Path) -> Verdict {
    let allowed = [
        format!("{} changed", segment_file_name(last_seq)),
        format!("{} changed", segment_file_name(last_seq + 1)),
        format!("{} added", segment_file_name(last_seq + 1)),
        format!("{} added", segment_file_name(last_seq + 2)),
        "IDENTITY changed".to_string(),
        "CHECKPOINT changed".to_string(),
        "TAIL changed".to_string(),
    ];
    let before_end: Vec<&str> = changed
        .unwrap_or_default()
        .split(", ")
        .filter(|c| !c.is_empty() && !allowed.iter().any(|a| a == c))
        .collect();
    if !before_end.is_empty() {
        return Verdict::Wrong(format!(
            "ran and changed the log before its end: {}",
            before_end.join(", ")
        ));
    }
    let verify = vigil(copy, &["wal", "verify"]);
    let said = format!("{}{}", text(&verify.stdout), text(&verify.stderr));
    if verify.status.success() || !damage.names.iter().any(|n| said.contains(n.as_str())) {
        return Verdict::Wrong(format!(
            "ran, and then `wal verify` did not name the damage: {}",
            first_line(&said)
        ));
    }
    Verdict::RanPastUnread
}

/// Judges one reader's outcome against the intact answer.
fn judge(observed: &Observed, intact: Option<&str>, names: &[String]) -> Verdict {
    if let Some(crash) = &observed.crash {
        return Verdict::Wrong(crash.lines().take(3).collect::<Vec<_>>().join(" | "));
    }
    if let Some(wrong) = &observed.wrong_kind {
        return Verdict::Wrong(wrong.clone());
    }
    if observed.ok {
        return match intact {
            Some(right) if observed.answer == right => Verdict::Right,
            Some(_) => Verdict::Wrong(format!(
                "success with an answer that differs from the intact one ({} bytes vs {})",
                observed.answer.len(),
                intact.map_or(0, str::len)
            )),
            None => Verdict::Wrong("a writer accepted the damaged log".into()),
        };
    }
    if observed.message.contains("no job") {
        // Damage hides a job; it does not make it absent.
        Verdict::Wrong(format!(
            "said the job does not exist: {}",
            first_line(&observed.message)
        ))
    } else if names.iter().any(|n| observed.message.contains(n.as_str())) {
        Verdict::Loud
    } else {
        Verdict::Wrong(format!(
            "failed without naming {}: {}",
            names.join(" or "),
            first_line(&observed.message)
        ))
    }
}

fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(nothing)");
    line.chars().take(200).collect()
}

/// A `vigil serve` on a data directory, killed on drop.
struct Server {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server; `Err` with what it said when it refused to start.
fn start_server(data_dir: &Path, scratch: &Path) -> Result<Server, Output> {
    let socket = scratch.join("vigil.sock");
    let log = scratch.join("serve.log");
    let child = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--wal-segment-bytes")
        .arg(SEGMENT_BYTES.to_string())
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .args(["--sample-interval", "100ms", "--grace", "0s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("server log"))
        .spawn()
        .expect("start vigil serve");
    let mut server = Server { child, socket, log };
    let deadline = Instant::now() + SERVER_WAIT;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            let stderr = std::fs::read(&server.log).unwrap_or_default();
            return Err(Output {
                status,
                stdout: Vec::new(),
                stderr,
            });
        }
        if rpc(&server.socket, "health", json!({})).is_ok() {
            return Ok(server);
        }
        assert!(
            Instant::now() < deadline,
            "vigil serve neither started nor exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a server with SIGTERM; what it said and how it ended.
fn stop_server(mut server: Server) -> Output {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + SERVER_WAIT;
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait for the server") {
            break status;
        }
        assert!(Instant::now() < deadline, "vigil serve did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: Vec::new(),
        stderr: std::fs::read(&server.log).unwrap_or_default(),
    }
}

/// One request on a fresh connection: the whole answer object, or why there is none.
fn rpc(socket: &Path, method: &str, params: Value) -> Result<Value, String> {
    let mut stream = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(SERVER_WAIT))
        .map_err(|e| e.to_string())?;
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    stream
        .write_all(format!("{request}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map_err(|e| format!("{e}: {line:?}"))
}

/// An answer object as an observation: a result is an answer, an error must be LOG_DAMAGED.
fn observe_rpc(answer: Result<Value, String>) -> Observed {
    let failed = |message: String, wrong_kind: Option<String>| Observed {
        ok: false,
        answer: String::new(),
        message,
        crash: None,
        wrong_kind,
    };
    match answer {
        Err(e) => failed(String::new(), Some(format!("no answer: {e}"))),
        Ok(v) if v.get("result").is_some() => Observed {
            ok: true,
            answer: v["result"].to_string(),
            message: String::new(),
            crash: None,
            wrong_kind: None,
        },
        Ok(v) if v["error"]["code"].as_i64() == Some(LOG_DAMAGED) => {
            failed(v["error"].to_string(), None)
        }
        Ok(v) => failed(
            String::new(),
            Some(format!("an error other than LOG_DAMAGED: {}", v["error"])),
        ),
    }
}

/// Every event of the log through `events.read`, page by page, up to `last_lsn` (a server
/// may append records of its own after it).
fn read_events(socket: &Path, last_lsn: u64) -> Observed {
    let mut events = Vec::new();
    let mut cursor = 1u64;
    loop {
        let page = observe_rpc(rpc(
            socket,
            "events.read",
            json!({"cursor": cursor, "max": EVENTS_PAGE}),
        ));
        if !page.ok {
            return page;
        }
        let result: Value = serde_json::from_str(&page.answer).unwrap_or(Value::Null);
        let batch = result["events"].as_array().cloned().unwrap_or_default();
        let next = result["next_cursor"].as_u64().unwrap_or(cursor);
        if batch.is_empty() || next <= cursor {
            break;
        }
        events.extend(
            batch
                .into_iter()
                .filter(|e| e["lsn"].as_u64().is_some_and(|l| l <= last_lsn)),
        );
        cursor = next;
        if cursor > last_lsn {
            break;
        }
    }
    Observed {
        ok: true,
        answer: Value::Array(events).to_string(),
        message: String::new(),
        crash: None,
        wrong_kind: None,
    }
}

/// The server's cells: whether it refused the damaged log, then its answers if it started.
fn server_cells(data_dir: &Path, scratch: &Path, last_lsn: u64) -> Vec<(String, Observed)> {
    let readers = [
        "serve: events.read".to_string(),
        "serve: jobs.list".to_string(),
        format!("serve: jobs.get {JOB_BEFORE}"),
        format!("serve: jobs.get {JOB_BEHIND}"),
    ];
    let server = match start_server(data_dir, scratch) {
        Ok(server) => server,
        Err(refused) => {
            let mut cells = vec![(
                "serve: open".to_string(),
                Observed::of_process(&refused, data_dir, false),
            )];
            for reader in readers {
                cells.push((reader, Observed::of_process(&refused, data_dir, false)));
            }
            return cells;
        }
    };
    let socket = server.socket.clone();
    let answers = vec![
        read_events(&socket, last_lsn),
        observe_rpc(rpc(&socket, "jobs.list", json!({}))),
        observe_rpc(rpc(&socket, "jobs.get", json!({"job_id": JOB_BEFORE}))),
        observe_rpc(rpc(&socket, "jobs.get", json!({"job_id": JOB_BEHIND}))),
    ];
    let stopped = stop_server(server);
    let mut open = Observed::of_process(&stopped, data_dir, false);
    open.ok = true; // it started: a writer that accepted the log (judged by the caller)
    let mut cells = vec![("serve: open".to_string(), open)];
    cells.extend(readers.into_iter().zip(answers));
    cells
}

// ---------------------------------------------------------------------------------------------
// The matrix
// ---------------------------------------------------------------------------------------------

/// What one reader did on one log.
struct Cell {
    reader: String,
    observed: Observed,
    /// What the reader changed in the log, if anything.
    changed: Option<String>,
    /// Writers: a success is never a right answer on a damaged log.
    writer: bool,
    /// `--partial` readers: their failure comes with what they could read.
    partial: Option<Partial>,
}

/// Runs every reader on the log in `source` (a data dir): the read-only ones one after the
/// other on one copy, each writer on a copy of its own.
fn run_cells(source: &Path, scratch: &Path, host: Option<&Path>, last_lsn: u64) -> Vec<Cell> {
    let mut cells = Vec::new();
    let shared = scratch.join("shared");
    copy_dir(source, &shared);
    for reader in cli_readers() {
        let before = snapshot(&shared);
        let args: Vec<&str> = reader.args.iter().map(String::as_str).collect();
        let out = vigil(&shared, &args);
        let changed = changes(&before, &snapshot(&shared));
        cells.push(Cell {
            reader: reader.name,
            observed: Observed::of_process(&out, &shared, reader.reports_on_stdout),
            changed,
            writer: false,
            partial: reader.partial,
        });
    }
    // Writers, each on its own copy.
    let run_copy = scratch.join("run");
    copy_dir(source, &run_copy);
    let before = snapshot(&run_copy);
    let out = run_job(&run_copy, "probe", 0);
    cells.push(Cell {
        reader: RUN_CELL.into(),
        observed: Observed::of_process(&out, &run_copy, false),
        changed: changes(&before, &snapshot(&run_copy)),
        writer: true,
        partial: None,
    });
    let serve_copy = scratch.join("serve");
    copy_dir(source, &serve_copy);
    let before = snapshot(&serve_copy);
    let served = server_cells(&serve_copy, scratch, last_lsn);
    let changed = changes(&before, &snapshot(&serve_copy));
    for (reader, observed) in served {
        // What the server changed is its opener's doing: judged on the open cell.
        let writer = reader == "serve: open";
        cells.push(Cell {
            reader,
            observed,
            changed: changed.clone().filter(|_| writer),
            writer,
            partial: None,
        });
    }
    if let Some(host) = host {
        let c_copy = scratch.join("c");
        copy_dir(source, &c_copy);
        let before = snapshot(&c_copy);
        let data = c_copy.to_str().expect("UTF-8 temp path");
        let out = c_host_run(host, &["read", data, &SEGMENT_BYTES.to_string()]);
        let mut observed = Observed::of_process(&out, &c_copy, false);
        if !observed.ok && observed.crash.is_none() && out.status.code() != Some(C_EXIT_CORRUPT) {
            observed.wrong_kind = Some(format!(
                "failed with exit {:?}, not VIGIL_E_CORRUPT: {}",
                out.status.code(),
                first_line(&observed.message)
            ));
        }
        cells.push(Cell {
            reader: "C: vigil_wal_reader_next".into(),
            observed,
            changed: changes(&before, &snapshot(&c_copy)),
            writer: false,
            partial: None,
        });
    }
    cells
}

#[test]
fn every_reader_answers_completely_or_names_the_damage_and_no_opener_changes_a_damaged_log() {
    let started = Instant::now();
    let scratch = TempDir::new("matrix");
    let host = c_host(scratch.path());
    let host = host.as_deref();
    let pristine = {
        let dir = TempDir::new("matrix-log");
        build_log(&dir.path().join("data"), "this", host);
        let other = TempDir::new("matrix-other-log");
        build_log(&other.path().join("data"), "other", host);
        let frames = frames_of(&dir.path().join("data/wal"));
        let mut used: Vec<u64> = frames.iter().map(|f| f.seq).collect();
        used.dedup();
        let hint = checkpoint_hint(&dir.path().join("data/wal"));
        Pristine {
            dir,
            frames,
            used,
            other,
            hint,
        }
    };
    assert!(
        pristine.used.len() >= 3,
        "the test log spans {} segments; the matrix needs at least 3",
        pristine.used.len()
    );
    let last_lsn = pristine.frames.len() as u64;
    eprintln!(
        "log: {} frames in segments {:?} (built in {:.1}s)",
        last_lsn,
        pristine.used,
        started.elapsed().as_secs_f64()
    );

    // The right answers.
    let intact_dir = TempDir::new("matrix-intact");
    let source = pristine.dir.path().join("data");
    let intact: BTreeMap<String, Cell> = run_cells(&source, intact_dir.path(), host, last_lsn)
        .into_iter()
        .map(|c| (c.reader.clone(), c))
        .collect();
    for (reader, cell) in &intact {
        assert!(
            cell.observed.ok && cell.observed.crash.is_none(),
            "{reader} fails on the intact log: {}",
            cell.observed.message
        );
    }

    let mut table = String::new();
    let mut failures = Vec::new();
    for damage in damages(&pristine) {
        let copy = TempDir::new("matrix-damaged");
        let damaged = copy.path().join("data");
        copy_dir(&source, &damaged);
        (damage.apply)(&pristine_wal(&damaged));
        let _ = writeln!(table, "{}", damage.name);
        for cell in run_cells(&damaged, copy.path(), host, last_lsn) {
            let right = (!cell.writer)
                .then(|| intact.get(&cell.reader).map(|c| c.observed.answer.as_str()))
                .flatten();
            let mut verdict = judge(&cell.observed, right, &damage.names);
            if let (Verdict::Loud, Some(kind), Some(right)) = (&verdict, cell.partial, right) {
                let readable = damage.readable_before;
                if let Err(why) = check_partial(kind, &cell.observed, right, readable) {
                    verdict = Verdict::Wrong(why);
                }
            }
            let one_shot = cell.reader == RUN_CELL && damage.unread_by_run && cell.observed.ok;
            if one_shot && cell.observed.crash.is_none() {
                let last = pristine.last_segment();
                let copy = copy.path().join("run");
                verdict = run_past_unread(cell.changed.as_deref(), &damage, last, &copy);
            } else if let Some(changed) = &cell.changed {
                verdict = Verdict::Wrong(format!("changed the damaged log: {changed}"));
            }
            let shown = match &verdict {
                Verdict::Right => "pass (complete right answer)".to_string(),
                Verdict::Loud => "pass (loud failure)".to_string(),
                Verdict::RanPastUnread => {
                    "pass (ran past damage it does not read; verify names it)".to_string()
                }
                Verdict::Wrong(why) => {
                    failures.push(format!("[{}] {}: {why}", damage.name, cell.reader));
                    format!("FAIL: {why}")
                }
            };
            let _ = writeln!(table, "    {:<28} {shown}", cell.reader);
        }
    }
    eprintln!("{table}");
    eprintln!(
        "matrix: {} failing cells, {:.1}s",
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} cells fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn pristine_wal(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// The record at or after the middle of the log that ends a job: (its LSN, the job's id), from
/// the intact log's dump.
fn middle_job_end(data_dir: &Path, frames: usize) -> (u64, u64) {
    let dump = vigil(data_dir, &["wal", "dump", "--json"]);
    assert!(dump.status.success(), "dump: {}", text(&dump.stderr));
    text(&dump.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["kind"] == "job_finished" && r["lsn"].as_u64() >= Some(frames as u64 / 2))
        .and_then(|r| Some((r["lsn"].as_u64()?, r["job_id"].as_u64()?)))
        .expect("a finished job in the second half of the log")
}

#[test]
fn a_running_server_answers_damage_under_it_with_log_damaged_naming_where() {
    let scratch = TempDir::new("matrix-live");
    let data = scratch.path().join("data");
    build_log(&data, "live", None);
    let frames = frames_of(&data.join("wal"));
    let (lsn, job) = middle_job_end(&data, frames.len());
    let place = frames[lsn as usize - 1];
    let server = match start_server(&data, scratch.path()) {
        Ok(server) => server,
        Err(out) => panic!("vigil serve refused an intact log: {}", text(&out.stderr)),
    };
    // Damage one acknowledged record in place, under the server's mapping.
    let segment = segment_path(&data.join("wal"), place.seq);
    flip_byte(&segment, place.offset + place.bytes / 2);

    let mut cursor = 1u64;
    let error = loop {
        let answer = rpc(
            &server.socket,
            "events.read",
            json!({"cursor": cursor, "max": EVENTS_PAGE}),
        )
        .expect("an answer");
        if let Some(error) = answer.get("error") {
            break error.clone();
        }
        let events = answer["result"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            !events.is_empty(),
            "events.read ended at LSN {cursor} before the damage at {lsn}"
        );
        for event in &events {
            assert!(
                event["lsn"].as_u64() < Some(lsn),
                "a record at or past the damage: {event}"
            );
        }
        cursor = answer["result"]["next_cursor"]
            .as_u64()
            .expect("next_cursor");
    };
    let name = segment_file_name(place.seq);
    assert_eq!(cursor, lsn, "the batches stop right before the damage");
    assert_eq!(error["code"], LOG_DAMAGED, "{error}");
    assert_eq!(error["data"]["lsn"], lsn, "{error}");
    assert_eq!(error["data"]["offset"], place.offset, "{error}");
    assert!(
        error["data"]["segment"]
            .as_str()
            .is_some_and(|s| s.ends_with(&name)),
        "{error}"
    );

    let detail = rpc(&server.socket, "jobs.get", json!({"job_id": job})).expect("an answer");
    assert_eq!(
        detail["error"]["code"], LOG_DAMAGED,
        "jobs.get {job}: {detail}"
    );
    assert_eq!(detail["error"]["data"]["lsn"], lsn, "{detail}");

    let stopped = stop_server(server);
    let log = text(&stopped.stderr);
    assert!(!log.contains("panicked"), "{log}");
    assert!(stopped.status.signal().is_none(), "{log}");
}

/// Retention keeps about this much log: four segments of [`SEGMENT_BYTES`] counting the
/// pre-created one, so three hold records. A job's frames (about 5 KB) span at most two
/// segments, so the last job's records are always retained. (With two, the close's small
/// checkpoint frame could be the one that starts a segment; the retained log then names no
/// job at all, which is retention working, not a test of it.)
const RETAIN_BYTES: u64 = 4 * SEGMENT_BYTES;
/// Jobs run into a log with [`RETAIN_BYTES`] retention: enough to retire its first segments.
const RETENTION_JOBS: u64 = 60;

#[test]
fn a_log_that_retired_its_first_segments_still_opens_lists_runs_serves_and_opens_from_c() {
    let scratch = TempDir::new("matrix-retention");
    let host = c_host(scratch.path());
    let data = scratch.path().join("data");
    let retain = RETAIN_BYTES.to_string();
    let with_retention = |args: &[&str]| {
        let mut all = vec!["--wal-retain-bytes", retain.as_str()];
        all.extend_from_slice(args);
        vigil(&data, &all)
    };
    for n in 1..=RETENTION_JOBS {
        let word = format!("kept-job-{n}-{}", "p".repeat(JOB_PAD_BYTES));
        let args = json!({"argv": ["/bin/echo", word]}).to_string();
        let out = with_retention(&["run", "exec", "--args", &args, "--json"]);
        assert!(out.status.success(), "job {n}: {}", text(&out.stderr));
    }
    assert!(
        !segment_path(&data.join("wal"), 1).exists(),
        "retention retired no segment: the test does not test retention"
    );

    let jobs = with_retention(&["jobs", "--json"]);
    assert!(jobs.status.success(), "jobs: {}", text(&jobs.stderr));
    let listed: Vec<Value> = serde_json::from_slice(&jobs.stdout).expect("a JSON array");
    let listed: BTreeSet<u64> = listed.iter().filter_map(|j| j["job_id"].as_u64()).collect();
    // Exactly the jobs the retained records name: nothing retired is listed, nothing
    // retained is missing.
    let dump = with_retention(&["wal", "dump", "--json"]);
    assert!(dump.status.success(), "dump: {}", text(&dump.stderr));
    let retained: BTreeSet<u64> = text(&dump.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|r| r["kind"] == "job_started" || r["kind"] == "job_finished")
        .filter_map(|r| r["job_id"].as_u64())
        .collect();
    assert_eq!(
        listed, retained,
        "jobs listed vs jobs in the retained records"
    );
    assert!(
        listed.contains(&RETENTION_JOBS) && !listed.contains(&1),
        "the last job is listed and the first retired: {listed:?}"
    );
    for args in [
        &["wal", "verify"][..],
        &["wal", "dump", "--json"],
        &["wal", "stats"],
    ] {
        let out = with_retention(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }

    let server = match start_server(&data, scratch.path()) {
        Ok(server) => server,
        Err(out) => panic!("vigil serve refused the log: {}", text(&out.stderr)),
    };
    let list = rpc(&server.socket, "jobs.list", json!({})).expect("an answer");
    assert!(list.get("result").is_some(), "jobs.list: {list}");
    let stopped = stop_server(server);
    assert!(stopped.status.success(), "serve: {}", text(&stopped.stderr));

    if let Some(host) = host {
        let dir = data.to_str().expect("UTF-8 temp path");
        let out = c_host_run(&host, &["read", dir, &SEGMENT_BYTES.to_string()]);
        assert!(
            out.status.success(),
            "C open and read: {}",
            text(&out.stderr)
        );
    }
}

/// How long `vigil wal tail -f` gets to notice damage written after it started.
const FOLLOW_NOTICE: Duration = Duration::from_secs(10);

/// The LSN of a JSON Lines record.
fn line_lsn(line: &str) -> Option<u64> {
    serde_json::from_str::<Value>(line).ok()?["lsn"].as_u64()
}

#[test]
fn tail_follow_names_damage_in_records_written_after_it_started() {
    let scratch = TempDir::new("matrix-follow");
    let data = scratch.path().join("data");
    build_log(&data, "follow", None);
    let last = frames_of(&data.join("wal")).len() as u64;
    let stderr = scratch.path().join("tail.err");
    let mut tail = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(&data)
        .args(["wal", "tail", "-f", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).expect("tail stderr"))
        .spawn()
        .expect("start vigil wal tail -f");
    let stdout = tail.stdout.take().expect("tail stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + SERVER_WAIT;
    while lines
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
        .and_then(|l| line_lsn(&l))
        != Some(last)
    {
        assert!(
            Instant::now() < deadline,
            "tail -f never printed LSN {last}"
        );
    }

    // Stopped, so it reads nothing until the new records are there and one of them is bad.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tail.id() as i32, libc::SIGSTOP) };
    for n in 1..=3 {
        let out = run_job(&data, "follow-more", n);
        assert!(out.status.success(), "job: {}", text(&out.stderr));
    }
    let frames = frames_of(&data.join("wal"));
    let damaged = frames[last as usize + 1];
    flip_byte(
        &segment_path(&data.join("wal"), damaged.seq),
        damaged.offset + damaged.bytes / 2,
    );
    // SAFETY: as above.
    unsafe { libc::kill(tail.id() as i32, libc::SIGCONT) };

    let deadline = Instant::now() + FOLLOW_NOTICE;
    let status = loop {
        if let Some(status) = tail.try_wait().expect("wait for tail") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = tail.kill();
            let _ = tail.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed: Vec<u64> = lines.try_iter().filter_map(|l| line_lsn(&l)).collect();
    assert!(
        printed.iter().all(|&l| l < damaged.lsn),
        "tail -f printed a record at or past the damage (LSN {}): {printed:?}",
        damaged.lsn
    );
    let said = std::fs::read_to_string(&stderr).unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "tail -f went quiet at the damage (LSN {}) for {FOLLOW_NOTICE:?}: printed {printed:?}, \
             said {said:?}",
            damaged.lsn
        );
    };
    assert!(
        !status.success() && status.signal().is_none(),
        "tail -f: {status}: {said}"
    );
    assert!(said.contains(&segment_file_name(damaged.seq)), "{said}");
}

#[test]
fn the_c_reader_answers_damage_under_an_open_runtime_with_vigil_e_corrupt_naming_where() {
    let scratch = TempDir::new("matrix-c-live");
    let Some(host) = c_host(scratch.path()) else {
        return;
    };
    let data = scratch.path().join("data");
    build_log(&data, "clive", Some(&host));
    let frames = frames_of(&data.join("wal"));
    let damaged = frames[frames.len() / 2];
    let intact = c_host_run(
        &host,
        &[
            "read",
            data.to_str().expect("UTF-8"),
            &SEGMENT_BYTES.to_string(),
        ],
    );
    assert!(intact.status.success(), "{}", text(&intact.stderr));

    let mut reader = Command::new(&host)
        .args([
            "read-later",
            data.to_str().expect("UTF-8"),
            &SEGMENT_BYTES.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the C host");
    let mut stdout = BufReader::new(reader.stdout.take().expect("host stdout"));
    let mut first = String::new();
    stdout
        .read_line(&mut first)
        .expect("the host says it is open");
    assert_eq!(first.trim(), "open", "{first}");
    flip_byte(
        &segment_path(&data.join("wal"), damaged.seq),
        damaged.offset + damaged.bytes / 2,
    );
    reader
        .stdin
        .take()
        .expect("host stdin")
        .write_all(b"go\n")
        .expect("tell the host to read");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("host output");
    let out = reader.wait_with_output().expect("wait for the C host");
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(C_EXIT_CORRUPT), "{said}");
    assert!(said.contains("vigil_wal_reader_next"), "{said}");
    assert!(said.contains(&segment_file_name(damaged.seq)), "{said}");
    let right: Vec<String> = text(&intact.stdout)
        .lines()
        .filter(|l| line_lsn_c(l) < damaged.lsn)
        .map(str::to_owned)
        .collect();
    let shown: Vec<&str> = rest.lines().collect();
    assert_eq!(
        shown, right,
        "the records before the damage, and only those"
    );
}

/// The LSN at the start of a line of the C host's output.
fn line_lsn_c(line: &str) -> u64 {
    line.split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}
