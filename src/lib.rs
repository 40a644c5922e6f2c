//! vigil: a capability runtime for agents and automation on persistent Linux machines.
//!
//! This facade re-exports [`vigil_core`]; it owns the cross-crate tests in `tests/` and the
//! benchmarks in `benches/`. The binary lives in `vigil-shell`, the C ABI in `vigil-ffi`.
pub use vigil_core::*;
