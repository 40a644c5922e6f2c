//! `vigil serve`: the thin server. One runtime, a Unix socket speaking newline-delimited
//! JSON-RPC 2.0 (parsed by `vigil_core::protocol`), and optionally a Prometheus endpoint.
//!
//! Threads, no async runtime: an accept loop, one thread per connection (bounded), a signal
//! thread, and the metrics thread. A connection's requests are answered in order; a client that
//! wants jobs in parallel opens more connections. Every resource a client can hold is bounded:
//! connections, request size, time to finish a request line, idle time, time to take a
//! response, and jobs (running, then a bounded queue, then a `busy` error).
//!
//! Shutdown (SIGTERM or SIGINT): stop accepting, let jobs run up to the grace period, cancel
//! what is left (each recorded `interrupted` with the reason), make the log durable, remove the
//! socket, exit 0.
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Value};
use vigil_core::json::{event_json, sample_json};
use vigil_core::protocol::{
    code, error_response, parse_request, response, Call, RpcError, METHODS, REQUEST_BYTES_MAX,
};
use vigil_core::runtime::{CancelOutcome, JobRequest, Runtime, RuntimeError, RuntimeOptions};
use vigil_core::wal::log::{LogFault, WalError};

use crate::damage::{damaged_message, fault_data, runtime_fault, LOG_DAMAGED};
use crate::units::parse_duration;
use crate::{default_data_dir, Cli};

mod metrics;
mod socket;

pub use socket::peer_credentials;
use socket::{peer_allowed, BoundSocket};

/// How often blocked threads look at the shutdown flag and their deadlines.
const TICK: Duration = Duration::from_millis(200);
/// Bytes read from a connection at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// How long shutdown waits, after the grace period, for cancelled jobs to end and connections
/// to write their last answers.
const DRAIN_WAIT: Duration = Duration::from_secs(5);
/// An `events.read` answer stops adding records past this many bytes of JSON (the cursor
/// says where to go on), so one request cannot make the server build a huge answer.
const EVENTS_BATCH_BYTES_MAX: usize = 4 << 20;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Socket path (default: vigil.sock in the data directory).
    #[arg(long, env = "VIGIL_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP at this address (a bare port means 127.0.0.1).
    #[arg(long)]
    pub metrics: Option<String>,
    /// Jobs running at once.
    #[arg(long = "max-jobs", default_value_t = 8)]
    pub max_jobs: usize,
    /// Jobs waiting for a slot beyond those; past this, `run` answers `busy`.
    #[arg(long = "queue", default_value_t = 64)]
    pub queue: usize,
    /// Connections open at once; past this, new ones get a `busy` error and are closed.
    #[arg(long = "max-connections", default_value_t = 128)]
    pub max_connections: usize,
    /// Also accept peers with this uid (besides the server's own uid and root). Repeatable.
    #[arg(long = "allow-uid")]
    pub allow_uid: Vec<u32>,
    /// Close a connection that sends nothing for this long.
    #[arg(long = "idle-timeout", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Close a connection that takes longer than this to send one request line, or to take
    /// one response.
    #[arg(long = "io-timeout", default_value = "10s", value_parser = parse_duration)]
    pub io_timeout: Duration,
    /// On SIGTERM/SIGINT, let running jobs finish for this long before killing them.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub grace: Duration,
    /// Root for `run` requests that name none: file capabilities are confined beneath it
    /// (default: the server's current directory).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Time between telemetry samples.
    #[arg(long = "sample-interval", default_value = "1s", value_parser = parse_duration)]
    pub sample_interval: Duration,
    /// Use at most this cgroup mode: v2, hybrid, v1 or none.
    #[arg(long = "cgroup-mode", env = "VIGIL_CGROUP_MODE")]
    pub cgroup_mode: Option<String>,
    /// Refuse every job whose requested limits are not all held here (see `vigil doctor`);
    /// a request's `require_enforcement: false` cannot lower it.
    #[arg(long = "require-enforcement")]
    pub require_enforcement: bool,
}

/// Counters about the server itself (the runtime keeps those about jobs).
#[derive(Default)]
pub struct ServerStats {
    pub requests: [AtomicU64; METHODS.len()],
    pub request_errors: AtomicU64,
    pub busy: AtomicU64,
    pub connections_total: AtomicU64,
    pub peers_refused: AtomicU64,
}

/// Everything a connection thread needs.
pub struct Server {
    pub runtime: Runtime,
    pub args: ServeArgs,
    pub default_root: PathBuf,
    pub socket_path: PathBuf,
    pub started: Instant,
    pub shutting_down: AtomicBool,
    pub connections: AtomicUsize,
    /// `run` requests admitted and not yet answered (running or queued).
    pub jobs_admitted: AtomicUsize,
    pub stats: ServerStats,
    /// The latest sample's JSON text and its sequence number: a sample changes once per
    /// interval, and `telemetry.sample` is asked far more often than that.
    pub sample_text: Mutex<(u64, Arc<str>)>,
}

pub fn run(cli: &Cli, args: ServeArgs) -> ExitCode {
    match serve(cli, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil serve: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Cli, args: ServeArgs) -> Result<(), String> {
    if args.max_jobs == 0 || args.max_connections == 0 {
        return Err("--max-jobs and --max-connections must be at least 1".into());
    }
    // Signals are taken by one thread with sigwait; every other thread, including those the
    // runtime starts, inherits the blocked mask. (Job processes reset it before exec.)
    let signals = block_shutdown_signals();
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    let socket_path = args
        .socket
        .clone()
        .unwrap_or_else(|| data_dir.join("vigil.sock"));
    let default_root = match &args.root {
        Some(r) => r.clone(),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    let mut options = RuntimeOptions::new(&data_dir);
    options.proc_root = cli.proc_root.clone();
    options.wal = crate::wal_options(cli);
    options.sample_interval = args.sample_interval;
    options.concurrent_jobs_max = args.max_jobs;
    options.wal = crate::wal_options(cli);
    options.executor = crate::run_cmd::executor_config(args.cgroup_mode.as_deref())?;
    // The runtime first: it holds the log's lock, so a second server on the same data
    // directory fails here, before touching the socket.
    let runtime = Runtime::open(options).map_err(|e| e.to_string())?;
    let recovery = runtime.recovery();
    if !recovery.interrupted.is_empty() {
        eprintln!(
            "vigil serve: recorded {} job(s) interrupted by the previous instance: {:?}",
            recovery.interrupted.len(),
            recovery.interrupted
        );
    }
    let mut bound = BoundSocket::bind(&socket_path)?;
    let metrics_listener = match &args.metrics {
        Some(addr) => Some(metrics::bind(addr)?),
        None => None,
    };
    let server = Arc::new(Server {
        runtime,
        args,
        default_root,
        socket_path: socket_path.clone(),
        started: Instant::now(),
        shutting_down: AtomicBool::new(false),
        connections: AtomicUsize::new(0),
        jobs_admitted: AtomicUsize::new(0),
        stats: ServerStats::default(),
        sample_text: Mutex::new((0, Arc::from(""))),
    });
    let (wake_read, wake_write) = wake_pipe().map_err(|e| format!("pipe: {e}"))?;
    let signal_thread = spawn_signal_thread(signals, server.clone(), wake_write)?;
    if let Some(listener) = metrics_listener {
        let local = listener
            .local_addr()
            .map_err(|e| format!("metrics address: {e}"))?;
        eprintln!("vigil serve: metrics on http://{local}/metrics");
        let server = server.clone();
        std::thread::Builder::new()
            .name("vigil-metrics".into())
            .spawn(move || metrics::serve(listener, &server))
            .map_err(|e| format!("starting the metrics thread: {e}"))?;
    }
    eprintln!(
        "vigil serve: listening on {} (pid {})",
        socket_path.display(),
        std::process::id()
    );

    accept_loop(&server, &bound, &wake_read);
    // New clients are refused from here on instead of queueing on a listener nobody accepts.
    bound.close_listener();
    let signal = signal_thread.join().unwrap_or(0);
    let closed = shut_down(&server, signal);
    bound.remove();
    eprintln!("vigil serve: stopped");
    closed
}

fn accept_loop(server: &Arc<Server>, bound: &BoundSocket, wake: &OwnedFd) {
    let mut fds = [
        libc::pollfd {
            fd: bound.listener_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    while !server.shutting_down.load(Ordering::Acquire) {
        // SAFETY: two valid pollfds.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if rc < 0 || fds[1].revents != 0 {
            continue;
        }
        if fds[0].revents == 0 {
            continue;
        }
        match bound.accept() {
            Ok((stream, _)) => admit(server, stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // EMFILE and friends: say so and back off rather than spin.
                eprintln!("vigil serve: accept: {e}");
                std::thread::sleep(TICK);
            }
        }
    }
}

/// Checks the peer and the connection bound, then hands the stream to its own thread.
fn admit(server: &Arc<Server>, mut stream: UnixStream) {
    server
        .stats
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let _ = stream.set_write_timeout(Some(server.args.io_timeout));
    let refuse = |stream: &mut UnixStream, error: RpcError| {
        let line = error_response(&Value::Null, &error) + "\n";
        let _ = stream.write_all(line.as_bytes());
    };
    match peer_credentials(&stream) {
        Ok((uid, _)) if peer_allowed(uid, &server.args.allow_uid) => {}
        Ok((uid, pid)) => {
            server.stats.peers_refused.fetch_add(1, Ordering::Relaxed);
            eprintln!("vigil serve: refused a peer with uid {uid} (pid {pid})");
            let msg = format!("uid {uid} may not use this server (see --allow-uid)");
            refuse(&mut stream, RpcError::new(code::PERMISSION_DENIED, msg));
            return;
        }
        Err(e) => {
            eprintln!("vigil serve: SO_PEERCRED: {e}");
            return;
        }
    }
    let open = server.connections.fetch_add(1, Ordering::AcqRel);
    if open >= server.args.max_connections {
        server.connections.fetch_sub(1, Ordering::AcqRel);
        server.stats.busy.fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "busy: {} connections are open (--max-connections)",
            server.args.max_connections
        );
        refuse(&mut stream, RpcError::new(code::BUSY, msg));
        return;
    }
    let thread_server = server.clone();
    let spawned = std::thread::Builder::new()
        .name("vigil-conn".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            connection(&thread_server, stream);
            thread_server.connections.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        server.connections.fetch_sub(1, Ordering::AcqRel);
        eprintln!("vigil serve: starting a connection thread: {e}");
    }
}

/// Serves one connection until the peer closes it, breaks a timeout, or shutdown begins.
fn connection(server: &Server, mut stream: UnixStream) {
    if stream.set_read_timeout(Some(TICK)).is_err() {
        return;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    // Skipping the rest of an oversized line, already answered.
    let mut discarding = false;
    let mut last_activity = Instant::now();
    let mut line_started: Option<Instant> = None;
    loop {
        if server.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                let now = Instant::now();
                let slow_line = line_started.is_some_and(|t| now - t > server.args.io_timeout);
                if slow_line || now - last_activity > server.args.idle_timeout {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        // Deadlines hold however the bytes trickle in: a line must be complete within the
        // I/O timeout of its first byte (a skipped oversized line too).
        last_activity = Instant::now();
        if line_started.is_some_and(|t| last_activity - t > server.args.io_timeout) {
            return;
        }
        let mut data = &chunk[..n];
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            if discarding {
                match newline {
                    Some(i) => {
                        discarding = false;
                        line_started = None;
                        data = &data[i + 1..];
                    }
                    None => {
                        line_started.get_or_insert_with(Instant::now);
                        data = &[];
                    }
                }
                continue;
            }
            let Some(i) = newline else {
                pending.extend_from_slice(data);
                line_started.get_or_insert_with(Instant::now);
                if pending.len() > REQUEST_BYTES_MAX {
                    pending = Vec::new();
                    discarding = true;
                    line_started = Some(Instant::now());
                    let error = RpcError::new(
                        code::REQUEST_TOO_LARGE,
                        format!("request line is over {REQUEST_BYTES_MAX} bytes; skipped"),
                    );
                    server.stats.request_errors.fetch_add(1, Ordering::Relaxed);
                    if write_line(&mut stream, &error_response(&Value::Null, &error)).is_err() {
                        return;
                    }
                }
                break;
            };
            let line: Vec<u8> = if pending.is_empty() {
                data[..i].to_vec()
            } else {
                pending.extend_from_slice(&data[..i]);
                std::mem::take(&mut pending)
            };
            data = &data[i + 1..];
            line_started = None;
            if let Some(answer) = handle_line(server, &line) {
                if write_line(&mut stream, &answer).is_err() {
                    return;
                }
            }
            last_activity = Instant::now();
        }
        if pending.capacity() > READ_CHUNK_BYTES && pending.is_empty() {
            pending = Vec::new();
        }
    }
}

fn write_line(stream: &mut UnixStream, line: &str) -> io::Result<()> {
    let mut out = Vec::with_capacity(line.len() + 1);
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    stream.write_all(&out)
}

/// Answers one request line; `None` for a notification or a blank line.
pub fn handle_line(server: &Server, line: &[u8]) -> Option<String> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let request = match parse_request(line) {
        Ok(r) => r,
        Err(rejection) => {
            server.stats.request_errors.fetch_add(1, Ordering::Relaxed);
            // A notification is never answered, not even with an error.
            if rejection.notification {
                return None;
            }
            return Some(error_response(&rejection.id, &rejection.error));
        }
    };
    if let Some(i) = METHODS.iter().position(|m| *m == request.call.method()) {
        server.stats.requests[i].fetch_add(1, Ordering::Relaxed);
    }
    let outcome = dispatch(server, request.call);
    let id = request.id?;
    Some(match outcome {
        Ok(Answer::Value(result)) => response(&id, &result),
        // The text is serialized JSON: splice it in as the result.
        Ok(Answer::Text(text)) => format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{text}}}"),
        Err(failure) => {
            server.stats.request_errors.fetch_add(1, Ordering::Relaxed);
            failure.response(&id)
        }
    })
}

/// An error answer: a JSON-RPC error, with `data` where it says more (where the log is
/// damaged, for `LOG_DAMAGED`).
struct Failure {
    error: RpcError,
    data: Option<Value>,
}

impl From<RpcError> for Failure {
    fn from(error: RpcError) -> Failure {
        Failure { error, data: None }
    }
}

impl Failure {
    /// A damaged log: its own code, and where the damage is as data.
    fn damaged(fault: &LogFault) -> Failure {
        Failure {
            error: RpcError::new(LOG_DAMAGED, damaged_message(fault)),
            data: Some(fault_data(fault)),
        }
    }

    fn response(&self, id: &Value) -> String {
        match &self.data {
            None => error_response(id, &self.error),
            Some(data) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "error": {"code": self.error.code, "message": self.error.message, "data": data},
            })
            .to_string(),
        }
    }
}

/// A result: a value, or JSON text already serialized (a cached sample, a batch of events
/// each serialized once).
enum Answer {
    Value(Value),
    Text(Arc<str>),
}

/// The latest sample as JSON text, serialized once per sample.
fn latest_sample_text(server: &Server) -> Result<Arc<str>, RpcError> {
    let rt = &server.runtime;
    let no_sample = || {
        RpcError::new(
            code::RUNTIME_ERROR,
            format!(
                "no telemetry sample yet{}",
                rt.telemetry()
                    .last_error()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        )
    };
    let seq = rt
        .telemetry()
        .with_latest(|s| s.map(|s| s.seq))
        .ok_or_else(no_sample)?;
    let mut cache = server.sample_text.lock().unwrap_or_else(|p| p.into_inner());
    if cache.0 != seq || cache.1.is_empty() {
        let (seq, text) = rt
            .telemetry()
            .with_latest(|s| s.map(|s| (s.seq, sample_json(s).to_string())))
            .ok_or_else(no_sample)?;
        *cache = (seq, Arc::from(text));
    }
    Ok(cache.1.clone())
}

fn runtime_error(e: RuntimeError) -> Failure {
    if let Some(fault) = runtime_fault(&e) {
        return Failure::damaged(fault);
    }
    Failure::from(match e {
        RuntimeError::JobNotFound(_) | RuntimeError::SessionNotFound(_) => {
            RpcError::new(code::NOT_FOUND, e.to_string())
        }
        RuntimeError::InvalidRequest(_) => RpcError::new(code::INVALID_PARAMS, e.to_string()),
        _ => RpcError::new(code::RUNTIME_ERROR, e.to_string()),
    })
}

fn to_value(v: impl serde::Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::new(code::INTERNAL_ERROR, e.to_string()))
}

fn dispatch(server: &Server, call: Call) -> Result<Answer, Failure> {
    let rt = &server.runtime;
    let value = match call {
        Call::TelemetrySample => return Ok(Answer::Text(latest_sample_text(server)?)),
        Call::EventsRead {
            cursor,
            max,
            wait_ms,
        } => return events_read(server, cursor, max, wait_ms).map(Answer::Text),
        Call::Health => health(server),
        Call::TelemetryHistory { since_seq, max } => {
            let mut samples = match since_seq {
                Some(seq) => rt.telemetry().since(seq),
                None => rt.telemetry().history(max),
            };
            if samples.len() > max {
                samples.drain(..samples.len() - max);
            }
            let last_seq = samples.last().map(|s| s.seq);
            json!({
                "samples": samples.iter().map(sample_json).collect::<Vec<_>>(),
                "last_seq": last_seq,
            })
        }
        Call::Run(params) => run_job(server, *params)?,
        Call::JobsList { session, status } => to_value(rt.jobs(session.as_deref(), status))?,
        Call::JobsGet { job_id } => rt.job_detail(job_id).map_err(runtime_error)?,
        Call::JobsCancel { job_id } => {
            let outcome = rt
                .cancel(job_id, "cancelled by request")
                .map_err(runtime_error)?;
            json!({
                "job_id": job_id,
                "cancelled": outcome == CancelOutcome::Cancelled,
                "status": rt.job(job_id).map(|j| j.status),
            })
        }
        Call::SessionsCreate { meta } => {
            to_value(rt.create_session(&meta).map_err(runtime_error)?)?
        }
        Call::SessionsList => to_value(rt.sessions())?,
        Call::SessionsGet { id } => to_value(rt.session(&id).map_err(runtime_error)?)?,
    };
    Ok(Answer::Value(value))
}

fn health(server: &Server) -> Value {
    let rt = &server.runtime;
    let wal = rt.wal();
    let host = rt.executor().host();
    json!({
        "status": if wal.is_poisoned() { "degraded" } else { "ok" },
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_ms": server.started.elapsed().as_millis() as u64,
        "data_dir": rt.options().data_dir,
        "socket": server.socket_path,
        "connections": server.connections.load(Ordering::Relaxed),
        "jobs_running": rt.jobs_running(),
        "jobs_admitted": server.jobs_admitted.load(Ordering::Relaxed),
        "max_jobs": server.args.max_jobs,
        "queue": server.args.queue,
        "cgroup_mode": host.mode.as_str(),
        "wal": {
            "durable_lsn": wal.durable_lsn(),
            "last_lsn": wal.last_lsn(),
            "sync_method": wal.sync_method(),
            "poisoned": wal.is_poisoned(),
        },
        "telemetry_seq": rt.telemetry().with_latest(|s| s.map(|s| s.seq)),
        "recovered_interrupted_jobs": rt.recovery().interrupted,
    })
}

/// Releases a `run` admission however the job ends.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn run_job(server: &Server, params: vigil_core::protocol::RunParams) -> Result<Value, Failure> {
    if server.shutting_down.load(Ordering::Acquire) {
        return Err(RpcError::new(
            code::SHUTTING_DOWN,
            "the server is shutting down and takes no new jobs",
        )
        .into());
    }
    let bound = server.args.max_jobs + server.args.queue;
    let admitted = server.jobs_admitted.fetch_add(1, Ordering::AcqRel);
    let _admission = Admission(&server.jobs_admitted);
    if admitted >= bound && !params.dry_run {
        server.stats.busy.fetch_add(1, Ordering::Relaxed);
        return Err(RpcError::new(
            code::BUSY,
            format!(
                "busy: {} jobs running and {} queued (--max-jobs, --queue); retry later",
                server.args.max_jobs, server.args.queue
            ),
        )
        .into());
    }
    let request = JobRequest {
        capability: params.capability,
        args: params.args,
        limits: params.limits,
        root: params.root.unwrap_or_else(|| server.default_root.clone()),
        session: params.session,
        dry_run: params.dry_run,
        // The server's --require-enforcement is a floor a request cannot lower.
        require_enforcement: params.require_enforcement || server.args.require_enforcement,
    };
    let outcome = server.runtime.run(&request).map_err(runtime_error)?;
    Ok(outcome.to_json())
}

/// `{events, next_cursor, durable_lsn}` as JSON text; each event is serialized once, both
/// to count it against the byte budget and to answer. Damage is never the end of the log:
/// the records before it are answered, and a request whose cursor is at the damage gets the
/// `LOG_DAMAGED` error naming it.
fn events_read(
    server: &Server,
    cursor: u64,
    max: usize,
    wait_ms: u64,
) -> Result<Arc<str>, Failure> {
    let wal = server.runtime.wal();
    let mut reader = wal.reader(cursor);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let mut events = String::from("[");
    let mut count = 0usize;
    loop {
        // One record at a time, so the batch stops at its byte budget as well as its count.
        while count < max && events.len() < EVENTS_BATCH_BYTES_MAX {
            let mut got = false;
            let read = reader.read_batch(1, &mut |frame| {
                if count > 0 {
                    events.push(',');
                }
                events.push_str(&event_json(&frame).to_string());
                count += 1;
                got = true;
            });
            match read {
                Ok(_) => {}
                // The batch so far is whole; the next request starts at the damage.
                Err(_) if count > 0 => break,
                Err(WalError::Corrupt(fault)) => return Err(Failure::damaged(&fault)),
                Err(e) => return Err(RpcError::new(code::RUNTIME_ERROR, e.to_string()).into()),
            }
            if !got {
                break;
            }
        }
        let now = Instant::now();
        if count > 0 || now >= deadline || server.shutting_down.load(Ordering::Acquire) {
            break;
        }
        reader.wait((deadline - now).min(TICK));
    }
    events.push(']');
    Ok(Arc::from(format!(
        "{{\"events\":{events},\"next_cursor\":{},\"durable_lsn\":{}}}",
        reader.next_lsn(),
        wal.durable_lsn()
    )))
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread started after it).
fn block_shutdown_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wake_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fds, owned from here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for SIGTERM or SIGINT, then flags shutdown and wakes the accept loop. Returns the
/// signal.
fn spawn_signal_thread(
    set: libc::sigset_t,
    server: Arc<Server>,
    wake: OwnedFd,
) -> Result<std::thread::JoinHandle<i32>, String> {
    std::thread::Builder::new()
        .name("vigil-signals".into())
        .spawn(move || {
            let mut signal = 0;
            // SAFETY: a valid set; sigwait writes the signal number.
            while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
            server.shutting_down.store(true, Ordering::Release);
            let byte = [1u8];
            // SAFETY: one byte to our own pipe.
            unsafe { libc::write(wake.as_raw_fd(), byte.as_ptr().cast(), 1) };
            signal
        })
        .map_err(|e| format!("starting the signal thread: {e}"))
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "a signal",
    }
}

/// Lets jobs finish up to the grace period, cancels the rest, waits for the last responses and
/// makes the log durable. An error when the log could not be made durable (a poisoned log):
/// the server then exits non-zero.
fn shut_down(server: &Server, signal: i32) -> Result<(), String> {
    let rt = &server.runtime;
    let name = signal_name(signal);
    let admitted = || server.jobs_admitted.load(Ordering::Acquire);
    eprintln!(
        "vigil serve: {name}: no new connections; {} job(s) running or queued, grace {:?}",
        admitted(),
        server.args.grace
    );
    // Admission counts a job from before the runtime knows it, so a request that raced the
    // signal is waited for (and cancelled) too.
    let deadline = Instant::now() + server.args.grace;
    while admitted() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let reason = format!("vigil serve stopped ({name}) before the job ended");
    let drain_deadline = Instant::now() + DRAIN_WAIT;
    let mut cancelled = 0;
    while (admitted() > 0 || server.connections.load(Ordering::Acquire) > 0)
        && Instant::now() < drain_deadline
    {
        // Repeated: a job that registers after one pass is caught by the next.
        cancelled += rt.cancel_all(&reason);
        std::thread::sleep(Duration::from_millis(20));
    }
    if cancelled > 0 {
        eprintln!("vigil serve: grace period over; cancelled the jobs still running");
    }
    rt.wal()
        .checkpoint()
        .map_err(|e| format!("final sync of the log failed: {e}"))?;
    eprintln!(
        "vigil serve: log durable through LSN {}",
        rt.wal().durable_lsn()
    );
    Ok(())
}
