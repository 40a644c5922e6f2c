//! Replays every seed in `fuzz/corpus/rpc_request/` through the request-parsing fuzz body, so
//! the corpus is checked on stable Rust in every test run.
use std::path::Path;

#[test]
fn every_rpc_seed_replays_without_a_failure() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/rpc_request");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        vigil_runtime::protocol::fuzz_request(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n >= 10, "the seed corpus is committed ({n} seeds)");
}
