//! Retention never bricks a log: with small segments a server retires the oldest ones within
//! seconds, a job still running when its start record is retired survives in the index
//! checkpoint that opens each segment, and after a kill -9 every reader and the next writer
//! open the log, list what it holds, mark the running job interrupted and never reuse a job id.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{vigil_bin, TempDir};
use serde_json::{json, Value};

/// Jobs run after the long one: each logs about 2 KiB (its argument and its output), so
/// they fill several 16 KiB segments, of which retention keeps 32 KiB.
const SHORT_JOBS: u64 = 40;

fn vigil(data: &Path, args: &[&str]) -> Output {
    Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("run vigil")
}

fn json_out(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON value")
}

/// One JSON-RPC call on a fresh connection; its result (an error fails the test).
fn call(socket: &Path, method: &str, params: Value) -> Value {
    let answer = call_raw(socket, method, params);
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    answer["result"].clone()
}

/// One JSON-RPC call on a fresh connection; the whole answer.
fn call_raw(socket: &Path, method: &str, params: Value) -> Value {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    stream.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str(&line).expect("a JSON answer")
}

fn start_server(dir: &Path, data: &Path, socket: &Path) -> Child {
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let child = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(data)
        .args(["--wal-segment-bytes", "16K", "--wal-retain-bytes", "32K"])
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .args(["--sample-interval", "100ms"])
        .arg("--root")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start vigil serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "no server");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn segment_files(wal: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}

#[test]
fn a_log_past_retention_opens_lists_and_runs_and_keeps_a_running_job() {
    let dir = TempDir::new("retention");
    let data = dir.path().join("data");
    let socket = dir.path().join("vigil.sock");
    let mut server = start_server(dir.path(), &data, &socket);

    // A job that is still running when its start record is retired.
    let long_socket = socket.clone();
    let long = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(&long_socket).unwrap();
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "run",
            "params": {"capability": "shell", "args": {"cmd": "sleep 300"}}});
        let _ = stream.write_all(format!("{request}\n").as_bytes());
        let mut line = String::new();
        let _ = BufReader::new(stream).read_line(&mut line);
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let jobs = call(&socket, "jobs.list", json!({}));
        if jobs
            .as_array()
            .is_some_and(|j| j.iter().any(|j| j["job_id"] == 1))
        {
            break;
        }
        assert!(Instant::now() < deadline, "the long job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    for n in 0..SHORT_JOBS {
        let run = call(
            &socket,
            "run",
            json!({"capability": "exec", "args": {"argv": ["/bin/echo", format!("job {n} {}", "x".repeat(1000))]}}),
        );
        assert_eq!(run["status"], "completed", "{run}");
    }
    let wal = data.join("wal");
    let first_segment = wal.join(format!("{:020}.wal", 1));
    assert!(
        !first_segment.exists(),
        "retention retired the first segment: {:?}",
        segment_files(&wal)
    );
    assert!(segment_files(&wal).len() <= 3, "{:?}", segment_files(&wal));

    // The server dies with the long job running.
    // SAFETY: killing our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGKILL) };
    server.wait().unwrap();
    drop(long);

    // A reader without the lock: the job index starts from the checkpoint.
    let jobs = json_out(&vigil(&data, &["jobs", "--json"]));
    let jobs = jobs.as_array().unwrap();
    let long_job = jobs.iter().find(|j| j["job_id"] == 1).expect("job 1 kept");
    assert_eq!(long_job["status"], "running");
    let last = SHORT_JOBS + 1;
    assert!(
        jobs.iter().any(|j| j["job_id"] == last),
        "newest job listed"
    );
    assert!(
        !jobs.iter().any(|j| j["job_id"] == 2),
        "job 2's records were retired"
    );
    let human = vigil(&data, &["jobs"]);
    assert!(human.status.success());
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("history from LSN"), "{human}");
    let stats = json_out(&vigil(&data, &["wal", "stats", "--json"]));
    assert!(stats["first_lsn"].as_u64().unwrap() > 1, "{stats}");
    let verify = vigil(&data, &["wal", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // The next writer opens it, marks job 1 interrupted and never reuses an id.
    let run = json_out(&vigil(
        &data,
        &[
            "run",
            "exec",
            "--args",
            r#"{"argv":["/bin/true"]}"#,
            "--json",
        ],
    ));
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["job_id"],
        last + 1,
        "job ids continue past retired records"
    );
    let job = json_out(&vigil(&data, &["job", "1", "--json"]));
    assert_eq!(job["status"], "interrupted", "{job}");

    // A server opens it too.
    let mut server = start_server(dir.path(), &data, &socket);
    let health = call(&socket, "health", json!({}));
    assert_eq!(health["status"], "ok");
    let listed = call(&socket, "jobs.list", json!({}));
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|j| j["job_id"] == 1 && j["status"] == "interrupted"));
    let _ = server.kill();
    let _ = server.wait();
}

/// One-shot runs next to an idle server retire the segments the server had not followed
/// yet: the server's next job still appends after theirs, with the next job id, and its
/// index lists what the retained log holds.
#[test]
fn a_server_idle_while_one_shot_runs_retire_its_segments_goes_on_after_them() {
    let dir = TempDir::new("retention-idle");
    let data = dir.path().join("data");
    let socket = dir.path().join("vigil.sock");
    let mut server = start_server(dir.path(), &data, &socket);
    let first = call(
        &socket,
        "run",
        json!({"capability": "exec", "args": {"argv": ["/bin/true"]}}),
    );
    assert_eq!(first["job_id"], 1, "{first}");
    let retention = ["--wal-segment-bytes", "16K", "--wal-retain-bytes", "32K"];
    for n in 0..SHORT_JOBS {
        let word = format!("one-shot {n} {}", "x".repeat(1000));
        let args = json!({"argv": ["/bin/echo", word]}).to_string();
        let mut all = retention.to_vec();
        all.extend(["run", "exec", "--args", &args, "--json"]);
        let run = json_out(&vigil(&data, &all));
        assert_eq!(run["status"], "completed", "{run}");
    }
    let wal = data.join("wal");
    assert!(
        !wal.join(format!("{:020}.wal", 2)).exists(),
        "the segments after the server's were retired: {:?}",
        segment_files(&wal)
    );
    let run = call(
        &socket,
        "run",
        json!({"capability": "exec", "args": {"argv": ["/bin/true"]}}),
    );
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(
        run["job_id"],
        SHORT_JOBS + 2,
        "the next id after the one-shots"
    );
    let listed = call(&socket, "jobs.list", json!({}));
    let ids: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["job_id"].as_u64())
        .collect();
    assert!(
        ids.contains(&(SHORT_JOBS + 1)) && ids.contains(&(SHORT_JOBS + 2)) && !ids.contains(&1),
        "the server lists the retained history: {ids:?}"
    );
    // A cursor from before the retained log: an error that says where the log now starts,
    // and reading goes on from there.
    let retired = call_raw(&socket, "events.read", json!({"cursor": 1}));
    assert_eq!(retired["error"]["code"], -32008, "{retired}");
    assert_eq!(retired["error"]["data"]["lsn"], 1, "{retired}");
    let first_lsn = retired["error"]["data"]["first_lsn"]
        .as_u64()
        .expect("first_lsn");
    let events = call(&socket, "events.read", json!({"cursor": first_lsn}));
    assert_eq!(events["events"][0]["lsn"], first_lsn, "{events}");
    let _ = server.kill();
    let _ = server.wait();
    let verify = vigil(&data, &["wal", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
}
