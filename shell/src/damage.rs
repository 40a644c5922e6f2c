//! How the shell speaks about a damaged log: the one place that turns a core error into "the
//! log is damaged at segment S, offset O, LSN L" for a person (stderr and exit code) and for a
//! program (the JSON-RPC error `LOG_DAMAGED` with `{kind, segment, offset, lsn, cause}` as its
//! data).
//!
//! Every reader in the shell (`vigil jobs`, `vigil job`, `vigil wal dump|tail|stats|verify`,
//! the server's `events.read` and `jobs.get`) goes through here, so a damaged log is never
//! mistaken for an empty one or for the end of the log. (The server's `jobs.list` answers from
//! the index it built when it opened the log, and opening refuses a damaged log.) What counts
//! as damage is core's decision (`WalError::Corrupt`); this module only reports it.
use std::path::Path;

use vigil_core::wal::frame::Frame;
use vigil_core::wal::log::{scan_log, LogFault, WalError};
use vigil_core::wal::scan::{FaultKind, RecoveryMode};
use vigil_core::wal::storage::FsStore;

/// Exit code of a CLI reader that met a damaged log (also with `--partial`).
pub const EXIT_DAMAGED: u8 = 1;

/// Where the damage is and what to say of it (core's, shared with the server's methods).
pub use vigil_core::rpc::fault::{damaged_message, fault_data, runtime_fault};

/// The warning a `--partial` reader prints (on stderr) after showing what it could read.
pub fn partial_warning(fault: &LogFault) -> String {
    format!(
        "warning: incomplete answer: only the records before LSN {} were readable: {fault}",
        fault.expected_lsn
    )
}

/// For `--partial`: hands every record of the log in `wal_dir` that is readable before its
/// first damage to `visit`, in LSN order, and returns that damage (`None` if the log reads to
/// its end; a torn tail, which the next writer truncates, is an end, not damage). Changes
/// nothing. The records come from core's recovery scan, the same one that refuses the log.
pub fn read_until_damage(
    wal_dir: &Path,
    visit: &mut dyn FnMut(Frame<'_>),
) -> Result<Option<LogFault>, WalError> {
    let store = FsStore::open_reader(wal_dir)?;
    match scan_log(&store, RecoveryMode::Tail, &mut |_, _, frame| visit(frame)) {
        Ok(scan) => Ok(scan.fault.filter(|f| f.kind == FaultKind::Corruption)),
        Err(WalError::Corrupt(fault)) => Ok(Some(fault)),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_core::rpc::fault::wal_fault;
    use vigil_core::runtime::RuntimeError;
    use vigil_core::wal::scan::FaultKind;

    fn fault() -> LogFault {
        LogFault {
            kind: FaultKind::Corruption,
            seq: 3,
            segment: "/d/wal/00000000000000000003.wal".into(),
            offset: 4096,
            expected_lsn: 77,
            cause: "checksum mismatch".into(),
        }
    }

    #[test]
    fn damage_is_reported_with_segment_offset_and_lsn() {
        let error = WalError::Corrupt(fault());
        let f = wal_fault(&error).expect("corruption is damage");
        let data = fault_data(f);
        assert_eq!(data["segment"], "/d/wal/00000000000000000003.wal");
        assert_eq!(data["offset"], 4096);
        assert_eq!(data["lsn"], 77);
        let message = damaged_message(f);
        assert!(message.contains("00000000000000000003.wal"), "{message}");
        assert!(
            message.contains("offset 4096") && message.contains("LSN 77"),
            "{message}"
        );
        assert!(partial_warning(f).contains("before LSN 77"));
        let runtime = RuntimeError::Wal(WalError::Corrupt(fault()));
        assert!(runtime_fault(&runtime).is_some());
    }

    #[test]
    fn other_errors_are_not_damage() {
        let error = WalError::LsnNotRetained {
            lsn: 1,
            first_lsn: 9,
        };
        assert!(wal_fault(&error).is_none());
        assert!(runtime_fault(&RuntimeError::JobNotFound(4)).is_none());
    }
}
