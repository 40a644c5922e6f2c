//! Many processes, one log: concurrent `vigil run` processes on one data directory (some
//! killed mid-job), and processes appending through `Wal` at once while the log rotates.
//!
//! Nothing here waits on time: a job that must be running when something happens blocks
//! reading a FIFO this test holds, and the test's open of the FIFO's write end returns only
//! once the job has opened it (so its `JobStarted` is durable: it is written before the job
//! runs).

mod common;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use common::{vigil_bin, vigil_output, TempDir};
use serde_json::{json, Value};
use vigil_runtime::wal::log::{scan_log, Followed, Retention, Wal, WalError, WalOptions};
use vigil_runtime::wal::reader::Reader;
use vigil_runtime::wal::record::kind;
use vigil_runtime::wal::scan::RecoveryMode;
use vigil_runtime::wal::storage::{FsStore, SegmentStore};
use vigil_runtime::wal::sync::SyncMethod;

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Starts `vigil run --json` on `data` with `args`.
fn spawn_run(data: &Path, root: &Path, capability: &str, args: Value) -> Child {
    Command::new(vigil_bin())
        .env("VIGIL_DATA_DIR", data)
        .env_remove("VIGIL_CGROUP_MODE")
        .arg("run")
        .arg(capability)
        .arg("--args")
        .arg(args.to_string())
        .args(["--timeout", "10m", "--json", "--root"])
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vigil run")
}

/// A job that blocks until the test writes a line into (or closes) `fifo`.
fn spawn_blocked(data: &Path, root: &Path, fifo: &Path) -> Child {
    let cmd = format!("read line < '{}'; echo \"got $line\"", fifo.display());
    spawn_run(data, root, "shell", json!({ "cmd": cmd }))
}

/// Opens the write end of `fifo`: returns once the job reading it has opened it. Fails (never
/// hangs) when `child`, the `vigil run` whose job reads it, exits first.
fn hold(fifo: &Path, child: &mut Child) -> File {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
        {
            Ok(file) => {
                // SAFETY: fcntl on a descriptor this function owns.
                unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
                return file;
            }
            // ENXIO: no reader yet.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {}
            Err(e) => panic!("open {}: {e}", fifo.display()),
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut stdout = String::new();
            let mut stderr = String::new();
            if let Some(mut out) = child.stdout.take() {
                let _ = out.read_to_string(&mut stdout);
            }
            if let Some(mut err) = child.stderr.take() {
                let _ = err.read_to_string(&mut stderr);
            }
            panic!(
                "the job reading {} ended before the test held it: {status}\nstdout: {stdout}\nstderr: {stderr}",
                fifo.display()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reader on {} after 300 s",
            fifo.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits for a `vigil run --json` and returns its result object.
fn finish(child: Child) -> Value {
    let out = child.wait_with_output().expect("wait vigil run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "vigil run printed no JSON ({e}): exit {:?}\nstdout: {stdout}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        out.status.code(),
        Some(0),
        "{result}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(result["status"], "completed", "{result}");
    result
}

/// `vigil jobs --json`, by job id; every id listed once.
fn jobs(data: &Path) -> BTreeMap<u64, Value> {
    let (code, out, err) = vigil_output(data, &["jobs", "--json"]);
    assert_eq!(code, 0, "{err}");
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    let mut by_id = BTreeMap::new();
    for job in list {
        let id = job["job_id"].as_u64().unwrap();
        assert!(by_id.insert(id, job).is_none(), "job {id} listed twice");
    }
    by_id
}

/// Reads every record of the log in `dir` (which must verify): their LSNs, in order.
fn lsns(dir: &Path) -> Vec<u64> {
    let mut reader = Reader::open_dir_from_start(dir).unwrap();
    let mut lsns = Vec::new();
    while reader
        .read_batch(1024, &mut |frame| lsns.push(frame.lsn))
        .unwrap()
        > 0
    {}
    lsns
}

#[test]
fn sixteen_runs_share_one_data_dir_and_only_the_killed_jobs_are_interrupted() {
    let tmp = TempDir::new("mp-runs");
    let data = tmp.path().join("data");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let fifo = |name: &str| -> PathBuf {
        let path = tmp.path().join(name);
        mkfifo(&path);
        path
    };
    let quick = || json!({ "argv": ["/bin/true"] });

    // 4 jobs to kill mid-job, 4 that stay running, and 4 quick runs, all at once.
    let victim_fifos: Vec<PathBuf> = (0..4).map(|i| fifo(&format!("victim{i}"))).collect();
    let long_fifos: Vec<PathBuf> = (0..4).map(|i| fifo(&format!("long{i}"))).collect();
    let mut victims: Vec<Child> = victim_fifos
        .iter()
        .map(|f| spawn_blocked(&data, &root, f))
        .collect();
    let longs: Vec<Child> = long_fifos
        .iter()
        .map(|f| spawn_blocked(&data, &root, f))
        .collect();
    let first_quick: Vec<Child> = (0..4)
        .map(|_| spawn_run(&data, &root, "exec", quick()))
        .collect();
    // Every blocked job is running (its start durable) once its FIFO's reader is there.
    let victim_ends: Vec<File> = victim_fifos
        .iter()
        .zip(victims.iter_mut())
        .map(|(f, c)| hold(f, c))
        .collect();
    let mut longs = longs;
    let mut long_ends: Vec<File> = long_fifos
        .iter()
        .zip(longs.iter_mut())
        .map(|(f, c)| hold(f, c))
        .collect();
    let mut results: Vec<Value> = first_quick.into_iter().map(finish).collect();

    let running = jobs(&data);
    let running_ids: Vec<u64> = running
        .values()
        .filter(|j| j["status"] == "running")
        .map(|j| j["job_id"].as_u64().unwrap())
        .collect();
    assert_eq!(running_ids.len(), 8, "{running:?}");

    for victim in &mut victims {
        victim.kill().unwrap(); // SIGKILL, mid-job
        victim.wait().unwrap();
    }
    drop(victim_ends);

    // The next opens (4 more runs, while the long jobs still run) mark the killed ones.
    let second_quick: Vec<Child> = (0..4)
        .map(|_| spawn_run(&data, &root, "exec", quick()))
        .collect();
    results.extend(second_quick.into_iter().map(finish));

    let listed = jobs(&data);
    let interrupted: Vec<u64> = listed
        .values()
        .filter(|j| j["status"] == "interrupted")
        .map(|j| j["job_id"].as_u64().unwrap())
        .collect();
    let still_running: Vec<u64> = listed
        .values()
        .filter(|j| j["status"] == "running")
        .map(|j| j["job_id"].as_u64().unwrap())
        .collect();
    assert_eq!(interrupted.len(), 4, "the killed jobs: {listed:?}");
    assert_eq!(
        still_running.len(),
        4,
        "no live job is interrupted: {listed:?}"
    );
    assert!(
        interrupted.iter().all(|id| running_ids.contains(id)),
        "only jobs that were running were interrupted"
    );

    // Release the long jobs: each sees its line and succeeds.
    for end in &mut long_ends {
        end.write_all(b"go\n").unwrap();
    }
    drop(long_ends);
    for long in longs {
        let result = finish(long);
        assert_eq!(result["stdout"], "got go\n", "{result}");
        results.push(result);
    }

    // Every survivor's job is listed once, completed, under its own id.
    let listed = jobs(&data);
    assert_eq!(listed.len(), 16, "{listed:?}");
    let mut acknowledged: Vec<u64> = results
        .iter()
        .map(|r| r["job_id"].as_u64().unwrap())
        .collect();
    acknowledged.sort_unstable();
    acknowledged.dedup();
    assert_eq!(acknowledged.len(), 12, "ids are unique across processes");
    for id in &acknowledged {
        assert_eq!(listed[id]["status"], "completed", "{}", listed[id]);
    }
    for id in &interrupted {
        assert_eq!(listed[id]["status"], "interrupted");
    }

    let (code, out, err) = vigil_output(&data, &["wal", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let lsns = lsns(&data.join("wal"));
    assert_eq!(lsns, (1..=lsns.len() as u64).collect::<Vec<_>>(), "dense");
}

/// Set in a child process of [`processes_append_through_wal_at_once_with_dense_lsns_and_one_chain`].
const CHILD_ENV: &str = "VIGIL_TEST_WAL_APPENDER";
const CHILD_RECORDS: u32 = 400;
const CHILDREN: u32 = 4;

fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes: 16 * 1024,
        sync_method: SyncMethod::Fdatasync,
        ..WalOptions::default()
    }
}

/// A child's work: append records `(child, i)` to the log named in the environment, some
/// made durable on the way.
#[test]
fn wal_appender_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Only does something as a child of the test below.
    };
    let (dir, child) = spec.split_once('|').unwrap();
    let child: u32 = child.parse().unwrap();
    let wal = Wal::open(Path::new(dir), small_segments()).unwrap();
    for i in 0..CHILD_RECORDS {
        let mut payload = child.to_le_bytes().to_vec();
        payload.extend_from_slice(&i.to_le_bytes());
        payload.resize(100, 0);
        let lsn = wal.append_raw(kind::USER, &payload).unwrap();
        if i % 16 == 0 {
            wal.sync(lsn).unwrap();
        }
    }
    wal.close().unwrap();
}

#[test]
fn processes_append_through_wal_at_once_with_dense_lsns_and_one_chain() {
    let tmp = TempDir::new("mp-wal");
    let dir = tmp.path().join("wal");
    // The log exists before the children race to open it.
    let parent = Wal::open(&dir, small_segments()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<Child> = (1..=CHILDREN)
        .map(|child| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "wal_appender_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{}|{child}", dir.display()))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // This process appends as child 0 meanwhile.
    for i in 0..CHILD_RECORDS {
        let mut payload = 0u32.to_le_bytes().to_vec();
        payload.extend_from_slice(&i.to_le_bytes());
        payload.resize(100, 0);
        parent.append_raw(kind::USER, &payload).unwrap();
    }
    parent.sync_all().unwrap();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child failed");
    }
    parent.close().unwrap();

    // One chain: the scan accepts every frame with no fault, and the segments rotated.
    let store = FsStore::open_reader(&dir).unwrap();
    let scan = scan_log(&store, RecoveryMode::Tail, &mut |_, _, _| {}).unwrap();
    assert_eq!(scan.fault, None);
    assert!(scan.segments.len() > 4, "appends rotated across processes");
    // Dense LSNs, and each writer's records in its own order.
    let mut reader = Reader::open_dir_from_start(&dir).unwrap();
    let mut lsns = Vec::new();
    let mut next: BTreeMap<u32, u32> = BTreeMap::new();
    while reader
        .read_batch(1024, &mut |frame| {
            lsns.push(frame.lsn);
            if frame.kind == kind::USER {
                let child = u32::from_le_bytes(frame.payload[0..4].try_into().unwrap());
                let i = u32::from_le_bytes(frame.payload[4..8].try_into().unwrap());
                let expected = next.entry(child).or_insert(0);
                assert_eq!(i, *expected, "writer {child}'s records in order");
                *expected += 1;
            }
        })
        .unwrap()
        > 0
    {}
    assert_eq!(lsns, (1..=lsns.len() as u64).collect::<Vec<_>>(), "dense");
    assert_eq!(next.len() as u32, CHILDREN + 1);
    assert!(next.values().all(|&n| n == CHILD_RECORDS), "{next:?}");
}

/// Set in the child of [`a_writer_killed_mid_append_leaves_the_log_to_the_others_intact`].
const KILLED_ENV: &str = "VIGIL_TEST_WAL_KILLED";

/// A child that appends without end, saying on stdout when it has appended 200 records.
#[test]
fn wal_killed_child() {
    let Ok(dir) = std::env::var(KILLED_ENV) else {
        return; // Only does something as a child of the test below.
    };
    let wal = Wal::open(Path::new(&dir), small_segments()).unwrap();
    let mut stdout = std::io::stdout();
    for i in 0u64.. {
        let lsn = wal.append_raw(kind::USER, &[0xEE; 300]).unwrap();
        if i % 32 == 0 {
            wal.sync(lsn).unwrap();
        }
        if i == 200 {
            stdout.write_all(b"appending\n").unwrap();
            stdout.flush().unwrap();
        }
    }
}

#[test]
fn a_writer_killed_mid_append_leaves_the_log_to_the_others_intact() {
    use std::io::BufRead;
    let tmp = TempDir::new("mp-killed");
    let dir = tmp.path().join("wal");
    let survivor = Wal::open(&dir, small_segments()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "wal_killed_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILLED_ENV, &dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Once it says so, it is appending in a loop: the kill lands somewhere in an append, the
    // lock held or not, a frame half-copied or not, a rotation under way or not.
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    while !line.contains("appending") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // The survivor appends after whatever the dead writer left, and everything acknowledged
    // is there, in one chain with dense LSNs.
    let mut acknowledged = Vec::new();
    for i in 0..100u32 {
        let lsn = survivor.append_raw(kind::USER, &i.to_le_bytes()).unwrap();
        survivor.sync(lsn).unwrap();
        acknowledged.push(lsn);
    }
    survivor.close().unwrap();
    let store = FsStore::open_reader(&dir).unwrap();
    let scan = scan_log(&store, RecoveryMode::Tail, &mut |_, _, _| {}).unwrap();
    assert_eq!(scan.fault, None, "no damage, not even a torn tail");
    let mut reader = Reader::open_dir_from_start(&dir).unwrap();
    let mut lsns = Vec::new();
    let mut ours = Vec::new();
    while reader
        .read_batch(1024, &mut |frame| {
            lsns.push(frame.lsn);
            if frame.kind == kind::USER && frame.payload.len() == 4 {
                ours.push(frame.lsn);
            }
        })
        .unwrap()
        > 0
    {}
    assert_eq!(lsns, (1..=lsns.len() as u64).collect::<Vec<_>>(), "dense");
    assert_eq!(ours, acknowledged);
    // And a writer opening now recovers nothing to cut.
    let reopened = Wal::open(&dir, small_segments()).unwrap();
    assert_eq!(reopened.recovery().truncated_bytes, 0);
}

/// Appends `records` 100-byte records to `wal`, making each 16th durable.
fn append_records(wal: &Wal, records: u32) -> u64 {
    let mut last = 0;
    for i in 0..records {
        last = wal.append_raw(kind::USER, &[i as u8; 100]).unwrap();
        if i % 16 == 15 {
            wal.sync(last).unwrap();
        }
    }
    wal.sync(last).unwrap();
    last
}

#[test]
fn a_writer_idle_while_others_retire_its_segment_appends_after_them() {
    let tmp = TempDir::new("mp-retired");
    let dir = tmp.path().join("wal");
    let options = WalOptions {
        retention: Retention {
            bytes_max: Some(3 * 16 * 1024),
            segments_max: None,
        },
        ..small_segments()
    };
    let idle = Wal::open(&dir, options).unwrap();
    let followed = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&followed);
    let restarts = Arc::new(AtomicU32::new(0));
    let restarted = Arc::clone(&restarts);
    idle.set_follower(Box::new(move |followed| match followed {
        Followed::Frame(frame) => seen.lock().unwrap().push(frame.lsn),
        Followed::Restart => {
            restarted.fetch_add(1, Ordering::Relaxed);
            seen.lock().unwrap().clear();
        }
    }));
    let first = append_records(&idle, 4);
    // A reader of the idle process, at the end of what it has read.
    let mut reader = idle.reader(1);
    let mut read = Vec::new();
    reader
        .read_batch(100, &mut |frame| read.push(frame.lsn))
        .unwrap();
    assert_eq!(read, (1..=first).collect::<Vec<_>>());
    let busy = Wal::open(&dir, options).unwrap();
    // Enough for several rotations: the idle writer's segment is retired meanwhile.
    let last = append_records(&busy, 2_000);
    let store = FsStore::open_reader(&dir).unwrap();
    assert!(
        store.identity().unwrap().unwrap().first_seq > 2,
        "the idle writer's segment was retired"
    );
    let next = idle.append_raw(kind::USER, b"after").unwrap();
    assert_eq!(next, last + 1, "dense LSNs across the retired segments");
    idle.sync(next).unwrap();
    // The follower was told to start over once, and then saw a whole, ordered history
    // from the first retained segment on.
    assert_eq!(restarts.load(Ordering::Relaxed), 1);
    let followed = followed.lock().unwrap().clone();
    let first_retained = Reader::open_dir_from_start(&dir).unwrap().next_lsn();
    assert!(first_retained > first, "{first_retained}");
    assert_eq!(followed.first(), Some(&first_retained), "{followed:?}");
    assert!(
        followed.windows(2).all(|w| w[1] == w[0] + 1),
        "{followed:?}"
    );
    assert_eq!(followed.last(), Some(&last));
    // The reader reads on to the end of its segment, then says the rest was retired
    // instead of waiting for records that will never come.
    let error = loop {
        match reader.read_batch(1000, &mut |_| {}) {
            Ok(0) => panic!("the reader stopped quietly at LSN {}", reader.next_lsn()),
            Ok(_) => {}
            Err(error) => break error,
        }
    };
    assert!(
        matches!(error, WalError::LsnNotRetained { first_lsn, .. } if first_lsn == first_retained),
        "{error}"
    );
    drop(reader);
    busy.close().unwrap();
    idle.close().unwrap();
    let scan = scan_log(&store, RecoveryMode::Tail, &mut |_, _, _| {}).unwrap();
    assert_eq!(scan.fault, None);
    assert!(scan.next_lsn > next, "{scan:?}");
}

#[test]
fn an_append_mutex_left_held_by_a_lost_holder_is_initialised_afresh_by_the_next_lone_writer() {
    use std::sync::mpsc;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    Wal::open(&dir, WalOptions::default())
        .unwrap()
        .close()
        .unwrap();
    // The mutex as a machine crash can leave it on disk: held by a thread that will never
    // let go and that no kernel reports dead (here: a live thread that keeps it, and holds
    // no writer's lock, as nothing of a lost boot does).
    hold_the_append_mutex_forever(&dir);
    // The next writer to open the log is the only one (no writer holds `WRITERS`): it starts
    // from a fresh mutex. The open (in a thread: a wait on that mutex would never end) goes
    // through and appends.
    let (done_tx, done_rx) = mpsc::channel();
    let open_dir = dir.clone();
    std::thread::spawn(move || {
        let appended = Wal::open(&open_dir, WalOptions::default()).and_then(|wal| {
            let lsn = wal.append_raw(kind::USER, b"after the reboot")?;
            wal.sync_all()?;
            wal.close()?;
            Ok(lsn)
        });
        let _ = done_tx.send(appended.map_err(|e| e.to_string()));
    });
    let result = done_rx.recv_timeout(Duration::from_secs(120));
    assert!(
        matches!(result, Ok(Ok(_))),
        "the open waited on a mutex a lost holder left, or failed: {result:?}"
    );
}

#[test]
fn an_append_mutex_in_use_is_never_initialised_afresh_while_a_writer_has_the_log_open() {
    use std::sync::mpsc;
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    // A writer that has the log open, and the mutex held as in the middle of a batch.
    let open_writer = Wal::open(&dir, WalOptions::default()).unwrap();
    hold_the_append_mutex_forever(&dir);
    // A second writer is not alone: it must wait for the mutex, not take a fresh one (two
    // appenders at one place). Its open never gets through here; had it taken a fresh mutex,
    // it would have at once.
    let (done_tx, done_rx) = mpsc::channel();
    let open_dir = dir.clone();
    std::thread::spawn(move || {
        let _ = done_tx.send(Wal::open(&open_dir, WalOptions::default()).is_ok());
    });
    let result = done_rx.recv_timeout(Duration::from_secs(2));
    assert!(
        result.is_err(),
        "a second writer went past a held mutex: {result:?}"
    );
    open_writer.abandon();
}

/// Takes the append mutex of the log in `dir` in a thread that never lets go (and holds no
/// writer's lock); returns once it is held.
fn hold_the_append_mutex_forever(dir: &Path) {
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder_dir = dir.to_path_buf();
    std::thread::spawn(move || {
        let tail = vigil_runtime::wal::share::SharedTail::open(&holder_dir).unwrap();
        tail.hold_forever().unwrap();
        held_tx.send(()).unwrap();
        loop {
            std::thread::park();
        }
    });
    held_rx.recv().unwrap();
}
