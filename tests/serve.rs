//! `vigil serve` end to end: a real server process on a temp socket, driven over the socket the
//! way agents drive it. Every method; 50 concurrent clients; malformed, oversized, silent and
//! vanishing clients; a peer of another uid; the busy bound; SIGTERM with jobs running; the
//! Prometheus endpoint read by a real parser; `vigil call` and `vigil run --socket`.
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{vigil_bin, vigil_output, TempDir};
use serde_json::{json, Value};

/// A `vigil serve` child on a socket in its own temp dir, killed on drop.
struct Server {
    child: Child,
    dir: TempDir,
    socket: PathBuf,
    metrics: Option<String>,
}

impl Server {
    fn start(tag: &str, extra: &[&str]) -> Server {
        let dir = TempDir::new(tag);
        Server::start_in(dir, extra)
    }

    fn start_in(dir: TempDir, extra: &[&str]) -> Server {
        let socket = dir.path().join("vigil.sock");
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(vigil_bin())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("serve")
            .arg("--socket")
            .arg(&socket)
            .args(["--sample-interval", "100ms"])
            .arg("--root")
            .arg(dir.path())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vigil serve");
        let mut server = Server {
            child,
            dir,
            socket,
            metrics: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Conn::open(&server.socket) {
                if c.call("health", json!({}))["result"]["status"] == "ok" {
                    break;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("vigil serve exited early ({status}): {}", server.log());
            }
            assert!(Instant::now() < deadline, "no server: {}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        server.metrics = server
            .log()
            .lines()
            .find_map(|l| l.split("metrics on ").nth(1).map(str::to_string));
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    fn conn(&self) -> Conn {
        Conn::open(&self.socket).expect("connect")
    }

    fn call(&self, method: &str, params: Value) -> Value {
        self.conn().call(method, params)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client connection.
struct Conn {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    next_id: u64,
}

impl Conn {
    fn open(socket: &Path) -> std::io::Result<Conn> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(Conn {
            stream,
            reader,
            next_id: 1,
        })
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn read_answer(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with('\n'), "an answer is one line: {line:?}");
        serde_json::from_str(&line).unwrap()
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let req = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(format!("{req}\n").as_bytes());
        let answer = self.read_answer();
        assert_eq!(answer["jsonrpc"], "2.0");
        assert_eq!(answer["id"], json!(id), "answers come in order");
        answer
    }
}

fn result(answer: Value) -> Value {
    assert!(answer.get("error").is_none(), "unexpected error: {answer}");
    answer["result"].clone()
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error: {answer}"))
}

fn shell_run(cmd: &str, timeout_ms: u64) -> Value {
    json!({"capability": "shell", "args": {"cmd": cmd}, "limits": {"timeout_ms": timeout_ms}})
}

/// Every record in the data directory's log, read with `vigil wal dump --json`.
fn wal_records(data_dir: &Path) -> Vec<Value> {
    let out = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["wal", "dump", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no failure mode.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn every_method_answers_over_the_socket() {
    let server = Server::start("serve-methods", &[]);
    let mut c = server.conn();

    let health = result(c.call("health", json!({})));
    assert_eq!(health["status"], "ok");
    assert_eq!(health["pid"], json!(server.child.id()));

    let sample = result(c.call("telemetry.sample", json!({})));
    assert!(sample["memory"]["total_bytes"].as_u64().unwrap() > 0);
    assert!(sample["cpu"]["per_cpu"].is_array());

    std::thread::sleep(Duration::from_millis(300));
    let history = result(c.call("telemetry.history", json!({"max": 2})));
    let samples = history["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 2, "{history}");
    assert!(samples[0]["seq"].as_u64() < samples[1]["seq"].as_u64());
    let since = result(c.call("telemetry.history", json!({"since_seq": samples[0]["seq"]})));
    assert!(since["samples"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["seq"].as_u64() > samples[0]["seq"].as_u64()));

    let session = result(c.call("sessions.create", json!({"meta": {"agent": "test"}})));
    let sid = session["session"].as_str().unwrap().to_string();
    assert_eq!(session["meta"]["agent"], "test");
    let mut params = shell_run("echo out; echo err >&2", 5_000);
    params["session"] = json!(sid);
    let job = result(c.call("run", params));
    assert_eq!(job["status"], "completed");
    assert_eq!(job["stdout"], "out\n");
    assert_eq!(job["stderr"], "err\n");
    assert_eq!(job["session"], json!(sid));
    let job_id = job["job_id"].as_u64().unwrap();
    let lsn = job["lsn"].as_u64().unwrap();

    let dry = result(c.call(
        "run",
        json!({"capability": "file.read", "args": {"path": "x"}, "dry_run": true}),
    ));
    assert!(dry["dry_run"].is_object(), "{dry}");

    let list = result(c.call("jobs.list", json!({"session": sid})));
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["job_id"], json!(job_id));
    assert_eq!(list[0]["status"], "completed");
    let detail = result(c.call("jobs.get", json!({"job_id": job_id})));
    assert_eq!(detail["args"]["cmd"], "echo out; echo err >&2");
    assert_eq!(detail["result"]["stdout"], "out\n");
    assert_eq!(
        error_code(&c.call("jobs.get", json!({"job_id": 999}))),
        -32002
    );

    let got = result(c.call("sessions.get", json!({"id": sid})));
    assert_eq!(got["jobs"], 1);
    let sessions = result(c.call("sessions.list", json!({})));
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert_eq!(
        error_code(&c.call("sessions.get", json!({"id": "nope"}))),
        -32002
    );

    let events = result(c.call("events.read", json!({"cursor": 1, "max": 1000})));
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "session_created",
            "job_started",
            "job_owner",
            "job_enforcement",
            "job_finished"
        ]
    );
    assert_eq!(events["next_cursor"], json!(lsn + 1));
    // Cursor past the end: a long-poll that a new record ends early.
    let cursor = events["next_cursor"].clone();
    let socket = server.socket.clone();
    let poller = std::thread::spawn(move || {
        let started = Instant::now();
        let mut c = Conn::open(&socket).unwrap();
        let r = result(c.call("events.read", json!({"cursor": cursor, "wait_ms": 20_000})));
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    result(c.call("sessions.create", json!({})));
    let (r, waited) = poller.join().unwrap();
    assert_eq!(r["events"][0]["kind"], "session_created", "{r}");
    assert!(
        waited < Duration::from_secs(10),
        "woken by the record: {waited:?}"
    );
    // And a long-poll with nothing new returns empty after its wait.
    let empty = result(c.call(
        "events.read",
        json!({"cursor": r["next_cursor"], "wait_ms": 200}),
    ));
    assert_eq!(empty["events"], json!([]));
    assert_eq!(empty["next_cursor"], r["next_cursor"]);

    // jobs.cancel on a running job, from a second connection.
    let socket = server.socket.clone();
    let runner = std::thread::spawn(move || {
        let mut c = Conn::open(&socket).unwrap();
        result(c.call("run", shell_run("sleep 60", 120_000)))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let running_id = loop {
        let jobs = result(c.call("jobs.list", json!({"status": "running"})));
        if let Some(j) = jobs.as_array().unwrap().first() {
            break j["job_id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "the job never showed as running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let cancelled = result(c.call("jobs.cancel", json!({"job_id": running_id})));
    assert_eq!(cancelled["cancelled"], true);
    let ended = runner.join().unwrap();
    assert_eq!(ended["status"], "interrupted");
    assert!(ended["error"]
        .as_str()
        .unwrap()
        .contains("cancelled by request"));
    let again = result(c.call("jobs.cancel", json!({"job_id": running_id})));
    assert_eq!(again["cancelled"], false);
    assert_eq!(again["status"], "interrupted");
}

#[test]
fn bad_requests_get_errors_and_the_connection_lives_on() {
    let server = Server::start("serve-bad", &["--io-timeout", "2s"]);
    let mut c = server.conn();
    c.send_raw(b"{not json\n");
    assert_eq!(error_code(&c.read_answer()), -32700);
    // A batch of two non-requests: each member is its own invalid request.
    c.send_raw(b"[1,2]\n");
    let batch = c.read_answer();
    let members = batch.as_array().expect("a batch is answered with an array");
    assert_eq!(members.len(), 2, "{batch}");
    assert!(members.iter().all(|m| error_code(m) == -32600), "{batch}");
    assert_eq!(error_code(&c.call("no.such.method", json!({}))), -32601);
    assert_eq!(
        error_code(&c.call(
            "run",
            json!({"capability": "shell", "limits": {"timeout_ms": "x"}})
        )),
        -32602
    );
    // A notification gets no answer, not even an erroneous one: the next answer is the next
    // request's.
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"health\"}\n\n");
    c.send_raw(b"{\"jsonrpc\":\"2.0\",\"method\":\"no.such\"}\n");
    // A 10 MiB line is answered once, skipped, and the connection goes on.
    let mut big = Vec::with_capacity(10 << 20);
    big.extend_from_slice(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\",\"params\":{\"x\":\"",
    );
    big.resize(10 << 20, b'a');
    big.extend_from_slice(b"\"}}\n");
    c.send_raw(&big);
    let too_large = c.read_answer();
    assert_eq!(error_code(&too_large), -32004, "{too_large}");
    assert_eq!(result(c.call("health", json!({})))["status"], "ok");

    // A silent client and a slow client are closed after the I/O timeout...
    let mut silent = server.conn();
    let mut slow = server.conn();
    slow.send_raw(b"{\"jsonrpc\":");
    let started = Instant::now();
    let mut byte = [0u8; 1];
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(slow.stream.read(&mut byte).unwrap_or(0), 0, "closed");
    assert!(started.elapsed() < Duration::from_secs(20));
    // ...and so is one that trickles its line in a byte at a time, faster than any read
    // timeout but slower than the line's deadline.
    let mut drip = server.conn();
    let started = Instant::now();
    let mut closed = false;
    let line = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\",\"params\":{}}";
    for b in line.iter().cycle() {
        if drip.stream.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(closed, "a trickling client is cut off at the line deadline");
    // ...while others are served meanwhile.
    assert_eq!(result(c.call("health", json!({})))["status"], "ok");
    silent.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"health\"}\n");
    assert_eq!(result(silent.read_answer())["status"], "ok");
}

#[test]
fn idle_clients_are_closed_after_the_idle_timeout() {
    let server = Server::start("serve-idle", &["--idle-timeout", "1s"]);
    let mut idle = server.conn();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    assert_eq!(idle.stream.read(&mut byte).unwrap_or(0), 0, "closed");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(15));
    // The thread lets go of its slot just after closing: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let health = result(server.call("health", json!({})));
        if health["connections"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only the health connection is open: {health}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fifty_concurrent_clients_mixing_jobs_and_telemetry_lose_nothing() {
    let server = Server::start("serve-50", &["--max-jobs", "4", "--queue", "64"]);
    let workers: Vec<_> = (0..50)
        .map(|i| {
            let socket = server.socket.clone();
            std::thread::spawn(move || {
                let mut c = Conn::open(&socket).unwrap();
                let mut jobs = Vec::new();
                for round in 0..4 {
                    if (i + round) % 2 == 0 {
                        let r =
                            result(c.call("run", shell_run(&format!("echo {i}-{round}"), 20_000)));
                        assert_eq!(r["status"], "completed", "{r}");
                        assert_eq!(r["stdout"], format!("{i}-{round}\n"));
                        jobs.push(r["job_id"].as_u64().unwrap());
                    } else {
                        let s = result(c.call("telemetry.sample", json!({})));
                        assert!(s["seq"].as_u64().unwrap() > 0);
                    }
                }
                jobs
            })
        })
        .collect();
    let mut ids: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), 100);
    ids.dedup();
    assert_eq!(ids.len(), 100, "job ids are unique");
    let listed = result(server.call("jobs.list", json!({"status": "completed"})));
    assert_eq!(listed.as_array().unwrap().len(), 100);
    // Every acknowledged job is in the log, started and finished.
    let records = wal_records(&server.data_dir());
    for kind in ["job_started", "job_finished"] {
        let mut logged: Vec<u64> = records
            .iter()
            .filter(|r| r["kind"] == kind)
            .map(|r| r["job_id"].as_u64().unwrap())
            .collect();
        logged.sort_unstable();
        assert_eq!(logged, ids, "{kind}");
    }
}

#[test]
fn a_client_that_disconnects_mid_job_loses_nothing() {
    let server = Server::start("serve-vanish", &[]);
    let marker = server.dir.path().join("done");
    {
        let mut c = server.conn();
        let cmd = format!("sleep 0.5; touch {}", marker.display());
        let req =
            json!({"jsonrpc": "2.0", "id": 1, "method": "run", "params": shell_run(&cmd, 10_000)});
        c.send_raw(format!("{req}\n").as_bytes());
        std::thread::sleep(Duration::from_millis(100));
    } // dropped: the client is gone before the job ends
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let jobs = result(server.call("jobs.list", json!({})));
        if let Some(j) = jobs
            .as_array()
            .unwrap()
            .first()
            .filter(|j| j["status"] != "running")
        {
            break j.clone();
        }
        assert!(Instant::now() < deadline, "the job never ended");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(job["status"], "completed");
    assert!(marker.exists(), "the job ran to its end");
    let records = wal_records(&server.data_dir());
    assert!(records
        .iter()
        .any(|r| r["kind"] == "job_finished" && r["job_id"] == job["job_id"]));
}

#[test]
fn past_the_job_bound_and_queue_run_answers_busy() {
    let server = Server::start("serve-busy", &["--max-jobs", "1", "--queue", "0"]);
    let socket = server.socket.clone();
    let holder = std::thread::spawn(move || {
        let mut c = Conn::open(&socket).unwrap();
        result(c.call("run", shell_run("sleep 1", 10_000)))
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while result(server.call("health", json!({})))["jobs_admitted"] != 1 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let busy = server.call("run", shell_run("true", 10_000));
    assert_eq!(error_code(&busy), -32001, "{busy}");
    assert!(busy["error"]["message"].as_str().unwrap().contains("busy"));
    assert_eq!(holder.join().unwrap()["status"], "completed");
    assert_eq!(
        result(server.call("run", shell_run("true", 10_000)))["status"],
        "completed"
    );
}

#[test]
fn the_socket_is_private_and_only_replaces_a_dead_one() {
    let server = Server::start("serve-sock", &[]);
    let mode = std::fs::metadata(&server.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // A second server on a live socket (and another data dir) refuses to start.
    let other = TempDir::new("serve-sock-2");
    let out = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(other.path())
        .arg("serve")
        .arg("--socket")
        .arg(&server.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
    // A regular file at the path is never replaced.
    let file = other.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let out = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(other.path().join("d2"))
        .arg("serve")
        .arg("--socket")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    // A stale socket (its server SIGKILLed) is replaced.
    let mut server = server;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert!(server.socket.exists(), "SIGKILL leaves the file behind");
    let dir = std::mem::replace(&mut server.dir, TempDir::new("serve-sock-3"));
    drop(server);
    let again = Server::start_in(dir, &[]);
    assert_eq!(result(again.call("health", json!({})))["status"], "ok");
}

#[test]
fn a_peer_with_another_uid_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let server = Server::start("serve-uid", &[]);
    // The client binary where uid 65534 can execute it.
    let bin = server.dir.path().join("vigil-client");
    std::fs::copy(vigil_bin(), &bin).unwrap();
    std::fs::set_permissions(server.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let as_nobody = || {
        use std::os::unix::process::CommandExt;
        let out = Command::new(&bin)
            .args(["call", "health", "--socket"])
            .arg(&server.socket)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The file mode keeps it out...
    let (code, err) = as_nobody();
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("ermission denied"), "{err}");
    // ...and with the mode opened up, SO_PEERCRED still does.
    std::fs::set_permissions(&server.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, err) = as_nobody();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("uid 65534 may not use this server"), "{err}");
    assert!(server.log().contains("refused a peer with uid 65534"));
    assert_eq!(result(server.call("health", json!({})))["status"], "ok");
}

#[test]
fn sigterm_lets_jobs_finish_within_grace_kills_the_rest_and_restart_shows_them() {
    let mut server = Server::start(
        "serve-term",
        &["--grace", "1500ms", "--metrics", "127.0.0.1:0"],
    );
    let short_marker = server.dir.path().join("short-done");
    let spawn_run = |cmd: String| {
        let socket = server.socket.clone();
        std::thread::spawn(move || {
            let mut c = Conn::open(&socket).unwrap();
            c.call("run", shell_run(&cmd, 120_000))
        })
    };
    let short = spawn_run(format!("sleep 0.5; touch {}", short_marker.display()));
    let long = spawn_run("sleep 60".to_string());
    let deadline = Instant::now() + Duration::from_secs(20);
    while result(server.call("jobs.list", json!({"status": "running"})))
        .as_array()
        .unwrap()
        .len()
        < 2
    {
        assert!(Instant::now() < deadline, "jobs never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "clean exit: {status} {}", server.log());
    assert!(signalled.elapsed() < Duration::from_secs(15));
    assert!(!server.socket.exists(), "socket removed");
    let short = result(short.join().unwrap());
    assert_eq!(short["status"], "completed", "finished within grace");
    assert!(short_marker.exists());
    let long = result(long.join().unwrap());
    assert_eq!(long["status"], "interrupted");
    assert!(
        long["error"].as_str().unwrap().contains("SIGTERM"),
        "{long}"
    );
    let records = wal_records(&server.data_dir());
    let last_kind = &records.last().unwrap()["kind"];
    assert!(
        last_kind == "checkpoint" || last_kind == "index_checkpoint",
        "the log ends with a checkpoint: its last records are provably durable: {last_kind}"
    );

    let dir = std::mem::replace(&mut server.dir, TempDir::new("serve-term-2"));
    drop(server);
    let again = Server::start_in(dir, &[]);
    let jobs = result(again.call("jobs.list", json!({})));
    let statuses: Vec<&str> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["completed", "interrupted"], "{jobs}");
    assert_eq!(
        result(again.call("health", json!({})))["recovered_interrupted_jobs"],
        json!([]),
        "nothing was left unfinished"
    );
}

#[test]
fn call_and_run_socket_from_the_cli() {
    let server = Server::start("serve-cli", &[]);
    let cli = |args: &[&str]| {
        Command::new(vigil_bin())
            .args(args)
            .arg("--socket")
            .arg(&server.socket)
            .output()
            .unwrap()
    };
    let out = cli(&["call", "health"]);
    assert!(out.status.success());
    let health: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(health["status"], "ok");
    let out = cli(&["call", "jobs.get", "{\"job_id\": 77}"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("-32002"));
    let out = cli(&["call", "health", "{not json"]);
    assert_eq!(out.status.code(), Some(2));

    let out = cli(&[
        "run",
        "shell",
        "--args",
        "{\"cmd\": \"echo via-server; exit 3\"}",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let job: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(job["stdout"], "via-server\n");
    assert_eq!(job["status"], "failed");
    let out = cli(&[
        "run",
        "shell",
        "--args",
        "{\"cmd\": \"sleep 5\"}",
        "--timeout",
        "200ms",
    ]);
    assert_eq!(out.status.code(), Some(124), "timed out, as timeout(1)");
    let listed = result(server.call("jobs.list", json!({})));
    assert_eq!(
        listed.as_array().unwrap().len(),
        2,
        "both ran in the server"
    );
}

#[test]
fn the_servers_require_enforcement_is_a_floor_a_request_cannot_lower() {
    // Mode none holds no memory limit for the job: the server must refuse one, whatever the
    // request says, and still run jobs whose limits are held.
    // (Sandbox off: this server's data dir lies inside its root, where no sandbox can keep
    // jobs out of it, and --require-enforcement would refuse every job for that alone.)
    let strict = Server::start(
        "serve-require",
        &[
            "--cgroup-mode",
            "none",
            "--require-enforcement",
            "--sandbox",
            "off",
        ],
    );
    let mut req = shell_run("echo ran", 5_000);
    req["limits"] = json!({"memory_bytes": 64u64 << 20});
    req["require_enforcement"] = json!(false);
    let job = result(strict.call("run", req.clone()));
    assert_eq!(job["status"], "rejected", "{job}");
    assert!(
        job["error"]
            .as_str()
            .is_some_and(|e| e.contains("memory limit 64M not held")),
        "{job}"
    );
    assert_eq!(job["stdout"], "", "nothing ran: {job}");
    let plain = result(strict.call(
        "run",
        json!({"capability": "shell", "args": {"cmd": "echo ran"}}),
    ));
    assert_eq!(plain["status"], "completed", "{plain}");
    assert_eq!(plain["limits_not_held"], json!([]), "{plain}");

    // A lenient server runs it, saying what was not held; a request may still ask for more.
    let lenient = Server::start("serve-lenient", &["--cgroup-mode", "none"]);
    let job = result(lenient.call("run", req.clone()));
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["stdout"], "ran\n");
    assert!(
        job["limits_not_held"][0]
            .as_str()
            .is_some_and(|m| m.starts_with("memory limit 64M not held: ")),
        "{job}"
    );
    req["require_enforcement"] = json!(true);
    let job = result(lenient.call("run", req));
    assert_eq!(job["status"], "rejected", "{job}");
}

/// Parses the exposition with the prometheus_client package's parser; returns
/// {name: {labels-json: value}}. `None` when the package is missing outside CI.
fn parse_prometheus(text: &str) -> Option<Value> {
    const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.setdefault(s.name, {})[json.dumps(s.labels, sort_keys=True)] = s.value
print(json.dumps(out))
"#;
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install prometheus_client (.ci/run does)"
        );
        eprintln!("skipped: python3 with prometheus_client is not installed");
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).unwrap())
}

fn scrape(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

#[test]
fn metrics_parse_as_prometheus_exposition_and_move_with_work() {
    let server = Server::start("serve-metrics", &["--metrics", "127.0.0.1:0"]);
    let url = server.metrics.clone().expect("metrics address in the log");
    let Some(before) = parse_prometheus(&scrape(&url)) else {
        return;
    };
    let jobs_total = |m: &Value, status: &str| {
        m["vigil_jobs_total"]
            .as_object()
            .and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.contains(&format!("\"status\": \"{status}\"")))
                    .map(|(_, v)| v.as_f64().unwrap())
            })
            .unwrap_or(0.0)
    };
    let appends = |m: &Value| m["vigil_wal_appends_total"]["{}"].as_f64().unwrap();
    assert_eq!(jobs_total(&before, "completed"), 0.0);
    assert_eq!(before["vigil_build_info"].as_object().unwrap().len(), 1);
    assert!(before["vigil_memory_total_bytes"]["{}"].as_f64().unwrap() > 0.0);

    result(server.call("run", shell_run("true", 5_000)));
    result(server.call("run", shell_run("exit 1", 5_000)));
    let after = parse_prometheus(&scrape(&url)).unwrap();
    assert_eq!(jobs_total(&after, "completed"), 1.0);
    assert_eq!(jobs_total(&after, "failed"), 1.0);
    assert_eq!(
        appends(&after) - appends(&before),
        8.0,
        "four records per job: its start, its owner, who held its limits, its end"
    );
    assert!(
        after["vigil_wal_sync_duration_seconds_count"]["{}"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert!(after["vigil_wal_durable_lsn"]["{}"].as_f64().unwrap() >= 4.0);
    let durations = after["vigil_job_duration_seconds_count"]
        .as_object()
        .unwrap();
    assert_eq!(
        durations.values().map(|v| v.as_f64().unwrap()).sum::<f64>(),
        2.0
    );
    let runs = after["vigil_rpc_requests_total"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.contains("\"run\""))
        .map(|(_, v)| v.as_f64().unwrap());
    assert_eq!(runs, Some(2.0));
}

#[test]
fn completions_are_generated_for_the_common_shells() {
    for (shell, marker) in [
        ("bash", "_vigil()"),
        ("zsh", "#compdef vigil"),
        ("fish", "complete -c vigil"),
    ] {
        let out = Command::new(vigil_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains(marker),
            "{shell}: {}",
            &text[..text.len().min(200)]
        );
        assert!(
            text.contains("serve") && text.contains("call"),
            "{shell} knows the subcommands"
        );
    }
}

#[test]
fn the_example_systemd_unit_verifies() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    };
    assert!(probe.status.success());
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/vigil.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/vigil "));
    // Verified with the binary this test built in place of the installed one.
    let unit = unit.replace(
        "ExecStart=/usr/local/bin/vigil ",
        &format!("ExecStart={} ", vigil_bin().display()),
    );
    let dir = TempDir::new("unit");
    let path = dir.path().join("vigil.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}

#[test]
fn events_read_stops_at_its_byte_budget_and_the_cursor_goes_on() {
    let server = Server::start("serve-events-budget", &[]);
    let mut c = server.conn();
    // NUL bytes are escaped six to one in JSON: each finished record is ~390 KB of JSON.
    for _ in 0..14 {
        let r = result(c.call("run", shell_run("head -c 65536 /dev/zero", 10_000)));
        assert_eq!(r["status"], "completed");
    }
    let mut cursor = json!(1);
    let mut total = 0;
    let mut batches = 0;
    loop {
        let line_before = Instant::now();
        let r = result(c.call("events.read", json!({"cursor": cursor, "max": 1000})));
        assert!(line_before.elapsed() < Duration::from_secs(20));
        let n = r["events"].as_array().unwrap().len();
        if n == 0 {
            break;
        }
        assert!(r.to_string().len() < 5 << 20, "one answer stays near 4 MiB");
        total += n;
        batches += 1;
        cursor = r["next_cursor"].clone();
    }
    assert_eq!(
        total, 56,
        "every record (a start, its owner, who held the limits, an end per job), across batches"
    );
    assert!(batches >= 2, "the budget split the read ({batches} batch)");
}

/// A request object for a batch.
fn req(id: Option<u64>, method: &str, params: Value) -> Value {
    let mut r = json!({"jsonrpc": "2.0", "method": method, "params": params});
    if let Some(id) = id {
        r["id"] = json!(id);
    }
    r
}

#[test]
fn batches_are_answered_as_json_rpc_says() {
    let server = Server::start("serve-batch", &[]);
    let mut c = server.conn();
    // Mixed: valid, invalid, unknown method, notifications (valid and not): one array of the
    // answers to the members that have an id, in order.
    let batch = json!([
        req(Some(1), "health", json!({})),
        req(None, "health", json!({})),
        req(Some(2), "no.such.method", json!({})),
        {"jsonrpc": "2.0", "id": 3},
        req(None, "no.such.method", json!({})),
        req(Some(4), "run", shell_run("echo batched", 20_000)),
        7,
    ]);
    c.send_raw(format!("{batch}\n").as_bytes());
    let answers = c.read_answer();
    let answers = answers.as_array().expect("an array");
    let ids: Vec<Value> = answers.iter().map(|a| a["id"].clone()).collect();
    assert_eq!(ids, [json!(1), json!(2), json!(3), json!(4), Value::Null]);
    assert_eq!(answers[0]["result"]["status"], "ok");
    assert_eq!(error_code(&answers[1]), -32601);
    assert_eq!(error_code(&answers[2]), -32600);
    assert_eq!(
        answers[3]["result"]["status"], "completed",
        "{}",
        answers[3]
    );
    assert_eq!(answers[3]["result"]["stdout"], "batched\n");
    assert_eq!(error_code(&answers[4]), -32600);
    // Empty: one Invalid Request error, not an array.
    c.send_raw(b"[]\n");
    let empty = c.read_answer();
    assert_eq!(error_code(&empty), -32600, "{empty}");
    assert_eq!(empty["id"], Value::Null);
    // Only notifications: no line at all. The next line answered is the next request's.
    let quiet = json!([
        req(None, "health", json!({})),
        req(None, "jobs.list", json!({}))
    ]);
    c.send_raw(format!("{quiet}\n").as_bytes());
    assert_eq!(result(c.call("health", json!({})))["status"], "ok");
    // Over the bound: refused whole, and the connection lives on.
    let many: Vec<Value> = (0..101)
        .map(|i| req(Some(i), "health", json!({})))
        .collect();
    c.send_raw(format!("{}\n", Value::Array(many)).as_bytes());
    assert_eq!(error_code(&c.read_answer()), -32600);
    assert_eq!(result(c.call("health", json!({})))["status"], "ok");
}

#[test]
fn jobs_and_sessions_lists_page_by_cursor() {
    let server = Server::start("serve-pages", &[]);
    let mut c = server.conn();
    // 25 jobs, sent as one batch.
    let runs: Vec<Value> = (0..25)
        .map(|i| req(Some(i), "run", shell_run(&format!("echo {i}"), 20_000)))
        .collect();
    c.send_raw(format!("{}\n", Value::Array(runs)).as_bytes());
    let ran = c.read_answer();
    let ran = ran.as_array().expect("an array");
    assert_eq!(ran.len(), 25);
    let mut ids: Vec<u64> = ran
        .iter()
        .map(|a| a["result"]["job_id"].as_u64().expect("a job id"))
        .collect();
    ids.sort_unstable();
    // Unpaged, the list is the whole array, as before.
    let all = result(c.call("jobs.list", json!({})));
    assert_eq!(all.as_array().map(Vec::len), Some(25));
    // Pages of 10: every job exactly once, in order, and a null cursor at the end.
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let page = result(c.call("jobs.list", json!({"limit": 10, "cursor": cursor})));
        let jobs = page["jobs"].as_array().expect("a page").clone();
        sizes.push(jobs.len());
        seen.extend(jobs.iter().map(|j| j["job_id"].as_u64().unwrap()));
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
        assert!(sizes.len() < 5, "the cursor moves on: {sizes:?}");
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(seen, ids);
    // Filters and pages together; a page that ends exactly at the last job says so.
    let filtered = result(c.call("jobs.list", json!({"status": "completed", "limit": 25})));
    assert_eq!(filtered["jobs"].as_array().map(Vec::len), Some(25));
    assert_eq!(filtered["next_cursor"], Value::Null);
    let after_last = result(c.call("jobs.list", json!({"cursor": ids[24]})));
    assert_eq!(after_last["jobs"], json!([]));
    assert_eq!(after_last["next_cursor"], Value::Null);
    // Sessions page by their id the same way.
    for _ in 0..3 {
        result(c.call("sessions.create", json!({})));
    }
    let first = result(c.call("sessions.list", json!({"limit": 2})));
    assert_eq!(first["sessions"].as_array().map(Vec::len), Some(2));
    let rest = result(c.call(
        "sessions.list",
        json!({"limit": 2, "cursor": first["next_cursor"]}),
    ));
    assert_eq!(rest["sessions"].as_array().map(Vec::len), Some(1));
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(
        error_code(&c.call("jobs.list", json!({"limit": 0}))),
        -32602
    );
}

#[test]
fn a_last_request_without_newline_is_answered_when_the_client_stops_sending() {
    let server = Server::start("serve-eof", &[]);
    let mut c = server.conn();
    c.send_raw(br#"{"jsonrpc":"2.0","id":9,"method":"health"}"#);
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = c.read_answer();
    assert_eq!(answer["id"], 9);
    assert_eq!(result(answer)["status"], "ok");
    let mut rest = String::new();
    c.reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "then the server closes the connection");
}

/// Records other processes write to the server's data directory (one-shot `vigil run`) reach
/// `events.read` and `jobs.list` without the server writing anything itself, and a long-poll
/// waiting past the end is woken by them.
#[test]
fn events_read_and_jobs_list_see_what_one_shot_runs_append_beside_the_server() {
    let server = Server::start("serve-foreign", &[]);
    let data = server.dir.path().join("data");
    let one_shot = |word: &str| {
        let args = json!({"argv": ["/bin/echo", word]}).to_string();
        let (code, stdout, stderr) =
            vigil_output(&data, &["run", "exec", "--args", &args, "--json"]);
        assert_eq!(code, 0, "{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap()["job_id"]
            .as_u64()
            .unwrap()
    };
    let first = one_shot("first");
    let mut c = Conn::open(&server.socket).unwrap();
    let events = result(c.call("events.read", json!({"cursor": 1, "max": 1000})));
    let finished: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "job_finished")
        .filter_map(|e| e["job_id"].as_u64())
        .collect();
    assert_eq!(finished, [first], "{events}");
    let listed = result(c.call("jobs.list", json!({})));
    assert_eq!(listed[0]["job_id"], first, "{listed}");
    assert_eq!(listed[0]["status"], "completed", "{listed}");

    // A long-poll past the end is woken by the next one-shot run.
    let cursor = events["next_cursor"].clone();
    let socket = server.socket.clone();
    let poller = std::thread::spawn(move || {
        let mut c = Conn::open(&socket).unwrap();
        result(c.call("events.read", json!({"cursor": cursor, "wait_ms": 30_000})))
    });
    let second = one_shot("second");
    let mut seen = Vec::new();
    let mut r = poller.join().unwrap();
    loop {
        let events = r["events"].as_array().unwrap().clone();
        assert!(!events.is_empty(), "a long-poll ended empty: {r}");
        seen.extend(events);
        if seen.iter().any(|e| e["kind"] == "job_finished") {
            break;
        }
        r = result(c.call(
            "events.read",
            json!({"cursor": r["next_cursor"], "wait_ms": 30_000}),
        ));
    }
    let ended: Vec<u64> = seen
        .iter()
        .filter(|e| e["kind"] == "job_finished")
        .filter_map(|e| e["job_id"].as_u64())
        .collect();
    assert_eq!(ended, [second]);
}
