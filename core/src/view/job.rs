//! The job views: how one job looks as JSON wherever it is shown.
//!
//! - [`RunView`]: what a job came to, as `vigil run --json`, the socket's `run` result, the MCP
//!   tools' structured content and the C API's `vigil_job_json` return it. Typed both ways: the
//!   CLI's socket client reads the server's answer back into it.
//! - [`JobDetail`] / [`detail_json`]: a job's full record from the log (`vigil job N --json`,
//!   `jobs.get`, `vigil_job_detail_json`): arguments as logged, limits ([`super::limits`]), the
//!   result, who held each limit, and the telemetry before and after in the sample view
//!   ([`super::sample`]).
//! - [`JobSummary`] / [`summaries_json`]: one line of `vigil jobs --json` and `jobs.list`.
//! - [`job_event_json`]: a job record's fields as a log event (`vigil wal dump|tail --json`,
//!   `events.read`).
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::limits::limits_json;
use super::sample::sample_json;
use super::{hex, json_text};
use crate::exec::JobResult;
use crate::model::{JobState, JobStatus, LimitHit, Limits};
use crate::sample::Sample;
use crate::wal::record::{JobFinished, Record};
use crate::wal::Lsn;

/// What a job came to. Every field of the DESIGN.md contract for `vigil run --json`, then what
/// vigil adds (output sizes, which limit fired, stragglers killed, who held each limit, the
/// dry-run report).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// `null` when nothing was recorded (bad `--args` JSON before any job existed).
    pub job_id: Option<u64>,
    /// The capability the job ran, by name.
    pub capability: String,
    /// The id of the session the job belongs to; `null` when none.
    #[serde(default)]
    pub session: Option<String>,
    /// How the job ended (`completed`, `failed`, `timeout`, `killed`, `rejected`, ...).
    pub status: JobStatus,
    /// Exit code of the job's root process; `null` when it did not exit by itself (killed by a
    /// signal, refused, never started).
    pub exit_code: Option<i32>,
    /// Signal number that killed the root process; `null` when none did.
    pub signal: Option<i32>,
    /// Output as text; bytes that are not UTF-8 are replaced (U+FFFD).
    pub stdout: String,
    /// Standard error as text; bytes that are not UTF-8 are replaced (U+FFFD).
    pub stderr: String,
    /// Standard output was longer than the job's `max_output_bytes`: only its start is kept.
    pub stdout_truncated: bool,
    /// Standard error was longer than the job's `max_output_bytes`: only its start is kept.
    pub stderr_truncated: bool,
    /// Everything the job wrote to the stream, kept or not.
    #[serde(default)]
    pub stdout_total_bytes: u64,
    /// Everything the job wrote to standard error, kept or not, in bytes.
    #[serde(default)]
    pub stderr_total_bytes: u64,
    /// Wall-clock time of the job in ms, from request to its processes being gone.
    pub wall_ms: u64,
    /// CPU time of all the job's processes, in µs; `null` when unmeasured (no cgroup, never
    /// started).
    pub cpu_usage_us: Option<u64>,
    /// Peak memory of all the job's processes, in bytes; `null` when unmeasured.
    pub memory_peak_bytes: Option<u64>,
    /// The pids limit refused at least one fork.
    #[serde(default)]
    pub pids_limit_hit: bool,
    /// The limit that ended the job early; `null` when none did.
    #[serde(default)]
    pub limit_hit: Option<LimitHit>,
    /// Processes still running when the root process ended, killed by vigil.
    #[serde(default)]
    pub stragglers_killed: u64,
    /// LSN of the record that ended the job; `null` for a dry run.
    pub lsn: Option<Lsn>,
    /// Human message; `null` on success.
    pub error: Option<String>,
    /// `<limit> limit <value> not held: <reason>` for each requested limit not held.
    #[serde(default)]
    pub limits_not_held: Vec<String>,
    /// What the job can do that no limit stops (a job running as root outside the sandbox can
    /// leave its cgroup); absent when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// Who held each limit and sandbox rule (`kernel`, `supervisor`, `not_enforced`, ...).
    #[serde(default)]
    pub enforcement: Value,
    /// The dry-run report, for dry runs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<Value>,
}

impl RunView {
    /// The view of `result`, a job of `capability` numbered `job_id` in `session`, ended by the
    /// record at `lsn`.
    pub fn new(
        result: &JobResult,
        capability: &str,
        job_id: Option<u64>,
        session: Option<&str>,
        lsn: Option<Lsn>,
    ) -> RunView {
        RunView {
            job_id,
            capability: capability.to_string(),
            session: session.map(str::to_string),
            status: result.status,
            exit_code: result.exit_code,
            signal: result.signal,
            stdout: String::from_utf8_lossy(&result.stdout.bytes).into_owned(),
            stderr: String::from_utf8_lossy(&result.stderr.bytes).into_owned(),
            stdout_truncated: result.stdout.truncated,
            stderr_truncated: result.stderr.truncated,
            stdout_total_bytes: result.stdout.total_bytes,
            stderr_total_bytes: result.stderr.total_bytes,
            wall_ms: result.wall_ms,
            cpu_usage_us: result.cpu_usage_us,
            memory_peak_bytes: result.memory_peak_bytes,
            pids_limit_hit: result.pids_limit_hit,
            // The executor names what fired with these names; none other exists.
            limit_hit: result.limit_hit.and_then(LimitHit::from_name),
            stragglers_killed: result.stragglers_killed as u64,
            lsn,
            error: result.error.clone(),
            limits_not_held: result.enforcement.not_held_messages(),
            notices: result.enforcement.notices.clone(),
            enforcement: serde_json::to_value(&result.enforcement).unwrap_or(Value::Null),
            dry_run: None,
        }
    }

    /// The JSON object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// The exit code of a `vigil` process that ran this job (see
    /// [`JobStatus::process_exit_code`]).
    pub fn process_exit_code(&self) -> u8 {
        self.status.process_exit_code(self.exit_code)
    }
}

/// One job in the index: a line of `vigil jobs --json` and of `jobs.list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job's id, unique in the log.
    pub job_id: u64,
    /// The capability the job ran, by name.
    pub capability: String,
    /// `running` until the job's end is logged, then its final status.
    pub status: JobState,
    /// The id of the session the job belongs to; `None` when none.
    pub session: Option<String>,
    /// When the job's start was logged, in ms since the Unix epoch; `None` for a job refused before
    /// it started.
    pub started_unix_ms: Option<u64>,
    /// When the job's end was logged, in ms since the Unix epoch; `None` while it runs.
    pub finished_unix_ms: Option<u64>,
    /// LSN of the job's first record.
    pub lsn: Lsn,
    /// LSN of the record that ended it.
    pub end_lsn: Option<Lsn>,
}

/// The JSON array of job summaries.
pub fn summaries_json(jobs: &[JobSummary]) -> Value {
    serde_json::to_value(jobs).unwrap_or(Value::Null)
}

/// A job's full record, gathered from its records in the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobDetail {
    /// The job's line in the index; `None` until its first record is read.
    pub summary: Option<JobSummary>,
    /// When the job's start was logged, in ms since the Unix epoch; `None` when no start record.
    pub started_unix_ms: Option<u64>,
    /// When the job's end was logged, in ms since the Unix epoch; `None` while it runs.
    pub finished_unix_ms: Option<u64>,
    /// The arguments as logged (redacted, possibly a truncation placeholder).
    pub args: Option<Value>,
    /// The limits the job ran under, as logged with its start.
    pub limits: Option<Limits>,
    /// The job's root directory, as logged.
    pub root: Option<String>,
    /// The host sample the job was admitted on; `None` when telemetry had none.
    pub telemetry_before: Option<Sample>,
    /// The host sample taken as the job ended; `None` when telemetry had none.
    pub telemetry_after: Option<Sample>,
    /// How it ended ([`result_json`]), once it has.
    pub result: Option<Value>,
    /// Who held each limit, as logged with the job's end.
    pub enforcement: Option<Value>,
    /// `<limit> limit <value> not held: <reason>` for each requested limit not held, as logged with
    /// the job's end.
    pub limits_not_held: Option<Value>,
    /// The user a process job runs as (`{user, uid, gid, groups}`), as logged with its start;
    /// `None` for a file job and in logs from before it was logged.
    pub run_as: Option<Value>,
}

/// The JSON object of a job's full record. Fields the log does not (yet) hold are `null`.
pub fn detail_json(d: &JobDetail) -> Value {
    let s = d.summary.as_ref();
    let telemetry = |t: &Option<Sample>| t.as_ref().map_or(Value::Null, sample_json);
    json!({
        "job_id": s.map(|s| s.job_id),
        "capability": s.map(|s| &s.capability),
        "status": s.map(|s| s.status),
        "session": s.and_then(|s| s.session.as_ref()),
        "lsn": s.map(|s| s.lsn),
        "end_lsn": s.and_then(|s| s.end_lsn),
        "started_unix_ms": d.started_unix_ms,
        "finished_unix_ms": d.finished_unix_ms,
        "args": d.args,
        "limits": d.limits.as_ref().map(limits_json),
        "root": d.root,
        "telemetry_before": telemetry(&d.telemetry_before),
        "telemetry_after": telemetry(&d.telemetry_after),
        "result": d.result,
        "enforcement": d.enforcement,
        "limits_not_held": d.limits_not_held,
        "run_as": d.run_as,
    })
}

/// How a job ended, as logged: for a finished job its status, exit, usage, bounded output and
/// error; for an interrupted or rejected one its status and the reason (as `error`). The
/// `result` of [`detail_json`], and the core of the `job_finished` event.
pub fn result_json(record: &Record<'_>) -> Option<Value> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match record {
        Record::JobFinished(r) => Some(json!({
            "status": r.status,
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
        })),
        Record::JobInterrupted(r) => {
            Some(json!({"status": JobStatus::Interrupted, "error": r.reason}))
        }
        Record::JobRejected(r) => Some(json!({"status": JobStatus::Rejected, "error": r.reason})),
        _ => None,
    }
}

fn finished_event(r: &JobFinished<'_>) -> Value {
    let mut fields = result_json(&Record::JobFinished(*r)).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut fields {
        map.extend(Map::from_iter([
            ("job_id".to_string(), json!(r.job_id)),
            ("unix_ms".to_string(), json!(r.unix_ms)),
            ("oom_kills".to_string(), json!(r.usage.oom_kills)),
            (
                "telemetry_after_hex".to_string(),
                json!(hex(r.telemetry_after)),
            ),
        ]));
    }
    fields
}

/// A job record's fields as a log event (binary telemetry as bounded hex); `None` for records
/// that are not about a job.
pub fn job_event_json(record: &Record<'_>) -> Option<Value> {
    Some(match record {
        Record::JobStarted(r) => json!({
            "job_id": r.job_id, "unix_ms": r.unix_ms, "capability": r.capability,
            "args": json_text(r.args_json), "session": r.session, "root": r.root,
            "limits": limits_json(&r.limits),
            "telemetry_before_hex": hex(r.telemetry_before),
        }),
        Record::JobFinished(r) => finished_event(r),
        Record::JobInterrupted(r) => {
            json!({"job_id": r.job_id, "unix_ms": r.unix_ms, "reason": r.reason})
        }
        Record::JobRejected(r) => json!({
            "job_id": r.job_id, "unix_ms": r.unix_ms, "capability": r.capability,
            "args": json_text(r.args_json), "session": r.session, "reason": r.reason,
            "telemetry_hex": hex(r.telemetry),
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::enforcement::{Enforcement, LimitEnforcement, Strength};
    use crate::exec::output::CapturedOutput;
    use crate::procfs::LoadAvg;
    use crate::sample::{MemorySample, Percent};
    use crate::wal::record::{JobInterrupted, JobStarted};

    fn enforcement() -> Enforcement {
        Enforcement {
            mode: "hybrid",
            placement: Some("clone_into_cgroup"),
            kill: "cgroup.kill".into(),
            kill_complete: true,
            accounting: "cgroup".into(),
            limits: vec![LimitEnforcement {
                limit: "memory",
                requested: Some("64M".into()),
                strength: Strength::NotEnforced,
                held: false,
                mechanism: "none".into(),
                not_held_reason: Some("no memory controller".into()),
            }],
            run_as: None,
            notices: Vec::new(),
        }
    }

    fn result() -> JobResult {
        let mut r = JobResult::without_process(
            "d-7",
            JobStatus::TimedOut,
            Some("wall".into()),
            enforcement(),
        );
        r.root_pid = Some(4242);
        r.signal = Some(9);
        r.limit_hit = Some("wall");
        r.cpu_usage_us = Some(1200);
        r.memory_peak_bytes = Some(4096);
        r.wall_ms = 2001;
        r.stragglers_killed = 2;
        r.stdout = CapturedOutput {
            bytes: b"out\xff".to_vec(),
            truncated: false,
            total_bytes: 4,
            cut: None,
        };
        r.stderr = CapturedOutput {
            bytes: b"err".to_vec(),
            truncated: true,
            total_bytes: 9000,
            cut: None,
        };
        r
    }

    #[test]
    fn run_view_is_pinned_and_reads_back() {
        let view = RunView::new(&result(), "shell", Some(7), Some("s1"), Some(42));
        let json = view.to_json();
        assert_eq!(
            json.to_string(),
            concat!(
                r#"{"capability":"shell","cpu_usage_us":1200,"enforcement":{"accounting":"cgroup","#,
                r#""kill":"cgroup.kill","kill_complete":true,"limits":[{"held":false,"limit":"memory","#,
                r#""mechanism":"none","not_held_reason":"no memory controller","requested":"64M","#,
                r#""strength":"not_enforced"}],"mode":"hybrid","placement":"clone_into_cgroup"},"#,
                r#""error":"wall","exit_code":null,"job_id":7,"limit_hit":"wall","#,
                r#""limits_not_held":["memory limit 64M not held: no memory controller"],"lsn":42,"#,
                r#""memory_peak_bytes":4096,"pids_limit_hit":false,"session":"s1","signal":9,"#,
                r#""status":"timed_out","stderr":"err","stderr_total_bytes":9000,"stderr_truncated":true,"#,
                r#""stdout":"out\u{fffd}","stdout_total_bytes":4,"stdout_truncated":false,"#,
                r#""stragglers_killed":2,"wall_ms":2001}"#
            )
            .replace("\\u{fffd}", "\u{fffd}")
        );
        // What the CLI's socket client does with the server's answer.
        let back: RunView = serde_json::from_value(json).unwrap();
        assert_eq!(back, view);
        assert_eq!(back.process_exit_code(), 124);
        // A dry run adds its report; no other view has the key.
        let mut dry = view.clone();
        dry.dry_run = Some(json!({"valid": true}));
        assert_eq!(dry.to_json()["dry_run"], json!({"valid": true}));
        assert!(view.to_json().get("dry_run").is_none());
    }

    #[test]
    fn summary_view_is_pinned() {
        let jobs = [JobSummary {
            job_id: 3,
            capability: "exec".into(),
            status: JobState::Running,
            session: None,
            started_unix_ms: Some(1000),
            finished_unix_ms: None,
            lsn: 9,
            end_lsn: None,
        }];
        assert_eq!(
            summaries_json(&jobs).to_string(),
            r#"[{"capability":"exec","end_lsn":null,"finished_unix_ms":null,"job_id":3,"lsn":9,"session":null,"started_unix_ms":1000,"status":"running"}]"#
        );
    }

    fn finished<'a>() -> JobFinished<'a> {
        JobFinished {
            job_id: 3,
            unix_ms: 2000,
            status: JobStatus::Failed,
            exit_code: Some(4),
            signal: None,
            usage: crate::model::Usage {
                cpu_usage_us: 10,
                memory_peak_bytes: 20,
                wall_ms: 30,
                oom_kills: 0,
            },
            stdout: b"hi\n",
            stdout_truncated: false,
            stderr: b"",
            stderr_truncated: false,
            error: None,
            telemetry_after: &[0xab, 0xcd],
        }
    }

    #[test]
    fn detail_view_is_pinned_and_shows_telemetry_in_the_sample_view() {
        let mut sample = Sample {
            seq: 5,
            memory: Some(MemorySample {
                total_bytes: 1000,
                available_bytes: 250,
                ..MemorySample::default()
            }),
            load: Some(LoadAvg {
                load1_centi: 150,
                ..LoadAvg::default()
            }),
            ..Sample::default()
        };
        sample.cpu = Some(crate::sample::CpuUsage {
            busy: Percent::ratio(255, 1000).unwrap(),
            ..Default::default()
        });
        let detail = JobDetail {
            summary: Some(JobSummary {
                job_id: 3,
                capability: "exec".into(),
                status: JobState::Ended(JobStatus::Failed),
                session: Some("s1".into()),
                started_unix_ms: Some(1000),
                finished_unix_ms: Some(2000),
                lsn: 9,
                end_lsn: Some(11),
            }),
            started_unix_ms: Some(1000),
            finished_unix_ms: Some(2000),
            args: Some(json!({"argv": ["false"]})),
            limits: Some(Limits {
                timeout_ms: Some(500),
                ..Limits::default()
            }),
            root: Some("/tmp".into()),
            telemetry_before: Some(sample.clone()),
            telemetry_after: None,
            result: result_json(&Record::JobFinished(finished())),
            enforcement: None,
            limits_not_held: Some(json!([])),
            run_as: Some(json!({"user": "nobody", "uid": 65534})),
        };
        let v = detail_json(&detail);
        assert_eq!(v["telemetry_before"], sample_json(&sample));
        assert_eq!(v["telemetry_before"]["cpu"]["busy_pct"], json!(25.5));
        assert_eq!(v["telemetry_before"]["load"]["load1"], json!(1.5));
        assert!(v["telemetry_before"]["cpu"].get("busy").is_none());
        let mut rest = v.clone();
        rest["telemetry_before"] = Value::Null;
        assert_eq!(
            rest.to_string(),
            concat!(
                r#"{"args":{"argv":["false"]},"capability":"exec","end_lsn":11,"enforcement":null,"#,
                r#""finished_unix_ms":2000,"job_id":3,"limits":{"cpu_time_ms":null,"#,
                r#""max_output_bytes":null,"memory_bytes":null,"pids":null,"timeout_ms":500},"#,
                r#""limits_not_held":[],"lsn":9,"result":{"cpu_usage_us":10,"error":null,"#,
                r#""exit_code":4,"memory_peak_bytes":20,"signal":null,"status":"failed","#,
                r#""stderr":"","stderr_truncated":false,"stdout":"hi\n","stdout_truncated":false,"#,
                r#""wall_ms":30},"root":"/tmp","run_as":{"uid":65534,"user":"nobody"},"#,
                r#""session":"s1","started_unix_ms":1000,"#,
                r#""status":"failed","telemetry_after":null,"telemetry_before":null}"#
            )
        );
    }

    #[test]
    fn job_events_are_pinned() {
        let started = Record::JobStarted(JobStarted {
            job_id: 3,
            unix_ms: 1000,
            capability: "exec",
            args_json: r#"{"argv":["false"]}"#,
            limits: Limits {
                pids: Some(8),
                ..Limits::default()
            },
            session: None,
            root: Some("/tmp"),
            telemetry_before: &[1],
        });
        assert_eq!(
            job_event_json(&started).unwrap().to_string(),
            concat!(
                r#"{"args":{"argv":["false"]},"capability":"exec","job_id":3,"limits":{"#,
                r#""cpu_time_ms":null,"max_output_bytes":null,"memory_bytes":null,"pids":8,"#,
                r#""timeout_ms":null},"root":"/tmp","session":null,"telemetry_before_hex":"01","#,
                r#""unix_ms":1000}"#
            )
        );
        assert_eq!(
            job_event_json(&Record::JobFinished(finished()))
                .unwrap()
                .to_string(),
            concat!(
                r#"{"cpu_usage_us":10,"error":null,"exit_code":4,"job_id":3,"#,
                r#""memory_peak_bytes":20,"oom_kills":0,"signal":null,"status":"failed","#,
                r#""stderr":"","stderr_truncated":false,"stdout":"hi\n","stdout_truncated":false,"#,
                r#""telemetry_after_hex":"abcd","unix_ms":2000,"wall_ms":30}"#
            )
        );
        let interrupted = Record::JobInterrupted(JobInterrupted {
            job_id: 3,
            unix_ms: 5,
            reason: "gone",
        });
        assert_eq!(
            job_event_json(&interrupted).unwrap().to_string(),
            r#"{"job_id":3,"reason":"gone","unix_ms":5}"#
        );
        assert_eq!(
            result_json(&interrupted),
            Some(json!({"status": "interrupted", "error": "gone"}))
        );
        assert_eq!(job_event_json(&Record::User(b"x")), None);
    }
}
