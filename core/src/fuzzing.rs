//! Bodies of the fuzz targets in `fuzz/`, as plain functions so that a stable `#[test]` replays
//! the committed corpus through exactly the code the fuzzer runs: [`telemetry`] for the /proc
//! and cgroup parsers, [`wal`] for the log's frames, scan and operations.
//!
//! Hidden from the documentation: these exist for the fuzzer and the corpus tests only.

pub mod telemetry;
pub mod wal;
