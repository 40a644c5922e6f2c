//! One-shot CLI processes, whole, against `vigil --version` in the same run (interleaved, so
//! all see the same machine noise): `vigil run exec --args '{"argv":["/bin/true"]}'` on a data
//! dir with 200 jobs and on one whose log holds 1 M records, and `vigil wal stats` / `verify`
//! on a 16 KB log; the data dirs lie beneath `$HOME` (as vigil's default does), and one more
//! 200-job data dir in `/tmp` shows what a crowded parent directory costs the workspace
//! sandbox's read rules. Wall time per process (hdrhistogram p50/p99/p999, the p50 ratio to
//! `--version`) and peak RSS (wait4's ru_maxrss). Goals: run <= 3x the wall median of
//! `--version`, peak RSS <= 16 MiB.
//!
//! `cargo bench --bench oneshot` (as root for cgroups). With `VIGIL_ONESHOT_BEFORE_BIN` set to
//! another build of `vigil` (an earlier commit, say), one more case runs that binary on a 200-job
//! data dir of its own, interleaved with the rest: a before/after comparison in the same run.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use hdrhistogram::Histogram;
use vigil_core::runtime::{Runtime, RuntimeOptions};
use vigil_core::wal::record::kind;

// The `vigil` binary of this profile (release for benches), built on first use.
#[path = "../tests/common/mod.rs"]
mod common;

/// Measured iterations per case.
const ITERATIONS: u32 = 40;
/// Unmeasured iterations first (page cache, dentries, cgroup setup).
const WARMUP_ITERATIONS: u32 = 4;
/// Jobs in the first data dir before measuring.
const JOBS: u32 = 200;
/// Records in the log of the second data dir.
const RECORDS: u64 = 1_000_000;
/// Goals.
const WALL_RATIO_MAX: f64 = 3.0;
const RSS_KIB_MAX: u64 = 16 * 1024;

/// Runs `bin ARGS` to its end: (wall us, peak RSS KiB, exit status).
// The child is reaped by wait4 (which also gives its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_once(bin: &Path, args: &[&str]) -> (u64, u64, i32) {
    let started = Instant::now();
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vigil");
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both out-pointers are valid.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = started.elapsed().as_micros() as u64;
    assert_eq!(pid, child.id() as libc::pid_t, "wait4");
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (wall, usage.ru_maxrss as u64, code)
}

struct Case {
    name: String,
    /// The binary to run: this build's `vigil` unless the case says otherwise.
    bin: Option<std::path::PathBuf>,
    args: Vec<String>,
    wall: Histogram<u64>,
    rss_kib: Histogram<u64>,
}

impl Case {
    fn new(name: &str, args: &[&str]) -> Case {
        Case {
            name: name.to_string(),
            bin: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            wall: Histogram::new(3).expect("histogram"),
            rss_kib: Histogram::new(3).expect("histogram"),
        }
    }
}

fn run_args(data: &Path) -> Vec<String> {
    [
        "--data-dir",
        data.to_str().expect("utf-8 path"),
        "run",
        "exec",
        "--args",
        r#"{"argv":["/bin/true"]}"#,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Fills `dir` with `JOBS` jobs run by `bin`.
fn prepare_jobs(bin: &Path, dir: &Path) {
    for _ in 0..JOBS {
        let args = run_args(dir);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, _, code) = run_once(bin, &args);
        assert_eq!(code, 0, "preparing the 200-job data dir {}", dir.display());
    }
}

/// /proc/loadavg as it reads (the machine is shared: the figures mean little without it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|e| format!("unreadable: {e}"))
}

/// An earlier build of `vigil` to compare against in the same run (module doc).
const BEFORE_BIN_ENV: &str = "VIGIL_ONESHOT_BEFORE_BIN";

/// Set (to `DIR:RECORDS:PAYLOAD_BYTES`) in the helper process that fills a log.
const FILL_ENV: &str = "VIGIL_ONESHOT_FILL";

/// Fills the log under `spec`'s directory with user records, in this process, through a
/// runtime (as a C host's `vigil_wal_append` does: every new segment opens with the
/// runtime's index checkpoint).
fn fill(spec: &str) {
    let mut parts = spec.rsplitn(3, ':');
    let payload: usize = parts.next().and_then(|p| p.parse().ok()).expect("payload");
    let records: u64 = parts.next().and_then(|p| p.parse().ok()).expect("records");
    let dir = Path::new(parts.next().expect("dir"));
    let runtime = Runtime::open(RuntimeOptions::new(dir)).expect("open");
    for i in 0..records {
        let mut body = vec![(i % 251) as u8 | 1; payload];
        body[..8.min(payload)].copy_from_slice(&i.to_le_bytes()[..8.min(payload)]);
        runtime.wal().append_raw(kind::USER, &body).expect("append");
    }
    runtime.close().expect("close");
}

/// Fills a log in a helper process: the peak RSS a child reports (wait4's ru_maxrss) is at
/// least the RSS of the process that spawned it, so this one stays small.
fn fill_in_helper(dir: &Path, records: u64, payload: usize) {
    let status = Command::new(std::env::current_exe().expect("bench binary"))
        .env(FILL_ENV, format!("{}:{records}:{payload}", dir.display()))
        .status()
        .expect("spawn helper");
    assert!(status.success(), "filling {} failed", dir.display());
}

fn main() {
    if let Ok(spec) = std::env::var(FILL_ENV) {
        fill(&spec);
        return;
    }
    let built = common::vigil_bin();
    // Beneath $HOME, as vigil's default data dir is: a workspace sandbox's read rules name
    // every sibling along the data dir's path, so a crowded parent costs more (the case in
    // /tmp below measures that).
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, std::path::PathBuf::from);
    let scratch = tempfile::Builder::new()
        .prefix(".vigil-oneshot-bench")
        .tempdir_in(&home)
        .expect("tempdir");
    // Every binary measured runs from a copy in the scratch directory, made the same way: here a
    // byte-identical copy of the linker's output ran `run` 0.4-0.6 ms faster than the linker's
    // file itself (the same system calls, 242 page faults against 263), so a BEFORE binary
    // copied elsewhere must not be compared with the linker's file.
    let bin_copy = scratch.path().join("vigil");
    std::fs::copy(built, &bin_copy).expect("copy vigil");
    let bin = bin_copy.as_path();
    let crowded = tempfile::tempdir().expect("tempdir in /tmp");
    let crowded_dir = crowded.path().join("jobs200");
    let jobs_dir = scratch.path().join("jobs200");
    let records_dir = scratch.path().join("records1m");
    let small_dir = scratch.path().join("log16k");

    let prepare = Instant::now();
    prepare_jobs(bin, &jobs_dir);
    prepare_jobs(bin, &crowded_dir);
    let before_bin = std::env::var_os(BEFORE_BIN_ENV).map(|before| {
        let copy = scratch.path().join("vigil-before");
        std::fs::copy(&before, &copy).expect("copy the BEFORE vigil");
        copy
    });
    let before_dir = scratch.path().join("jobs200-before");
    if let Some(before) = &before_bin {
        prepare_jobs(before, &before_dir);
    }
    fill_in_helper(&records_dir, RECORDS, 8);
    // 200 records of 48 bytes: a 16 KB log.
    fill_in_helper(&small_dir, 200, 48);
    println!(
        "oneshot: {ITERATIONS} iterations per case, interleaved (prepared in {:.1} s)",
        prepare.elapsed().as_secs_f64()
    );

    let small = small_dir.to_str().expect("utf-8 path");
    let mut cases = vec![
        Case::new("vigil --version (baseline)", &["--version"]),
        Case::new("run exec /bin/true, 200 jobs", &[]),
        Case::new("run exec /bin/true, 1 M records", &[]),
        Case::new(
            "wal stats, 16 KB log",
            &["--data-dir", small, "wal", "stats"],
        ),
        Case::new(
            "wal verify, 16 KB log",
            &["--data-dir", small, "wal", "verify"],
        ),
    ];
    cases[1].args = run_args(&jobs_dir);
    cases[2].args = run_args(&records_dir);
    let siblings = std::fs::read_dir(std::env::temp_dir()).map_or(0, |d| d.count());
    let mut case = Case::new(
        &format!("run exec /bin/true, 200 jobs, in a /tmp of {siblings}"),
        &[],
    );
    case.args = run_args(&crowded_dir);
    cases.push(case);
    if let Some(before) = before_bin {
        let mut case = Case::new("run exec /bin/true, 200 jobs, BEFORE", &[]);
        case.args = run_args(&before_dir);
        case.bin = Some(before);
        cases.push(case);
    }
    println!("  load average before: {}", load_average());
    for i in 0..(WARMUP_ITERATIONS + ITERATIONS) {
        for case in cases.iter_mut() {
            let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
            let (wall, rss, code) = run_once(case.bin.as_deref().unwrap_or(bin), &args);
            assert_eq!(code, 0, "{} exited {code}", case.name);
            if i >= WARMUP_ITERATIONS {
                case.wall.record(wall).expect("record");
                case.rss_kib.record(rss).expect("record");
            }
        }
    }
    println!("  load average after: {}", load_average());
    let base = cases[0].wall.value_at_quantile(0.5).max(1) as f64;
    for case in &cases {
        let ratio = case.wall.value_at_quantile(0.5) as f64 / base;
        let rss_max = case.rss_kib.max();
        println!(
            "  {:<40} p50 {:>7} us  p99 {:>7} us  p999 {:>7} us  x{:<6.1} peak RSS p50 {:>6} KiB max {:>6} KiB",
            case.name,
            case.wall.value_at_quantile(0.5),
            case.wall.value_at_quantile(0.99),
            case.wall.value_at_quantile(0.999),
            ratio,
            case.rss_kib.value_at_quantile(0.5),
            rss_max,
        );
    }
    for case in &cases[1..] {
        let ratio = case.wall.value_at_quantile(0.5) as f64 / base;
        let rss_max = case.rss_kib.max();
        println!(
            "  goal {:<40} wall <= {WALL_RATIO_MAX}x: {}  peak RSS <= {} KiB: {}",
            case.name,
            if ratio <= WALL_RATIO_MAX {
                "met"
            } else {
                "NOT met"
            },
            RSS_KIB_MAX,
            if rss_max <= RSS_KIB_MAX {
                "met"
            } else {
                "NOT met"
            },
        );
    }
}
