//! Fuzz target: `vigil_core::fuzzing::wal::scan` (see that function for the properties checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vigil_core::fuzzing::wal::scan(data);
});
