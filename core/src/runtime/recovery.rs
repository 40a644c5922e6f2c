//! What opening a runtime repairs: jobs that started and never ended whose owner process is
//! gone marked interrupted, and what their dead instance left behind (stale cgroup leaves,
//! marked processes) swept. Jobs of owners still alive (other processes sharing the data
//! directory) are left running.
use std::path::Path;
use std::sync::Mutex;

use crate::exec::cgroup::SweepReport;
use crate::exec::job::Executor;
use crate::wal::log::{Wal, WalError, WalOptions};
use crate::wal::record::JobInterrupted;
use crate::wal::Record;

use super::owner::OwnerLock;
use super::{unix_ms, IndexLoader, JobIndex, RuntimeError};

/// The reason written in `JobInterrupted` records on restart.
pub const INTERRUPTED_REASON: &str = "interrupted by process restart";
/// What opening the runtime found and repaired.
#[derive(Debug, Clone, Default)]
pub struct RecoveryInfo {
    /// Jobs that had started but not ended, now recorded as interrupted.
    pub interrupted: Vec<u64>,
    /// Stale cgroup leaves of dead instances.
    pub swept: Vec<String>,
    /// Stale cgroup leaves of dead instances that could not be removed (processes still in them,
    /// say).
    pub sweep_failed: Vec<String>,
    /// Bytes of torn tail the WAL truncated.
    pub wal_truncated_bytes: u64,
    /// Processes of interrupted jobs found outside any cgroup (by their job marker) and killed.
    pub killed_processes: Vec<i32>,
}

/// Opens the log (beside any other writers of it) and builds the job index from the same
/// pass as the recovery scan; also returns the bytes of torn tail the open cut.
pub(super) fn open_wal(dir: &Path, options: WalOptions) -> Result<(Wal, JobIndex, u64), WalError> {
    let mut loader = IndexLoader::new(1);
    let mut wal = Wal::open_visiting(dir, options, &mut |frame| loader.visit(&frame))?;
    crate::phase::mark("wal.opened");
    let mut truncated = wal.recovery().truncated_bytes;
    if options.open_from_checkpoint && loader.seeded_incomplete() {
        // The checkpoint an open from the last checkpoint started at left open sessions out
        // (a segment's prologue is cut to fit): read the whole log instead. Let go of this
        // writer without a close: it appended nothing.
        wal.abandon();
        loader = IndexLoader::new(1);
        let whole = WalOptions {
            open_from_checkpoint: false,
            ..options
        };
        wal = Wal::open_visiting(dir, whole, &mut |frame| loader.visit(&frame))?;
        truncated += wal.recovery().truncated_bytes;
    }
    loader.set_empty_from(wal.first_lsn());
    Ok((wal, loader.finish()?, truncated))
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

/// Appends a `JobInterrupted` record for every job in `index` with a start and no end whose
/// owner is gone, applies each to the index, and makes them durable; returns their ids. Runs
/// under the log's append lock with the index current: no owner can end a job meanwhile, and
/// no other process marks the same jobs.
pub(super) fn record_interrupted(
    wal: &Wal,
    index: &Mutex<JobIndex>,
    owner: &OwnerLock,
) -> Result<Vec<u64>, RuntimeError> {
    let lock_index = || index.lock().unwrap_or_else(|p| p.into_inner());
    let interrupted = wal.append_batch(|tx| {
        let orphaned: Vec<u64> = {
            let index = lock_index();
            index
                .jobs
                .values()
                .filter(|j| j.end_lsn.is_none())
                .filter(|j| {
                    !index
                        .owners
                        .get(&j.job_id)
                        .is_some_and(|o| owner.is_alive(o))
                })
                .map(|j| j.job_id)
                .collect()
        };
        let now = unix_ms();
        for &job_id in &orphaned {
            let record = Record::JobInterrupted(JobInterrupted {
                job_id,
                unix_ms: now,
                reason: INTERRUPTED_REASON,
            });
            // The index is locked per record: a rotation's prologue locks it too.
            tx.append_then(&record, |lsn| lock_index().apply(lsn, &record))?;
        }
        Ok(orphaned)
    })?;
    wal.sync_all()?;
    Ok(interrupted)
}

/// Sweeps the stale cgroup leaves of dead instances, kills the marked processes of the jobs
/// just recorded as interrupted, then removes the TMPDIRs no live instance holds, noting all
/// three in `recovery`.
pub(super) fn sweep(executor: &Executor, dir_token: &str, recovery: &mut RecoveryInfo) {
    let SweepReport { removed, failed } = executor.sweep_stale();
    recovery.swept = removed;
    recovery.sweep_failed = failed;
    crate::phase::mark("sweep.cgroups");
    for &job_id in &recovery.interrupted {
        recovery
            .killed_processes
            .extend(executor.kill_orphans(&exec_job_id(dir_token, job_id)));
    }
    crate::phase::mark("sweep.orphans");
    recovery.sweep_failed.extend(executor.sweep_stale_tmpdirs());
}
