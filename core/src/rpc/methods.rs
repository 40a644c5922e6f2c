//! The methods: each takes a parsed [`Call`] and answers from the runtime.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fault::runtime_fault;
use super::{Answer, Failure, Service, EVENTS_BATCH_BYTES_MAX, TICK};
use crate::json::event_json;
use crate::protocol::{code, Call, Page, RpcError, RunParams};
use crate::runtime::{CancelOutcome, JobRequest, RuntimeError};
use crate::view::job::summaries_json;
use crate::view::sample::sample_json;
use crate::wal::log::WalError;

impl Service {
    pub(super) fn dispatch(&self, call: Call) -> Result<Answer, Failure> {
        let rt = &self.runtime;
        let value = match call {
            Call::TelemetrySample => return Ok(Answer::Text(self.latest_sample_text()?)),
            Call::EventsRead {
                cursor,
                max,
                wait_ms,
            } => return self.events_read(cursor, max, wait_ms).map(Answer::Text),
            Call::Health => self.health(),
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
            Call::Run(params) => self.run_job(*params)?,
            Call::JobsList {
                session,
                status,
                page,
            } => {
                let jobs = rt.jobs(session.as_deref(), status);
                match page {
                    None => summaries_json(&jobs),
                    Some(page) => paged("jobs", jobs, page, |j| j.job_id)?,
                }
            }
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
            Call::SessionsList { page } => match page {
                None => to_value(rt.sessions())?,
                Some(page) => paged("sessions", rt.sessions(), page, |s| s.session.clone())?,
            },
            Call::SessionsGet { id } => to_value(rt.session(&id).map_err(runtime_error)?)?,
        };
        Ok(Answer::Value(value))
    }

    /// The latest sample as JSON text, serialized once per sample.
    fn latest_sample_text(&self) -> Result<Arc<str>, RpcError> {
        let rt = &self.runtime;
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
        let mut cache = self.sample_text.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != seq || cache.1.is_empty() {
            let (seq, text) = rt
                .telemetry()
                .with_latest(|s| s.map(|s| (s.seq, sample_json(s).to_string())))
                .ok_or_else(no_sample)?;
            *cache = (seq, Arc::from(text));
        }
        Ok(cache.1.clone())
    }

    fn health(&self) -> Value {
        let rt = &self.runtime;
        let wal = rt.wal();
        let host = rt.executor().host();
        json!({
            "status": if wal.is_poisoned() { "degraded" } else { "ok" },
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_ms": self.started.elapsed().as_millis() as u64,
            "data_dir": rt.options().data_dir,
            "socket": self.config.socket_path,
            "connections": self.connections.load(Ordering::Relaxed),
            "jobs_running": rt.jobs_running(),
            "jobs_admitted": self.jobs_admitted.load(Ordering::Relaxed),
            "max_jobs": self.config.max_jobs,
            "queue": self.config.queue,
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

    fn run_job(&self, params: RunParams) -> Result<Value, Failure> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(RpcError::new(
                code::SHUTTING_DOWN,
                "the server is shutting down and takes no new jobs",
            )
            .into());
        }
        let bound = self.config.max_jobs + self.config.queue;
        let admitted = self.jobs_admitted.fetch_add(1, Ordering::AcqRel);
        let _admission = Admission(&self.jobs_admitted);
        if admitted >= bound && !params.dry_run {
            self.stats.busy.fetch_add(1, Ordering::Relaxed);
            return Err(RpcError::new(
                code::BUSY,
                format!(
                    "busy: {} jobs running and {} queued (--max-jobs, --queue); retry later",
                    self.config.max_jobs, self.config.queue
                ),
            )
            .into());
        }
        let root = match params.root {
            Some(root) => self.check_root(root)?,
            None => self.config.default_root.clone(),
        };
        let request = JobRequest {
            capability: params.capability,
            args: params.args,
            limits: params.limits,
            root,
            session: params.session,
            dry_run: params.dry_run,
            // The server's --require-enforcement is a floor a request cannot lower.
            require_enforcement: params.require_enforcement || self.config.require_enforcement,
        };
        let outcome = self.runtime.run(&request).map_err(runtime_error)?;
        Ok(outcome.to_json())
    }

    /// Under a sandbox floor (`vigil serve --sandbox`), a request's `root` must lie beneath the
    /// server's own root or one of its `--allow-write` paths: a job writes beneath its root, so
    /// `"root": "/"` (or any directory holding vigil's data dir) would otherwise undo the floor.
    /// The job runs in the resolved path, so a symlink swapped after the check changes nothing.
    fn check_root(&self, root: std::path::PathBuf) -> Result<std::path::PathBuf, Failure> {
        let sandbox = self.runtime.executor().sandbox_config();
        let floored = sandbox
            .floor
            .is_some_and(|f| f != crate::exec::sandbox::SandboxMode::Off);
        if !floored {
            return Ok(root);
        }
        let refuse = |why: String| -> Failure {
            RpcError::new(
                code::INVALID_PARAMS,
                format!("root {}: {why}", root.display()),
            )
            .into()
        };
        let resolved =
            std::fs::canonicalize(&root).map_err(|e| refuse(format!("cannot be resolved: {e}")))?;
        let allowed = std::iter::once(&self.config.default_root)
            .chain(sandbox.allow_write.iter())
            .filter_map(|p| std::fs::canonicalize(p).ok());
        for base in allowed {
            if resolved.starts_with(&base) {
                return Ok(resolved);
            }
        }
        Err(refuse(format!(
            "lies outside the server's root and its writable paths; under the server's sandbox \
             floor a request's root must lie beneath them (the server's root is {})",
            self.config.default_root.display()
        )))
    }

    /// `{events, next_cursor, durable_lsn}` as JSON text; each event is serialized once, both
    /// to count it against the byte budget and to answer. Damage is never the end of the log:
    /// the records before it are answered, and a request whose cursor is at the damage gets the
    /// `LOG_DAMAGED` error naming it.
    fn events_read(&self, cursor: u64, max: usize, wait_ms: u64) -> Result<Arc<str>, Failure> {
        let wal = self.runtime.wal();
        // What other processes (one-shot runs, C hosts) append is read as well: the reader
        // catches up whenever it reaches the end of what this process knows, so also after
        // each tick of the wait.
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
                    Err(WalError::LsnNotRetained { lsn, first_lsn }) => {
                        return Err(Failure::not_retained(lsn, first_lsn))
                    }
                    Err(e) => return Err(RpcError::new(code::RUNTIME_ERROR, e.to_string()).into()),
                }
                if !got {
                    break;
                }
            }
            let now = Instant::now();
            if count > 0 || now >= deadline || self.shutting_down.load(Ordering::Acquire) {
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
}

/// Releases a `run` admission however the job ends.
struct Admission<'a>(&'a AtomicUsize);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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

/// One page of `items` (sorted by `key`, ascending) as `{<name>: [...], next_cursor}`:
/// the entries after the cursor, at most `limit` of them; `next_cursor` is the key of the last
/// one when more follow, null at the end.
fn paged<T: serde::Serialize, K: Ord + serde::Serialize>(
    name: &str,
    items: Vec<T>,
    page: Page<K>,
    key: impl Fn(&T) -> K,
) -> Result<Value, RpcError> {
    let mut rest = items
        .into_iter()
        .filter(|item| page.after.as_ref().is_none_or(|after| key(item) > *after));
    let entries: Vec<T> = rest.by_ref().take(page.limit).collect();
    let more = rest.next().is_some();
    let next_cursor = match entries.last() {
        Some(last) if more => to_value(key(last))?,
        _ => Value::Null,
    };
    Ok(json!({ name: to_value(entries)?, "next_cursor": next_cursor }))
}

fn to_value(v: impl serde::Serialize) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::new(code::INTERNAL_ERROR, e.to_string()))
}
