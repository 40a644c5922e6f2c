//! What goes wrong in the log, said with the segment, offset and LSN where that helps.

use std::fmt;
use std::io;
use std::path::Path;

use super::frame::Lsn;
use super::record::RecordError;
use super::scan::FaultKind;

/// Everything that can go wrong, with the segment, offset and LSN where that helps.
#[derive(Debug)]
#[non_exhaustive]
pub enum WalError {
    /// A file operation failed; the message names the path.
    Io(io::Error),
    /// The log is damaged in a way the recovery mode does not accept.
    Corrupt(LogFault),
    /// An earlier sync failed; nothing can be acknowledged any more.
    Poisoned {
        /// The failed sync's error, as text.
        cause: String,
    },
    /// The payload exceeds what a frame (or a segment) can hold.
    RecordTooLarge {
        /// Size of the encoded payload, in bytes.
        payload_bytes: usize,
        /// The most a payload may have, in bytes.
        max_bytes: usize,
    },
    /// A record that cannot be encoded.
    Encode(RecordError),
    /// An LSN that was never appended.
    LsnNotAppended {
        /// The LSN asked for.
        lsn: Lsn,
        /// The last LSN appended so far.
        last_lsn: Lsn,
    },
    /// A reader asked for an LSN retention already removed.
    LsnNotRetained {
        /// The LSN asked for.
        lsn: Lsn,
        /// The oldest LSN the log still holds.
        first_lsn: Lsn,
    },
    /// Options out of range.
    BadOptions(String),
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io(error) => write!(f, "{error}"),
            WalError::Corrupt(fault) => write!(f, "{fault}"),
            WalError::Poisoned { cause } => {
                write!(f, "WAL poisoned by an earlier sync failure: {cause}")
            }
            WalError::RecordTooLarge {
                payload_bytes,
                max_bytes,
            } => {
                write!(
                    f,
                    "record of {payload_bytes} bytes exceeds the maximum of {max_bytes} bytes"
                )
            }
            WalError::Encode(error) => write!(f, "record cannot be encoded: {error}"),
            WalError::LsnNotAppended { lsn, last_lsn } => {
                write!(
                    f,
                    "LSN {lsn} was never appended (last appended is {last_lsn})"
                )
            }
            WalError::LsnNotRetained { lsn, first_lsn } => {
                write!(
                    f,
                    "LSN {lsn} is no longer retained (the log starts at {first_lsn})"
                )
            }
            WalError::BadOptions(message) => write!(f, "bad WAL options: {message}"),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io(error) => Some(error),
            WalError::Encode(error) => Some(error),
            _ => None,
        }
    }
}

impl From<io::Error> for WalError {
    fn from(error: io::Error) -> WalError {
        WalError::Io(error)
    }
}

/// A failed file operation of the log: what was being done, to which path, and the error the
/// system gave, kept whole as its [`source`](std::error::Error::source). Carried inside an
/// [`io::Error`] of the same kind (see [`context`]).
#[derive(Debug)]
pub struct PathIoError {
    /// What was being done ("open segment", ...).
    pub what: String,
    /// The file or directory it was done to.
    pub path: std::path::PathBuf,
    /// The error of the operation.
    pub source: io::Error,
}

impl fmt::Display for PathIoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.what, self.path.display(), self.source)
    }
}

impl std::error::Error for PathIoError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Adds what was being done and to which path, keeping the error kind, and the error itself
/// (with its OS code) as the source of a [`PathIoError`].
pub fn context(error: io::Error, what: &str, path: &Path) -> io::Error {
    let kind = error.kind();
    io::Error::new(
        kind,
        super::error::PathIoError {
            what: what.to_string(),
            path: path.to_path_buf(),
            source: error,
        },
    )
}

/// A fault found by a scan of the whole log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFault {
    /// A torn tail or corruption.
    pub kind: FaultKind,
    /// The damaged segment's sequence number.
    pub seq: u64,
    /// The segment's path (or simulated name).
    pub segment: String,
    /// Byte offset of the damage in the segment.
    pub offset: usize,
    /// The LSN the next valid frame there would have had.
    pub expected_lsn: Lsn,
    /// What is wrong with the bytes.
    pub cause: String,
}

impl fmt::Display for LogFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FaultKind::TornTail => "torn tail",
            FaultKind::Corruption => "corruption",
        };
        write!(
            f,
            "WAL {what} in segment {} at offset {} (expected LSN {}): {}",
            self.segment, self.offset, self.expected_lsn, self.cause
        )?;
        if self.kind == FaultKind::Corruption && !self.cause.contains("vigil wal repair") {
            write!(
                f,
                "; nothing was changed. `vigil wal repair` writes a new log of every valid \
                 record and keeps the damaged files aside"
            )?;
        }
        Ok(())
    }
}

/// A range salvage skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSkip {
    /// The segment's sequence number.
    pub seq: u64,
    /// The segment's path (or simulated name).
    pub segment: String,
    /// Where the skipped range starts in the segment.
    pub offset: usize,
    /// How many bytes were skipped.
    pub bytes: usize,
    /// The LSN expected at the start of the range.
    pub expected_lsn: Lsn,
}
