//! Telemetry sample cost against its physical limit and against peer crates, in one run.
//!
//! Variants, each recorded per iteration in ns with hdrhistogram:
//! - `raw pread`: kept-open descriptors for /proc/stat, /proc/meminfo, /proc/loadavg and
//!   /proc/pressure/{cpu,memory,io}; one `pread(fd, buf, 0)` per file into a reused buffer, no
//!   parsing. The cost of the read syscalls alone: what no sampler can beat.
//! - `vigil sample`: `Sampler::sample_into` into a reused `Sample` (read + parse + CPU delta),
//!   then a push into a `SampleRing`.
//! - `procfs`: `KernelStats`, `Meminfo`, `LoadAverage`, `CpuPressure`, `MemoryPressure`,
//!   `IoPressure` via `::current()` (each opens, reads and closes its file), plus the same CPU
//!   delta against the previous reading, so it computes the same information.
//! - `sysinfo (new System)`: sysinfo skips /proc/stat re-reads within
//!   `MINIMUM_CPU_UPDATE_INTERVAL` (200 ms) of the last one, and the only public way to reset
//!   that clock is a new `System` (or `refresh_cpu_list`, which does the same first-refresh
//!   work). So each iteration builds `System::new()`, then `refresh_cpu_usage()`,
//!   `refresh_memory()` and `System::load_average()`. That includes sysinfo's construction work:
//!   an extra read of /proc/stat (boot time) and a read of /proc/cpuinfo. sysinfo reads no PSI.
//!
//! These four run interleaved: rounds of blocks, one block per variant, the order rotating
//! each round, so drift on a noisy machine touches all of them alike. Each block starts with a
//! few unrecorded iterations so a variant is measured in its own steady state rather than in
//! the caches the previous variant left behind.
//!
//! A paced section then takes one sample of each variant every 205 ms, with one long-lived
//! sysinfo `System` whose refreshes are all real at that spacing: the cost at a realistic
//! cadence, with cold caches, and sysinfo without its construction work.
//!
//! Last, parse-only: `ProcStat::<1024>::parse_into` over a synthetic 1024-CPU /proc/stat,
//! against a plain memchr newline count over the same bytes (the floor of touching them); and
//! `MemInfo::parse_into` against the sampler's `parse_sample_into` over a 54-key capture.
//!
//! Environment: `VIGIL_BENCH_ITERS` (recorded iterations per variant, default 20000),
//! `VIGIL_BENCH_PACED` (paced rounds, default 100; 0 skips the section).
//!
//! `VIGIL_BENCH_CALLGRIND=stat|meminfo|meminfo-sample` runs only 100 parses of the synthetic
//! 1024-CPU /proc/stat or of [`MEMINFO_CAPTURE`] (`parse_into` or the sampler's
//! `parse_sample_into`), untimed, for instruction counts that do not depend
//! on the machine's load:
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*parse_*into*' <bench>`.
use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use procfs::prelude::*;
use vigil_runtime::procfs::stat::{synthetic, ProcStat};
use vigil_runtime::sample::{Sample, SampleRing};
use vigil_runtime::sampler::Sampler;

const ITERS_DEFAULT: u64 = 20_000;
const PACED_ROUNDS_DEFAULT: u64 = 100;
/// Recorded iterations per variant per block.
const BLOCK_ITERS: u64 = 64;
/// Unrecorded iterations at the start of each block.
const BLOCK_WARM_ITERS: u64 = 4;
/// Unrecorded iterations of each variant before anything is recorded.
const WARMUP_ITERS: u64 = 500;
/// Longer than sysinfo's MINIMUM_CPU_UPDATE_INTERVAL (200 ms), so every refresh is real.
const PACED_INTERVAL_MS: u64 = 205;
const RING_LEN: usize = 120;
const SYNTHETIC_CPUS: u32 = 1024;
/// Larger than any of the six files on machines this bench runs on (checked at start).
const RAW_BUF_BYTES: usize = 64 * 1024;
const HIST_NS_MAX: u64 = 10_000_000_000;

const PROC_FILES: [&str; 6] = [
    "/proc/stat",
    "/proc/meminfo",
    "/proc/loadavg",
    "/proc/pressure/cpu",
    "/proc/pressure/memory",
    "/proc/pressure/io",
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_NS_MAX, 3).expect("valid histogram bounds")
}

/// One measured thing: how to run one iteration, and what it took.
struct Variant<'a> {
    name: &'static str,
    run: Box<dyn FnMut() + 'a>,
    hist: Histogram<u64>,
}

impl<'a> Variant<'a> {
    fn new(name: &'static str, run: impl FnMut() + 'a) -> Self {
        Self {
            name,
            run: Box::new(run),
            hist: histogram(),
        }
    }

    fn timed(&mut self) {
        let start = Instant::now();
        (self.run)();
        let ns = start.elapsed().as_nanos() as u64;
        self.hist.saturating_record(ns.max(1));
    }
}

/// Kept-open descriptors and one buffer: the read syscalls and nothing else.
struct RawPread {
    files: Vec<File>,
    buf: Vec<u8>,
}

impl RawPread {
    fn open() -> Self {
        let files: Vec<File> = PROC_FILES
            .iter()
            .map(|p| File::open(p).unwrap_or_else(|e| panic!("{p}: {e}")))
            .collect();
        let mut raw = Self {
            files,
            buf: vec![0; RAW_BUF_BYTES],
        };
        for (file, path) in raw.files.iter().zip(PROC_FILES) {
            let n = file.read_at(&mut raw.buf, 0).expect("pread");
            assert!(n < RAW_BUF_BYTES, "{path} does not fit the raw buffer");
        }
        raw
    }

    fn read_all(&mut self) -> usize {
        let mut total = 0;
        for file in &self.files {
            total += file.read_at(&mut self.buf, 0).expect("pread");
        }
        total
    }
}

/// The same information through procfs, with the same CPU delta vigil computes.
struct ProcfsSampler {
    prev: Option<procfs::KernelStats>,
}

/// Busy and total ticks of one procfs CPU line (guest is inside user, as in vigil).
fn procfs_ticks(t: &procfs::CpuTime) -> (u64, u64) {
    let idle = t.idle + t.iowait.unwrap_or(0);
    let total = t.user
        + t.nice
        + t.system
        + t.idle
        + t.iowait.unwrap_or(0)
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + t.steal.unwrap_or(0);
    (total - idle, total)
}

fn procfs_busy_permyriad(prev: &procfs::CpuTime, cur: &procfs::CpuTime) -> Option<u64> {
    let (pb, pt) = procfs_ticks(prev);
    let (cb, ct) = procfs_ticks(cur);
    let dt = ct.checked_sub(pt).filter(|&d| d > 0)?;
    Some(cb.checked_sub(pb)?.min(dt) * 10_000 / dt)
}

impl ProcfsSampler {
    fn sample(&mut self) {
        let stat = procfs::KernelStats::current().expect("procfs /proc/stat");
        if let Some(prev) = &self.prev {
            black_box(procfs_busy_permyriad(&prev.total, &stat.total));
            for (p, c) in prev.cpu_time.iter().zip(&stat.cpu_time) {
                black_box(procfs_busy_permyriad(p, c));
            }
        }
        self.prev = Some(stat);
        black_box(procfs::Meminfo::current().expect("procfs /proc/meminfo"));
        black_box(procfs::LoadAverage::current().expect("procfs /proc/loadavg"));
        black_box(procfs::CpuPressure::current().expect("procfs pressure/cpu"));
        black_box(procfs::MemoryPressure::current().expect("procfs pressure/memory"));
        black_box(procfs::IoPressure::current().expect("procfs pressure/io"));
    }
}

/// sysinfo's figures out of a refreshed `System`, so nothing of the refresh is dead code.
fn sysinfo_read_out(sys: &sysinfo::System) {
    black_box(sys.global_cpu_usage());
    for cpu in sys.cpus() {
        black_box(cpu.usage());
    }
    black_box(sys.total_memory());
    black_box(sys.available_memory());
    black_box(sysinfo::System::load_average().expect("sysinfo loadavg"));
}

fn sysinfo_fresh_system() {
    let mut sys = sysinfo::System::new().expect("sysinfo System");
    sys.refresh_cpu_usage();
    sys.refresh_memory();
    sysinfo_read_out(&sys);
}

fn print_header() {
    println!(
        "  {:<34} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "variant", "n", "p50 ns", "p99 ns", "p999 ns", "mean ns"
    );
}

fn print_row(name: &str, h: &Histogram<u64>) {
    let p999 = if h.len() >= 1000 {
        h.value_at_quantile(0.999).to_string()
    } else {
        "-".to_string()
    };
    println!(
        "  {:<34} {:>8} {:>10} {:>10} {:>10} {:>10.0}",
        name,
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        p999,
        h.mean()
    );
}

fn print_ratio(label: &str, num: &Histogram<u64>, den: &Histogram<u64>, goal: &str) {
    let p50 = num.value_at_quantile(0.5) as f64 / den.value_at_quantile(0.5).max(1) as f64;
    let p99 = num.value_at_quantile(0.99) as f64 / den.value_at_quantile(0.99).max(1) as f64;
    let mean = num.mean() / den.mean().max(1.0);
    println!("  {label:<22} p50 {p50:>6.2}x  p99 {p99:>6.2}x  mean {mean:>6.2}x   {goal}");
}

/// Warms every variant up, then records `iters` iterations of each in rounds of blocks, one
/// block per variant, the order rotating each round; returns the rounds run.
fn measure_interleaved(variants: &mut [Variant<'_>], iters: u64) -> u64 {
    for v in variants.iter_mut() {
        for _ in 0..WARMUP_ITERS {
            (v.run)();
        }
    }
    let rounds = iters.div_ceil(BLOCK_ITERS);
    let count = variants.len();
    for round in 0..rounds {
        for k in 0..count {
            let v = &mut variants[(round as usize + k) % count];
            for _ in 0..BLOCK_WARM_ITERS {
                (v.run)();
            }
            for _ in 0..BLOCK_ITERS {
                v.timed();
            }
        }
    }
    rounds
}

fn print_rows(variants: &[Variant<'_>]) {
    print_header();
    for v in variants {
        print_row(v.name, &v.hist);
    }
}

/// The timer's own cost per iteration, included in every figure.
fn timer_overhead() -> Histogram<u64> {
    let mut h = histogram();
    for _ in 0..10_000 {
        let start = Instant::now();
        black_box(());
        h.saturating_record((start.elapsed().as_nanos() as u64).max(1));
    }
    h
}

fn interleaved(iters: u64) {
    let proc_root = Path::new("/proc");
    let mut raw = RawPread::open();
    let mut sampler = Sampler::open(proc_root).expect("open /proc");
    assert_eq!(
        sampler.pressure_available(),
        [true, true, true],
        "this bench compares the same six files; this host lacks PSI"
    );
    let mut sample = Sample::default();
    let mut ring = SampleRing::<RING_LEN>::new_boxed();
    let mut procfs_sampler = ProcfsSampler { prev: None };

    let mut variants = [
        Variant::new("raw pread (6 files, kept-open fds)", || {
            black_box(raw.read_all());
        }),
        Variant::new("vigil sample + ring push", || {
            sampler.sample_into(&mut sample).expect("vigil sample");
            ring.push(black_box(&sample).clone());
        }),
        Variant::new("procfs (open+read+parse, delta)", || {
            procfs_sampler.sample()
        }),
        Variant::new("sysinfo (new System per iter)", sysinfo_fresh_system),
    ];

    let started = Instant::now();
    let rounds = measure_interleaved(&mut variants, iters);
    let elapsed = started.elapsed();

    let timer = timer_overhead();
    println!(
        "\n## Sample cost, interleaved ({rounds} rounds x {BLOCK_ITERS} per variant, {:.1} s)",
        elapsed.as_secs_f64()
    );
    print_rows(&variants);
    print_row("(timer overhead, included above)", &timer);
    let [raw_v, vigil_v, procfs_v, sysinfo_v] = &variants;
    println!("  ratios:");
    print_ratio("vigil / raw", &vigil_v.hist, &raw_v.hist, "(goal <= 1.2x)");
    print_ratio(
        "procfs / vigil",
        &procfs_v.hist,
        &vigil_v.hist,
        "(goal >= 3x)",
    );
    print_ratio("sysinfo / vigil", &sysinfo_v.hist, &vigil_v.hist, "");
    drop(variants);
    let (grows, reopens) = sampler.read_stats();
    println!(
        "  vigil buffer growths {grows}, reopens {reopens}; ring holds {}",
        ring.len()
    );
}

/// One sample of each variant every PACED_INTERVAL_MS: the cost at a real sampling cadence.
fn paced(rounds: u64) {
    let mut raw = RawPread::open();
    let mut sampler = Sampler::open(Path::new("/proc")).expect("open /proc");
    let mut sample = Sample::default();
    let mut ring = SampleRing::<RING_LEN>::new_boxed();
    let mut procfs_sampler = ProcfsSampler { prev: None };
    let mut sys = sysinfo::System::new().expect("sysinfo System");
    sys.refresh_cpu_usage();
    sys.refresh_memory();

    let mut variants = [
        Variant::new("raw pread", || {
            black_box(raw.read_all());
        }),
        Variant::new("vigil sample + ring push", || {
            sampler.sample_into(&mut sample).expect("vigil sample");
            ring.push(black_box(&sample).clone());
        }),
        Variant::new("procfs", || procfs_sampler.sample()),
        Variant::new("sysinfo (one System, real refresh)", || {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            sysinfo_read_out(&sys);
        }),
    ];
    // One unrecorded round, so every variant has its previous reading to take deltas from.
    sleep(Duration::from_millis(PACED_INTERVAL_MS));
    for v in variants.iter_mut() {
        (v.run)();
    }
    for round in 0..rounds {
        sleep(Duration::from_millis(PACED_INTERVAL_MS));
        for k in 0..variants.len() {
            variants[(round as usize + k) % 4].timed();
        }
    }
    println!(
        "\n## Sample cost, paced (one of each every {PACED_INTERVAL_MS} ms, {rounds} rounds; \
         cold caches; p999 needs >= 1000)"
    );
    print_rows(&variants);
    let [raw_v, vigil_v, procfs_v, sysinfo_v] = &variants;
    println!("  ratios:");
    print_ratio("vigil / raw", &vigil_v.hist, &raw_v.hist, "");
    print_ratio("procfs / vigil", &procfs_v.hist, &vigil_v.hist, "");
    print_ratio("sysinfo / vigil", &sysinfo_v.hist, &vigil_v.hist, "");
}

/// Parse-only of a synthetic 1024-CPU /proc/stat, against a newline count over the same bytes.
fn parse_1024(iters: u64) {
    let text = synthetic(SYNTHETIC_CPUS);
    let mut stat: Box<ProcStat<1024>> = Box::default();
    stat.parse_into(&text).expect("synthetic parses");
    assert_eq!(stat.cpus.len(), SYNTHETIC_CPUS as usize);
    assert_eq!(stat.cpus_dropped, 0);

    let mut variants = [
        Variant::new("memchr newline count (floor)", || {
            black_box(memchr::memchr_iter(b'\n', black_box(&text)).count());
        }),
        Variant::new("ProcStat::<1024>::parse_into", || {
            stat.parse_into(black_box(&text)).expect("parse");
            black_box(&stat);
        }),
    ];
    measure_interleaved(&mut variants, iters);
    println!(
        "\n## Parse only: synthetic /proc/stat, {SYNTHETIC_CPUS} CPUs, {} bytes",
        text.len()
    );
    print_rows(&variants);
    let [floor, parse] = &variants;
    println!("  ratios:");
    print_ratio("parse / memchr count", &parse.hist, &floor.hist, "");
    let p99_us = parse.hist.value_at_quantile(0.99) as f64 / 1000.0;
    println!(
        "  parse p50 {:.1} us, p99 {p99_us:.1} us (goal <= 60 us)",
        parse.hist.value_at_quantile(0.5) as f64 / 1000.0
    );
}

/// /proc/meminfo of a Linux 6.18 x86_64 machine (54 keys): the input of the callgrind mode.
const MEMINFO_CAPTURE: &[u8] = b"MemTotal:       24684084 kB
MemFree:         7453844 kB
MemAvailable:   22922232 kB
Buffers:           91728 kB
Cached:         15131484 kB
SwapCached:            0 kB
Active:          2468096 kB
Inactive:       13816804 kB
Active(anon):       1640 kB
Inactive(anon):  1069096 kB
Active(file):    2466456 kB
Inactive(file): 12747708 kB
Unevictable:       20632 kB
Mlocked:           19616 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Zswap:                 0 kB
Zswapped:              0 kB
Dirty:            604212 kB
Writeback:             0 kB
AnonPages:       1082528 kB
Mapped:           271840 kB
Shmem:              8872 kB
KReclaimable:     648632 kB
Slab:             732332 kB
SReclaimable:     648632 kB
SUnreclaim:        83700 kB
KernelStack:        2880 kB
PageTables:        10804 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    12342040 kB
Committed_AS:     611892 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       15660 kB
VmallocChunk:          0 kB
Percpu:             1072 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:    133120 kB
FilePmdMapped:      2048 kB
Balloon:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:       30720 kB
DirectMap2M:     2066432 kB
DirectMap1G:    25165824 kB
";

/// Untimed parses for callgrind (see the module comment); `false` when the mode is not set.
fn callgrind_mode() -> bool {
    const PARSES: usize = 100;
    let Ok(mode) = std::env::var("VIGIL_BENCH_CALLGRIND") else {
        return false;
    };
    let repeat = |what: &str, mut parse: Box<dyn FnMut() + '_>| {
        for _ in 0..PARSES {
            parse();
        }
        println!("{PARSES} {what}");
        true
    };
    let text = synthetic(SYNTHETIC_CPUS);
    let mut stat: Box<ProcStat<1024>> = Box::default();
    let mut m = vigil_runtime::procfs::MemInfo::default();
    match mode.as_str() {
        "stat" => repeat(
            "parses of a 1024-CPU /proc/stat",
            Box::new(|| {
                stat.parse_into(black_box(&text)).expect("parse");
                black_box(&stat);
            }),
        ),
        "meminfo" => repeat(
            "parses of a 54-key /proc/meminfo",
            Box::new(|| {
                m.parse_into(black_box(MEMINFO_CAPTURE)).expect("parse");
                black_box(&m);
            }),
        ),
        "meminfo-sample" => repeat(
            "sample parses of a 54-key /proc/meminfo",
            Box::new(|| {
                m.parse_sample_into(black_box(MEMINFO_CAPTURE))
                    .expect("parse");
                black_box(&m);
            }),
        ),
        other => {
            panic!("VIGIL_BENCH_CALLGRIND={other}: expected stat, meminfo or meminfo-sample")
        }
    }
}

/// Parse-only of [`MEMINFO_CAPTURE`]: every field (`parse_into`) against the sampler's
/// `parse_sample_into`, with a newline count over the same bytes as the floor.
fn parse_meminfo(iters: u64) {
    let mut full = vigil_runtime::procfs::MemInfo::default();
    let mut quick = vigil_runtime::procfs::MemInfo::default();
    full.parse_into(MEMINFO_CAPTURE).expect("capture parses");
    quick
        .parse_sample_into(MEMINFO_CAPTURE)
        .expect("capture parses");
    assert_eq!(quick.available_bytes, full.available_bytes);
    let mut variants = [
        Variant::new("memchr newline count (floor)", || {
            black_box(memchr::memchr_iter(b'\n', black_box(MEMINFO_CAPTURE)).count());
        }),
        Variant::new("MemInfo::parse_into", || {
            full.parse_into(black_box(MEMINFO_CAPTURE)).expect("parse");
            black_box(&full);
        }),
        Variant::new("MemInfo::parse_sample_into", || {
            quick
                .parse_sample_into(black_box(MEMINFO_CAPTURE))
                .expect("parse");
            black_box(&quick);
        }),
    ];
    measure_interleaved(&mut variants, iters);
    println!(
        "\n## Parse only: /proc/meminfo capture, 54 keys, {} bytes",
        MEMINFO_CAPTURE.len()
    );
    print_rows(&variants);
    let [floor, full_v, quick_v] = &variants;
    println!("  ratios:");
    print_ratio("parse_into / floor", &full_v.hist, &floor.hist, "");
    print_ratio("sample / parse_into", &quick_v.hist, &full_v.hist, "");
}

fn main() {
    if callgrind_mode() {
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: keep that run short.
    let benching = std::env::args().any(|a| a == "--bench");
    let iters = env_u64(
        "VIGIL_BENCH_ITERS",
        if benching { ITERS_DEFAULT } else { 200 },
    );
    let paced_rounds = env_u64(
        "VIGIL_BENCH_PACED",
        if benching { PACED_ROUNDS_DEFAULT } else { 2 },
    );
    println!("telemetry bench: {iters} recorded iterations per variant; times in ns");
    interleaved(iters);
    parse_1024(iters);
    parse_meminfo(iters);
    if paced_rounds > 0 {
        paced(paced_rounds);
    }
}
