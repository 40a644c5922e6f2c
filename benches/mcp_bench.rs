//! `vigil mcp` against `vigil serve`, both release builds, measured in the same run: one client
//! doing request/answer in a loop for a few seconds, each round trip recorded in hdrhistogram.
//!
//! 1. A `shell` tool call of `/bin/true` over MCP (stdio, in-process jobs) against the same job
//!    sent as `run` to `vigil serve` over its socket; and the same MCP call with `--socket`
//!    (handed to that server).
//! 2. The `telemetry` tool over MCP against `telemetry.sample` over the socket.
//!
//! `cargo bench --bench mcp_bench` (as root, so jobs get cgroups).
mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use support::{report, us, vigil_bin, wait_for_socket};

/// Each side is measured in `ROUNDS` turns of `RUN_DURATION`, the sides alternating, so a
/// burst of load elsewhere on the machine falls on both.
const RUN_DURATION: Duration = Duration::from_secs(1);
const ROUNDS: usize = 3;

/// A child process ended with SIGTERM when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// One line-oriented JSON-RPC peer: a socket connection or a child's stdio.
struct Peer {
    writer: Box<dyn Write>,
    reader: Box<dyn BufRead>,
}

impl Peer {
    fn socket(path: &Path) -> Peer {
        let stream = UnixStream::connect(path).unwrap();
        Peer {
            writer: Box::new(stream.try_clone().unwrap()),
            reader: Box::new(BufReader::new(stream)),
        }
    }

    fn stdio(stdin: ChildStdin, stdout: ChildStdout) -> Peer {
        Peer {
            writer: Box::new(stdin),
            reader: Box::new(BufReader::new(stdout)),
        }
    }

    /// Sends `line` and returns the answer line.
    fn round_trip(&mut self, line: &str, answer: &mut String) {
        self.writer.write_all(line.as_bytes()).unwrap();
        self.writer.flush().unwrap();
        answer.clear();
        self.reader.read_line(answer).unwrap();
    }

    /// Round trips of `line` for `RUN_DURATION`, recorded in `h` (ns); returns how many and
    /// the time they took.
    fn load(
        &mut self,
        line: &str,
        check: &dyn Fn(&Value),
        h: &mut Histogram<u64>,
    ) -> (u64, Duration) {
        let mut answer = String::new();
        // One untimed round trip first (first-use costs).
        self.round_trip(line, &mut answer);
        let started = Instant::now();
        let mut n = 0u64;
        while started.elapsed() < RUN_DURATION {
            let t = Instant::now();
            self.round_trip(line, &mut answer);
            h.record(t.elapsed().as_nanos() as u64).unwrap();
            check(&serde_json::from_str(&answer).unwrap());
            n += 1;
        }
        (n, started.elapsed())
    }
}

/// One side of a comparison: a peer, the request it is sent, and the check of each answer.
struct Side<'a> {
    name: &'a str,
    peer: &'a mut Peer,
    line: &'a str,
    check: &'a dyn Fn(&Value),
}

/// Measures the sides in alternating turns and reports each; returns their histograms.
fn compare(title: &str, sides: &mut [Side<'_>]) -> Vec<Histogram<u64>> {
    let mut results: Vec<(u64, Duration, Histogram<u64>)> = sides
        .iter()
        .map(|_| (0, Duration::ZERO, Histogram::new(3).unwrap()))
        .collect();
    for _ in 0..ROUNDS {
        for (side, (n, took, h)) in sides.iter_mut().zip(&mut results) {
            let (more, longer) = side.peer.load(side.line, side.check, h);
            *n += more;
            *took += longer;
        }
    }
    println!("== {title}");
    for (side, (n, took, h)) in sides.iter().zip(&results) {
        report(side.name, *n as f64 / took.as_secs_f64(), h);
    }
    results.into_iter().map(|(_, _, h)| h).collect()
}

fn serve(bin: &Path, dir: &Path) -> (Proc, PathBuf) {
    let socket = dir.join("vigil.sock");
    let child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join("serve-data"))
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .arg("--root")
        .arg(dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_socket(&socket);
    (Proc(child), socket)
}

fn mcp(bin: &Path, dir: &Path, data: &str, extra: &[&str]) -> (Proc, Peer) {
    let mut child = Command::new(bin)
        .arg("--data-dir")
        .arg(dir.join(data))
        .arg("mcp")
        .arg("--root")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut peer = Peer::stdio(child.stdin.take().unwrap(), child.stdout.take().unwrap());
    let mut answer = String::new();
    peer.round_trip(
        "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"1\"}}}\n",
        &mut answer,
    );
    assert!(answer.contains("protocolVersion"), "{answer}");
    (Proc(child), peer)
}

fn ratio(name: &str, a: &Histogram<u64>, b: &Histogram<u64>) {
    println!(
        "ratio {name}: p50 {:.2}x, p99 {:.2}x",
        us(a, 0.5) / us(b, 0.5),
        us(a, 0.99) / us(b, 0.99)
    );
}

fn main() {
    let bin = vigil_bin();
    let dir = tempfile::tempdir().unwrap();
    let (_server, socket) = serve(&bin, dir.path());
    let (_mcp, mut mcp_peer) = mcp(&bin, dir.path(), "mcp-data", &[]);
    let (_relay, mut relay_peer) = mcp(
        &bin,
        dir.path(),
        "relay-data",
        &["--socket", socket.to_str().unwrap()],
    );
    let mut socket_peer = Peer::socket(&socket);

    let call_true = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "shell", "arguments": {"cmd": "/bin/true", "timeout_ms": 10000}}})
    .to_string()
        + "\n";
    let run_true = json!({"jsonrpc": "2.0", "id": 1, "method": "run",
        "params": {"capability": "shell", "args": {"cmd": "/bin/true"}, "limits": {"timeout_ms": 10000}}})
    .to_string()
        + "\n";
    let tool_ok = |v: &Value| {
        assert_eq!(v["result"]["isError"], false, "{v}");
        assert_eq!(
            v["result"]["structuredContent"]["status"], "completed",
            "{v}"
        );
    };
    let run_ok = |v: &Value| assert_eq!(v["result"]["status"], "completed", "{v}");
    let h = compare(
        "shell /bin/true, one client, sequential round trips",
        &mut [
            Side {
                name: "vigil mcp tools/call shell (in-process jobs)",
                peer: &mut mcp_peer,
                line: &call_true,
                check: &tool_ok,
            },
            Side {
                name: "vigil mcp --socket tools/call shell",
                peer: &mut relay_peer,
                line: &call_true,
                check: &tool_ok,
            },
            Side {
                name: "baseline: vigil serve run over the socket",
                peer: &mut socket_peer,
                line: &run_true,
                check: &run_ok,
            },
        ],
    );
    ratio("mcp/serve", &h[0], &h[2]);
    ratio("mcp --socket/serve", &h[1], &h[2]);

    let call_telemetry = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "telemetry", "arguments": {}}})
    .to_string()
        + "\n";
    let sample =
        json!({"jsonrpc": "2.0", "id": 2, "method": "telemetry.sample"}).to_string() + "\n";
    let telemetry_ok =
        |v: &Value| assert!(v["result"]["structuredContent"]["cpu"].is_object(), "{v}");
    let sample_ok = |v: &Value| assert!(v["result"]["cpu"].is_object(), "{v}");
    let h = compare(
        "telemetry, one client, sequential round trips",
        &mut [
            Side {
                name: "vigil mcp tools/call telemetry",
                peer: &mut mcp_peer,
                line: &call_telemetry,
                check: &telemetry_ok,
            },
            Side {
                name: "baseline: vigil serve telemetry.sample",
                peer: &mut socket_peer,
                line: &sample,
                check: &sample_ok,
            },
        ],
    );
    ratio("mcp/serve", &h[0], &h[1]);
}
