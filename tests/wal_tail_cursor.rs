//! `vigil wal tail -f --json --cursor-file`: a log shipper's resumable stream. Stopped
//! mid-stream and restarted from its cursor file, it neither skips nor repeats a record; killed
//! outright, it repeats at most what followed its last saved position, and skips nothing.
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::{vigil_bin, TempDir};
use serde_json::Value;
use vigil_runtime::wal::log::{Wal, WalOptions};
use vigil_runtime::wal::reader::Reader;
use vigil_runtime::wal::record::{Record, SessionCreated};

/// Appends `n` records (each ~200 bytes of JSON when printed); returns the last LSN.
fn append_records(data: &Path, n: usize) -> u64 {
    let wal = Wal::open(&data.join("wal"), WalOptions::default()).unwrap();
    let meta = format!("{{\"pad\":\"{}\"}}", "x".repeat(120));
    let mut last = 0;
    for i in 0..n {
        let session = format!("s-{i}");
        last = wal
            .append(&Record::SessionCreated(SessionCreated {
                session: &session,
                unix_ms: i as u64,
                meta_json: &meta,
            }))
            .unwrap();
    }
    wal.sync_all().unwrap();
    wal.close().unwrap();
    // Closing may add records of its own (a checkpoint): the last LSN is the log's.
    let mut reader = Reader::open_dir(&data.join("wal"), last).unwrap();
    while reader
        .read_batch(1024, &mut |frame| last = frame.lsn)
        .unwrap()
        > 0
    {}
    last
}

/// Checks that `lsns` is exactly `from..=to`, saying where it is not.
fn assert_run(lsns: &[u64], from: u64, to: u64, what: &str) {
    let expected: Vec<u64> = (from..=to).collect();
    if lsns != expected {
        let at = lsns.iter().zip(&expected).position(|(a, b)| a != b);
        panic!(
            "{what}: {} LSNs from {:?} to {:?}, expected {from}..={to}; first difference at index {at:?}",
            lsns.len(),
            lsns.first(),
            lsns.last()
        );
    }
}

fn start_tail(data: &Path, extra: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["wal", "tail", "-f", "--json", "--cursor-file"])
        .arg(data.join("cursor"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    (child, stdout)
}

fn lsn_of(line: &str) -> u64 {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    v["lsn"].as_u64().unwrap()
}

/// The next line's LSN (the tail must print one).
fn next_lsn(out: &mut BufReader<ChildStdout>) -> u64 {
    let mut line = String::new();
    assert!(
        out.read_line(&mut line).unwrap() > 0,
        "the tail ended early"
    );
    lsn_of(&line)
}

/// Every LSN the tail prints until its stdout ends.
fn drain(out: &mut BufReader<ChildStdout>) -> Vec<u64> {
    out.lines().map(|l| lsn_of(&l.unwrap())).collect()
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

fn saved_cursor(data: &Path) -> u64 {
    std::fs::read_to_string(data.join("cursor"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Starts a tail and reads until it has printed `last`, then stops it with SIGTERM; returns
/// every LSN it printed.
fn tail_through(data: &Path, extra: &[&str], last: u64) -> Vec<u64> {
    let (mut child, mut out) = start_tail(data, extra);
    let mut lsns = Vec::new();
    while lsns.last() != Some(&last) {
        lsns.push(next_lsn(&mut out));
    }
    signal(&child, libc::SIGTERM);
    lsns.extend(drain(&mut out));
    assert!(child.wait().unwrap().success());
    lsns
}

/// More records than a pipe holds, so a tail whose reader reads one line is still printing.
const RECORDS: usize = 3_000;

/// A log of `RECORDS` records and a tail of it from LSN 1, sent `sig` once it has printed its
/// first line; returns the log's last LSN and every LSN the tail printed (checked to be a run
/// from 1 that stops before the end: mid-stream).
fn stopped_mid_stream(data: &Path, sig: i32) -> (u64, Vec<u64>) {
    let last = append_records(data, RECORDS);
    let (mut child, mut out) = start_tail(data, &["--from", "1"]);
    let mut printed = vec![next_lsn(&mut out)];
    signal(&child, sig);
    printed.extend(drain(&mut out));
    let status = child.wait().unwrap();
    assert!(sig == libc::SIGKILL || status.success(), "{status}");
    assert!(
        (printed.len() as u64) < last,
        "stopped mid-stream: {} of {last} records printed",
        printed.len()
    );
    assert_run(&printed, 1, printed.len() as u64, "the stopped run");
    (last, printed)
}

#[test]
fn a_tail_stopped_mid_stream_resumes_from_its_cursor_with_no_gap_and_no_duplicate() {
    let dir = TempDir::new("tail-cursor");
    let data = dir.path().join("data");
    let (_, first) = stopped_mid_stream(&data, libc::SIGTERM);
    assert_eq!(saved_cursor(&data), first.len() as u64 + 1);

    // The log grows while no tail runs; the restart (its --from ignored: the cursor file
    // wins) goes on from the cursor through the new records.
    let last = append_records(&data, 50);
    let mut all = first;
    all.extend(tail_through(&data, &["--from", "1"], last));
    assert_run(&all, 1, last, "both runs");
    assert_eq!(saved_cursor(&data), last + 1);
}

#[test]
fn a_killed_tail_skips_nothing_and_repeats_only_what_followed_its_saved_cursor() {
    let dir = TempDir::new("tail-cursor-kill");
    let data = dir.path().join("data");
    let (last, first) = stopped_mid_stream(&data, libc::SIGKILL);
    let cursor = saved_cursor(&data);
    assert!(
        cursor <= first.len() as u64 + 1,
        "the cursor ran ahead of the output"
    );

    assert_run(&tail_through(&data, &[], last), cursor, last, "the restart");
}

/// `vigil wal tail --json --cursor-file DATA/cursor`, without -f.
fn tail_once(data: &Path) -> std::process::Output {
    Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["wal", "tail", "--json", "--cursor-file"])
        .arg(data.join("cursor"))
        .output()
        .unwrap()
}

#[test]
fn a_cursor_that_is_not_one_is_refused_not_reset() {
    let dir = TempDir::new("tail-cursor-bad");
    let data = dir.path().join("data");
    append_records(&data, 3);
    for (content, says) in [
        ("garbage\n", "is not an LSN"),
        ("99\n", "past the end of the log"),
    ] {
        std::fs::write(data.join("cursor"), content).unwrap();
        let out = tail_once(&data);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(
            std::fs::read_to_string(data.join("cursor")).unwrap(),
            content
        );
    }
    // Without -f, a tail with a cursor prints what is new and saves where it stopped.
    std::fs::write(data.join("cursor"), "2\n").unwrap();
    let out = tail_once(&data);
    assert!(out.status.success());
    let lsns: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(lsn_of)
        .collect();
    let last = lsns.last().copied().unwrap();
    assert_run(&lsns, 2, last, "a tail without -f");
    assert_eq!(saved_cursor(&data), last + 1);
}

#[test]
fn the_example_vector_config_runs_a_tail_that_works() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/vector.toml");
    let config = common::toml_as_json(&std::fs::read_to_string(config).unwrap());
    let source = &config["sources"]["vigil_log"];
    assert_eq!(source["type"], "exec");
    assert_eq!(source["mode"], "streaming");
    assert_eq!(source["decoding"]["codec"], "json");
    let command: Vec<&str> = source["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(command.ends_with(&["wal", "tail", "-f", "--json", "--cursor-file", command[8]]));

    // The same arguments, on a scratch log and cursor, without -f (so it ends).
    let dir = TempDir::new("tail-vector");
    let data = dir.path().join("data");
    let last = append_records(&data, 5);
    let mut args: Vec<String> = command[1..].iter().map(|s| s.to_string()).collect();
    args[1] = data.to_str().unwrap().into();
    args[7] = data.join("cursor").to_str().unwrap().into();
    args.retain(|a| a != "-f");
    let out = Command::new(vigil_bin()).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(printed.lines().map(lsn_of).next_back(), Some(last));
    assert_eq!(saved_cursor(&data), last + 1);
}
