//! Jobs from C: `vigil_run` runs one capability through the runtime (validated, recorded in the
//! log, run in its own cgroup under limits) and returns an immutable result handle; the job
//! index is listed as JSON.
use std::ffi::{c_char, CString};
use std::sync::OnceLock;

use vigil_core::model::{JobState, JobStatus};
use vigil_core::runtime::{JobOutcome, JobRequest};
use vigil_core::view::job::summaries_json;

use crate::runtime::{limits_over, runtime_ref, vigil_limits, vigil_runtime};
use crate::vigil_status;
use crate::{
    boundary, c_string, check_struct_size, close_handle, copy_out, handle_ref, non_null,
    open_handle, opt_str, out_param, req_str, FfiError, HandleKind,
};

/// How a job ended; values are never renumbered.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum vigil_job_status {
    /// The job's root process exited with code 0.
    VIGIL_JOB_COMPLETED = 1,
    /// It exited non-zero, died of a signal, or could not be started.
    VIGIL_JOB_FAILED = 2,
    /// The wall deadline or the CPU-time budget passed; every process of the job was killed.
    VIGIL_JOB_TIMED_OUT = 3,
    /// The kernel killed a process of the job for exceeding the memory limit.
    VIGIL_JOB_OOM_KILLED = 4,
    /// Refused before anything ran (arguments the capability rejects, a path escaping the
    /// root, an overloaded host); the reason is the job's error message.
    VIGIL_JOB_REJECTED = 5,
    /// vigil stopped before the job ended.
    VIGIL_JOB_INTERRUPTED = 6,
}

impl From<JobStatus> for vigil_job_status {
    fn from(s: JobStatus) -> Self {
        match s {
            JobStatus::Completed => vigil_job_status::VIGIL_JOB_COMPLETED,
            JobStatus::Failed => vigil_job_status::VIGIL_JOB_FAILED,
            JobStatus::TimedOut => vigil_job_status::VIGIL_JOB_TIMED_OUT,
            JobStatus::OomKilled => vigil_job_status::VIGIL_JOB_OOM_KILLED,
            JobStatus::Rejected => vigil_job_status::VIGIL_JOB_REJECTED,
            JobStatus::Interrupted => vigil_job_status::VIGIL_JOB_INTERRUPTED,
        }
    }
}

/// The scalar results of a job. Initialise with VIGIL_JOB_INFO_INIT before passing it.
#[repr(C)]
pub struct vigil_job_info {
    /// sizeof(vigil_job_info), set by VIGIL_JOB_INFO_INIT.
    pub struct_size: u32,
    /// How the job ended.
    pub status: vigil_job_status,
    /// The job's id in the runtime's log (as in vigil_jobs_list_json).
    pub job_id: u64,
    /// LSN of the log record that ended the job.
    pub lsn: u64,
    /// Exit code of the job's root process, or -1 when it did not exit (killed, not run).
    pub exit_code: i32,
    /// Signal that killed the root process, or 0.
    pub signal: i32,
    /// Wall time of the job, ms.
    pub wall_ms: u64,
    /// CPU time of all its processes, microseconds; -1 when not measured.
    pub cpu_usage_us: i64,
    /// Peak memory of the job, bytes; -1 when not measured.
    pub memory_peak_bytes: i64,
    /// Bytes of captured stdout and stderr (see vigil_job_output).
    pub stdout_len: usize,
    pub stderr_len: usize,
    /// 1 when bytes were dropped from the middle of the stream (head and tail are kept).
    pub stdout_truncated: u8,
    pub stderr_truncated: u8,
    /// The requested limits that were not held for the whole job, as VIGIL_LIMIT_* bits (0:
    /// every requested limit was held). vigil_job_json says who held each limit and why one
    /// was not. Appended after stderr_truncated: a caller built before it existed passes the
    /// shorter struct_size and the library leaves it alone.
    pub limits_not_held: u32,
}

/// vigil_job_info.limits_not_held bit: the wall-clock limit.
pub const VIGIL_LIMIT_WALL: u32 = 1;
/// vigil_job_info.limits_not_held bit: the CPU-time budget.
pub const VIGIL_LIMIT_CPU_TIME: u32 = 2;
/// vigil_job_info.limits_not_held bit: the memory limit.
pub const VIGIL_LIMIT_MEMORY: u32 = 4;
/// vigil_job_info.limits_not_held bit: the pids limit.
pub const VIGIL_LIMIT_PIDS: u32 = 8;
/// vigil_job_info.limits_not_held bit: the output cap.
pub const VIGIL_LIMIT_OUTPUT: u32 = 16;
/// vigil_job_info.limits_not_held bit: a rule of the sandbox (vigil_job_json names which).
pub const VIGIL_LIMIT_SANDBOX: u32 = 32;

/// sizeof(vigil_job_info) before `limits_not_held` was appended: still accepted.
const JOB_INFO_V1_BYTES: usize = std::mem::offset_of!(vigil_job_info, limits_not_held);

/// The VIGIL_LIMIT_* bits of the requested limits a job did not hold.
fn limits_not_held_bits(enforcement: &vigil_core::exec::Enforcement) -> u32 {
    enforcement
        .limits
        .iter()
        .filter(|l| l.not_held_message().is_some())
        .map(|l| match l.limit {
            "wall" => VIGIL_LIMIT_WALL,
            "cpu_time" => VIGIL_LIMIT_CPU_TIME,
            "memory" => VIGIL_LIMIT_MEMORY,
            "pids" => VIGIL_LIMIT_PIDS,
            "output" => VIGIL_LIMIT_OUTPUT,
            // Every other entry is a rule of the sandbox (`sandbox`, `sandbox.write`, ...).
            _ => VIGIL_LIMIT_SANDBOX,
        })
        .fold(0, |a, b| a | b)
}

/// The result of one job. Opaque and immutable: every accessor may be called from any thread
/// concurrently, except vigil_job_free. Independent of its runtime (stays valid after the
/// runtime is closed).
pub struct vigil_job {
    outcome: JobOutcome,
    error: Option<CString>,
    json: OnceLock<CString>,
}

fn job_ref<'a>(job: *const vigil_job) -> Result<&'a vigil_job, FfiError> {
    // SAFETY: handle_ref dereferences only registered job handles.
    unsafe { handle_ref(job, HandleKind::Job) }
}

/// Runs `capability` ("shell", "exec", "file.read", "file.write") with the arguments in
/// `args_json` (a JSON object, e.g. {"cmd": "echo hi"}; NULL for {}) under `limits` (NULL for
/// the runtime's default limits), and waits for it to end. The job is recorded in the log
/// before it starts and when it ends, and runs in the runtime's job root, in its own cgroup.
///
/// A job that fails, times out or is refused by the runtime is still VIGIL_OK: its status says
/// how it ended. Not valid JSON, an unknown capability, bad UTF-8 or a limit out of range
/// (see vigil_limits) is VIGIL_E_INVALID_ARGUMENT, and then nothing runs and nothing is
/// recorded.
///
/// On success *out receives a job handle owned by the caller, to free with vigil_job_free.
/// Strings are borrowed for the call only. Thread-safe: jobs may run from several threads at
/// once (the runtime bounds how many run concurrently; the others wait).
#[no_mangle]
pub unsafe extern "C" fn vigil_run(
    rt: *const vigil_runtime,
    capability: *const c_char,
    args_json: *const c_char,
    limits: *const vigil_limits,
    out: *mut *mut vigil_job,
) -> vigil_status {
    boundary(|| {
        let rt = runtime_ref(rt)?;
        let out = out_param(out, "out")?;
        // SAFETY: header contract: NUL-terminated strings, NULL or a valid vigil_limits.
        let (capability, args_json, limits) = unsafe {
            (
                req_str(capability, "capability")?,
                opt_str(args_json, "args_json")?,
                limits_over(limits, &rt.default_limits)?,
            )
        };
        let args = serde_json::from_str(args_json.unwrap_or("{}"))
            .map_err(|e| FfiError::invalid(format!("args_json is not valid JSON: {e}")))?;
        let registry = rt.runtime.registry();
        if registry.get(capability).is_none() {
            return Err(FfiError::invalid(format!(
                "unknown capability {capability:?} (known: {})",
                registry.names().join(", ")
            )));
        }
        let outcome = rt.runtime.run(&JobRequest {
            capability: capability.to_string(),
            args,
            limits: limits.limits,
            root: rt.job_root.clone(),
            session: None,
            dry_run: false,
            require_enforcement: limits.require_enforcement,
        })?;
        let error = outcome.result.error.as_deref().map(c_string);
        let ptr = open_handle(
            vigil_job {
                outcome,
                error,
                json: OnceLock::new(),
            },
            HandleKind::Job,
        )?;
        // SAFETY: non-NULL; caller storage for one pointer.
        unsafe { *out = ptr };
        Ok(())
    })
}

/// Fills *out (initialised with VIGIL_JOB_INFO_INIT) with the job's status, exit code,
/// signal, usage and output sizes. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_job_get_info(
    job: *const vigil_job,
    out: *mut vigil_job_info,
) -> vigil_status {
    boundary(|| {
        let job = job_ref(job)?;
        let out = out_param(out, "out")?;
        // SAFETY: non-NULL; the caller owns a vigil_job_info of at least struct_size bytes, and
        // struct_size is its first field.
        let struct_size = unsafe { std::ptr::addr_of!((*out).struct_size).read() };
        check_struct_size(
            struct_size,
            JOB_INFO_V1_BYTES,
            "info",
            "VIGIL_JOB_INFO_INIT",
        )?;
        let o = &job.outcome;
        let r = &o.result;
        let measured = |v: Option<u64>| v.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
        let info = vigil_job_info {
            struct_size,
            status: r.status.into(),
            job_id: o.job_id,
            lsn: o.lsn.unwrap_or(0),
            exit_code: r.exit_code.unwrap_or(-1),
            signal: r.signal.unwrap_or(0),
            wall_ms: r.wall_ms,
            cpu_usage_us: measured(r.cpu_usage_us),
            memory_peak_bytes: measured(r.memory_peak_bytes),
            stdout_len: r.stdout.bytes.len(),
            stderr_len: r.stderr.bytes.len(),
            stdout_truncated: u8::from(r.stdout.truncated),
            stderr_truncated: u8::from(r.stderr.truncated),
            limits_not_held: limits_not_held_bits(&r.enforcement),
        };
        // An older caller's struct is shorter: copy only the fields it has.
        let len = (struct_size as usize).min(std::mem::size_of::<vigil_job_info>());
        // SAFETY: `out` holds at least `len` bytes (struct_size, checked >= the first version);
        // `info` is a live local of at least `len` bytes; they cannot overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (&info as *const vigil_job_info).cast::<u8>(),
                out.cast::<u8>(),
                len,
            )
        };
        Ok(())
    })
}

/// vigil_job_output's `stream` for the job's standard output.
pub const VIGIL_STREAM_STDOUT: i32 = 1;
/// vigil_job_output's `stream` for the job's standard error.
pub const VIGIL_STREAM_STDERR: i32 = 2;

/// Borrows what the job wrote to `stream` (VIGIL_STREAM_STDOUT or VIGIL_STREAM_STDERR):
/// *data receives a pointer to *len bytes (not NUL-terminated; possibly not UTF-8), owned by
/// the job and valid until vigil_job_free. When the output exceeded the job's
/// max_output_bytes, its head and tail are kept around a marker line and vigil_job_get_info
/// reports it truncated. Any other `stream` is VIGIL_E_INVALID_ARGUMENT. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_job_output(
    job: *const vigil_job,
    stream: i32,
    data: *mut *const u8,
    len: *mut usize,
) -> vigil_status {
    boundary(|| {
        let job = job_ref(job)?;
        let data = out_param(data, "data")?;
        let len = out_param(len, "len")?;
        let r = &job.outcome.result;
        let bytes = match stream {
            VIGIL_STREAM_STDOUT => &r.stdout.bytes,
            VIGIL_STREAM_STDERR => &r.stderr.bytes,
            other => return Err(FfiError::invalid(format!("stream {other} is not a stream"))),
        };
        // SAFETY: non-NULL out-parameters; caller storage for a pointer and a size_t.
        unsafe {
            *data = bytes.as_ptr();
            *len = bytes.len();
        }
        Ok(())
    })
}

/// Borrows the job's error message: why it failed, timed out or was refused. *message
/// receives a NUL-terminated UTF-8 string owned by the job and valid until vigil_job_free, or
/// NULL when the job has no error (it completed). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_job_error(
    job: *const vigil_job,
    message: *mut *const c_char,
) -> vigil_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        job_string(job, message, "message", |job| {
            job.error.as_ref().map_or(std::ptr::null(), |e| e.as_ptr())
        })
    }
}

/// Borrows the whole result as one JSON object, the same as `vigil run --json` prints
/// (job_id, capability, status, exit_code, signal, stdout, stderr, usage, limits enforcement,
/// lsn, error). *json receives a NUL-terminated UTF-8 string owned by the job and valid until
/// vigil_job_free. Made on first use. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_job_json(
    job: *const vigil_job,
    json: *mut *const c_char,
) -> vigil_status {
    // SAFETY: forwarded from the caller's contract.
    unsafe {
        job_string(job, json, "json", |job| {
            job.json
                .get_or_init(|| c_string(&job.outcome.to_json().to_string()))
                .as_ptr()
        })
    }
}

/// Hands out a string owned by the job, chosen by `pick` (NULL for none), through `out`.
unsafe fn job_string(
    job: *const vigil_job,
    out: *mut *const c_char,
    name: &str,
    pick: impl FnOnce(&vigil_job) -> *const c_char,
) -> vigil_status {
    boundary(|| {
        let job = job_ref(job)?;
        let out = out_param(out, name)?;
        let text = pick(job);
        // SAFETY: non-NULL; caller storage for one pointer.
        unsafe { *out = text };
        Ok(())
    })
}

/// Frees a job handle and everything borrowed from it. NULL is a no-op; freeing twice gives
/// VIGIL_E_CLOSED. No other call may be using the job concurrently.
#[no_mangle]
pub unsafe extern "C" fn vigil_job_free(job: *mut vigil_job) -> vigil_status {
    // SAFETY: close_handle frees only registered job handles.
    boundary(|| unsafe { close_handle(job, HandleKind::Job) })
}

/// Copies `text` and its terminating NUL into the caller's buffer (see copy_out).
unsafe fn copy_out_c_string(
    text: String,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> Result<(), FfiError> {
    let mut bytes = text.into_bytes();
    bytes.push(0);
    // SAFETY: forwarded from the caller's contract.
    unsafe { copy_out(&bytes, buf.cast(), buf_len, needed) }
}

/// Lists the runtime's jobs, oldest first, as a JSON array of objects (job_id, capability,
/// status — "running" until its end is logged —, session, started_unix_ms,
/// finished_unix_ms, lsn, end_lsn), optionally only those with status `status_filter` (e.g.
/// "completed", "timed_out"; NULL for all; any other name is VIGIL_E_INVALID_ARGUMENT, its
/// message naming the valid ones). Copies it with its terminating NUL into `buf` of
/// `buf_len` bytes and writes the bytes that takes (NUL included) to *needed. When `buf` is
/// too small (or NULL), only *needed is written and the status is VIGIL_E_BUFFER_TOO_SMALL:
/// call again with a buffer that large (jobs that end in between can make it grow again).
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_jobs_list_json(
    rt: *const vigil_runtime,
    status_filter: *const c_char,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> vigil_status {
    boundary(|| {
        let rt = runtime_ref(rt)?;
        non_null(needed, "needed")?;
        // SAFETY: NULL or a NUL-terminated string.
        let status = unsafe { opt_str(status_filter, "status_filter") }?;
        let status = status
            .map(|s| JobState::parse(s).map_err(|e| FfiError::invalid(e.to_string())))
            .transpose()?;
        let jobs = rt.runtime.jobs(None, status);
        let text = summaries_json(&jobs).to_string();
        // SAFETY: forwarded from the caller's contract on buf/buf_len/needed.
        unsafe { copy_out_c_string(text, buf, buf_len, needed) }
    })
}

/// Copies the full record of job `job_id` as one JSON object (arguments as logged, limits,
/// result, telemetry before and after) into `buf`, with the same buffer and *needed rules as
/// vigil_jobs_list_json. An id not in the log is VIGIL_E_INVALID_ARGUMENT. Reads the log: a
/// job whose records are damaged is VIGIL_E_CORRUPT, with vigil_last_error_message naming
/// the damaged segment file, offset and LSN. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_job_detail_json(
    rt: *const vigil_runtime,
    job_id: u64,
    buf: *mut c_char,
    buf_len: usize,
    needed: *mut usize,
) -> vigil_status {
    boundary(|| {
        let rt = runtime_ref(rt)?;
        non_null(needed, "needed")?;
        let detail = rt.runtime.job_detail(job_id)?;
        // SAFETY: forwarded from the caller's contract on buf/buf_len/needed.
        unsafe { copy_out_c_string(detail.to_string(), buf, buf_len, needed) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::exec::enforcement::{LimitEnforcement, Strength};
    use vigil_core::exec::Enforcement;

    fn entry(limit: &'static str, held: bool) -> LimitEnforcement {
        LimitEnforcement {
            limit,
            requested: Some("x".into()),
            strength: if held {
                Strength::Kernel
            } else {
                Strength::NotEnforced
            },
            held,
            mechanism: String::new(),
            not_held_reason: (!held).then(|| "why".into()),
        }
    }

    #[test]
    fn a_sandbox_rule_not_held_sets_the_sandbox_bit_not_the_output_bit() {
        let e = Enforcement {
            mode: "none",
            placement: None,
            kill: String::new(),
            kill_complete: false,
            accounting: String::new(),
            limits: vec![
                entry("output", true),
                entry("sandbox.write", true),
                entry("sandbox.signal", false),
            ],
            run_as: None,
            notices: Vec::new(),
        };
        assert_eq!(limits_not_held_bits(&e), VIGIL_LIMIT_SANDBOX);
        let e = Enforcement {
            limits: vec![entry("output", false), entry("memory", false)],
            ..e
        };
        assert_eq!(
            limits_not_held_bits(&e),
            VIGIL_LIMIT_OUTPUT | VIGIL_LIMIT_MEMORY
        );
    }
}
