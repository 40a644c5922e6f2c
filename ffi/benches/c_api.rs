//! The C API against the Rust calls it wraps, same run, same timer (CLOCK_MONOTONIC per call):
//! - `vigil_telemetry_sample` (C, into `vigil_sample`) vs `Telemetry::with_latest` copying the
//!   latest `Sample` into a reused one (Rust). Goal: C p50 <= 1.05x Rust.
//! - `vigil_wal_append` (C) vs `Wal::append(&Record::User(..))` (Rust), 64-byte records, not
//!   synced: per-call percentiles and records/s of an untimed loop. No goal; the ratio is
//!   reported.
//!
//! The C side is `benches/c_api_host.c`, compiled against libvigil.a of this profile; it
//! writes raw per-call durations that this bench loads into hdrhistogram. Rounds alternate
//! C and Rust so drift on a noisy machine hits both. Run:
//! `cargo bench -p vigil-ffi --bench c_api` (CALLS and ROUNDS from `VIGIL_BENCH_CALLS`,
//! `VIGIL_BENCH_ROUNDS`).
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use hdrhistogram::Histogram;
use vigil_core::runtime::{Runtime, RuntimeOptions};
use vigil_core::sample::Sample;
use vigil_core::wal::Record;

const RECORD_BYTES: usize = 64;
const CALLS_DEFAULT: usize = 200_000;
const ROUNDS_DEFAULT: usize = 3;
/// The system libraries a static Rust library needs.
const STATIC_LIBS: &[&str] = &["-lpthread", "-ldl", "-lm", "-lrt", "-lgcc_s", "-lc"];

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// target/<profile> of this bench binary.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench binary path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// A scratch directory under the system temp dir, removed first if it exists.
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-bench-c-api-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Builds libvigil.a in this bench's profile and the C host against it.
fn build_c_host(dir: &Path) -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["build", "--quiet", "-p", "vigil-ffi"]);
    if profile_dir().ends_with("release") {
        cargo.arg("--release");
    }
    let status = cargo
        .current_dir(crate_dir)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building libvigil failed");
    let bin = dir.join("c_api_host");
    let out = Command::new("cc")
        .args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir.join("../include"))
        .arg(crate_dir.join("benches/c_api_host.c"))
        .arg(profile_dir().join("libvigil.a"))
        .args(STATIC_LIBS)
        .arg("-o")
        .arg(&bin)
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "compiling the C host failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn load_durations(path: &Path, into: &mut Histogram<u64>) {
    let bytes = std::fs::read(path).expect("read durations");
    for ns in bytes.chunks_exact(8) {
        let ns = u64::from_ne_bytes(ns.try_into().expect("8 bytes"));
        into.record(ns.max(1)).expect("record");
    }
}

/// Per-call results of one side.
struct Side {
    sample: Histogram<u64>,
    append: Histogram<u64>,
    bulk_records: u64,
    bulk_ns: u64,
}

impl Side {
    fn new() -> Side {
        Side {
            sample: histogram(),
            append: histogram(),
            bulk_records: 0,
            bulk_ns: 0,
        }
    }

    fn records_per_s(&self) -> f64 {
        self.bulk_records as f64 / (self.bulk_ns as f64 / 1e9)
    }
}

fn c_round(bin: &Path, calls: usize, side: &mut Side) {
    let dir = scratch("c");
    let (sample_out, append_out) = (dir.join("sample.ns"), dir.join("append.ns"));
    let out = Command::new(bin)
        .arg(dir.join("data"))
        .arg(calls.to_string())
        .arg(RECORD_BYTES.to_string())
        .arg(&sample_out)
        .arg(&append_out)
        .output()
        .expect("run the C host");
    assert!(
        out.status.success(),
        "C host failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    load_durations(&sample_out, &mut side.sample);
    load_durations(&append_out, &mut side.append);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bulk: u64 = stdout
        .trim()
        .strip_prefix("bulk_append_ns ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected C host output {stdout:?}"));
    side.bulk_records += calls as u64;
    side.bulk_ns += bulk;
    let _ = std::fs::remove_dir_all(&dir);
}

fn rust_round(calls: usize, side: &mut Side) {
    let dir = scratch("rust");
    let runtime = Runtime::open(RuntimeOptions::new(dir.join("data"))).expect("open runtime");
    let telemetry = runtime.telemetry();
    let mut copy = Sample::default();
    while !telemetry.with_latest(|s| s.is_some()) {}
    for _ in 0..calls {
        let t0 = Instant::now();
        telemetry.with_latest(|s| {
            if let Some(s) = s {
                copy.clone_from(s);
            }
        });
        let ns = t0.elapsed().as_nanos() as u64;
        black_box(&copy);
        side.sample.record(ns.max(1)).expect("record");
    }
    let record = [b'r'; RECORD_BYTES];
    let wal = runtime.wal();
    for _ in 0..calls {
        let t0 = Instant::now();
        let lsn = wal.append(&Record::User(&record)).expect("append");
        let ns = t0.elapsed().as_nanos() as u64;
        black_box(lsn);
        side.append.record(ns.max(1)).expect("record");
    }
    let t0 = Instant::now();
    for _ in 0..calls {
        black_box(wal.append(&Record::User(&record)).expect("append"));
    }
    side.bulk_ns += t0.elapsed().as_nanos() as u64;
    side.bulk_records += calls as u64;
    drop(runtime);
    let _ = std::fs::remove_dir_all(&dir);
}

fn row(name: &str, rust: &Histogram<u64>, c: &Histogram<u64>) -> [f64; 3] {
    let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p);
    let ratio = |p: f64| q(c, p) as f64 / q(rust, p) as f64;
    println!(
        "{name:<18} rust p50 {:>6} p99 {:>6} p999 {:>7} ns | C p50 {:>6} p99 {:>6} p999 {:>7} ns | C/rust p50 {:.3}x p99 {:.3}x p999 {:.3}x",
        q(rust, 0.5),
        q(rust, 0.99),
        q(rust, 0.999),
        q(c, 0.5),
        q(c, 0.99),
        q(c, 0.999),
        ratio(0.5),
        ratio(0.99),
        ratio(0.999),
    );
    [ratio(0.5), ratio(0.99), ratio(0.999)]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs it once, briefly.
    let quick = !std::env::args().any(|a| a == "--bench");
    let calls = if quick {
        1_000
    } else {
        env_count("VIGIL_BENCH_CALLS", CALLS_DEFAULT)
    };
    let rounds = if quick {
        1
    } else {
        env_count("VIGIL_BENCH_ROUNDS", ROUNDS_DEFAULT)
    };
    let build_dir = scratch("build");
    let bin = build_c_host(&build_dir);
    let (mut rust, mut c) = (Side::new(), Side::new());
    for round in 0..rounds {
        // Alternate which side goes first.
        if round % 2 == 0 {
            rust_round(calls, &mut rust);
            c_round(&bin, calls, &mut c);
        } else {
            c_round(&bin, calls, &mut c);
            rust_round(calls, &mut rust);
        }
    }
    println!("C API vs Rust, {calls} calls per side per round, {rounds} rounds, {RECORD_BYTES}-byte records");
    let [sample_p50, ..] = row("telemetry sample", &rust.sample, &c.sample);
    row("wal append", &rust.append, &c.append);
    println!(
        "wal append, untimed loop: rust {:.0} records/s | C {:.0} records/s | C/rust {:.3}x",
        rust.records_per_s(),
        c.records_per_s(),
        c.records_per_s() / rust.records_per_s()
    );
    println!(
        "goal: C telemetry sample p50 <= 1.05x rust: {} ({sample_p50:.3}x)",
        if sample_p50 <= 1.05 { "met" } else { "MISSED" }
    );
    let _ = std::fs::remove_dir_all(&build_dir);
}
