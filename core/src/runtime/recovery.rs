//! What opening a runtime repairs: the log opened (waiting out a dead writer's lock), jobs
//! that started and never ended marked interrupted, and what their dead instance left behind
//! (stale cgroup leaves, marked processes) swept.
use std::path::Path;
use std::time::Duration;

use crate::exec::cgroup::SweepReport;
use crate::exec::job::Executor;
use crate::wal::log::{Wal, WalError, WalOptions};
use crate::wal::record::JobInterrupted;
use crate::wal::Record;

use super::{unix_ms, IndexLoader, JobIndex, RuntimeError};

/// The reason written in `JobInterrupted` records on restart.
pub const INTERRUPTED_REASON: &str = "interrupted by process restart";
/// How long opening waits for another writer's lock to go away.
const WAL_LOCK_WAIT_MS_MAX: u64 = 2_000;

/// What opening the runtime found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryInfo {
    /// Jobs that had started but not ended, now recorded as interrupted.
    pub interrupted: Vec<u64>,
    /// Stale cgroup leaves of dead instances.
    pub swept: Vec<String>,
    pub sweep_failed: Vec<String>,
    /// Bytes of torn tail the WAL truncated.
    pub wal_truncated_bytes: u64,
    /// Processes of interrupted jobs found outside any cgroup (by their job marker) and killed.
    pub killed_processes: Vec<i32>,
}

/// Opens the log, waiting up to [`WAL_LOCK_WAIT_MS_MAX`] for the writer's lock. A writer that
/// was just killed can hold its lock for a moment after it is reaped (the kernel tears down its
/// io_uring asynchronously), so an immediate restart would otherwise fail spuriously.
/// The job index comes from the same pass as the recovery scan.
pub(super) fn open_wal_waiting_for_lock(
    dir: &Path,
    options: WalOptions,
) -> Result<(Wal, JobIndex), WalError> {
    let started = std::time::Instant::now();
    loop {
        let mut loader = IndexLoader::new(1);
        let opened = Wal::open_visiting(dir, options, &mut |frame| loader.visit(&frame));
        match opened {
            Err(WalError::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    && started.elapsed() < Duration::from_millis(WAL_LOCK_WAIT_MS_MAX) =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(error) => return Err(error),
            Ok(wal) => {
                loader.set_empty_from(wal.first_lsn());
                return Ok((wal, loader.finish()?));
            }
        }
    }
}

/// A short, stable token for a data directory: FNV-1a of its canonical path.
pub(super) fn data_dir_token(dir: &Path) -> String {
    let path = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", hash as u32)
}

/// The executor's name for a job: the data directory's token and the job id. It names the
/// job's cgroup leaf and is the value of the marker variable every job process inherits.
pub(super) fn exec_job_id(dir_token: &str, job_id: u64) -> String {
    format!("{dir_token}-{job_id}")
}

/// Appends a `JobInterrupted` record for every job in `index` with a start and no end, applies
/// each to the index, and makes them durable; returns their ids.
pub(super) fn record_interrupted(
    wal: &Wal,
    index: &mut JobIndex,
) -> Result<Vec<u64>, RuntimeError> {
    let unfinished: Vec<u64> = index
        .jobs
        .values()
        .filter(|j| j.end_lsn.is_none())
        .map(|j| j.job_id)
        .collect();
    let now = unix_ms();
    let mut interrupted = Vec::new();
    for job_id in unfinished {
        let record = Record::JobInterrupted(JobInterrupted {
            job_id,
            unix_ms: now,
            reason: INTERRUPTED_REASON,
        });
        wal.append_then(&record, |lsn| index.apply(lsn, &record))?;
        interrupted.push(job_id);
    }
    wal.sync_all()?;
    Ok(interrupted)
}

/// Sweeps the stale cgroup leaves of dead instances and kills the marked processes of the
/// jobs just recorded as interrupted, noting both in `recovery`.
pub(super) fn sweep(executor: &Executor, dir_token: &str, recovery: &mut RecoveryInfo) {
    let SweepReport { removed, failed } = executor.sweep_stale();
    recovery.swept = removed;
    recovery.sweep_failed = failed;
    for &job_id in &recovery.interrupted {
        recovery
            .killed_processes
            .extend(executor.kill_orphans(&exec_job_id(dir_token, job_id)));
    }
}
