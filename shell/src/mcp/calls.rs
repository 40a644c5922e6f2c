//! Running `tools/call`: each call on its own thread, its progress, its cancellation, and
//! its job run here or by a `vigil serve` it was pointed at.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use vigil_core::json::sample_json;
use vigil_core::model::JobState;
use vigil_core::protocol::parse_limits;
use vigil_core::runtime::{JobOutcome, JobRequest, Runtime, RuntimeError};

use crate::damage::{damaged_message, fault_data, runtime_fault};

use super::protocol::{code, error_line, notification_line, result_line, Request};
use super::tools::{self, ToolCall};

use super::{send, Backend, Failure, InFlight, Shared, ToolResult, REMOTE_CANCEL_POLL};

/// Cancels the call `key` (if it is still in flight): its job is killed now if it has one,
/// else as soon as it gets one.
pub(super) fn cancel_call(shared: &Arc<Shared>, key: &str, reason: &str) {
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
pub(super) fn chase_remote(shared: &Arc<Shared>, key: &str, session: &str, reason: &str) {
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
pub(super) fn start_call(shared: &Arc<Shared>, request: Request) {
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
pub(super) fn serve_call(shared: &Arc<Shared>, request: &Request, call: ToolCall) {
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
pub(super) fn tool_result_line(request: &Request, r: ToolResult) -> String {
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
pub(super) fn progress(shared: &Shared, token: &Value, started: &mpsc::Receiver<u64>) {
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

pub(super) fn call_tool(
    shared: &Arc<Shared>,
    key: &str,
    call: ToolCall,
) -> Result<ToolResult, Failure> {
    match call {
        ToolCall::Job {
            capability,
            args,
            limits,
        } => call_job(shared, key, capability, args, limits),
        ToolCall::Telemetry => {
            let sample = match &shared.backend {
                Backend::Local(rt) => local_sample(rt)?,
                Backend::Remote(socket) => remote(socket, "telemetry.sample", json!({}))?,
            };
            Ok(ToolResult::plain(sample))
        }
        ToolCall::JobsList { session, status } => call_jobs_list(shared, session, status),
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

/// A job tool: run here or through the server, with the server's default limits under the
/// call's own.
fn call_job(
    shared: &Arc<Shared>,
    key: &str,
    capability: &'static str,
    args: Map<String, Value>,
    limits: Map<String, Value>,
) -> Result<ToolResult, Failure> {
    let mut merged = shared.default_limits.clone();
    merged.extend(limits);
    let view = match &shared.backend {
        Backend::Local(rt) => {
            let limits =
                parse_limits(merged).map_err(|e| Failure::new(code::INVALID_PARAMS, e.message))?;
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
            let mut params = json!({
                "capability": capability,
                "args": args,
                "limits": merged,
                "root": shared.root,
                "session": session,
                "require_enforcement": shared.require_enforcement,
            });
            if let Value::Object(p) = &mut params {
                p.extend(shared.sandbox_params.clone());
            }
            remote(socket, "run", params)?
        }
    };
    Ok(job_result(view))
}

/// `jobs_list`: the jobs of the log, here or through the server, optionally of one session
/// and status.
fn call_jobs_list(
    shared: &Arc<Shared>,
    session: Option<String>,
    status: Option<String>,
) -> Result<ToolResult, Failure> {
    let jobs = match &shared.backend {
        Backend::Local(rt) => {
            let status = match status.as_deref().map(JobState::parse) {
                None => None,
                Some(Ok(state)) => Some(state),
                Some(Err(e)) => return Err(Failure::new(code::INVALID_PARAMS, e.to_string())),
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

/// The run object of a finished job (`vigil run --json`): the one place tool results take it
/// from.
pub(super) fn run_view(outcome: &JobOutcome) -> Value {
    outcome.to_json()
}

/// A job's tool result: an error result unless it completed with exit code 0.
pub(super) fn job_result(view: Value) -> ToolResult {
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
pub(super) fn local_sample(rt: &Runtime) -> Result<Value, Failure> {
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

pub(super) fn runtime_failure(e: RuntimeError) -> Failure {
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
pub(super) fn remote(
    socket: &std::path::Path,
    method: &str,
    params: Value,
) -> Result<Value, Failure> {
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
