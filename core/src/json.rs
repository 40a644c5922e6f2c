//! The JSON shapes vigil speaks, shared by the CLI's `--json` output, the socket protocol and
//! the C API, so one sample or one record looks the same wherever it is read.
use serde_json::{json, Value};

use crate::view::job::job_event_json;
pub use crate::view::sample::{centi, sample_json};
use crate::view::{hex, json_text};
use crate::wal::frame::Frame;
use crate::wal::record::{kind as record_kind, Decoded, Record};

/// One record's fields as JSON (binary fields as bounded hex).
pub fn record_json(record: &Record<'_>) -> Value {
    match record {
        Record::JobStarted(_)
        | Record::JobFinished(_)
        | Record::JobInterrupted(_)
        | Record::JobRejected(_) => job_event_json(record).unwrap_or(Value::Null),
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
