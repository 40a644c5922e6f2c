//! How a damaged log is spoken of: the one place that turns a core error into "the log is
//! damaged at segment S, offset O, LSN L" for a person and for a program (the JSON-RPC error
//! `LOG_DAMAGED` with `{kind, segment, offset, lsn, cause}` as its data). What counts as damage
//! is the log's decision (`WalError::Corrupt`); this module only reports it.
use serde_json::{json, Value};

use crate::runtime::RuntimeError;
use crate::wal::log::{LogFault, WalError};

/// The fault behind a log error, if the error is damage.
pub fn wal_fault(error: &WalError) -> Option<&LogFault> {
    match error {
        WalError::Corrupt(fault) => Some(fault),
        _ => None,
    }
}

/// The fault behind a runtime error, if the error is damage of its log.
pub fn runtime_fault(error: &RuntimeError) -> Option<&LogFault> {
    match error {
        RuntimeError::Wal(error) => wal_fault(error),
        _ => None,
    }
}

/// Where the damage is, for programs.
pub fn fault_data(fault: &LogFault) -> Value {
    json!({
        "kind": fault.kind.as_str(),
        "segment": fault.segment,
        "offset": fault.offset,
        "lsn": fault.expected_lsn,
        "cause": fault.cause,
    })
}

/// The message of a reader that stops at damage: where, and (core's fault says it) what to do.
pub fn damaged_message(fault: &LogFault) -> String {
    format!("the log is damaged: {fault}")
}
