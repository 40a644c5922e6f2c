//! Views: the JSON shape of each thing vigil shows, each built by exactly one function, used by
//! the CLI's `--json` output, the socket methods, the log's events and the C API's JSON
//! accessors alike.
//!
//! - [`sample`]: one telemetry sample (`vigil telemetry --json`, a job's telemetry before and
//!   after).
//! - [`limits`]: a job's requested limits.
//! - [`job`]: a job's run result (`vigil run --json`, `run`), its full record (`vigil job N`,
//!   `jobs.get`), its summary (`vigil jobs`, `jobs.list`) and its records as log events.
//!
//! Views sit above the executor, the log and the sample types and below the runtime: they import
//! none of the runtime, the server or the CLI.
pub mod job;
pub mod limits;
pub mod sample;

use serde_json::Value;

/// Most payload bytes shown as hex for a binary field.
const HEX_SHOWN_BYTES: usize = 256;

pub(crate) fn hex(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(HEX_SHOWN_BYTES)];
    let mut text: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    if bytes.len() > shown.len() {
        text.push_str(&format!("...(+{} bytes)", bytes.len() - shown.len()));
    }
    text
}

/// JSON text stays JSON in the dump when it parses; otherwise it is shown as a string.
pub(crate) fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}
