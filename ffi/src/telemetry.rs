//! Telemetry: the latest sample and the recent history, converted field by field into the
//! fixed-size `vigil_sample` (no allocation on the latest-sample path).
use vigil_core::sample::{Percent, Sample, SAMPLE_CPUS_MAX};
use vigil_core::sampler::SAMPLE_HISTORY_LEN;

use crate::runtime::{runtime_ref, vigil_runtime};
use crate::vigil_status::{self, *};
use crate::{boundary, check_struct_size, non_null, out_param, FfiError};

/// Entries in vigil_sample.per_cpu; CPUs beyond it are counted in per_cpu_dropped.
pub const VIGIL_SAMPLE_CPUS_MAX: usize = 256;
const _: () = assert!(VIGIL_SAMPLE_CPUS_MAX == SAMPLE_CPUS_MAX);
/// Samples a runtime keeps: vigil_telemetry_history reports at most this many.
pub const VIGIL_SAMPLE_HISTORY_MAX: usize = 120;
const _: () = assert!(VIGIL_SAMPLE_HISTORY_MAX == SAMPLE_HISTORY_LEN);

/// One CPU's busy share.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct vigil_cpu_busy {
    /// The kernel's CPU id (ids of offline CPUs are absent, so ids may have gaps).
    pub id: u32,
    /// Busy percentage 0..100, or -1 when there is no data for this interval.
    pub busy_pct: f64,
}

/// Pressure stall information of one resource.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct vigil_psi {
    /// 1 when the kernel reports PSI for this resource, else 0 (and the rest is zero).
    pub present: u8,
    /// 1 when a `full` line is present.
    pub full_present: u8,
    /// `some` averages over 10/60/300 s, in percent.
    pub some_avg10: f64,
    pub some_avg60: f64,
    pub some_avg300: f64,
    /// Total `some` stall time, microseconds.
    pub some_total_us: u64,
    pub full_avg10: f64,
    pub full_avg60: f64,
    pub full_avg300: f64,
    pub full_total_us: u64,
}

/// A telemetry sample. Initialise with VIGIL_SAMPLE_INIT before passing it.
/// Percentages are 0..100, or -1 where there is no data (never NaN).
#[repr(C)]
pub struct vigil_sample {
    /// sizeof(vigil_sample), set by VIGIL_SAMPLE_INIT.
    pub struct_size: u32,
    /// Bits: 1 aggregate CPU re-baselined, 2 a per-CPU line re-baselined or new, 4 CPUs
    /// dropped, 8 memory available estimated, 16 first sample.
    pub flags: u32,
    /// Sample sequence number, from 1.
    pub seq: u64,
    /// CLOCK_BOOTTIME of the read, ns.
    pub timestamp_ns: u64,
    /// Time since the previous sample, ns.
    pub interval_ns: u64,
    pub cpu_busy_pct: f64,
    pub cpu_busy_no_steal_pct: f64,
    pub cpu_user_pct: f64,
    pub cpu_system_pct: f64,
    pub cpu_idle_pct: f64,
    pub cpu_iowait_pct: f64,
    pub cpu_steal_pct: f64,
    /// Valid entries in per_cpu.
    pub per_cpu_count: u32,
    /// CPUs that did not fit in per_cpu.
    pub per_cpu_dropped: u32,
    pub per_cpu: [vigil_cpu_busy; VIGIL_SAMPLE_CPUS_MAX],
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub memory_free_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
    /// 1 when memory_available_bytes is an estimate (kernel without MemAvailable).
    pub memory_available_estimated: u8,
    /// Load averages.
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub procs_running: u32,
    pub procs_blocked: u32,
    pub psi_cpu: vigil_psi,
    pub psi_memory: vigil_psi,
    pub psi_io: vigil_psi,
}

fn pct(p: Option<Percent>) -> f64 {
    p.map_or(-1.0, Percent::as_f64)
}

fn psi(p: &Option<vigil_core::procfs::Psi>) -> vigil_psi {
    let c = |v: u32| f64::from(v) / 100.0;
    match p {
        None => vigil_psi::default(),
        Some(p) => {
            let full = p.full.unwrap_or_default();
            vigil_psi {
                present: 1,
                full_present: u8::from(p.full.is_some()),
                some_avg10: c(p.some.avg10_centi),
                some_avg60: c(p.some.avg60_centi),
                some_avg300: c(p.some.avg300_centi),
                some_total_us: p.some.total_us,
                full_avg10: c(full.avg10_centi),
                full_avg60: c(full.avg60_centi),
                full_avg300: c(full.avg300_centi),
                full_total_us: full.total_us,
            }
        }
    }
}

/// Fills the C struct from a sample, field by field; allocation-free.
fn fill_sample(s: &Sample, out: &mut vigil_sample) {
    let cpu = s.cpu;
    out.flags = s.flags;
    out.seq = s.seq;
    out.timestamp_ns = s.timestamp_ns;
    out.interval_ns = s.interval_ns;
    out.cpu_busy_pct = pct(cpu.map(|c| c.busy));
    out.cpu_busy_no_steal_pct = pct(cpu.map(|c| c.busy_no_steal));
    out.cpu_user_pct = pct(cpu.map(|c| c.user));
    out.cpu_system_pct = pct(cpu.map(|c| c.system));
    out.cpu_idle_pct = pct(cpu.map(|c| c.idle));
    out.cpu_iowait_pct = pct(cpu.map(|c| c.iowait));
    out.cpu_steal_pct = pct(cpu.map(|c| c.steal));
    out.per_cpu_count = s.per_cpu.len() as u32;
    out.per_cpu_dropped = s.per_cpu_dropped;
    for (dst, src) in out.per_cpu.iter_mut().zip(s.per_cpu.iter()) {
        *dst = vigil_cpu_busy {
            id: u32::from(src.id),
            busy_pct: pct(src.busy),
        };
    }
    let m = s.memory.unwrap_or_default();
    out.memory_total_bytes = m.total_bytes;
    out.memory_available_bytes = m.available_bytes;
    out.memory_free_bytes = m.free_bytes;
    out.swap_total_bytes = m.swap_total_bytes;
    out.swap_free_bytes = m.swap_free_bytes;
    out.memory_available_estimated = u8::from(m.available_estimated);
    let l = s.load.unwrap_or_default();
    out.load1 = f64::from(l.load1_centi) / 100.0;
    out.load5 = f64::from(l.load5_centi) / 100.0;
    out.load15 = f64::from(l.load15_centi) / 100.0;
    out.procs_running = s.procs_running.unwrap_or(0).min(u64::from(u32::MAX)) as u32;
    out.procs_blocked = s.procs_blocked.unwrap_or(0).min(u64::from(u32::MAX)) as u32;
    out.psi_cpu = psi(&s.pressure.cpu);
    out.psi_memory = psi(&s.pressure.memory);
    out.psi_io = psi(&s.pressure.io);
}

/// Checks a caller's vigil_sample before it is written.
fn check_sample(out: &vigil_sample) -> Result<(), FfiError> {
    check_struct_size(
        out.struct_size,
        std::mem::size_of::<vigil_sample>(),
        "sample",
        "VIGIL_SAMPLE_INIT",
    )
}

/// Copies the runtime's latest telemetry sample into *out (initialised with
/// VIGIL_SAMPLE_INIT; the caller owns it). Does not allocate. VIGIL_E_UNAVAILABLE before the
/// first sample (the sampler takes one as soon as the runtime opens). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_telemetry_sample(
    rt: *const vigil_runtime,
    out: *mut vigil_sample,
) -> vigil_status {
    boundary(|| {
        let rt = runtime_ref(rt)?;
        let out = out_param(out, "out")?;
        // SAFETY: non-NULL; the caller owns a vigil_sample of at least struct_size bytes.
        let out = unsafe { &mut *out };
        check_sample(out)?;
        let telemetry = rt.runtime.telemetry();
        let found = telemetry.with_latest(|s| s.map(|s| fill_sample(s, out)));
        found.ok_or_else(|| {
            let why = telemetry
                .last_error()
                .unwrap_or_else(|| "no telemetry sample taken yet".into());
            FfiError::new(VIGIL_E_UNAVAILABLE, why)
        })
    })
}

/// Copies recent telemetry samples into the caller's array `out` of `out_len` entries, oldest
/// first: of the samples the runtime holds (at most VIGIL_SAMPLE_HISTORY_MAX) with a sequence
/// number above `after_seq` (0 for all), the newest `out_len`. *written receives how many were
/// copied and, when `available` is not NULL, *available how many such samples exist (so
/// available > written means the array was too small; that is not an error). Every entry of
/// `out` must be initialised with VIGIL_SAMPLE_INIT; entries past *written are not touched.
/// `out` may be NULL when out_len is 0 (to ask only how many exist). Allocates a temporary
/// copy of the history. Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn vigil_telemetry_history(
    rt: *const vigil_runtime,
    after_seq: u64,
    out: *mut vigil_sample,
    out_len: usize,
    written: *mut usize,
    available: *mut usize,
) -> vigil_status {
    boundary(|| {
        let rt = runtime_ref(rt)?;
        let written = out_param(written, "written")?;
        let out: &mut [vigil_sample] = if out_len == 0 {
            &mut []
        } else {
            non_null(out, "out")?;
            // SAFETY: the caller owns an array of out_len initialised vigil_sample entries.
            unsafe { std::slice::from_raw_parts_mut(out, out_len) }
        };
        out.iter().try_for_each(check_sample)?;
        let samples = rt.runtime.telemetry().since(after_seq);
        let newest = &samples[samples.len().saturating_sub(out.len())..];
        for (dst, src) in out.iter_mut().zip(newest) {
            fill_sample(src, dst);
        }
        // SAFETY: non-NULL out-parameters point to caller storage for one size_t.
        unsafe {
            *written = newest.len();
            if !available.is_null() {
                *available = samples.len();
            }
        }
        Ok(())
    })
}
