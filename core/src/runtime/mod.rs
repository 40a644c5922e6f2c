//! The runtime: what turns a request into a recorded job. It owns the WAL, the executor, the
//! capability registry and the sampling thread, and keeps the job and session index that the
//! CLI, the server and the C API read.
//!
//! Life of a job: validate -> guard decision on the latest sample (a refusal is a `rejected`
//! job, recorded with its reason) -> `JobStarted` (redacted arguments, limits, telemetry
//! before) made durable -> the executor runs it -> `JobFinished` (usage, bounded redacted
//! output, telemetry after) made durable -> the result goes back to the caller.
//!
//! Any number of runtimes, in any processes, may share one data directory. On open the index
//! is rebuilt from the WAL and kept current with what the others append; every job with a
//! start and no end whose owner process is gone ([`owner`]) gets a `JobInterrupted` record,
//! and cgroup leaves of dead instances are swept.
//!
//! This module knows nothing of the CLI, sockets or C.
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::exec::capability::{CapabilityRegistry, JobContext};
use crate::exec::job::{CancelToken, Executor, ExecutorConfig, JobResult};
use crate::exec::{ExecError, Limits};
use crate::guard::{self, Decision, Thresholds};
use crate::sample::{decode_blob, encode_blob};
use crate::sampler::{Sampler, SamplerError, SamplerThread, Telemetry};
use crate::wal::log::{Wal, WalError, WalOptions};
use crate::wal::reader::Reader;
use crate::wal::record::{
    kind as record_kind, JobFinished, JobLimits, JobRejected, JobStarted, JobStatus, JobUsage,
    SessionClosed, SessionCreated,
};
use crate::wal::{Decoded, Lsn, Record};

mod index;
mod metrics;
pub mod owner;
mod recovery;
mod redaction;
mod slots;
use index::INDEX_BATCH_RECORDS;
pub use index::{IndexLoader, JobIndex, JobSummary, SessionSummary};
use metrics::JobMetrics;
pub use metrics::{JobDurations, JobMetricsSnapshot, JOB_DURATION_BOUNDS_MS};
use recovery::{data_dir_token, exec_job_id};
pub use recovery::{RecoveryInfo, INTERRUPTED_REASON};
pub use redaction::redact_args;
use redaction::{bounded_args_json, redact_output, scrub};
pub use slots::CancelOutcome;
use slots::{JobSlots, RunningJob};

/// Output kept per stream in the `JobFinished` record (the caller gets the executor's full
/// capture; the log keeps a bounded head).
pub const RECORD_OUTPUT_BYTES_MAX: usize = 64 * 1024;
/// Jobs running at once unless configured.
pub const CONCURRENT_JOBS_DEFAULT: usize = 8;
/// Rounds of 5 ms the runtime waits on open for the sampler's first sample.
const FIRST_SAMPLE_WAIT_ROUNDS: u32 = 200;
/// Longest session id accepted.
const SESSION_ID_BYTES_MAX: usize = 128;

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub data_dir: PathBuf,
    pub proc_root: PathBuf,
    pub sample_interval: Duration,
    pub thresholds: Thresholds,
    pub concurrent_jobs_max: usize,
    pub executor: ExecutorConfig,
    pub wal: WalOptions,
    /// Refuse jobs when the host cannot put them in a cgroup (no delegation).
    pub require_isolation: bool,
}

impl RuntimeOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            proc_root: PathBuf::from("/proc"),
            sample_interval: Duration::from_secs(1),
            thresholds: Thresholds::default(),
            concurrent_jobs_max: CONCURRENT_JOBS_DEFAULT,
            executor: ExecutorConfig::default(),
            wal: WalOptions::default(),
            require_isolation: false,
        }
    }

    /// Where the WAL lives under the data directory.
    pub fn wal_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("wal")
    }
}

/// What can stop the runtime from opening or a request from being served.
#[derive(Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    Wal(WalError),
    Exec(ExecError),
    Telemetry(SamplerError),
    Io {
        context: String,
        source: std::io::Error,
    },
    JobNotFound(u64),
    SessionNotFound(String),
    InvalidRequest(String),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Wal(e) => write!(f, "write-ahead log: {e}"),
            RuntimeError::Exec(e) => write!(f, "executor: {e}"),
            RuntimeError::Telemetry(e) => write!(f, "telemetry: {e}"),
            RuntimeError::Io { context, source } => write!(f, "{context}: {source}"),
            RuntimeError::JobNotFound(id) => write!(f, "no job {id} in the log"),
            RuntimeError::SessionNotFound(id) => write!(f, "no session {id:?}"),
            RuntimeError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
        }
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RuntimeError::Wal(e) => Some(e),
            RuntimeError::Exec(e) => Some(e),
            RuntimeError::Telemetry(e) => Some(e),
            RuntimeError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<WalError> for RuntimeError {
    fn from(e: WalError) -> Self {
        RuntimeError::Wal(e)
    }
}

/// A request to run one capability.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub capability: String,
    pub args: Value,
    pub limits: Limits,
    /// Root directory (file capabilities are confined beneath it; processes start in it).
    pub root: PathBuf,
    pub session: Option<String>,
    /// Validate and report, run nothing, record nothing.
    pub dry_run: bool,
    /// Refuse the job (`rejected`, before anything runs) when a requested limit is not held
    /// (see `Enforcement::refusal`); the executor's `require_enforcement` also turns it on.
    pub require_enforcement: bool,
}

/// What a job came to, as returned to the caller.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub job_id: u64,
    pub capability: String,
    pub session: Option<String>,
    pub result: JobResult,
    /// LSN of the record that ended the job (`JobFinished` or `JobRejected`); `None` for a
    /// dry run.
    pub lsn: Option<Lsn>,
    /// The dry-run report, for dry runs.
    pub dry_run: Option<Value>,
}

impl JobOutcome {
    /// The object of `vigil run --json` and the socket's `run` result.
    pub fn to_json(&self) -> Value {
        let mut v = self.result.to_json(&self.capability, self.lsn);
        v["job_id"] = json!(self.job_id);
        v["session"] = json!(self.session);
        if let Some(report) = &self.dry_run {
            v["dry_run"] = report.clone();
        }
        v
    }

    /// The process exit code the CLI uses: 0 only for `completed` with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.result.status == JobStatus::Completed && self.result.exit_code == Some(0)
    }
}

/// An open runtime. Shareable between threads (`&Runtime` serves every request).
pub struct Runtime {
    options: RuntimeOptions,
    wal: Wal,
    executor: Executor,
    registry: CapabilityRegistry,
    sampler: SamplerThread,
    index: Arc<Mutex<JobIndex>>,
    /// Names this data directory in job markers, so a later instance can find the processes
    /// of this one's jobs.
    dir_token: String,
    /// This runtime as the owner of the jobs it runs (other processes share the log).
    owner: owner::OwnerLock,
    slots: JobSlots,
    recovery: RecoveryInfo,
    /// Jobs admitted and not yet ended, with the token that cancels each and, once cancelled,
    /// why (written as the job's error).
    running: Mutex<BTreeMap<u64, RunningJob>>,
    metrics: JobMetrics,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("data_dir", &self.options.data_dir)
            .finish_non_exhaustive()
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn wal_limits(l: &Limits) -> JobLimits {
    let ms = |d: Option<Duration>| d.map(|d| d.as_millis().min(u128::from(u64::MAX)) as u64);
    JobLimits {
        timeout_ms: ms(l.timeout),
        cpu_time_ms: ms(l.cpu_time),
        memory_bytes: l.memory_bytes,
        pids: l.pids,
        max_output_bytes: Some(l.max_output_bytes),
    }
}

impl Runtime {
    /// Opens the log (recovering it), rebuilds the index, records interrupted jobs, sweeps
    /// stale cgroups and starts sampling.
    pub fn open(options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        crate::wal::storage::create_dir_private_if_new(&options.data_dir).map_err(|source| {
            RuntimeError::Io {
                context: format!("data directory {}", options.data_dir.display()),
                source,
            }
        })?;
        let owner =
            owner::OwnerLock::acquire(&options.data_dir).map_err(|source| RuntimeError::Io {
                context: format!("owner lock in {}", options.data_dir.display()),
                source,
            })?;
        // The recovery scan builds the index as it goes: the log is read once.
        let (wal, index) =
            recovery::open_wal(&RuntimeOptions::wal_dir(&options.data_dir), options.wal)?;
        // Every new segment opens with what the index needs from before it, so retention can
        // retire old segments without losing running jobs, sessions or the next job id.
        let index = Arc::new(Mutex::new(index));
        let carried = Arc::clone(&index);
        wal.set_prologue(Box::new(move |budget| {
            carried
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .checkpoint(budget)
        }));
        // What other processes append from now on reaches the index before this one appends.
        let followed = Arc::clone(&index);
        wal.set_follower(Box::new(move |frame| {
            // A frame that does not decode was written by another version; the index skips
            // it here, and a fresh load reports it.
            let _ = followed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .apply_frame(&frame);
        }));
        let mut recovery = RecoveryInfo {
            wal_truncated_bytes: wal.recovery().truncated_bytes,
            ..RecoveryInfo::default()
        };
        recovery.interrupted = recovery::record_interrupted(&wal, &index, &owner)?;
        owner.remove_dead();

        let executor = Executor::new(options.executor.clone()).map_err(RuntimeError::Exec)?;
        let dir_token = data_dir_token(&options.data_dir);
        recovery::sweep(&executor, &dir_token, &mut recovery);

        let sampler = Sampler::open(&options.proc_root).map_err(RuntimeError::Telemetry)?;
        let sampler =
            SamplerThread::spawn(sampler, options.sample_interval, None).map_err(|source| {
                RuntimeError::Io {
                    context: "starting the sampling thread".into(),
                    source,
                }
            })?;
        // Jobs record the telemetry they were admitted on: wait (briefly) for the first sample.
        for _ in 0..FIRST_SAMPLE_WAIT_ROUNDS {
            if sampler.telemetry().with_latest(|s| s.is_some()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let concurrent = options.concurrent_jobs_max.max(1);
        Ok(Runtime {
            options,
            wal,
            executor,
            registry: CapabilityRegistry::builtin(),
            sampler,
            index,
            dir_token,
            owner,
            slots: JobSlots::new(concurrent),
            recovery,
            running: Mutex::new(BTreeMap::new()),
            metrics: JobMetrics::default(),
        })
    }

    fn index(&self) -> MutexGuard<'_, JobIndex> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    pub fn registry(&self) -> &CapabilityRegistry {
        &self.registry
    }

    pub fn telemetry(&self) -> &Arc<Telemetry> {
        self.sampler.telemetry()
    }

    pub fn recovery(&self) -> &RecoveryInfo {
        &self.recovery
    }

    /// Appends `record`, waits until it is durable, and applies it to the index.
    fn record_durable(&self, record: &Record<'_>) -> Result<Lsn, RuntimeError> {
        let lsn = self
            .wal
            .append_then(record, |lsn| self.index().apply(lsn, record))?;
        self.wal.sync(lsn)?;
        Ok(lsn)
    }

    /// Runs one job to its end and records it. Errors are only those of the log (a job that
    /// fails, is refused or times out is an `Ok` outcome with that status): when the log cannot
    /// record a job, the job does not run.
    pub fn run(&self, req: &JobRequest) -> Result<JobOutcome, RuntimeError> {
        // Unique across every process sharing the log: drawn under the append lock once the
        // index holds what the others appended.
        let job_id = self.wal.claim_number(|| self.index().next_job_id.max(1))?;
        let exec_id = exec_job_id(&self.dir_token, job_id);
        let cancel = CancelToken::new().map_err(RuntimeError::Exec)?;
        let ctx = JobContext {
            executor: &self.executor,
            job_id: &exec_id,
            limits: &req.limits,
            root: &req.root,
            cancel: Some(&cancel),
        };
        let outcome = |result: JobResult, lsn: Option<Lsn>, dry_run: Option<Value>| JobOutcome {
            job_id,
            capability: req.capability.clone(),
            session: req.session.clone(),
            result,
            lsn,
            dry_run,
        };
        let mut secrets = Vec::new();
        let args_logged = redact_args(&req.args, &mut secrets).to_string();
        // A secret may also appear inside other arguments (a command line that uses it).
        let args_logged =
            String::from_utf8_lossy(&scrub(args_logged.as_bytes(), &secrets)).into_owned();
        let args_logged = bounded_args_json(args_logged);

        if req.dry_run {
            let report = match self.registry.get(&req.capability) {
                Some(cap) => serde_json::to_value(cap.dry_run(&ctx, &req.args)).ok(),
                None => None,
            };
            let error = match &report {
                Some(r) if r["valid"] == json!(true) => None,
                Some(r) => r["error"].as_str().map(str::to_string),
                None => Some(format!("unknown capability {:?}", req.capability)),
            };
            let enforcement = self.executor.enforcement(&req.limits);
            let mut result = JobResult::without_process(
                &exec_id,
                if error.is_some() {
                    JobStatus::Rejected
                } else {
                    JobStatus::Completed
                },
                None,
                enforcement,
            );
            result.error = error;
            result.exit_code = result.error.is_none().then_some(0);
            return Ok(outcome(result, None, report));
        }

        // Refusals before anything runs: unknown capability, bad session, bad arguments,
        // isolation policy, guard.
        let refusal = self.refusal(req, &ctx);
        let telemetry_before = self.telemetry().latest();
        let reject = |reason: String| -> Result<JobOutcome, RuntimeError> {
            let record = Record::JobRejected(JobRejected {
                job_id,
                unix_ms: unix_ms(),
                capability: &req.capability,
                args_json: &args_logged,
                session: req.session.as_deref(),
                reason: &reason,
                telemetry: &encode_blob(telemetry_before.as_ref()),
            });
            let lsn = self.record_durable(&record)?;
            self.metrics
                .job_ended(self.metric_name(&req.capability), JobStatus::Rejected, None);
            let result = JobResult::without_process(
                &exec_id,
                JobStatus::Rejected,
                Some(reason),
                self.executor.enforcement(&req.limits),
            );
            Ok(outcome(result, Some(lsn), None))
        };
        if let Some(reason) = refusal {
            return reject(reason);
        }

        let _running = self.register_running(job_id, &cancel);
        let slot = self.slots.acquire(|| cancel.is_cancelled());
        if let Some(reason) = self.cancelled_because(job_id) {
            return reject(format!("{reason} before it started"));
        }
        let Some(_slot) = slot else {
            return reject("cancelled before it started".into());
        };
        let root = req.root.to_string_lossy();
        let started = Record::JobStarted(JobStarted {
            job_id,
            unix_ms: unix_ms(),
            capability: &req.capability,
            args_json: &args_logged,
            limits: wal_limits(&req.limits),
            session: req.session.as_deref(),
            root: Some(&root),
            telemetry_before: &encode_blob(telemetry_before.as_ref()),
        });
        // The start and who runs it go in together: no process sees one without the other.
        let owner = json!({"job_id": job_id, "owner": self.owner.name()}).to_string();
        let lsn = self.wal.append_batch(|tx| {
            tx.append_then(&started, |lsn| self.index().apply(lsn, &started))?;
            let lsn = tx.append_raw(record_kind::JOB_OWNER, owner.as_bytes())?;
            self.index()
                .set_owner(job_id, self.owner.name().to_string());
            Ok(lsn)
        })?;
        self.wal.sync(lsn)?;

        let mut result = self.registry.run(&req.capability, &ctx, &req.args);
        if result.status == JobStatus::Interrupted {
            if let Some(reason) = self.cancelled_because(job_id) {
                result.error = Some(format!("{reason}; every process of the job was killed"));
            }
        }

        let (stdout, stdout_cut) = redact_output(&result.stdout.bytes, &secrets);
        let (stderr, stderr_cut) = redact_output(&result.stderr.bytes, &secrets);
        let error = result.error.as_deref().map(|e| {
            let (e, _) = redact_output(e.as_bytes(), &secrets);
            String::from_utf8_lossy(&e).into_owned()
        });
        let telemetry_after = self.telemetry().latest();
        // Who held each limit, in the log beside the end (made durable by the same sync).
        let enforcement = json!({
            "job_id": job_id,
            "enforcement": serde_json::to_value(&result.enforcement).unwrap_or(Value::Null),
            "limits_not_held": result.enforcement.not_held_messages(),
        });
        self.wal.append_raw(
            record_kind::JOB_ENFORCEMENT,
            enforcement.to_string().as_bytes(),
        )?;
        let lsn = self.record_durable(&Record::JobFinished(JobFinished {
            job_id,
            unix_ms: unix_ms(),
            status: result.status,
            exit_code: result.exit_code,
            signal: result.signal,
            usage: JobUsage {
                cpu_usage_us: result.cpu_usage_us.unwrap_or(0),
                memory_peak_bytes: result.memory_peak_bytes.unwrap_or(0),
                wall_ms: result.wall_ms,
                oom_kills: u64::from(result.status == JobStatus::OomKilled),
            },
            stdout: &stdout,
            stdout_truncated: result.stdout.truncated || stdout_cut,
            stderr: &stderr,
            stderr_truncated: result.stderr.truncated || stderr_cut,
            error: error.as_deref(),
            telemetry_after: &encode_blob(telemetry_after.as_ref()),
        }))?;
        self.metrics.job_ended(
            self.metric_name(&req.capability),
            result.status,
            Some(result.wall_ms),
        );
        Ok(outcome(result, Some(lsn), None))
    }

    /// The capability name counters use: a registered name, else `unknown` (so clients cannot
    /// grow the counters without bound).
    fn metric_name<'a>(&self, capability: &'a str) -> &'a str {
        if self.registry.get(capability).is_some() {
            capability
        } else {
            "unknown"
        }
    }

    /// Counters of ended jobs and refusals since this runtime opened.
    pub fn job_metrics(&self) -> JobMetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Why `req` must not run, if it must not.
    fn refusal(&self, req: &JobRequest, ctx: &JobContext<'_>) -> Option<String> {
        let Some(cap) = self.registry.get(&req.capability) else {
            return Some(format!(
                "unknown capability {:?} (known: {})",
                req.capability,
                self.registry.names().join(", ")
            ));
        };
        if let Some(s) = &req.session {
            let index = self.index();
            match index.sessions.get(s) {
                None => return Some(format!("unknown session {s:?}")),
                Some(sess) if sess.closed_unix_ms.is_some() => {
                    return Some(format!("session {s:?} is closed"))
                }
                Some(_) => {}
            }
        }
        if let Err(e) = cap.plan(ctx, &req.args) {
            return Some(e.to_string());
        }
        if req.require_enforcement || self.options.executor.require_enforcement {
            if let Some(why) = self.executor.enforcement(&req.limits).refusal() {
                return Some(why);
            }
        }
        if self.options.require_isolation && !self.executor.host().has_cgroups() {
            return Some(
                "policy requires cgroup isolation, which this host does not provide".into(),
            );
        }
        match self
            .telemetry()
            .with_latest(|s| guard::decide(s, &self.options.thresholds))
        {
            Decision::Admit => None,
            Decision::Refuse(r) => {
                self.metrics.guard_refused();
                Some(r.to_string())
            }
        }
    }

    /// Brings the index up to date with what other processes appended. A failure shows
    /// at the next append too (which cannot go on without catching up); listings show what
    /// the index held.
    fn refresh(&self) {
        let _ = self.wal.refresh();
    }

    /// Jobs matching the filters, oldest first.
    pub fn jobs(&self, session: Option<&str>, status: Option<&str>) -> Vec<JobSummary> {
        self.refresh();
        self.index().list(session, status)
    }

    /// A job's summary.
    pub fn job(&self, job_id: u64) -> Option<JobSummary> {
        self.refresh();
        self.index().jobs.get(&job_id).cloned()
    }

    /// A job's full record, as JSON: arguments as logged, limits, result, telemetry.
    pub fn job_detail(&self, job_id: u64) -> Result<Value, RuntimeError> {
        let summary = self.job(job_id).ok_or(RuntimeError::JobNotFound(job_id))?;
        // Another process's records are read once durable: make them so.
        let last = summary.end_lsn.unwrap_or(summary.lsn);
        if last > self.wal.durable_lsn() {
            self.wal.sync(last)?;
        }
        // A running job carried forward by an index checkpoint may have its start retired.
        let from = summary.lsn.max(self.wal.first_lsn());
        job_detail_from(&mut self.wal.reader(from), &summary)
    }

    /// Makes the log durable, closes it with a checkpoint and lets go of everything. A log
    /// poisoned by a failed sync is an error here: what was appended since may be lost.
    pub fn close(self) -> Result<(), RuntimeError> {
        self.wal.checkpoint()?;
        Ok(())
    }

    /// Opens a session; `meta` is free-form JSON kept with it.
    pub fn create_session(&self, meta: &Value) -> Result<SessionSummary, RuntimeError> {
        // Unique within this process by the counter, across instances by time and position.
        // Unique within this process by the counter, across processes by the pid (and
        // across time by the clock and the log's position).
        static CREATED_IN_PROCESS: AtomicU64 = AtomicU64::new(0);
        let n = CREATED_IN_PROCESS.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "s{:x}-{:x}-{:x}-{n:x}",
            unix_ms(),
            self.wal.last_lsn() + 1,
            std::process::id()
        );
        debug_assert!(id.len() <= SESSION_ID_BYTES_MAX);
        let meta_json = meta.to_string();
        self.record_durable(&Record::SessionCreated(SessionCreated {
            session: &id,
            unix_ms: unix_ms(),
            meta_json: &meta_json,
        }))?;
        self.session(&id)
    }

    /// Closes a session: later jobs naming it are refused.
    pub fn close_session(&self, id: &str, reason: &str) -> Result<SessionSummary, RuntimeError> {
        self.session(id)?;
        self.record_durable(&Record::SessionClosed(SessionClosed {
            session: id,
            unix_ms: unix_ms(),
            reason,
        }))?;
        self.session(id)
    }

    pub fn sessions(&self) -> Vec<SessionSummary> {
        self.index().sessions.values().cloned().collect()
    }

    pub fn session(&self, id: &str) -> Result<SessionSummary, RuntimeError> {
        self.index()
            .sessions
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::SessionNotFound(id.to_string()))
    }
}

/// Reads a job's records starting at its first LSN and assembles its full record.
pub fn job_detail_from(reader: &mut Reader, summary: &JobSummary) -> Result<Value, RuntimeError> {
    let mut detail = json!({
        "job_id": summary.job_id,
        "capability": summary.capability,
        "status": summary.status,
        "session": summary.session,
        "lsn": summary.lsn,
        "end_lsn": summary.end_lsn,
    });
    let wanted = [Some(summary.lsn), summary.end_lsn];
    let last = summary.end_lsn.unwrap_or(summary.lsn);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let sample_json = |b: &[u8]| {
        decode_blob(b)
            .and_then(|s| serde_json::to_value(s).ok())
            .unwrap_or(Value::Null)
    };
    let mut undecodable = None;
    loop {
        let mut done = false;
        let n = reader.read_batch(INDEX_BATCH_RECORDS, &mut |frame| {
            if frame.lsn > last || undecodable.is_some() {
                done = true;
                return;
            }
            if frame.kind == record_kind::JOB_ENFORCEMENT {
                let held: Value = serde_json::from_slice(frame.payload).unwrap_or(Value::Null);
                if held["job_id"] == json!(summary.job_id) {
                    detail["enforcement"] = held["enforcement"].clone();
                    detail["limits_not_held"] = held["limits_not_held"].clone();
                }
                return;
            }
            if !wanted.contains(&Some(frame.lsn)) {
                return;
            }
            let record = match Record::decode(frame.kind, frame.payload) {
                Ok(Decoded::Record(record)) => record,
                Ok(Decoded::Ignored { .. }) => return,
                Err(error) => {
                    undecodable = Some(index::undecodable_record(&frame, error));
                    return;
                }
            };
            match record {
                Record::JobStarted(r) => {
                    detail["started_unix_ms"] = json!(r.unix_ms);
                    detail["args"] = serde_json::from_str(r.args_json).unwrap_or(Value::Null);
                    detail["limits"] = serde_json::to_value(r.limits).unwrap_or(Value::Null);
                    detail["root"] = json!(r.root);
                    detail["telemetry_before"] = sample_json(r.telemetry_before);
                }
                Record::JobFinished(r) => {
                    detail["finished_unix_ms"] = json!(r.unix_ms);
                    detail["result"] = json!({
                        "status": r.status.as_str(),
                        "exit_code": r.exit_code,
                        "signal": r.signal,
                        "wall_ms": r.usage.wall_ms,
                        "cpu_usage_us": r.usage.cpu_usage_us,
                        "memory_peak_bytes": r.usage.memory_peak_bytes,
                        "stdout": text(r.stdout),
                        "stdout_truncated": r.stdout_truncated,
                        "stderr": text(r.stderr),
                        "stderr_truncated": r.stderr_truncated,
                        "error": r.error,
                    });
                    detail["telemetry_after"] = sample_json(r.telemetry_after);
                }
                Record::JobInterrupted(r) => {
                    detail["finished_unix_ms"] = json!(r.unix_ms);
                    detail["result"] = json!({"status": "interrupted", "error": r.reason});
                }
                Record::JobRejected(r) => {
                    detail["finished_unix_ms"] = json!(r.unix_ms);
                    detail["args"] = serde_json::from_str(r.args_json).unwrap_or(Value::Null);
                    detail["result"] = json!({"status": "rejected", "error": r.reason});
                    detail["telemetry_before"] = sample_json(r.telemetry);
                }
                _ => {}
            }
        })?;
        if let Some(error) = undecodable.take() {
            return Err(RuntimeError::Wal(error));
        }
        if n == 0 || done {
            return Ok(detail);
        }
    }
}
