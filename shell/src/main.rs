//! The `vigil` binary: a thin CLI over vigil-core.
fn main() {}
