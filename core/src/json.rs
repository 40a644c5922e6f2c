//! The JSON shapes vigil speaks, shared by the CLI's `--json` output, the socket protocol and
//! the C API, so one sample or one record looks the same wherever it is read.
use serde_json::{json, Value};

use crate::procfs::{Psi, PsiLine};
use crate::sample::{Percent, Sample};
use crate::wal::frame::Frame;
use crate::wal::record::{kind as record_kind, Decoded, Record};

/// Most payload bytes shown as hex for a binary field.
const HEX_SHOWN_BYTES: usize = 256;

fn pct(p: Option<Percent>) -> Value {
    p.map_or(Value::Null, |p| json!(p.as_f64()))
}

/// A value kept in hundredths (load, PSI averages) as a float.
pub fn centi(v: u32) -> f64 {
    f64::from(v) / 100.0
}

fn psi_line_json(l: &PsiLine) -> Value {
    json!({
        "avg10": centi(l.avg10_centi),
        "avg60": centi(l.avg60_centi),
        "avg300": centi(l.avg300_centi),
        "total_us": l.total_us,
    })
}

fn psi_json(p: &Option<Psi>) -> Value {
    p.as_ref().map_or(Value::Null, |p| {
        json!({
            "some": psi_line_json(&p.some),
            "full": p.full.as_ref().map_or(Value::Null, psi_line_json),
        })
    })
}

/// The JSON form of a sample: `vigil telemetry --json`, `telemetry.sample` on the socket.
/// Percentages with no data behind them are `null`, never NaN.
pub fn sample_json(s: &Sample) -> Value {
    let cpu = s.cpu;
    let per_cpu: Vec<Value> = s
        .per_cpu
        .iter()
        .map(|c| json!({"id": c.id, "busy_pct": pct(c.busy)}))
        .collect();
    json!({
        "seq": s.seq,
        "timestamp_ns": s.timestamp_ns,
        "interval_ms": s.interval_ns as f64 / 1e6,
        "cpu": {
            "busy_pct": pct(cpu.map(|c| c.busy)),
            "busy_no_steal_pct": pct(cpu.map(|c| c.busy_no_steal)),
            "user_pct": pct(cpu.map(|c| c.user)),
            "nice_pct": pct(cpu.map(|c| c.nice)),
            "system_pct": pct(cpu.map(|c| c.system)),
            "idle_pct": pct(cpu.map(|c| c.idle)),
            "iowait_pct": pct(cpu.map(|c| c.iowait)),
            "irq_pct": pct(cpu.map(|c| c.irq)),
            "softirq_pct": pct(cpu.map(|c| c.softirq)),
            "steal_pct": pct(cpu.map(|c| c.steal)),
            "guest_pct": pct(cpu.map(|c| c.guest)),
            "total_ticks": cpu.map(|c| c.total_ticks),
            "per_cpu": per_cpu,
            "per_cpu_dropped": s.per_cpu_dropped,
            "ctxt_per_sec": s.ctxt_per_sec,
            "procs_running": s.procs_running,
            "procs_blocked": s.procs_blocked,
        },
        "memory": s.memory.map(|m| json!({
            "total_bytes": m.total_bytes,
            "available_bytes": m.available_bytes,
            "available_pct": pct(m.available()),
            "available_estimated": m.available_estimated,
            "available_clamped": s.flags & crate::sample::flags::MEMORY_AVAILABLE_CLAMPED != 0,
            "free_bytes": m.free_bytes,
            "cached_bytes": m.cached_bytes,
            "swap_total_bytes": m.swap_total_bytes,
            "swap_free_bytes": m.swap_free_bytes,
            "dirty_bytes": m.dirty_bytes,
        })),
        "load": s.load.map(|l| json!({
            "load1": centi(l.load1_centi),
            "load5": centi(l.load5_centi),
            "load15": centi(l.load15_centi),
            "runnable": l.runnable,
            "entities": l.entities,
        })),
        "pressure": if s.pressure == Default::default() {
            Value::Null
        } else {
            json!({
                "cpu": psi_json(&s.pressure.cpu),
                "memory": psi_json(&s.pressure.memory),
                "io": psi_json(&s.pressure.io),
            })
        },
        "flags": s.flags,
    })
}

fn hex(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(HEX_SHOWN_BYTES)];
    let mut text: String = shown.iter().map(|b| format!("{b:02x}")).collect();
    if bytes.len() > shown.len() {
        text.push_str(&format!("...(+{} bytes)", bytes.len() - shown.len()));
    }
    text
}

/// JSON text stays JSON in the dump when it parses; otherwise it is shown as a string.
fn json_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// One record's fields as JSON (binary fields as bounded hex).
pub fn record_json(record: &Record<'_>) -> Value {
    match record {
        Record::JobStarted(r) => json!({
            "job_id": r.job_id, "unix_ms": r.unix_ms, "capability": r.capability,
            "args": json_text(r.args_json), "session": r.session, "root": r.root,
            "limits": {
                "timeout_ms": r.limits.timeout_ms, "cpu_time_ms": r.limits.cpu_time_ms,
                "memory_bytes": r.limits.memory_bytes, "pids": r.limits.pids,
                "max_output_bytes": r.limits.max_output_bytes,
            },
            "telemetry_before_hex": hex(r.telemetry_before),
        }),
        Record::JobFinished(r) => json!({
            "job_id": r.job_id, "unix_ms": r.unix_ms, "status": r.status.as_str(),
            "exit_code": r.exit_code, "signal": r.signal,
            "cpu_usage_us": r.usage.cpu_usage_us, "memory_peak_bytes": r.usage.memory_peak_bytes,
            "wall_ms": r.usage.wall_ms, "oom_kills": r.usage.oom_kills,
            "stdout": String::from_utf8_lossy(r.stdout), "stdout_truncated": r.stdout_truncated,
            "stderr": String::from_utf8_lossy(r.stderr), "stderr_truncated": r.stderr_truncated,
            "error": r.error, "telemetry_after_hex": hex(r.telemetry_after),
        }),
        Record::JobInterrupted(r) => {
            json!({"job_id": r.job_id, "unix_ms": r.unix_ms, "reason": r.reason})
        }
        Record::JobRejected(r) => json!({
            "job_id": r.job_id, "unix_ms": r.unix_ms, "capability": r.capability,
            "args": json_text(r.args_json), "session": r.session, "reason": r.reason,
            "telemetry_hex": hex(r.telemetry),
        }),
        Record::TelemetrySample(r) => {
            json!({"unix_ms": r.unix_ms, "body_hex": hex(r.body), "body_bytes": r.body.len()})
        }
        Record::SessionCreated(r) => {
            json!({"session": r.session, "unix_ms": r.unix_ms, "meta": json_text(r.meta_json)})
        }
        Record::SessionClosed(r) => {
            json!({"session": r.session, "unix_ms": r.unix_ms, "reason": r.reason})
        }
        Record::User(bytes) => json!({"bytes": bytes.len(), "hex": hex(bytes)}),
    }
}

/// A frame's record kind name and fields, whatever the frame holds.
pub fn frame_json<'a>(frame: &Frame<'a>) -> (&'static str, Value) {
    match Record::decode(frame.kind, frame.payload) {
        Ok(Decoded::Record(record)) => (record.kind_name(), record_json(&record)),
        Ok(Decoded::Ignored {
            kind: record_kind::CHECKPOINT,
        }) => ("checkpoint", json!({"synced_lsn": frame.synced_lsn})),
        Ok(Decoded::Ignored {
            kind: record_kind::HOLE,
        }) => (
            "hole",
            json!({"note": "a record lost to damage, dropped by repair"}),
        ),
        Ok(Decoded::Ignored {
            kind: record_kind::REPAIRED,
        }) => (
            "repaired",
            serde_json::from_slice(frame.payload).unwrap_or(Value::Null),
        ),
        Ok(Decoded::Ignored {
            kind: record_kind::INDEX_CHECKPOINT,
        }) => ("index_checkpoint", json!({"bytes": frame.payload.len()})),
        Ok(Decoded::Ignored {
            kind: record_kind::JOB_ENFORCEMENT,
        }) => (
            "job_enforcement",
            serde_json::from_slice(frame.payload).unwrap_or(Value::Null),
        ),
        Ok(Decoded::Ignored {
            kind: record_kind::JOB_OWNER,
        }) => (
            "job_owner",
            serde_json::from_slice(frame.payload).unwrap_or(Value::Null),
        ),
        Ok(Decoded::Ignored { .. }) => ("ignored", json!({"bytes": frame.payload.len()})),
        Err(error) => (
            "undecodable",
            json!({"error": error.to_string(), "bytes": frame.payload.len()}),
        ),
    }
}

/// A frame as one flat object: `lsn`, `kind`, `kind_id` and the record's fields (the lines of
/// `vigil wal dump --json` and the events of `events.read`).
pub fn event_json(frame: &Frame<'_>) -> Value {
    let (name, fields) = frame_json(frame);
    let mut object = json!({"lsn": frame.lsn, "kind": name, "kind_id": frame.kind});
    if let (Value::Object(target), Value::Object(source)) = (&mut object, fields) {
        target.extend(source);
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_data_percentages_are_null_in_json() {
        let s = Sample::default();
        let v = sample_json(&s);
        assert!(v["cpu"]["busy_pct"].is_null());
        assert!(v["pressure"].is_null());
        assert!(v["memory"].is_null());
        assert_eq!(v["cpu"]["per_cpu"], json!([]));
    }
}
