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
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Map, Value};
use vigil_core::json::sample_json;
use vigil_core::model::JobState;
use vigil_core::protocol::parse_limits;
use vigil_core::runtime::{JobOutcome, JobRequest, Runtime, RuntimeError};

use crate::config::{CgroupModeArg, Global, LimitArgs};
use crate::damage::{damaged_message, fault_data, runtime_fault};
use crate::units::parse_duration;

pub mod protocol;
pub mod tools;

use protocol::{code, error_line, notification_line, result_line, Message, Request};
use tools::ToolCall;

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

/// Cancels the call `key` (if it is still in flight): its job is killed now if it has one,
/// else as soon as it gets one.
fn cancel_call(shared: &Arc<Shared>, key: &str, reason: &str) {
    let mut calls = shared.lock_calls();
    let Some(call) = calls.get_mut(key) else {
        return; // already answered, or never a call
    };
    if call.cancelled.is_some() {
        return;
    }
    call.cancelled = Some(reason.to_string());
    if let Some(job_id) = call.job_id {
        drop(calls);
        shared.cancel_job(job_id, reason);
    } else if let Some(session) = call.session.clone() {
        chase_remote(shared, key, &session, reason);
    }
}

/// With `--socket`, the server names a job only in its answer, when the job has ended: a
/// cancelled call's job is found by the call's own session instead, and cancelled as soon as
/// it shows there (it may still be waiting for a slot), until the call has its answer.
fn chase_remote(shared: &Arc<Shared>, key: &str, session: &str, reason: &str) {
    let Backend::Remote(socket) = &shared.backend else {
        return;
    };
    let (shared, socket, call, session) = (
        shared.clone(),
        socket.clone(),
        key.to_string(),
        session.to_string(),
    );
    let reason = reason.to_string();
    let spawned = std::thread::Builder::new()
        .name("vigil-mcp-cancel".into())
        .spawn(move || {
            let mut cancelled = std::collections::BTreeSet::new();
            while shared.lock_calls().contains_key(&call) {
                let params = json!({"session": session, "status": "running"});
                let jobs = match remote(&socket, "jobs.list", params) {
                    Ok(Value::Object(mut page)) => page.remove("jobs").unwrap_or_default(),
                    Ok(jobs) => jobs,
                    Err(_) => Value::Null,
                };
                let ids = jobs.as_array().into_iter().flatten();
                for job_id in ids.filter_map(|j| j["job_id"].as_u64()) {
                    if cancelled.insert(job_id) {
                        eprintln!("vigil mcp: call {call} {reason}; cancelling job {job_id}");
                        shared.cancel_job(job_id, &reason);
                    }
                }
                std::thread::sleep(REMOTE_CANCEL_POLL);
            }
        });
    if let Err(e) = spawned {
        eprintln!("vigil mcp: cancelling call {key}: {e}");
    }
}

/// Validates a `tools/call` and starts it on its own thread.
fn start_call(shared: &Arc<Shared>, request: Request) {
    let reject = |code: i64, message: String| {
        send(shared, &error_line(&request.id, code, &message, None));
    };
    let name = match request.params.get("name") {
        Some(Value::String(n)) => n.clone(),
        Some(_) => return reject(code::INVALID_PARAMS, "name must be a string".into()),
        None => return reject(code::INVALID_PARAMS, "tools/call needs a tool name".into()),
    };
    let call = match tools::parse_call(&name, request.params.get("arguments")) {
        Ok(c) => c,
        Err(message) => return reject(code::INVALID_PARAMS, message),
    };
    // A local sample is at hand: answered here, without a thread of its own.
    if let (ToolCall::Telemetry, Backend::Local(rt)) = (&call, &shared.backend) {
        let line = match local_sample(rt) {
            Ok(sample) => tool_result_line(&request, ToolResult::plain(sample)),
            Err(f) => error_line(&request.id, f.code, &f.message, f.data),
        };
        return send(shared, &line);
    }
    let key = request.id.to_string();
    {
        let mut calls = shared.lock_calls();
        if shared.closing.load(Ordering::Acquire) {
            return reject(
                code::SHUTTING_DOWN,
                "vigil mcp is stopping and takes no new calls".into(),
            );
        }
        if calls.contains_key(&key) {
            return reject(
                code::INVALID_REQUEST,
                format!("request id {key} is already in use by a call in flight"),
            );
        }
        if calls.len() >= shared.calls_max {
            return reject(
                code::BUSY,
                format!(
                    "busy: {} calls are running or waiting (--max-jobs, --queue); retry later",
                    calls.len()
                ),
            );
        }
        calls.insert(key.clone(), InFlight::default());
    }
    let thread_shared = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("vigil-mcp-call".into())
        .spawn(move || serve_call(&thread_shared, &request, call));
    if let Err(e) = spawned {
        shared.finish_call(&key);
        send(
            shared,
            &error_line(
                &serde_json::from_str(&key).unwrap_or(Value::Null),
                code::RUNTIME_ERROR,
                &format!("starting the call: {e}"),
                None,
            ),
        );
    }
}

/// Runs one call to its end and answers it (unless the client cancelled it).
fn serve_call(shared: &Arc<Shared>, request: &Request, call: ToolCall) {
    let key = request.id.to_string();
    let ticker = request.progress_token.clone().and_then(|token| {
        let (tx, rx) = mpsc::channel();
        shared.lock_calls().get_mut(&key)?.started = Some(tx);
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("vigil-mcp-progress".into())
            .spawn(move || progress(&shared, &token, &rx))
            .ok()
    });
    let outcome = call_tool(shared, &key, call);
    // Ends the ticker (its sender goes with the entry) before the answer, so no progress
    // notification follows the result.
    let cancelled = shared.finish_call(&key);
    if let Some(t) = ticker {
        let _ = t.join();
    }
    if let Some(reason) = cancelled {
        eprintln!("vigil mcp: call {key} {reason}; its answer is dropped");
        return;
    }
    let line = match outcome {
        Ok(r) => tool_result_line(request, r),
        Err(f) => error_line(&request.id, f.code, &f.message, f.data),
    };
    send(shared, &line);
}

/// A `tools/call` result: the structured content, and a text copy (after the summary of
/// what went wrong, for an error result).
fn tool_result_line(request: &Request, r: ToolResult) -> String {
    let mut content = Vec::new();
    if let Some(summary) = r.summary {
        content.push(json!({"type": "text", "text": summary}));
    }
    content.push(json!({"type": "text", "text": r.structured.to_string()}));
    let result = json!({
        "content": content,
        "structuredContent": r.structured,
        "isError": r.is_error,
    });
    result_line(request, result)
}

/// Sends `notifications/progress` for a running call: once its job has an id, then every
/// interval, until the call ends (its sender is dropped).
fn progress(shared: &Shared, token: &Value, started: &mpsc::Receiver<u64>) {
    let begun = Instant::now();
    let mut job_id: Option<u64> = None;
    let mut last = -1.0f64;
    loop {
        let message = match started.recv_timeout(shared.progress_interval) {
            Ok(id) => {
                job_id = Some(id);
                format!("job {id} started")
            }
            Err(RecvTimeoutError::Timeout) => {
                let elapsed = begun.elapsed().as_secs_f64();
                let output = match (&shared.backend, job_id) {
                    (Backend::Local(rt), Some(id)) => rt.job_output_bytes(id),
                    _ => None,
                };
                match (job_id, output) {
                    (Some(id), Some(bytes)) => {
                        format!("job {id} running for {elapsed:.1} s, {bytes} bytes of output")
                    }
                    (Some(id), None) => format!("job {id} running for {elapsed:.1} s"),
                    // The server names the job only when it has ended.
                    (None, _) if matches!(shared.backend, Backend::Remote(_)) => {
                        format!("sent to the server {elapsed:.1} s ago")
                    }
                    (None, _) => format!("waiting for a job slot for {elapsed:.1} s"),
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Progress must increase: elapsed milliseconds, nudged past the last value sent.
        let now = (begun.elapsed().as_millis() as f64).max(last + 1.0);
        last = now;
        let mut params = json!({"progressToken": token, "progress": now, "message": message});
        if let Some(id) = job_id {
            params["_meta"] = json!({"vigil/job_id": id});
            if let Backend::Local(rt) = &shared.backend {
                params["_meta"]["vigil/output_bytes"] = json!(rt.job_output_bytes(id));
            }
        }
        send(shared, &notification_line("notifications/progress", params));
    }
}

fn call_tool(shared: &Arc<Shared>, key: &str, call: ToolCall) -> Result<ToolResult, Failure> {
    match call {
        ToolCall::Job {
            capability,
            args,
            limits,
        } => {
            let mut merged = shared.default_limits.clone();
            merged.extend(limits);
            let view = match &shared.backend {
                Backend::Local(rt) => {
                    let limits = parse_limits(merged)
                        .map_err(|e| Failure::new(code::INVALID_PARAMS, e.message))?;
                    let request = JobRequest {
                        capability: capability.into(),
                        args: Value::Object(args),
                        limits,
                        root: shared.root.clone(),
                        session: None,
                        dry_run: false,
                        require_enforcement: shared.require_enforcement,
                    };
                    let outcome = rt
                        .run_observed(&request, &mut |job_id| shared.job_started(key, job_id))
                        .map_err(runtime_failure)?;
                    run_view(&outcome)
                }
                Backend::Remote(socket) => {
                    let session = remote(
                        socket,
                        "sessions.create",
                        json!({"meta": {"created_by": "vigil mcp", "tool": capability}}),
                    )?;
                    let session = session["session"].as_str().map(str::to_string);
                    let mut calls = shared.lock_calls();
                    if let Some(call) = calls.get_mut(key) {
                        call.session.clone_from(&session);
                        if let (Some(session), Some(reason)) = (&session, &call.cancelled) {
                            chase_remote(shared, key, session, reason);
                        }
                    }
                    drop(calls);
                    remote(
                        socket,
                        "run",
                        json!({
                            "capability": capability,
                            "args": args,
                            "limits": merged,
                            "root": shared.root,
                            "session": session,
                            "require_enforcement": shared.require_enforcement,
                        }),
                    )?
                }
            };
            Ok(job_result(view))
        }
        ToolCall::Telemetry => {
            let sample = match &shared.backend {
                Backend::Local(rt) => local_sample(rt)?,
                Backend::Remote(socket) => remote(socket, "telemetry.sample", json!({}))?,
            };
            Ok(ToolResult::plain(sample))
        }
        ToolCall::JobsList { session, status } => {
            let jobs = match &shared.backend {
                Backend::Local(rt) => {
                    let status = match status.as_deref().map(JobState::parse) {
                        None => None,
                        Some(Ok(state)) => Some(state),
                        Some(Err(e)) => {
                            return Err(Failure::new(code::INVALID_PARAMS, e.to_string()))
                        }
                    };
                    serde_json::to_value(rt.jobs(session.as_deref(), status))
                        .map_err(|e| Failure::new(code::INTERNAL_ERROR, e.to_string()))?
                }
                Backend::Remote(socket) => {
                    let mut params = Map::new();
                    if let Some(s) = session {
                        params.insert("session".into(), json!(s));
                    }
                    if let Some(s) = status {
                        params.insert("status".into(), json!(s));
                    }
                    match remote(socket, "jobs.list", Value::Object(params))? {
                        Value::Object(mut page) => page.remove("jobs").unwrap_or_default(),
                        jobs => jobs,
                    }
                }
            };
            Ok(ToolResult::plain(json!({"jobs": jobs})))
        }
        ToolCall::JobGet { job_id } => {
            let found = match &shared.backend {
                Backend::Local(rt) => match rt.job_detail(job_id) {
                    Err(RuntimeError::JobNotFound(_)) => None,
                    other => Some(other.map_err(runtime_failure)?),
                },
                Backend::Remote(socket) => {
                    match remote(socket, "jobs.get", json!({"job_id": job_id})) {
                        Err(f) if f.code == code::NOT_FOUND => None,
                        other => Some(other?),
                    }
                }
            };
            Ok(match found {
                Some(detail) => ToolResult::plain(detail),
                None => {
                    let message = format!("no job {job_id} in the log");
                    ToolResult {
                        structured: json!({"job_id": job_id, "status": "not_found", "error": message}),
                        is_error: true,
                        summary: Some(message),
                    }
                }
            })
        }
    }
}

/// The run object of a finished job (`vigil run --json`): the one place tool results take it
/// from.
fn run_view(outcome: &JobOutcome) -> Value {
    outcome.to_json()
}

/// A job's tool result: an error result unless it completed with exit code 0.
fn job_result(view: Value) -> ToolResult {
    let status = view["status"].as_str().unwrap_or("failed").to_string();
    let ok = status == "completed" && view["exit_code"].as_i64().unwrap_or(0) == 0;
    let summary = (!ok).then(|| {
        let job = view["job_id"]
            .as_u64()
            .map_or_else(|| "the job".to_string(), |id| format!("job {id}"));
        let how = match (view["exit_code"].as_i64(), view["signal"].as_i64()) {
            (Some(c), _) => format!("exit code {c}"),
            (_, Some(s)) => format!("signal {s}"),
            _ => "no exit status".into(),
        };
        match view["error"].as_str() {
            Some(e) => format!("{job} {status} ({how}): {e}"),
            None => format!("{job} {status} ({how})"),
        }
    });
    ToolResult {
        structured: view,
        is_error: !ok,
        summary,
    }
}

/// The latest telemetry sample; right after start the sampler may not have taken its first
/// one yet, so this waits for it a little.
fn local_sample(rt: &Runtime) -> Result<Value, Failure> {
    let deadline = Instant::now() + rt.options().sample_interval * 2 + Duration::from_secs(1);
    loop {
        if let Some(v) = rt.telemetry().with_latest(|s| s.map(sample_json)) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            let why = rt
                .telemetry()
                .last_error()
                .unwrap_or_else(|| "none taken yet".into());
            return Err(Failure::new(
                code::RUNTIME_ERROR,
                format!("no telemetry sample: {why}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn runtime_failure(e: RuntimeError) -> Failure {
    if let Some(fault) = runtime_fault(&e) {
        return Failure {
            code: code::LOG_DAMAGED,
            message: damaged_message(fault),
            data: Some(fault_data(fault)),
        };
    }
    match e {
        RuntimeError::InvalidRequest(_) => Failure::new(code::INVALID_PARAMS, e.to_string()),
        _ => Failure::new(code::RUNTIME_ERROR, e.to_string()),
    }
}

/// One request to the server at `socket`; its errors keep their meaning, with the server's
/// codes moved out of MCP's reserved band.
fn remote(socket: &std::path::Path, method: &str, params: Value) -> Result<Value, Failure> {
    match crate::client::call(socket, method, params, None) {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(error)) => {
            let code = error["code"].as_i64().unwrap_or(code::INTERNAL_ERROR);
            Err(Failure {
                code: code::out_of_band(code),
                message: error["message"]
                    .as_str()
                    .unwrap_or("the server failed")
                    .to_string(),
                data: error.get("data").cloned(),
            })
        }
        Err(e) => Err(Failure::new(code::RUNTIME_ERROR, e)),
    }
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
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, &'static str>> {
        let mut r = io::BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            match read_line(&mut r, &mut buf, max).unwrap() {
                Line::Eof => return out,
                Line::Data => out.push(Ok(buf.clone())),
                Line::TooLong => out.push(Err("too long")),
            }
        }
    }

    #[test]
    fn lines_are_bounded_and_an_oversized_one_is_skipped_whole() {
        assert_eq!(
            lines(b"ab\n0123456789abc\ncd\nlast", 8),
            vec![
                Ok(b"ab".to_vec()),
                Err("too long"),
                Ok(b"cd".to_vec()),
                Ok(b"last".to_vec())
            ]
        );
        assert_eq!(lines(b"", 8), vec![]);
        assert_eq!(lines(b"\n", 8), vec![Ok(vec![])]);
    }

    #[test]
    fn a_job_is_an_error_result_unless_it_completed_with_exit_code_zero() {
        let r = job_result(
            json!({"job_id": 3, "status": "completed", "exit_code": 0, "signal": null, "error": null}),
        );
        assert!(!r.is_error);
        assert!(r.summary.is_none());
        let r = job_result(
            json!({"job_id": 4, "status": "failed", "exit_code": 3, "signal": null, "error": null}),
        );
        assert!(r.is_error);
        assert_eq!(r.summary.as_deref(), Some("job 4 failed (exit code 3)"));
        let r = job_result(
            json!({"job_id": 5, "status": "timed_out", "exit_code": null, "signal": 9, "error": "deadline 100ms passed"}),
        );
        assert!(r.is_error);
        assert_eq!(
            r.summary.as_deref(),
            Some("job 5 timed_out (signal 9): deadline 100ms passed")
        );
        let r = job_result(
            json!({"job_id": null, "status": "rejected", "exit_code": null, "signal": null, "error": "path escapes the root"}),
        );
        assert!(r.is_error);
        assert_eq!(
            r.summary.as_deref(),
            Some("the job rejected (no exit status): path escapes the root")
        );
    }
}
