//! Opening and closing a runtime, and the limits jobs run under.
//!
//! A `vigil_runtime` wraps `vigil_core::runtime::Runtime`: the write-ahead log, the executor
//! and the sampling thread of one data directory.
use std::ffi::c_char;
use std::path::PathBuf;
use std::time::Duration;

use vigil_core::exec::Limits;
use vigil_core::runtime::{Runtime, RuntimeOptions};

use crate::vigil_status::{self, *};
use crate::{
    boundary, check_struct_size, close_handle, handle_ref, non_null, open_handle, opt_str,
    out_param, req_str, FfiError, HandleKind,
};

/// Limits of a job. Initialise with VIGIL_LIMITS_INIT. A field left 0 takes the runtime's
/// default for it (vigil_runtime_options.default_limits), and a default left 0 means "not
/// limited" (or, for max_output_bytes, 1 MiB per stream).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct vigil_limits {
    /// sizeof(vigil_limits), set by VIGIL_LIMITS_INIT.
    pub struct_size: u32,
    /// Wall-clock deadline from the start of the job, ms. When it passes, every process of
    /// the job is killed and the job is VIGIL_JOB_TIMED_OUT.
    pub timeout_ms: u64,
    /// CPU time of all the job's processes together, ms.
    pub cpu_time_ms: u64,
    /// Memory of the job (no swap), bytes.
    pub memory_bytes: u64,
    /// Processes and threads alive in the job at once.
    pub pids: u64,
    /// Output kept per stream (head and tail), bytes; at most 64 MiB.
    pub max_output_bytes: u64,
}

/// Options for vigil_runtime_open. Initialise with VIGIL_RUNTIME_OPTIONS_INIT.
#[repr(C)]
pub struct vigil_runtime_options {
    /// sizeof(vigil_runtime_options), set by VIGIL_RUNTIME_OPTIONS_INIT.
    pub struct_size: u32,
    /// Where vigil keeps its state (the write-ahead log under data_dir/wal); required. Created
    /// if missing. One runtime at a time may own a data directory. Borrowed for the call only.
    pub data_dir: *const c_char,
    /// Read /proc files beneath this directory; NULL for "/proc". Borrowed for the call only.
    pub proc_root: *const c_char,
    /// Telemetry sampling interval in milliseconds; 0 for the default (1000).
    pub sample_interval_ms: u32,
    /// Directory jobs start in; file capabilities are confined beneath it. NULL for the
    /// current directory at the time of vigil_runtime_open. Borrowed for the call only.
    pub job_root: *const c_char,
    /// Limits for fields a job's vigil_limits leaves 0 (and for jobs run with NULL limits);
    /// NULL for none. Borrowed for the call only.
    pub default_limits: *const vigil_limits,
}

/// An open vigil runtime: the write-ahead log, the job executor and the telemetry sampler of
/// one data directory. Opaque; thread-safe: every function taking a runtime may be called from
/// any thread concurrently, except vigil_runtime_close.
pub struct vigil_runtime {
    pub(crate) runtime: Runtime,
    pub(crate) job_root: PathBuf,
    pub(crate) default_limits: Limits,
}

const SAMPLE_INTERVAL_MS_DEFAULT: u32 = 1000;
/// Longest sampling interval accepted: an hour.
const SAMPLE_INTERVAL_MS_MAX: u32 = 3_600_000;

/// Borrows a live runtime handle.
pub(crate) fn runtime_ref<'a>(rt: *const vigil_runtime) -> Result<&'a vigil_runtime, FfiError> {
    // SAFETY: handle_ref dereferences only registered runtime handles.
    unsafe { handle_ref(rt, HandleKind::Runtime) }
}

/// `limits` over `base`: each non-zero field of `limits` replaces the one of `base`.
pub(crate) unsafe fn limits_over(
    limits: *const vigil_limits,
    base: &Limits,
) -> Result<Limits, FfiError> {
    if limits.is_null() {
        return Ok(base.clone());
    }
    // SAFETY: non-NULL limits point to a caller-owned struct of at least struct_size bytes.
    let l = unsafe { &*limits };
    check_struct_size(
        l.struct_size,
        std::mem::size_of::<vigil_limits>(),
        "limits",
        "VIGIL_LIMITS_INIT",
    )?;
    let ms = |v: u64, d: Option<Duration>| {
        if v == 0 {
            d
        } else {
            Some(Duration::from_millis(v))
        }
    };
    let count = |v: u64, d: Option<u64>| if v == 0 { d } else { Some(v) };
    Ok(Limits {
        timeout: ms(l.timeout_ms, base.timeout),
        cpu_time: ms(l.cpu_time_ms, base.cpu_time),
        memory_bytes: count(l.memory_bytes, base.memory_bytes),
        pids: count(l.pids, base.pids),
        max_output_bytes: count(l.max_output_bytes, Some(base.max_output_bytes))
            .unwrap_or(base.max_output_bytes),
    })
}

/// Opens the runtime of `options->data_dir`: recovers its write-ahead log (jobs a previous
/// process left unfinished are recorded as interrupted), starts telemetry sampling and waits
/// briefly for the first sample. `options` is required (data_dir has no default).
///
/// On success *out receives a handle owned by the caller, to close with vigil_runtime_close.
/// Fails with VIGIL_E_IO when the data directory is owned by another open runtime (in this or
/// another process) or cannot be created, VIGIL_E_CORRUPT when its log is damaged.
/// Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_runtime_open(
    options: *const vigil_runtime_options,
    out: *mut *mut vigil_runtime,
) -> vigil_status {
    boundary(|| {
        let out = out_param(out, "out")?;
        non_null(options, "options")?;
        // SAFETY: non-NULL options point to a caller-owned struct of at least struct_size.
        let o = unsafe { &*options };
        check_struct_size(
            o.struct_size,
            std::mem::size_of::<vigil_runtime_options>(),
            "options",
            "VIGIL_RUNTIME_OPTIONS_INIT",
        )?;
        // SAFETY: header contract: NULL or NUL-terminated strings, a NULL or valid limits.
        let (data_dir, proc_root, job_root, default_limits) = unsafe {
            (
                req_str(o.data_dir, "options.data_dir")?,
                opt_str(o.proc_root, "options.proc_root")?,
                opt_str(o.job_root, "options.job_root")?,
                limits_over(o.default_limits, &Limits::default())?,
            )
        };
        if data_dir.is_empty() {
            return Err(FfiError::invalid("options.data_dir is empty"));
        }
        if o.sample_interval_ms > SAMPLE_INTERVAL_MS_MAX {
            return Err(FfiError::invalid(format!(
                "options.sample_interval_ms {} exceeds {SAMPLE_INTERVAL_MS_MAX}",
                o.sample_interval_ms
            )));
        }
        let job_root = match job_root {
            Some(r) => PathBuf::from(r),
            None => std::env::current_dir()
                .map_err(|e| FfiError::new(VIGIL_E_IO, format!("current directory: {e}")))?,
        };
        let mut rt_options = RuntimeOptions::new(data_dir);
        if let Some(p) = proc_root {
            rt_options.proc_root = PathBuf::from(p);
        }
        let interval_ms = match o.sample_interval_ms {
            0 => SAMPLE_INTERVAL_MS_DEFAULT,
            ms => ms,
        };
        rt_options.sample_interval = Duration::from_millis(interval_ms.into());
        let runtime = Runtime::open(rt_options)?;
        let ptr = open_handle(
            vigil_runtime {
                runtime,
                job_root,
                default_limits,
            },
            HandleKind::Runtime,
        )?;
        // SAFETY: `out` is non-NULL and points to caller storage for one pointer.
        unsafe { *out = ptr };
        Ok(())
    })
}

/// Closes a runtime: stops sampling, makes everything appended to the log durable and frees
/// the handle. NULL is a no-op; closing twice gives VIGIL_E_CLOSED. No other call may be using
/// the runtime concurrently. Job handles stay valid. WAL readers stay valid too, and keep the
/// log open (and the data directory owned) until they are closed.
#[no_mangle]
pub unsafe extern "C" fn vigil_runtime_close(rt: *mut vigil_runtime) -> vigil_status {
    // SAFETY: close_handle frees only registered runtime handles.
    boundary(|| unsafe { close_handle(rt, HandleKind::Runtime) })
}
