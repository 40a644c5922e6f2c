//! The socket protocol's server side without the socket: a [`Service`] holds one runtime and
//! the counters a server keeps, and [`Service::handle_line`] answers one request line. The
//! `vigil` binary reads lines from its connections and writes back what this returns; tests
//! call it directly.
//!
//! Requests are parsed and validated by [`crate::protocol`]; the methods live in `methods`.
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::protocol::{
    code, error_response, parse_request, parse_request_value, response, Rejection, Request,
    RpcError, BATCH_REQUESTS_MAX, METHODS,
};
use crate::runtime::Runtime;
use crate::wal::log::LogFault;

pub mod fault;
mod methods;

use fault::{damaged_message, fault_data};

/// How often a method that waits (`events.read`) looks at the shutdown flag.
pub const TICK: Duration = Duration::from_millis(200);
/// An `events.read` answer stops adding records past this many bytes of JSON (the cursor
/// says where to go on), so one request cannot make the server build a huge answer.
pub const EVENTS_BATCH_BYTES_MAX: usize = 4 << 20;

/// A server's defaults, where its options do not say otherwise.
pub mod defaults {
    use core::time::Duration;

    /// Jobs running at once.
    pub const MAX_JOBS: usize = crate::runtime::CONCURRENT_JOBS_DEFAULT;
    /// Jobs waiting for a slot beyond those.
    pub const QUEUE: usize = 64;
    /// Connections open at once.
    pub const MAX_CONNECTIONS: usize = 128;
    /// A connection that sends nothing for this long is closed.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Time to send one request line, or to take one response.
    pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
    /// On shutdown, how long running jobs may go on before they are killed.
    pub const GRACE: Duration = Duration::from_secs(10);
    /// Time between telemetry samples.
    pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
    // The longest request line is the protocol's: `crate::protocol::REQUEST_BYTES_MAX`.
}

/// What the methods need to know of the server they answer for.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Root for `run` requests that name none.
    pub default_root: PathBuf,
    /// Where the server listens (reported by `health`).
    pub socket_path: PathBuf,
    /// Jobs running at once.
    pub max_jobs: usize,
    /// Jobs waiting for a slot beyond those; past this, `run` answers `busy`.
    pub queue: usize,
    /// A floor under every request's `require_enforcement`.
    pub require_enforcement: bool,
}

/// Counters about the server itself (the runtime keeps those about jobs).
#[derive(Default)]
pub struct ServerStats {
    /// Requests taken, by method (in the order of [`METHODS`]); a batch counts each member.
    pub requests: [AtomicU64; METHODS.len()],
    /// Requests answered with an error (refused, or failed).
    pub request_errors: AtomicU64,
    /// Jobs and connections turned away as busy.
    pub busy: AtomicU64,
    /// Connections accepted, ever.
    pub connections_total: AtomicU64,
    /// Connections refused for their peer's uid.
    pub peers_refused: AtomicU64,
}

/// One runtime served over JSON-RPC, and what its server counts.
pub struct Service {
    /// The runtime every method answers from.
    pub runtime: Runtime,
    /// What the methods need to know of the server.
    pub config: ServiceConfig,
    /// When the service was made (`health`'s uptime).
    pub started: Instant,
    /// Set once shutdown begins: `run` refuses new jobs, `events.read` stops waiting.
    pub shutting_down: AtomicBool,
    /// Connections open (the server counts them; `health` reports them).
    pub connections: AtomicUsize,
    /// `run` requests admitted and not yet answered (running or queued).
    pub jobs_admitted: AtomicUsize,
    /// Counters about requests and connections.
    pub stats: ServerStats,
    /// The latest sample's JSON text and its sequence number: a sample changes once per
    /// interval, and `telemetry.sample` is asked far more often than that.
    sample_text: Mutex<(u64, Arc<str>)>,
}

impl Service {
    /// Serves `runtime` with the server's `config`.
    pub fn new(runtime: Runtime, config: ServiceConfig) -> Service {
        Service {
            runtime,
            config,
            started: Instant::now(),
            shutting_down: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            jobs_admitted: AtomicUsize::new(0),
            stats: ServerStats::default(),
            sample_text: Mutex::new((0, Arc::from(""))),
        }
    }

    /// Answers one request line; `None` for a notification, a batch of only notifications, or
    /// a blank line. A batch (a JSON array of requests) is answered as JSON-RPC 2.0 says: an
    /// array of the answers to its members that are not notifications, each member taken on
    /// its own, in order.
    pub fn handle_line(&self, line: &[u8]) -> Option<String> {
        match line.iter().find(|b| !b.is_ascii_whitespace()) {
            None => None,
            Some(b'[') => match serde_json::from_slice::<Value>(line) {
                Ok(Value::Array(members)) => self.handle_batch(members),
                // Not JSON: the same parse error as any request.
                _ => self.answer(parse_request(line)),
            },
            Some(_) => self.answer(parse_request(line)),
        }
    }

    fn handle_batch(&self, members: Vec<Value>) -> Option<String> {
        let refuse = |message: String| {
            self.stats.request_errors.fetch_add(1, Ordering::Relaxed);
            let error = RpcError::new(code::INVALID_REQUEST, message);
            Some(error_response(&Value::Null, &error))
        };
        if members.is_empty() {
            return refuse("an empty batch is not a request".into());
        }
        if members.len() > BATCH_REQUESTS_MAX {
            return refuse(format!(
                "a batch holds at most {BATCH_REQUESTS_MAX} requests, not {}",
                members.len()
            ));
        }
        let answers: Vec<String> = members
            .into_iter()
            .filter_map(|member| self.answer(parse_request_value(member)))
            .collect();
        if answers.is_empty() {
            return None;
        }
        Some(format!("[{}]", answers.join(",")))
    }

    /// Runs one parsed request and answers it (`None` for a notification).
    fn answer(&self, parsed: Result<Request, Rejection>) -> Option<String> {
        let request = match parsed {
            Ok(r) => r,
            Err(rejection) => {
                self.stats.request_errors.fetch_add(1, Ordering::Relaxed);
                // A notification is never answered, not even with an error.
                if rejection.notification {
                    return None;
                }
                return Some(error_response(&rejection.id, &rejection.error));
            }
        };
        if let Some(i) = METHODS.iter().position(|m| *m == request.call.method()) {
            self.stats.requests[i].fetch_add(1, Ordering::Relaxed);
        }
        let outcome = self.dispatch(request.call);
        let id = request.id?;
        Some(match outcome {
            Ok(Answer::Value(result)) => response(&id, &result),
            // The text is serialized JSON: splice it in as the result.
            Ok(Answer::Text(text)) => {
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{text}}}")
            }
            Err(failure) => {
                self.stats.request_errors.fetch_add(1, Ordering::Relaxed);
                failure.response(&id)
            }
        })
    }

    /// Counts a request refused before it could be read (too large), and answers it.
    pub fn refuse_line(&self, error: &RpcError) -> String {
        self.stats.request_errors.fetch_add(1, Ordering::Relaxed);
        error_response(&Value::Null, error)
    }
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
            error: RpcError::new(crate::protocol::code::LOG_DAMAGED, damaged_message(fault)),
            data: Some(fault_data(fault)),
        }
    }

    /// Records that were retired: their own code, and where the log now starts as data.
    fn not_retained(lsn: u64, first_lsn: u64) -> Failure {
        let error = crate::wal::log::WalError::LsnNotRetained { lsn, first_lsn };
        Failure {
            error: RpcError::new(crate::protocol::code::NOT_RETAINED, error.to_string()),
            data: Some(json!({"lsn": lsn, "first_lsn": first_lsn})),
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

#[cfg(test)]
mod tests;
