//! The socket protocol's requests: newline-delimited JSON-RPC 2.0, parsed and validated into a
//! typed [`Call`] before anything acts on them. This module owns the method names, their
//! parameters and the error codes; it knows nothing of sockets (the `vigil` binary serves them)
//! and runs nothing (the server hands a [`Call`] to the runtime).
//!
//! Parsing never panics and never trusts sizes: a line is at most [`REQUEST_BYTES_MAX`] bytes
//! (the server enforces it while reading), every number is range-checked, unknown parameter
//! names are refused so a typo is an error rather than a silently ignored limit.
use std::fmt;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::exec::identity::UserSpec;
use crate::exec::sandbox::{SandboxMode, SandboxRequest};
use crate::exec::{Limits, RequestedLimits};
use crate::model::JobState;
use crate::wal::Lsn;

/// Longest request line accepted, newline excluded.
pub const REQUEST_BYTES_MAX: usize = 1 << 20;
/// Records `events.read` returns unless asked for fewer.
pub const EVENTS_BATCH_DEFAULT: usize = 100;
/// Most records one `events.read` returns.
pub const EVENTS_BATCH_MAX: usize = 1_000;
/// Longest `events.read` long-poll.
pub const EVENTS_WAIT_MS_MAX: u64 = 30_000;
/// Most samples one `telemetry.history` returns.
pub const HISTORY_SAMPLES_MAX: usize = 1_000;
/// Most requests in one batch (a JSON array of requests on one line).
pub const BATCH_REQUESTS_MAX: usize = 100;
/// Entries of a paged `jobs.list` / `sessions.list` when the request gives a cursor but no limit.
pub const LIST_PAGE_DEFAULT: usize = 100;
/// Most entries one page of `jobs.list` / `sessions.list` holds.
pub const LIST_PAGE_MAX: usize = 1_000;
pub use crate::exec::TIMEOUT_MS_MAX;

/// JSON-RPC error codes: the spec's own, then vigil's (-32000..-32099, server errors).
pub mod code {
    /// The request line is not valid JSON (JSON-RPC 2.0).
    pub const PARSE_ERROR: i64 = -32700;
    /// The JSON is not a request object: no `"jsonrpc": "2.0"`, no string `method`, a bad `id` or
    /// an unknown member (JSON-RPC 2.0).
    pub const INVALID_REQUEST: i64 = -32600;
    /// No method of that name; the message lists the known ones (JSON-RPC 2.0).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// A parameter is missing, of the wrong type, out of range or unknown (JSON-RPC 2.0).
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed in a way that is not the request's fault (JSON-RPC 2.0).
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Every job slot and every queue place is taken; retry later.
    pub const BUSY: i64 = -32001;
    /// The job or session named does not exist.
    pub const NOT_FOUND: i64 = -32002;
    /// The server is shutting down and takes no new work.
    pub const SHUTTING_DOWN: i64 = -32003;
    /// The request line is longer than [`super::REQUEST_BYTES_MAX`].
    pub const REQUEST_TOO_LARGE: i64 = -32004;
    /// The runtime could not do what was asked (the log failed, say).
    pub const RUNTIME_ERROR: i64 = -32005;
    /// The peer's uid may not use this server.
    pub const PERMISSION_DENIED: i64 = -32006;
    /// The answer needs records of the log that are damaged; the error's `data` is
    /// `{kind, segment, offset, lsn, cause}`.
    pub const LOG_DAMAGED: i64 = -32007;
    /// The records asked for were retired (an `events.read` cursor older than the log's
    /// retention); the error's `data` is `{lsn, first_lsn}`: reading goes on from `first_lsn`.
    pub const NOT_RETAINED: i64 = -32008;
}

/// The methods, by protocol name.
pub const METHODS: &[&str] = &[
    "health",
    "telemetry.sample",
    "telemetry.history",
    "run",
    "jobs.list",
    "jobs.get",
    "jobs.cancel",
    "events.read",
    "sessions.create",
    "sessions.list",
    "sessions.get",
];

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The error code: one of [`code`].
    pub code: i64,
    /// A human-readable sentence saying what was wrong.
    pub message: String,
}

impl RpcError {
    /// An error with `code` (one of [`code`]) and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    fn params(message: impl Into<String>) -> RpcError {
        RpcError::new(code::INVALID_PARAMS, message)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

/// What `run` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RunParams {
    /// The capability to run, by name.
    pub capability: String,
    /// The capability's arguments: always a JSON object (`{}` when the request gives none).
    pub args: Value,
    /// The limits to run under: the request's `limits` over the defaults, already checked.
    pub limits: Limits,
    /// Absolute; `None` means the server's default root.
    pub root: Option<PathBuf>,
    /// The session the job belongs to (its id), if any.
    pub session: Option<String>,
    /// Check and plan the job without running it.
    pub dry_run: bool,
    /// Refuse the job when a requested limit is not held (the server may require it anyway).
    pub require_enforcement: bool,
}

/// One validated request.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `health`: is the server up, and how is it configured.
    Health,
    /// `telemetry.sample`: the latest host sample.
    TelemetrySample,
    /// Samples newer than `since_seq` (all kept, when `None`), at most `max`, oldest first.
    TelemetryHistory {
        /// Only samples with a sequence number above this.
        since_seq: Option<u64>,
        /// Most samples to return, at most [`HISTORY_SAMPLES_MAX`] (that bound when not given).
        max: usize,
    },
    /// `run`: run a capability as a job.
    Run(Box<RunParams>),
    /// Jobs matching the filters, oldest first; one page of them when `page` is given.
    JobsList {
        /// Only jobs of this session id.
        session: Option<String>,
        /// Only jobs in this state.
        status: Option<JobState>,
        /// The page to return; `None` answers the whole list.
        page: Option<Page<u64>>,
    },
    /// `jobs.get`: one job's detail.
    JobsGet {
        /// The job's id.
        job_id: u64,
    },
    /// `jobs.cancel`: stop a running job.
    JobsCancel {
        /// The job's id.
        job_id: u64,
    },
    /// Up to `max` records from LSN `cursor` on; waits up to `wait_ms` when there are none.
    EventsRead {
        /// The LSN of the first record wanted, at least 1 (the log's start when not given).
        cursor: Lsn,
        /// Most records to return, at most [`EVENTS_BATCH_MAX`] ([`EVENTS_BATCH_DEFAULT`] when not
        /// given).
        max: usize,
        /// How long to wait for a record when there is none yet, in ms, 0..=[`EVENTS_WAIT_MS_MAX`].
        wait_ms: u64,
    },
    /// `sessions.create`: open a new session.
    SessionsCreate {
        /// Caller-chosen metadata stored with the session: a JSON object (`{}` when not given).
        meta: Value,
    },
    /// Sessions by id; one page of them when `page` is given.
    SessionsList {
        /// The page to return; `None` answers the whole list.
        page: Option<Page<String>>,
    },
    /// `sessions.get`: one session's detail.
    SessionsGet {
        /// The session's id.
        id: String,
    },
}

impl Call {
    /// The method's protocol name.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Health => "health",
            Call::TelemetrySample => "telemetry.sample",
            Call::TelemetryHistory { .. } => "telemetry.history",
            Call::Run(_) => "run",
            Call::JobsList { .. } => "jobs.list",
            Call::JobsGet { .. } => "jobs.get",
            Call::JobsCancel { .. } => "jobs.cancel",
            Call::EventsRead { .. } => "events.read",
            Call::SessionsCreate { .. } => "sessions.create",
            Call::SessionsList { .. } => "sessions.list",
            Call::SessionsGet { .. } => "sessions.get",
        }
    }
}

/// One page of a list: at most `limit` entries after the cursor `after` (from the start when
/// `None`). The cursor is the key of the last entry of the previous page: a job id, a session
/// id.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<C> {
    /// The key of the last entry of the previous page (`None`: from the start).
    pub after: Option<C>,
    /// Most entries on this page, 1..=[`LIST_PAGE_MAX`].
    pub limit: usize,
}

/// A parsed request: its id (`None` for a notification, which gets no response) and call.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The request's id, echoed in the response: null, a string or a number. `None` for a
    /// notification, which gets no response.
    pub id: Option<Value>,
    /// The method and its validated parameters.
    pub call: Call,
}

/// A request that could not be taken: the id to answer with (null when it could not be read)
/// and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The id to answer with: the request's own, or null when it could not be read.
    pub id: Value,
    /// Why the request was refused.
    pub error: RpcError,
    /// The request was a readable notification (no `id`): the spec forbids answering it, even
    /// with an error.
    pub notification: bool,
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, Rejection> {
    let reject = |id: Value, error: RpcError| Rejection {
        id,
        error,
        notification: false,
    };
    if line.len() > REQUEST_BYTES_MAX {
        return Err(reject(
            Value::Null,
            RpcError::new(
                code::REQUEST_TOO_LARGE,
                format!("request is over {REQUEST_BYTES_MAX} bytes"),
            ),
        ));
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| {
        reject(
            Value::Null,
            RpcError::new(code::PARSE_ERROR, format!("not JSON: {e}")),
        )
    })?;
    parse_request_value(value)
}

/// Validates one request already read as JSON (a line, or a member of a batch).
pub fn parse_request_value(value: Value) -> Result<Request, Rejection> {
    let reject = |id: Value, error: RpcError| Rejection {
        id,
        error,
        notification: false,
    };
    let Value::Object(mut object) = value else {
        return Err(reject(
            Value::Null,
            RpcError::new(code::INVALID_REQUEST, "a request is a JSON object"),
        ));
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::Null | Value::String(_) | Value::Number(_))) => Some(id),
        Some(_) => {
            return Err(reject(
                Value::Null,
                RpcError::new(code::INVALID_REQUEST, "id must be a string, number or null"),
            ))
        }
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    if object.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(reject(
            answer_id,
            RpcError::new(code::INVALID_REQUEST, "jsonrpc must be \"2.0\""),
        ));
    }
    let method = match object.remove("method") {
        Some(Value::String(m)) => m,
        _ => {
            return Err(reject(
                answer_id,
                RpcError::new(code::INVALID_REQUEST, "method must be a string"),
            ))
        }
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p,
        Some(_) => {
            return Err(reject(
                answer_id,
                RpcError::params("params must be an object (by-name parameters)"),
            ))
        }
    };
    if let Some(extra) = object.keys().find(|k| k.as_str() != "jsonrpc") {
        return Err(reject(
            answer_id,
            RpcError::new(code::INVALID_REQUEST, format!("unknown member {extra:?}")),
        ));
    }
    match parse_call(&method, params) {
        Ok(call) => Ok(Request { id, call }),
        Err(error) => Err(Rejection {
            notification: id.is_none(),
            id: answer_id,
            error,
        }),
    }
}

/// A page when either `cursor` or `limit` is given (the list is answered whole otherwise, as
/// before paging existed).
fn page<C>(after: Option<C>, limit: Option<u64>) -> Result<Option<Page<C>>, RpcError> {
    if after.is_none() && limit.is_none() {
        return Ok(None);
    }
    let limit = limit.map_or(LIST_PAGE_DEFAULT, |n| n as usize);
    if limit == 0 {
        return Err(RpcError::params("limit must be at least 1"));
    }
    Ok(Some(Page { after, limit }))
}

/// Named parameters, taken one by one; whatever is left at the end is an unknown name.
struct Params {
    map: Map<String, Value>,
}

impl Params {
    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    fn u64(&mut self, name: &str, max: u64) -> Result<Option<u64>, RpcError> {
        match self.take(name) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => Ok(Some(n)),
                _ => Err(RpcError::params(format!(
                    "{name} must be an integer from 0 to {max}"
                ))),
            },
        }
    }

    fn required_u64(&mut self, name: &str) -> Result<u64, RpcError> {
        self.u64(name, u64::MAX)?
            .ok_or_else(|| RpcError::params(format!("{name} is required")))
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, RpcError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(RpcError::params(format!("{name} must be a string"))),
        }
    }

    fn required_string(&mut self, name: &str) -> Result<String, RpcError> {
        self.string(name)?
            .ok_or_else(|| RpcError::params(format!("{name} is required")))
    }

    fn bool(&mut self, name: &str) -> Result<bool, RpcError> {
        match self.take(name) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(RpcError::params(format!("{name} must be true or false"))),
        }
    }

    fn object(&mut self, name: &str) -> Result<Option<Map<String, Value>>, RpcError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(RpcError::params(format!("{name} must be an object"))),
        }
    }

    /// Ends parsing: an unknown name is an error.
    fn done(self, method: &str) -> Result<(), RpcError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(RpcError::params(format!("{method} has no parameter {k:?}"))),
        }
    }
}

fn parse_call(method: &str, params: Map<String, Value>) -> Result<Call, RpcError> {
    let mut p = Params { map: params };
    let call = match method {
        "health" => Call::Health,
        "telemetry.sample" => Call::TelemetrySample,
        "telemetry.history" => Call::TelemetryHistory {
            since_seq: p.u64("since_seq", u64::MAX)?,
            max: p
                .u64("max", HISTORY_SAMPLES_MAX as u64)?
                .map_or(HISTORY_SAMPLES_MAX, |n| n as usize),
        },
        "run" => Call::Run(Box::new(parse_run(&mut p)?)),
        "jobs.list" => {
            let limit = p.u64("limit", LIST_PAGE_MAX as u64)?;
            let after = p.u64("cursor", u64::MAX)?;
            Call::JobsList {
                session: p.string("session")?,
                status: p
                    .string("status")?
                    .map(|s| JobState::parse(&s).map_err(|e| RpcError::params(e.to_string())))
                    .transpose()?,
                page: page(after, limit)?,
            }
        }
        "jobs.get" => Call::JobsGet {
            job_id: p.required_u64("job_id")?,
        },
        "jobs.cancel" => Call::JobsCancel {
            job_id: p.required_u64("job_id")?,
        },
        "events.read" => Call::EventsRead {
            cursor: p.u64("cursor", u64::MAX)?.unwrap_or(1).max(1),
            max: p
                .u64("max", EVENTS_BATCH_MAX as u64)?
                .map_or(EVENTS_BATCH_DEFAULT, |n| n as usize),
            wait_ms: p.u64("wait_ms", EVENTS_WAIT_MS_MAX)?.unwrap_or(0),
        },
        "sessions.create" => Call::SessionsCreate {
            meta: Value::Object(p.object("meta")?.unwrap_or_default()),
        },
        "sessions.list" => {
            let limit = p.u64("limit", LIST_PAGE_MAX as u64)?;
            let after = p.string("cursor")?;
            Call::SessionsList {
                page: page(after, limit)?,
            }
        }
        "sessions.get" => Call::SessionsGet {
            id: p.required_string("id")?,
        },
        _ => {
            return Err(RpcError::new(
                code::METHOD_NOT_FOUND,
                format!("no method {method:?} (known: {})", METHODS.join(", ")),
            ))
        }
    };
    p.done(method)?;
    Ok(call)
}

fn parse_run(p: &mut Params) -> Result<RunParams, RpcError> {
    let capability = p.required_string("capability")?;
    let args = match p.take("args") {
        None => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(RpcError::params("args must be an object")),
    };
    let mut limits = match p.object("limits")? {
        None => Limits::default(),
        Some(m) => parse_limits(m)?,
    };
    limits.sandbox = parse_sandbox(p)?;
    limits.user = parse_user(p)?;
    let root = match p.string("root")? {
        None => None,
        Some(r) if r.starts_with('/') && !r.contains('\0') => Some(PathBuf::from(r)),
        Some(_) => return Err(RpcError::params("root must be an absolute path")),
    };
    Ok(RunParams {
        capability,
        args,
        limits,
        root,
        session: p.string("session")?,
        dry_run: p.bool("dry_run")?,
        require_enforcement: p.bool("require_enforcement")?,
    })
}

/// `user`: a name (string) or a uid (number) a process job runs as, optional.
fn parse_user(p: &mut Params) -> Result<Option<UserSpec>, RpcError> {
    let spec = match p.take("user") {
        None => return Ok(None),
        Some(Value::String(s)) => UserSpec::parse(&s),
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(uid) => UserSpec::Uid(uid).checked(),
            None => Err(format!("user id {n} is out of range")),
        },
        Some(_) => Err("must be a user name (string) or a uid (number)".to_string()),
    };
    spec.map(Some)
        .map_err(|e| RpcError::params(format!("user: {e}")))
}

/// Most paths in `allow_write` or `deny_read`.
pub const SANDBOX_PATHS_MAX: usize = 64;

/// `sandbox` (`off`, `workspace`, `strict`), `allow_write` and `deny_read` (arrays of absolute
/// paths), each optional.
fn parse_sandbox(p: &mut Params) -> Result<SandboxRequest, RpcError> {
    let mode = match p.string("sandbox")? {
        None => None,
        Some(m) => Some(SandboxMode::parse(&m).ok_or_else(|| {
            RpcError::params(format!(
                "sandbox must be \"off\", \"workspace\" or \"strict\", not {m:?}"
            ))
        })?),
    };
    let mut paths = |name: &str| -> Result<Vec<PathBuf>, RpcError> {
        match p.take(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) if a.len() <= SANDBOX_PATHS_MAX => a
                .into_iter()
                .map(|v| match v {
                    Value::String(s) if s.starts_with('/') && !s.contains('\0') => {
                        Ok(PathBuf::from(s))
                    }
                    _ => Err(RpcError::params(format!(
                        "{name} entries must be absolute paths"
                    ))),
                })
                .collect(),
            Some(_) => Err(RpcError::params(format!(
                "{name} must be an array of at most {SANDBOX_PATHS_MAX} absolute paths"
            ))),
        }
    };
    let allow_write = paths("allow_write")?;
    let deny_read = paths("deny_read")?;
    Ok(SandboxRequest {
        mode,
        allow_write,
        deny_read,
    })
}

/// `{timeout_ms, cpu_time_ms, memory_bytes, pids, max_output_bytes}`, each optional.
pub fn parse_limits(m: Map<String, Value>) -> Result<Limits, RpcError> {
    let mut p = Params { map: m };
    let requested = RequestedLimits {
        timeout_ms: p.u64("timeout_ms", u64::MAX)?,
        cpu_time_ms: p.u64("cpu_time_ms", u64::MAX)?,
        memory_bytes: p.u64("memory_bytes", u64::MAX)?,
        pids: p.u64("pids", u64::MAX)?,
        max_output_bytes: p.u64("max_output_bytes", u64::MAX)?,
    };
    p.done("limits")?;
    requested
        .check()
        .map_err(|e| RpcError::params(e.to_string()))?;
    Ok(requested.over(&Limits::default()))
}

/// The success response line for `id` (no newline).
pub fn response(id: &Value, result: &Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
}

/// The error response line for `id` (no newline).
pub fn error_response(id: &Value, error: &RpcError) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": error.code, "message": error.message},
    })
    .to_string()
}

#[cfg(test)]
mod tests;
