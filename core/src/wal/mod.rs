//! The write-ahead log: every job start and end, telemetry record and session event, in
//! checksummed frames that come back intact after any crash.
//!
//! Layers, from the bytes up:
//! - [`crc32c`], [`frame`]: the frame and segment-header layout (no_std, no allocation).
//! - [`record`]: the records and their borrowing postcard payloads (no_std).
//! - [`scan`]: the recovery scan over `&[u8]`: valid prefix, end, torn tail vs corruption.
//! - With `std`: [`storage`] (segment files: fallocate, mmap, fsync; swappable for the
//!   fault-injecting [`sim`] storage), [`sync`] (io_uring fdatasync with a plain fallback),
//!   [`log`] (the writer: append, group commit, rotation, retention, recovery) and
//!   [`reader`] (bounded batches from an LSN, tail-follow).
//!
//! The log does not know what a job or a sample is beyond the record fields; the runtime
//! decides what to write.

pub mod crc32c;
pub mod frame;
pub mod fuzzing;
pub mod record;
pub mod scan;

#[cfg(feature = "std")]
pub mod log;
#[cfg(feature = "std")]
pub mod reader;
#[cfg(feature = "std")]
pub mod sim;
#[cfg(feature = "std")]
pub mod storage;
#[cfg(feature = "std")]
pub mod sync;

pub use frame::{Frame, Lsn, RECORD_PAYLOAD_BYTES_MAX};
pub use record::{Decoded, Record, RecordError};
pub use scan::{FaultKind, RecoveryMode};
