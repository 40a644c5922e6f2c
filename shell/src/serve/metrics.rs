//! `--metrics ADDR`: the Prometheus text exposition format (version 0.0.4) over a minimal
//! HTTP/1.1 responder. It serves a monitoring system, not the public, but no client can stall
//! it: each connection is answered on its own thread, bounded in size and time (a request head
//! within [`HTTP_IO_TIMEOUT`] of connecting, the answer taken within as long), and past
//! [`HTTP_CONNECTIONS_MAX`] open connections a new one is refused at once with a 503.
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vigil_core::histogram::Buckets;
use vigil_core::protocol::METHODS;
use vigil_core::sample::Percent;

use super::Server;

/// Longest HTTP request head read from a scraper.
const HTTP_REQUEST_BYTES_MAX: usize = 8 * 1024;
/// Time a scraper gets to send its request and take the answer.
const HTTP_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections answered at once; past this, new ones get a 503 and are closed.
pub const HTTP_CONNECTIONS_MAX: usize = 64;
/// Time a refused connection gets to take its 503.
const HTTP_REFUSE_TIMEOUT: Duration = Duration::from_millis(100);

/// Binds `addr`: `HOST:PORT`, or a bare port on 127.0.0.1.
pub fn bind(addr: &str) -> Result<TcpListener, String> {
    let parsed: SocketAddr = match addr.parse::<u16>() {
        Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
        Err(_) => addr
            .parse()
            .map_err(|_| format!("--metrics {addr:?}: expected HOST:PORT or a port"))?,
    };
    TcpListener::bind(parsed).map_err(|e| format!("--metrics {parsed}: {e}"))
}

pub fn serve(listener: TcpListener, server: &Arc<Server>) {
    let open = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if server.shutting_down.load(Ordering::Acquire) {
            return;
        }
        match stream {
            Ok(stream) => admit(stream, server, &open),
            // EMFILE and friends: back off instead of spinning.
            Err(_) => std::thread::sleep(HTTP_IO_TIMEOUT / 50),
        }
    }
}

/// Answers `stream` on a thread of its own, or refuses it when too many are open.
fn admit(mut stream: TcpStream, server: &Arc<Server>, open: &Arc<AtomicUsize>) {
    if open.fetch_add(1, Ordering::AcqRel) >= HTTP_CONNECTIONS_MAX {
        open.fetch_sub(1, Ordering::AcqRel);
        // A fresh socket takes a short answer at once; one that does not is dropped.
        let _ = stream.set_write_timeout(Some(HTTP_REFUSE_TIMEOUT));
        let _ = respond(
            &mut stream,
            "503 Service Unavailable",
            "text/plain",
            "too many connections to the metrics endpoint; retry\n",
        );
        // What the client already sent is read, so closing does not reset the connection
        // (and discard the answer) over unread bytes.
        if stream.set_nonblocking(true).is_ok() {
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
        }
        return;
    }
    /// Releases the connection's place however its thread ends.
    struct Place(Arc<AtomicUsize>);
    impl Drop for Place {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let place = Place(open.clone());
    let server = server.clone();
    let spawned = std::thread::Builder::new()
        .name("vigil-metrics-conn".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let _place = place;
            let _ = answer(stream, &server);
        });
    if spawned.is_err() {
        // The closure (and its place) is dropped with the error.
        std::thread::sleep(HTTP_IO_TIMEOUT / 50);
    }
}

fn answer(mut stream: TcpStream, server: &Server) -> std::io::Result<()> {
    stream.set_read_timeout(Some(HTTP_IO_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_IO_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // One deadline for the whole request: a scraper trickling bytes cannot hold the endpoint.
    let deadline = std::time::Instant::now() + HTTP_IO_TIMEOUT;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > HTTP_REQUEST_BYTES_MAX {
            return respond(&mut stream, "431 Request Header Fields Too Large", "", "");
        }
    }
    let request_line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|&b| b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => respond(
            &mut stream,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &render(server),
        ),
        (Some(b"GET"), Some(b"/")) => respond(
            &mut stream,
            "200 OK",
            "text/plain; charset=utf-8",
            "vigil metrics: GET /metrics\n",
        ),
        (Some(b"GET"), _) => respond(&mut stream, "404 Not Found", "text/plain", "not found\n"),
        _ => respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        ),
    }
}

fn respond(stream: &mut TcpStream, status: &str, kind: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())
}

/// Writes Prometheus text. Each family gets HELP and TYPE lines once, before its samples.
struct Exposition {
    out: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: Option<f64>) {
        self.family(name, "gauge", help);
        if let Some(v) = value {
            self.sample(name, &[], v);
        }
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, "counter", help);
        self.sample(name, &[], value as f64);
    }

    /// One histogram's buckets (cumulative), sum and count; `scale` turns the recorded unit
    /// into the family's (e.g. µs into seconds).
    fn histogram<const N: usize>(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        h: &Buckets<N>,
        scale: f64,
    ) {
        let mut cumulative = 0u64;
        let bucket_name = format!("{name}_bucket");
        for (bound, count) in h.bounds().iter().zip(h.counts()) {
            cumulative += count;
            let le = if *bound == u64::MAX {
                "+Inf".to_string()
            } else {
                format!("{}", *bound as f64 * scale)
            };
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket_name, &with_le, cumulative as f64);
        }
        self.sample(&format!("{name}_sum"), labels, h.sum() as f64 * scale);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn ratio(p: Percent) -> f64 {
    p.as_f64() / 100.0
}

/// The whole exposition.
pub fn render(server: &Server) -> String {
    let mut e = Exposition { out: String::new() };
    server_metrics(&mut e, server);
    host_metrics(&mut e, server);
    job_metrics(&mut e, server);
    wal_metrics(&mut e, server);
    rpc_metrics(&mut e, server);
    e.out
}

/// The server itself: its build and uptime.
fn server_metrics(e: &mut Exposition, server: &Server) {
    e.family("vigil_build_info", "gauge", "Build of the running vigil.");
    e.sample(
        "vigil_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    e.gauge(
        "vigil_uptime_seconds",
        "Time since the server started.",
        Some(server.started.elapsed().as_secs_f64()),
    );
}

/// The host, from the latest telemetry sample: CPU, memory, load and pressure.
fn host_metrics(e: &mut Exposition, server: &Server) {
    let rt = &server.runtime;
    let sample = rt.telemetry().latest();
    let cpu = sample.as_ref().and_then(|s| s.cpu);
    e.gauge(
        "vigil_cpu_busy_ratio",
        "Share of CPU time not idle or in iowait over the last interval (steal included).",
        cpu.map(|c| ratio(c.busy)),
    );
    e.gauge(
        "vigil_cpu_iowait_ratio",
        "Share of CPU time idle waiting for I/O over the last interval.",
        cpu.map(|c| ratio(c.iowait)),
    );
    e.gauge(
        "vigil_cpu_steal_ratio",
        "Share of CPU time stolen by the hypervisor over the last interval.",
        cpu.map(|c| ratio(c.steal)),
    );
    let memory = sample.as_ref().and_then(|s| s.memory);
    e.gauge(
        "vigil_memory_total_bytes",
        "MemTotal.",
        memory.map(|m| m.total_bytes as f64),
    );
    e.gauge(
        "vigil_memory_available_bytes",
        "MemAvailable (estimated where the kernel has none).",
        memory.map(|m| m.available_bytes as f64),
    );
    let load = sample.as_ref().and_then(|s| s.load);
    e.family("vigil_load_average", "gauge", "Load average, by window.");
    if let Some(l) = load {
        for (window, centi) in [
            ("1m", l.load1_centi),
            ("5m", l.load5_centi),
            ("15m", l.load15_centi),
        ] {
            e.sample(
                "vigil_load_average",
                &[("window", window)],
                vigil_core::json::centi(centi),
            );
        }
    }
    e.family(
        "vigil_pressure_avg10_ratio",
        "gauge",
        "Pressure stall information, 10 s average, by resource and kind (absent without PSI).",
    );
    if let Some(s) = &sample {
        for (resource, psi) in [
            ("cpu", &s.pressure.cpu),
            ("memory", &s.pressure.memory),
            ("io", &s.pressure.io),
        ] {
            let Some(psi) = psi else { continue };
            let lines = [("some", Some(&psi.some)), ("full", psi.full.as_ref())];
            for (kind, line) in lines {
                if let Some(line) = line {
                    e.sample(
                        "vigil_pressure_avg10_ratio",
                        &[("resource", resource), ("kind", kind)],
                        f64::from(line.avg10_centi) / 10_000.0,
                    );
                }
            }
        }
    }
}

/// Jobs: ended by capability and status, their durations, slots and admissions.
fn job_metrics(e: &mut Exposition, server: &Server) {
    let rt = &server.runtime;
    let jobs = rt.job_metrics();
    e.family(
        "vigil_jobs_total",
        "counter",
        "Jobs ended since the server started, by capability and status.",
    );
    for ((capability, status), n) in &jobs.jobs {
        e.sample(
            "vigil_jobs_total",
            &[("capability", capability), ("status", status.as_str())],
            *n as f64,
        );
    }
    e.family(
        "vigil_job_duration_seconds",
        "histogram",
        "Wall time of jobs that ran, by capability.",
    );
    for (capability, h) in &jobs.durations {
        e.histogram(
            "vigil_job_duration_seconds",
            &[("capability", capability)],
            h,
            1e-3,
        );
    }
    e.gauge(
        "vigil_jobs_running",
        "Jobs holding a slot.",
        Some(rt.jobs_running() as f64),
    );
    e.gauge(
        "vigil_jobs_admitted",
        "Run requests admitted and not yet answered (running or queued).",
        Some(server.jobs_admitted.load(Ordering::Relaxed) as f64),
    );
    e.counter(
        "vigil_guard_refusals_total",
        "Jobs refused by the admission guard (machine overloaded).",
        jobs.guard_refusals,
    );
}

/// The write-ahead log: appends, sync passes and their latency, LSNs, poisoning.
fn wal_metrics(e: &mut Exposition, server: &Server) {
    let rt = &server.runtime;
    let wal = rt.wal().stats();
    e.counter(
        "vigil_wal_appends_total",
        "Records appended to the write-ahead log since it opened.",
        wal.appends,
    );
    e.counter(
        "vigil_wal_syncs_total",
        "Group-commit sync passes since the log opened.",
        wal.syncs,
    );
    e.family(
        "vigil_wal_sync_duration_seconds",
        "histogram",
        "Time one group-commit sync pass took.",
    );
    e.histogram(
        "vigil_wal_sync_duration_seconds",
        &[],
        &wal.sync_latency,
        1e-6,
    );
    e.gauge(
        "vigil_wal_durable_lsn",
        "Highest LSN known durable.",
        Some(wal.durable_lsn as f64),
    );
    e.gauge(
        "vigil_wal_last_lsn",
        "Highest LSN appended.",
        Some(wal.last_lsn as f64),
    );
    e.gauge(
        "vigil_wal_poisoned",
        "1 when a failed sync poisoned the log (no more acknowledgements).",
        Some(f64::from(u8::from(rt.wal().is_poisoned()))),
    );
}

/// The socket: requests by method, errors, refusals and connections.
fn rpc_metrics(e: &mut Exposition, server: &Server) {
    let stats = &server.stats;
    e.family(
        "vigil_rpc_requests_total",
        "counter",
        "Socket requests parsed, by method.",
    );
    for (method, n) in METHODS.iter().zip(stats.requests.iter()) {
        e.sample(
            "vigil_rpc_requests_total",
            &[("method", method)],
            n.load(Ordering::Relaxed) as f64,
        );
    }
    e.counter(
        "vigil_rpc_errors_total",
        "Socket requests answered with an error.",
        stats.request_errors.load(Ordering::Relaxed),
    );
    e.counter(
        "vigil_busy_total",
        "Requests or connections turned away because a bound was reached.",
        stats.busy.load(Ordering::Relaxed),
    );
    e.counter(
        "vigil_connections_total",
        "Connections accepted.",
        stats.connections_total.load(Ordering::Relaxed),
    );
    e.counter(
        "vigil_peers_refused_total",
        "Connections refused for their peer's uid.",
        stats.peers_refused.load(Ordering::Relaxed),
    );
    e.gauge(
        "vigil_connections",
        "Connections open.",
        Some(server.connections.load(Ordering::Relaxed) as f64),
    );
}
