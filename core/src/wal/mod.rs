//! The write-ahead log: every job start and end, telemetry record and session event, in
//! checksummed frames that come back intact after any crash.
//!
//! Layers, from the bytes up:
//! - [`crc32c`], [`frame`]: the frame and segment-header layout (no_std, no allocation).
//! - [`record`]: the records and their borrowing postcard payloads (no_std).
//! - [`scan`]: the recovery scan over `&[u8]`: valid prefix, end, torn tail vs corruption.
//! - With `std`: [`storage`] (segment files: fallocate, mmap, fsync; swappable for the
//!   fault-injecting [`sim`] storage), [`sync`] (fdatasync, plain or through io_uring),
//!   [`share`] (the append lock and the shared tail through which many processes write one
//!   log), [`log`] (the writer: append, group commit, rotation, retention, recovery) and
//!   [`reader`] (bounded batches from an LSN, tail-follow; damage is an error, never the end),
//!   and [`repair`] (a new log of every valid record, the damaged files kept aside).
//!
//! The log does not know what a job or a sample is beyond the record fields; the runtime
//! decides what to write.
//!
//! Using it (std):
//! ```no_run
//! # use vigil_core::wal::{log::{Wal, WalOptions}, record::{Record, JobInterrupted}, Decoded};
//! # fn main() -> Result<(), vigil_core::wal::log::WalError> {
//! let wal = Wal::open(std::path::Path::new("/var/lib/vigil/wal"), WalOptions::default())?;
//! // What recovery found (a torn tail it truncated, frames it dropped) is in the report.
//! let _found = &wal.recovery().scan.fault;
//! let record = Record::JobInterrupted(JobInterrupted { job_id: 7, unix_ms: 0, reason: "restart" });
//! let lsn = wal.append(&record)?; // copied into the mapped segment; not yet durable
//! wal.sync(lsn)?; // returns once everything up to `lsn` is durable (group commit)
//! let mut reader = wal.reader(1); // durable records from LSN 1, in bounded batches
//! reader.read_batch(256, &mut |frame| {
//!     if let Ok(Decoded::Record(record)) = Record::decode(frame.kind, frame.payload) {
//!         let _ = (frame.lsn, record);
//!     }
//! })?;
//! wal.close()?; // final sync and a checkpoint frame; dropping the last handle does the same
//! # Ok(()) }
//! ```

pub mod crc32c;
pub mod frame;
pub mod record;
pub mod scan;

#[cfg(feature = "std")]
pub mod commit;
#[cfg(feature = "std")]
pub mod error;
#[cfg(feature = "std")]
pub mod log;
#[cfg(feature = "std")]
pub mod mode;
#[cfg(feature = "std")]
pub mod reader;
#[cfg(feature = "std")]
pub mod recovery;
#[cfg(feature = "std")]
pub mod repair;
#[cfg(feature = "std")]
mod segments;
#[cfg(feature = "std")]
pub mod share;
#[cfg(feature = "std")]
pub mod sim;
#[cfg(feature = "std")]
pub mod storage;
#[cfg(feature = "std")]
pub mod sync;

pub use frame::{Frame, Lsn, RECORD_PAYLOAD_BYTES_MAX};
pub use record::{Decoded, Record, RecordError};
pub use scan::{FaultKind, RecoveryMode};
