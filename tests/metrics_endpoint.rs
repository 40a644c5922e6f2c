//! The metrics endpoint cannot be stalled: idle or slow clients hold only their own
//! connection, a scrape beside them is answered at once, and past the connection cap a new
//! connection is refused immediately instead of waiting.
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{vigil_bin, TempDir};

/// The server's cap on metrics connections (shell/src/serve/metrics.rs).
const CONNECTIONS_MAX: usize = 64;
/// "Answers at once", generously: a scrape of an unstalled endpoint takes milliseconds; a
/// stalled one took 30 s and more.
const PROMPT: Duration = Duration::from_secs(5);

struct Serve {
    child: Child,
    _dir: TempDir,
    metrics: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `vigil serve --metrics 127.0.0.1:0`, once it says where its metrics are.
fn serve() -> Serve {
    let dir = TempDir::new("metrics-stall");
    let log = dir.path().join("serve.log");
    let child = Command::new(vigil_bin())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("serve")
        .arg("--socket")
        .arg(dir.path().join("vigil.sock"))
        .args(["--metrics", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Serve {
        child,
        _dir: dir,
        metrics: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = text.lines().find_map(|l| {
            l.split("metrics on http://")
                .nth(1)
                .and_then(|rest| rest.strip_suffix("/metrics"))
        }) {
            server.metrics = addr.to_string();
            return server;
        }
        assert!(server.child.try_wait().unwrap().is_none(), "exited: {text}");
        assert!(Instant::now() < deadline, "no metrics address: {text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One scrape: the status line and how long it took.
fn scrape(addr: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default().to_string();
    if status.contains("200") {
        assert!(response.contains("# TYPE"), "{response}");
    }
    (status, started.elapsed())
}

/// Connects and reads whatever the server says without asking anything: a refusal (the
/// status line) or, for an accepted connection, nothing until this side closes; returns the
/// status line (empty for an accepted one, read for a short while) and how long it took.
fn connect_and_read(addr: &str) -> (String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&response);
    (text.lines().next().unwrap_or_default().to_string(), took)
}

#[test]
fn idle_connections_do_not_delay_a_scrape_and_past_the_cap_one_is_refused_at_once() {
    let server = serve();
    let addr = server.metrics.clone();
    // Twenty clients that connect and say nothing (and one that sends half a request).
    let mut idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let mut half = TcpStream::connect(&addr).unwrap();
    half.write_all(b"GET /metr").unwrap();
    let (status, took) = scrape(&addr);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(
        took < PROMPT,
        "a scrape beside 21 idle clients took {took:?}"
    );

    // Up to the cap, every connection held: the next one gets a 503 straight away.
    idle.extend((idle.len() + 1..CONNECTIONS_MAX).map(|_| TcpStream::connect(&addr).unwrap()));
    idle.push(half);
    assert_eq!(idle.len(), CONNECTIONS_MAX);
    // The server counts a connection when it accepts it, and one it has not accepted yet is
    // not refused: the probe (which reads for half a second) goes on until one is refused,
    // each refusal immediate.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, took) = connect_and_read(&addr);
        assert!(took < PROMPT, "a connection waited {took:?}");
        if status.starts_with("HTTP/1.1 503") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never refused past the cap: {status}"
        );
    }
    drop(idle);
}
