//! From two /proc snapshots to one [`Sample`]: CPU deltas with the rules careful tools use,
//! memory, load and pressure, and the fixed-size [`SampleRing`] that keeps recent samples.
//!
//! CPU rules, and why:
//! - The kernel counts `guest` inside `user` and `guest_nice` inside `nice`; we subtract them
//!   (saturating: `guest` may exceed `user` by a tick, as the two are read at different moments)
//!   so guest time is not counted twice.
//! - Every field's delta is checked. A counter that goes backwards (iowait on NO_HZ kernels, a
//!   CPU unplugged and replugged, steal glitches on some hypervisors) re-baselines that CPU: it
//!   has no data for this interval, and the next interval measures from the new values.
//! - The denominator is the sum of the field deltas, never wall time × HZ.
//! - A zero denominator is "no data" (`None`), never NaN, never a division by zero.
//! - Busy is reported with steal (the CPU was not ours) and without it; iowait and steal are
//!   reported separately.
//!
//! Percentages are [`Percent`]: hundredths of a percent in a `u16`, so a `Sample` holds no
//! floating point that could be NaN.
mod blob;

use heapless::{HistoryBuf, Vec};

use crate::procfs::{CpuLine, CpuTimes, LoadAvg, MemInfo, ProcStat, Psi};

pub use blob::decode_blob;
#[cfg(feature = "std")]
pub use blob::encode_blob;

/// Per-CPU entries a [`Sample`] carries; CPUs beyond it are counted in
/// [`Sample::per_cpu_dropped`].
pub const SAMPLE_CPUS_MAX: usize = 256;

/// A share in hundredths of a percent (basis points): 2550 is 25.50 %. Always `0..=10000`:
/// the field is private, and construction ([`Percent::new`], [`Percent::ratio`]) and decoding
/// (serde, e.g. from the log) refuse anything above.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(try_from = "u16", into = "u16")]
pub struct Percent(u16);

impl Percent {
    /// 0 %.
    pub const ZERO: Percent = Percent(0);
    /// 100 %.
    pub const FULL: Percent = Percent(10_000);

    /// `basis_points` hundredths of a percent; `None` above 10000 (100 %).
    #[inline]
    pub const fn new(basis_points: u16) -> Option<Percent> {
        if basis_points <= Percent::FULL.0 {
            Some(Percent(basis_points))
        } else {
            None
        }
    }

    /// The share in hundredths of a percent, `0..=10000`.
    #[inline]
    pub const fn basis_points(self) -> u16 {
        self.0
    }

    /// 100 % minus this share.
    #[inline]
    pub const fn complement(self) -> Percent {
        Percent(Percent::FULL.0 - self.0)
    }

    /// `part / whole`, clamped to 100 %; `None` when `whole` is zero (no data).
    #[inline]
    pub fn ratio(part: u64, whole: u64) -> Option<Percent> {
        if whole == 0 {
            return None;
        }
        let bp = u128::from(part.min(whole)) * 10_000 / u128::from(whole);
        // bp <= 10_000 because part <= whole.
        Some(Percent(bp as u16))
    }

    /// As a float percentage (25.5 for `Percent(2550)`), for display and JSON.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

/// A share above 10000 basis points, refused when a [`Percent`] is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PercentOutOfRange(pub u16);

impl core::fmt::Display for PercentOutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} hundredths of a percent is above 100 %", self.0)
    }
}

impl core::error::Error for PercentOutOfRange {}

impl TryFrom<u16> for Percent {
    type Error = PercentOutOfRange;

    fn try_from(basis_points: u16) -> Result<Percent, PercentOutOfRange> {
        Percent::new(basis_points).ok_or(PercentOutOfRange(basis_points))
    }
}

impl From<Percent> for u16 {
    fn from(p: Percent) -> u16 {
        p.0
    }
}

/// One interval's CPU time shares. Every share has the same denominator, `total_ticks`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuUsage {
    /// Everything but idle and iowait (steal included: the CPU was busy, not with us).
    pub busy: Percent,
    /// Busy without steal: the time this machine's own work ran.
    pub busy_no_steal: Percent,
    /// user without guest.
    pub user: Percent,
    /// nice without guest_nice.
    pub nice: Percent,
    /// Kernel mode.
    pub system: Percent,
    /// Idle.
    pub idle: Percent,
    /// Idle with I/O outstanding.
    pub iowait: Percent,
    /// Servicing hardware interrupts.
    pub irq: Percent,
    /// Servicing softirqs.
    pub softirq: Percent,
    /// Stolen by the hypervisor for other guests.
    pub steal: Percent,
    /// guest + guest_nice.
    pub guest: Percent,
    /// The denominator: sum of the field deltas, in USER_HZ ticks.
    pub total_ticks: u64,
}

/// The outcome of comparing two readings of one CPU line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuDelta {
    /// Time passed: the shares of the interval.
    Usage(CpuUsage),
    /// No time passed on this CPU (identical readings).
    NoData,
    /// A counter went backwards; the new reading becomes the baseline.
    Rebaselined,
}

/// The ten columns with guest removed from user and guest_nice from nice.
fn normalized(t: &CpuTimes) -> [u64; 10] {
    [
        t.user.saturating_sub(t.guest),
        t.nice.saturating_sub(t.guest_nice),
        t.system,
        t.idle,
        t.iowait,
        t.irq,
        t.softirq,
        t.steal,
        t.guest,
        t.guest_nice,
    ]
}

/// Compares two readings of the same CPU (or of the aggregate line).
pub fn cpu_delta(prev: &CpuTimes, cur: &CpuTimes) -> CpuDelta {
    let (p, c) = (normalized(prev), normalized(cur));
    let mut d = [0u64; 10];
    for i in 0..10 {
        match c[i].checked_sub(p[i]) {
            Some(v) => d[i] = v,
            None => return CpuDelta::Rebaselined,
        }
    }
    // Ten deltas of u64 can overflow u64 only with absurd inputs; treat that as a glitch too.
    let Some(total) = d.iter().try_fold(0u64, |acc, &v| acc.checked_add(v)) else {
        return CpuDelta::Rebaselined;
    };
    if total == 0 {
        return CpuDelta::NoData;
    }
    let [user, nice, system, idle, iowait, irq, softirq, steal, guest, guest_nice] = d;
    let share = |v: u64| Percent::ratio(v, total).unwrap_or_default();
    let busy = total - idle - iowait;
    debug_assert!(busy >= steal);
    let out = CpuUsage {
        busy: share(busy),
        busy_no_steal: share(busy - steal),
        user: share(user),
        nice: share(nice),
        system: share(system),
        idle: share(idle),
        iowait: share(iowait),
        irq: share(irq),
        softirq: share(softirq),
        steal: share(steal),
        guest: share(guest.saturating_add(guest_nice)),
        total_ticks: total,
    };
    assert!(out.busy <= Percent::FULL && out.busy_no_steal <= out.busy);
    CpuDelta::Usage(out)
}

/// One CPU's busy share in a [`Sample`], keyed by the kernel's CPU id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuBusy {
    /// The kernel's CPU id (NR_CPUS is at most 8192, so u16 holds every id).
    pub id: u16,
    /// `None`: the CPU is new, re-baselined, or had no elapsed ticks.
    pub busy: Option<Percent>,
}

/// Memory figures of a sample, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemorySample {
    /// `MemTotal`, in bytes.
    pub total_bytes: u64,
    /// `MemAvailable` (or vigil's estimate), in bytes; never above `total_bytes`.
    pub available_bytes: u64,
    /// `MemFree`, in bytes.
    pub free_bytes: u64,
    /// `Cached` (page cache), in bytes; 0 when the kernel did not print it.
    pub cached_bytes: u64,
    /// `SwapTotal`, in bytes; 0 without swap.
    pub swap_total_bytes: u64,
    /// `SwapFree`, in bytes; 0 without swap.
    pub swap_free_bytes: u64,
    /// `Dirty` (waiting to be written back), in bytes; 0 when the kernel did not print it.
    pub dirty_bytes: u64,
    /// `available_bytes` is vigil's estimate (kernel without MemAvailable).
    pub available_estimated: bool,
}

impl MemorySample {
    /// The sample's figures from a parsed /proc/meminfo; fields the kernel did not print are 0.
    pub fn from_meminfo(m: &MemInfo) -> Self {
        Self {
            total_bytes: m.total_bytes,
            available_bytes: m.available_bytes,
            free_bytes: m.free_bytes,
            cached_bytes: m.cached_bytes.unwrap_or(0),
            swap_total_bytes: m.swap_total_bytes.unwrap_or(0),
            swap_free_bytes: m.swap_free_bytes.unwrap_or(0),
            dirty_bytes: m.dirty_bytes.unwrap_or(0),
            available_estimated: m.available_estimated,
        }
    }

    /// Available memory as a share of total; `None` when total is zero.
    pub fn available(&self) -> Option<Percent> {
        Percent::ratio(self.available_bytes, self.total_bytes)
    }
}

/// PSI of the three resources; `None` where the kernel has no /proc/pressure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pressure {
    /// CPU pressure (/proc/pressure/cpu).
    pub cpu: Option<Psi>,
    /// Memory pressure (/proc/pressure/memory).
    pub memory: Option<Psi>,
    /// I/O pressure (/proc/pressure/io).
    pub io: Option<Psi>,
}

/// Bits of [`Sample::flags`].
pub mod flags {
    /// The aggregate CPU line went backwards; `cpu` is `None` for this interval.
    pub const CPU_REBASELINED: u32 = 1 << 0;
    /// At least one per-CPU line went backwards or appeared; its `busy` is `None`.
    pub const PER_CPU_REBASELINED: u32 = 1 << 1;
    /// More CPUs than [`super::SAMPLE_CPUS_MAX`] (or the parser's table); see `per_cpu_dropped`.
    pub const PER_CPU_DROPPED: u32 = 1 << 2;
    /// Memory available is estimated.
    pub const MEMORY_ESTIMATED: u32 = 1 << 3;
    /// First sample: there was no previous snapshot to take deltas from.
    pub const FIRST: u32 = 1 << 4;
    /// MemAvailable was above MemTotal (a container view); memory available was cut to the
    /// total. A flag, not a field of [`super::MemorySample`], so logged samples keep their
    /// encoding.
    pub const MEMORY_AVAILABLE_CLAMPED: u32 = 1 << 5;
    /// The CPU shares (and context switches per second) are averages since boot, not over an
    /// interval between two readings: a sample taken alone, with no earlier reading behind
    /// it (a job's `telemetry_before`). `interval_ns` is then the time since boot.
    pub const CPU_SINCE_BOOT: u32 = 1 << 6;
}

/// Whether the per-CPU lines' ids strictly ascend, as the kernel writes them.
fn cpu_ids_ascend(cpus: &[CpuLine]) -> bool {
    cpus.windows(2).all(|w| w[0].id < w[1].id)
}

/// One telemetry sample: a fixed-size value, cheap to copy into a ring or a WAL record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Sequence number, starting at 1 and increasing by one per sample of a sampler.
    pub seq: u64,
    /// CLOCK_BOOTTIME (or MONOTONIC where BOOTTIME is missing) at the read, in ns.
    pub timestamp_ns: u64,
    /// Time since the previous sample, in ns (0 for the first).
    pub interval_ns: u64,
    /// Aggregate CPU shares; `None` with no data (first sample, zero ticks, re-baselined).
    pub cpu: Option<CpuUsage>,
    /// Busy share of each CPU, ascending by id, at most [`SAMPLE_CPUS_MAX`].
    pub per_cpu: Vec<CpuBusy, SAMPLE_CPUS_MAX>,
    /// CPUs left out of `per_cpu` because there were more than [`SAMPLE_CPUS_MAX`].
    pub per_cpu_dropped: u32,
    /// Context switches per second over the interval.
    pub ctxt_per_sec: Option<u64>,
    /// Tasks runnable at the read (/proc/stat `procs_running`); `None` when the file lacks the
    /// line.
    pub procs_running: Option<u64>,
    /// Tasks blocked on I/O at the read (/proc/stat `procs_blocked`); `None` when the file lacks
    /// the line.
    pub procs_blocked: Option<u64>,
    /// Memory figures from /proc/meminfo; `None` when the sample holds none (one not built by a
    /// sampler).
    pub memory: Option<MemorySample>,
    /// Load averages from /proc/loadavg; `None` when the sample holds none.
    pub load: Option<LoadAvg>,
    /// Pressure stall information of CPU, memory and I/O.
    pub pressure: Pressure,
    /// See [`flags`].
    pub flags: u32,
}

impl Default for Sample {
    fn default() -> Self {
        Self {
            seq: 0,
            timestamp_ns: 0,
            interval_ns: 0,
            cpu: None,
            per_cpu: Vec::new(),
            per_cpu_dropped: 0,
            ctxt_per_sec: None,
            procs_running: None,
            procs_blocked: None,
            memory: None,
            load: None,
            pressure: Pressure::default(),
            flags: 0,
        }
    }
}

impl Sample {
    /// Fills the CPU part of `self` from two /proc/stat snapshots taken `interval_ns` apart.
    /// Per-CPU lines are matched by id, so offline CPUs and hot-plug never misalign them.
    pub fn set_cpu<const N: usize>(
        &mut self,
        prev: Option<&ProcStat<N>>,
        cur: &ProcStat<N>,
        interval_ns: u64,
    ) {
        self.reset_cpu(cur, interval_ns);
        let Some(prev) = prev else {
            self.flags |= flags::FIRST;
            self.fill_per_cpu(cur, |_| None);
            return;
        };
        match cpu_delta(&prev.total, &cur.total) {
            CpuDelta::Usage(u) => self.cpu = Some(u),
            CpuDelta::NoData => {}
            CpuDelta::Rebaselined => self.flags |= flags::CPU_REBASELINED,
        }
        if let (Some(a), Some(b)) = (prev.ctxt, cur.ctxt) {
            if interval_ns > 0 && b >= a {
                let per_sec = u128::from(b - a) * 1_000_000_000 / u128::from(interval_ns);
                self.ctxt_per_sec = u64::try_from(per_sec).ok();
            }
        }
        if !cpu_ids_ascend(&prev.cpus) || !cpu_ids_ascend(&cur.cpus) {
            // The merge walk below pairs CPUs by id only over ascending tables: a /proc/stat
            // in another order (a captured or synthetic tree) gets no per-CPU data instead of
            // deltas against the wrong CPU.
            self.flags |= flags::PER_CPU_REBASELINED;
            self.fill_per_cpu(cur, |_| None);
            return;
        }
        let mut prev_cpus = prev.cpus.iter().peekable();
        let mut rebaselined = false;
        self.fill_per_cpu(cur, |line: &CpuLine| {
            // Both tables are in ascending id order: a merge walk, not a search per CPU.
            while prev_cpus.next_if(|p| p.id < line.id).is_some() {}
            match prev_cpus.next_if(|p| p.id == line.id) {
                Some(p) => match cpu_delta(&p.times, &line.times) {
                    CpuDelta::Usage(u) => Some(u.busy),
                    CpuDelta::NoData => None,
                    CpuDelta::Rebaselined => {
                        rebaselined = true;
                        None
                    }
                },
                None => {
                    // A CPU that came online since the last sample.
                    rebaselined = true;
                    None
                }
            }
        });
        if rebaselined {
            self.flags |= flags::PER_CPU_REBASELINED;
        }
    }

    /// Fills the CPU part of `self` from one /proc/stat reading alone: shares since boot,
    /// `uptime_ns` (CLOCK_BOOTTIME at the reading) as the interval, flag
    /// [`flags::CPU_SINCE_BOOT`].
    pub fn set_cpu_since_boot<const N: usize>(&mut self, cur: &ProcStat<N>, uptime_ns: u64) {
        self.reset_cpu(cur, uptime_ns);
        self.flags |= flags::CPU_SINCE_BOOT;
        let boot = CpuTimes::default();
        if let CpuDelta::Usage(u) = cpu_delta(&boot, &cur.total) {
            self.cpu = Some(u);
        }
        if let Some(ctxt) = cur.ctxt.filter(|_| uptime_ns > 0) {
            let per_sec = u128::from(ctxt) * 1_000_000_000 / u128::from(uptime_ns);
            self.ctxt_per_sec = u64::try_from(per_sec).ok();
        }
        self.fill_per_cpu(cur, |line| match cpu_delta(&boot, &line.times) {
            CpuDelta::Usage(u) => Some(u.busy),
            CpuDelta::NoData | CpuDelta::Rebaselined => None,
        });
    }

    /// Clears the CPU part and takes what needs no delta from `cur`.
    fn reset_cpu<const N: usize>(&mut self, cur: &ProcStat<N>, interval_ns: u64) {
        self.cpu = None;
        self.per_cpu.clear();
        self.per_cpu_dropped = cur.cpus_dropped;
        self.procs_running = cur.procs_running;
        self.procs_blocked = cur.procs_blocked;
        self.ctxt_per_sec = None;
        self.interval_ns = interval_ns;
    }

    /// Checks done, fills `per_cpu` from `cur` in its order with `busy_of` each line.
    fn fill_per_cpu<const N: usize>(
        &mut self,
        cur: &ProcStat<N>,
        mut busy_of: impl FnMut(&CpuLine) -> Option<Percent>,
    ) {
        for line in cur.cpus.iter() {
            let busy = busy_of(line);
            let Ok(id) = u16::try_from(line.id) else {
                self.per_cpu_dropped = self.per_cpu_dropped.saturating_add(1);
                continue;
            };
            if self.per_cpu.push(CpuBusy { id, busy }).is_err() {
                self.per_cpu_dropped = self.per_cpu_dropped.saturating_add(1);
            }
        }
        if self.per_cpu_dropped > 0 {
            self.flags |= flags::PER_CPU_DROPPED;
        }
    }

    /// Sets the memory part from a parsed /proc/meminfo.
    pub fn set_memory(&mut self, m: &MemInfo) {
        self.memory = Some(MemorySample::from_meminfo(m));
        if m.available_estimated {
            self.flags |= flags::MEMORY_ESTIMATED;
        }
        if m.available_clamped {
            self.flags |= flags::MEMORY_AVAILABLE_CLAMPED;
        }
    }
}

/// The most recent `N` samples, oldest overwritten first. Fixed size, no allocation.
pub struct SampleRing<const N: usize> {
    samples: HistoryBuf<Sample, N>,
}

impl<const N: usize> Default for SampleRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> SampleRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            samples: HistoryBuf::new(),
        }
    }

    /// A ring on the heap, built in place: a ring of a few hundred samples is larger than a
    /// thread's stack can comfortably hold as a temporary in unoptimised builds.
    #[cfg(feature = "std")]
    pub fn new_boxed() -> std::boxed::Box<Self> {
        let mut uninit = std::boxed::Box::<Self>::new_uninit();
        uninit.write(Self::new());
        // SAFETY: fully initialised by the write above.
        unsafe { uninit.assume_init() }
    }

    /// Adds a sample; sequence numbers must increase, which keeps `since` a simple skip.
    pub fn push(&mut self, sample: Sample) {
        if let Some(latest) = self.samples.recent() {
            assert!(sample.seq > latest.seq, "sample sequence went backwards");
        }
        self.samples.write(sample);
    }

    /// The newest sample; `None` when the ring is empty.
    pub fn latest(&self) -> Option<&Sample> {
        self.samples.recent()
    }

    /// Samples held, at most `N`.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// No sample held yet.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Samples with `seq > after`, oldest first.
    pub fn since(&self, after: u64) -> impl Iterator<Item = &Sample> + '_ {
        self.samples
            .oldest_ordered()
            .skip_while(move |s| s.seq <= after)
    }

    /// The last `n` samples (fewer if the ring holds fewer), oldest first.
    pub fn last(&self, n: usize) -> impl Iterator<Item = &Sample> + '_ {
        let skip = self.samples.len().saturating_sub(n);
        self.samples.oldest_ordered().skip(skip)
    }
}

#[cfg(test)]
mod tests;
