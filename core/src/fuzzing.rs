//! Bodies of the fuzz targets in `fuzz/`, as plain functions so that a stable `#[test]` replays
//! the committed corpus through exactly the code the fuzzer runs.
