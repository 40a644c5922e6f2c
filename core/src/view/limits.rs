//! The limits view: a job's requested limits as JSON,
//! `{timeout_ms, cpu_time_ms, memory_bytes, pids, max_output_bytes}` with `null` where no limit
//! was set. The same names the `run` method takes, `vigil job N --json` shows and the log's
//! `job_started` events carry.
use serde_json::Value;

use crate::model::Limits;

/// The JSON form of `limits`.
pub fn limits_json(limits: &Limits) -> Value {
    serde_json::json!({
        "timeout_ms": limits.timeout_ms,
        "cpu_time_ms": limits.cpu_time_ms,
        "memory_bytes": limits.memory_bytes,
        "pids": limits.pids,
        "max_output_bytes": limits.max_output_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_view_is_pinned() {
        let limits = Limits {
            timeout_ms: Some(1500),
            cpu_time_ms: None,
            memory_bytes: Some(64 << 20),
            pids: Some(32),
            max_output_bytes: Some(1 << 20),
        };
        assert_eq!(
            limits_json(&limits).to_string(),
            r#"{"cpu_time_ms":null,"max_output_bytes":1048576,"memory_bytes":67108864,"pids":32,"timeout_ms":1500}"#
        );
        // The wire form reads back into the same limits.
        let back: Limits = serde_json::from_value(limits_json(&limits)).unwrap();
        assert_eq!(back, limits);
    }
}
