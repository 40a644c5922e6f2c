//! `vigil mcp`: a Model Context Protocol server on stdio. Newline-delimited JSON-RPC in on
//! stdin and out on stdout (nothing else is ever written there); what the server has to say
//! goes to stderr.
//!
//! Threads, no async runtime: the main thread reads requests and answers the quick ones; each
//! `tools/call` runs on its own thread (at most `--max-jobs` jobs run at once, `--queue` more
//! wait, past that a call is answered `busy`), with a ticker thread beside it when the client
//! asked for progress. `notifications/cancelled` kills the call's job (recorded
//! `interrupted`) and its answer is dropped. When stdin ends, or on SIGTERM/SIGINT/SIGHUP, the
//! jobs still running are cancelled, the log is made durable, and the server exits.
use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use clap::Args;
use serde_json::{json, Map, Value};
use vigil_core::protocol::parse_limits;
use vigil_core::runtime::Runtime;

use crate::config::{CgroupModeArg, Global, LimitArgs, SandboxArgs, UserArgs};
use crate::units::parse_duration;

mod calls;
pub mod protocol;
pub mod tools;

use calls::{cancel_call, remote, start_call};
use protocol::{code, error_line, result_line, Message};

/// The longest request line: room for the largest `file_write` (64 MiB of content) once
/// JSON-escaped; a longer line is skipped and answered with an error.
const LINE_BYTES_MAX: usize = 80 << 20;
/// How often a cancelled call's job is looked for on the server (`--socket`).
const REMOTE_CANCEL_POLL: Duration = Duration::from_millis(20);
/// The reason a job cancelled by the client carries in the log.
const CANCELLED_BY_CLIENT: &str = "cancelled by the MCP client";

#[derive(Debug, Clone, Args)]
pub struct McpArgs {
    /// Root directory: file tools resolve paths beneath it and processes start in it
    /// (default: the current directory).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Hand jobs to the `vigil serve` listening on this socket instead of running them in
    /// this process.
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Default limits of every job (a call's own limits override them).
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The sandbox of every shell and exec job (the mode is also the weakest any job gets).
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    #[command(flatten)]
    pub user: UserArgs,
    /// Use at most this cgroup mode: v2, hybrid, v1 or none (default: the best the host offers).
    #[arg(long = "cgroup-mode", env = "VIGIL_CGROUP_MODE", value_enum)]
    pub cgroup_mode: Option<CgroupModeArg>,
    /// Refuse every job whose requested limits are not all held here (see `vigil doctor`).
    #[arg(long = "require-enforcement")]
    pub require_enforcement: bool,
    /// Jobs running at once.
    #[arg(long = "max-jobs", default_value_t = 8)]
    pub max_jobs: usize,
    /// Calls waiting for a job slot beyond those; past this, a call is answered busy.
    #[arg(long = "queue", default_value_t = 64)]
    pub queue: usize,
    /// Time between progress notifications of a running job (when the client asks for them).
    #[arg(long = "progress-interval", default_value = "1s", value_parser = parse_duration)]
    pub progress_interval: Duration,
}

/// Where jobs run.
enum Backend {
    Local(Box<Runtime>),
    Remote(PathBuf),
}

/// A `tools/call` in flight.
#[derive(Default)]
struct InFlight {
    /// The job's id, once it has one.
    job_id: Option<u64>,
    /// Why the job is to be cancelled, once it is.
    cancelled: Option<String>,
    /// Tells the progress ticker the job's id.
    started: Option<mpsc::Sender<u64>>,
    /// With `--socket`: the session the call's job runs in (the server names the job only
    /// when it has ended; a cancellation finds it by its session).
    session: Option<String>,
}

struct Shared {
    backend: Backend,
    root: PathBuf,
    /// The default limits, as a socket-protocol `limits` object.
    default_limits: Map<String, Value>,
    require_enforcement: bool,
    /// The sandbox and user flags, as the socket protocol's `run` takes them (sent with
    /// `--socket`).
    sandbox_params: Map<String, Value>,
    progress_interval: Duration,
    /// Calls in flight at most (running and waiting for a slot).
    calls_max: usize,
    calls: Mutex<HashMap<String, InFlight>>,
    calls_changed: Condvar,
    closing: AtomicBool,
}

/// A protocol error: code, message, data.
struct Failure {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl Failure {
    fn new(code: i64, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
            data: None,
        }
    }
}

/// What a tool call answers: structured content and whether it is an error result.
struct ToolResult {
    structured: Value,
    is_error: bool,
    /// A line saying what went wrong, shown before the JSON copy.
    summary: Option<String>,
}

impl ToolResult {
    /// A result that is not an error.
    fn plain(structured: Value) -> ToolResult {
        ToolResult {
            structured,
            is_error: false,
            summary: None,
        }
    }
}

pub fn run(cli: &Global, args: &McpArgs) -> ExitCode {
    match serve(cli, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil mcp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &Global, args: &McpArgs) -> Result<(), String> {
    if args.max_jobs == 0 {
        return Err("--max-jobs must be at least 1".into());
    }
    let signals = block_signals();
    let root = match &args.root {
        Some(r) => r.clone(),
        None => std::env::current_dir().map_err(|e| format!("current directory: {e}"))?,
    };
    let root = std::path::absolute(&root).map_err(|e| format!("--root {}: {e}", root.display()))?;
    let backend = match &args.socket {
        Some(socket) => {
            eprintln!(
                "vigil mcp: jobs go to the server at {} (root {})",
                socket.display(),
                root.display()
            );
            Backend::Remote(socket.clone())
        }
        None => {
            let data_dir = cli.data_dir();
            let mut options = cli.runtime_options(args.cgroup_mode);
            options.concurrent_jobs_max = args.max_jobs;
            args.sandbox.apply_server_defaults(&mut options.executor);
            args.user.apply_server_defaults(&mut options.executor)?;
            let runtime = Runtime::open(options).map_err(|e| e.to_string())?;
            if !runtime.recovery().interrupted.is_empty() {
                eprintln!(
                    "vigil mcp: recorded job(s) {:?} interrupted by an earlier instance",
                    runtime.recovery().interrupted
                );
            }
            eprintln!(
                "vigil mcp: serving on stdio (data dir {}, root {})",
                data_dir.display(),
                root.display()
            );
            Backend::Local(Box::new(runtime))
        }
    };
    let default_limits = args.limits.to_json();
    // The defaults must make a valid limits object on their own.
    parse_limits(default_limits.clone()).map_err(|e| e.message)?;
    let shared = Arc::new(Shared {
        backend,
        root,
        default_limits,
        require_enforcement: args.require_enforcement,
        sandbox_params: args
            .sandbox
            .to_params()
            .into_iter()
            .chain(args.user.to_params())
            .collect(),
        progress_interval: args.progress_interval.max(Duration::from_millis(10)),
        calls_max: args.max_jobs.saturating_add(args.queue),
        calls: Mutex::new(HashMap::new()),
        calls_changed: Condvar::new(),
        closing: AtomicBool::new(false),
    });
    spawn_signal_thread(signals, shared.clone())?;
    read_loop(&shared);
    shut_down(&shared, "the MCP client closed the connection");
    Ok(())
}

/// Reads and answers messages until stdin ends or the server is closing.
fn read_loop(shared: &Arc<Shared>) {
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    while !shared.closing.load(Ordering::Acquire) {
        match read_line(&mut input, &mut line, LINE_BYTES_MAX) {
            Ok(Line::Eof) | Err(_) => return,
            Ok(Line::TooLong) => send(
                shared,
                &error_line(
                    &Value::Null,
                    code::REQUEST_TOO_LARGE,
                    &format!("message over {LINE_BYTES_MAX} bytes; skipped"),
                    None,
                ),
            ),
            Ok(Line::Data) => handle_line(shared, &line),
        }
    }
}

fn handle_line(shared: &Arc<Shared>, line: &[u8]) {
    match protocol::parse(line) {
        Message::Ignore => {}
        Message::Reject(answer) => send(shared, &answer),
        Message::Notification { method, params } => notified(shared, &method, &params),
        Message::Request(request) => match protocol::answer_static(&request) {
            Some(Ok(result)) => {
                if request.method == "initialize" {
                    let client = &request.params.get("clientInfo");
                    eprintln!(
                        "vigil mcp: {} {} connected ({})",
                        client
                            .and_then(|c| c["name"].as_str())
                            .unwrap_or("a client"),
                        client.and_then(|c| c["version"].as_str()).unwrap_or(""),
                        result["protocolVersion"].as_str().unwrap_or_default()
                    );
                }
                send(shared, &result_line(&request, result));
            }
            Some(Err((code, message))) => {
                send(shared, &error_line(&request.id, code, &message, None))
            }
            None => start_call(shared, request),
        },
    }
}

fn notified(shared: &Arc<Shared>, method: &str, params: &Map<String, Value>) {
    if method != "notifications/cancelled" {
        return;
    }
    let Some(id) = params.get("requestId") else {
        return;
    };
    let reason = match params.get("reason").and_then(Value::as_str) {
        Some(r) => format!(
            "{CANCELLED_BY_CLIENT}: {}",
            r.chars().take(200).collect::<String>()
        ),
        None => CANCELLED_BY_CLIENT.to_string(),
    };
    cancel_call(shared, &id.to_string(), &reason);
}

impl Shared {
    fn lock_calls(&self) -> MutexGuard<'_, HashMap<String, InFlight>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The call `key` has a job: remember it, say so to the ticker, and cancel it at once if
    /// the client already has.
    fn job_started(&self, key: &str, job_id: u64) {
        let mut calls = self.lock_calls();
        let Some(call) = calls.get_mut(key) else {
            return;
        };
        call.job_id = Some(job_id);
        if let Some(tx) = &call.started {
            let _ = tx.send(job_id);
        }
        if let Some(reason) = call.cancelled.clone() {
            drop(calls);
            self.cancel_job(job_id, &reason);
        }
    }

    fn cancel_job(&self, job_id: u64, reason: &str) {
        match &self.backend {
            Backend::Local(rt) => {
                if let Err(e) = rt.cancel(job_id, reason) {
                    eprintln!("vigil mcp: cancelling job {job_id}: {e}");
                }
            }
            Backend::Remote(socket) => {
                if let Err(f) = remote(socket, "jobs.cancel", json!({"job_id": job_id})) {
                    eprintln!("vigil mcp: cancelling job {job_id}: {}", f.message);
                }
            }
        }
    }

    /// Removes a finished call; returns why it was cancelled, if it was.
    fn finish_call(&self, key: &str) -> Option<String> {
        let removed = self.lock_calls().remove(key);
        self.calls_changed.notify_all();
        removed.and_then(|c| c.cancelled)
    }
}

/// Writes one line to stdout, whole; a client that went away closes the server.
fn send(shared: &Shared, line: &str) {
    let mut out = io::stdout().lock();
    let written = out
        .write_all(line.as_bytes())
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if written.is_err() && !shared.closing.swap(true, Ordering::AcqRel) {
        eprintln!("vigil mcp: stdout is closed; stopping");
    }
}

/// Cancels every call in flight, waits for them to end (each job recorded), makes the log
/// durable.
fn shut_down(shared: &Arc<Shared>, reason: &str) {
    shared.closing.store(true, Ordering::Release);
    let keys: Vec<String> = shared.lock_calls().keys().cloned().collect();
    if !keys.is_empty() {
        eprintln!(
            "vigil mcp: {reason}; cancelling {} call(s) in flight",
            keys.len()
        );
    }
    for key in keys {
        cancel_call(shared, &key, reason);
    }
    let mut calls = shared.lock_calls();
    while !calls.is_empty() {
        calls = shared
            .calls_changed
            .wait(calls)
            .unwrap_or_else(|p| p.into_inner());
    }
    drop(calls);
    if let Backend::Local(rt) = &shared.backend {
        if let Err(e) = rt.wal().checkpoint() {
            eprintln!("vigil mcp: final sync of the log failed: {e}");
        }
    }
}

/// One line of input.
enum Line {
    Data,
    /// Longer than the cap: skipped through its newline.
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without its newline), never holding more than `max` bytes.
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::Eof,
                (true, true) => Line::TooLong,
                (true, false) => Line::Data,
            });
        }
        any = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let part = &available[..newline.unwrap_or(available.len())];
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
                *buf = Vec::new();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = newline.map_or(available.len(), |i| i + 1);
        input.consume(used);
        if newline.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Data });
        }
    }
}

/// Blocks the signals that stop the server in this thread and every thread started after it;
/// one thread takes them with sigwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: the set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn spawn_signal_thread(set: libc::sigset_t, shared: Arc<Shared>) -> Result<(), String> {
    std::thread::Builder::new()
        .name("vigil-mcp-signals".into())
        .spawn(move || {
            let mut signal = 0;
            // SAFETY: a valid set; sigwait writes the signal number.
            while unsafe { libc::sigwait(&set, &mut signal) } != 0 {}
            shut_down(&shared, &format!("vigil mcp stopped by signal {signal}"));
            std::process::exit(0);
        })
        .map(drop)
        .map_err(|e| format!("starting the signal thread: {e}"))
}

#[cfg(test)]
mod tests;
