#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil_core::fuzzing::telemetry::proc_pressure(data));
