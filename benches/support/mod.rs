//! Shared by the benches that drive the `vigil` binary.
#![allow(dead_code)]
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The release `vigil` binary, built first (a no-op when up to date).
pub fn vigil_bin() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "-p", "vigil-shell"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build");
    assert!(status.success());
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/vigil")
}

/// Waits until a server answers connections on `socket`.
pub fn wait_for_socket(socket: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while UnixStream::connect(socket).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `q` quantile of a nanosecond histogram, in microseconds.
pub fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e3
}

/// One line: the rate and the p50/p99/p999 latencies.
pub fn report(name: &str, rate: f64, h: &Histogram<u64>) {
    println!(
        "{name:<44} {rate:>10.0} req/s   p50 {:>8.1} us  p99 {:>8.1} us  p999 {:>8.1} us",
        us(h, 0.5),
        us(h, 0.99),
        us(h, 0.999)
    );
}
