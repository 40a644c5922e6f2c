//! The records vigil writes into its log, and their postcard payloads.
//!
//! Owns the record types and their kind numbers. Every record borrows (`&str`, `&[u8]`) so
//! encoding writes straight into a caller's buffer (`postcard::to_slice`) and decoding borrows
//! from the log bytes (`postcard::from_bytes`): neither allocates. Telemetry travels as opaque
//! bytes (the telemetry layer encodes its own sample), so this module knows nothing of it.
//!
//! Kind numbers are forever. A kind with [`KIND_IGNORABLE_BIT`] set may be skipped by readers
//! that do not know it; an unknown kind without it is an error, never silently dropped.

use serde::{Deserialize, Serialize};

use super::frame::KIND_IGNORABLE_BIT;
use crate::model::{JobStatus, Limits, Usage};

/// Kind numbers of the records this version knows.
pub mod kind {
    /// [`JobStarted`](super::JobStarted): a job was admitted and is about to run.
    pub const JOB_STARTED: u16 = 1;
    /// [`JobFinished`](super::JobFinished): a job ended (any status but interrupted).
    pub const JOB_FINISHED: u16 = 2;
    /// [`JobInterrupted`](super::JobInterrupted): a job started but its end was never logged
    /// (written on recovery).
    pub const JOB_INTERRUPTED: u16 = 3;
    /// [`JobRejected`](super::JobRejected): a job refused before it ran.
    pub const JOB_REJECTED: u16 = 4;
    /// [`TelemetrySample`](super::TelemetrySample): a host sample.
    pub const TELEMETRY_SAMPLE: u16 = 5;
    /// [`SessionCreated`](super::SessionCreated): a session was opened.
    pub const SESSION_CREATED: u16 = 6;
    /// [`SessionClosed`](super::SessionClosed): a session was closed.
    pub const SESSION_CLOSED: u16 = 7;
    /// Opaque bytes from an embedding application (the C API); never interpreted.
    pub const USER: u16 = 8;
    /// Written by the log itself on close: an empty frame whose `synced_lsn` proves that
    /// everything before it was durable. Ignorable, so every reader skips it.
    pub const CHECKPOINT: u16 = 0x8001;
    /// Written by `repair` in place of each record it could not recover, so LSNs stay dense
    /// and every surviving record keeps its LSN. Empty payload; ignorable.
    pub const HOLE: u16 = 0x8002;
    /// Written by `repair` after the records it kept: what it did and what it dropped, as a
    /// JSON object. Ignorable.
    pub const REPAIRED: u16 = 0x8003;
    /// What the runtime's job index needs from before this point (jobs still running,
    /// sessions, the next job id), written as the first frame of every segment but the first,
    /// so retention can retire older segments without losing it. Opaque to the log;
    /// ignorable.
    pub const INDEX_CHECKPOINT: u16 = 0x8004;
    /// Who held each limit a job asked for (`kernel`, `supervisor`, `not_enforced` with the
    /// reason), as JSON `{job_id, enforcement, limits_not_held}`; written with the job's end,
    /// in the same sync. Ignorable.
    pub const JOB_ENFORCEMENT: u16 = 0x8005;
    /// Which process runs a job (its owner name, see the runtime's `owner` module), as JSON
    /// `{job_id, owner}`; written with the `JobStarted`, in the same append batch, so a job
    /// is marked interrupted only when that process is gone. Ignorable.
    pub const JOB_OWNER: u16 = 0x8006;
}

/// A job was admitted and is about to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStarted<'a> {
    /// The job's id, unique in the log and never reused.
    pub job_id: u64,
    /// When the record was made, in ms since the Unix epoch.
    pub unix_ms: u64,
    /// The capability the job runs, by name.
    pub capability: &'a str,
    /// The arguments as JSON text, already redacted.
    pub args_json: &'a str,
    /// The limits the job runs under; `None` fields were not set.
    pub limits: Limits,
    /// The id of the session the job belongs to, if any.
    #[serde(borrow)]
    pub session: Option<&'a str>,
    /// The job's root directory, if it has one.
    #[serde(borrow)]
    pub root: Option<&'a str>,
    /// The telemetry sample the admission decision used, encoded by the telemetry layer.
    pub telemetry_before: &'a [u8],
}

/// A job ended (any status but interrupted-by-restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFinished<'a> {
    /// The id of the job, as in its [`JobStarted`].
    pub job_id: u64,
    /// When the job ended, in ms since the Unix epoch.
    pub unix_ms: u64,
    /// How the job ended.
    pub status: JobStatus,
    /// Exit code of the job's root process; `None` when it did not exit by itself.
    pub exit_code: Option<i32>,
    /// Signal number that killed the root process; `None` when none did.
    pub signal: Option<i32>,
    /// Resources the job used (0 where unmeasured).
    pub usage: Usage,
    /// The start of standard output as logged, secrets redacted (bounded; see `stdout_truncated`).
    pub stdout: &'a [u8],
    /// Standard output is longer than what is logged (the job's output cap or the log's bound).
    pub stdout_truncated: bool,
    /// The start of standard error as logged, secrets redacted.
    pub stderr: &'a [u8],
    /// Standard error is longer than what is logged.
    pub stderr_truncated: bool,
    /// Human message for what went wrong; `None` on success.
    #[serde(borrow)]
    pub error: Option<&'a str>,
    /// The telemetry sample taken as the job ended, encoded by the telemetry layer (empty when
    /// there was none).
    pub telemetry_after: &'a [u8],
}

/// A job that was started but whose end was never logged (written on restart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobInterrupted<'a> {
    /// The id of the job, as in its [`JobStarted`].
    pub job_id: u64,
    /// When the interruption was recorded, in ms since the Unix epoch.
    pub unix_ms: u64,
    /// Why the job is deemed interrupted (its owner process is gone).
    pub reason: &'a str,
}

/// A job refused before it ran (bad arguments, guard, confinement).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRejected<'a> {
    /// The job's id, unique in the log and never reused.
    pub job_id: u64,
    /// When the job was refused, in ms since the Unix epoch.
    pub unix_ms: u64,
    /// The capability the job asked for, by name.
    pub capability: &'a str,
    /// The arguments as JSON text, already redacted.
    pub args_json: &'a str,
    /// The id of the session the job named, if any.
    #[serde(borrow)]
    pub session: Option<&'a str>,
    /// Why the job was refused, as a human message.
    pub reason: &'a str,
    /// The telemetry sample the refusal was decided on, encoded by the telemetry layer (empty when
    /// there was none).
    pub telemetry: &'a [u8],
}

/// A telemetry sample, encoded by the telemetry layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TelemetrySample<'a> {
    /// When the sample was recorded, in ms since the Unix epoch.
    pub unix_ms: u64,
    /// The sample, encoded by the telemetry layer.
    pub body: &'a [u8],
}

/// A session was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreated<'a> {
    /// The session's id, unique in the log.
    pub session: &'a str,
    /// When the session was opened, in ms since the Unix epoch.
    pub unix_ms: u64,
    /// Free-form metadata as JSON text ("{}" when none).
    pub meta_json: &'a str,
}

/// A session was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClosed<'a> {
    /// The id of the session closed.
    pub session: &'a str,
    /// When it was closed, in ms since the Unix epoch.
    pub unix_ms: u64,
    /// Why it was closed, as given by the caller.
    pub reason: &'a str,
}

/// Every record this version of vigil writes or reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A job was admitted and is about to run.
    JobStarted(JobStarted<'a>),
    /// A job ended.
    JobFinished(JobFinished<'a>),
    /// A job's end was never logged; recovery marked it interrupted.
    JobInterrupted(JobInterrupted<'a>),
    /// A job was refused before it ran.
    JobRejected(JobRejected<'a>),
    /// A host telemetry sample.
    TelemetrySample(TelemetrySample<'a>),
    /// A session was opened.
    SessionCreated(SessionCreated<'a>),
    /// A session was closed.
    SessionClosed(SessionClosed<'a>),
    /// Opaque bytes, stored as they are (no postcard framing).
    User(&'a [u8]),
}

/// Why a payload could not be turned into a [`Record`] or back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// A kind this version does not know, without the ignorable bit.
    UnknownKind(u16),
    /// The payload does not decode as the record its kind names (or has trailing bytes).
    Malformed {
        /// The frame's record kind.
        kind: u16,
    },
    /// The encoding does not fit the buffer given.
    BufferTooSmall,
}

impl core::fmt::Display for RecordError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordError::UnknownKind(kind) => write!(f, "unknown record kind {kind:#06x}"),
            RecordError::Malformed { kind } => {
                write!(f, "payload does not decode as a record of kind {kind:#06x}")
            }
            RecordError::BufferTooSmall => f.write_str("the encoding does not fit the buffer"),
        }
    }
}

impl core::error::Error for RecordError {}

/// What a reader makes of one valid frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A record this version knows.
    Record(Record<'a>),
    /// An unknown kind marked ignorable: skip it.
    Ignored {
        /// The frame's kind (with [`KIND_IGNORABLE_BIT`] set).
        kind: u16,
    },
}

impl<'a> Record<'a> {
    /// The frame kind this record is written under.
    pub fn kind(&self) -> u16 {
        match self {
            Record::JobStarted(_) => kind::JOB_STARTED,
            Record::JobFinished(_) => kind::JOB_FINISHED,
            Record::JobInterrupted(_) => kind::JOB_INTERRUPTED,
            Record::JobRejected(_) => kind::JOB_REJECTED,
            Record::TelemetrySample(_) => kind::TELEMETRY_SAMPLE,
            Record::SessionCreated(_) => kind::SESSION_CREATED,
            Record::SessionClosed(_) => kind::SESSION_CLOSED,
            Record::User(_) => kind::USER,
        }
    }

    /// The record's name in dumps.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Record::JobStarted(_) => "job_started",
            Record::JobFinished(_) => "job_finished",
            Record::JobInterrupted(_) => "job_interrupted",
            Record::JobRejected(_) => "job_rejected",
            Record::TelemetrySample(_) => "telemetry_sample",
            Record::SessionCreated(_) => "session_created",
            Record::SessionClosed(_) => "session_closed",
            Record::User(_) => "user",
        }
    }

    /// Encodes the payload into `out`, returning the bytes written.
    pub fn encode_into(&self, out: &mut [u8]) -> Result<usize, RecordError> {
        let written = match self {
            Record::User(bytes) => {
                let dest = out
                    .get_mut(..bytes.len())
                    .ok_or(RecordError::BufferTooSmall)?;
                dest.copy_from_slice(bytes);
                return Ok(bytes.len());
            }
            Record::JobStarted(r) => postcard::to_slice(r, out).map(|s| s.len()),
            Record::JobFinished(r) => postcard::to_slice(r, out).map(|s| s.len()),
            Record::JobInterrupted(r) => postcard::to_slice(r, out).map(|s| s.len()),
            Record::JobRejected(r) => postcard::to_slice(r, out).map(|s| s.len()),
            Record::TelemetrySample(r) => postcard::to_slice(r, out).map(|s| s.len()),
            Record::SessionCreated(r) => postcard::to_slice(r, out).map(|s| s.len()),
            Record::SessionClosed(r) => postcard::to_slice(r, out).map(|s| s.len()),
        };
        written.map_err(|_| RecordError::BufferTooSmall)
    }

    /// Decodes the payload of a frame of kind `kind`, borrowing from `payload`.
    pub fn decode(kind: u16, payload: &'a [u8]) -> Result<Decoded<'a>, RecordError> {
        let malformed = RecordError::Malformed { kind };
        let record = match kind {
            kind::JOB_STARTED => Record::JobStarted(exact(payload).ok_or(malformed)?),
            kind::JOB_FINISHED => Record::JobFinished(exact(payload).ok_or(malformed)?),
            kind::JOB_INTERRUPTED => Record::JobInterrupted(exact(payload).ok_or(malformed)?),
            kind::JOB_REJECTED => Record::JobRejected(exact(payload).ok_or(malformed)?),
            kind::TELEMETRY_SAMPLE => Record::TelemetrySample(exact(payload).ok_or(malformed)?),
            kind::SESSION_CREATED => Record::SessionCreated(exact(payload).ok_or(malformed)?),
            kind::SESSION_CLOSED => Record::SessionClosed(exact(payload).ok_or(malformed)?),
            kind::USER => Record::User(payload),
            other if other & KIND_IGNORABLE_BIT != 0 => {
                return Ok(Decoded::Ignored { kind: other })
            }
            other => return Err(RecordError::UnknownKind(other)),
        };
        Ok(Decoded::Record(record))
    }
}

/// Decodes a postcard value that must use the whole payload: trailing bytes mean the kind and
/// payload disagree, which a checksum-valid frame from this writer never has.
fn exact<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Option<T> {
    match postcard::take_from_bytes::<T>(payload) {
        Ok((value, [])) => Some(value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> [Record<'static>; 8] {
        [
            Record::JobStarted(JobStarted {
                job_id: 7,
                unix_ms: 1_700_000_000_000,
                capability: "shell",
                args_json: r#"{"cmd":"echo hi"}"#,
                limits: Limits {
                    timeout_ms: Some(2000),
                    memory_bytes: Some(64 << 20),
                    ..Limits::default()
                },
                session: Some("s-1"),
                root: None,
                telemetry_before: &[1, 2, 3],
            }),
            Record::JobFinished(JobFinished {
                job_id: 7,
                unix_ms: 1_700_000_000_100,
                status: JobStatus::TimedOut,
                exit_code: None,
                signal: Some(9),
                usage: Usage {
                    cpu_usage_us: 12,
                    memory_peak_bytes: 4096,
                    wall_ms: 2001,
                    oom_kills: 0,
                },
                stdout: b"hi\n",
                stdout_truncated: false,
                stderr: b"",
                stderr_truncated: true,
                error: Some("deadline passed"),
                telemetry_after: &[9; 20],
            }),
            Record::JobInterrupted(JobInterrupted {
                job_id: 8,
                unix_ms: 5,
                reason: "interrupted by process restart",
            }),
            Record::JobRejected(JobRejected {
                job_id: 9,
                unix_ms: 6,
                capability: "file.read",
                args_json: "{}",
                session: None,
                reason: "path escapes root",
                telemetry: &[],
            }),
            Record::TelemetrySample(TelemetrySample {
                unix_ms: 10,
                body: &[0xAA; 64],
            }),
            Record::SessionCreated(SessionCreated {
                session: "s-1",
                unix_ms: 1,
                meta_json: "{}",
            }),
            Record::SessionClosed(SessionClosed {
                session: "s-1",
                unix_ms: 2,
                reason: "closed by client",
            }),
            Record::User(b"\x00opaque\xff"),
        ]
    }

    #[test]
    fn every_record_type_round_trips_borrowing_from_the_buffer() {
        for record in samples() {
            let mut buf = [0u8; 512];
            let len = record.encode_into(&mut buf).unwrap();
            let decoded = Record::decode(record.kind(), &buf[..len]).unwrap();
            assert_eq!(decoded, Decoded::Record(record));
        }
    }

    #[test]
    fn unknown_kinds_are_skipped_only_when_marked_ignorable() {
        assert_eq!(
            Record::decode(0x8123, b"future"),
            Ok(Decoded::Ignored { kind: 0x8123 })
        );
        assert_eq!(
            Record::decode(0x0123, b"future"),
            Err(RecordError::UnknownKind(0x0123))
        );
    }

    #[test]
    fn truncated_or_padded_payloads_are_malformed_not_misread() {
        let record = samples()[0];
        let mut buf = [0u8; 512];
        let len = record.encode_into(&mut buf).unwrap();
        for cut in 0..len {
            assert!(
                Record::decode(kind::JOB_STARTED, &buf[..cut]).is_err(),
                "cut {cut}"
            );
        }
        assert_eq!(
            Record::decode(kind::JOB_STARTED, &buf[..len + 1]),
            Err(RecordError::Malformed {
                kind: kind::JOB_STARTED
            })
        );
        assert_eq!(
            record.encode_into(&mut buf[..4]),
            Err(RecordError::BufferTooSmall)
        );
    }

    /// The encoding is the on-disk format: these bytes were written by an earlier build and
    /// must decode the same forever. A change here is a format change, not a refactor.
    #[test]
    fn every_record_kind_encodes_to_its_golden_bytes() {
        for (record, golden) in samples().iter().zip(GOLDEN_RECORDS) {
            let mut buf = [0u8; 512];
            let len = record.encode_into(&mut buf).unwrap();
            let hex: String = buf[..len].iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(hex, golden, "{}", record.kind_name());
        }
    }

    /// postcard bytes of `samples()`, in order.
    const GOLDEN_RECORDS: [&str; 8] = [
        "0780d095ffbc31057368656c6c117b22636d64223a226563686f206869227d01d00f00018080802000000103732d310003010203",
        "07e4d095ffbc31020001120c8020d10f000368690a000001010f646561646c696e6520706173736564140909090909090909090909090909090909090909",
        "08051e696e7465727275707465642062792070726f636573732072657374617274",
        "09060966696c652e72656164027b7d001170617468206573636170657320726f6f7400",
        "0a40aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "03732d3101027b7d",
        "03732d310210636c6f73656420627920636c69656e74",
        "006f7061717565ff",
    ];
}
