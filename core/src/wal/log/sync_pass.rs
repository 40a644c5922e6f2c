//! The sync pass and the checkpoint frame.

use std::io;
use std::sync::atomic::Ordering;

use super::super::error::WalError;
use super::super::frame::Lsn;
use super::super::record::kind;
use super::super::segments::WriterState;
use super::super::storage::{CheckpointHint, LogIdentity};
use super::{lock, Shared};

impl Shared {
    /// Makes the whole log durable and appends a checkpoint frame whose `synced_lsn` says so:
    /// without it, damage to the last synced records would be indistinguishable from a tear
    /// of unsynced ones, because no later frame would carry proof that they were durable.
    pub(super) fn checkpoint(&self) -> Result<(), WalError> {
        if self.commit.is_poisoned() {
            return Err(self.commit.poison_error());
        }
        let last_kind = lock(&self.writer).last_kind;
        let last = self.last_lsn.load(Ordering::Acquire);
        if last == 0 {
            return Ok(());
        }
        self.sync_to(last)?;
        // A log that already ends in a checkpoint (one a crash left, say) needs no second one,
        // but its durable end is still recorded below.
        let lsn = if last_kind == kind::CHECKPOINT || last_kind == kind::INDEX_CHECKPOINT {
            last
        } else {
            let lsn = self.append_closing_checkpoint()?;
            self.sync_to(lsn)?;
            lsn
        };
        if self.identity_durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        // Beside the segments, so that losing the end of the log (this checkpoint included)
        // is seen as corruption, not taken for a crash before these records were written.
        // Under the writer (and append) lock: retention rewrites the identity too, under
        // the same lock. The hint file carries it (one in-place write and fdatasync); a store
        // without one, or a failed write, falls back to rewriting the identity (a new file,
        // its fsync, a rename and the directory's fsync).
        self.locked(|writer| {
            if self
                .store
                .set_checkpoint_hint(self.closing_hint(writer, lsn))
                .is_ok()
            {
                return Ok(());
            }
            let identity = self.merged_identity(LogIdentity {
                log_id: writer.log_id,
                first_seq: writer.segments.front().map_or(writer.active.seq, |s| s.seq),
                durable_lsn: lsn,
            });
            self.store.set_identity(identity).map_err(WalError::Io)
        })?;
        self.identity_durable_lsn.store(lsn, Ordering::Release);
        Ok(())
    }

    /// What a close records: every record up to `durable_lsn` durable, and the newest index
    /// checkpoint this writer knows of that lies within it. Another process's hint is merged
    /// in (its durable LSN, and its checkpoint if newer) unless this close's checkpoint is the
    /// log's last frame, which no other claim can pass.
    fn closing_hint(&self, writer: &WriterState, durable_lsn: Lsn) -> CheckpointHint {
        let mut hint = CheckpointHint {
            log_id: writer.log_id,
            seq: 0,
            offset: 0,
            lsn: 0,
            durable_lsn,
        };
        if let Some((seq, offset, lsn)) = writer.last_index_checkpoint {
            if lsn <= durable_lsn {
                (hint.seq, hint.offset, hint.lsn) = (seq, offset, lsn);
            }
        }
        let last = self.last_lsn.load(Ordering::Acquire);
        if self.cross.is_none() || (hint.lsn == last && durable_lsn == last) {
            return hint;
        }
        if let Ok(Some(current)) = self.store.checkpoint_hint() {
            if current.log_id == hint.log_id {
                hint.durable_lsn = hint.durable_lsn.max(current.durable_lsn);
                if current.lsn > hint.lsn && current.lsn <= hint.durable_lsn {
                    (hint.seq, hint.offset, hint.lsn) = (current.seq, current.offset, current.lsn);
                }
            }
        }
        hint
    }

    /// Returns when every record up to `lsn` is durable (group commit).
    pub(super) fn sync_to(&self, lsn: Lsn) -> Result<(), WalError> {
        let last_lsn = self.last_lsn.load(Ordering::Acquire);
        // The fence takes the writer lock as the pass does next: no lock order changes.
        self.commit
            .sync_to(lsn, last_lsn, &|| self.sync_pass(), &|| {
                drop(lock(&self.writer));
            })
    }

    /// One group-commit pass: syncs every segment with bytes appended so far.
    pub(super) fn sync_pass(&self) -> io::Result<Lsn> {
        let mut sync = lock(&self.sync);
        let sync = &mut *sync;
        let (target, active_seq, active_offset) = {
            let mut writer = lock(&self.writer);
            sync.files.append(&mut writer.unsynced);
            sync.files.push(writer.active.file.clone());
            (writer.next_lsn - 1, writer.active.seq, writer.active.offset)
        };
        sync.syncs += 1;
        let started = std::time::Instant::now();
        let mut result = Ok(target);
        let last = sync.files.len() - 1;
        for (i, file) in sync.files.drain(..).enumerate() {
            if result.is_ok() {
                if let Err(error) = file.sync(&mut sync.engine) {
                    result = Err(error);
                }
            }
            // Durable bytes behind the write head are read back only by readers, which fault
            // them in again: keep the resident set to the pages being written. A rotated
            // segment (not the last file) is behind the head entirely.
            if result.is_ok() {
                let (from, to) = if i < last {
                    (0, file.len())
                } else if sync.released.0 == active_seq {
                    (sync.released.1, active_offset)
                } else {
                    (0, active_offset)
                };
                file.release_resident(from, to);
                if i == last {
                    sync.released = (active_seq, active_offset);
                }
            }
        }
        sync.latency
            .record(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        result
    }
}
