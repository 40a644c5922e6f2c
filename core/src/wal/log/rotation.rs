//! Rotation to the next segment, its prologue frame, and retention.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::super::error::WalError;
use super::super::frame::{
    frame_bytes, Lsn, FRAME_ALIGN_BYTES, FRAME_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX,
    SEGMENT_HEADER_BYTES,
};
use super::super::reader::LiveTail;
use super::super::record::kind;
use super::super::segments::{
    start_segment, zero_after, ActiveSegment, LiveSegment, NextSegment, WriterState,
};
use super::super::storage::{segment_bytes, LogIdentity, SegmentFile};
use super::{lock, Shared, SEGMENT_BYTES_FIRST};

/// The size a new segment `seq` gets when segments are `max` bytes: [`SEGMENT_BYTES_FIRST`]
/// for the first, doubling with each next one, never more than `max`. Every record that fits
/// a segment of `max` bytes fits each of these (the first holds the largest record).
pub fn segment_bytes_for(seq: u64, max: u64) -> u64 {
    let doublings = seq.saturating_sub(1).min(16) as u32;
    (SEGMENT_BYTES_FIRST << doublings).min(max)
}

impl Shared {
    /// Moves appends to the next segment, opening it with the prologue frame; `room` bytes
    /// must be left after it for the frame that caused the rotation.
    // Longer than 70 lines on purpose: one ordered sequence under the writer lock (take or create
    // the next segment, write its header, switch to it, open it with the prologue, prepare the one
    // after, retire); the order is what a crash mid-rotation relies on.
    pub(super) fn rotate(&self, writer: &mut WriterState, room: usize) -> Result<(), WalError> {
        let seq = writer.active.seq + 1;
        // `adopted`: not created by this process (found at open, or made ahead by another).
        let (next, adopted) = match std::mem::replace(&mut writer.next, NextSegment::Missing) {
            // Shared with other processes, the segment is taken by its name now: the one made
            // ahead may have been replaced meanwhile (retired, or removed by a recovery).
            pending if self.cross.is_some() => {
                if let NextSegment::Pending(handle) = pending {
                    let _ = handle.join();
                }
                (self.shared_next_segment(seq)?, true)
            }
            NextSegment::Ready(file) => (file, true),
            NextSegment::Pending(handle) => match handle.join() {
                Ok(Ok(file)) => (file, false),
                // The background creation failed (a full disk, say): try once more now, so
                // the error the caller sees is current.
                _ => (self.store.create(seq, self.segment_bytes(seq))?, false),
            },
            NextSegment::Missing => (self.store.create(seq, self.segment_bytes(seq))?, false),
        };
        if adopted {
            // Its name may not be durable yet (its creator may have died before syncing the
            // directory): make it so before a header goes in. Once per rotation at most.
            self.store.sync_listing()?;
        }
        let seed = match start_segment(
            &*next,
            seq,
            writer.next_lsn,
            writer.log_id,
            &mut writer.header_sync,
        ) {
            Ok(seed) => seed,
            Err(error) => {
                // The header may or may not be on disk: as for any failed sync, nothing can be
                // acknowledged any more.
                self.commit.poison(&error.to_string());
                return Err(error);
            }
        };
        let old = std::mem::replace(
            &mut writer.active,
            ActiveSegment::new(seq, next, seed, SEGMENT_HEADER_BYTES, writer.next_lsn),
        );
        writer.unsynced.push(old.file);
        writer.prev_checksum = 0;
        let prologue = self.write_prologue(writer, room)?;
        writer.segments.push_back(LiveSegment {
            seq,
            first_lsn: writer.active.first_lsn,
            prologue,
            bytes: writer.active.file.len() as u64,
        });
        let store = self.store.clone();
        let bytes = self.segment_bytes(seq + 1);
        writer.next = if store.creates_in_background() {
            // Pre-create the following segment off the append path. If no thread can be
            // started, the next rotation creates it inline instead.
            let creator = std::thread::Builder::new()
                .name("vigil-wal-segment".to_string())
                .spawn(move || store.create(seq + 1, bytes));
            match creator {
                Ok(handle) => NextSegment::Pending(handle),
                Err(_) => NextSegment::Missing,
            }
        } else {
            store
                .create(seq + 1, bytes)
                .map_or(NextSegment::Missing, NextSegment::Ready)
        };
        self.retire_segments(writer);
        Ok(())
    }

    /// The size segment `seq` is created with (see [`super::segment_bytes_for`]).
    pub(super) fn segment_bytes(&self, seq: u64) -> u64 {
        segment_bytes_for(seq, self.options.segment_bytes)
    }

    /// Segment `seq`, unused, for a rotation of a shared log (under the append lock, caught
    /// up): the one another process made ahead if it is there, else a new one. One that holds
    /// a header is past the end of the log (the chain does not lead into it): never part of
    /// the log, it is cleared as recovery would.
    pub(super) fn shared_next_segment(&self, seq: u64) -> Result<Arc<dyn SegmentFile>, WalError> {
        let file = match self.store.open(seq, true) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.store.create(seq, self.segment_bytes(seq))?
            }
            Err(error) => return Err(WalError::Io(error)),
        };
        if file.len() as u64 != self.segment_bytes(seq) {
            drop(file);
            self.store.remove(seq)?;
            return Ok(self.store.create(seq, self.segment_bytes(seq))?);
        }
        // SAFETY: we hold the append lock; the segment is not part of the log.
        let head = unsafe { segment_bytes(&*file, 0, SEGMENT_HEADER_BYTES.min(file.len())) };
        if head.iter().any(|&b| b != 0) {
            zero_after(&*file, 0, file.len());
        }
        Ok(file)
    }

    /// The identity to record, merged with what the file says now when other processes
    /// share the log: their retention may have moved the first segment on, and their close a
    /// larger durable LSN; neither goes back.
    pub(super) fn merged_identity(&self, mut identity: LogIdentity) -> LogIdentity {
        if self.cross.is_some() {
            if let Ok(Some(current)) = self.store.identity() {
                if current.log_id == identity.log_id {
                    identity.first_seq = identity.first_seq.max(current.first_seq);
                    identity.durable_lsn = identity.durable_lsn.max(current.durable_lsn);
                }
            }
        }
        identity
    }

    /// Writes the prologue frame at the head of the (new, empty) active segment, leaving
    /// `room` bytes after it. False when there is no prologue or it does not fit.
    pub(super) fn write_prologue(
        &self,
        writer: &mut WriterState,
        room: usize,
    ) -> Result<bool, WalError> {
        let prologue = lock(&self.prologue);
        let Some(produce) = prologue.as_ref() else {
            return Ok(false);
        };
        let space = writer.active.file.len() - writer.active.offset;
        let budget = space
            .saturating_sub(room + FRAME_HEADER_BYTES + FRAME_ALIGN_BYTES)
            .min(RECORD_PAYLOAD_BYTES_MAX);
        let Some(payload) = produce(budget).filter(|p| p.len() <= budget) else {
            return Ok(false);
        };
        drop(prologue);
        let needed = frame_bytes(payload.len());
        if writer.prologue.len() < needed {
            writer.prologue.resize(needed, 0);
        }
        writer.prologue[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload.len()]
            .copy_from_slice(&payload);
        self.place_frame(writer, kind::INDEX_CHECKPOINT, payload.len(), true)?;
        Ok(true)
    }

    /// Removes the oldest segments while over the retention bounds, but only whole segments
    /// that are durable and that no reader still needs, and never the active one.
    pub(super) fn retire_segments(&self, writer: &mut WriterState) {
        let retention = self.options.retention;
        let durable = self.durable_lsn();
        let reader_min = {
            let mut readers = lock(&self.readers);
            readers.retain(|r| Arc::strong_count(r) > 1);
            readers
                .iter()
                .map(|r| r.load(Ordering::Acquire))
                .min()
                .unwrap_or(Lsn::MAX)
        };
        if self.cross.is_some() {
            // Another process's retention may have retired the oldest ones already.
            if let Ok(Some(identity)) = self.store.identity() {
                while writer.segments.len() >= 2
                    && writer.segments[0].seq < identity.first_seq
                    && writer.segments[0].seq != writer.active.seq
                {
                    writer.segments.pop_front();
                }
            }
        }
        while writer.segments.len() >= 2 {
            let count = writer.segments.len() as u64 + 1; // + the pre-created next one
            let bytes: u64 = writer.segments.iter().map(|s| s.bytes).sum::<u64>()
                + self.segment_bytes(writer.active.seq + 1);
            let over_count = retention.segments_max.is_some_and(|max| count > max);
            let over_bytes = retention.bytes_max.is_some_and(|max| bytes > max);
            let oldest = writer.segments[0].seq;
            let following = writer.segments[1];
            let following_first = following.first_lsn;
            let still_needed = following_first - 1 > durable || following_first > reader_min;
            // With a prologue, what it carries forward must be in the new first segment.
            let carried = following.prologue || lock(&self.prologue).is_none();
            let still_needed = still_needed || !carried;
            if !(over_count || over_bytes) || still_needed || oldest == writer.active.seq {
                break;
            }
            // The new first segment is durable in the identity before the old one goes, so a
            // lost oldest segment is never mistaken for a retired one.
            let identity = self.merged_identity(LogIdentity {
                log_id: writer.log_id,
                first_seq: following.seq,
                durable_lsn: durable,
            });
            if self.store.set_identity(identity).is_err() || self.store.remove(oldest).is_err() {
                break; // Retention is best effort; the log itself is unharmed.
            }
            writer.segments.pop_front();
        }
    }
}
