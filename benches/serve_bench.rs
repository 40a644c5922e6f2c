//! `vigil serve` under load, against baselines measured in the same run:
//!
//! 1. `telemetry.sample` over the socket, 8 clients each with one connection doing
//!    request/answer in a loop: requests/s and per-request latency (p50/p99/p999). Baseline:
//!    the transport floor, an in-process echo server with the same thread model and socket
//!    type answering an answer of the same size. Goal: >= 20,000 req/s.
//! 2. Isolated `/bin/true` jobs (capability `exec`) through the server with 8 clients, against
//!    the same jobs run in-process by `Runtime::run` from 8 threads (both record every job in
//!    the WAL and put it in a cgroup where the host allows).
//! 3. Idle RSS of `vigil serve`. Goal: <= 10 MiB.
//! 4. A request that names many secret values (`/bin/true` with N words `PASSWORD=v…`,
//!    each a value the redaction scrubs from everything the job logs), against the same
//!    request with a name that is not secret (`XASSWORD=v…`): per-request latency, 1 client,
//!    interleaved. Goal: scrubbing is linear: its cost per secret value (the p50 difference
//!    over N) does not grow with N.
//!
//! `cargo bench --bench serve_bench` (as root for cgroups).
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use support::{report, vigil_bin, wait_for_socket};
use vigil_core::exec::Limits;
use vigil_core::runtime::{JobRequest, Runtime, RuntimeOptions};

const CLIENTS: usize = 8;
const RUN_DURATION: Duration = Duration::from_secs(3);
const RSS_GOAL_KIB: u64 = 10 * 1024;
const SAMPLE_RATE_GOAL: f64 = 20_000.0;

struct Served {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn serve() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vigil.sock");
    let child = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .arg("--root")
        .arg(dir.path())
        .args(["--max-jobs", "8"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_socket(&socket);
    Served {
        child,
        socket,
        _dir: dir,
    }
}

/// Each of `CLIENTS` threads sends `line` and reads one answer line, in a loop, for
/// `RUN_DURATION`; returns (requests/s, per-request ns histogram, bytes of one answer).
fn load(socket: &Path, line: &str, check: fn(&str)) -> (f64, Histogram<u64>, usize) {
    let done = AtomicU64::new(0);
    let answer_len = AtomicU64::new(0);
    let started = Instant::now();
    let until = started + RUN_DURATION;
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (done, answer_len) = (&done, &answer_len);
                s.spawn(move || {
                    let mut h = Histogram::<u64>::new(3).unwrap();
                    let stream = UnixStream::connect(socket).unwrap();
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut answer = String::new();
                    while Instant::now() < until {
                        let t = Instant::now();
                        writer.write_all(line.as_bytes()).unwrap();
                        answer.clear();
                        reader.read_line(&mut answer).unwrap();
                        h.record(t.elapsed().as_nanos() as u64).unwrap();
                        check(&answer);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    answer_len.store(answer.len() as u64, Ordering::Relaxed);
                    h
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let mut all = Histogram::<u64>::new(3).unwrap();
    for h in &hists {
        all.add(h).unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    (rate, all, answer_len.load(Ordering::Relaxed) as usize)
}

/// The transport floor: a thread per connection answering each line with `answer`.
fn echo_server(answer: String) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    // Parse the request as the server does, so the floor is the transport
                    // and not an unfair skip of JSON handling.
                    let _: Value = serde_json::from_slice(&line).unwrap();
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (path, dir)
}

fn check_sample(answer: &str) {
    assert!(answer.contains("\"result\""), "{answer}");
}

fn check_echo(_: &str) {}

fn telemetry_bench(served: &Served) {
    let request =
        json!({"jsonrpc": "2.0", "id": 1, "method": "telemetry.sample"}).to_string() + "\n";
    let (rate, h, answer_bytes) = load(&served.socket, &request, check_sample);
    let floor_answer = format!("{}\n", "x".repeat(answer_bytes.saturating_sub(1)));
    let (echo_path, _echo_dir) = echo_server(floor_answer);
    let (floor_rate, floor_h, _) = load(&echo_path, &request, check_echo);
    println!("== telemetry.sample over the socket, {CLIENTS} clients, {answer_bytes}-byte answers");
    report("vigil serve telemetry.sample", rate, &h);
    report("floor: echo server, same transport", floor_rate, &floor_h);
    println!(
        "ratio vigil/floor: {:.2}x of the floor's rate; goal >= {SAMPLE_RATE_GOAL:.0} req/s: {}",
        rate / floor_rate,
        if rate >= SAMPLE_RATE_GOAL {
            "met"
        } else {
            "MISSED"
        }
    );
}

fn true_params() -> Value {
    json!({"capability": "exec", "args": {"argv": ["/bin/true"]}, "limits": {"timeout_ms": 10000}})
}

fn check_completed(answer: &str) {
    assert!(answer.contains("\"status\":\"completed\""), "{answer}");
}

fn jobs_bench(served: &Served) {
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "run", "params": true_params()})
        .to_string()
        + "\n";
    let (served_rate, served_h, _) = load(&served.socket, &request, check_completed);

    let dir = tempfile::tempdir().unwrap();
    let mut options = RuntimeOptions::new(dir.path().join("data"));
    options.concurrent_jobs_max = CLIENTS;
    let rt = Runtime::open(options).unwrap();
    let req = JobRequest {
        capability: "exec".into(),
        args: json!({"argv": ["/bin/true"]}),
        limits: Limits {
            timeout: Some(Duration::from_secs(10)),
            ..Limits::default()
        },
        root: dir.path().to_path_buf(),
        session: None,
        dry_run: false,
        require_enforcement: false,
    };
    let done = AtomicU64::new(0);
    let started = Instant::now();
    let until = started + RUN_DURATION;
    let mut local_h = Histogram::<u64>::new(3).unwrap();
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (rt, req, done) = (&rt, &req, &done);
                s.spawn(move || {
                    let mut h = Histogram::<u64>::new(3).unwrap();
                    while Instant::now() < until {
                        let t = Instant::now();
                        let out = rt.run(req).unwrap();
                        h.record(t.elapsed().as_nanos() as u64).unwrap();
                        assert!(out.succeeded(), "{:?}", out.result);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    h
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for h in &hists {
        local_h.add(h).unwrap();
    }
    let local_rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "== isolated /bin/true jobs, {CLIENTS} clients (cgroup mode {})",
        rt.executor().host().mode.as_str()
    );
    report("through vigil serve (jobs/s)", served_rate, &served_h);
    report("in-process Runtime::run (jobs/s)", local_rate, &local_h);
    println!("ratio served/in-process: {:.2}x", served_rate / local_rate);
}

/// A `run` request for `/bin/true` with `n` words `NAME=vNNNNNN`, 16 to an argument (an argv
/// holds at most 4096).
fn named_values_request(name: &str, n: usize) -> String {
    let words: Vec<String> = (0..n).map(|i| format!("{name}=v{i:06}")).collect();
    let mut argv = vec!["/bin/true".to_string()];
    argv.extend(words.chunks(16).map(|c| c.join(" ")));
    json!({"jsonrpc": "2.0", "id": 1, "method": "run",
           "params": {"capability": "exec", "args": {"argv": argv}, "limits": {"timeout_ms": 60000}}})
    .to_string()
        + "\n"
}

fn secret_values_bench(served: &Served) {
    const ROUNDS: usize = 6;
    println!("== a request naming N secret values, against the same bytes naming none (1 client)");
    let stream = UnixStream::connect(&served.socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut answer = String::new();
    let mut ask = |line: &str| {
        let t = Instant::now();
        writer.write_all(line.as_bytes()).unwrap();
        answer.clear();
        reader.read_line(&mut answer).unwrap();
        check_completed(&answer);
        t.elapsed().as_nanos() as u64
    };
    for n in [1_000, 10_000, 60_000] {
        let secret = named_values_request("PASSWORD", n);
        let plain = named_values_request("XASSWORD", n);
        let (mut hs, mut hp) = (
            Histogram::<u64>::new(3).unwrap(),
            Histogram::<u64>::new(3).unwrap(),
        );
        for _ in 0..ROUNDS {
            hs.record(ask(&secret)).unwrap();
            hp.record(ask(&plain)).unwrap();
        }
        let rate = |h: &Histogram<u64>| 1e9 / h.value_at_quantile(0.5) as f64;
        report(
            &format!("{n} secret values ({} KB)", secret.len() / 1024),
            rate(&hs),
            &hs,
        );
        report(&format!("{n} values not secret"), rate(&hp), &hp);
        let (ps, pp) = (hs.value_at_quantile(0.5), hp.value_at_quantile(0.5));
        println!(
            "ratio secret/not secret p50: {:.2}x; scrubbing costs {:.2} us per secret value",
            ps as f64 / pp as f64,
            ps.saturating_sub(pp) as f64 / 1e3 / n as f64
        );
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn main() {
    let served = serve();
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss_kib(served.child.id());
    telemetry_bench(&served);
    jobs_bench(&served);
    secret_values_bench(&served);
    let loaded = rss_kib(served.child.id());
    println!("== vigil serve resident memory");
    println!(
        "idle RSS {:.1} MiB (goal <= {:.0} MiB: {}); after the load above {:.1} MiB",
        idle as f64 / 1024.0,
        RSS_GOAL_KIB as f64 / 1024.0,
        if idle <= RSS_GOAL_KIB {
            "met"
        } else {
            "MISSED"
        },
        loaded as f64 / 1024.0
    );
}
