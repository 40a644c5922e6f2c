//! The runtime: what turns a request into a recorded job. It owns the WAL, the executor, the
//! capability registry and the sampling thread, and keeps the job and session index that the
//! CLI, the server and the C API read.
//!
//! Life of a job: validate -> guard decision on the latest sample (a refusal is a `rejected`
//! job, recorded with its reason) -> `JobStarted` (redacted arguments, limits, telemetry
//! before: a fresh sample, CPU since boot) made durable -> the executor runs it -> `JobFinished`
//! (usage, bounded redacted output, telemetry after: a fresh sample whose CPU deltas span the
//! job) made durable -> the result goes back to the caller.
//!
//! Any number of runtimes, in any processes, may share one data directory. On open the index
//! is rebuilt from the WAL and kept current with what the others append; every job with a
//! start and no end whose owner process is gone ([`owner`]) gets a `JobInterrupted` record,
//! and cgroup leaves of dead instances are swept.
//!
//! Parts: `run` ([`Runtime::run`], step by step), `recovery` (what opening repairs),
//! `redaction` (secrets kept out of the log), `slots` (admission and cancellation), `index`
//! (jobs and sessions rebuilt from the log), `metrics` (counters). What a job looks like as
//! JSON is the views' ([`crate::view`]).
//!
//! This module knows nothing of the CLI, sockets or C.
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::exec::capability::CapabilityRegistry;
use crate::exec::job::{Executor, ExecutorConfig, JobResult};
use crate::exec::{ExecError, Limits};
use crate::guard::Thresholds;
use crate::model::JobState;
use crate::sample::decode_blob;
use crate::sampler::{Sampler, SamplerError, SamplerThread, Telemetry};
use crate::view::job::{detail_json, result_json, JobDetail, RunView};
use crate::wal::log::{Wal, WalError, WalOptions};
use crate::wal::reader::Reader;
use crate::wal::record::{kind as record_kind, SessionClosed, SessionCreated};
use crate::wal::{Decoded, Lsn, Record};

mod index;
mod metrics;
pub mod owner;
mod recovery;
mod redaction;
mod run;
mod slots;
use index::INDEX_BATCH_RECORDS;
pub use index::{IndexLoader, JobIndex, JobSummary, SessionSummary};
use metrics::JobMetrics;
pub use metrics::{JobDurations, JobMetricsSnapshot, JOB_DURATION_BOUNDS_MS};
use recovery::data_dir_token;
pub use recovery::{RecoveryInfo, INTERRUPTED_REASON};
pub use redaction::{is_secret_key, redact_args, Redactor, REDACTED};
pub use slots::CancelOutcome;
use slots::{JobSlots, RunningJob};

/// Output kept per stream in the `JobFinished` record (the caller gets the executor's full
/// capture; the log keeps a bounded head).
pub const RECORD_OUTPUT_BYTES_MAX: usize = 64 * 1024;
/// Jobs running at once unless configured.
pub const CONCURRENT_JOBS_DEFAULT: usize = 8;
/// Longest session id accepted.
const SESSION_ID_BYTES_MAX: usize = 128;

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// The data directory: the log lives in its `wal/` subdirectory ([`RuntimeOptions::wal_dir`]);
    /// created (mode 0700) when missing. One runtime per process owns it at a time.
    pub data_dir: PathBuf,
    /// Where procfs is mounted (`/proc`); telemetry is read beneath it.
    pub proc_root: PathBuf,
    /// How often the sampling thread takes a host sample (1 s by default).
    pub sample_interval: Duration,
    /// Sample the host on a thread of its own every `sample_interval` (the default). Off: no
    /// thread and no sample at open, only each job's own samples at its start (published as
    /// the latest, and what the admission guard judges) and end: for a process that runs one
    /// job and exits (a one-shot `vigil run`), which reads no history.
    pub background_sampling: bool,
    /// Host conditions under which new jobs are refused (admission control).
    pub thresholds: Thresholds,
    /// Most jobs running at once ([`CONCURRENT_JOBS_DEFAULT`] by default; 0 counts as 1). A job
    /// that finds every slot taken is refused as busy.
    pub concurrent_jobs_max: usize,
    /// How the executor runs jobs: cgroups, default limits, capabilities.
    pub executor: ExecutorConfig,
    /// How the write-ahead log is written: segment size, sync method, retention.
    pub wal: WalOptions,
    /// Refuse jobs when the host cannot put them in a cgroup (no delegation).
    pub require_isolation: bool,
}

impl RuntimeOptions {
    /// Options with defaults for everything but the data directory: `/proc`, a 1 s sample
    /// interval, default thresholds, [`CONCURRENT_JOBS_DEFAULT`] slots, default executor and log
    /// options, isolation not required.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            proc_root: PathBuf::from("/proc"),
            sample_interval: Duration::from_secs(1),
            background_sampling: true,
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
    /// The write-ahead log failed (opening, recovering, appending or reading).
    Wal(WalError),
    /// The executor refused or failed the job.
    Exec(ExecError),
    /// The telemetry sampler could not be opened (procfs unreadable or unparsable).
    Telemetry(SamplerError),
    /// An operating-system call failed outside the log and the executor (the data directory, its
    /// owner lock, the sampling thread).
    Io {
        /// What was being done, e.g. `data directory /var/lib/vigil`.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No job with this id is in the log.
    JobNotFound(u64),
    /// No session with this id is in the log.
    SessionNotFound(String),
    /// The request is malformed; the message says how.
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
    /// The capability to run, by name (it must be in the registry).
    pub capability: String,
    /// The capability's arguments, a JSON object checked by the capability.
    pub args: Value,
    /// The limits to run under (timeout, CPU time, memory, pids, output bytes).
    pub limits: Limits,
    /// Root directory (file capabilities are confined beneath it; processes start in it).
    pub root: PathBuf,
    /// The id of the session the job belongs to, if any; recorded with the job.
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
    /// The job's id, unique across every process sharing the log (a dry run draws one too, but
    /// records nothing).
    pub job_id: u64,
    /// The capability that ran, by name.
    pub capability: String,
    /// The session the job belongs to, if any.
    pub session: Option<String>,
    /// How the job ended: status, exit code, output, usage and limits hit.
    pub result: JobResult,
    /// LSN of the record that ended the job (`JobFinished` or `JobRejected`); `None` for a
    /// dry run.
    pub lsn: Option<Lsn>,
    /// The dry-run report, for dry runs.
    pub dry_run: Option<Value>,
}

impl JobOutcome {
    /// The run view: the object of `vigil run --json` and the socket's `run` result.
    pub fn view(&self) -> RunView {
        let mut view = RunView::new(
            &self.result,
            &self.capability,
            Some(self.job_id),
            self.session.as_deref(),
            self.lsn,
        );
        view.dry_run = self.dry_run.clone();
        view
    }

    /// The JSON of [`JobOutcome::view`].
    pub fn to_json(&self) -> Value {
        self.view().to_json()
    }

    /// The process exit code the CLI uses: 0 only for `completed` with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.result.status.process_exit_code(self.result.exit_code) == 0
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

/// Opens the sampler and, unless [`RuntimeOptions::background_sampling`] is off, takes the first
/// sample (jobs record the telemetry they were admitted on) and starts the sampling thread.
fn start_sampler(options: &RuntimeOptions) -> Result<SamplerThread, RuntimeError> {
    let sampler = Sampler::open(&options.proc_root).map_err(RuntimeError::Telemetry)?;
    if !options.background_sampling {
        return Ok(SamplerThread::without_thread(sampler));
    }
    let sampler =
        SamplerThread::spawn(sampler, options.sample_interval, None).map_err(|source| {
            RuntimeError::Io {
                context: "starting the sampling thread".into(),
                source,
            }
        })?;
    Ok(sampler)
}

impl Runtime {
    /// Opens the log (recovering it), rebuilds the index, records interrupted jobs, sweeps
    /// stale cgroups and starts sampling.
    pub fn open(options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        crate::wal::storage::secure_data_dir(&options.data_dir).map_err(|source| {
            RuntimeError::Io {
                context: format!("data directory {}", options.data_dir.display()),
                source,
            }
        })?;
        crate::phase::mark("secure_data_dir");
        let owner =
            owner::OwnerLock::acquire(&options.data_dir).map_err(|source| RuntimeError::Io {
                context: format!("owner lock in {}", options.data_dir.display()),
                source,
            })?;
        crate::phase::mark("owner_lock");
        // The recovery scan builds the index as it goes: the log is read once.
        let (wal, index, wal_truncated_bytes) =
            recovery::open_wal(&RuntimeOptions::wal_dir(&options.data_dir), options.wal)?;
        // Every new segment opens with what the index needs from before it, so retention can
        // retire old segments without losing running jobs, sessions or the next job id.
        crate::phase::mark("open_wal");
        let index = Arc::new(Mutex::new(index));
        wal.set_prologue(index_checkpoint(&index, JobIndex::checkpoint));
        // A clean close ends the log with the whole index, where a one-shot open can start.
        wal.set_closing_checkpoint(index_checkpoint(&index, JobIndex::checkpoint_complete));
        // What other processes append from now on reaches the index before this one appends.
        let followed = Arc::clone(&index);
        wal.set_follower(Box::new(move |followed_frame| {
            followed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .follow(followed_frame);
        }));
        let mut recovery = RecoveryInfo {
            wal_truncated_bytes,
            ..RecoveryInfo::default()
        };
        recovery.interrupted = recovery::record_interrupted(&wal, &index, &owner)?;
        crate::phase::mark("record_interrupted");
        owner.remove_dead();

        crate::phase::mark("remove_dead");
        let mut exec_config = options.executor.clone();
        // A sandboxed job never reads or writes the log it is recorded in; its private TMPDIR
        // lives in the data dir's tmp/.
        if exec_config.sandbox.data_dir.is_none() {
            exec_config.sandbox.data_dir = Some(
                std::fs::canonicalize(&options.data_dir)
                    .unwrap_or_else(|_| options.data_dir.clone()),
            );
        }
        let executor = Executor::new(exec_config).map_err(RuntimeError::Exec)?;
        crate::phase::mark("executor_new");
        let dir_token = data_dir_token(&options.data_dir);
        recovery::sweep(&executor, &dir_token, &mut recovery);

        crate::phase::mark("sweep");
        let sampler = start_sampler(&options)?;
        crate::phase::mark("sampler");
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

    /// The options the runtime was opened with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.options
    }

    /// The write-ahead log the runtime records jobs, sessions and samples in.
    pub fn wal(&self) -> &Wal {
        &self.wal
    }

    /// The executor that runs jobs.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The capabilities jobs may run.
    pub fn registry(&self) -> &CapabilityRegistry {
        &self.registry
    }

    /// The latest host telemetry and its recent history, shared with the sampling thread.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        self.sampler.telemetry()
    }

    /// What recovering the log found when the runtime opened (interrupted jobs included).
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

    /// Counters of ended jobs and refusals since this runtime opened.
    pub fn job_metrics(&self) -> JobMetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Brings the index up to date with what other processes appended. A failure shows
    /// at the next append too (which cannot go on without catching up); listings show what
    /// the index held.
    fn refresh(&self) {
        let _ = self.wal.refresh();
    }

    /// Jobs matching the filters, oldest first.
    pub fn jobs(&self, session: Option<&str>, status: Option<JobState>) -> Vec<JobSummary> {
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

    /// [`Runtime::close`] for a process that exits right after (a one-shot CLI run): the log is
    /// let go of and the kept TMPDIRs removed as dropping the runtime would, and then what the
    /// kernel takes back at exit anyway (descriptors, mappings, memory) is left to it rather
    /// than released one by one. Nothing else of a runtime acts outside its process once its
    /// jobs are over (their cgroup leaves and sandboxes went with them; a sampling thread ends
    /// with the process).
    pub fn close_for_exit(self) -> Result<(), RuntimeError> {
        let closed = self.wal.finish();
        self.executor.remove_idle_tmpdirs();
        std::mem::forget(self);
        Ok(closed?)
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

    /// Every session in the log, ordered by id.
    pub fn sessions(&self) -> Vec<SessionSummary> {
        self.index().sessions.values().cloned().collect()
    }

    /// One session by id; [`RuntimeError::SessionNotFound`] when the log has none of that id.
    pub fn session(&self, id: &str) -> Result<SessionSummary, RuntimeError> {
        self.index()
            .sessions
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::SessionNotFound(id.to_string()))
    }
}

/// Reads a job's records starting at its first LSN and assembles its full record, as the job
/// detail view.
pub fn job_detail_from(reader: &mut Reader, summary: &JobSummary) -> Result<Value, RuntimeError> {
    let mut detail = JobDetail {
        summary: Some(summary.clone()),
        ..JobDetail::default()
    };
    let wanted = [Some(summary.lsn), summary.end_lsn];
    let last = summary.end_lsn.unwrap_or(summary.lsn);
    let mut undecodable = None;
    loop {
        let mut done = false;
        let n = reader.read_batch(INDEX_BATCH_RECORDS, &mut |frame| {
            if frame.lsn > last || undecodable.is_some() {
                done = true;
                return;
            }
            if frame.kind == record_kind::JOB_OWNER {
                let owner: Value = serde_json::from_slice(frame.payload).unwrap_or(Value::Null);
                if owner["job_id"] == json!(summary.job_id) && !owner["run_as"].is_null() {
                    detail.run_as = Some(owner["run_as"].clone());
                }
                return;
            }
            if frame.kind == record_kind::JOB_ENFORCEMENT {
                let held: Value = serde_json::from_slice(frame.payload).unwrap_or(Value::Null);
                if held["job_id"] == json!(summary.job_id) {
                    detail.enforcement = Some(held["enforcement"].clone());
                    detail.limits_not_held = Some(held["limits_not_held"].clone());
                }
                return;
            }
            if !wanted.contains(&Some(frame.lsn)) {
                return;
            }
            match Record::decode(frame.kind, frame.payload) {
                Ok(Decoded::Record(record)) => add_to_detail(&mut detail, &record),
                Ok(Decoded::Ignored { .. }) => {}
                Err(error) => undecodable = Some(index::undecodable_record(&frame, error)),
            }
        })?;
        if let Some(error) = undecodable.take() {
            return Err(RuntimeError::Wal(error));
        }
        if n == 0 || done {
            return Ok(detail_json(&detail));
        }
    }
}

/// What one of a job's records adds to its full record.
fn add_to_detail(detail: &mut JobDetail, record: &Record<'_>) {
    let args = |text: &str| Some(serde_json::from_str(text).unwrap_or(Value::Null));
    match record {
        Record::JobStarted(r) => {
            detail.started_unix_ms = Some(r.unix_ms);
            detail.args = args(r.args_json);
            detail.limits = Some(r.limits);
            detail.root = r.root.map(str::to_string);
            detail.telemetry_before = decode_blob(r.telemetry_before);
        }
        Record::JobFinished(r) => {
            detail.finished_unix_ms = Some(r.unix_ms);
            detail.telemetry_after = decode_blob(r.telemetry_after);
        }
        Record::JobInterrupted(r) => detail.finished_unix_ms = Some(r.unix_ms),
        Record::JobRejected(r) => {
            detail.finished_unix_ms = Some(r.unix_ms);
            detail.args = args(r.args_json);
            detail.telemetry_before = decode_blob(r.telemetry);
        }
        _ => return,
    }
    if let Some(result) = result_json(record) {
        detail.result = Some(result);
    }
}

/// A payload producer for the log ([`crate::wal::log::Prologue`]): `payload` of the shared
/// job index, within the budget the log gives.
fn index_checkpoint(
    index: &Arc<Mutex<JobIndex>>,
    payload: fn(&JobIndex, usize) -> Option<Vec<u8>>,
) -> crate::wal::log::Prologue {
    let index = Arc::clone(index);
    Box::new(move |budget| payload(&index.lock().unwrap_or_else(|p| p.into_inner()), budget))
}
