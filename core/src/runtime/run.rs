//! [`Runtime::run`], one named step at a time: prepare (the job's ids and its arguments as
//! logged), the dry run, refusal (validation, policy, guard), admission (a slot, unless
//! cancelled first), record the start, execute, record the end.
use serde_json::{json, Value};

use super::recovery::exec_job_id;
use super::redaction::{bounded_args_json, Redactor};
use super::slots::SlotGuard;
use super::{unix_ms, JobOutcome, JobRequest, Runtime, RuntimeError};
use crate::exec::capability::JobContext;
use crate::exec::job::{CancelToken, JobResult};
use crate::guard::{self, Decision};
use crate::model::{JobStatus, Usage};
use crate::sample::{encode_blob, Sample};
use crate::sampler::SpanStart;
use crate::wal::record::{kind as record_kind, JobFinished, JobRejected, JobStarted};
use crate::wal::{Lsn, Record};

/// One job on its way through [`Runtime::run`]: what every step needs.
struct Job<'r> {
    req: &'r JobRequest,
    job_id: u64,
    /// The executor's name for the job (cgroup leaf, process marker).
    exec_id: String,
    /// The arguments as logged: secret values redacted, scrubbed, bounded.
    args_logged: String,
    /// The secret values found in the arguments (scrubbed from everything logged) and the
    /// secret shapes.
    redactor: Redactor,
    /// The caller closes the log after this job: the closing checkpoint goes into its end.
    closes_log: bool,
}

impl<'r> Job<'r> {
    /// Names the job and prepares its arguments for the log.
    fn prepare(req: &'r JobRequest, job_id: u64, dir_token: &str) -> Job<'r> {
        // Every string is scrubbed as a raw value, before JSON escaping: a secret is found
        // whatever quotes, backslashes or tabs it holds, and wherever else it is used (a
        // command line, argv, stdin).
        let redactor = Redactor::from_args(&req.args);
        let args_logged = redactor.args(&req.args).to_string();
        Job {
            req,
            job_id,
            exec_id: exec_job_id(dir_token, job_id),
            args_logged: bounded_args_json(args_logged),
            redactor,
            closes_log: false,
        }
    }

    fn outcome(&self, result: JobResult, lsn: Option<Lsn>, dry_run: Option<Value>) -> JobOutcome {
        JobOutcome {
            job_id: self.job_id,
            capability: self.req.capability.clone(),
            session: self.req.session.clone(),
            result,
            lsn,
            dry_run,
        }
    }
}

impl Runtime {
    /// Runs one job to its end and records it. Errors are only those of the log (a job that
    /// fails, is refused or times out is an `Ok` outcome with that status): when the log cannot
    /// record a job, the job does not run.
    pub fn run(&self, req: &JobRequest) -> Result<JobOutcome, RuntimeError> {
        self.run_job(req, &mut |_| {}, false)
    }

    /// [`Runtime::run`] for a caller that closes the runtime right after this job (a one-shot
    /// CLI run): the log's closing checkpoint frame is appended after the job's end and made
    /// durable by the same flush, so the close syncs nothing more of the log (it still records
    /// the durable end in the identity file). Running more jobs afterwards is allowed: the
    /// checkpoint is then an ordinary frame in the middle of the log.
    pub fn run_last(&self, req: &JobRequest) -> Result<JobOutcome, RuntimeError> {
        self.run_job(req, &mut |_| {}, true)
    }

    /// [`Runtime::run`], telling `on_start` the job's id as soon as the job can be cancelled
    /// (before it waits for a slot); not called for a dry run or a job refused up front.
    pub fn run_observed(
        &self,
        req: &JobRequest,
        on_start: &mut dyn FnMut(u64),
    ) -> Result<JobOutcome, RuntimeError> {
        self.run_job(req, on_start, false)
    }

    fn run_job(
        &self,
        req: &JobRequest,
        on_start: &mut dyn FnMut(u64),
        closes_log: bool,
    ) -> Result<JobOutcome, RuntimeError> {
        // Unique across every process sharing the log: drawn under the append lock once the
        // index holds what the others appended.
        let job_id = self.wal.claim_number(|| self.index().next_job_id.max(1))?;
        crate::phase::mark("claim_number");
        let job = Job {
            closes_log,
            ..Job::prepare(req, job_id, &self.dir_token)
        };
        let cancel = CancelToken::new().map_err(RuntimeError::Exec)?;
        let ctx = JobContext {
            executor: &self.executor,
            job_id: &job.exec_id,
            limits: &req.limits,
            root: &req.root,
            cancel: Some(&cancel),
        };
        if req.dry_run {
            return Ok(self.dry_run(&job, &ctx));
        }
        // Telemetry that spans the job: a fresh sample at its start, and at the end one whose
        // CPU deltas are against this one's reading. A runtime without a sampling thread (a
        // one-shot run) has no sample yet: the job's start sample is taken now, published, and
        // is what the guard judges and the record carries (taken again if the job then waits
        // for a slot, so the span starts when the job does).
        let mut span = SpanStart::default();
        let early = if self.options.background_sampling {
            None
        } else {
            self.sampler.span_start_published(&mut span)
        };
        crate::phase::mark("span_start");
        let refusal = self.refusal(req, &ctx);
        let telemetry_before = self.telemetry().latest();
        if let Some(reason) = refusal {
            return self.record_rejected(&job, reason, telemetry_before.as_ref());
        }
        crate::phase::mark("refusal");
        let _running = self.register_running(job_id, &cancel);
        on_start(job_id);
        let slot = match self.admit(&job, &cancel) {
            Ok(slot) => slot,
            Err(reason) => return self.record_rejected(&job, reason, telemetry_before.as_ref()),
        };
        let telemetry_before = match early {
            Some(sample) if !slot.waited() => Some(sample),
            _ => self.sampler.span_start(&mut span).or(telemetry_before),
        };
        crate::phase::mark("admit");
        self.record_start(&job, telemetry_before.as_ref())?;
        crate::phase::mark("record_start");
        let mut result = self.execute(&job, &ctx);
        crate::phase::mark("execute");
        self.check_log_modes(&job, &mut result);
        crate::phase::mark("check_log_modes");
        let telemetry_after = self
            .sampler
            .span_end(&span)
            .or_else(|| self.telemetry().latest());
        crate::phase::mark("span_end");
        let lsn = self.record_end(&job, &result, telemetry_after.as_ref())?;
        crate::phase::mark("record_end");
        Ok(job.outcome(result, Some(lsn), None))
    }

    /// Validates and reports; runs nothing, records nothing.
    fn dry_run(&self, job: &Job<'_>, ctx: &JobContext<'_>) -> JobOutcome {
        let req = job.req;
        let report = match self.registry.get(&req.capability) {
            Some(cap) => serde_json::to_value(cap.dry_run(ctx, &req.args)).ok(),
            None => None,
        };
        let error = match &report {
            Some(r) if r["valid"] == json!(true) => None,
            Some(r) => r["error"].as_str().map(str::to_string),
            None => Some(format!("unknown capability {:?}", req.capability)),
        };
        let enforcement = self.executor.enforcement_for(
            &req.limits,
            Some(&req.root),
            is_process(&req.capability),
        );
        let mut result = JobResult::without_process(
            &job.exec_id,
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
        job.outcome(result, None, report)
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
        if let Err(e) = self.executor.job_user(&req.limits) {
            return Some(e.to_string());
        }
        if req.require_enforcement || self.options.executor.require_enforcement {
            if let Some(why) = self
                .executor
                .enforcement_for(&req.limits, Some(&req.root), is_process(&req.capability))
                .refusal()
            {
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

    /// Waits for a slot; the reason to reject the job instead when it was cancelled first.
    fn admit(&self, job: &Job<'_>, cancel: &CancelToken) -> Result<SlotGuard<'_>, String> {
        let slot = self.slots.acquire(|| cancel.is_cancelled());
        if let Some(reason) = self.cancelled_because(job.job_id) {
            return Err(format!("{reason} before it started"));
        }
        slot.ok_or_else(|| "cancelled before it started".to_string())
    }

    /// Records a job that never ran (`JobRejected`, durable) and counts it.
    fn record_rejected(
        &self,
        job: &Job<'_>,
        reason: String,
        telemetry_before: Option<&Sample>,
    ) -> Result<JobOutcome, RuntimeError> {
        let req = job.req;
        let reason_logged = job.redactor.text(&reason);
        let record = Record::JobRejected(JobRejected {
            job_id: job.job_id,
            unix_ms: unix_ms(),
            capability: &req.capability,
            args_json: &job.args_logged,
            session: req.session.as_deref(),
            reason: &reason_logged,
            telemetry: &encode_blob(telemetry_before),
        });
        let lsn = self.record_durable(&record)?;
        self.metrics
            .job_ended(self.metric_name(&req.capability), JobStatus::Rejected, None);
        let result = JobResult::without_process(
            &job.exec_id,
            JobStatus::Rejected,
            Some(reason),
            self.executor.enforcement_for(
                &req.limits,
                Some(&req.root),
                is_process(&req.capability),
            ),
        );
        Ok(job.outcome(result, Some(lsn), None))
    }

    /// Records the job's start (`JobStarted`, with who runs it, durable) before anything of it
    /// runs.
    fn record_start(
        &self,
        job: &Job<'_>,
        telemetry_before: Option<&Sample>,
    ) -> Result<(), RuntimeError> {
        let req = job.req;
        let root = job.redactor.text(&req.root.to_string_lossy());
        let started = Record::JobStarted(JobStarted {
            job_id: job.job_id,
            unix_ms: unix_ms(),
            capability: &req.capability,
            args_json: &job.args_logged,
            limits: req.limits.to_model(),
            session: req.session.as_deref(),
            root: Some(&root),
            telemetry_before: &encode_blob(telemetry_before),
        });
        // The start and who runs it go in together: no process sees one without the other.
        // With them, the user the job runs as (a process job's child, or the thread doing a
        // file job), so even a job whose end is never logged names it.
        let run_as = self.executor.job_user(&req.limits).ok();
        let owner =
            json!({"job_id": job.job_id, "owner": self.owner.name(), "run_as": run_as}).to_string();
        let lsn = self.wal.append_batch(|tx| {
            tx.append_then(&started, |lsn| self.index().apply(lsn, &started))?;
            let lsn = tx.append_raw(record_kind::JOB_OWNER, owner.as_bytes())?;
            self.index()
                .set_owner(job.job_id, self.owner.name().to_string());
            Ok(lsn)
        })?;
        self.wal.sync(lsn)?;
        Ok(())
    }

    /// A job that ran as vigil's own user (root, say, whose files these are) may have changed
    /// the modes of the log's files, which Landlock does not mediate: they are set back to
    /// 0700/0600 after it, and its record says so.
    fn check_log_modes(&self, job: &Job<'_>, result: &mut JobResult) {
        let me = crate::exec::identity::RunAs::current().uid;
        if !is_process(&job.req.capability)
            || result.enforcement.run_as.as_ref().map(|r| r.uid) != Some(me)
        {
            return;
        }
        let mut restored = self.wal.restore_private_modes();
        restored.extend(restore_data_dir_modes(&self.options.data_dir));
        if !restored.is_empty() {
            result.enforcement.notices.push(format!(
                "the job changed the modes of vigil's log files, which its user owns; vigil set \
                 them back (0700 and 0600) after it: {}",
                restored.join(", ")
            ));
        }
    }

    /// Runs the capability; a cancelled job's error says why it was cancelled.
    fn execute(&self, job: &Job<'_>, ctx: &JobContext<'_>) -> JobResult {
        let mut result = self.registry.run(&job.req.capability, ctx, &job.req.args);
        if result.status == JobStatus::Interrupted {
            if let Some(reason) = self.cancelled_because(job.job_id) {
                let killed = crate::exec::supervise::killed_text(&result);
                result.error = Some(format!("{reason}; {killed}"));
            }
        }
        result
    }

    /// Records the job's end: who held each limit, then `JobFinished` with bounded, redacted
    /// output and the telemetry after, both made durable by one sync; counts the job.
    fn record_end(
        &self,
        job: &Job<'_>,
        result: &JobResult,
        telemetry_after: Option<&Sample>,
    ) -> Result<Lsn, RuntimeError> {
        let (stdout, stdout_cut) = job.redactor.output(&result.stdout);
        let (stderr, stderr_cut) = job.redactor.output(&result.stderr);
        let error = result.error.as_deref().map(|e| job.redactor.text(e));
        // Who held each limit, in the log beside the end (made durable by the same sync).
        let enforcement = json!({
            "job_id": job.job_id,
            "enforcement": serde_json::to_value(&result.enforcement).unwrap_or(Value::Null),
            "limits_not_held": result.enforcement.not_held_messages(),
        });
        self.wal.append_raw(
            record_kind::JOB_ENFORCEMENT,
            enforcement.to_string().as_bytes(),
        )?;
        let finished = Record::JobFinished(JobFinished {
            job_id: job.job_id,
            unix_ms: unix_ms(),
            status: result.status,
            exit_code: result.exit_code,
            signal: result.signal,
            usage: Usage {
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
            telemetry_after: &encode_blob(telemetry_after),
        });
        let lsn = self
            .wal
            .append_then(&finished, |lsn| self.index().apply(lsn, &finished))?;
        // A caller that closes the log next has its closing checkpoint made durable by this
        // same flush (see `Runtime::run_last`).
        // If the checkpoint cannot be appended (a rotation it needs fails), the job's end is
        // still made durable: the close appends a checkpoint of its own.
        let synced = match job.closes_log {
            true => self.wal.append_checkpoint().unwrap_or(lsn),
            false => lsn,
        };
        self.wal.sync(synced)?;
        self.metrics.job_ended(
            self.metric_name(&job.req.capability),
            result.status,
            Some(result.wall_ms),
        );
        Ok(lsn)
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
}

/// The data directory beside the log: no group or other write permission on it (which would
/// let others replace `wal/` or `owners/`), and `owners/` and `tmp/` 0700 (what vigil made
/// them). What was set back, as `path (mode was M)`; never through a symlink.
fn restore_data_dir_modes(data_dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut restored = Vec::new();
    let mut set = |path: std::path::PathBuf, want: &dyn Fn(u32) -> u32| {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return;
        };
        let was = meta.permissions().mode() & 0o7777;
        if meta.is_dir()
            && want(was) != was
            && std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want(was))).is_ok()
        {
            restored.push(format!("{} (mode was {was:04o})", path.display()));
        }
    };
    set(data_dir.to_path_buf(), &|m| m & !0o022);
    for sub in [super::owner::OWNERS_DIR_NAME, "tmp"] {
        set(data_dir.join(sub), &|_| 0o700);
    }
    restored
}

/// A capability that runs a process (and so gets the sandbox).
fn is_process(capability: &str) -> bool {
    matches!(capability, "shell" | "exec")
}
