//! vigil-runtime: the facade of vigil, a capability runtime for agents and automation on
//! persistent Linux machines. It is named `vigil-runtime` because `vigil` is taken on
//! crates.io; the binary (in `vigil-shell`) is still `vigil`.
//!
//! This facade re-exports [`vigil_core`]; it owns the cross-crate tests in `tests/` and the
//! benchmarks in `benches/`. The binary lives in `vigil-shell`, the C ABI in `vigil-ffi`.
pub use vigil_core::*;
