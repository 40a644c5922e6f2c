//! Opening and closing a runtime, and the limits jobs run under.
//!
//! A `vigil_runtime` wraps `vigil_core::runtime::Runtime`: the write-ahead log, the executor
//! and the sampling thread of one data directory.
use std::ffi::c_char;
use std::path::PathBuf;
use std::time::Duration;

use vigil_core::exec::identity::UserSpec;
use vigil_core::exec::sandbox::SandboxMode;
use vigil_core::exec::{Limits, RequestedLimits};
use vigil_core::runtime::{Runtime, RuntimeOptions};

use crate::vigil_status::{self, *};
use crate::{
    boundary, check_struct_size, close_handle, handle_ref, non_null, open_handle, opt_str,
    out_param, req_str, FfiError, HandleKind,
};

/// Limits of a job. Initialise with VIGIL_LIMITS_INIT. A field left 0 takes the runtime's
/// default for it (vigil_runtime_options.default_limits), and a default left 0 means "not
/// limited" (or, for max_output_bytes, 1 MiB per stream). A field beyond its largest value is
/// VIGIL_E_INVALID_ARGUMENT, naming the field, before anything runs (the socket server takes
/// the same ranges).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct vigil_limits {
    /// sizeof(vigil_limits), set by VIGIL_LIMITS_INIT.
    pub struct_size: u32,
    /// Wall-clock deadline from the start of the job, ms. When it passes, every process of
    /// the job is killed and the job is VIGIL_JOB_TIMED_OUT. At most 86400000 (a day).
    pub timeout_ms: u64,
    /// CPU time of all the job's processes together, ms. At most 86400000 (a day).
    pub cpu_time_ms: u64,
    /// Memory of the job (no swap), bytes.
    pub memory_bytes: u64,
    /// Processes and threads alive in the job at once. At most 4194304, the most the kernel
    /// takes (PID_MAX_LIMIT).
    pub pids: u64,
    /// Output kept per stream (head and tail), bytes; at most 64 MiB.
    pub max_output_bytes: u64,
    /// 1: refuse the job (VIGIL_JOB_REJECTED, before anything runs) when a requested limit is
    /// not held here: memory and pids must be held by the kernel, wall and CPU time by vigil's
    /// supervisor with a kill that reaches every process (the job's JSON says how each limit is
    /// held). 0 takes the runtime's default; a default of 1 cannot be lowered by a job.
    /// Appended after max_output_bytes: a caller built before it existed passes the shorter
    /// struct_size (48) and gets the runtime's default.
    pub require_enforcement: u32,
    /// Paths a shell or exec job may also write beneath (besides its root and its private
    /// TMPDIR): an array of allow_write_count NUL-terminated UTF-8 absolute paths, or NULL.
    /// Added to the runtime default's. Borrowed for the call only. Appended after
    /// require_enforcement, like deny_read and sandbox: a caller built before they existed
    /// passes a struct_size (56) that does not cover them, and they are not read.
    pub allow_write: *const *const c_char,
    /// Entries in allow_write.
    pub allow_write_count: usize,
    /// Paths a shell or exec job may not read (besides vigil's data dir and the default deny
    /// list): as allow_write.
    pub deny_read: *const *const c_char,
    /// Entries in deny_read.
    pub deny_read_count: usize,
    /// Sandbox of shell and exec jobs: VIGIL_SANDBOX_DEFAULT (0: the runtime default's, set in
    /// vigil_runtime_options.default_limits; off when that sets none, as before this field
    /// existed: a C host opts in), VIGIL_SANDBOX_OFF, VIGIL_SANDBOX_WORKSPACE or
    /// VIGIL_SANDBOX_STRICT. The job's JSON says which rule is held and by whom.
    pub sandbox: u32,
    /// The user a job runs as (a file job's work is done by a vigil thread switched to it): a
    /// NUL-terminated name from the password database or a decimal uid (a uid without an
    /// entry runs with the group of the same number and no supplementary groups); NULL takes
    /// the runtime default's, and vigil's own user when that names none. Switching needs a
    /// root process: otherwise, and for an unknown name, the job is VIGIL_JOB_REJECTED, before
    /// anything runs, with the reason. The job's JSON names the user (enforcement.run_as).
    /// Borrowed for the call only. Appended after sandbox: a caller built before it existed
    /// passes a struct_size that does not cover it, and it is not read.
    pub user: *const c_char,
}

/// vigil_limits.sandbox: the runtime default's mode.
pub const VIGIL_SANDBOX_DEFAULT: u32 = 0;
/// vigil_limits.sandbox: no sandbox.
pub const VIGIL_SANDBOX_OFF: u32 = 1;
/// vigil_limits.sandbox: writes only beneath the root, a private TMPDIR and the usual
/// devices; reads all but vigil's data dir and the deny list; cannot signal vigil (Landlock).
pub const VIGIL_SANDBOX_WORKSPACE: u32 = 2;
/// vigil_limits.sandbox: workspace without network (only AF_UNIX sockets) and io_uring.
pub const VIGIL_SANDBOX_STRICT: u32 = 3;

/// Most entries in allow_write or deny_read.
const SANDBOX_PATHS_MAX: usize = 64;

/// sizeof(vigil_limits) before `require_enforcement` was appended: still accepted.
const LIMITS_V1_BYTES: usize = std::mem::offset_of!(vigil_limits, require_enforcement);
/// The bytes a caller's struct_size must cover for `require_enforcement` to be read.
const LIMITS_REQUIRE_END: usize = LIMITS_V1_BYTES + std::mem::size_of::<u32>();
/// The bytes a caller's struct_size must cover for the sandbox fields to be read.
const LIMITS_SANDBOX_END: usize =
    std::mem::offset_of!(vigil_limits, sandbox) + std::mem::size_of::<u32>();

/// The bytes a caller's struct_size must cover for `user` to be read.
const LIMITS_USER_END: usize =
    std::mem::offset_of!(vigil_limits, user) + std::mem::size_of::<*const c_char>();

/// `count` C strings at `list` as absolute paths.
///
/// # Safety
/// `list` is NULL or points to `count` NULL or NUL-terminated strings (header contract).
unsafe fn path_list(
    list: *const *const c_char,
    count: usize,
    name: &str,
) -> Result<Vec<PathBuf>, FfiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    non_null(list, name)?;
    if count > SANDBOX_PATHS_MAX {
        return Err(FfiError::invalid(format!(
            "limits.{name}: at most {SANDBOX_PATHS_MAX} paths, not {count}"
        )));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: i < count, within the caller's array.
        let p = unsafe { list.add(i).read() };
        // SAFETY: each entry is a NUL-terminated string (header contract).
        let s = unsafe { req_str(p, name) }?;
        if !s.starts_with('/') {
            return Err(FfiError::invalid(format!(
                "limits.{name}: {s:?} is not an absolute path"
            )));
        }
        out.push(PathBuf::from(s));
    }
    Ok(out)
}

/// A job's limits and whether they must all be held.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunLimits {
    pub(crate) limits: Limits,
    pub(crate) require_enforcement: bool,
}

/// Options for vigil_runtime_open. Initialise with VIGIL_RUNTIME_OPTIONS_INIT.
#[repr(C)]
pub struct vigil_runtime_options {
    /// sizeof(vigil_runtime_options), set by VIGIL_RUNTIME_OPTIONS_INIT.
    pub struct_size: u32,
    /// Where vigil keeps its state (the write-ahead log under data_dir/wal); required. Created
    /// if missing. Several runtimes, in this and other processes, may share a data directory
    /// and its log. Borrowed for the call only.
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
    /// Size of each new log segment in bytes; 0 for the default (64 MiB). Small segments make
    /// a log rotate (and retire old segments) quickly. A caller built against a header
    /// without this field passes a smaller struct_size and gets the default.
    pub wal_segment_bytes: u64,
    /// Retire the oldest log segments once the log holds more than this many bytes; 0 for the
    /// default (4 GiB). Read like wal_segment_bytes.
    pub wal_retain_bytes: u64,
}

/// struct_size of a vigil_runtime_options from before the WAL fields: still accepted.
const RUNTIME_OPTIONS_BYTES_V1: usize =
    std::mem::offset_of!(vigil_runtime_options, wal_segment_bytes);

/// A copy of the caller's options: the fields its struct_size covers, the rest 0 / NULL (a
/// caller built against an older header has a shorter struct, and nothing past it is read).
///
/// # Safety
/// `options` is non-NULL and points to a caller-owned struct of at least struct_size bytes.
unsafe fn read_options(
    options: *const vigil_runtime_options,
) -> Result<vigil_runtime_options, FfiError> {
    // SAFETY: struct_size is the first field of every version of the struct.
    let struct_size = unsafe { std::ptr::addr_of!((*options).struct_size).read_unaligned() };
    check_struct_size(
        struct_size,
        RUNTIME_OPTIONS_BYTES_V1,
        "options",
        "VIGIL_RUNTIME_OPTIONS_INIT",
    )?;
    let mut copy = vigil_runtime_options {
        struct_size,
        data_dir: std::ptr::null(),
        proc_root: std::ptr::null(),
        sample_interval_ms: 0,
        job_root: std::ptr::null(),
        default_limits: std::ptr::null(),
        wal_segment_bytes: 0,
        wal_retain_bytes: 0,
    };
    let known = (struct_size as usize).min(std::mem::size_of::<vigil_runtime_options>());
    // SAFETY: the caller's struct holds at least `known` bytes (its struct_size), the copy
    // holds size_of bytes, and every bit pattern of the fields' bytes is a valid value.
    unsafe {
        std::ptr::copy_nonoverlapping(
            options.cast::<u8>(),
            std::ptr::addr_of_mut!(copy).cast::<u8>(),
            known,
        )
    };
    Ok(copy)
}

/// An open vigil runtime: the write-ahead log, the job executor and the telemetry sampler of
/// one data directory. Opaque; thread-safe: every function taking a runtime may be called from
/// any thread concurrently, except vigil_runtime_close.
pub struct vigil_runtime {
    pub(crate) runtime: Runtime,
    pub(crate) job_root: PathBuf,
    pub(crate) default_limits: RunLimits,
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
    base: &RunLimits,
) -> Result<RunLimits, FfiError> {
    if limits.is_null() {
        return Ok(base.clone());
    }
    // SAFETY: non-NULL limits point to a caller-owned struct of at least struct_size bytes;
    // struct_size is read first, and only fields within it are read after (an older caller's
    // struct is shorter than this one).
    let struct_size = unsafe { std::ptr::addr_of!((*limits).struct_size).read() };
    check_struct_size(struct_size, LIMITS_V1_BYTES, "limits", "VIGIL_LIMITS_INIT")?;
    // SAFETY: each field read lies within the first LIMITS_V1_BYTES, checked above.
    let (timeout_ms, cpu_time_ms, memory_bytes, pids, max_output_bytes) = unsafe {
        (
            std::ptr::addr_of!((*limits).timeout_ms).read(),
            std::ptr::addr_of!((*limits).cpu_time_ms).read(),
            std::ptr::addr_of!((*limits).memory_bytes).read(),
            std::ptr::addr_of!((*limits).pids).read(),
            std::ptr::addr_of!((*limits).max_output_bytes).read(),
        )
    };
    let require = if struct_size as usize >= LIMITS_REQUIRE_END {
        // SAFETY: struct_size covers the field.
        unsafe { std::ptr::addr_of!((*limits).require_enforcement).read() }
    } else {
        0
    };
    let mut sandbox = base.limits.sandbox.clone();
    if struct_size as usize >= LIMITS_SANDBOX_END {
        // SAFETY: struct_size covers every sandbox field.
        let (mode, aw, awn, dr, drn) = unsafe {
            (
                std::ptr::addr_of!((*limits).sandbox).read(),
                std::ptr::addr_of!((*limits).allow_write).read(),
                std::ptr::addr_of!((*limits).allow_write_count).read(),
                std::ptr::addr_of!((*limits).deny_read).read(),
                std::ptr::addr_of!((*limits).deny_read_count).read(),
            )
        };
        sandbox.mode = match mode {
            VIGIL_SANDBOX_DEFAULT => sandbox.mode,
            VIGIL_SANDBOX_OFF => Some(SandboxMode::Off),
            VIGIL_SANDBOX_WORKSPACE => Some(SandboxMode::Workspace),
            VIGIL_SANDBOX_STRICT => Some(SandboxMode::Strict),
            other => {
                return Err(FfiError::invalid(format!(
                    "limits.sandbox must be a VIGIL_SANDBOX_* value (0-3), not {other}"
                )))
            }
        };
        // SAFETY: header contract for both lists.
        sandbox
            .allow_write
            .extend(unsafe { path_list(aw, awn, "allow_write") }?);
        // SAFETY: as above.
        sandbox
            .deny_read
            .extend(unsafe { path_list(dr, drn, "deny_read") }?);
    }
    let mut user = base.limits.user.clone();
    if struct_size as usize >= LIMITS_USER_END {
        // SAFETY: struct_size covers the field; a non-NULL user is a NUL-terminated string
        // (header contract).
        let given = unsafe { opt_str(std::ptr::addr_of!((*limits).user).read(), "limits.user") }?;
        if let Some(u) = given {
            user = Some(
                UserSpec::parse(u).map_err(|e| FfiError::invalid(format!("limits.user: {e}")))?,
            );
        }
    }
    let given = |v: u64| (v != 0).then_some(v);
    let requested = RequestedLimits {
        timeout_ms: given(timeout_ms),
        cpu_time_ms: given(cpu_time_ms),
        memory_bytes: given(memory_bytes),
        pids: given(pids),
        max_output_bytes: given(max_output_bytes),
    };
    requested
        .check()
        .map_err(|e| FfiError::invalid(format!("limits: {e}")))?;
    let mut limits = requested.over(&base.limits);
    limits.sandbox = sandbox;
    limits.user = user;
    Ok(RunLimits {
        limits,
        require_enforcement: base.require_enforcement || require != 0,
    })
}

/// Opens the runtime of `options->data_dir`: recovers its write-ahead log (jobs a previous
/// process left unfinished are recorded as interrupted), starts telemetry sampling and waits
/// briefly for the first sample. `options` is required (data_dir has no default).
///
/// On success *out receives a handle owned by the caller, to close with vigil_runtime_close.
/// Fails with VIGIL_E_IO when the data directory cannot be created or opened, VIGIL_E_CORRUPT
/// when its log is damaged.
///
/// Makes the calling process non-dumpable (prctl PR_SET_DUMPABLE 0), so that jobs running as
/// the same uid cannot read its environment, descriptors or memory through /proc, nor ptrace
/// it. This lasts for the life of the process (also after vigil_runtime_close); core dumps of
/// the host process are off from then on. A job running as root can still read them.
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
        let o = unsafe { read_options(options) }?;
        vigil_core::exec::dumpable::make_non_dumpable()
            .map_err(|e| FfiError::new(VIGIL_E_IO, format!("prctl(PR_SET_DUMPABLE, 0): {e}")))?;
        // SAFETY: header contract: NULL or NUL-terminated strings, a NULL or valid limits.
        let (data_dir, proc_root, job_root, default_limits) = unsafe {
            (
                req_str(o.data_dir, "options.data_dir")?,
                opt_str(o.proc_root, "options.proc_root")?,
                opt_str(o.job_root, "options.job_root")?,
                limits_over(o.default_limits, &RunLimits::default())?,
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
        if o.wal_segment_bytes != 0 {
            rt_options.wal.segment_bytes = o.wal_segment_bytes;
        }
        if o.wal_retain_bytes != 0 {
            rt_options.wal.retention.bytes_max = Some(o.wal_retain_bytes);
        }
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
///
/// VIGIL_E_IO when the log could not be made durable: an earlier sync failed and poisoned it,
/// or this final one failed. Records appended since the last successful vigil_wal_sync may
/// then be lost; vigil_last_error_message says why. The handle is freed all the same.
#[no_mangle]
pub unsafe extern "C" fn vigil_runtime_close(rt: *mut vigil_runtime) -> vigil_status {
    boundary(|| {
        if rt.is_null() {
            return Ok(());
        }
        // The final sync first, so its failure is reported rather than lost in a drop.
        let durable = runtime_ref(rt).map(|live| live.runtime.wal().checkpoint());
        // SAFETY: close_handle frees only registered runtime handles.
        unsafe { close_handle(rt, HandleKind::Runtime) }?;
        match durable {
            Ok(Err(error)) => Err(error.into()),
            _ => Ok(()),
        }
    })
}

#[cfg(test)]
mod tests;
