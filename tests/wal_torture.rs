//! Real process-kill torture: a child process appends and syncs from several threads and
//! prints every LSN the log acknowledged as durable; the parent SIGKILLs it at a random moment,
//! recovers the log, and checks that every acknowledged record is there, intact, and that
//! nothing returned was altered. Each round the next child appends after that recovery.
//!
//! The child is this test binary re-executed with `VIGIL_WAL_TORTURE_DIR` set.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_runtime::wal::frame::Lsn;
use vigil_runtime::wal::log::{Retention, Wal, WalOptions};
use vigil_runtime::wal::reader::Reader;
use vigil_runtime::wal::record::kind;
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::sim::SimRng;
use vigil_runtime::wal::sync::SyncMethod;

const DIR_ENV: &str = "VIGIL_WAL_TORTURE_DIR";
const ROUND_ENV: &str = "VIGIL_WAL_TORTURE_ROUND";
const ROUNDS: u64 = 25;
const CHILD_THREADS: u64 = 4;

fn options() -> WalOptions {
    WalOptions {
        segment_bytes: 256 * 1024,
        sync_method: SyncMethod::Auto,
        recovery_mode: RecoveryMode::Tail,
        retention: Retention {
            bytes_max: None,
            segments_max: None,
        },
        zero_fill_segments: false,
        open_from_checkpoint: false,
    }
}

/// The payload thread `thread` writes as its `seq`th record in `round`: self-describing, so any
/// record read back can be checked on its own.
fn body(round: u64, thread: u64, seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&round.to_le_bytes());
    out.extend_from_slice(&thread.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    let filler = (seq * 7 + thread * 13) % 300;
    out.extend((0..filler).map(|i| (i ^ seq ^ round) as u8));
    out
}

fn parse(payload: &[u8]) -> Option<(u64, u64, u64)> {
    let word = |at: usize| {
        payload
            .get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    Some((word(0)?, word(8)?, word(16)?))
}

#[test]
fn torture_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let round: u64 = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    let wal = Wal::open(Path::new(&dir), options()).unwrap();
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|thread| {
            let wal = wal.clone();
            std::thread::spawn(move || {
                for seq in 0.. {
                    let lsn = wal
                        .append_raw(kind::USER, &body(round, thread, seq))
                        .unwrap();
                    wal.sync(lsn).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {lsn} {thread} {seq}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn sigkilled_writers_never_lose_an_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("torture seed {seed}");
    let mut rng = SimRng::new(seed);
    let mut acked: Vec<(Lsn, Vec<u8>)> = Vec::new();
    let started = Instant::now();
    for round in 0..ROUNDS {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "torture_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let collector = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let fields: Vec<&str> = line.split_whitespace().collect();
                if let ["ack", lsn, thread, seq] = fields[..] {
                    acks.push((
                        lsn.parse::<u64>().unwrap(),
                        thread.parse::<u64>().unwrap(),
                        seq.parse::<u64>().unwrap(),
                    ));
                }
            }
            acks
        });
        std::thread::sleep(Duration::from_millis(20 + rng.below(150)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acks = collector.join().unwrap();
        acked.extend(
            acks.iter()
                .map(|&(lsn, thread, seq)| (lsn, body(round, thread, seq))),
        );

        let wal = Wal::open(dir.path(), options()).expect("recovery after SIGKILL");
        let fault = wal.recovery().scan.fault.clone();
        assert!(
            fault
                .as_ref()
                .is_none_or(|f| f.kind == vigil_runtime::wal::FaultKind::TornTail),
            "{fault:?}"
        );
        drop(wal);
        let mut reader = Reader::open_dir(dir.path(), 1).unwrap();
        let mut log: Vec<(Lsn, Vec<u8>)> = Vec::new();
        let mut kinds: Vec<u16> = Vec::new();
        let mut collect = |f: vigil_runtime::wal::Frame<'_>| {
            log.push((f.lsn, f.payload.to_vec()));
            kinds.push(f.kind);
        };
        while reader.read_batch(4096, &mut collect).unwrap() > 0 {}
        for (i, (lsn, payload)) in log.iter().enumerate() {
            assert_eq!(*lsn, i as u64 + 1, "round {round}: LSNs dense");
            if kinds[i] == kind::CHECKPOINT {
                continue; // Written when the parent closed the recovered log.
            }
            let (r, thread, seq) = parse(payload).expect("a record the children wrote");
            assert_eq!(
                payload,
                &body(r, thread, seq),
                "round {round}: LSN {lsn} altered"
            );
        }
        for (lsn, payload) in &acked {
            let found = log.get(*lsn as usize - 1).map(|r| &r.1);
            assert_eq!(
                found,
                Some(payload),
                "round {round}: acknowledged LSN {lsn} lost or altered"
            );
        }
        println!(
            "round {round}: {} acknowledged this round, {} in the log",
            acks.len(),
            log.len()
        );
    }
    assert!(
        acked.len() as u64 > ROUNDS,
        "children made progress: {} acks",
        acked.len()
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "torture stays short"
    );
}
