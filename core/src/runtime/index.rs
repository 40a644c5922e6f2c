//! The job and session index: a fold over the log's records, rebuilt on open and kept
//! current as records are written, and carried across retired segments by the index
//! checkpoint that opens every segment.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{JobState, JobStatus};
use crate::wal::log::{Followed, LogFault, WalError};
use crate::wal::reader::Reader;
use crate::wal::record::{kind as record_kind, JobRejected, JobStarted};
use crate::wal::recovery::scan_log;
use crate::wal::scan::FaultKind;
use crate::wal::storage::FsStore;
use crate::wal::Frame;
use crate::wal::RecoveryMode;
use crate::wal::{Decoded, Lsn, Record, RecordError};

/// Records read per batch while rebuilding the index.
pub(super) const INDEX_BATCH_RECORDS: usize = 1024;

/// One job in the index (its JSON is the job summary view).
pub use crate::view::job::JobSummary;

/// One session in the index.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The session's id.
    pub session: String,
    /// When the session was created, in ms since the Unix epoch.
    pub created_unix_ms: u64,
    /// When the session was closed, in ms since the Unix epoch; `None` while it is open.
    pub closed_unix_ms: Option<u64>,
    /// Caller-chosen metadata given at creation: a JSON object.
    pub meta: Value,
    /// Jobs of this session the index has seen (started or refused).
    pub jobs: u64,
}

/// Jobs and sessions, rebuilt from the log on open and kept current as records are written.
#[derive(Debug, Default)]
pub struct JobIndex {
    /// Jobs by id.
    pub jobs: BTreeMap<u64, JobSummary>,
    /// Sessions by id.
    pub sessions: BTreeMap<String, SessionSummary>,
    /// Records applied to the index since the log began (those of retired segments included).
    pub records: u64,
    /// The next job id never used in this log (ids are never reused, even after the records
    /// that used them were retired).
    pub next_job_id: u64,
    /// The first LSN the history was read from: 1, or where retention left the log.
    pub history_from_lsn: Lsn,
    /// The history before `history_from_lsn` was carried forward by an index checkpoint
    /// (jobs still running, open sessions, counters); finished jobs before it are gone.
    pub from_checkpoint: bool,
    /// The owner (see `super::owner`) of each job still running that named one.
    pub owners: BTreeMap<u64, String>,
    /// The next frame followed starts the history over (see [`JobIndex::follow`]).
    restarting: bool,
}

/// What an index checkpoint carries forward (the payload of an `INDEX_CHECKPOINT` frame, as
/// JSON: it holds free-form session metadata).
#[derive(Debug, Serialize, Deserialize)]
struct IndexCheckpoint {
    next_job_id: u64,
    records_before: u64,
    /// Jobs started and not ended.
    running: Vec<JobSummary>,
    /// Sessions not closed, newest first.
    sessions: Vec<SessionSummary>,
    /// Open sessions left out because the budget was reached.
    sessions_dropped: u64,
    /// Owners of the running jobs (absent in checkpoints of earlier versions).
    #[serde(default)]
    owners: BTreeMap<u64, String>,
}

impl JobIndex {
    /// Applies one record at `lsn`.
    pub fn apply(&mut self, lsn: Lsn, record: &Record<'_>) {
        self.records += 1;
        match record {
            Record::JobStarted(JobStarted { job_id, .. })
            | Record::JobRejected(JobRejected { job_id, .. }) => {
                self.next_job_id = self.next_job_id.max(job_id.saturating_add(1));
            }
            _ => {}
        }
        match record {
            Record::JobStarted(r) => {
                self.jobs.insert(
                    r.job_id,
                    JobSummary {
                        job_id: r.job_id,
                        capability: r.capability.to_string(),
                        status: JobState::Running,
                        session: r.session.map(str::to_string),
                        started_unix_ms: Some(r.unix_ms),
                        finished_unix_ms: None,
                        lsn,
                        end_lsn: None,
                    },
                );
                self.count_session_job(r.session);
            }
            Record::JobRejected(r) => {
                self.jobs.insert(
                    r.job_id,
                    JobSummary {
                        job_id: r.job_id,
                        capability: r.capability.to_string(),
                        status: JobState::Ended(JobStatus::Rejected),
                        session: r.session.map(str::to_string),
                        started_unix_ms: None,
                        finished_unix_ms: Some(r.unix_ms),
                        lsn,
                        end_lsn: Some(lsn),
                    },
                );
                self.count_session_job(r.session);
            }
            Record::JobFinished(r) => self.end_job(r.job_id, r.status, r.unix_ms, lsn),
            Record::JobInterrupted(r) => {
                self.end_job(r.job_id, JobStatus::Interrupted, r.unix_ms, lsn)
            }
            Record::SessionCreated(r) => {
                self.sessions.insert(
                    r.session.to_string(),
                    SessionSummary {
                        session: r.session.to_string(),
                        created_unix_ms: r.unix_ms,
                        closed_unix_ms: None,
                        meta: serde_json::from_str(r.meta_json).unwrap_or(Value::Null),
                        jobs: 0,
                    },
                );
            }
            Record::SessionClosed(r) => {
                if let Some(s) = self.sessions.get_mut(r.session) {
                    s.closed_unix_ms = Some(r.unix_ms);
                }
            }
            Record::TelemetrySample(_) | Record::User(_) => {}
        }
    }

    fn count_session_job(&mut self, session: Option<&str>) {
        if let Some(s) = session.and_then(|s| self.sessions.get_mut(s)) {
            s.jobs += 1;
        }
    }

    /// Applies one frame as read from the log: a record, a job's owner, or nothing (other
    /// ignorable frames). A record that passes its checksum but does not decode is an error.
    pub fn apply_frame(&mut self, frame: &Frame<'_>) -> Result<(), WalError> {
        if frame.kind == record_kind::JOB_OWNER {
            if let Ok(owner) = serde_json::from_slice::<super::owner::JobOwner>(frame.payload) {
                self.set_owner(owner.job_id, owner.owner);
            }
            return Ok(());
        }
        match Record::decode(frame.kind, frame.payload) {
            Ok(Decoded::Record(r)) => self.apply(frame.lsn, &r),
            Ok(Decoded::Ignored { .. }) => {}
            Err(error) => return Err(undecodable_record(frame, error)),
        }
        Ok(())
    }

    /// Follows a frame another process appended. A restart (this process was idle while
    /// retention retired the segments it had not followed yet) drops the history: it is
    /// rebuilt from the first retained segment, whose index checkpoint carries the running
    /// jobs (this process's included: the process that wrote it had followed them), the open
    /// sessions and the next job id. A frame that does not decode was written by another
    /// version; it is skipped here, and a fresh load reports it.
    pub fn follow(&mut self, followed: Followed<'_>) {
        match followed {
            Followed::Restart => {
                *self = JobIndex {
                    next_job_id: self.next_job_id,
                    restarting: true,
                    ..JobIndex::default()
                };
            }
            Followed::Frame(frame) => {
                if std::mem::take(&mut self.restarting) {
                    self.history_from_lsn = frame.lsn;
                    if frame.kind == record_kind::INDEX_CHECKPOINT {
                        // A rejoin at the first retained segment: what its checkpoint left
                        // out is gone from the log too.
                        let _ = self.seed(frame.payload);
                        return;
                    }
                }
                let _ = self.apply_frame(&frame);
            }
        }
    }

    /// Records who runs `job_id` while it runs.
    pub fn set_owner(&mut self, job_id: u64, owner: String) {
        if self.jobs.get(&job_id).is_some_and(|j| j.end_lsn.is_none()) {
            self.owners.insert(job_id, owner);
        }
    }

    fn end_job(&mut self, job_id: u64, status: JobStatus, unix_ms: u64, lsn: Lsn) {
        self.owners.remove(&job_id);
        if let Some(j) = self.jobs.get_mut(&job_id) {
            j.status = JobState::Ended(status);
            j.finished_unix_ms = Some(unix_ms);
            j.end_lsn = Some(lsn);
        }
    }

    /// Reads every record of `reader` into a fresh index. An index checkpoint met before any
    /// record (the head of the first retained segment) seeds it; later ones are skipped, the
    /// records themselves being there.
    pub fn load(reader: &mut Reader) -> Result<JobIndex, WalError> {
        let mut loader = IndexLoader::new(reader.next_lsn());
        loop {
            let n = reader.read_batch(INDEX_BATCH_RECORDS, &mut |frame| loader.visit(&frame))?;
            if loader.failed() || n == 0 {
                return loader.finish();
            }
        }
    }

    /// The index of the log under `data_dir`, read without taking the writer's lock (for
    /// listing while a server owns the log). Unfinished jobs show as `running`. A damaged log
    /// is an error naming where. The log is read once: the recovery scan that checks it
    /// hands each record it keeps to the index.
    pub fn load_dir(data_dir: &Path) -> Result<JobIndex, WalError> {
        let store = FsStore::open_reader(&super::RuntimeOptions::wal_dir(data_dir))?;
        let mut loader = IndexLoader::new(1);
        let scan = scan_log(&store, RecoveryMode::Tail, &mut |_, _, frame| {
            loader.visit(&frame)
        })?;
        if let Some(fault) = scan.fault.filter(|f| f.kind == FaultKind::Corruption) {
            return Err(WalError::Corrupt(fault));
        }
        loader.set_empty_from(scan.first_lsn.unwrap_or(1));
        loader.finish()
    }

    /// Seeds an empty index from a checkpoint's payload. A payload that does not decode
    /// leaves the index as it is (the checkpoint frame itself validated, so this would be a
    /// bug, not damage): what follows still loads.
    /// Seeds the index from a checkpoint's payload; false when it carries less than the
    /// whole index (sessions were left out for room) or does not decode.
    fn seed(&mut self, payload: &[u8]) -> bool {
        let Ok(checkpoint) = serde_json::from_slice::<IndexCheckpoint>(payload) else {
            return false;
        };
        let complete = checkpoint.sessions_dropped == 0;
        self.from_checkpoint = true;
        self.next_job_id = self.next_job_id.max(checkpoint.next_job_id);
        self.records = checkpoint.records_before;
        for job in checkpoint.running {
            self.jobs.insert(job.job_id, job);
        }
        for session in checkpoint.sessions {
            self.sessions.insert(session.session.clone(), session);
        }
        for (job_id, owner) in checkpoint.owners {
            self.set_owner(job_id, owner);
        }
        complete
    }

    /// The payload of an index checkpoint of at most `budget` bytes: what a reader starting
    /// at the next segment needs from everything before it. Sessions are dropped (newest
    /// kept) when the budget is short; without room for the running jobs, nothing.
    pub fn checkpoint(&self, budget: usize) -> Option<Vec<u8>> {
        let mut checkpoint = IndexCheckpoint {
            next_job_id: self.next_job_id,
            records_before: self.records,
            running: self
                .jobs
                .values()
                .filter(|j| j.end_lsn.is_none())
                .cloned()
                .collect(),
            sessions: self
                .sessions
                .values()
                .rev()
                .filter(|s| s.closed_unix_ms.is_none())
                .cloned()
                .collect(),
            sessions_dropped: 0,
            owners: self.owners.clone(),
        };
        loop {
            let payload = serde_json::to_vec(&checkpoint).ok()?;
            if payload.len() <= budget {
                return Some(payload);
            }
            if checkpoint.sessions.is_empty() {
                return None;
            }
            let keep = checkpoint.sessions.len() / 2;
            checkpoint.sessions_dropped += (checkpoint.sessions.len() - keep) as u64;
            checkpoint.sessions.truncate(keep);
        }
    }

    /// The payload of an index checkpoint that carries the whole index a reader starting at
    /// it needs (every running job, owner and open session, the next job id), if it fits in
    /// `budget` bytes: what a clean close ends the log with. Never drops a session.
    pub fn checkpoint_complete(&self, budget: usize) -> Option<Vec<u8>> {
        self.checkpoint(budget).filter(|payload| {
            serde_json::from_slice::<IndexCheckpoint>(payload)
                .is_ok_and(|c| c.sessions_dropped == 0)
        })
    }

    /// Jobs matching the filters, oldest first.
    pub fn list(&self, session: Option<&str>, status: Option<JobState>) -> Vec<JobSummary> {
        self.jobs
            .values()
            .filter(|j| session.is_none_or(|s| j.session.as_deref() == Some(s)))
            .filter(|j| status.is_none_or(|s| j.status == s))
            .cloned()
            .collect()
    }
}

/// Builds a [`JobIndex`] from the log's records handed over in LSN order, from the first the
/// log holds: by a reader, or by the recovery scan itself as the log opens
/// ([`crate::wal::log::Wal::open_visiting`]), so opening reads the log once.
pub struct IndexLoader {
    index: JobIndex,
    /// The checkpoint the index was seeded from carried less than the whole index.
    seeded_incomplete: bool,
    /// Where the history starts when the log holds no record.
    empty_from: Lsn,
    first: bool,
    undecodable: Option<WalError>,
}

impl IndexLoader {
    /// A loader for a log whose first record (if any) has LSN `empty_from` or later.
    pub fn new(empty_from: Lsn) -> IndexLoader {
        IndexLoader {
            index: JobIndex {
                next_job_id: 1,
                history_from_lsn: empty_from,
                ..JobIndex::default()
            },
            seeded_incomplete: false,
            empty_from,
            first: true,
            undecodable: None,
        }
    }

    /// Applies the next record. An index checkpoint as the very first record seeds the
    /// index; later ones are skipped, the records themselves being there.
    pub fn visit(&mut self, frame: &Frame<'_>) {
        if self.undecodable.is_some() {
            return;
        }
        if std::mem::take(&mut self.first) {
            self.index.history_from_lsn = frame.lsn;
            if frame.kind == record_kind::INDEX_CHECKPOINT {
                self.seeded_incomplete = !self.index.seed(frame.payload);
                return;
            }
        }
        if let Err(error) = self.index.apply_frame(frame) {
            self.undecodable = Some(error);
        }
    }

    /// The checkpoint the first record was left out open sessions for room, or did not
    /// decode: an index built from it alone lacks what the records before it say.
    pub fn seeded_incomplete(&self) -> bool {
        self.seeded_incomplete
    }

    /// Where the history starts if no record comes (a log that holds none yet).
    pub fn set_empty_from(&mut self, lsn: Lsn) {
        self.empty_from = lsn;
    }

    /// Whether a record did not decode (the index cannot be built).
    pub fn failed(&self) -> bool {
        self.undecodable.is_some()
    }

    /// The index, or the error naming the record that did not decode.
    pub fn finish(mut self) -> Result<JobIndex, WalError> {
        if let Some(error) = self.undecodable {
            return Err(error);
        }
        if self.first {
            self.index.history_from_lsn = self.empty_from;
        }
        Ok(self.index)
    }
}

/// A record that passes its checksum but does not decode: it is not skipped (the index would
/// be silently wrong), it is reported with its LSN.
pub(super) fn undecodable_record(frame: &Frame<'_>, error: RecordError) -> WalError {
    WalError::Corrupt(LogFault {
        kind: FaultKind::Corruption,
        seq: 0,
        segment: format!("the record at LSN {}", frame.lsn),
        offset: 0,
        expected_lsn: frame.lsn,
        cause: format!(
            "record of kind {} passes its checksum but does not decode ({error}): written by \
             another version of vigil",
            frame.kind
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::wal::log::{Wal, WalOptions};
    use crate::wal::sim::{FaultPlan, SimStore};
    use crate::wal::sync::SyncMethod;

    #[test]
    fn a_record_that_does_not_decode_stops_the_index_loudly() {
        let store = SimStore::new(FaultPlan::default(), 1);
        let options = WalOptions {
            segment_bytes: 4096,
            sync_method: SyncMethod::Fdatasync,
            ..WalOptions::default()
        };
        let wal = Wal::open_with_store(Arc::new(store), options).unwrap();
        wal.append_raw(record_kind::USER, b"fine").unwrap();
        wal.append_raw(record_kind::JOB_STARTED, b"\xff\xff")
            .unwrap();
        wal.sync_all().unwrap();
        let error = JobIndex::load(&mut wal.reader(1)).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("LSN 2") && message.contains("does not decode"),
            "{message}"
        );
    }

    #[test]
    fn a_checkpoint_carries_running_jobs_open_sessions_and_the_next_id() {
        let mut index = JobIndex {
            next_job_id: 1,
            ..JobIndex::default()
        };
        let started = |job_id| {
            Record::JobStarted(JobStarted {
                job_id,
                unix_ms: 5,
                capability: "shell",
                args_json: "{}",
                limits: Default::default(),
                session: None,
                root: None,
                telemetry_before: &[],
            })
        };
        index.apply(1, &started(3));
        index.apply(2, &started(4));
        index.apply(
            3,
            &Record::JobInterrupted(crate::wal::record::JobInterrupted {
                job_id: 3,
                unix_ms: 6,
                reason: "x",
            }),
        );
        let payload = index.checkpoint(4096).unwrap();
        let mut seeded = JobIndex::default();
        assert!(seeded.seed(&payload), "a complete checkpoint");
        assert_eq!(seeded.next_job_id, 5);
        assert_eq!(seeded.jobs.keys().copied().collect::<Vec<_>>(), vec![4]);
        assert_eq!(seeded.records, 3);
        assert!(
            index.checkpoint(10).is_none(),
            "no room for the running jobs: nothing"
        );
    }
}
